//! The running process: `serve` builds every part from the configuration and wires them
//! together, the HTTP accept loop every listener uses, the health and metrics endpoints, and the
//! background tasks (`tasks`: retention, the refreshers, the plugin swapper, the queue gauges,
//! the delivery worker), started in one place and stopped by one cancellation token. It may call
//! every other folder; nothing calls it except `main.rs`.

pub mod health;
pub mod http_server;
pub mod retention;
pub mod serve;
pub mod tasks;
