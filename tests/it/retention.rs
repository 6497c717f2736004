//! Retention deletes what is old and finished, keeps what is pending or recent, and does not
//! block ingest while it runs.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use wasmhook::app::retention::{RetentionSettings, run_pass};

use support::app::TestApp;
use wasmhook_testkit::receiver::{Receiver, Reply};

const OLD_FINISHED: i64 = 6000;

/// Retention passes and the deletion counters they move are process-wide, so the tests that
/// run passes take turns.
static RETENTION_PASSES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
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
    let _turn = RETENTION_PASSES.lock().await;
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
        replayable: Duration::from_secs(90 * 86400),
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
    assert_no_orphans(&app.pool).await;
}

/// No event outlived its request and no job its event: retention deletes them together, since
/// no foreign key cascades (migration 0009).
async fn assert_no_orphans(pool: &sqlx::PgPool) {
    let (orphan_events, orphan_jobs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events e
                 WHERE NOT EXISTS (SELECT 1 FROM raw_requests r WHERE r.id = e.raw_request_id)),
                (SELECT count(*) FROM delivery_jobs j
                 WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = j.event_row_id))",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (orphan_events, orphan_jobs),
        (0, 0),
        "orphans after retention"
    );
}

fn settings() -> RetentionSettings {
    RetentionSettings {
        events: Duration::from_secs(30 * 86400),
        attempts: Duration::from_secs(30 * 86400),
        dedupe_keys: Duration::from_secs(7 * 86400),
        replayable: Duration::from_secs(90 * 86400),
        batch_size: 100,
        pause_between_batches: Duration::from_millis(1),
        interval: Duration::from_secs(3600),
    }
}

/// The host's own background retention keeps everything, so that only the passes a test runs
/// delete (and count) rows.
fn one_source_config(source: &str, plugin: &str, config: &str, receiver: &Receiver) -> String {
    format!(
        r#"
[retention]
events_days = 100000
replayable_days = 100000
attempts_days = 100000

[[sources]]
name = "{source}"
plugin = "{plugin}"
config = '{config}'

[[destinations]]
name = "d"
url = "{}"
routes = ["*"]
allow_private_networks = true
"#,
        receiver.url("/d")
    )
}

const NO_SIGNATURE: &str = r#"{"signature": {"scheme": "none"}}"#;

/// One request of `source` received `age_days` ago with `status`, and for accepted ones one
/// event with one job in `job_state`, written in one statement (so that no retention pass sees
/// the request without its job).
async fn seed_request(
    pool: &sqlx::PgPool,
    source: &str,
    age_days: i32,
    status: &str,
    job_state: Option<&str>,
    body: &[u8],
) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH raw AS (
             INSERT INTO raw_requests (id, source_name, received_at, method, path, query, headers, body, status, plugin)
             VALUES ($1, $2, now() - make_interval(days => $3), 'POST', '/webhooks/' || $2, '', '[]', $4, $5, 'seeded@0.0.1')
             RETURNING id
         ), event AS (
             INSERT INTO events (id, raw_request_id, source_name, event_id, event_type, event_source, time, data, route_keys, created_at)
             SELECT gen_random_uuid(), id, $2, id::text, 'order.paid', 'urn:test', '', '{}', '{order.paid}', now() - make_interval(days => $3)
             FROM raw WHERE $6::text IS NOT NULL
             RETURNING id
         )
         INSERT INTO delivery_jobs (id, event_row_id, destination_name, state, attempt, next_attempt_at, created_at)
         SELECT gen_random_uuid(), id, 'd', $6, 1, now() + interval '1 day', now() - make_interval(days => $3) FROM event",
    )
    .bind(id)
    .bind(source)
    .bind(age_days)
    .bind(body)
    .bind(status)
    .bind(job_state)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// `wasmhook_retention_deleted_total` per kind, as `/metrics` renders it.
