//! Replay: making finished deliveries due again, or counting which would be.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AdminState, ErrorBody, json_body};
use crate::http_error::ApiError;
use crate::store::jobs::{self, ReplayFilter};

/// Which finished deliveries to make due again.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub event_id: Option<Uuid>,
    pub destination: Option<String>,
    pub source: Option<String>,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub event_type: Option<String>,
    /// Job states to replay: delivered, failed, dead; all three when absent.
    #[serde(default)]
    pub states: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Count only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ReplayAnswer {
    pub count: i64,
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/admin/v1/replay", tag = "replay", request_body = ReplayRequest,
    responses((status = 200, body = ReplayAnswer), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn replay(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Json<ReplayAnswer>, ApiError> {
    let request: ReplayRequest = json_body(&body)?;
    if let Some(state_name) = request
        .states
        .iter()
        .find(|state_name| !["delivered", "failed", "dead"].contains(&state_name.as_str()))
    {
        return Err(ApiError::invalid_field(
            "states",
            format!("{state_name:?} is not one of delivered, failed, dead"),
        ));
    }
    let filter = ReplayFilter {
        event_row_id: request.event_id,
        destination_name: request.destination,
        source_name: request.source,
        event_type: request.event_type,
        job_states: request.states,
        since: request.since,
        until: request.until,
    };
    let count = if request.dry_run {
        jobs::count_replay(&state.pool, &filter).await
    } else {
        jobs::replay(&state.pool, &filter).await
    }?;
    Ok(Json(ReplayAnswer {
        count,
        dry_run: request.dry_run,
    }))
}
