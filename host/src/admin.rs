//! The admin API, `/admin/v1`: destinations, events and replay, behind a bearer token, with
//! its OpenAPI 3.1 document generated from these handlers at `/admin/v1/openapi.json`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use utoipa::OpenApi;
use uuid::Uuid;

use crate::config::DestinationConfig;
use crate::http_error::ApiError;
use crate::ingest::IngestState;
use crate::queue::{self, ReplayFilter};
use crate::store::{self, DestinationChange, EventFilter};

/// What the admin handlers share.
pub struct AdminState {
    pub pool: PgPool,
    /// SHA-256 of the token, so the comparison is constant-time whatever the lengths.
    pub token_digest: [u8; 32],
    /// The ingest routes of this process, refreshed at once after a destination changes.
    pub ingest: Option<Arc<IngestState>>,
    /// Compiles and checks uploaded plugins.
    pub runtime: Arc<crate::plugins::PluginRuntime>,
}

impl AdminState {
    pub fn new(
        pool: PgPool,
        token: &str,
        ingest: Option<Arc<IngestState>>,
        runtime: Arc<crate::plugins::PluginRuntime>,
    ) -> AdminState {
        AdminState {
            pool,
            token_digest: Sha256::digest(token.as_bytes()).into(),
            ingest,
            runtime,
        }
    }

    async fn destinations_changed(&self) {
        if let Some(ingest) = &self.ingest
            && let Err(error) = ingest.refresh_destinations(&self.pool).await
        {
            tracing::warn!("cannot refresh destinations after an admin change: {error:#}");
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmhook admin API", version = "1"),
    paths(
        list_destinations,
        create_destination,
        get_destination,
        update_destination,
        delete_destination,
        pause_destination,
        resume_destination,
        list_events,
        get_event,
        replay,
        list_plugins,
        upload_plugin,
        activate_plugin,
        rollback_plugin,
    ),
    components(schemas(
        DestinationView,
        DestinationConfig,
        store::DestinationStats,
        EventPage,
        store::EventSummary,
        store::QuarantinedSummary,
        store::EventDetail,
        store::RawRequestView,
        store::DeliveryView,
        store::AttemptView,
        ReplayRequest,
        ReplayAnswer,
        store::PluginVersionView,
        ActivateRequest,
        ErrorBody,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct AdminApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error body every failure carries.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub detail: String,
}

/// The admin router, to be served at the root (its paths start with `/admin/v1`).
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route(
            "/admin/v1/destinations",
            get(list_destinations).post(create_destination),
        )
        .route(
            "/admin/v1/destinations/{name}",
            get(get_destination)
                .put(update_destination)
                .delete(delete_destination),
        )
        .route(
            "/admin/v1/destinations/{name}/pause",
            post(pause_destination),
        )
        .route(
            "/admin/v1/destinations/{name}/resume",
            post(resume_destination),
        )
        .route("/admin/v1/events", get(list_events))
        .route("/admin/v1/events/{id}", get(get_event))
        .route("/admin/v1/replay", post(replay))
        .route("/admin/v1/plugins", get(list_plugins))
        .route(
            "/admin/v1/plugins/{name}",
            axum::routing::put(upload_plugin)
                // JavaScript and Python components are tens of megabytes.
                .layer(axum::extract::DefaultBodyLimit::max(128 << 20)),
        )
        .route("/admin/v1/plugins/{name}/activate", post(activate_plugin))
        .route("/admin/v1/plugins/{name}/rollback", post(rollback_plugin))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state);
    protected.route("/admin/v1/openapi.json", get(openapi_document))
}

async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        AdminApiDoc::openapi()
            .to_pretty_json()
            .expect("the document serializes"),
    )
        .into_response()
}

async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    let presented_digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    if !bool::from(presented_digest.ct_eq(&state.token_digest)) {
        return Err(ApiError::unauthorized());
    }
    Ok(next.run(request).await)
}

/// A destination as the API shows it: every setting, never the secret.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    pub timeout_seconds: f64,
    pub retry_schedule_seconds: Vec<f64>,
    pub throttle_min_delay_seconds: f64,
    pub max_concurrency: usize,
    pub rate_limit_per_second: Option<f64>,
    pub paused: bool,
    pub allow_private_networks: bool,
    pub retry_client_errors: bool,
    pub breaker_failure_threshold: u32,
    pub breaker_cooldown_seconds: f64,
    pub has_signing_secret: bool,
    /// Shown once, in the answer that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_signing_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<store::DestinationStats>,
}

