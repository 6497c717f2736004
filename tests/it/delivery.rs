//! Delivery against scripted receivers on 127.0.0.1: outcomes, retries, dead letters and
//! replay, the circuit breaker, concurrency, the SSRF guard, expired leases, several workers,
//! and Standard Webhooks signatures checked by the official package.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use uuid::Uuid;
use wasmhook::store::jobs::ReplayFilter;

use support::app::TestApp;
use wasmhook_testkit::receiver::{Receiver, Reply};

const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn source() -> &'static str {
    r#"
[[sources]]
name = "acme"
plugin = "generic"
config = '{"signature": {"scheme": "none"}, "type_pointer": "/type"}'
"#
}

/// A destination on the receiver with short timings for tests; `extra` adds or overrides keys.
fn destination(name: &str, receiver: &Receiver, extra: &str) -> String {
    format!(
        r#"
[[destinations]]
name = "{name}"
url = "{url}"
secret = "{SIGNING_SECRET}"
routes = ["*"]
allow_private_networks = true
timeout_seconds = 0.5
retry_schedule_seconds = [0, 0.05, 0.05, 0.05]
throttle_min_delay_seconds = 0.05
{extra}
"#,
        url = receiver.url(&format!("/{name}"))
    )
}

async fn post_event(app: &TestApp, number: usize) -> Uuid {
    let response = app
        .post(
            "acme",
            &[],
            format!(r#"{{"type":"order.paid","number":{number}}}"#),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: serde_json::Value = response.json().await.unwrap();
    answer["event_id"].as_str().unwrap().parse().unwrap()
}

async fn attempts(
    app: &TestApp,
    event_id: Uuid,
) -> Vec<(i32, Option<i32>, String, Option<String>)> {
    sqlx::query_as(
        "SELECT a.attempt, a.status_code, a.outcome, a.error
         FROM delivery_attempts a JOIN delivery_jobs j ON j.id = a.job_id
         WHERE j.event_row_id = $1 ORDER BY a.attempt",
    )
    .bind(event_id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered_with_every_attempt_recorded() {
    let receiver = Receiver::start(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Status(204),
    )
    .await;
    let app = TestApp::spawn(&format!("{}{}", source(), destination("d", &receiver, ""))).await;
    let event_id = post_event(&app, 1).await;
    let attempt = app
        .wait_for_job_state(event_id, "delivered", Duration::from_secs(10))
        .await
        .attempt;
    assert_eq!(attempt, 3);
    let recorded = attempts(&app, event_id).await;
    let statuses: Vec<Option<i32>> = recorded.iter().map(|a| a.1).collect();
    assert_eq!(statuses, vec![Some(500), Some(503), Some(204)]);
    assert_eq!(recorded[2].2, "delivered");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "webhook-id is stable across retries"
    );
    let first = &requests[0];
    assert_eq!(
        first.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert!(first.header("user-agent").unwrap().starts_with("wasmhook/"));
    let event: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "order.paid");
    assert_eq!(event["data"]["number"], 1);
}

#[tokio::test]
async fn client_errors_fail_at_once_and_gone_pauses_the_destination() {
    let bad_request = Receiver::start(vec![], Reply::Status(400)).await;
    let gone = Receiver::start(vec![], Reply::Status(410)).await;
    let retry_all = Receiver::start(vec![Reply::Status(404)], Reply::Status(200)).await;
    let app = TestApp::spawn(&format!(
        "{}{}",
        source(),
        [
            destination("bad", &bad_request, ""),
            destination("gone", &gone, ""),
            destination("lenient", &retry_all, "retry_client_errors = true"),
        ]
        .concat()
    ))
    .await;
    let event_id = post_event(&app, 1).await;
    let app = &app;
    let job_state = |destination: &'static str| async move {
        let job = app
            .wait_for_settled_job(event_id, destination, Duration::from_secs(10))
            .await;
        (job.state, job.attempt)
    };
    assert_eq!(job_state("bad").await, ("failed".to_owned(), 1));
    assert_eq!(job_state("gone").await, ("failed".to_owned(), 1));
    assert_eq!(job_state("lenient").await, ("delivered".to_owned(), 2));
    let paused: bool = sqlx::query_scalar("SELECT paused FROM destinations WHERE name = 'gone'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(paused, "a 410 pauses the destination");
    assert_eq!(bad_request.requests().len(), 1, "no retries after a 400");
}

#[tokio::test]
async fn timeouts_and_dropped_connections_are_retried() {
    let receiver = Receiver::start(
        vec![Reply::Hang(Duration::from_secs(2)), Reply::Close],
        Reply::Status(200),
    )
    .await;
    let app = TestApp::spawn(&format!("{}{}", source(), destination("d", &receiver, ""))).await;
    let event_id = post_event(&app, 1).await;
    assert_eq!(
        app.wait_for_job_state(event_id, "delivered", Duration::from_secs(15))
            .await
            .attempt,
        3
    );
    let recorded = attempts(&app, event_id).await;
    assert!(
        recorded[0].3.as_deref().unwrap().contains("timed out"),
        "{recorded:?}"
    );
    assert_eq!(recorded[0].1, None);
    assert!(
        recorded[1].3.is_some(),
        "the dropped connection is an error: {recorded:?}"
    );
    assert_eq!(recorded[2].1, Some(200));
}

#[tokio::test]
async fn retry_after_is_honoured_within_the_bounds_and_jitter_stays_within_20_percent() {
    let receiver = Receiver::start(
        vec![
            Reply::StatusWithRetryAfter(429, "1".into()),
            Reply::StatusWithRetryAfter(503, "3600".into()),
        ],
        Reply::Status(200),
    )
    .await;
    let app = TestApp::spawn(&format!(
        "{}{}",
        source(),
        destination(
            "d",
            &receiver,
            "retry_schedule_seconds = [0, 0.6, 0.5]\nthrottle_min_delay_seconds = 0"
        )
        .replace("retry_schedule_seconds = [0, 0.05, 0.05, 0.05]\n", "")
        .replace("throttle_min_delay_seconds = 0.05\n", "")
    ))
    .await;
    let event_id = post_event(&app, 1).await;
    app.wait_for_job_state(event_id, "delivered", Duration::from_secs(15))
        .await;
    let arrivals: Vec<Instant> = receiver.requests().iter().map(|r| r.arrived_at).collect();
    assert_eq!(arrivals.len(), 3);
    // After the 429: the 0.6 s delay jittered into [0.48, 0.72]; Retry-After 1 s lies within
    // [delay, 2 × delay] for every such delay, so the wait is 1 s.
    let first_gap = arrivals[1] - arrivals[0];
    assert!(
        first_gap >= Duration::from_millis(950) && first_gap < Duration::from_millis(1900),
        "first gap {first_gap:?}"
    );
    // After the 503: the 0.5 s delay jittered into [0.4, 0.6]; Retry-After 3600 s is clamped
    // to twice the delay, at most 1.2 s.
    let second_gap = arrivals[2] - arrivals[1];
    assert!(
        second_gap >= Duration::from_millis(750) && second_gap < Duration::from_millis(2100),
        "second gap {second_gap:?}"
    );
}

#[tokio::test]
async fn a_job_dies_after_the_last_attempt_and_replay_delivers_it() {
    let receiver = Receiver::start(vec![], Reply::Status(500)).await;
    let app = TestApp::spawn(&format!("{}{}", source(), destination("d", &receiver, ""))).await;
    let event_id = post_event(&app, 1).await;
    assert_eq!(
        app.wait_for_job_state(event_id, "dead", Duration::from_secs(10))
            .await
            .attempt,
        4,
        "exactly the four attempts of the schedule"
    );
    assert_eq!(receiver.requests().len(), 4);

    receiver.answer_from_now_on(Reply::Status(200));
    let filter = ReplayFilter {
        destination_name: Some("d".into()),
        job_states: vec!["dead".into()],
        ..ReplayFilter::default()
    };
    assert_eq!(
        wasmhook::store::jobs::count_replay(&app.pool, &filter)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        wasmhook::store::jobs::replay(&app.pool, &filter)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        app.wait_for_job_state(event_id, "delivered", Duration::from_secs(10))
            .await
            .attempt,
        5,
        "a replay restarts the schedule; attempt numbers keep counting"
    );
    assert_eq!(receiver.requests().len(), 5);
}

#[tokio::test]
async fn the_breaker_opens_holds_attempts_probes_and_closes() {
    let receiver = Receiver::start(
        vec![Reply::Status(500), Reply::Status(500), Reply::Status(500)],
        Reply::Status(200),
    )
    .await;
    let app = TestApp::spawn(&format!(
        "{}{}",
        source(),
        destination(
            "d",
            &receiver,
            "breaker_failure_threshold = 3\nbreaker_cooldown_seconds = 1.0\nmax_concurrency = 1"
        )
    ))
    .await;
    let first = post_event(&app, 1).await;
    let requests = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(requests.len(), 3);
    let opened_at = requests[2].arrived_at;
    let others = [post_event(&app, 2).await, post_event(&app, 3).await];
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.requests().len(),
        3,
        "while the breaker is open, nothing is sent and no attempt is spent"
    );
    app.wait_for_job_state(first, "delivered", Duration::from_secs(10))
        .await;
    for event in others {
        assert_eq!(
            app.wait_for_job_state(event, "delivered", Duration::from_secs(10))
                .await
                .attempt,
            1,
            "jobs held by the open breaker spent no attempt"
        );
    }
    let requests = receiver.requests();
    let probe = &requests[3];
    assert!(
        probe.arrived_at - opened_at >= Duration::from_millis(900),
        "the probe waited for the cool-down"
    );
    assert_eq!(requests.len(), 6);
}

#[tokio::test]
async fn a_receiver_never_sees_more_than_the_concurrency_limit() {
    let receiver = Receiver::start(vec![], Reply::Hang(Duration::from_millis(150))).await;
    let app = TestApp::spawn(&format!(
        "{}{}",
        source(),
        destination("d", &receiver, "max_concurrency = 3")
    ))
    .await;
    let mut events = Vec::new();
    for number in 0..12 {
        events.push(post_event(&app, number).await);
    }
    for event in events {
        app.wait_for_job_state(event, "delivered", Duration::from_secs(15))
            .await;
    }
    assert_eq!(receiver.max_in_flight(), 3);
}

#[tokio::test]
async fn private_and_loopback_destinations_are_refused_without_the_flag() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let port = receiver.address.port();
    let urls = [
        ("loopback", format!("http://127.0.0.1:{port}/x")),
        ("private", "http://10.0.0.1/x".to_owned()),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data".to_owned(),
        ),
        ("ipv6-loopback", format!("http://[::1]:{port}/x")),
        ("name-to-loopback", format!("http://localhost:{port}/x")),
    ];
    let destinations: String = urls
        .iter()
        .map(|(name, url)| {
            format!("[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\nroutes = [\"*\"]\n")
        })
        .collect();
    let app = TestApp::spawn(&format!("{}{destinations}", source())).await;
    let event_id = post_event(&app, 1).await;
    let rows = app
        .wait_for_jobs(event_id, Duration::from_secs(10), |jobs| {
            jobs.iter().all(|job| job.state == "failed")
        })
        .await;
    assert!(
        rows.iter().all(|job| job.state == "failed"),
        "not all refused: {rows:?}"
    );
    assert_eq!(rows.len(), urls.len());
    for job in rows {
        assert!(
            job.last_error
                .as_deref()
                .unwrap_or_default()
                .starts_with("refused"),
            "{}: {:?}",
            job.destination_name,
            job.last_error
        );
    }
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the loopback receiver"
    );
}

