//! wasmhook: a webhook host. Platforms POST webhooks; the host checks their signatures, runs a
//! per-platform WebAssembly component plugin that normalizes each into CloudEvents, stores them
//! durably and delivers them to subscribed destinations. See `ARCHITECTURE.md` for the map.

pub mod events;
pub mod plugin_tools;
pub mod plugins;
pub mod signature;
