//! Retention deletes what is old and finished, keeps what is pending or recent, and does not
//! block ingest while it runs.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wasmhook::retention::{RetentionSettings, run_pass};

use support::app::TestApp;
use support::receiver::{Receiver, Reply};

const OLD_FINISHED: i64 = 6000;
const OLD_PENDING: i64 = 10;

async fn seed_old_rows(pool: &sqlx::PgPool) {
    // Old requests with one event and one delivered job (with an attempt) each, and a few old
    // requests whose job is still retrying.
    sqlx::query(
        "WITH raw AS (
             INSERT INTO raw_requests (id, source_name, received_at, method, path, query, headers, body, status, plugin)
             SELECT gen_random_uuid(), 'acme', now() - interval '40 days', 'POST', '/webhooks/acme', '',
                    '[]'::jsonb, '\\x7b7d'::bytea, 'accepted', 'generic@0.1.0'
             FROM generate_series(1, $1 + $2) RETURNING id
         ), numbered AS (SELECT id, row_number() OVER () AS n FROM raw),
         event AS (
             INSERT INTO events (id, raw_request_id, source_name, event_id, event_type, event_source, time, data, route_keys, created_at)
             SELECT gen_random_uuid(), id, 'acme', 'old-' || n, 'order.paid', 'urn:test', '', '{}', '{order.paid}', now() - interval '40 days'
             FROM numbered RETURNING id, event_id
         ), job AS (
             INSERT INTO delivery_jobs (id, event_row_id, destination_name, state, attempt, next_attempt_at, created_at)
             SELECT gen_random_uuid(), id, 'd',
                    CASE WHEN substr(event_id, 5)::int <= $2 THEN 'retrying' ELSE 'delivered' END,
                    1, now() + interval '1 day', now() - interval '40 days'
             FROM event RETURNING id
         )
         INSERT INTO delivery_attempts (id, job_id, attempt, started_at, duration_ms, outcome)
         SELECT gen_random_uuid(), id, 1, now() - interval '40 days', 1, 'delivered' FROM job",
    )
    .bind(OLD_FINISHED)
    .bind(OLD_PENDING)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dedupe_keys (source_name, event_id, event_row_id, created_at)
         SELECT 'acme', 'expired-' || n, gen_random_uuid(), now() - interval '8 days'
         FROM generate_series(1, 2000) AS n",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_finished_rows_in_batches_without_blocking_ingest() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = TestApp::spawn(&format!(
        r#"
[[sources]]
name = "acme"
plugin = "generic"
config = '{{"signature": {{"scheme": "none"}}}}'

[[destinations]]
name = "d"
url = "{}"
routes = ["*"]
allow_private_networks = true
"#,
        receiver.url("/d")
    ))
    .await;
    seed_old_rows(&app.pool).await;

    let settings = RetentionSettings {
        events: Duration::from_secs(30 * 86400),
        attempts: Duration::from_secs(30 * 86400),
        dedupe_keys: Duration::from_secs(7 * 86400),
        batch_size: 200,
        pause_between_batches: Duration::from_millis(5),
        interval: Duration::from_secs(3600),
    };
    let pool = app.pool.clone();
    let retention = tokio::spawn(async move {
        let totals = run_pass(&pool, &settings, 1000).await.unwrap();
        (totals, Instant::now())
    });

    // Each request's start and latency. A generous bound: it tells a request that waited for
    // the pass (a lock held across batches) from one that did not, not how fast ingest is.
    let mut ingest_timings = Vec::new();
    for number in 0..30 {
        let sent = Instant::now();
        let response = app
            .post("acme", &[], format!(r#"{{"fresh":{number}}}"#))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        ingest_timings.push((sent, sent.elapsed()));
    }
    let (totals, retention_finished) = retention.await.unwrap();
    let answered_during_the_pass = ingest_timings
        .iter()
        .filter(|(sent, latency)| *sent + *latency < retention_finished)
        .count();
    assert!(
        answered_during_the_pass > 0,
        "ingest answered while retention was still deleting"
    );
    for (number, (_, latency)) in ingest_timings.iter().enumerate() {
        assert!(
            *latency < Duration::from_secs(5),
            "request {number} took {latency:?} while retention ran: it waited for the pass"
        );
    }
    assert_eq!(totals.raw_requests, OLD_FINISHED as u64);
    assert_eq!(totals.dedupe_keys, 2000);

    let (old_left, pending_left, fresh): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM raw_requests WHERE received_at < now() - interval '30 days'),
                (SELECT count(*) FROM delivery_jobs WHERE state = 'retrying'),
                (SELECT count(*) FROM raw_requests WHERE received_at > now() - interval '1 day')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        old_left, OLD_PENDING,
        "requests with pending deliveries are kept"
    );
    assert_eq!(pending_left, OLD_PENDING);
    assert_eq!(fresh, 30, "recent requests are kept");
    let old_attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_attempts WHERE started_at < now() - interval '30 days'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(old_attempts, 0);
}
