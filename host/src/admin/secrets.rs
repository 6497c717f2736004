//! The secrets of sources and destinations: adding and retiring one, listing them without
//! their values. The routes live with their owner (`sources`, `destinations`); what they share
//! is here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AdminState;
use crate::http_error::ApiError;
use crate::store::{self, secrets::Change, secrets::SecretOwner};

/// A secret to add. A destination generates one when `secret` is absent.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    pub secret: Option<String>,
}

/// The added secret; a generated one is shown once, here.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CreatedSecret {
    #[serde(flatten)]
    pub view: store::secrets::SecretView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_secret: Option<String>,
}

/// A secret given over the API: always the value itself. `env:` and `file:` references are for
/// the config file; over the API they would let a caller read the server's environment or files.
pub(super) fn literal_secret(field: &str, text: &str) -> Result<String, ApiError> {
    if let Some(problem) = crate::config::secret_value_problem(text) {
        return Err(ApiError::invalid_field(field, problem));
    }
    if text.starts_with("env:") || text.starts_with("file:") {
        return Err(ApiError::invalid_field(
            field,
            "must be the secret itself (env: and file: references are for the config file)",
        ));
    }
    Ok(text.to_owned())
}

/// Refreshes what follows the owner's rows after one of its secrets changed.
async fn owner_changed(state: &AdminState, owner: SecretOwner) {
    match owner {
        SecretOwner::Source => state.sources_changed().await,
        SecretOwner::Destination => state.destinations_changed().await,
    }
}

/// Adds a secret to a source or destination, answering 201 with its id.
pub(super) async fn add_secret(
    state: &AdminState,
    owner: SecretOwner,
    name: &str,
    secret: String,
    generated: bool,
) -> Result<Response, ApiError> {
    let view = match store::secrets::add_secret(&state.pool, owner, name, &secret).await? {
        Ok(view) => view,
        Err(Change::AlreadyExists) => {
            return Err(ApiError::conflict(format!(
                "the {} {name:?} has that secret already",
                owner_noun(owner)
            )));
        }
        Err(_) => {
            return Err(ApiError::not_found(format!(
                "no {} named {name:?}",
                owner_noun(owner)
            )));
        }
    };
    owner_changed(state, owner).await;
    let created = CreatedSecret {
        view,
        generated_secret: generated.then_some(secret),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Retires one secret of a source or destination.
pub(super) async fn retire_secret(
    state: &AdminState,
    owner: SecretOwner,
    name: &str,
    secret_id: &str,
) -> Result<StatusCode, ApiError> {
    // Text that is not a UUID names no secret: the same 404 as an unknown id.
    let not_found = || {
        ApiError::not_found(format!(
            "the {} {name:?} has no secret {secret_id}",
            owner_noun(owner)
        ))
    };
    let secret_id: Uuid = secret_id.parse().map_err(|_| not_found())?;
    match store::secrets::retire_secret(&state.pool, owner, name, secret_id).await? {
        Change::Done => {
            owner_changed(state, owner).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Change::LastSecret => Err(ApiError::conflict(format!(
            "that is the last secret of the {} {name:?}; add its successor first",
            owner_noun(owner)
        ))),
        _ => Err(not_found()),
    }
}

/// The secrets of a source or destination, without their values; 404 when it does not exist.
pub(super) async fn secrets_of(
    state: &AdminState,
    owner: SecretOwner,
    name: &str,
) -> Result<Vec<store::secrets::SecretView>, ApiError> {
    store::secrets::list_secrets(&state.pool, owner, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {} named {name:?}", owner_noun(owner))))
}

fn owner_noun(owner: SecretOwner) -> &'static str {
    match owner {
        SecretOwner::Source => "source",
        SecretOwner::Destination => "destination",
    }
}
