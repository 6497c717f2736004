//! The admin API's read model of what was stored: event and quarantine listings, an event's
//! detail with its deliveries and attempts, and row counts.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::error::{Context, StoreError};
use crate::store::job_state::JobState;

/// Counts used by tests and the admin API: rows per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredCounts {
    pub raw_requests: i64,
    pub quarantined: i64,
    pub events: i64,
    pub delivery_jobs: i64,
}

pub async fn stored_counts(pool: &PgPool) -> Result<StoredCounts, StoreError> {
    let (raw_requests, quarantined, events, delivery_jobs): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM raw_requests),
                (SELECT count(*) FROM raw_requests WHERE status = 'quarantined'),
                (SELECT count(*) FROM events),
                (SELECT count(*) FROM delivery_jobs)",
    )
    .fetch_one(pool)
    .await
    .context("counting stored rows")?;
    Ok(StoredCounts {
        raw_requests,
        quarantined,
        events,
        delivery_jobs,
    })
}

/// Filters for listing stored events, newest first.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub source_name: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this one (the previous page's last id).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// One row of an event listing.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EventSummary {
    pub id: Uuid,
    pub source_name: String,
    pub event_id: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub created_at: DateTime<Utc>,
    pub raw_request_id: Uuid,
    /// Later arrivals of this event id answered as duplicates within the dedupe window.
    pub duplicates_suppressed: i32,
}

pub async fn list_events(
    pool: &PgPool,
    filter: &EventFilter,
) -> Result<Vec<EventSummary>, StoreError> {
    sqlx::query_as(
        "SELECT e.id, e.source_name, e.event_id, e.event_type, e.subject, e.created_at,
                e.raw_request_id, coalesce(d.duplicates_suppressed, 0) AS duplicates_suppressed
         FROM events e
         LEFT JOIN dedupe_keys d ON d.source_name = e.source_name AND d.event_id = e.event_id
                                AND d.event_row_id = e.id
         WHERE ($1::text IS NULL OR e.source_name = $1)
           AND ($2::text IS NULL OR e.event_type = $2)
           AND ($3::timestamptz IS NULL OR e.created_at >= $3)
           AND ($4::timestamptz IS NULL OR e.created_at < $4)
           AND ($5::uuid IS NULL OR e.id < $5)
         ORDER BY e.id DESC LIMIT $6",
    )
    .bind(filter.source_name.as_deref())
    .bind(filter.event_type.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(pool)
    .await
    .context("listing events")
}

/// One quarantined request in a listing.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct QuarantinedSummary {
    pub id: Uuid,
    pub source_name: String,
    pub received_at: DateTime<Utc>,
    pub plugin: String,
    pub error: Option<String>,
}

pub async fn list_quarantined(
    pool: &PgPool,
    filter: &EventFilter,
) -> Result<Vec<QuarantinedSummary>, StoreError> {
    sqlx::query_as(
        "SELECT id, source_name, received_at, plugin, error FROM raw_requests
         WHERE status = 'quarantined'
           AND ($1::text IS NULL OR source_name = $1)
           AND ($2::timestamptz IS NULL OR received_at >= $2)
           AND ($3::timestamptz IS NULL OR received_at < $3)
           AND ($4::uuid IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5",
    )
    .bind(filter.source_name.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(pool)
    .await
    .context("listing quarantined requests")
}

/// An event with its raw request and every delivery with every attempt.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    pub id: Uuid,
    pub source_name: String,
    pub event_id: String,
    pub event_type: String,
    pub event_source: String,
    pub subject: Option<String>,
    pub time: String,
    /// The event data, as the plugin produced it.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub route_keys: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub raw_request: RawRequestView,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RawRequestView {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: String,
    /// `[name, value]` pairs as received, credentials redacted (`[redacted]`).
    pub headers: Vec<(String, String)>,
    /// The body as text (invalid UTF-8 replaced); `body_base64` has the exact bytes.
    pub body: String,
    pub body_base64: String,
    pub plugin: String,
    pub status: String,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub job_id: Uuid,
    pub destination: String,
    pub state: JobState,
    pub attempt: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub attempts: Vec<AttemptView>,
}

#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: String,
}

type EventRow = (
    Uuid,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Vec<String>,
    DateTime<Utc>,
    Uuid,
);

type RawRow = (
    Uuid,
    DateTime<Utc>,
    String,
    String,
    String,
    serde_json::Value,
    Vec<u8>,
    String,
    String,
);

pub async fn event_detail(pool: &PgPool, id: Uuid) -> Result<Option<EventDetail>, StoreError> {
    let event: Option<EventRow> = sqlx::query_as(
        "SELECT id, source_name, event_id, event_type, event_source, subject, time, data,
                route_keys, created_at, raw_request_id
         FROM events WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("reading the event")?;
    let Some(event) = event else {
        return Ok(None);
    };
    let raw: RawRow = sqlx::query_as(
        "SELECT id, received_at, method, path, query, headers, body, plugin, status
         FROM raw_requests WHERE id = $1",
    )
    .bind(event.10)
    .fetch_one(pool)
    .await
    .context("reading the raw request")?;
    let deliveries = deliveries(pool, id).await?;
    Ok(Some(detail_view(event, raw, deliveries)))
}

/// Every delivery of an event with every attempt, by destination name.
async fn deliveries(pool: &PgPool, event_row_id: Uuid) -> Result<Vec<DeliveryView>, StoreError> {
    let jobs: Vec<(Uuid, String, JobState, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, destination_name, state, attempt, next_attempt_at
         FROM delivery_jobs WHERE event_row_id = $1 ORDER BY destination_name",
    )
    .bind(event_row_id)
    .fetch_all(pool)
    .await
    .context("reading the deliveries")?;
    let mut deliveries = Vec::with_capacity(jobs.len());
    for (job_id, destination, state, attempt, next_attempt_at) in jobs {
        let attempts: Vec<AttemptView> = sqlx::query_as(
            "SELECT attempt, started_at, duration_ms, status_code, response_body, error, outcome
             FROM delivery_attempts WHERE job_id = $1 ORDER BY started_at",
        )
        .bind(job_id)
        .fetch_all(pool)
        .await
        .context("reading the attempts")?;
        deliveries.push(DeliveryView {
            job_id,
            destination,
            state,
            attempt,
            next_attempt_at,
            attempts,
        });
    }
    Ok(deliveries)
}

fn detail_view(event: EventRow, raw: RawRow, deliveries: Vec<DeliveryView>) -> EventDetail {
    use base64::Engine as _;
    EventDetail {
        id: event.0,
        source_name: event.1,
        event_id: event.2,
        event_type: event.3,
        event_source: event.4,
        subject: event.5,
        time: event.6,
        data: serde_json::from_str(&event.7).unwrap_or(serde_json::Value::Null),
        route_keys: event.8,
        created_at: event.9,
        raw_request: RawRequestView {
            id: raw.0,
            received_at: raw.1,
            method: raw.2,
            path: raw.3,
            query: raw.4,
            headers: serde_json::from_value(raw.5).unwrap_or_default(),
            body: String::from_utf8_lossy(&raw.6).into_owned(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&raw.6),
            plugin: raw.7,
            status: raw.8,
        },
        deliveries,
    }
}
