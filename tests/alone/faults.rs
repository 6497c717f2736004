//! Proof under faults. Each test runs the real `wasmhook` binary as a child process against a
//! real PostgreSQL, drives it with a load generator, breaks something (the host, the database,
//! the receiver, a plugin), and then compares the ids the host answered 2xx with the ids the
//! receiver saw: every acknowledged event must arrive at least once. Duplicates are allowed
//! (delivery is at least once) and reported.

use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::app::full_config;
use support::app::plugins_dir;
use support::database::TestDatabase;
use wasmhook_testkit::process::HostProcess;

use support::load::{Load, LoadReport, Target, wait_for_every_delivery};
use wasmhook_testkit::receiver::{Receiver, Reply};

/// A source taking any JSON (its id from the `webhook-id` header) and a destination taking
/// every event, with a short retry schedule so that recovery takes seconds.
fn sources_and_destination(destination_url: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "load"
plugin = "generic"
config = '{{"signature": {{"scheme": "none"}}, "type_pointer": "/type"}}'

[[destinations]]
name = "receiver"
url = "{destination_url}"
routes = ["fault.*"]
allow_private_networks = true
timeout_seconds = 1
retry_schedule_seconds = [0, 0.2, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
throttle_min_delay_seconds = 0.5
breaker_failure_threshold = 5
breaker_cooldown_seconds = 1
max_concurrency = 16
{extra}
"#
    )
}

/// What most scenarios start from: a receiver answering 200, a fresh database, the plugins,
/// and the host's config with `extra` sources.
struct Scenario {
    receiver: Receiver,
    database: TestDatabase,
    _plugins: tempfile::TempDir,
    config: String,
}

impl Scenario {
    async fn start(extra: &str) -> Scenario {
        let receiver = Receiver::start(vec![], Reply::Status(200)).await;
        let database = TestDatabase::create().await;
        let plugins = plugins_dir();
        let config = full_config(
            &database.url,
            plugins.path(),
            &sources_and_destination(&receiver.url("/hook"), extra),
        );
        Scenario {
            receiver,
            database,
            _plugins: plugins,
            config,
        }
    }
}

fn target(host: &HostProcess, source: &str, id_prefix: &str) -> Target {
    Target {
        url: host.url(&format!("/webhooks/{source}")),
        id_prefix: id_prefix.to_owned(),
    }
}

