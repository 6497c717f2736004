//! The running process: `serve` builds every part from the configuration and wires them
//! together, the HTTP accept loop every listener uses, the health and metrics endpoints, and the
//! background tasks (retention, queue gauges). It may call every other folder; nothing calls it
//! except `main.rs`.

pub mod health;
pub mod http_server;
pub mod retention;
pub mod serve;
