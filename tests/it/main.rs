//! The host's integration tests, one module per concern, in one test binary: linking one binary
//! instead of one per file is most of the build time of `cargo test`. Every module's tests run
//! in parallel with every other's (two at a time on two cores); tests that must run alone are in
//! `tests/alone/`.

mod support;

mod abuse;
mod admin;
mod architecture;
mod delivery;
mod fuzz_regressions;
mod hostile_input;
mod hot_reload;
mod ingest;
mod integrity;
mod limits;
mod outage;
mod plugin_cli;
mod plugin_runtime;
mod plugin_templates;
mod retention;
mod store_hardening;
