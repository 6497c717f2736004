//! What the host's integration tests (`tests/`) and the load generator (`tools/bench`) share,
//! so that each exists once: the real `wasmhook serve` as a child process ([`process`]), a
//! scripted HTTP receiver for deliveries ([`receiver`]) and requests signed as a platform signs
//! them ([`signed`]). It may call the host's public API (signing), nothing else of the host.

pub mod process;
pub mod receiver;
pub mod signed;
