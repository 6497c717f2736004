//! Retention: old requests, events, finished jobs, attempts and expired dedupe keys are deleted
//! in the background, in small batches with pauses between them, so that ingest and delivery
//! never wait on a long delete. What is kept for a replay (quarantined requests, dead and
//! failed deliveries) has its own, longer retention, and is left alone while a replay runs.

use std::time::Duration;

use sqlx::PgPool;

use crate::metrics;
use crate::store;
use crate::store::retention::RetentionBatch;

/// How long rows are kept, and how retention paces itself.
#[derive(Clone, Debug)]
pub struct RetentionSettings {
    pub events: Duration,
    /// Quarantined requests and requests with a dead or failed delivery.
    pub replayable: Duration,
    pub attempts: Duration,
    pub dedupe_keys: Duration,
    pub batch_size: i64,
    /// Pause between batches, so deletes never crowd out the ingest path.
    pub pause_between_batches: Duration,
    /// Time between passes.
    pub interval: Duration,
}

impl RetentionSettings {
    /// The settings `[retention]` (and `ingest.dedupe_window_seconds`) configure.
    pub fn from_config(config: &crate::config::Config) -> RetentionSettings {
        let retention = &config.retention;
        let days = |days: f64| Duration::from_secs_f64(days * 86400.0);
        RetentionSettings {
            events: days(retention.events_days),
            replayable: days(retention.replayable_days),
            attempts: days(retention.attempts_days),
            dedupe_keys: Duration::from_secs(config.ingest.dedupe_window_seconds),
            batch_size: retention.batch_size,
            pause_between_batches: Duration::from_millis(retention.pause_between_batches_ms),
            interval: Duration::from_secs(retention.interval_seconds),
        }
    }
}

/// One pass: batches until nothing old is left (bounded by `max_batches`). Returns the totals.
pub async fn run_pass(
    pool: &PgPool,
    settings: &RetentionSettings,
    max_batches: usize,
) -> anyhow::Result<RetentionBatch> {
    let now = chrono::Utc::now();
    let before = |keep: Duration| now - chrono::Duration::from_std(keep).unwrap_or_default();
    let mut totals = RetentionBatch::default();
    for _ in 0..max_batches {
        let batch = store::retention::delete_expired_batch(
            pool,
            before(settings.events),
            before(settings.replayable),
            before(settings.attempts),
            before(settings.dedupe_keys),
            settings.batch_size,
        )
        .await?;
        count_deleted(&batch);
        totals.raw_requests += batch.raw_requests;
        totals.replayable_requests += batch.replayable_requests;
        totals.attempts += batch.attempts;
        totals.dedupe_keys += batch.dedupe_keys;
        totals.replayable_skipped |= batch.replayable_skipped;
        if batch.total() == 0 {
            break;
        }
        tokio::time::sleep(settings.pause_between_batches).await;
    }
    Ok(totals)
}

/// One pass as the background task `retention` (`app/tasks.rs`) runs it: what it deleted, or
/// why it failed, goes to the log.
pub async fn run_logged_pass(pool: &PgPool, settings: &RetentionSettings) {
    let pass = run_pass(pool, settings, 10_000).await;
    if let Ok(totals) = &pass
        && totals.replayable_skipped
    {
        tracing::debug!("a replay holds its guard: replayable requests are kept this pass");
    }
    match pass {
        Ok(totals) if totals.total() > 0 => tracing::info!(
            raw_requests = totals.raw_requests,
            replayable_requests = totals.replayable_requests,
            attempts = totals.attempts,
            dedupe_keys = totals.dedupe_keys,
            "retention deleted old rows"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!("retention pass failed: {error:#}"),
    }
}

fn count_deleted(batch: &RetentionBatch) {
    metrics::retention_deleted("requests", batch.raw_requests);
    metrics::retention_deleted("replayable_requests", batch.replayable_requests);
    metrics::retention_deleted("attempts", batch.attempts);
    metrics::retention_deleted("dedupe_keys", batch.dedupe_keys);
}
