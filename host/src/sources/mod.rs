//! Sources: the plugin versions every source runs, and following them when an operator loads a
//! new one (hot reload across processes). May call `plugins`, `store` and `model`; ingest, the
//! admin API and replay read sources through it.

pub mod hot_reload;
