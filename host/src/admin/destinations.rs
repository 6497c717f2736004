//! Destinations: their settings with credentials redacted, pausing, their stats, and their
//! signing secrets' routes.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::secrets::{
    CreatedSecret, NewSecret, add_secret, literal_secret, retire_secret, secrets_of,
};
use super::{AdminState, ErrorBody, done_or, json_body, no_such, same_name};
use crate::config::DestinationConfig;
use crate::http_error::ApiError;
use crate::ingest::redaction;
use crate::store::{self, secrets::SecretOwner};

/// A destination as the API shows it: every setting, never the secret, and no credential
/// (header values other than a safe few read `[redacted]`, the URL's userinfo reads
/// `[redacted]@`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    // Every setting, at the same level as the keys above, as the config writes them.
    #[serde(flatten)]
    #[schema(inline)]
    pub settings: crate::model::destination::DestinationSettings,
    /// The signing secrets (never their values); every delivery is signed with each.
    pub secrets: Vec<store::secrets::SecretView>,
    /// Shown once, in the answer that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_signing_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<store::destinations::DestinationStats>,
}

impl From<crate::model::destination::Destination> for DestinationView {
    fn from(destination: crate::model::destination::Destination) -> Self {
        DestinationView {
            name: destination.name,
            url: redaction::url_without_userinfo(&destination.url),
            routes: destination.routes,
            headers: redaction::destination_headers_view(destination.headers),
            settings: destination.settings,
            secrets: Vec::new(),
            generated_signing_secret: None,
            stats: None,
        }
    }
}

/// The stored destination of that name, if there is one.
async fn stored_destination(
    state: &AdminState,
    name: &str,
) -> Result<Option<crate::model::destination::Destination>, ApiError> {
    Ok(store::destinations::load_destinations(&state.pool, false)
        .await?
        .into_iter()
        .find(|destination| destination.name == name))
}

/// What the API showed in place of a credential (`[redacted]` header values, `[redacted]@`
/// userinfo), sent back in an update, keeps the stored credential, but only for the same
/// scheme, host and port: a placeholder must not send a stored credential somewhere new.
async fn keep_stored_credentials(
    state: &AdminState,
    input: &mut DestinationConfig,
) -> Result<(), ApiError> {
    let stored = stored_destination(state, &input.name).await?;
    if let Some(stored) = &stored
        && redaction::keeps_a_stored_credential(&input.url, &input.headers)
        && !redaction::same_origin(&input.url, &stored.url)
    {
        return Err(ApiError::stored_credential_not_moved(
            "a `[redacted]` value keeps a stored credential, which is never sent to another scheme, host or port: send the credentials again along with the new URL",
        ));
    }
    let stored_headers = stored
        .as_ref()
        .map_or(&[][..], |stored| &stored.headers[..]);
    redaction::keep_redacted_destination_headers(&mut input.headers, stored_headers)
        .map_err(|problem| ApiError::invalid_field("headers", problem))?;
    if let Some(stored) = stored {
        input.url = redaction::keep_redacted_url_userinfo(&input.url, &stored.url);
    }
    Ok(())
}

/// A destination's view with its secrets listed; 404 when there is none of that name.
async fn find_destination(state: &AdminState, name: &str) -> Result<DestinationView, ApiError> {
    let destination = stored_destination(state, name)
        .await?
        .ok_or_else(|| no_such("destination", name))?;
    let mut view = DestinationView::from(destination);
    view.secrets = secrets_of(state, SecretOwner::Destination, name).await?;
    Ok(view)
}

/// A signing secret given over the API. It is refused when it cannot sign: Standard Webhooks
/// secrets are base64, usually after a `whsec_` prefix.
fn given_signing_secret(text: &str) -> Result<String, ApiError> {
    let secret = literal_secret("secret", text)?;
    crate::signature::Secret::new(secret.as_str())
        .standard_webhooks_key()
        .map_err(|error| ApiError::invalid_field("secret", error))?;
    Ok(secret)
}

/// Parses and checks a destination body; the error names the field.
fn destination_input(body: &[u8]) -> Result<(DestinationConfig, Option<String>), ApiError> {
    let input: DestinationConfig = json_body(body)?;
    input
        .check()
        .map_err(|(field, problem)| ApiError::invalid_field(field, problem))?;
    let secret = input
        .secret
        .as_ref()
        .map(|reference| given_signing_secret(reference.as_literal()))
        .transpose()?;
    Ok((input, secret))
}

