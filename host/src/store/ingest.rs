//! The ingest path's writes. `write_batch` stores many ingested requests in one transaction
//! (the group commit of `ingest::group_commit`): dedupe keys first (event ids, and body digests
//! for schemes that sign only the body), so that only the first arrival creates anything, then
//! raw requests, events and one delivery job per matching destination. Also the quarantined
//! requests a replay reads back. Every text goes through `postgres_text`, so no NUL reaches
//! PostgreSQL.

mod plan;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::events::NormalizedEvent;
use crate::model::ingest::{IngestOutcome, IngestWrite, RawRequest};
use crate::store::destinations::DESTINATION_DELETION_GUARD_LOCK;
use crate::store::error::{Context, StoreError};
use crate::store::ingest::plan::{BatchPlan, DedupeKey};
use crate::store::text::{postgres_text, postgres_text_array};

/// Stores a batch of writes in one transaction and says what became of each: claims the
/// batch's dedupe keys, reads the first arrivals of those it lost, and writes what
/// `plan::resolve_batch` decided.
pub async fn write_batch(
    pool: &PgPool,
    writes: &[IngestWrite],
    dedupe_window: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let body_keys = plan::body_keys(writes);
    let claim_plan = plan::plan_claims(writes, &body_keys, &mut Uuid::now_v7);
    let claims = claim_plan.sorted_claims();

    let mut transaction = pool.begin().await.context("beginning a transaction")?;
    let won = claim_keys(&mut transaction, &claims, dedupe_window, now).await?;
    let existing = first_arrivals(&mut transaction, &plan::lost_keys(&claims, &won)).await?;
    let claims = plan::Claims::new(claim_plan.first_claim, won, existing);
    let plan = plan::resolve_batch(
        writes,
        &claim_plan.row_ids,
        &body_keys,
        claims,
        &mut Uuid::now_v7,
    )?;
    write_plan(&mut transaction, &plan, now).await?;
    transaction.commit().await.context("committing")?;
    Ok(plan.outcomes)
}

/// The statements of a resolved batch, in the transaction that claimed its keys.
async fn write_plan(
    transaction: &mut sqlx::PgConnection,
    plan: &BatchPlan<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    count_suppressed(transaction, &plan.suppressed).await?;
    repoint_keys(transaction, &plan.repointed).await?;
    insert_raw_requests(transaction, &plan.raw_rows).await?;
    insert_events(transaction, &plan.event_rows, now).await?;
    insert_jobs(transaction, &plan.job_rows, now).await
}

/// Claims the keys (new, or older than the window and so reclaimed); returns those won.
async fn claim_keys<'a>(
    transaction: &mut sqlx::PgConnection,
    keys: &[(DedupeKey<'a>, Uuid)],
    dedupe_window: Duration,
    now: DateTime<Utc>,
) -> Result<HashSet<DedupeKey<'a>>, StoreError> {
    let won: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO dedupe_keys (source_name, event_id, event_row_id, created_at)
         SELECT source_name, event_id, event_row_id, $4
         FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS claim (source_name, event_id, event_row_id)
         ON CONFLICT (source_name, event_id) DO UPDATE
             SET event_row_id = EXCLUDED.event_row_id, created_at = EXCLUDED.created_at
             WHERE dedupe_keys.created_at < EXCLUDED.created_at - $5 * interval '1 second'
         RETURNING source_name, event_id",
    )
    .bind(keys.iter().map(|(key, _)| postgres_text(key.0)).collect::<Vec<_>>())
    .bind(keys.iter().map(|(key, _)| postgres_text(key.1)).collect::<Vec<_>>())
    .bind(keys.iter().map(|(_, row_id)| *row_id).collect::<Vec<_>>())
    .bind(now)
    .bind(dedupe_window.as_secs_f64())
    .fetch_all(&mut *transaction)
    .await
    .context("claiming dedupe keys")?;
    let won: HashSet<(String, String)> = won.into_iter().collect();
    Ok(keys
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| {
            won.contains(&(
                postgres_text(key.0).into_owned(),
                postgres_text(key.1).into_owned(),
            ))
        })
        .collect())
}

