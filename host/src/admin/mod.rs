//! The admin API, `/admin/v1`: sources, destinations, their secrets, events, replay and
//! plugins, behind a bearer token, with its OpenAPI 3.1 document generated from these handlers
//! at `/admin/v1/openapi.json`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use utoipa::OpenApi;
use uuid::Uuid;

use crate::config::{DestinationConfig, SourceConfig};
use crate::http_error::ApiError;
use crate::ingest::handler::IngestState;
use crate::ingest::redaction;
use crate::rate_limit::LoginThrottle;
use crate::sources::registry::SourceDefaults;
use crate::store;
use crate::store::events::EventFilter;
use crate::store::jobs::{self, ReplayFilter};
use crate::store::secrets::{Change, SecretOwner};

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

/// Wrong tokens a client address may present before it is refused for a while.
const MAX_FAILED_LOGINS: u32 = 10;
/// How long an address that guessed too often is refused.
const FAILED_LOGIN_BLOCK: std::time::Duration = std::time::Duration::from_secs(300);
/// Most client addresses whose failed logins are remembered at once.
const FAILED_LOGIN_ADDRESSES: usize = 4096;

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
            token_digest: Sha256::digest(token.as_bytes()).into(),
            ingest,
            runtime,
            source_defaults,
            plugins_directory,
            login_throttle: std::sync::Mutex::new(LoginThrottle::new(
                MAX_FAILED_LOGINS,
                FAILED_LOGIN_BLOCK,
                FAILED_LOGIN_ADDRESSES,
            )),
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

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmhook admin API", version = "1"),
    paths(
        list_sources,
        create_source,
        get_source,
        update_source,
        delete_source,
        add_source_secret,
        retire_source_secret,
        list_destinations,
        create_destination,
        get_destination,
        update_destination,
        delete_destination,
        pause_destination,
        resume_destination,
        add_destination_secret,
        retire_destination_secret,
        list_events,
        get_event,
        replay,
        list_plugins,
        upload_plugin,
        activate_plugin,
        rollback_plugin,
    ),
    components(schemas(
        SourceView,
        SourceConfig,
        crate::config::RateLimitConfig,
        crate::config::LimitOverrides,
        store::secrets::SecretView,
        NewSecret,
        CreatedSecret,
        DestinationView,
        DestinationConfig,
        store::destinations::DestinationStats,
        EventPage,
        store::events::EventSummary,
        store::events::QuarantinedSummary,
        store::events::EventDetail,
        store::events::RawRequestView,
        store::events::DeliveryView,
        store::events::AttemptView,
        ReplayRequest,
        ReplayAnswer,
        store::plugin_versions::PluginVersionView,
        ActivateRequest,
        ErrorBody,
    )),
    modifiers(&BearerAuth, &CommonResponses),
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

/// The statuses any operation may answer besides its own: 500 when the server fails (the
/// database, most often), and 413 for a request body over the limit, so that the document lists
/// every status the API can give.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let failure = ResponseBuilder::new()
            .description("The server failed; the server log has the cause.")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        let too_large = ResponseBuilder::new()
            .description("The body is over the limit (2 MiB; 128 MiB for a plugin upload).")
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.insert("500".to_owned(), failure.clone().into());
                if operation.request_body.is_some() {
                    responses.insert("413".to_owned(), too_large.clone().into());
                }
            }
        }
    }
}

/// The error body every failure carries.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub detail: String,
}

/// One operation of the admin API: the router serves it and `operations` lists it, from the
/// same value, so the OpenAPI test sees every route the router has.
struct Operation {
    method: Method,
    path: &'static str,
    route: MethodRouter<Arc<AdminState>>,
}

fn operation<H, T>(method: Method, path: &'static str, handler: H) -> Operation
where
    H: axum::handler::Handler<T, Arc<AdminState>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .expect("every admin operation uses a standard method");
    Operation {
        method,
        path,
        route: on(filter, handler),
    }
}