impl From<crate::delivery::Destination> for DestinationView {
    fn from(destination: crate::delivery::Destination) -> Self {
        DestinationView {
            name: destination.name,
            url: destination.url,
            routes: destination.routes,
            headers: destination.headers.into_iter().collect(),
            timeout_seconds: destination.timeout.as_secs_f64(),
            retry_schedule_seconds: destination
                .retry_policy
                .schedule
                .iter()
                .map(|delay| delay.as_secs_f64())
                .collect(),
            throttle_min_delay_seconds: destination.retry_policy.throttle_min_delay.as_secs_f64(),
            max_concurrency: destination.max_concurrency,
            rate_limit_per_second: destination.rate_limit_per_second,
            paused: destination.paused,
            allow_private_networks: destination.allow_private_networks,
            retry_client_errors: destination.retry_client_errors,
            breaker_failure_threshold: destination.breaker_failure_threshold,
            breaker_cooldown_seconds: destination.breaker_cooldown.as_secs_f64(),
            has_signing_secret: destination.signing_secret.is_some(),
            generated_signing_secret: None,
            stats: None,
        }
    }
}

async fn find_destination(
    state: &AdminState,
    name: &str,
) -> Result<crate::delivery::Destination, ApiError> {
    queue::load_destinations(&state.pool, false)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .into_iter()
        .find(|destination| destination.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no destination named {name:?}")))
}

/// Parses and checks a destination body; the error names the field.
fn destination_input(body: &[u8]) -> Result<(DestinationConfig, Option<String>), ApiError> {
    let input: DestinationConfig =
        serde_json::from_slice(body).map_err(|error| ApiError::invalid_field("body", error))?;
    input
        .check()
        .map_err(|(field, problem)| ApiError::invalid_field(field, problem))?;
    // Over the API a secret is always a literal: `env:` and `file:` would let a caller read
    // the server's environment or files.
    let secret = match &input.secret {
        Some(reference) => {
            let text = reference.as_literal();
            if text.starts_with("env:") || text.starts_with("file:") {
                return Err(ApiError::invalid_field(
                    "secret",
                    "must be the secret itself (env: and file: references are for the config file)",
                ));
            }
            if text.is_empty() {
                return Err(ApiError::invalid_field("secret", "is empty"));
            }
            Some(text.to_owned())
        }
        None => None,
    };
    Ok((input, secret))
}

#[utoipa::path(get, path = "/admin/v1/destinations", tag = "destinations",
    responses((status = 200, body = Vec<DestinationView>), (status = 401, body = ErrorBody)))]
async fn list_destinations(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<DestinationView>>, ApiError> {
    let destinations = queue::load_destinations(&state.pool, false)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    Ok(Json(
        destinations
            .into_iter()
            .map(DestinationView::from)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/admin/v1/destinations", tag = "destinations",
    request_body(content = DestinationConfig, description = "Every key of a `[[destinations]]` entry in the config; `secret` is generated when absent."),
    responses((status = 201, body = DestinationView), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_destination(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (input, secret) = destination_input(&body)?;
    let generated = secret.is_none().then(store::generate_signing_secret);
    let record = input.to_record(secret.or_else(|| generated.clone()));
    match store::create_destination(&state.pool, &record)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        DestinationChange::AlreadyExists => {
            return Err(ApiError::conflict(format!(
                "a destination named {:?} exists",
                input.name
            )));
        }
        DestinationChange::Done | DestinationChange::NotFound => {}
    }
    state.destinations_changed().await;
    let mut view = DestinationView::from(find_destination(&state, &input.name).await?);
    view.generated_signing_secret = generated;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn get_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    let mut view = DestinationView::from(find_destination(&state, &name).await?);
    view.stats = Some(
        store::destination_stats(&state.pool, &name)
            .await
            .map_err(|error| ApiError::internal(&error))?,
    );
    Ok(Json(view))
}

#[utoipa::path(put, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    request_body(content = DestinationConfig, description = "The destination's settings; a `secret` replaces the signing secret."),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn update_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<DestinationView>, ApiError> {
    let (input, secret) = destination_input(&body)?;
    if input.name != name {
        return Err(ApiError::invalid_field(
            "name",
            "must equal the name in the path (destinations are not renamed)",
        ));
    }
    match store::update_destination(&state.pool, &input.to_record(secret))
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        DestinationChange::NotFound => {
            return Err(ApiError::not_found(format!(
                "no destination named {name:?}"
            )));
        }
        DestinationChange::Done | DestinationChange::AlreadyExists => {}
    }
    state.destinations_changed().await;
    Ok(Json(DestinationView::from(
        find_destination(&state, &name).await?,
    )))
}

#[utoipa::path(delete, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn delete_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match store::delete_destination(&state.pool, &name)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        DestinationChange::NotFound => Err(ApiError::not_found(format!(
            "no destination named {name:?}"
        ))),
        DestinationChange::Done | DestinationChange::AlreadyExists => {
            state.destinations_changed().await;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

async fn set_paused(
    state: &AdminState,
    name: &str,
    paused: bool,
) -> Result<Json<DestinationView>, ApiError> {
    find_destination(state, name).await?;
    queue::set_paused(&state.pool, name, paused)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    Ok(Json(DestinationView::from(
        find_destination(state, name).await?,
    )))
}

#[utoipa::path(post, path = "/admin/v1/destinations/{name}/pause", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn pause_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    set_paused(&state, &name, true).await
}

