//! wasmhook: a webhook host. Platforms POST webhooks; the host checks their signatures, runs a
//! per-platform WebAssembly component plugin that normalizes each into CloudEvents, stores them
//! durably and delivers them to subscribed destinations. See `ARCHITECTURE.md` for the map.

pub mod admin;
pub mod breaker;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod embedded_postgres;
pub mod events;
/// The fuzz targets' bodies (`host/fuzz`, `tests/fuzz_regressions.rs`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod hot_reload;
pub mod http_error;
pub mod http_server;
pub mod ingest;
pub mod ingest_queue;
pub mod loadgen;
pub mod metrics;
pub mod plugin_tools;
pub mod plugins;
pub mod queue;
pub mod rate_limit;
pub mod redaction;
pub mod replay;
pub mod retention;
pub mod retry;
pub mod routes;
pub mod send;
pub mod server;
pub mod signature;
pub mod store;
pub mod worker;
