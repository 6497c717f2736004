//! Sources: their settings, checked by building the source before it is stored, and their
//! secrets' routes.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::secrets::{CreatedSecret, NewSecret, add_secret, literal_secret, retire_secret};
use super::{AdminState, ErrorBody, done_or, json_body, no_such, same_name};
use crate::config::SourceConfig;
use crate::http_error::ApiError;
use crate::model::source::SourceSettings;
use crate::signature::SignatureScheme;
use crate::store::{self, secrets::SecretOwner};

/// A source as the API shows it: every setting, never a secret's value.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub name: String,
    /// Where the platform sends its webhooks.
    pub webhook_path: String,
    pub plugin: String,
    // The tunable settings, at the same level as the keys above.
    #[serde(flatten)]
    #[schema(inline)]
    pub settings: SourceSettings,
    pub secrets: Vec<store::secrets::SecretView>,
    pub updated_at: DateTime<Utc>,
}

impl SourceView {
    /// The view of a stored source; an error for a row this version cannot read, whose
    /// settings it would show wrong.
    fn new(source: store::sources::StoredSource) -> Result<SourceView, ApiError> {
        if let Some(problem) = &source.unreadable {
            let error = anyhow::anyhow!("the source {}: {problem}", source.record.name);
            return Err(ApiError::internal(&error));
        }
        let record = source.record;
        Ok(SourceView {
            webhook_path: format!("/webhooks/{}", record.name),
            name: record.name,
            plugin: record.plugin,
            settings: record.settings,
            secrets: source.secrets.into_iter().map(|(view, _)| view).collect(),
            updated_at: source.updated_at,
        })
    }
}

/// The stored source of that name, if there is one.
pub(super) async fn stored_source(
    state: &AdminState,
    name: &str,
) -> anyhow::Result<Option<store::sources::StoredSource>> {
    Ok(store::sources::load_sources(&state.pool)
        .await?
        .into_iter()
        .find(|source| source.record.name == name))
}

/// The signature scheme `source` is checked with: its plugin, configured with its config, says.
pub(super) async fn built_scheme(
    state: &AdminState,
    source: &store::sources::StoredSource,
) -> anyhow::Result<SignatureScheme> {
    let built = crate::sources::registry::build_source(
        &state.runtime,
        &state.pool,
        source,
        &state.source_defaults,
    )
    .await?;
    let scheme = built.active.load().settings.signature.clone();
    Ok(scheme)
}

/// The stored source of that name; 404 when there is none.
async fn existing_source(
    state: &AdminState,
    name: &str,
) -> Result<store::sources::StoredSource, ApiError> {
    stored_source(state, name)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .ok_or_else(|| no_such("source", name))
}

async fn find_source(state: &AdminState, name: &str) -> Result<SourceView, ApiError> {
    SourceView::new(existing_source(state, name).await?)
}

/// Parses and checks a source, then loads its plugin with its config and limits, so that a
/// source that could not serve is refused before it is stored. Returns the source and its
/// secrets.
async fn checked_source(
    state: &AdminState,
    body: &[u8],
) -> Result<(SourceConfig, Vec<String>), ApiError> {
    let input: SourceConfig = json_body(body)?;
    input
        .check()
        .map_err(|(field, problem)| ApiError::invalid_field(field, problem))?;
    let secrets = input
        .secrets
        .iter()
        .map(|secret| literal_secret("secrets", secret.as_literal()))
        .collect::<Result<Vec<_>, _>>()?;
    crate::sources::hot_reload::register_directory_plugins(
        &state.plugins_directory,
        [input.plugin.as_str()],
        &state.runtime,
        &state.pool,
    )
    .await
    .map_err(|error| ApiError::invalid_field("plugin", format!("{error:#}")))?;
    let candidate = store::sources::StoredSource {
        record: input.to_record(),
        secrets: Vec::new(),
        updated_at: Utc::now(),
        unreadable: None,
    };
    let scheme = built_scheme(state, &candidate)
        .await
        .map_err(|error| ApiError::invalid_field("plugin", format!("{error:#}")))?;
    for secret in &secrets {
        check_source_secret("secrets", &scheme, secret)?;
    }
    Ok((input, secrets))
}