/// Every operation behind the token (the OpenAPI document itself is served without it).
fn operation_table() -> Vec<Operation> {
    let mut upload = operation(Method::PUT, "/admin/v1/plugins/{name}", upload_plugin);
    // JavaScript and Python components are tens of megabytes.
    upload.route = upload
        .route
        .layer(axum::extract::DefaultBodyLimit::max(128 << 20));
    vec![
        operation(Method::GET, "/admin/v1/sources", list_sources),
        operation(Method::POST, "/admin/v1/sources", create_source),
        operation(Method::GET, "/admin/v1/sources/{name}", get_source),
        operation(Method::PUT, "/admin/v1/sources/{name}", update_source),
        operation(Method::DELETE, "/admin/v1/sources/{name}", delete_source),
        operation(
            Method::POST,
            "/admin/v1/sources/{name}/secrets",
            add_source_secret,
        ),
        operation(
            Method::DELETE,
            "/admin/v1/sources/{name}/secrets/{secret_id}",
            retire_source_secret,
        ),
        operation(
            Method::POST,
            "/admin/v1/destinations/{name}/secrets",
            add_destination_secret,
        ),
        operation(
            Method::DELETE,
            "/admin/v1/destinations/{name}/secrets/{secret_id}",
            retire_destination_secret,
        ),
        operation(Method::GET, "/admin/v1/destinations", list_destinations),
        operation(Method::POST, "/admin/v1/destinations", create_destination),
        operation(
            Method::GET,
            "/admin/v1/destinations/{name}",
            get_destination,
        ),
        operation(
            Method::PUT,
            "/admin/v1/destinations/{name}",
            update_destination,
        ),
        operation(
            Method::DELETE,
            "/admin/v1/destinations/{name}",
            delete_destination,
        ),
        operation(
            Method::POST,
            "/admin/v1/destinations/{name}/pause",
            pause_destination,
        ),
        operation(
            Method::POST,
            "/admin/v1/destinations/{name}/resume",
            resume_destination,
        ),
        operation(Method::GET, "/admin/v1/events", list_events),
        operation(Method::GET, "/admin/v1/events/{id}", get_event),
        operation(Method::POST, "/admin/v1/replay", replay),
        operation(Method::GET, "/admin/v1/plugins", list_plugins),
        upload,
        operation(
            Method::POST,
            "/admin/v1/plugins/{name}/activate",
            activate_plugin,
        ),
        operation(
            Method::POST,
            "/admin/v1/plugins/{name}/rollback",
            rollback_plugin,
        ),
    ]
}

/// The method and path of every route the admin router serves behind the token, for the test
/// that checks each one is documented and needs the token.
pub fn operations() -> Vec<(Method, &'static str)> {
    operation_table()
        .into_iter()
        .map(|operation| (operation.method, operation.path))
        .collect()
}

/// The admin router, to be served at the root (its paths start with `/admin/v1`).
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = operation_table()
        .into_iter()
        .fold(Router::new(), |router, operation| {
            router.route(operation.path, operation.route)
        })
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
    // Requests that did not come through the server loop (none in production) count as one
    // unknown address.
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    admit(&state, &request, peer)?;
    Ok(next.run(request).await)
}

/// Refuses a throttled address (429) and a missing or wrong token (401), counting wrong tokens
/// against the address.
fn admit(state: &AdminState, request: &Request, peer: std::net::IpAddr) -> Result<(), ApiError> {
    let now = std::time::Instant::now();
    let mut throttle = state
        .login_throttle
        .lock()
        .expect("login throttle lock poisoned");
    if let Err(wait) = throttle.check(peer, now) {
        return Err(ApiError::too_many_failed_logins(wait.as_secs().max(1)));
    }
    match presented_token_matches(request, &state.token_digest) {
        Some(true) => {
            throttle.succeeded(peer);
            Ok(())
        }
        // Only a wrong token is a guess; a request without one is just refused.
        Some(false) => {
            throttle.failed(peer, now);
            Err(ApiError::unauthorized())
        }
        None => Err(ApiError::unauthorized()),
    }
}

/// Whether the bearer token the request presents is the admin token (compared in constant
/// time); `None` when it presents none.
fn presented_token_matches(request: &Request, token_digest: &[u8; 32]) -> Option<bool> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))?;
    let presented_digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    Some(bool::from(presented_digest.ct_eq(token_digest)))
}