#[tokio::test]
async fn a_job_whose_worker_died_is_delivered_by_another_worker() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    // A host that only ingests: no worker of its own.
    let app = TestApp::spawn_with_roles(
        &format!("{}{}", source(), destination("d", &receiver, "")),
        wasmhook::app::serve::Roles {
            ingest: true,
            worker: false,
        },
    )
    .await;
    let event_id = post_event(&app, 1).await;

    // A worker claims the job and dies: its lease is short and it never finishes.
    let claimed = wasmhook::store::jobs::claim(&app.pool, "d", 1, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(receiver.requests().is_empty());

    // Another worker rescues the expired lease and delivers; the lost attempt counts.
    let worker = app
        .start_another(wasmhook::app::serve::Roles {
            ingest: false,
            worker: true,
        })
        .await;
    assert_eq!(
        app.wait_for_job_state(event_id, "delivered", Duration::from_secs(10))
            .await
            .attempt,
        2
    );
    assert_eq!(receiver.requests().len(), 1);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_database_deliver_each_job_once() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = TestApp::spawn(&format!("{}{}", source(), destination("d", &receiver, ""))).await;
    let second = app
        .start_another(wasmhook::app::serve::Roles {
            ingest: false,
            worker: true,
        })
        .await;
    let posts = (0..200).map(|number| post_event(&app, number));
    let events = futures::future::join_all(posts).await;
    for event in &events {
        app.wait_for_job_state(*event, "delivered", Duration::from_secs(20))
            .await;
    }
    let requests = receiver.requests();
    let mut ids: Vec<&str> = requests
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    ids.sort_unstable();
    let total = ids.len();
    ids.dedup();
    assert_eq!(
        (total, ids.len()),
        (200, 200),
        "each job delivered exactly once"
    );
    second.shutdown().await.unwrap();
}