/// The stored row of each key that was claimed before (within the window).
async fn first_arrivals<'a>(
    transaction: &mut sqlx::PgConnection,
    lost: &[DedupeKey<'a>],
) -> Result<HashMap<DedupeKey<'a>, Uuid>, StoreError> {
    if lost.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
        "SELECT d.source_name, d.event_id, d.event_row_id
         FROM dedupe_keys d
         JOIN UNNEST($1::text[], $2::text[]) AS lost (source_name, event_id)
           ON d.source_name = lost.source_name AND d.event_id = lost.event_id",
    )
    .bind(
        lost.iter()
            .map(|key| postgres_text(key.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        lost.iter()
            .map(|key| postgres_text(key.1))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *transaction)
    .await
    .context("reading the first arrivals of duplicates")?;
    let rows: HashMap<(String, String), Uuid> = rows
        .into_iter()
        .map(|(scope, key, row_id)| ((scope, key), row_id))
        .collect();
    Ok(lost
        .iter()
        .filter_map(|key| {
            let stored = (
                postgres_text(key.0).into_owned(),
                postgres_text(key.1).into_owned(),
            );
            rows.get(&stored).map(|row_id| (*key, *row_id))
        })
        .collect())
}

/// Counts the later arrivals answered as duplicates on their keys' rows.
async fn count_suppressed(
    transaction: &mut sqlx::PgConnection,
    suppressed: &HashMap<DedupeKey<'_>, i32>,
) -> Result<(), StoreError> {
    if suppressed.is_empty() {
        return Ok(());
    }
    // In key order, like the claims, so concurrent batches lock rows in the same order.
    let mut counts: Vec<(DedupeKey, i32)> = suppressed
        .iter()
        .map(|(key, count)| (*key, *count))
        .collect();
    counts.sort_unstable();
    sqlx::query(
        "UPDATE dedupe_keys d SET duplicates_suppressed = d.duplicates_suppressed + c.count
         FROM UNNEST($1::text[], $2::text[], $3::int[]) AS c (source_name, event_id, count)
         WHERE d.source_name = c.source_name AND d.event_id = c.event_id",
    )
    .bind(key_texts(&counts, |key| key.0))
    .bind(key_texts(&counts, |key| key.1))
    .bind(counts.iter().map(|(_, count)| *count).collect::<Vec<_>>())
    .execute(&mut *transaction)
    .await
    .context("counting suppressed duplicates")?;
    Ok(())
}

/// One part (source or event id) of the keys of `rows`, made storable by PostgreSQL.
fn key_texts<'a, T>(
    rows: &[(DedupeKey<'a>, T)],
    part: fn(DedupeKey<'a>) -> &'a str,
) -> Vec<std::borrow::Cow<'a, str>> {
    rows.iter()
        .map(|(key, _)| postgres_text(part(*key)))
        .collect()
}

/// Points keys won by this batch at the event they stand for (see `BatchPlan::repointed`);
/// this transaction holds their rows already.
async fn repoint_keys(
    transaction: &mut sqlx::PgConnection,
    repointed: &[(DedupeKey<'_>, Uuid)],
) -> Result<(), StoreError> {
    if repointed.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE dedupe_keys d SET event_row_id = r.event_row_id
         FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS r (source_name, event_id, event_row_id)
         WHERE d.source_name = r.source_name AND d.event_id = r.event_id",
    )
    .bind(key_texts(repointed, |key| key.0))
    .bind(key_texts(repointed, |key| key.1))
    .bind(
        repointed
            .iter()
            .map(|(_, row_id)| *row_id)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *transaction)
    .await
    .context("pointing dedupe keys at their first events")?;
    Ok(())
}

/// The request's headers as stored: a JSON array of `[name, value]` pairs.
fn stored_headers(raw: &RawRequest) -> serde_json::Value {
    raw.headers
        .iter()
        .map(|(name, value)| serde_json::json!([postgres_text(name), postgres_text(value)]))
        .collect()
}

async fn insert_raw_requests(
    transaction: &mut sqlx::PgConnection,
    raw_rows: &[(&RawRequest, &'static str, Option<&str>)],
) -> Result<(), StoreError> {
    if raw_rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO raw_requests
             (id, source_name, received_at, method, path, query, headers, body, status, plugin, error)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
             $6::text[], $7::jsonb[], $8::bytea[], $9::text[], $10::text[], $11::text[])
         -- A replayed quarantined request is written again under its own id: it becomes
         -- accepted, with the plugin version that handled it this time.
         ON CONFLICT (id) DO UPDATE
             SET status = EXCLUDED.status, plugin = EXCLUDED.plugin, error = EXCLUDED.error",
    )
    .bind(raw_rows.iter().map(|r| r.0.id).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.source_name)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.0.received_at).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.method)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.path)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.query)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| stored_headers(r.0)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.0.body.as_slice()).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.plugin)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.2.map(postgres_text)).collect::<Vec<_>>())
    .execute(&mut *transaction)
    .await
    .context("storing raw requests")?;
    Ok(())
}

