//! The delivery queue in PostgreSQL: all of the delivery path's SQL.
//!
//! Claims take due jobs with `FOR UPDATE SKIP LOCKED` and a lease, committed at once, so no
//! transaction or row lock is held across an HTTP call. Finishing is guarded by the attempt
//! number, so a worker whose lease expired cannot overwrite a newer attempt. Claims and
//! finishes commit without waiting for the WAL flush: losing one in a crash only means a job is
//! delivered again, which at-least-once delivery allows; ingest commits always wait.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::events::NormalizedEvent;
use crate::store::error::{Context, StoreError};
use crate::store::job_state::JobState;
use crate::store::retention::REPLAY_GUARD_LOCK;
use crate::store::text::postgres_text;

/// A job claimed for one attempt.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub job_id: Uuid,
    pub attempt: i32,
    /// Attempts made before the last replay; the retry schedule counts from here.
    pub attempt_base: i32,
    pub destination_name: String,
    pub event: NormalizedEvent,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: Uuid,
    attempt: i32,
    attempt_base: i32,
    event_id: String,
    event_source: String,
    event_type: String,
    subject: Option<String>,
    time: String,
    data: String,
    route_keys: Vec<String>,
}

/// Claims up to `limit` due jobs of one destination with a lease of `lease`.
pub async fn claim(
    pool: &PgPool,
    destination_name: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let mut transaction = pool.begin().await.context("beginning a claim")?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *transaction)
        .await
        .context("relaxing the claim's commit")?;
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "WITH claimable AS (
             SELECT id FROM delivery_jobs
             WHERE destination_name = $1 AND state IN ('due', 'retrying') AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), claimed AS (
             UPDATE delivery_jobs j
             SET state = 'running', attempt = j.attempt + 1,
                 lease_expires_at = now() + $3 * interval '1 millisecond'
             FROM claimable WHERE j.id = claimable.id
             RETURNING j.id, j.attempt, j.attempt_base, j.event_row_id
         )
         SELECT c.id, c.attempt, c.attempt_base, e.event_id, e.event_source, e.event_type, e.subject, e.time,
                e.data, e.route_keys
         FROM claimed c JOIN events e ON e.id = c.event_row_id",
    )
    .bind(destination_name)
    .bind(limit as i64)
    .bind(lease.as_millis() as f64)
    .fetch_all(&mut *transaction)
    .await
    .context("claiming jobs")?;
    transaction.commit().await.context("committing a claim")?;
    Ok(rows
        .into_iter()
        .map(|row| ClaimedJob {
            job_id: row.id,
            attempt: row.attempt,
            attempt_base: row.attempt_base,
            destination_name: destination_name.to_owned(),
            event: NormalizedEvent {
                id: row.event_id,
                source: row.event_source,
                event_type: row.event_type,
                subject: row.subject,
                time: row.time,
                data_json: row.data,
                route_keys: row.route_keys,
            },
        })
        .collect())
}