/// A source as the API shows it: every setting, never a secret's value.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub name: String,
    /// Where the platform sends its webhooks.
    pub webhook_path: String,
    pub plugin: String,
    pub config: String,
    pub signature_tolerance_seconds: Option<i64>,
    pub rate_limit: Option<crate::config::RateLimitConfig>,
    pub limits: crate::config::LimitOverrides,
    pub dedupe_on_body: bool,
    pub secrets: Vec<store::secrets::SecretView>,
    pub updated_at: DateTime<Utc>,
}

impl SourceView {
    fn new(source: store::sources::StoredSource) -> Result<SourceView, ApiError> {
        let record = source.record;
        let limits = serde_json::from_value(record.limit_overrides)
            .map_err(|error| ApiError::internal(&anyhow::Error::from(error)))?;
        Ok(SourceView {
            webhook_path: format!("/webhooks/{}", record.name),
            name: record.name,
            plugin: record.plugin,
            config: record.config,
            signature_tolerance_seconds: record.signature_tolerance_seconds,
            rate_limit: record
                .rate_limit_requests_per_second
                .zip(record.rate_limit_burst)
                .map(
                    |(requests_per_second, burst)| crate::config::RateLimitConfig {
                        requests_per_second,
                        burst: burst.max(0) as u32,
                    },
                ),
            limits,
            dedupe_on_body: record.dedupe_on_body,
            secrets: source.secrets.into_iter().map(|(view, _)| view).collect(),
            updated_at: source.updated_at,
        })
    }
}

async fn find_source(state: &AdminState, name: &str) -> Result<SourceView, ApiError> {
    let source = store::sources::load_sources(&state.pool)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .into_iter()
        .find(|source| source.record.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no source named {name:?}")))?;
    SourceView::new(source)
}

/// A secret given over the API: always the value itself. `env:` and `file:` references are for
/// the config file; over the API they would let a caller read the server's environment or files.
fn literal_secret(field: &str, text: &str) -> Result<String, ApiError> {
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

/// Parses and checks a source, then loads its plugin with its config and limits, so that a
/// source that could not serve is refused before it is stored. Returns the source and its
/// secrets.
async fn checked_source(
    state: &AdminState,
    body: &[u8],
) -> Result<(SourceConfig, Vec<String>), ApiError> {
    let input: SourceConfig =
        serde_json::from_slice(body).map_err(|error| ApiError::invalid_field("body", error))?;
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
    };
    let built = crate::sources::registry::build_source(
        &state.runtime,
        &state.pool,
        &candidate,
        &state.source_defaults,
    )
    .await
    .map_err(|error| ApiError::invalid_field("plugin", format!("{error:#}")))?;
    let scheme = built.active.load().settings.signature.clone();
    for secret in &secrets {
        check_source_secret("secrets", &scheme, secret)?;
    }
    Ok((input, secrets))
}

/// Refuses a source secret its signature scheme cannot use (an empty one, or a Standard
/// Webhooks secret that is not base64), naming the problem but never the secret.
fn check_source_secret(
    field: &str,
    scheme: &crate::signature::SignatureScheme,
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

/// The signature scheme a stored source is checked with, from its plugin and config; 404 when
/// there is no such source.
async fn source_scheme(
    state: &AdminState,
    name: &str,
) -> Result<crate::signature::SignatureScheme, ApiError> {
    let source = store::sources::load_sources(&state.pool)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .into_iter()
        .find(|source| source.record.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no source named {name:?}")))?;
    let built = crate::sources::registry::build_source(
        &state.runtime,
        &state.pool,
        &source,
        &state.source_defaults,
    )
    .await
    .map_err(|error| ApiError::internal(&error))?;
    let scheme = built.active.load().settings.signature.clone();
    Ok(scheme)
}

#[utoipa::path(get, path = "/admin/v1/sources", tag = "sources",
    responses((status = 200, body = Vec<SourceView>), (status = 401, body = ErrorBody)))]
async fn list_sources(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    store::sources::load_sources(&state.pool)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .into_iter()
        .map(SourceView::new)
        .collect::<Result<Vec<_>, _>>()
        .map(Json)
}

#[utoipa::path(post, path = "/admin/v1/sources", tag = "sources",
    request_body(content = SourceConfig, description = "Every key of a `[[sources]]` entry in the config; secrets are the values themselves."),
    responses((status = 201, body = SourceView), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_source(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (input, secrets) = checked_source(&state, &body).await?;
    match store::sources::create_source(&state.pool, &input.to_record(), &secrets)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        Change::Done => {}
        _ => {
            return Err(ApiError::conflict(format!(
                "a source named {:?} exists",
                input.name
            )));
        }
    }
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
async fn get_source(
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
async fn update_source(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<SourceView>, ApiError> {
    find_source(&state, &name).await?;
    let (input, secrets) = checked_source(&state, &body).await?;
    if input.name != name {
        return Err(ApiError::invalid_field(
            "name",
            "must equal the name in the path (sources are not renamed)",
        ));
    }
    let replace_secrets = (!secrets.is_empty()).then_some(secrets.as_slice());
    match store::sources::update_source(&state.pool, &input.to_record(), replace_secrets)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        Change::Done => {}
        _ => return Err(ApiError::not_found(format!("no source named {name:?}"))),
    }
    state.sources_changed().await;
    find_source(&state, &name).await.map(Json)
}

#[utoipa::path(delete, path = "/admin/v1/sources/{name}", tag = "sources",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn delete_source(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match store::sources::delete_source(&state.pool, &name)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        Change::Done => {
            state.sources_changed().await;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found(format!("no source named {name:?}"))),
    }
}

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

