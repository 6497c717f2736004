//! The plugin author's commands, run as a real `wasmhook` process.

use crate::support;

use std::process::{Command, Output};

use support::{plugin_file, test_plugin_file};

fn wasmhook(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(arguments)
        .env(
            "XDG_CACHE_HOME",
            support::repository_root().join("target/test-cli-cache"),
        )
        .env("WASMHOOK_LOG", "info")
        .output()
        .expect("wasmhook runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_the_manifest() {
    let output = wasmhook(&["plugin", "check", plugin_file("github").to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["manifest"]["name"], "github");
    assert_eq!(report["manifest"]["signature"]["kind"], "body-hmac");
    assert_eq!(
        report["manifest"]["signature"]["header"],
        "x-hub-signature-256"
    );
    assert_eq!(report["manifest"]["dedupe_header"], "x-github-delivery");
    assert_eq!(report["content_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn check_fails_clearly_on_a_file_that_is_not_a_component() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("module.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let output = wasmhook(&["plugin", "check", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("not a WebAssembly component"), "{stderr}");
    assert!(stderr.contains("core WebAssembly module"), "{stderr}");
}

#[test]
fn run_prints_cloudevents_and_checks_a_github_signature_made_by_python() {
    let directory = tempfile::tempdir().unwrap();
    let body_path = directory.path().join("push.json");
    std::fs::write(
        &body_path,
        br#"{"ref":"refs/heads/main","before":"a","after":"b","commits":[],"pusher":{"name":"octocat"},"repository":{"full_name":"octo/hello"}}"#,
    )
    .unwrap();
    let body = std::fs::read(&body_path).unwrap();
    // GitHub's signature, computed by Python's hmac rather than by the host.
    let signature_header = format!(
        "X-Hub-Signature-256: sha256={}",
        support::python_hmac_sha256_hex(b"It's a Secret to Everybody", &body)
    );
    let plugin = plugin_file("github");
    let arguments = |signature_header: &str| {
        vec![
            "plugin".to_owned(),
            "run".to_owned(),
            plugin.to_str().unwrap().to_owned(),
            "--body".to_owned(),
            body_path.to_str().unwrap().to_owned(),
            "-H".to_owned(),
            "X-GitHub-Event: push".to_owned(),
            "-H".to_owned(),
            "X-GitHub-Delivery: 72d3162e".to_owned(),
            "-H".to_owned(),
            signature_header.to_owned(),
            "--secret".to_owned(),
            "It's a Secret to Everybody".to_owned(),
        ]
    };
    let as_refs = |arguments: &[String]| -> Vec<String> { arguments.to_vec() };

    let output = Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(as_refs(&arguments(&signature_header)))
        .env(
            "XDG_CACHE_HOME",
            support::repository_root().join("target/test-cli-cache"),
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one event, one JSON line: {stdout}");
    let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    for attribute in [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
    ] {
        assert!(event.get(attribute).is_some(), "{attribute} in {event}");
    }
    assert_eq!(event["type"], "github.push");
    assert_eq!(event["id"], "72d3162e");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("peak memory"),
        "the budget is reported: {stderr}"
    );

    let tampered = Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(as_refs(&arguments(
            "X-Hub-Signature-256: sha256=0000000000000000000000000000000000000000000000000000000000000000",
        )))
        .env("XDG_CACHE_HOME", support::repository_root().join("target/test-cli-cache"))
        .output()
        .unwrap();
    assert!(!tampered.status.success());
    assert!(
        text(&tampered.stderr).contains("no signature matched"),
        "{}",
        text(&tampered.stderr)
    );
    for output in [&output, &tampered] {
        let everything = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            !everything.contains("It's a Secret to Everybody"),
            "the secret never appears in output or logs"
        );
    }
}

#[test]
fn run_exits_non_zero_on_a_rejection_and_prints_the_reason() {
    let directory = tempfile::tempdir().unwrap();
    let body_path = directory.path().join("bad.json");
    std::fs::write(
        &body_path,
        br#"{"event_type":"content_added","platform":"hulu","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"1","title":"t"}}"#,
    )
    .unwrap();
    let output = wasmhook(&[
        "plugin",
        "run",
        plugin_file("netflix").to_str().unwrap(),
        "--body",
        body_path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let rejection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rejection["rejected"]["kind"], "invalid");
    assert!(
        rejection["rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("platform")
    );
}

/// Runs the hostile test plugin with `behaviour` as its config, an empty JSON body, and any
/// global flags before the subcommand.
fn run_hostile(global_flags: &[&str], behaviour: &str) -> Output {
    let directory = tempfile::tempdir().unwrap();
    let body_path = directory.path().join("body.json");
    std::fs::write(&body_path, b"{}").unwrap();
    let config_path = directory.path().join("config.txt");
    std::fs::write(&config_path, behaviour).unwrap();
    let plugin = test_plugin_file("hostile");
    let mut arguments: Vec<&str> = global_flags.to_vec();
    arguments.extend([
        "plugin",
        "run",
        plugin.to_str().unwrap(),
        "--body",
        body_path.to_str().unwrap(),
        "--config",
        config_path.to_str().unwrap(),
    ]);
    wasmhook(&arguments)
}

/// The stderr line that carries the well-behaved hostile plugin's log message.
fn polite_log_line(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    stderr
        .lines()
        .find(|line| line.contains("handling a request politely"))
        .unwrap_or_else(|| panic!("the plugin's log line is shown: {stderr}"))
        .to_owned()
}

#[test]
fn plugin_logs_reach_the_host_log_with_the_plugin_name() {
    let log_line = polite_log_line(&run_hostile(&[], "well-behaved"));
    assert!(log_line.contains("hostile@0.0.1"), "{log_line}");
}

#[test]
fn a_trapping_plugin_fails_the_run_with_the_cause() {
    let output = run_hostile(&[], "trap");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("trapped"), "{stderr}");
    assert!(stderr.contains("traps on purpose"), "{stderr}");
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let log_line = polite_log_line(&run_hostile(&["--log-format", "json"], "well-behaved"));
    let parsed: serde_json::Value = serde_json::from_str(&log_line).unwrap();
    assert_eq!(parsed["fields"]["plugin"], "hostile@0.0.1");
    assert_eq!(parsed["level"], "INFO");
}

#[test]
fn every_plugin_passes_its_fixtures() {
    for name in [
        "github", "netflix", "shopify", "gitlab", "stripe", "slack", "generic",
    ] {
        let fixtures = support::repository_root().join(format!("plugins/{name}/fixtures"));
        let output = wasmhook(&[
            "plugin",
            "run",
            plugin_file(name).to_str().unwrap(),
            "--fixtures",
            fixtures.to_str().unwrap(),
        ]);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {stdout}{}",
            text(&output.stderr)
        );
        assert!(stdout.contains(" passed, 0 failed"), "{name}: {stdout}");
        assert!(
            stdout.contains("peak memory"),
            "each fixture reports its budget"
        );
    }
}

#[test]
fn a_fixture_whose_expectation_is_wrong_fails_the_run() {
    let body = r#"{\"id\":1}"#;
    // Base64 of "not the mac": a well-formed Shopify signature header that does not match.
    let signature = "bm90IHRoZSBtYWM=";
    // Each fixture gets one thing wrong, and the run names what it got instead.
    let table = [
        (
            "wrong-type.json",
            r#""expect": {"outcome": "events", "types": ["shopify.orders.delete"]}"#.to_owned(),
            "shopify.orders.create".to_owned(),
        ),
        (
            "wrong-id.json",
            r#""expect": {"outcome": "events", "types": ["shopify.orders.create"], "ids": ["2"]}"#
                .to_owned(),
            r#"got ["1"]"#.to_owned(),
        ),
        (
            "wrong-data.json",
            r#""expect": {"outcome": "events", "types": ["shopify.orders.create"], "data": [{"/id": 2}]}"#
                .to_owned(),
            "expected 2 at \"/id\"".to_owned(),
        ),
        (
            "wrong-signature.json",
            format!(
                r#""signed": {{"at": 1, "headers": {{"X-Shopify-Hmac-Sha256": "{signature}"}}}},
                   "expect": {{"outcome": "events", "types": ["shopify.orders.create"]}}"#
            ),
            "the signature check failed".to_owned(),
        ),
    ];
    for (file, expectation, named) in table {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join(file),
            format!(
                r#"{{"headers": {{"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": "1"}},
                    "body": "{body}", "secret": "s", {expectation}}}"#
            ),
        )
        .unwrap();
        let output = wasmhook(&[
            "plugin",
            "run",
            plugin_file("shopify").to_str().unwrap(),
            "--fixtures",
            directory.path().to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2), "{file}");
        let stdout = text(&output.stdout);
        assert!(stdout.contains(&format!("FAIL {file}")), "{stdout}");
        assert!(stdout.contains(&named), "{file}: names {named:?}: {stdout}");
    }
}

/// A plugin's log message with a newline and terminal escapes stays one escaped line, and its
/// stdout lines are escaped too: a plugin cannot forge the host's log lines or drive the
/// operator's terminal.
#[test]
fn plugin_log_lines_are_escaped_so_they_cannot_forge_lines() {
    let output = run_hostile(&[], "log-forgery");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let escaped = r"first line\nINFO wasmhook: a forged line \u{1b}[31mred\u{1b}[0m";
    assert!(
        stderr.lines().any(|line| line.contains(escaped)),
        "the log message is one escaped line: {stderr}"
    );
    assert!(
        !stderr
            .lines()
            .any(|line| line.starts_with("INFO wasmhook: a forged line")),
        "a forged line reached the log: {stderr}"
    );
    assert!(
        !stderr.contains("\u{1b}[31mred"),
        "a raw escape reached the log: {stderr}"
    );
}