#[utoipa::path(post, path = "/admin/v1/destinations/{name}/resume", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn resume_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    set_paused(&state, &name, false).await
}

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
    pub events: Vec<store::EventSummary>,
    pub quarantined: Vec<store::QuarantinedSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(get, path = "/admin/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_events(
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
            let events = store::list_events(&state.pool, &filter)
                .await
                .map_err(|error| ApiError::internal(&error))?;
            let next_cursor = (events.len() as i64 == limit)
                .then(|| events.last().map(|event| event.id))
                .flatten();
            Ok(Json(EventPage {
                events,
                quarantined: Vec::new(),
                next_cursor,
            }))
        }
        Some("quarantined") => {
            let quarantined = store::list_quarantined(&state.pool, &filter)
                .await
                .map_err(|error| ApiError::internal(&error))?;
            let next_cursor = (quarantined.len() as i64 == limit)
                .then(|| quarantined.last().map(|request| request.id))
                .flatten();
            Ok(Json(EventPage {
                events: Vec::new(),
                quarantined,
                next_cursor,
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
    responses((status = 200, body = store::EventDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn get_event(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<store::EventDetail>, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no event with id {id:?}")))?;
    store::event_detail(&state.pool, id)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no event with id {id}")))
}

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
async fn replay(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Json<ReplayAnswer>, ApiError> {
    let request: ReplayRequest =
        serde_json::from_slice(&body).map_err(|error| ApiError::invalid_field("body", error))?;
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
        queue::count_replay(&state.pool, &filter).await
    } else {
        queue::replay(&state.pool, &filter).await
    }
    .map_err(|error| ApiError::internal(&error))?;
    Ok(Json(ReplayAnswer {
        count,
        dry_run: request.dry_run,
    }))
}

#[utoipa::path(get, path = "/admin/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<store::PluginVersionView>), (status = 401, body = ErrorBody)))]
async fn list_plugins(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<store::PluginVersionView>>, ApiError> {
    store::list_plugin_versions(&state.pool)
        .await
        .map(Json)
        .map_err(|error| ApiError::internal(&error))
}

fn check_plugin_name(name: &str) -> Result<(), ApiError> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        });
    if plain {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "name",
            "must be 1-64 characters of a-z, 0-9, '-' and '_'",
        ))
    }
}

#[utoipa::path(put, path = "/admin/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component (.wasm), as raw bytes."),
    responses((status = 201, body = store::PluginVersionView), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn upload_plugin(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_plugin_name(&name)?;
    // Compiled and checked (a component of this contract whose describe() answers) before it
    // becomes a version; the active version keeps serving either way.
    let plugin = state
        .runtime
        .load_bytes(&name, &body, crate::plugins::PluginLimits::default())
        .await
        .map_err(|error| ApiError::invalid_field("body", error))?;
    let manifest = serde_json::to_value(plugin.manifest())
        .map_err(|error| ApiError::internal(&error.into()))?;
    let version_id =
        store::register_plugin_version(&state.pool, &name, plugin.content_hash(), &body, &manifest)
            .await
            .map_err(|error| ApiError::internal(&error))?;
    let view = store::list_plugin_versions(&state.pool)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .into_iter()
        .find(|version| version.id == version_id)
        .ok_or_else(|| ApiError::internal(&anyhow::anyhow!("the stored version vanished")))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Which version to activate.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub version_id: Uuid,
}

#[utoipa::path(post, path = "/admin/v1/plugins/{name}/activate", tag = "plugins",
    params(("name" = String, Path)), request_body = ActivateRequest,
    responses((status = 200, body = Vec<store::PluginVersionView>), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn activate_plugin(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Vec<store::PluginVersionView>>, ApiError> {
    let request: ActivateRequest =
        serde_json::from_slice(&body).map_err(|error| ApiError::invalid_field("body", error))?;
    let activated = store::activate_plugin_version(&state.pool, &name, request.version_id)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    if !activated {
        return Err(ApiError::not_found(format!(
            "plugin {name:?} has no version {}",
            request.version_id
        )));
    }
    list_plugins(State(state)).await
}

#[utoipa::path(post, path = "/admin/v1/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<store::PluginVersionView>), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn rollback_plugin(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<store::PluginVersionView>>, ApiError> {
    let previous = store::previous_plugin_version(&state.pool, &name)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "plugin {name:?} has no earlier version to roll back to"
            ))
        })?;
    store::activate_plugin_version(&state.pool, &name, previous)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    list_plugins(State(state)).await
}