/// Every acknowledged id reached the receiver (waiting up to a minute); prints the duplicates.
async fn assert_every_acknowledged_event_delivered(
    scenario: &str,
    receiver: &Receiver,
    report: &LoadReport,
    hosts: &[&HostProcess],
) {
    let acknowledged = report.acknowledged();
    let (missing, duplicates) =
        wait_for_every_delivery(receiver, &acknowledged, Duration::from_secs(60)).await;
    println!(
        "{scenario}: {} requests {:?}; {} acknowledged, {} missing, {duplicates} duplicate deliveries",
        report.records.len(),
        report.summary(),
        acknowledged.len(),
        missing.len(),
    );
    assert!(
        missing.is_empty(),
        "{scenario}: {} of {} acknowledged events never arrived, e.g. {:?}\n{}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)],
        hosts
            .iter()
            .map(|host| host.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_during_ingest_and_delivery_loses_nothing_it_acknowledged() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    let Scenario {
        receiver,
        database: _database,
        _plugins,
        config,
    } = Scenario::start("").await;
    let mut host = support::host_process::start(&config, &[]).await;
    let load = Load::start(vec![target(&host, "load", "kill")], 8, 3000, Duration::ZERO);
    load.wait_for_answers(600).await;
    host.kill();
    // Requests meanwhile are refused; then the host comes back on the same address.
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.restart().await;
    let answered_before_restart = load.sent();
    load.wait_for_answers(answered_before_restart + 600).await;
    let report = load.stop().await;
    assert!(
        report.acknowledged().len() >= 1000,
        "sustained load: {:?}",
        report.summary()
    );
    assert_every_acknowledged_event_delivered("SIGKILL", &receiver, &report, &[&host]).await;
    // The destination's secret was generated at the first start; the host's output is a log
    // (not a terminal), so the secret must not be in it.
    assert!(
        !host.log().contains("whsec_"),
        "a generated secret reached the log:\n{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_two_hosts_is_killed_the_other_finishes_all_work() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    let Scenario {
        receiver,
        database: _database,
        _plugins,
        config,
    } = Scenario::start("").await;
    let survivor = support::host_process::start(&config, &[]).await;
    let mut victim = support::host_process::start(&config, &[]).await;
    let load = Load::start(
        vec![
            target(&survivor, "load", "survivor"),
            target(&victim, "load", "victim"),
        ],
        8,
        3000,
        Duration::ZERO,
    );
    load.wait_for_answers(800).await;
    victim.kill();
    let answered_at_kill = load.sent();
    load.wait_for_answers(answered_at_kill + 600).await;
    let report = load.stop().await;
    let acknowledged = report.acknowledged();
    assert!(
        acknowledged.iter().any(|id| id.starts_with("victim-")),
        "the killed host had acknowledged events before it died"
    );
    assert_every_acknowledged_event_delivered("two hosts", &receiver, &report, &[&survivor]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_in_flight_and_loses_nothing() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    let Scenario {
        receiver,
        database: _database,
        _plugins,
        config,
    } = Scenario::start("").await;
    let mut host = support::host_process::start(&config, &[]).await;
    let load = Load::start(vec![target(&host, "load", "term")], 8, 3000, Duration::ZERO);
    load.wait_for_answers(600).await;
    let status = host.terminate().await;
    assert!(
        status.success(),
        "a graceful stop exits 0: {status}\n{}",
        host.log()
    );
    // Requests after the stop are refused; give the workers a moment to see it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;
    let broken: Vec<_> = report
        .records
        .iter()
        .filter(|record| matches!(record.outcome, support::load::Outcome::Broken(_)))
        .collect();
    assert!(
        broken.is_empty(),
        "every request that reached the host got its whole answer: {broken:?}"
    );
    // What was acknowledged but not yet delivered is delivered after the restart.
    host.restart().await;
    assert_every_acknowledged_event_delivered("SIGTERM", &receiver, &report, &[&host]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_stopped_ingest_answers_503_and_recovers_without_a_restart() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    // A cluster of its own, since this test stops it.
    let cluster_directory = tempfile::tempdir().unwrap();
    let cluster = tokio::task::spawn_blocking({
        let path = cluster_directory.path().to_path_buf();
        move || {
            wasmhook::store::embedded_postgres::EmbeddedPostgres::start(
                &path,
                wasmhook::store::embedded_postgres::ClusterOptions {
                    throwaway: true,
                    ..wasmhook::store::embedded_postgres::ClusterOptions::default()
                },
            )
            .unwrap()
        }
    })
    .await
    .unwrap();
    wasmhook::store::create_database_if_missing(&cluster.url("postgres"), "wasmhook")
        .await
        .unwrap();
    let plugins = plugins_dir();
    let config = full_config(
        &cluster.url("wasmhook"),
        plugins.path(),
        &sources_and_destination(&receiver.url("/hook"), ""),
    );
    let host = support::host_process::start(&config, &[]).await;
    let load = Load::start(
        vec![target(&host, "load", "outage")],
        4,
        100_000,
        Duration::from_millis(5),
    );
    load.wait_for_answers(300).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap();
        cluster
    })
    .await
    .unwrap();
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarting_at = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart().unwrap();
        cluster
    })
    .await
    .unwrap();
    let answered_at_restart = load.sent();
    load.wait_for_answers(answered_at_restart + 300).await;
    let report = load.stop().await;

    let during_outage: Vec<_> = report
        .records
        .iter()
        .filter(|record| record.started > stopped_at && record.finished < restarting_at)
        .collect();
    assert!(
        during_outage.len() > 10,
        "requests were sent during the outage"
    );
    for record in &during_outage {
        assert!(
            matches!(record.outcome, support::load::Outcome::Status(503)),
            "during the outage every answer is 503, never 2xx: {record:?}"
        );
    }
    let after: Vec<_> = report
        .records
        .iter()
        .filter(|record| record.started > restarting_at)
        .collect();
    assert!(
        after
            .iter()
            .any(|record| matches!(record.outcome, support::load::Outcome::Status(202))),
        "the host took webhooks again without a restart"
    );
    assert_every_acknowledged_event_delivered("PostgreSQL outage", &receiver, &report, &[&host])
        .await;
    drop(host);
    tokio::task::spawn_blocking(move || cluster.stop().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_then_slow_then_up_gets_everything_by_the_schedule() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    // Nothing listens on the destination's port at first: connections are refused.
    let receiver_address = format!("127.0.0.1:{}", wasmhook_testkit::process::free_port());
    let database = TestDatabase::create().await;
    let plugins = plugins_dir();
    let config = full_config(
        &database.url,
        plugins.path(),
        &sources_and_destination(&format!("http://{receiver_address}/hook"), ""),
    );
    let host = support::host_process::start(&config, &[]).await;
    let load = Load::start(
        vec![target(&host, "load", "receiver")],
        2,
        200,
        Duration::from_millis(10),
    );
    load.wait_for_answers(200).await;
    let report = load.stop().await;
    assert_eq!(report.acknowledged().len(), 200, "{:?}", report.summary());
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Slow: it answers only after the destination's one-second timeout.
    let receiver = Receiver::start_at(
        &receiver_address,
        vec![],
        Reply::Hang(Duration::from_secs(3)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    receiver.answer_from_now_on(Reply::Status(200));
    assert_every_acknowledged_event_delivered("receiver outage", &receiver, &report, &[&host])
        .await;

    // The attempts followed the schedule: consecutive numbers, each after at least its delay.
    let pool = database.pool();
    let attempts: Vec<(uuid::Uuid, i32, chrono::DateTime<chrono::Utc>, String)> = sqlx::query_as(
        "SELECT job_id, attempt, started_at, outcome FROM delivery_attempts ORDER BY job_id, attempt",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let schedule_ms = [0, 200, 500, 1000];
    let mut previous: Option<(uuid::Uuid, i32, chrono::DateTime<chrono::Utc>)> = None;
    let mut retried_jobs = BTreeSet::new();
    for (job_id, attempt, started_at, _) in &attempts {
        if let Some((previous_job, previous_attempt, previous_start)) = previous
            && previous_job == *job_id
        {
            assert_eq!(*attempt, previous_attempt + 1, "attempts are consecutive");
            let delay = schedule_ms[(*attempt as usize - 1).min(schedule_ms.len() - 1)];
            let waited = (*started_at - previous_start).num_milliseconds();
            assert!(
                waited + 50 >= delay,
                "attempt {attempt} of {job_id} came {waited} ms after the previous, before its {delay} ms delay"
            );
            retried_jobs.insert(*job_id);
        }
        previous = Some((*job_id, *attempt, *started_at));
    }
    assert!(!retried_jobs.is_empty(), "the outage caused retries");
    assert!(
        attempts
            .iter()
            .any(|(_, _, _, outcome)| outcome == "delivered"),
        "deliveries succeeded once the receiver was up"
    );

    // The breaker opened during the outage and closed after it.
    let metrics = reqwest::get(host.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for transition in ["opened", "closed"] {
        assert!(
            metrics.lines().any(
                |line| line.starts_with("wasmhook_breaker_transitions_total")
                    && line.contains(&format!("transition=\"{transition}\""))
                    && !line.ends_with(" 0")
            ),
            "the breaker {transition}:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_plugin_under_load_is_quarantined_and_leaves_other_sources_fast() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    let hostile_sources = r#"
[[sources]]
name = "hostile-loop"
plugin = "hostile"
config = "endless-loop"

[[sources]]
name = "hostile-memory"
plugin = "hostile"
config = "memory-grab"
"#;
    let Scenario {
        receiver: _receiver,
        database,
        _plugins,
        config,
    } = Scenario::start(hostile_sources).await;
    let host = support::host_process::start(&config, &[]).await;
    let good = |prefix: &str| target(&host, "load", prefix);
    let requests = 1500;

    // Warm up, then the other sources' latency without the hostile plugin...
    Load::start(vec![good("warm")], 4, 300, Duration::ZERO)
        .stop_after(300)
        .await;
    let alone = Load::start(vec![good("alone")], 4, requests, Duration::ZERO)
        .stop_after(requests)
        .await;
    // ...and with it taking traffic at the same time.
    let hostile = Load::start(
        vec![
            target(&host, "hostile-loop", "loop"),
            target(&host, "hostile-memory", "memory"),
        ],
        2,
        100_000,
        Duration::from_millis(10),
    );
    // Its first failing calls (five per source) open each source's plugin breaker; from then
    // on its requests are quarantined without a call, and a probe runs every few seconds.
    hostile.wait_for_answers(40).await;
    let beside = Load::start(vec![good("beside")], 4, requests, Duration::ZERO)
        .stop_after(requests)
        .await;
    let hostile = hostile.stop().await;

    let p99_alone = support::load::quantile(&alone.latencies_ms("alone"), 0.99);
    let p99_beside = support::load::quantile(&beside.latencies_ms("beside"), 0.99);
    println!(
        "hostile plugin: other sources' p99 {p99_alone:.1} ms alone, {p99_beside:.1} ms beside it; hostile requests {:?}",
        hostile.summary()
    );
    assert_eq!(
        beside.acknowledged().len(),
        requests,
        "{:?}",
        beside.summary()
    );
    assert!(
        p99_beside <= 2.0 * p99_alone,
        "the other sources' p99 went from {p99_alone:.1} ms to {p99_beside:.1} ms"
    );

    // Every request to the hostile source was kept, quarantined for a replay.
    let acknowledged_hostile = hostile.acknowledged().len();
    assert!(acknowledged_hostile > 0);
    assert_eq!(
        acknowledged_hostile,
        hostile.records.len(),
        "every hostile request was answered 2xx: {:?}",
        hostile.summary()
    );
    let quarantined: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM raw_requests WHERE source_name LIKE 'hostile-%' AND status = 'quarantined'",
    )
    .fetch_one(&database.pool())
    .await
    .unwrap();
    assert_eq!(quarantined as usize, acknowledged_hostile);
    let metrics = reqwest::get(host.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for source in ["hostile-loop", "hostile-memory"] {
        assert!(
            metrics.lines().any(|line| line
                .starts_with("wasmhook_plugin_breaker_transitions_total")
                && line.contains(&format!("source=\"{source}\""))
                && line.contains("transition=\"opened\"")),
            "the plugin breaker of {source} opened:\n{metrics}"
        );
    }
}
