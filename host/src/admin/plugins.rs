//! Plugin versions: uploading one (compiled and checked first), activating one, rolling back.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{AdminState, ErrorBody, json_body};
use crate::http_error::ApiError;
use crate::store;

#[utoipa::path(get, path = "/admin/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<store::plugin_versions::PluginVersionView>), (status = 401, body = ErrorBody)))]
pub(super) async fn list_plugins(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<store::plugin_versions::PluginVersionView>>, ApiError> {
    store::plugin_versions::list_plugin_versions(&state.pool)
        .await
        .map(Json)
        .map_err(|error| ApiError::internal(&error))
}

fn check_plugin_name(name: &str) -> Result<(), ApiError> {
    if crate::config::is_plain_name(name) {
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
    responses((status = 201, body = store::plugin_versions::PluginVersionView), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn upload_plugin(
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
        .map_err(|error| ApiError::internal(&anyhow::Error::from(error)))?;
    let (version_id, _) = store::plugin_versions::register_plugin_version(
        &state.pool,
        &name,
        plugin.content_hash(),
        &body,
        &manifest,
    )
    .await?;
    let view = store::plugin_versions::list_plugin_versions(&state.pool)
        .await?
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
    responses((status = 200, body = Vec<store::plugin_versions::PluginVersionView>), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn activate_plugin(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Vec<store::plugin_versions::PluginVersionView>>, ApiError> {
    let request: ActivateRequest = json_body(&body)?;
    let activated =
        store::plugin_versions::activate_plugin_version(&state.pool, &name, request.version_id)
            .await?;
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
    responses((status = 200, body = Vec<store::plugin_versions::PluginVersionView>), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn rollback_plugin(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<store::plugin_versions::PluginVersionView>>, ApiError> {
    let previous = store::plugin_versions::previous_plugin_version(&state.pool, &name)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "plugin {name:?} has no earlier version to roll back to"
            ))
        })?;
    store::plugin_versions::activate_plugin_version(&state.pool, &name, previous).await?;
    list_plugins(State(state)).await
}
