//! wasmhook: a webhook host. Platforms POST webhooks; the host checks their signatures, runs a
//! per-platform WebAssembly component plugin that normalizes each into CloudEvents, stores them
//! durably and delivers them to subscribed destinations. See `ARCHITECTURE.md` for the map.
//!
//! The folders are layered and their imports run one way: `app` → `admin`, `ingest`, `cli` →
//! `sources` → `delivery`, `plugins` → `store`, `signature` → `model`. The top-level modules
//! `config`, `metrics`, `rate_limit` and `http_error` are shared by the layers above the store.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
/// The fuzz targets' bodies (`host/fuzz`, `tests/it/fuzz_regressions.rs`); not an API, and only
/// with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http_error;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod plugins;
pub mod rate_limit;
pub mod signature;
pub mod sources;
pub mod store;