/// The official `standardwebhooks` package (PyPI) verifies what a receiver got.
#[tokio::test]
async fn deliveries_verify_with_the_official_standard_webhooks_package() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = TestApp::spawn(&format!("{}{}", source(), destination("d", &receiver, ""))).await;
    let event_id = post_event(&app, 7).await;
    app.wait_for_job_state(event_id, "delivered", Duration::from_secs(10))
        .await;
    let request = receiver.requests().remove(0);
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("body"), &request.body).unwrap();
    let headers: serde_json::Map<String, serde_json::Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|name| {
                (
                    name.to_string(),
                    serde_json::json!(request.header(name).unwrap()),
                )
            })
            .collect();
    std::fs::write(
        directory.path().join("headers.json"),
        serde_json::to_vec(&headers).unwrap(),
    )
    .unwrap();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
directory = sys.argv[1]
body = open(directory + "/body", "rb").read()
headers = json.load(open(directory + "/headers.json"))
Webhook(sys.argv[2]).verify(body, headers)
tampered = body.replace(b"7", b"8")
try:
    Webhook(sys.argv[2]).verify(tampered, headers)
    sys.exit("a tampered body verified")
except Exception:
    pass
print("verified")
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(directory.path())
        .arg(SIGNING_SECRET)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("verified"),
        "stdout: {} stderr: {} (make test installs standardwebhooks from PyPI)",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_quarantined_request_is_replayed_through_the_fixed_plugin_and_delivered() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let broken = format!(
        "[[sources]]\nname = \"flaky\"\nplugin = \"hostile\"\nconfig = \"trap\"\n{}",
        destination("d", &receiver, "")
    );
    let app = TestApp::spawn(&broken).await;
    let response = app.post("flaky", &[], r#"{"keep":"me"}"#).await;
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "quarantined");
    let request_id: Uuid = answer["request_id"].as_str().unwrap().parse().unwrap();

    // The operator fixes the source (here: its configuration) and replays.
    let fixed = wasmhook::config::Config::from_toml(
        &app.config_text()
            .replace("config = \"trap\"", "config = \"well-behaved\""),
    )
    .unwrap();
    // Applied as a host restart with the fixed config applies it.
    wasmhook::store::sources::apply_config_sources(
        &app.pool,
        &[(fixed.sources[0].to_record(), vec![])],
    )
    .await
    .unwrap();
    let results = wasmhook::ingest::replay::replay_quarantined(&fixed, &app.pool, Some(request_id))
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    let event_id = match &results[0].1 {
        wasmhook::ingest::replay::QuarantineReplay::Stored(
            wasmhook::model::ingest::IngestOutcome::Accepted { event_ids },
        ) => event_ids[0],
        other => panic!("expected the events to be stored, got {other:?}"),
    };
    let status: String = sqlx::query_scalar("SELECT status FROM raw_requests WHERE id = $1")
        .bind(request_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "accepted");
    app.wait_for_job_state(event_id, "delivered", Duration::from_secs(10))
        .await;
    let delivered: serde_json::Value =
        serde_json::from_slice(&receiver.requests()[0].body).unwrap();
    assert_eq!(
        delivered["data"]["bytes"], 13,
        "the stored body went through the plugin"
    );
}

