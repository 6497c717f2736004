//! Shared helpers for the integration tests: where the built components live, and a runtime to
//! load them into. The components are real builds of `plugins/` and `tests/plugins/`; `make
//! test` builds them first.

#![allow(dead_code)]

pub mod app;
pub mod database;
pub mod host_process;
pub mod load;

use std::path::PathBuf;
use std::sync::Arc;

use wasmhook::plugins::engine::RuntimeSettings;
use wasmhook::plugins::{Plugin, PluginLimits, PluginRequest, PluginRuntime};

pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the repository")
        .to_path_buf()
}

pub fn built_component(folder: &str, name: &str) -> PathBuf {
    let path = repository_root()
        .join("target")
        .join(folder)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make plugins test-plugins` (or `make test`) first",
        path.display()
    );
    path
}

/// A production plugin built by `make plugins`.
pub fn plugin_file(name: &str) -> PathBuf {
    built_component("plugins", name)
}

/// A test-only plugin built by `make test-plugins`.
pub fn test_plugin_file(name: &str) -> PathBuf {
    built_component("test-plugins", name)
}

/// A compiled-code cache shared by the test processes, so each component compiles once.
pub fn shared_compiled_cache() -> PathBuf {
    repository_root().join("target").join("test-compiled-cache")
}

pub fn runtime() -> Arc<PluginRuntime> {
    PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: 16,
        compiled_cache_dir: Some(shared_compiled_cache()),
        ..RuntimeSettings::default()
    })
    .expect("the runtime starts")
}

pub async fn load_plugin(runtime: &Arc<PluginRuntime>, name: &str) -> Plugin {
    runtime
        .load_file(&plugin_file(name), PluginLimits::default())
        .await
        .unwrap_or_else(|error| panic!("loading {name}: {error}"))
}

/// A POST request with the given headers and body, received at `received_at`.
pub fn request(
    source_name: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    config: &str,
    received_at: chrono::DateTime<chrono::Utc>,
) -> PluginRequest {
    PluginRequest {
        request_id: format!("test-{}", source_name),
        method: "POST".to_owned(),
        path: format!("/webhooks/{source_name}"),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
            .collect(),
        body: body.to_vec(),
        received_at,
        source_name: source_name.to_owned(),
        config: config.to_owned(),
    }
}

/// No source secrets, for plugin calls that do not use the HMAC imports.
pub fn no_secrets() -> Arc<[wasmhook::signature::Secret]> {
    Arc::from(Vec::new())
}

/// The events of an outcome; anything else fails the test.
pub fn events(
    outcome: wasmhook::plugins::PluginOutcome,
) -> Vec<wasmhook::model::events::NormalizedEvent> {
    match outcome {
        wasmhook::plugins::PluginOutcome::Events(events) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

/// Runs a Python snippet with `message` on stdin and returns what it printed, trimmed.
fn python(snippet: &str, arguments: &[&str], message: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(snippet)
        .args(arguments)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the tests check signatures with an implementation of their own)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(message)
        .expect("python3 reads the message");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(output.status.success(), "python3 failed: {output:?}");
    String::from_utf8(output.stdout)
        .expect("python3 prints text")
        .trim()
        .to_owned()
}

/// HMAC-SHA256 of `message` under `key`, lower-case hex, computed by Python's `hmac`: a value
/// independent of the host's signing code, to check it against.
pub fn python_hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    python(
        "import hashlib, hmac, sys; \
         print(hmac.new(bytes.fromhex(sys.argv[1]), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
        &[&hex::encode(key)],
        message,
    )
}

/// SHA-256 of `message`, lower-case hex, computed by Python's `hashlib`.
pub fn python_sha256_hex(message: &[u8]) -> String {
    python(
        "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        &[],
        message,
    )
}
