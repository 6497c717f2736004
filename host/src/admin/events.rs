//! Events: the listing of stored events and quarantined requests, and one event with its
//! request (headers redacted) and deliveries.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sources::{built_scheme, stored_source};
use super::{AdminState, ErrorBody};
use crate::http_error::ApiError;
use crate::ingest::redaction;
use crate::store::{self, events::EventFilter};

/// Query parameters of the event listing.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only this source.
    pub source: Option<String>,
    /// Only this event type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// `accepted` (stored events, the default) or `quarantined` (requests awaiting replay).
    pub status: Option<String>,
    /// Stored at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Stored before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

/// One page of events (or quarantined requests), newest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub events: Vec<store::events::EventSummary>,
    pub quarantined: Vec<store::events::QuarantinedSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// The cursor of the page after `page`: its last id, when the page is full.
fn next_cursor<T>(page: &[T], limit: i64, id: impl Fn(&T) -> Uuid) -> Option<Uuid> {
    (page.len() as i64 == limit)
        .then(|| page.last().map(id))
        .flatten()
}

#[utoipa::path(get, path = "/admin/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_events(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_field("query", rejection.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 500",
        ));
    }
    let filter = EventFilter {
        source_name: query.source,
        event_type: query.event_type,
        since: query.since,
        until: query.until,
        before: query.cursor,
        limit,
    };
    match query.status.as_deref() {
        None | Some("accepted") => {
            let events = store::events::list_events(&state.pool, &filter).await?;
            Ok(Json(EventPage {
                next_cursor: next_cursor(&events, limit, |event| event.id),
                events,
                quarantined: Vec::new(),
            }))
        }
        Some("quarantined") => {
            let quarantined = store::events::list_quarantined(&state.pool, &filter).await?;
            Ok(Json(EventPage {
                next_cursor: next_cursor(&quarantined, limit, |request| request.id),
                events: Vec::new(),
                quarantined,
            }))
        }
        Some(other) => Err(ApiError::invalid_field(
            "status",
            format!("{other:?} is not accepted or quarantined"),
        )),
    }
}

#[utoipa::path(get, path = "/admin/v1/events/{id}", tag = "events",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = store::events::EventDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_event(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<store::events::EventDetail>, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no event with id {id:?}")))?;
    let mut detail = store::events::event_detail(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event with id {id}")))?;
    // Requests are redacted before they are stored. A row stored before that still holds its
    // source's token, so the source's current scheme says which header to hide.
    match current_scheme(&state, &detail.source_name).await {
        Some(scheme) => redaction::redact_request_headers(&scheme, &mut detail.raw_request.headers),
        None => redaction::redact_every_header_value(&mut detail.raw_request.headers),
    }
    Ok(Json(detail))
}

/// The signature scheme a source's plugin uses now: from this process's ingest routes, else
/// by building the stored source. `None` when the source is gone or cannot be built.
async fn current_scheme(
    state: &AdminState,
    source_name: &str,
) -> Option<crate::signature::SignatureScheme> {
    if let Some(ingest) = &state.ingest
        && let Some(source) = ingest.registry.get(source_name)
    {
        return Some(source.active.load().settings.signature.clone());
    }
    let stored = stored_source(state, source_name).await.ok()??;
    built_scheme(state, &stored).await.ok()
}