#[tokio::test]
async fn shutdown_gives_back_deliveries_that_did_not_finish_in_the_grace_period() {
    let receiver = Receiver::start(vec![], Reply::Hang(Duration::from_secs(8))).await;
    let mut app = TestApp::spawn(&format!(
        "{}{}",
        source(),
        destination("d", &receiver, "").replace("timeout_seconds = 0.5", "timeout_seconds = 20")
    ))
    .await;
    let event_id = post_event(&app, 1).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let started = Instant::now();
    app.server.take().unwrap().shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "shutdown waited for the grace period, not for the receiver"
    );
    let (state, attempt): (String, i32) =
        sqlx::query_as("SELECT state, attempt FROM delivery_jobs WHERE event_row_id = $1")
            .bind(event_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempt),
        ("due", 0),
        "the lease was given back unspent"
    );
}

#[tokio::test]
async fn a_destination_rate_limit_spreads_deliveries_out() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = TestApp::spawn(&format!(
        "{}{}",
        source(),
        destination("d", &receiver, "rate_limit_per_second = 4.0")
    ))
    .await;
    let mut events = Vec::new();
    for number in 0..12 {
        events.push(post_event(&app, number).await);
    }
    for event in events {
        app.wait_for_job_state(event, "delivered", Duration::from_secs(15))
            .await;
    }
    let arrivals: Vec<Instant> = receiver.requests().iter().map(|r| r.arrived_at).collect();
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    // A burst of 4, then 4 per second: the other 8 need at least 2 seconds.
    assert!(
        span >= Duration::from_millis(1800),
        "12 deliveries took only {span:?}"
    );
}

/// A breaker whose cool-down ends while nothing is due must still let the next job probe.
#[tokio::test]
async fn a_breaker_that_cools_down_with_nothing_due_still_probes_later_jobs() {
    let receiver = Receiver::start(
        vec![Reply::Status(500), Reply::Status(500)],
        Reply::Status(200),
    )
    .await;
    let app = TestApp::spawn(&format!(
        "{}{}",
        source(),
        destination(
            "d",
            &receiver,
            "breaker_failure_threshold = 2\nbreaker_cooldown_seconds = 0.3\nmax_concurrency = 1"
        )
        .replace(
            "retry_schedule_seconds = [0, 0.05, 0.05, 0.05]",
            "retry_schedule_seconds = [0, 0.05]"
        )
    ))
    .await;
    let first = post_event(&app, 1).await;
    app.wait_for_job_state(first, "dead", Duration::from_secs(10))
        .await;
    // The breaker opened; its cool-down passes with no job due.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = post_event(&app, 2).await;
    assert_eq!(
        app.wait_for_job_state(later, "delivered", Duration::from_secs(10))
            .await
            .attempt,
        1
    );
}