/// Refuses a source secret its signature scheme cannot use (an empty one, or a Standard
/// Webhooks secret that is not base64), naming the problem but never the secret.
fn check_source_secret(
    field: &str,
    scheme: &SignatureScheme,
    secret: &str,
) -> Result<(), ApiError> {
    match crate::signature::secret_problem(scheme, &crate::signature::Secret::new(secret)) {
        Some(problem) => Err(ApiError::invalid_field(
            field,
            format!("cannot be used with the source's signature scheme: {problem}"),
        )),
        None => Ok(()),
    }
}

#[utoipa::path(get, path = "/admin/v1/sources", tag = "sources",
    responses((status = 200, body = Vec<SourceView>), (status = 401, body = ErrorBody)))]
pub(super) async fn list_sources(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    let sources = store::sources::load_sources(&state.pool).await?;
    let views = sources.into_iter().map(SourceView::new);
    Ok(Json(views.collect::<Result<_, _>>()?))
}

#[utoipa::path(post, path = "/admin/v1/sources", tag = "sources",
    request_body(content = SourceConfig, description = "Every key of a `[[sources]]` entry in the config; secrets are the values themselves."),
    responses((status = 201, body = SourceView), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn create_source(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (input, secrets) = checked_source(&state, &body).await?;
    let change = store::sources::create_source(&state.pool, &input.to_record(), &secrets).await?;
    done_or(change, || {
        ApiError::conflict(format!("a source named {:?} exists", input.name))
    })?;
    state.sources_changed().await;
    Ok((
        StatusCode::CREATED,
        Json(find_source(&state, &input.name).await?),
    )
        .into_response())
}

#[utoipa::path(get, path = "/admin/v1/sources/{name}", tag = "sources",
    params(("name" = String, Path)),
    responses((status = 200, body = SourceView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_source(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<SourceView>, ApiError> {
    find_source(&state, &name).await.map(Json)
}

#[utoipa::path(put, path = "/admin/v1/sources/{name}", tag = "sources",
    params(("name" = String, Path)),
    request_body(content = SourceConfig, description = "The source's settings. Non-empty `secrets` replace every secret; empty or absent keep them (rotate with `/secrets` instead)."),
    responses((status = 200, body = SourceView), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn update_source(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<SourceView>, ApiError> {
    find_source(&state, &name).await?;
    let (input, secrets) = checked_source(&state, &body).await?;
    same_name(&name, &input.name, "sources")?;
    let replace_secrets = (!secrets.is_empty()).then_some(secrets.as_slice());
    let change =
        store::sources::update_source(&state.pool, &input.to_record(), replace_secrets).await?;
    done_or(change, || no_such("source", &name))?;
    state.sources_changed().await;
    find_source(&state, &name).await.map(Json)
}

#[utoipa::path(delete, path = "/admin/v1/sources/{name}", tag = "sources",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn delete_source(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let change = store::sources::delete_source(&state.pool, &name).await?;
    done_or(change, || no_such("source", &name))?;
    state.sources_changed().await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/v1/sources/{name}/secrets", tag = "sources",
    params(("name" = String, Path)),
    request_body(content = NewSecret, description = "The new secret; both it and the old ones match until the old ones are retired."),
    responses((status = 201, body = CreatedSecret), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn add_source_secret(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NewSecret = json_body(&body)?;
    let secret = literal_secret(
        "secret",
        request
            .secret
            .as_deref()
            .ok_or_else(|| ApiError::invalid_field("secret", "is required for a source"))?,
    )?;
    // The scheme the stored source is checked with, from its plugin and config.
    let scheme = built_scheme(&state, &existing_source(&state, &name).await?)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    check_source_secret("secret", &scheme, &secret)?;
    add_secret(&state, SecretOwner::Source, &name, secret, false).await
}

#[utoipa::path(delete, path = "/admin/v1/sources/{name}/secrets/{secret_id}", tag = "sources",
    params(("name" = String, Path), ("secret_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn retire_source_secret(
    State(state): State<Arc<AdminState>>,
    Path((name, secret_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    retire_secret(&state, SecretOwner::Source, &name, &secret_id).await
}
