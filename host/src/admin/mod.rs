//! The admin API, `/admin/v1`: sources, destinations, their secrets, events, replay and
//! plugins, behind a bearer token, with its OpenAPI 3.1 document generated from these handlers
//! at `/admin/v1/openapi.json`.
//!
//! This folder owns the HTTP surface of the admin API: one file per resource with its request
//! and response views beside its handlers, the token check (`auth`), and the document and the
//! operation table (`openapi`). `mod.rs` keeps the shared state, the router and the few body
//! checks every resource uses. It may call the config's types and checks, the store, the
//! source builder and the plugin directory, the ingest routes (to refresh them after a change),
//! the plugin runtime, the signature schemes, redaction and the login throttle; nothing below
//! it calls back into it.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use sqlx::PgPool;

use crate::http_error::ApiError;
use crate::ingest::handler::IngestState;
use crate::rate_limit::LoginThrottle;
use crate::sources::registry::SourceDefaults;
use crate::store::secrets::Change;

mod auth;
mod destinations;
mod events;
pub mod openapi;
mod plugins;
mod replay;
mod secrets;
mod sources;

/// What the admin handlers share.
pub struct AdminState {
    pub pool: PgPool,
    /// SHA-256 of the token, so the comparison is constant-time whatever the lengths.
    pub token_digest: [u8; 32],
    /// The ingest routes of this process, refreshed at once after a destination changes.
    pub ingest: Option<Arc<IngestState>>,
    /// Compiles and checks uploaded plugins, and the plugins of new or changed sources.
    pub runtime: Arc<crate::plugins::PluginRuntime>,
    /// What a source's settings default to, to check a source before storing it.
    pub source_defaults: SourceDefaults,
    /// Where plugin files are found, so a new source may name one that is not registered yet.
    pub plugins_directory: std::path::PathBuf,
    /// Failed logins per client address: guessing the token is throttled.
    pub login_throttle: std::sync::Mutex<LoginThrottle>,
}

impl AdminState {
    pub fn new(
        pool: PgPool,
        token: &str,
        ingest: Option<Arc<IngestState>>,
        runtime: Arc<crate::plugins::PluginRuntime>,
        source_defaults: SourceDefaults,
        plugins_directory: std::path::PathBuf,
    ) -> AdminState {
        AdminState {
            pool,
            token_digest: auth::token_digest(token),
            ingest,
            runtime,
            source_defaults,
            plugins_directory,
            login_throttle: std::sync::Mutex::new(auth::login_throttle()),
        }
    }

    async fn sources_changed(&self) {
        if let Some(ingest) = &self.ingest
            && let Err(error) = ingest.registry.refresh_sources(&self.pool).await
        {
            tracing::warn!("cannot refresh sources after an admin change: {error:#}");
        }
    }

    async fn destinations_changed(&self) {
        if let Some(ingest) = &self.ingest
            && let Err(error) = ingest.registry.refresh_destinations(&self.pool).await
        {
            tracing::warn!("cannot refresh destinations after an admin change: {error:#}");
        }
    }
}

/// The admin router, to be served at the root (its paths start with `/admin/v1`).
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = openapi::operation_table()
        .into_iter()
        .fold(Router::new(), |router, operation| {
            router.route(operation.path, operation.route)
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state);
    protected.route("/admin/v1/openapi.json", get(openapi::openapi_document))
}

/// The error body every failure carries.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub detail: String,
}

/// A JSON request body; a body that does not parse is a 422 naming `body`.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError::invalid_field("body", error))
}

/// Refuses a body whose `name` differs from the name in the path: `plural` (sources,
/// destinations) are not renamed.
fn same_name(path_name: &str, body_name: &str, plural: &str) -> Result<(), ApiError> {
    if path_name == body_name {
        return Ok(());
    }
    Err(ApiError::invalid_field(
        "name",
        format!("must equal the name in the path ({plural} are not renamed)"),
    ))
}

/// Goes on when a store change was done; otherwise refuses with `refusal` (a 404 or 409: the
/// store answers anything but `Done` when the row is missing or already there).
fn done_or(change: Change, refusal: impl FnOnce() -> ApiError) -> Result<(), ApiError> {
    match change {
        Change::Done => Ok(()),
        _ => Err(refusal()),
    }
}

/// The 404 for a `noun` (source, destination) of that name.
fn no_such(noun: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("no {noun} named {name:?}"))
}
