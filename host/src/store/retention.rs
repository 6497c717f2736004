//! Retention: batched deletes of what outlived its window, and the advisory locks (guards)
//! that keep it from deleting what a replay is working on.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store::error::{Context, StoreError};

/// The advisory lock that a job replay holds shared in its transaction and that retention
/// takes exclusively (without waiting) around its deletes of requests, so that retention never
/// deletes a row a job replay is making due again (delivered and dead jobs alike).
pub const REPLAY_GUARD_LOCK: i64 = 0x7768_5f72_6570_6c61;

/// The advisory lock that a replay of quarantined requests holds shared for its whole run and
/// that retention takes exclusively (without waiting) around its delete of replayable
/// requests only: such a replay reads quarantined rows, never delivered ones, so requests
/// whose deliveries all succeeded are still deleted while it runs.
pub const QUARANTINE_REPLAY_GUARD_LOCK: i64 = 0x7768_5f71_7265_706c;

/// The end of a statement whose `doomed` names the requests to delete: deletes them with their
/// events and the events' jobs (and, through their foreign key, the jobs' attempts), in one
/// statement, since events and jobs have no foreign key to cascade from.
macro_rules! with_events_and_jobs {
    () => {
        ", gone_events AS (
             DELETE FROM events e USING doomed WHERE e.raw_request_id = doomed.id RETURNING e.id
         ), gone_jobs AS (
             DELETE FROM delivery_jobs j USING gone_events WHERE j.event_row_id = gone_events.id
         )
         DELETE FROM raw_requests r USING doomed WHERE r.id = doomed.id"
    };
}

/// Held by a replay of quarantined requests for its whole run, on a connection of its own
/// (outside the pool), so that the lock goes with the connection even if the replay is
/// dropped half-way.
pub struct ReplayGuard {
    connection: sqlx::PgConnection,
}

impl ReplayGuard {
    pub async fn hold(pool: &PgPool) -> Result<ReplayGuard, StoreError> {
        use sqlx::ConnectOptions;
        let mut connection = pool
            .connect_options()
            .connect()
            .await
            .context("connecting for the replay guard")?;
        sqlx::query("SELECT pg_advisory_lock_shared($1)")
            .bind(QUARANTINE_REPLAY_GUARD_LOCK)
            .execute(&mut connection)
            .await
            .context("taking the replay guard")?;
        Ok(ReplayGuard { connection })
    }

    /// Closing the connection releases the lock.
    pub async fn release(self) {
        use sqlx::Connection;
        let _ = self.connection.close().await;
    }
}

/// How much one retention batch deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionBatch {
    /// Requests (with their events, jobs and attempts) whose deliveries all succeeded.
    pub raw_requests: u64,
    /// Requests kept for a replay: quarantined, or with a dead or failed delivery.
    pub replayable_requests: u64,
    pub attempts: u64,
    pub dedupe_keys: u64,
    /// Whether a replay held its guard, so that replayable requests were left for later.
    pub replayable_skipped: bool,
}

impl RetentionBatch {
    pub fn total(&self) -> u64 {
        self.raw_requests + self.replayable_requests + self.attempts + self.dedupe_keys
    }
}

/// Deletes at most `batch` rows of each kind older than its cut-off, each kind in its own
/// short statement so that no lock is held for long: raw requests (with their events, jobs and
/// attempts) whose deliveries all succeeded, requests kept for replay, attempts, and expired
/// dedupe keys.
pub async fn delete_expired_batch(
    pool: &PgPool,
    events_before: DateTime<Utc>,
    replayable_before: DateTime<Utc>,
    attempts_before: DateTime<Utc>,
    dedupe_keys_before: DateTime<Utc>,
    batch: i64,
) -> Result<RetentionBatch, StoreError> {
    let (raw_requests, replayable_requests, replayable_skipped) =
        delete_expired_requests(pool, events_before, replayable_before, batch).await?;
    let attempts = delete_batch(
        pool,
        "DELETE FROM delivery_attempts WHERE id IN (
             SELECT id FROM delivery_attempts WHERE started_at < $1
             ORDER BY started_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        attempts_before,
        batch,
        "deleting old attempts",
    )
    .await?;
    let dedupe_keys = delete_batch(
        pool,
        "DELETE FROM dedupe_keys WHERE (source_name, event_id) IN (
             SELECT source_name, event_id FROM dedupe_keys WHERE created_at < $1
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        dedupe_keys_before,
        batch,
        "deleting expired dedupe keys",
    )
    .await?;
    Ok(RetentionBatch {
        raw_requests,
        replayable_requests,
        attempts,
        dedupe_keys,
        replayable_skipped,
    })
}