/// One finished attempt and the job's next state.
#[derive(Clone, Debug)]
pub struct FinishedAttempt {
    pub job_id: Uuid,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: &'static str,
    /// Delivered, retrying, failed or dead.
    pub next_state: JobState,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Records attempts and moves their jobs on, in one transaction. A job whose attempt number
/// moved on (its lease expired and another worker claimed it) keeps its newer state.
/// Returns how many jobs were updated.
///
/// When PostgreSQL refuses the batch (a row it cannot hold), each attempt is finished alone, so
/// that one bad row does not keep the others' jobs `running` to be rescued and delivered again.
pub async fn finish(pool: &PgPool, finished: &[FinishedAttempt]) -> Result<u64, StoreError> {
    match finish_together(pool, finished).await {
        Err(error) if error.is_row_refusal() => {
            tracing::warn!(
                "the database refused a finish batch of {} attempts ({error:#}); finishing them one by one",
                finished.len()
            );
            // Every row gets its try: one that keeps failing must not leave the rows after it
            // `running`, to be redelivered. The first error is reported once all were tried.
            let mut updated = 0;
            let mut first_error = None;
            for attempt in finished {
                match finish_alone(pool, attempt).await {
                    Ok(count) => updated += count,
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            first_error.map_or(Ok(updated), Err)
        }
        result => result,
    }
}

/// Finishes one attempt; if its record is still refused, records it without its response
/// excerpt and error text, so that the job moves on instead of being delivered forever.
async fn finish_alone(pool: &PgPool, attempt: &FinishedAttempt) -> Result<u64, StoreError> {
    match finish_together(pool, std::slice::from_ref(attempt)).await {
        Err(error) if error.is_row_refusal() => {
            tracing::error!(
                job_id = %attempt.job_id,
                "the database refused an attempt record ({error:#}); recording it without its response excerpt"
            );
            let without_texts = FinishedAttempt {
                response_body: None,
                error: Some(
                    "the database refused this attempt's texts; they were dropped".to_owned(),
                ),
                ..attempt.clone()
            };
            finish_together(pool, &[without_texts]).await
        }
        result => result,
    }
}

async fn finish_together(pool: &PgPool, finished: &[FinishedAttempt]) -> Result<u64, StoreError> {
    if finished.is_empty() {
        return Ok(0);
    }
    let mut transaction = pool.begin().await.context("beginning a finish")?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *transaction)
        .await
        .context("relaxing the finish's commit")?;
    sqlx::query(
        "INSERT INTO delivery_attempts
             (id, job_id, attempt, started_at, duration_ms, status_code, response_body, error, outcome)
         SELECT a.* FROM UNNEST($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::int[],
                                $6::int[], $7::text[], $8::text[], $9::text[])
              AS a (id, job_id, attempt, started_at, duration_ms, status_code, response_body, error, outcome)
         -- A job deleted meanwhile (its destination was removed) must not fail the batch, and
         -- an attempt recorded by an earlier try of a finish that then failed is not recorded
         -- twice when the finisher tries again.
         WHERE EXISTS (SELECT 1 FROM delivery_jobs j WHERE j.id = a.job_id)
           AND NOT EXISTS (SELECT 1 FROM delivery_attempts d
                           WHERE d.job_id = a.job_id AND d.attempt = a.attempt)",
    )
    .bind(finished.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.job_id).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.attempt).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.started_at).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.duration.as_millis() as i32).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.status_code.map(i32::from)).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.response_body.as_deref().map(postgres_text)).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.error.as_deref().map(postgres_text)).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.outcome).collect::<Vec<_>>())
    .execute(&mut *transaction)
    .await
    .context("recording attempts")?;
    let updated = sqlx::query(
        "UPDATE delivery_jobs j
         SET state = f.state,
             next_attempt_at = COALESCE(f.next_attempt_at, j.next_attempt_at),
             lease_expires_at = NULL,
             last_status = f.status_code,
             last_error = f.error,
             finished_at = CASE WHEN f.state IN ('delivered', 'failed', 'dead') THEN now() END
         FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::int[], $6::text[])
              AS f (job_id, attempt, state, next_attempt_at, status_code, error)
         WHERE j.id = f.job_id AND j.attempt = f.attempt AND j.state = 'running'",
    )
    .bind(finished.iter().map(|f| f.job_id).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.attempt).collect::<Vec<_>>())
    .bind(finished.iter().map(|f| f.next_state).collect::<Vec<_>>())
    .bind(
        finished
            .iter()
            .map(|f| f.next_attempt_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        finished
            .iter()
            .map(|f| f.status_code.map(i32::from))
            .collect::<Vec<_>>(),
    )
    .bind(
        finished
            .iter()
            .map(|f| f.error.as_deref().map(postgres_text))
            .collect::<Vec<_>>(),
    )
    .execute(&mut *transaction)
    .await
    .context("moving jobs on")?
    .rows_affected();
    transaction.commit().await.context("committing a finish")?;
    Ok(updated)
}

/// Returns jobs whose lease expired (their worker died) to the queue; the attempt stays
/// spent. Returns how many were rescued.
pub async fn rescue_expired_leases(pool: &PgPool) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE delivery_jobs SET state = 'retrying', lease_expires_at = NULL, next_attempt_at = now()
         WHERE state = 'running' AND lease_expires_at < now()",
    )
    .execute(pool)
    .await
    .context("rescuing expired leases")?
    .rows_affected())
}

/// Gives back jobs this worker claimed but did not finish (graceful shutdown): the attempt is
/// not counted, and the job is due again at once.
pub async fn release(pool: &PgPool, jobs: &[(Uuid, i32)]) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE delivery_jobs j
         SET state = CASE WHEN j.attempt > 1 THEN 'retrying' ELSE 'due' END,
             attempt = j.attempt - 1, lease_expires_at = NULL, next_attempt_at = now()
         FROM UNNEST($1::uuid[], $2::int[]) AS r (job_id, attempt)
         WHERE j.id = r.job_id AND j.attempt = r.attempt AND j.state = 'running'",
    )
    .bind(jobs.iter().map(|job| job.0).collect::<Vec<_>>())
    .bind(jobs.iter().map(|job| job.1).collect::<Vec<_>>())
    .execute(pool)
    .await
    .context("releasing leases")?
    .rows_affected())
}