#[utoipa::path(get, path = "/admin/v1/destinations", tag = "destinations",
    responses((status = 200, body = Vec<DestinationView>), (status = 401, body = ErrorBody)))]
pub(super) async fn list_destinations(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<DestinationView>>, ApiError> {
    let destinations = store::destinations::load_destinations(&state.pool, false).await?;
    let mut views = Vec::with_capacity(destinations.len());
    for destination in destinations {
        let mut view = DestinationView::from(destination);
        // A destination deleted meanwhile is shown without secrets rather than failing the list.
        view.secrets = secrets_of(&state, SecretOwner::Destination, &view.name)
            .await
            .unwrap_or_default();
        views.push(view);
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/admin/v1/destinations", tag = "destinations",
    request_body(content = DestinationConfig, description = "Every key of a `[[destinations]]` entry in the config; `secret` is generated when absent."),
    responses((status = 201, body = DestinationView), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn create_destination(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (mut input, secret) = destination_input(&body)?;
    redaction::keep_redacted_destination_headers(&mut input.headers, &[])
        .map_err(|problem| ApiError::invalid_field("headers", problem))?;
    if redaction::has_redacted_userinfo(&input.url) {
        return Err(ApiError::invalid_field(
            "url",
            "`[redacted]@` stands for stored credentials, and a new destination has none",
        ));
    }
    let generated = secret
        .is_none()
        .then(store::secrets::generate_signing_secret);
    let secret = secret.or_else(|| generated.clone()).unwrap_or_default();
    let change =
        store::destinations::create_destination(&state.pool, &input.to_record(), &secret).await?;
    done_or(change, || {
        ApiError::conflict(format!("a destination named {:?} exists", input.name))
    })?;
    state.destinations_changed().await;
    let mut view = find_destination(&state, &input.name).await?;
    view.generated_signing_secret = generated;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    let mut view = find_destination(&state, &name).await?;
    view.stats = Some(store::destinations::destination_stats(&state.pool, &name).await?);
    Ok(Json(view))
}

#[utoipa::path(put, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    request_body(content = DestinationConfig, description = "The destination's settings; a `secret` replaces every signing secret (to rotate without a gap, add one under `/secrets` instead)."),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn update_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<DestinationView>, ApiError> {
    let (mut input, secret) = destination_input(&body)?;
    same_name(&name, &input.name, "destinations")?;
    keep_stored_credentials(&state, &mut input).await?;
    let change =
        store::destinations::update_destination(&state.pool, &input.to_record(), secret.as_deref())
            .await?;
    done_or(change, || no_such("destination", &name))?;
    state.destinations_changed().await;
    Ok(Json(find_destination(&state, &name).await?))
}

#[utoipa::path(delete, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn delete_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let change = store::destinations::delete_destination(&state.pool, &name).await?;
    done_or(change, || no_such("destination", &name))?;
    state.destinations_changed().await;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    state: &AdminState,
    name: &str,
    paused: bool,
) -> Result<Json<DestinationView>, ApiError> {
    find_destination(state, name).await?;
    store::destinations::set_paused(&state.pool, name, paused).await?;
    Ok(Json(find_destination(state, name).await?))
}

#[utoipa::path(post, path = "/admin/v1/destinations/{name}/pause", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn pause_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    set_paused(&state, &name, true).await
}

#[utoipa::path(post, path = "/admin/v1/destinations/{name}/resume", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn resume_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<DestinationView>, ApiError> {
    set_paused(&state, &name, false).await
}

#[utoipa::path(post, path = "/admin/v1/destinations/{name}/secrets", tag = "destinations",
    params(("name" = String, Path)),
    request_body(content = NewSecret, description = "The new signing secret (`whsec_…`), generated when absent; deliveries carry a signature for every secret until the old ones are retired."),
    responses((status = 201, body = CreatedSecret), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn add_destination_secret(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewSecret = json_body(&body)?;
    let (secret, generated) = match request.secret.as_deref() {
        Some(text) => (given_signing_secret(text)?, false),
        None => (store::secrets::generate_signing_secret(), true),
    };
    add_secret(&state, SecretOwner::Destination, &name, secret, generated).await
}

#[utoipa::path(delete, path = "/admin/v1/destinations/{name}/secrets/{secret_id}", tag = "destinations",
    params(("name" = String, Path), ("secret_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn retire_destination_secret(
    State(state): State<Arc<AdminState>>,
    Path((name, secret_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    retire_secret(&state, SecretOwner::Destination, &name, &secret_id).await
}