/// Adds a secret to a source or destination, answering 201 with its id.
async fn add_secret(
    state: &AdminState,
    owner: SecretOwner,
    name: &str,
    secret: String,
    generated: bool,
) -> Result<Response, ApiError> {
    let view = match store::secrets::add_secret(&state.pool, owner, name, &secret)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
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
    match owner {
        SecretOwner::Source => state.sources_changed().await,
        SecretOwner::Destination => state.destinations_changed().await,
    }
    let created = CreatedSecret {
        view,
        generated_secret: generated.then_some(secret),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Retires one secret of a source or destination.
async fn retire_secret(
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
    match store::secrets::retire_secret(&state.pool, owner, name, secret_id)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        Change::Done => {
            match owner {
                SecretOwner::Source => state.sources_changed().await,
                SecretOwner::Destination => state.destinations_changed().await,
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Change::LastSecret => Err(ApiError::conflict(format!(
            "that is the last secret of the {} {name:?}; add its successor first",
            owner_noun(owner)
        ))),
        _ => Err(not_found()),
    }
}

fn new_secret_body(body: &[u8]) -> Result<NewSecret, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError::invalid_field("body", error))
}

#[utoipa::path(post, path = "/admin/v1/sources/{name}/secrets", tag = "sources",
    params(("name" = String, Path)),
    request_body(content = NewSecret, description = "The new secret; both it and the old ones match until the old ones are retired."),
    responses((status = 201, body = CreatedSecret), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn add_source_secret(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = new_secret_body(&body)?;
    let secret = literal_secret(
        "secret",
        request
            .secret
            .as_deref()
            .ok_or_else(|| ApiError::invalid_field("secret", "is required for a source"))?,
    )?;
    check_source_secret("secret", &source_scheme(&state, &name).await?, &secret)?;
    add_secret(&state, SecretOwner::Source, &name, secret, false).await
}

#[utoipa::path(delete, path = "/admin/v1/sources/{name}/secrets/{secret_id}", tag = "sources",
    params(("name" = String, Path), ("secret_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn retire_source_secret(
    State(state): State<Arc<AdminState>>,
    Path((name, secret_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    retire_secret(&state, SecretOwner::Source, &name, &secret_id).await
}

#[utoipa::path(post, path = "/admin/v1/destinations/{name}/secrets", tag = "destinations",
    params(("name" = String, Path)),
    request_body(content = NewSecret, description = "The new signing secret (`whsec_…`), generated when absent; deliveries carry a signature for every secret until the old ones are retired."),
    responses((status = 201, body = CreatedSecret), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn add_destination_secret(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = new_secret_body(&body)?;
    let (secret, generated) = match request.secret.as_deref() {
        Some(text) => {
            let secret = literal_secret("secret", text)?;
            check_destination_secret(&secret)?;
            (secret, false)
        }
        None => (store::secrets::generate_signing_secret(), true),
    };
    add_secret(&state, SecretOwner::Destination, &name, secret, generated).await
}

#[utoipa::path(delete, path = "/admin/v1/destinations/{name}/secrets/{secret_id}", tag = "destinations",
    params(("name" = String, Path), ("secret_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn retire_destination_secret(
    State(state): State<Arc<AdminState>>,
    Path((name, secret_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    retire_secret(&state, SecretOwner::Destination, &name, &secret_id).await
}

/// A destination as the API shows it: every setting, never the secret, and no credential
/// (header values other than a safe few read `[redacted]`, the URL's userinfo reads
/// `[redacted]@`).
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
            secrets: Vec::new(),
            generated_signing_secret: None,
            stats: None,
        }
    }
}

/// What the API showed in place of a credential (`[redacted]` header values, `[redacted]@`
/// userinfo), sent back in an update, keeps the stored credential, but only for the same
/// scheme, host and port: a placeholder must not send a stored credential somewhere new.
async fn keep_stored_credentials(
    state: &AdminState,
    input: &mut DestinationConfig,
) -> Result<(), ApiError> {
    let stored = crate::store::destinations::load_destinations(&state.pool, false)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .into_iter()
        .find(|destination| destination.name == input.name);
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
    let destination = crate::store::destinations::load_destinations(&state.pool, false)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .into_iter()
        .find(|destination| destination.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no destination named {name:?}")))?;
    let mut view = DestinationView::from(destination);
    view.secrets = secrets_of(state, SecretOwner::Destination, name).await?;
    Ok(view)
}

/// The secrets of a source or destination, without their values; 404 when it does not exist.
async fn secrets_of(
    state: &AdminState,
    owner: SecretOwner,
    name: &str,
) -> Result<Vec<store::secrets::SecretView>, ApiError> {
    store::secrets::list_secrets(&state.pool, owner, name)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .ok_or_else(|| ApiError::not_found(format!("no {} named {name:?}", owner_noun(owner))))
}

fn owner_noun(owner: SecretOwner) -> &'static str {
    match owner {
        SecretOwner::Source => "source",
        SecretOwner::Destination => "destination",
    }
}

/// Refuses a destination secret that cannot sign: Standard Webhooks secrets are base64,
/// usually after a `whsec_` prefix.
fn check_destination_secret(secret: &str) -> Result<(), ApiError> {
    crate::signature::Secret::new(secret)
        .standard_webhooks_key()
        .map(|_| ())
        .map_err(|error| ApiError::invalid_field("secret", error))
}

/// Parses and checks a destination body; the error names the field.
fn destination_input(body: &[u8]) -> Result<(DestinationConfig, Option<String>), ApiError> {
    let input: DestinationConfig =
        serde_json::from_slice(body).map_err(|error| ApiError::invalid_field("body", error))?;
    input
        .check()
        .map_err(|(field, problem)| ApiError::invalid_field(field, problem))?;
    let secret = match &input.secret {
        Some(reference) => {
            let secret = literal_secret("secret", reference.as_literal())?;
            check_destination_secret(&secret)?;
            Some(secret)
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
    let destinations = crate::store::destinations::load_destinations(&state.pool, false)
        .await
        .map_err(|error| ApiError::internal(&error))?;
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
async fn create_destination(
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
    match store::destinations::create_destination(&state.pool, &input.to_record(), &secret)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        Change::Done => {}
        _ => {
            return Err(ApiError::conflict(format!(
                "a destination named {:?} exists",
                input.name
            )));
        }
    }
    state.destinations_changed().await;
    let mut view = find_destination(&state, &input.name).await?;
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
    let mut view = find_destination(&state, &name).await?;
    view.stats = Some(
        store::destinations::destination_stats(&state.pool, &name)
            .await
            .map_err(|error| ApiError::internal(&error))?,
    );
    Ok(Json(view))
}

#[utoipa::path(put, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    request_body(content = DestinationConfig, description = "The destination's settings; a `secret` replaces every signing secret (to rotate without a gap, add one under `/secrets` instead)."),
    responses((status = 200, body = DestinationView), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn update_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<DestinationView>, ApiError> {
    let (mut input, secret) = destination_input(&body)?;
    if input.name != name {
        return Err(ApiError::invalid_field(
            "name",
            "must equal the name in the path (destinations are not renamed)",
        ));
    }
    keep_stored_credentials(&state, &mut input).await?;
    match store::destinations::update_destination(
        &state.pool,
        &input.to_record(),
        secret.as_deref(),
    )
    .await
    .map_err(|error| ApiError::internal(&error))?
    {
        Change::Done => {}
        _ => {
            return Err(ApiError::not_found(format!(
                "no destination named {name:?}"
            )));
        }
    }
    state.destinations_changed().await;
    Ok(Json(find_destination(&state, &name).await?))
}

#[utoipa::path(delete, path = "/admin/v1/destinations/{name}", tag = "destinations",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn delete_destination(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match store::destinations::delete_destination(&state.pool, &name)
        .await
        .map_err(|error| ApiError::internal(&error))?
    {
        Change::Done => {
            state.destinations_changed().await;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found(format!(
            "no destination named {name:?}"
        ))),
    }
}

async fn set_paused(
    state: &AdminState,
    name: &str,
    paused: bool,
) -> Result<Json<DestinationView>, ApiError> {
    find_destination(state, name).await?;
    crate::store::destinations::set_paused(&state.pool, name, paused)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    Ok(Json(find_destination(state, name).await?))
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
    pub events: Vec<store::events::EventSummary>,
    pub quarantined: Vec<store::events::QuarantinedSummary>,
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
            let events = store::events::list_events(&state.pool, &filter)
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
            let quarantined = store::events::list_quarantined(&state.pool, &filter)
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
    responses((status = 200, body = store::events::EventDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn get_event(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<store::events::EventDetail>, ApiError> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no event with id {id:?}")))?;
    let mut detail = store::events::event_detail(&state.pool, id)
        .await
        .map_err(|error| ApiError::internal(&error))?
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
    let stored = store::sources::load_sources(&state.pool)
        .await
        .ok()?
        .into_iter()
        .find(|source| source.record.name == source_name)?;
    let built = crate::sources::registry::build_source(
        &state.runtime,
        &state.pool,
        &stored,
        &state.source_defaults,
    )
    .await
    .ok()?;
    Some(built.active.load().settings.signature.clone())
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
        jobs::count_replay(&state.pool, &filter).await
    } else {
        jobs::replay(&state.pool, &filter).await
    }
    .map_err(|error| ApiError::internal(&error))?;
    Ok(Json(ReplayAnswer {
        count,
        dry_run: request.dry_run,
    }))
}

#[utoipa::path(get, path = "/admin/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<store::plugin_versions::PluginVersionView>), (status = 401, body = ErrorBody)))]
async fn list_plugins(
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
        .map_err(|error| ApiError::internal(&anyhow::Error::from(error)))?;
    let (version_id, _) = store::plugin_versions::register_plugin_version(
        &state.pool,
        &name,
        plugin.content_hash(),
        &body,
        &manifest,
    )
    .await
    .map_err(|error| ApiError::internal(&error))?;
    let view = store::plugin_versions::list_plugin_versions(&state.pool)
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
    responses((status = 200, body = Vec<store::plugin_versions::PluginVersionView>), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn activate_plugin(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Vec<store::plugin_versions::PluginVersionView>>, ApiError> {
    let request: ActivateRequest =
        serde_json::from_slice(&body).map_err(|error| ApiError::invalid_field("body", error))?;
    let activated =
        store::plugin_versions::activate_plugin_version(&state.pool, &name, request.version_id)
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
    responses((status = 200, body = Vec<store::plugin_versions::PluginVersionView>), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn rollback_plugin(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<store::plugin_versions::PluginVersionView>>, ApiError> {
    let previous = store::plugin_versions::previous_plugin_version(&state.pool, &name)
        .await
        .map_err(|error| ApiError::internal(&error))?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "plugin {name:?} has no earlier version to roll back to"
            ))
        })?;
    store::plugin_versions::activate_plugin_version(&state.pool, &name, previous)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    list_plugins(State(state)).await
}
