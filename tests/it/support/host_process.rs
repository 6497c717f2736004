//! The `wasmhook` binary this test build made, as a child process (the test kit's
//! `HostProcess`), for the tests that kill, stop or measure a real host.

use std::path::Path;

use wasmhook_testkit::process::{HostOptions, HostProcess};

/// Starts `wasmhook serve` with `config_text` and `arguments` (e.g. `--no-worker`), logging to
/// a file, killed when dropped, and waits until it is ready.
pub async fn start(config_text: &str, arguments: &[&str]) -> HostProcess {
    let binary = Path::new(env!("CARGO_BIN_EXE_wasmhook"));
    HostProcess::start(config_text, HostOptions::new(binary, arguments)).await
}
