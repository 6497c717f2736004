//! Metrics, health and readiness. The metrics recorder is process-wide, so this test runs alone
//! (tests/alone), where the other tests start their hosts as child processes: the counters it
//! reads are exactly what its scripted run did.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wasmhook::signature::{self, MacEncoding, Secret, SignatureScheme};

use support::app::TestApp;
use wasmhook_testkit::receiver::{Receiver, Reply};

/// The value of the sample of `name` whose labels include every pair in `labels`.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_scripted_run_the_counters_equal_what_happened() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(204)).await;
    let app = TestApp::spawn(&format!(
        r#"
[[sources]]
name = "github"
plugin = "github"
secrets = ["gh-secret"]

[[sources]]
name = "broken"
plugin = "hostile"
config = "trap"

[[destinations]]
name = "ci"
url = "{}"
routes = ["github.push"]
allow_private_networks = true
retry_schedule_seconds = [0, 0.05, 0.05]
"#,
        receiver.url("/ci")
    ))
    .await;
    let scheme = SignatureScheme::BodyHmac {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    };
    // A body of its own per delivery: the same body under a new delivery id is a replay.
    let body = |delivery: &str| {
        format!(
            r#"{{"ref":"r","before":"a","after":"b","pusher":{{"name":"p"}},"delivery":"{delivery}"}}"#
        )
    };
    let headers = |delivery: &str, secret: &str| {
        let mut headers = signature::sign(
            &scheme,
            &Secret::new(secret),
            body(delivery).as_bytes(),
            "",
            0,
        )
        .unwrap();
        headers.push(("x-github-event".into(), "push".into()));
        headers.push(("x-github-delivery".into(), delivery.into()));
        headers
    };
    for delivery in ["a", "b", "c", "a"] {
        app.post("github", &headers(delivery, "gh-secret"), body(delivery))
            .await;
    }
    for delivery in ["x", "y"] {
        let response = app
            .post("github", &headers(delivery, "wrong"), body(delivery))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    app.post("nowhere", &[], "{}").await;
    app.post("broken", &[], "{}").await;

    // Three events, one of them answered 500 first: four attempts in all, counted once their
    // finishes are recorded (after the receiver saw them).
    let client = reqwest::Client::new();
    let attempts = |exposition: &str| {
        ["delivered", "retryable"].map(|outcome| {
            sample(
                exposition,
                "wasmhook_delivery_attempts_total",
                &[("destination", "ci"), ("outcome", outcome)],
            )
            .unwrap_or(0.0)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let exposition = loop {
        let exposition = client
            .get(format!("{}/metrics", app.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if attempts(&exposition).iter().sum::<f64>() >= 4.0 || Instant::now() > deadline {
            break exposition;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(receiver.requests().len(), 4, "{exposition}");
    let webhooks = |source: &str, outcome: &str| {
        sample(
            &exposition,
            "wasmhook_webhooks_total",
            &[("source", source), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        sample(
            &exposition,
            "wasmhook_webhooks_received_total",
            &[("source", "github")]
        ),
        Some(6.0),
        "{exposition}"
    );
    assert_eq!(webhooks("github", "accepted"), 3.0);
    assert_eq!(webhooks("github", "duplicate"), 1.0);
    assert_eq!(
        sample(
            &exposition,
            "wasmhook_webhooks_total",
            &[
                ("source", "github"),
                ("outcome", "rejected"),
                ("reason", "invalid_signature")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(webhooks("unknown", "rejected"), 1.0);
    assert_eq!(webhooks("broken", "quarantined"), 1.0);
    assert_eq!(
        sample(
            &exposition,
            "wasmhook_plugin_failures_total",
            &[("plugin", "hostile"), ("kind", "trap")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &exposition,
            "wasmhook_delivery_attempts_total",
            &[("destination", "ci"), ("outcome", "delivered")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &exposition,
            "wasmhook_delivery_attempts_total",
            &[("destination", "ci"), ("outcome", "retryable")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &exposition,
            "wasmhook_plugin_call_seconds_count",
            &[("plugin", "github")]
        ),
        Some(6.0 - 2.0),
        "signature failures never reach the plugin"
    );
    assert_eq!(
        sample(&exposition, "wasmhook_jobs", &[("state", "dead")]),
        Some(0.0)
    );
    assert!(
        sample(
            &exposition,
            "wasmhook_database_connections",
            &[("state", "idle")]
        )
        .is_some()
    );

    let health = client
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client
        .get(format!("{}/readyz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["database"], "reachable");
}