async fn insert_events(
    transaction: &mut sqlx::PgConnection,
    event_rows: &[(Uuid, &RawRequest, &NormalizedEvent)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if event_rows.is_empty() {
        return Ok(());
    }
    let route_keys: Vec<String> = event_rows
        .iter()
        .map(|(_, _, event)| postgres_text_array(&event.route_keys))
        .collect();
    sqlx::query(
        "INSERT INTO events
             (id, raw_request_id, source_name, event_id, event_type, event_source, subject,
              time, data, route_keys, created_at)
         SELECT id, raw_request_id, source_name, event_id, event_type, event_source, subject,
              time, data, route_keys::text[], $11
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::text[], $10::text[])
              AS e (id, raw_request_id, source_name, event_id, event_type, event_source,
                    subject, time, data, route_keys)",
    )
    .bind(event_rows.iter().map(|e| e.0).collect::<Vec<_>>())
    .bind(event_rows.iter().map(|e| e.1.id).collect::<Vec<_>>())
    .bind(
        event_rows
            .iter()
            .map(|e| postgres_text(&e.1.source_name))
            .collect::<Vec<_>>(),
    )
    .bind(event_texts(event_rows, |event| &event.id))
    .bind(event_texts(event_rows, |event| &event.event_type))
    .bind(event_texts(event_rows, |event| &event.source))
    .bind(
        event_rows
            .iter()
            .map(|e| e.2.subject.as_deref().map(postgres_text))
            .collect::<Vec<_>>(),
    )
    .bind(event_texts(event_rows, |event| &event.time))
    .bind(event_texts(event_rows, |event| &event.data_json))
    .bind(route_keys)
    .bind(now)
    .execute(&mut *transaction)
    .await
    .context("storing events")?;
    Ok(())
}

/// One text column of the event rows, made storable by PostgreSQL.
fn event_texts<'a>(
    event_rows: &[(Uuid, &'a RawRequest, &'a NormalizedEvent)],
    field: fn(&NormalizedEvent) -> &str,
) -> Vec<std::borrow::Cow<'a, str>> {
    event_rows
        .iter()
        .map(|(_, _, event)| postgres_text(field(event)))
        .collect()
}

async fn insert_jobs(
    transaction: &mut sqlx::PgConnection,
    job_rows: &[(Uuid, Uuid, &str)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if job_rows.is_empty() {
        return Ok(());
    }
    // The guard is taken before the insert, so that the insert's snapshot is later than any
    // destination deletion that held it: no job is written for a destination deleted with its
    // jobs. The notification rides in the same statement (it is sent only at commit, and wakes
    // the delivery workers then), so the guard costs no round trip of its own.
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1), pg_notify('wasmhook_jobs', '')")
        .bind(DESTINATION_DELETION_GUARD_LOCK)
        .execute(&mut *transaction)
        .await
        .context("taking the destination deletion guard and notifying the workers")?;
    sqlx::query(
        "INSERT INTO delivery_jobs (id, event_row_id, destination_name, next_attempt_at, created_at)
         SELECT j.id, j.event_row_id, j.destination_name, $4, $4
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS j (id, event_row_id, destination_name)
         -- A destination deleted since the routes were last refreshed gets no job, rather
         -- than failing every request in the batch.
         WHERE EXISTS (SELECT 1 FROM destinations d WHERE d.name = j.destination_name)",
    )
    .bind(job_rows.iter().map(|j| j.0).collect::<Vec<_>>())
    .bind(job_rows.iter().map(|j| j.1).collect::<Vec<_>>())
    .bind(job_rows.iter().map(|j| j.2).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *transaction)
    .await
    .context("creating delivery jobs")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct RawRequestRow {
    id: Uuid,
    source_name: String,
    received_at: DateTime<Utc>,
    method: String,
    path: String,
    query: String,
    headers: serde_json::Value,
    body: Vec<u8>,
    plugin: String,
}

/// One page of quarantined raw requests in arrival order (one by id, or every one), after
/// `after`, the `(received_at, id)` of the last request of the previous page. Paging by key
/// keeps a replay's memory to one page and never reads a request twice, even when it stays
/// quarantined.
pub async fn quarantined_requests(
    pool: &PgPool,
    request_id: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<RawRequest>, StoreError> {
    let rows: Vec<RawRequestRow> = sqlx::query_as(
        "SELECT id, source_name, received_at, method, path, query, headers, body, plugin
         FROM raw_requests
         WHERE status = 'quarantined' AND ($1::uuid IS NULL OR id = $1)
           AND ($2::timestamptz IS NULL OR (received_at, id) > ($2, $3))
         ORDER BY received_at, id LIMIT $4",
    )
    .bind(request_id)
    .bind(after.map(|(received_at, _)| received_at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("reading quarantined requests")?;
    Ok(rows
        .into_iter()
        .map(|row| RawRequest {
            id: row.id,
            source_name: row.source_name,
            received_at: row.received_at,
            method: row.method,
            path: row.path,
            query: row.query,
            headers: serde_json::from_value(row.headers).unwrap_or_default(),
            body: row.body,
            plugin: row.plugin,
        })
        .collect())
}

/// Counts the quarantined requests a replay would run (one by id, or every one).
pub async fn count_quarantined(pool: &PgPool, request_id: Option<Uuid>) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM raw_requests
         WHERE status = 'quarantined' AND ($1::uuid IS NULL OR id = $1)",
    )
    .bind(request_id)
    .fetch_one(pool)
    .await
    .context("counting quarantined requests")
}

/// Marks a quarantined request as handled (its events turned out to be duplicates on replay).
pub async fn mark_request_accepted(pool: &PgPool, request_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("UPDATE raw_requests SET status = 'accepted', error = NULL WHERE id = $1")
        .bind(request_id)
        .execute(pool)
        .await
        .context("marking the request accepted")?;
    Ok(())
}
