//! The integration tests that must not share the machine or the process with other tests, one
//! at a time in a binary of their own: the fault tests compare latencies of child hosts under
//! load, the plugin isolation test times a bystander beside hostile plugins, and the
//! observability test reads process-wide metrics that no other test may add to.

#[path = "../it/support/mod.rs"]
mod support;

mod faults;
mod observability;
mod plugin_isolation;

/// Held by every test of this binary for its whole run.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
