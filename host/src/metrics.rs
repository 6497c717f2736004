//! Prometheus metrics. Every metric name and its labels live here, so the exposition is
//! documented in one place; the rest of the host calls these functions.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns the handle that renders it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(&[
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .expect("the bucket list is not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process");
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "wasmhook_webhooks_received_total",
        "Webhooks received, per source (unknown sources are counted as `unknown`)."
    );
    describe_counter!(
        "wasmhook_webhooks_total",
        "Webhooks by what became of them: accepted, duplicate, quarantined, ignored, replied, rejected (with the reason), rate_limited, unavailable."
    );
    describe_counter!(
        "wasmhook_signature_macs_total",
        "HMACs computed to check inbound signatures, per source: at most one per secret and request, whatever the request carries."
    );
    describe_histogram!(
        "wasmhook_plugin_call_seconds",
        "Duration of plugin calls (instantiate and handle), per plugin and version."
    );
    describe_counter!(
        "wasmhook_plugin_failures_total",
        "Plugin calls that failed (deadline, memory, trap, output), per plugin and version."
    );
    describe_counter!(
        "wasmhook_delivery_attempts_total",
        "Delivery attempts per destination and outcome."
    );
    describe_histogram!(
        "wasmhook_delivery_seconds",
        "Duration of delivery attempts per destination."
    );
    describe_counter!(
        "wasmhook_breaker_transitions_total",
        "Circuit breaker openings and closings per destination."
    );
    describe_gauge!(
        "wasmhook_breaker_open",
        "1 while a destination's circuit breaker is open in this process."
    );
    describe_counter!(
        "wasmhook_plugin_breaker_transitions_total",
        "Openings and closings of a source's plugin breaker (its requests are quarantined without a call while it is open)."
    );
    describe_counter!(
        "wasmhook_destinations_paused_total",
        "Destinations paused because their receiver answered 410 Gone."
    );
    describe_counter!(
        "wasmhook_retention_deleted_total",
        "Rows retention deleted, by kind: requests (with their events and jobs), replayable_requests (quarantined, or with a dead or failed delivery), attempts, dedupe_keys."
    );
    describe_gauge!("wasmhook_jobs", "Delivery jobs by state.");
    describe_counter!(
        "wasmhook_queue_gauge_refreshes_total",
        "Reads of the queue gauges from the database, every few seconds in the background (a scrape never reads them)."
    );
    describe_counter!(
        "wasmhook_listen_connection_failures_total",
        "Times a LISTEN connection was lost or could not be made again, by listener (each waits before it tries again)."
    );
    describe_counter!(
        "wasmhook_readiness_database_checks_total",
        "Times /readyz asked the database whether it answers (at most once a second, whatever the probe rate)."
    );
    describe_gauge!(
        "wasmhook_oldest_due_job_age_seconds",
        "Age of the oldest job that is due and not yet delivered."
    );
    describe_gauge!(
        "wasmhook_database_connections",
        "Connections in the database pool, by state (idle, in_use)."
    );
}

/// A webhook arrived for `source`.
pub fn webhook_received(source: &str) {
    counter!("wasmhook_webhooks_received_total", "source" => source.to_owned()).increment(1);
}

/// What became of a webhook; `reason` is the error code for rejections, empty otherwise.
pub fn webhook_outcome(source: &str, outcome: &'static str, reason: &'static str) {
    counter!(
        "wasmhook_webhooks_total",
        "source" => source.to_owned(),
        "outcome" => outcome,
        "reason" => reason
    )
    .increment(1);
}

/// A signature check of `source` computed `count` HMACs.
pub fn signature_macs(source: &str, count: usize) {
    counter!("wasmhook_signature_macs_total", "source" => source.to_owned())
        .increment(count as u64);
}

pub fn plugin_call(plugin: &str, version: &str, duration: Duration) {
    histogram!(
        "wasmhook_plugin_call_seconds",
        "plugin" => plugin.to_owned(),
        "version" => version.to_owned()
    )
    .record(duration.as_secs_f64());
}

pub fn plugin_failure(plugin: &str, version: &str, kind: &'static str) {
    counter!(
        "wasmhook_plugin_failures_total",
        "plugin" => plugin.to_owned(),
        "version" => version.to_owned(),
        "kind" => kind
    )
    .increment(1);
}

pub fn delivery_attempt(destination: &str, outcome: &'static str, duration: Duration) {
    counter!(
        "wasmhook_delivery_attempts_total",
        "destination" => destination.to_owned(),
        "outcome" => outcome
    )
    .increment(1);
    histogram!("wasmhook_delivery_seconds", "destination" => destination.to_owned())
        .record(duration.as_secs_f64());
}

pub fn plugin_breaker_transition(source: &str, opened: bool) {
    counter!(
        "wasmhook_plugin_breaker_transitions_total",
        "source" => source.to_owned(),
        "transition" => if opened { "opened" } else { "closed" }
    )
    .increment(1);
}

pub fn breaker_transition(destination: &str, opened: bool) {
    counter!(
        "wasmhook_breaker_transitions_total",
        "destination" => destination.to_owned(),
        "transition" => if opened { "opened" } else { "closed" }
    )
    .increment(1);
    gauge!("wasmhook_breaker_open", "destination" => destination.to_owned()).set(if opened {
        1.0
    } else {
        0.0
    });
}

/// Rows one retention batch deleted, per kind.
pub fn retention_deleted(kind: &'static str, rows: u64) {
    counter!("wasmhook_retention_deleted_total", "kind" => kind).increment(rows);
}

pub fn destination_paused(destination: &str) {
    counter!("wasmhook_destinations_paused_total", "destination" => destination.to_owned())
        .increment(1);
}

/// Gauges sampled from the database when metrics are scraped.
pub fn queue_state(jobs_by_state: &[(String, i64)], oldest_due_age: Option<Duration>) {
    for state in ["due", "running", "retrying", "dead"] {
        let count = jobs_by_state
            .iter()
            .find(|(name, _)| name == state)
            .map_or(0, |(_, count)| *count);
        gauge!("wasmhook_jobs", "state" => state).set(count as f64);
    }
    gauge!("wasmhook_oldest_due_job_age_seconds")
        .set(oldest_due_age.map_or(0.0, |age| age.as_secs_f64()));
}

/// The queue gauges were read from the database.
pub fn queue_gauges_refreshed() {
    counter!("wasmhook_queue_gauge_refreshes_total").increment(1);
}

pub fn listen_connection_failed(listener: &'static str) {
    counter!("wasmhook_listen_connection_failures_total", "listener" => listener).increment(1);
}

pub fn readiness_database_check() {
    counter!("wasmhook_readiness_database_checks_total").increment(1);
}

pub fn database_pool(size: u32, idle: usize) {
    gauge!("wasmhook_database_connections", "state" => "idle").set(idle as f64);
    gauge!("wasmhook_database_connections", "state" => "in_use")
        .set(size.saturating_sub(idle as u32) as f64);
}