/// Requests whose deliveries are all finished, each kind after its own cut-off, and whether the
/// replayable ones were skipped. Nothing is deleted while a job replay holds its guard, and no
/// replayable request while a quarantine replay holds its own; once retention holds a guard,
/// the deletes read the rows as the replays committed them, and a replay that starts waits for
/// this short commit.
async fn delete_expired_requests(
    pool: &PgPool,
    events_before: DateTime<Utc>,
    replayable_before: DateTime<Utc>,
    batch: i64,
) -> Result<(u64, u64, bool), StoreError> {
    let mut transaction = pool.begin().await.context("starting a retention batch")?;
    if !try_guard(&mut transaction, REPLAY_GUARD_LOCK).await? {
        return Ok((0, 0, true));
    }
    let replayable_guarded = try_guard(&mut transaction, QUARANTINE_REPLAY_GUARD_LOCK).await?;
    let delivered = delete_batch(
        &mut *transaction,
        concat!(
            "WITH doomed AS (
             SELECT r.id FROM raw_requests r
             WHERE r.received_at < $1 AND r.status = 'accepted'
               AND NOT EXISTS (
                   SELECT 1 FROM events e JOIN delivery_jobs j ON j.event_row_id = e.id
                   WHERE e.raw_request_id = r.id
                     AND j.state IN ('due', 'running', 'retrying', 'failed', 'dead'))
             ORDER BY r.received_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
            with_events_and_jobs!()
        ),
        events_before,
        batch,
        "deleting old requests and events",
    )
    .await?;
    let replayable = if replayable_guarded {
        delete_expired_replayable(&mut transaction, replayable_before, batch).await?
    } else {
        0
    };
    transaction
        .commit()
        .await
        .context("committing a retention batch")?;
    Ok((delivered, replayable, !replayable_guarded))
}

/// Takes a replay guard exclusively for the transaction, without waiting; `false` when a
/// replay holds it.
async fn try_guard(transaction: &mut sqlx::PgConnection, lock: i64) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(lock)
        .fetch_one(transaction)
        .await
        .context("taking the replay guard")
}

/// Quarantined requests and requests with a dead or failed delivery (and none pending).
async fn delete_expired_replayable(
    transaction: &mut sqlx::PgConnection,
    replayable_before: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    delete_batch(
        transaction,
        concat!(
            "WITH doomed AS (
             SELECT r.id FROM raw_requests r
             WHERE r.received_at < $1
               AND (r.status = 'quarantined' OR EXISTS (
                   SELECT 1 FROM events e JOIN delivery_jobs j ON j.event_row_id = e.id
                   WHERE e.raw_request_id = r.id AND j.state IN ('failed', 'dead')))
               AND NOT EXISTS (
                   SELECT 1 FROM events e JOIN delivery_jobs j ON j.event_row_id = e.id
                   WHERE e.raw_request_id = r.id AND j.state IN ('due', 'running', 'retrying'))
             ORDER BY r.received_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
            with_events_and_jobs!()
        ),
        replayable_before,
        batch,
        "deleting old quarantined requests and dead deliveries",
    )
    .await
}

/// Runs one batched delete whose `$1` is the cut-off and `$2` the batch size, so that every
/// kind of expired row is bounded the same way, and counts the rows it deleted.
async fn delete_batch<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    statement: &'static str,
    before: DateTime<Utc>,
    batch: i64,
    what: &'static str,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(statement)
        .bind(before)
        .bind(batch)
        .execute(executor)
        .await
        .context(what)?
        .rows_affected())
}