/// Which jobs a replay makes due again.
#[derive(Clone, Debug, Default)]
pub struct ReplayFilter {
    pub event_row_id: Option<Uuid>,
    pub destination_name: Option<String>,
    pub source_name: Option<String>,
    pub event_type: Option<String>,
    /// Job states to replay; empty means every finished state (delivered, failed, dead).
    pub job_states: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

const REPLAY_MATCH: &str = "
    FROM delivery_jobs j JOIN events e ON e.id = j.event_row_id
    WHERE ($1::uuid IS NULL OR j.event_row_id = $1)
      AND ($2::text IS NULL OR j.destination_name = $2)
      AND ($3::text IS NULL OR e.source_name = $3)
      AND ($4::text IS NULL OR e.event_type = $4)
      AND (cardinality($5::text[]) = 0 AND j.state IN ('delivered', 'failed', 'dead')
           OR j.state = ANY($5))
      AND ($6::timestamptz IS NULL OR e.created_at >= $6)
      AND ($7::timestamptz IS NULL OR e.created_at < $7)";

fn bind_replay<'q>(
    query: sqlx::query::QueryScalar<'q, sqlx::Postgres, i64, sqlx::postgres::PgArguments>,
    filter: &'q ReplayFilter,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, i64, sqlx::postgres::PgArguments> {
    query
        .bind(filter.event_row_id)
        .bind(filter.destination_name.as_deref())
        .bind(filter.source_name.as_deref())
        .bind(filter.event_type.as_deref())
        .bind(&filter.job_states)
        .bind(filter.since)
        .bind(filter.until)
}

/// Counts the jobs a replay would make due (a dry run).
pub async fn count_replay(pool: &PgPool, filter: &ReplayFilter) -> Result<i64, StoreError> {
    let sql = format!("SELECT count(*) {REPLAY_MATCH}");
    bind_replay(sqlx::query_scalar(&sql), filter)
        .fetch_one(pool)
        .await
        .context("counting jobs to replay")
}

/// Makes the matching finished jobs due again with a fresh set of attempts (the schedule
/// starts over; attempt numbers keep counting).
pub async fn replay(pool: &PgPool, filter: &ReplayFilter) -> Result<i64, StoreError> {
    let sql = format!(
        "WITH matching AS (SELECT j.id {REPLAY_MATCH})
         , replayed AS (
             -- The attempt number keeps growing, so a late finish of an attempt from before
             -- the replay can never match; the schedule restarts from `attempt_base`.
             UPDATE delivery_jobs SET state = 'due', attempt_base = attempt, next_attempt_at = now(),
                 lease_expires_at = NULL, finished_at = NULL
             FROM matching WHERE delivery_jobs.id = matching.id
             RETURNING 1
         ), notified AS (SELECT pg_notify('wasmhook_jobs', ''))
         SELECT count(*) FROM replayed, notified"
    );
    let mut transaction = pool.begin().await.context("starting a replay")?;
    // Shared with other replays; waits for a retention batch to commit, whose deleted rows this
    // replay then no longer sees.
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(REPLAY_GUARD_LOCK)
        .execute(&mut *transaction)
        .await
        .context("taking the replay guard")?;
    let replayed = bind_replay(sqlx::query_scalar(&sql), filter)
        .fetch_one(&mut *transaction)
        .await
        .context("replaying jobs")?;
    transaction.commit().await.context("committing a replay")?;
    Ok(replayed)
}

/// Jobs by state (the not-yet-finished ones and the dead) and the age of the oldest due job.
pub async fn queue_gauges(
    pool: &PgPool,
) -> Result<(Vec<(String, i64)>, Option<Duration>), StoreError> {
    let states: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM delivery_jobs
         WHERE state IN ('due', 'running', 'retrying', 'dead') GROUP BY state",
    )
    .fetch_all(pool)
    .await
    .context("counting jobs by state")?;
    let oldest_due_seconds: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - min(next_attempt_at))::float8 FROM delivery_jobs
         WHERE state IN ('due', 'retrying') AND next_attempt_at <= now()",
    )
    .fetch_one(pool)
    .await
    .context("reading the oldest due job")?;
    Ok((
        states,
        oldest_due_seconds.map(|seconds| Duration::from_secs_f64(seconds.max(0.0))),
    ))
}