fn deleted_counts() -> std::collections::HashMap<String, u64> {
    wasmhook::metrics::handle()
        .render()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("wasmhook_retention_deleted_total{kind=\"")?;
            let (kind, value) = rest.split_once("\"} ")?;
            Some((kind.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

async fn exists(pool: &sqlx::PgPool, id: uuid::Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM raw_requests WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn what_is_kept_for_replay_has_its_own_retention_and_deletions_are_counted() {
    let _turn = RETENTION_PASSES.lock().await;
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = TestApp::spawn(&one_source_config(
        "acme",
        "generic",
        NO_SIGNATURE,
        &receiver,
    ))
    .await;
    // (what, age in days, status, job state, kept by a pass with 30 and 90 days)
    let cases = [
        (
            "delivered 40 days ago",
            40,
            "accepted",
            Some("delivered"),
            false,
        ),
        ("quarantined 40 days ago", 40, "quarantined", None, true),
        ("dead 40 days ago", 40, "accepted", Some("dead"), true),
        ("failed 40 days ago", 40, "accepted", Some("failed"), true),
        ("quarantined 100 days ago", 100, "quarantined", None, false),
        ("dead 100 days ago", 100, "accepted", Some("dead"), false),
        (
            "retrying 100 days ago",
            100,
            "accepted",
            Some("retrying"),
            true,
        ),
        (
            "delivered yesterday",
            1,
            "accepted",
            Some("delivered"),
            true,
        ),
    ];
    let mut seeded = Vec::new();
    for (what, age, status, job_state, kept) in cases {
        let id = seed_request(&app.pool, "acme", age, status, job_state, b"{}").await;
        seeded.push((what, id, kept));
    }
    let before = deleted_counts();

    let totals = run_pass(&app.pool, &settings(), 100).await.unwrap();

    for (what, id, kept) in seeded {
        assert_eq!(exists(&app.pool, id).await, kept, "{what}: kept");
    }
    assert_eq!((totals.raw_requests, totals.replayable_requests), (1, 2));
    assert_no_orphans(&app.pool).await;
    let after = deleted_counts();
    let deleted =
        |kind: &str| after.get(kind).copied().unwrap_or(0) - before.get(kind).copied().unwrap_or(0);
    assert_eq!(
        (deleted("requests"), deleted("replayable_requests")),
        (1, 2),
        "/metrics counts what retention deleted: {after:?}"
    );
}

/// Whether a quarantine replay holds its guard (a shared advisory lock) in this database.
async fn replay_guard_held(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
             WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_requests_a_replay_is_working_on() {
    let _turn = RETENTION_PASSES.lock().await;
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    // Every replayed request spins until its deadline, so the replay runs for a while.
    let app = TestApp::spawn(&one_source_config(
        "spin",
        "hostile",
        "endless-loop",
        &receiver,
    ))
    .await;
    const REQUESTS: usize = 20;
    for _ in 0..REQUESTS {
        seed_request(&app.pool, "spin", 100, "quarantined", None, b"{}").await;
    }
    const DELIVERED: usize = 3;
    let mut delivered = Vec::new();
    for _ in 0..DELIVERED {
        delivered
            .push(seed_request(&app.pool, "spin", 100, "accepted", Some("delivered"), b"{}").await);
    }
    let config = wasmhook::config::Config::from_toml(app.config_text()).unwrap();
    let pool = app.pool.clone();
    let replay = tokio::spawn(async move {
        wasmhook::ingest::replay::replay_quarantined(&config, &pool, None)
            .await
            .unwrap()
    });

    // Wait until the replay holds its guard (a shared advisory lock in this database).
    let mut guarded = false;
    for _ in 0..3000 {
        guarded = replay_guard_held(&app.pool).await;
        if guarded || replay.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(guarded, "the replay took no guard against retention");
    let during = run_pass(&app.pool, &settings(), 100).await.unwrap();
    let still_quarantined: i64 =
        sqlx::query_scalar("SELECT count(*) FROM raw_requests WHERE status = 'quarantined'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(during.replayable_requests, 0);
    assert_eq!(
        still_quarantined, REQUESTS as i64,
        "nothing under replay was deleted"
    );
    assert!(
        during.replayable_skipped,
        "the pass says it left the replayable requests"
    );
    assert_eq!(
        during.raw_requests, DELIVERED as u64,
        "requests whose deliveries all succeeded are still deleted during a replay"
    );
    for id in delivered {
        assert!(!exists(&app.pool, id).await, "a delivered request was kept");
    }

    let results = replay.await.unwrap();
    assert_eq!(results.len(), REQUESTS);
    assert!(results.iter().all(|(_, outcome)| matches!(
        outcome,
        wasmhook::ingest::replay::QuarantineReplay::StillFailing(_)
    )));
    // The guard goes with the replay's connection, which the server ends a moment after the
    // replay closed it: the replay is over once the lock is gone.
    for _ in 0..3000 {
        if !replay_guard_held(&app.pool).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = run_pass(&app.pool, &settings(), 100).await.unwrap();
    assert_eq!(
        after.replayable_requests, REQUESTS as u64,
        "once the replay is over they expire"
    );
    assert!(!after.replayable_skipped);
}

/// Whether a session of this database waits for the replay guard in `mode`.
async fn waits_for_the_guard(pool: &sqlx::PgPool, mode: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
             WHERE locktype = 'advisory' AND mode = $1 AND NOT granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
    )
    .bind(mode)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_replay_waits_for_a_retention_batch_and_its_rows_are_then_kept() {
    let _turn = RETENTION_PASSES.lock().await;
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    // No worker: the replayed job stays due instead of being delivered during the test.
    let app = TestApp::spawn_with_roles(
        &one_source_config("acme", "generic", NO_SIGNATURE, &receiver),
        wasmhook::app::serve::Roles {
            ingest: true,
            worker: false,
        },
    )
    .await;
    let dead = seed_request(&app.pool, "acme", 100, "accepted", Some("dead"), b"{}").await;

    // A retention batch in progress holds the guard exclusively.
    let mut retention_batch = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(wasmhook::store::retention::REPLAY_GUARD_LOCK)
        .execute(&mut *retention_batch)
        .await
        .unwrap();
    let pool = app.pool.clone();
    let replay = tokio::spawn(async move {
        let filter = wasmhook::store::jobs::ReplayFilter {
            job_states: vec!["dead".to_owned()],
            ..Default::default()
        };
        wasmhook::store::jobs::replay(&pool, &filter).await.unwrap()
    });
    let mut waiting = false;
    for _ in 0..3000 {
        waiting = waits_for_the_guard(&app.pool, "ShareLock").await;
        if waiting || replay.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        waiting,
        "the job replay did not wait for the retention batch"
    );
    retention_batch.commit().await.unwrap();
    assert_eq!(replay.await.unwrap(), 1);

    let totals = run_pass(&app.pool, &settings(), 100).await.unwrap();
    assert_eq!(totals.replayable_requests, 0);
    assert!(
        exists(&app.pool, dead).await,
        "a replayed delivery is pending, so it is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_replay_over_several_pages_replays_every_request_exactly_once() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = TestApp::spawn(&one_source_config(
        "acme",
        "generic",
        NO_SIGNATURE,
        &receiver,
    ))
    .await;
    let total = wasmhook::ingest::replay::QUARANTINE_PAGE_SIZE as usize * 5 / 2;
    let mut seeded = std::collections::HashSet::new();
    for number in 0..total {
        // Every third request is still refused, so it stays quarantined and in the pages.
        let body = if number % 3 == 0 {
            format!("not json {number}")
        } else {
            format!(r#"{{"number":{number}}}"#)
        };
        seeded
            .insert(seed_request(&app.pool, "acme", 1, "quarantined", None, body.as_bytes()).await);
    }
    let config = wasmhook::config::Config::from_toml(app.config_text()).unwrap();

    // The second request is the first the replay stores: holding its row stops the replay
    // there, in the first page, while a request newer than every seeded one arrives. A replay
    // that reads page by page finds the newcomer in a later page; one that read every
    // quarantined request at the start (holding every body at once) would not.
    let first_stored = first_seeded_after(&app.pool, 1).await;
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM raw_requests WHERE id = $1 FOR UPDATE")
        .bind(first_stored)
        .execute(&mut *holder)
        .await
        .unwrap();
    let replay = tokio::spawn({
        let pool = app.pool.clone();
        async move {
            wasmhook::ingest::replay::replay_quarantined(&config, &pool, None)
                .await
                .unwrap()
        }
    });
    let mut blocked = false;
    for _ in 0..3000 {
        blocked = a_session_waits_for_a_row_lock(&app.pool).await;
        if blocked || replay.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(blocked, "the replay never reached the held request");
    let newcomer = seed_request(&app.pool, "acme", 0, "quarantined", None, br#"{"late":1}"#).await;
    holder.commit().await.unwrap();
    seeded.insert(newcomer);
    let total = total + 1;
    let results = replay.await.unwrap();

    let replayed: std::collections::HashSet<uuid::Uuid> =
        results.iter().map(|(id, _)| *id).collect();
    assert!(
        replayed.contains(&newcomer),
        "the request that arrived during the replay was read in a later page"
    );
    assert_eq!(results.len(), total, "each request once");
    assert_eq!(replayed, seeded, "every request");
    let stored = results
        .iter()
        .filter(|(_, outcome)| {
            matches!(
                outcome,
                wasmhook::ingest::replay::QuarantineReplay::Stored(_)
            )
        })
        .count();
    assert_eq!(stored, total - total.div_ceil(3));
    let counts = app.counts().await;
    assert_eq!(
        (counts.quarantined as usize, counts.events as usize),
        (total.div_ceil(3), stored)
    );
}

/// The id of the quarantined request at `position` in replay order.
async fn first_seeded_after(pool: &sqlx::PgPool, position: i64) -> uuid::Uuid {
    sqlx::query_scalar(
        "SELECT id FROM raw_requests WHERE status = 'quarantined'
         ORDER BY received_at, id OFFSET $1 LIMIT 1",
    )
    .bind(position)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Whether a session of this database waits for a row lock (a transaction id lock).
async fn a_session_waits_for_a_row_lock(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
             WHERE locktype = 'transactionid' AND NOT granted
               AND database IS NULL AND pid IN (
                   SELECT pid FROM pg_stat_activity WHERE datname = current_database()))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_dry_run_counts_every_quarantined_request() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = TestApp::spawn(&one_source_config(
        "acme",
        "generic",
        NO_SIGNATURE,
        &receiver,
    ))
    .await;
    const QUARANTINED: i64 = 10_001;
    sqlx::query(
        "INSERT INTO raw_requests (id, source_name, received_at, method, path, query, headers, body, status, plugin)
         SELECT gen_random_uuid(), 'acme', now(), 'POST', '/webhooks/acme', '', '[]', '\\x7b7d', 'quarantined', 'generic@0.1.0'
         FROM generate_series(1, $1)",
    )
    .bind(QUARANTINED)
    .execute(&app.pool)
    .await
    .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("wasmhook.toml");
    std::fs::write(&config_path, app.config_text()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(["replay", "--quarantined", "--dry-run", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{QUARANTINED} quarantined requests would be replayed"
        )),
        "{stdout}"
    );
}
