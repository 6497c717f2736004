//! `POST /webhooks/{source}`: the inbound path. In order: the client address's limit (429, when
//! configured), find the source (404), bound the body (413), check the signature (401), the
//! source's rate limit (429), bound the dedupe header (400), run the plugin (its rejection, its
//! reply, or a quarantine when it fails), then store through the group-commit queue and answer
//! 202 (or 200 for a duplicate) only after the commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;
use uuid::Uuid;

use crate::delivery::breaker::{Admission, CircuitBreaker, Transition};
use crate::delivery::routes::RoutePatterns;
use crate::http_error::ApiError;
use crate::ingest::group_commit::IngestQueue;
use crate::metrics;
use crate::model::ingest::{IngestOutcome, IngestWrite, RawRequest};
use crate::plugins::{
    Plugin, PluginOutcome, PluginRequest, PluginRuntime, RejectionKind, RequestCheck,
    SourceSettings,
};
use crate::rate_limit::{AddressBuckets, TokenBucket};
use crate::signature::{self, Secret, SignedRequest};

/// Most bytes of a plugin failure logged with a quarantine.
const QUARANTINE_LOG_LIMIT: usize = 512;

/// One source, ready to take requests. Rebuilt whole when its row changes.
pub struct SourceRuntime {
    pub name: String,
    /// The `updated_at` of the row this was built from.
    pub revision: chrono::DateTime<chrono::Utc>,
    pub plugin_name: String,
    pub limits: crate::plugins::PluginLimits,
    /// The plugin version serving this source, swapped whole when another is activated;
    /// a request keeps the version it started with.
    pub active: arc_swap::ArcSwap<ActivePlugin>,
    pub secrets: Arc<[Secret]>,
    pub config: String,
    pub signature_tolerance_seconds: i64,
    pub dedupe_on_body: bool,
    pub rate_limiter: Option<Mutex<TokenBucket>>,
    /// Opens when the plugin fails call after call; while open, requests are quarantined
    /// without calling it.
    pub plugin_breaker: Mutex<CircuitBreaker>,
}

/// A loaded plugin version and what it made of the source's configuration.
pub struct ActivePlugin {
    pub plugin: Plugin,
    pub settings: SourceSettings,
    pub version_id: uuid::Uuid,
}

/// A destination's name and compiled routes.
pub struct DestinationRoutes {
    pub name: String,
    pub patterns: RoutePatterns,
}

/// What a source gets for the settings its row leaves out.
#[derive(Clone, Debug)]
pub struct SourceDefaults {
    pub limits: crate::plugins::PluginLimits,
    pub signature_tolerance_seconds: u64,
    pub plugin_breaker_failure_threshold: u32,
    pub plugin_breaker_cooldown: std::time::Duration,
}

impl SourceDefaults {
    pub fn from_config(config: &crate::config::Config) -> SourceDefaults {
        SourceDefaults {
            limits: config.plugins.limits.clone(),
            signature_tolerance_seconds: config.ingest.signature_tolerance_seconds,
            plugin_breaker_failure_threshold: config.plugins.breaker_failure_threshold,
            plugin_breaker_cooldown: std::time::Duration::from_secs_f64(
                config.plugins.breaker_cooldown_seconds.max(0.0),
            ),
        }
    }
}

/// What the ingest handler needs.
pub struct IngestState {
    /// Swapped whole when sources change (the admin API, another process, the config at
    /// start); a request keeps the source it started with.
    pub sources: arc_swap::ArcSwap<HashMap<String, Arc<SourceRuntime>>>,
    /// Sources whose stored row cannot be served (its plugin is missing or refuses its
    /// config), with the revision that failed, so each failure is logged once.
    pub failing_sources: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    pub source_defaults: SourceDefaults,
    pub runtime: Arc<PluginRuntime>,
    /// Swapped whole when destinations change (the admin API, or another process).
    pub destinations: arc_swap::ArcSwap<Vec<DestinationRoutes>>,
    pub queue: IngestQueue,
    pub max_body_bytes: usize,
}

/// Most client addresses the pre-authentication limit tracks at once.
const PRE_AUTH_TRACKED_ADDRESSES: usize = 65_536;

/// The webhook route; with `pre_auth_rate_limit`, each client address has its own bucket,
/// taken before anything else.
pub fn router(
    state: Arc<IngestState>,
    pre_auth_rate_limit: Option<crate::config::RateLimitConfig>,
) -> axum::Router {
    let router = axum::Router::new()
        .route("/webhooks/{source}", axum::routing::post(receive_webhook))
        .with_state(state);
    match pre_auth_rate_limit {
        Some(limit) => {
            let buckets = Arc::new(Mutex::new(AddressBuckets::new(
                limit.requests_per_second,
                limit.burst,
                PRE_AUTH_TRACKED_ADDRESSES,
            )));
            router.route_layer(axum::middleware::from_fn_with_state(
                buckets,
                limit_client_address,
            ))
        }
        None => router,
    }
}

async fn receive_webhook(
    State(state): State<Arc<IngestState>>,
    Path(source_name): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Unknown names are counted together, so that arbitrary paths cannot grow the metrics.
    let source_label = if state.sources.load().contains_key(&source_name) {
        source_name.as_str()
    } else {
        "unknown"
    };
    metrics::webhook_received(source_label);
    let result = handle_webhook(&state, &source_name, query, method, headers, body).await;
    match &result {
        Ok((_, outcome)) => metrics::webhook_outcome(source_label, outcome, ""),
        Err(error) => {
            let outcome = match error.code {
                "rate_limited" => "rate_limited",
                "unavailable" => "unavailable",
                _ => "rejected",
            };
            metrics::webhook_outcome(source_label, outcome, error.code);
        }
    }
    result.map(|(response, _)| response)
}

/// The checks and the store, in order; the outcome label goes to the metrics.
async fn handle_webhook(
    state: &IngestState,
    source_name: &str,
    query: Option<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<(Response, &'static str), ApiError> {
    let received_at = chrono::Utc::now();
    let source = state
        .sources
        .load()
        .get(source_name)
        .cloned()
        .ok_or_else(|| ApiError::unknown_source(source_name))?;
    let body = read_bounded_body(&headers, body, state.max_body_bytes).await?;

    let mut header_pairs = header_pairs(&headers);
    let active = source.active.load_full();
    let check = check_signature(&source, &active, &header_pairs, &body, received_at)?;
    // Only a verified request spends the source's budget: unsigned junk must not use up what
    // the platform is allowed to send.
    take_source_token(&source)?;
    crate::model::dedupe::check_dedupe_header(
        active.settings.dedupe_header.as_deref(),
        &header_pairs,
    )
    .map_err(|error| ApiError::id_too_long(&error))?;
    // Authentic: its credentials are neither stored nor handed to the plugin.
    crate::ingest::redaction::redact_request_headers(&active.settings.signature, &mut header_pairs);

    let request_id = Uuid::now_v7();
    let raw = RawRequest {
        id: request_id,
        source_name: source.name.clone(),
        received_at,
        method: method.to_string(),
        path: format!("/webhooks/{}", source.name),
        query: query.unwrap_or_default(),
        headers: header_pairs,
        body,
        plugin: active.plugin.label().to_owned(),
    };
    let plugin_request = PluginRequest {
        request_id: request_id.to_string(),
        method: raw.method.clone(),
        path: raw.path.clone(),
        query: raw.query.clone(),
        headers: raw.headers.clone(),
        body: raw.body.clone(),
        received_at,
        source_name: source.name.clone(),
        config: source.config.clone(),
    };
    let admission = source
        .plugin_breaker
        .lock()
        .expect("plugin breaker lock poisoned")
        .admit(Instant::now());
    let result = if admission == Admission::Refused {
        Err(format!(
            "not run: the plugin failed call after call, so this source's requests are quarantined without a call for {:?} (then one request probes it)",
            source
                .plugin_breaker
                .lock()
                .expect("plugin breaker lock poisoned")
                .cooldown()
        ))
    } else {
        let result = active
            .plugin
            .handle_checked(plugin_request, source.secrets.clone(), check)
            .await;
        let transition = {
            let mut breaker = source
                .plugin_breaker
                .lock()
                .expect("plugin breaker lock poisoned");
            match &result {
                // An answer refused for what the request carried is still a sign of life.
                Ok(_) => breaker.succeeded(),
                Err(error) if !error.counts_against_the_plugin() => breaker.succeeded(),
                Err(_) => breaker.failed(Instant::now()),
            }
        };
        report_plugin_breaker(&source.name, transition);
        result.map_err(|error| error.to_string())
    };
    let write = match result {
        Err(error) => {
            // The webhook is authentic but the plugin failed: keep it for a replay through a
            // fixed plugin rather than lose it.
            // The error may carry the plugin's stderr, which may quote the body: log it
            // escaped and capped (the stored quarantine row keeps the whole text).
            tracing::warn!(
                source = %source.name,
                request_id = %request_id,
                "quarantined: {}",
                crate::plugins::escape_for_log(&error, QUARANTINE_LOG_LIMIT)
            );
            IngestWrite::Quarantine { raw, error }
        }
        Ok(report) => match report.outcome {
            PluginOutcome::Rejected {
                kind: RejectionKind::Ignored,
                reason,
            } => return Ok((ignored(&reason), "ignored")),
            PluginOutcome::Rejected { kind, reason } => {
                return Err(ApiError::rejection(kind, reason));
            }
            PluginOutcome::Reply(reply) => return Ok((plugin_reply(reply), "replied")),
            PluginOutcome::Events(events) if events.is_empty() => {
                return Ok((
                    ignored("the plugin produced no events for this request"),
                    "ignored",
                ));
            }
            PluginOutcome::Events(events) => IngestWrite::Events {
                body_sha256: body_key_of(&source, &active.settings, &events, &raw.body),
                raw,
                events: route_events(&state.destinations.load(), events),
            },
        },
    };

    let outcome = state
        .queue
        .write(write)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    Ok(match outcome {
        IngestOutcome::Accepted { event_ids } => (
            (
                StatusCode::ACCEPTED,
                Json(
                    json!({"status": "accepted", "event_id": event_ids[0], "event_ids": event_ids}),
                ),
            )
                .into_response(),
            "accepted",
        ),
        IngestOutcome::Duplicate { event_id } => (
            (
                StatusCode::OK,
                Json(json!({"status": "duplicate", "event_id": event_id})),
            )
                .into_response(),
            "duplicate",
        ),
        IngestOutcome::Quarantined { request_id } => (
            (
                StatusCode::ACCEPTED,
                Json(json!({"status": "quarantined", "request_id": request_id})),
            )
                .into_response(),
            "quarantined",
        ),
    })
}

/// The body key of a request's events (see `dedupe::body_key`), when its source has one.
pub fn body_key_of(
    source: &SourceRuntime,
    settings: &SourceSettings,
    events: &[crate::model::events::NormalizedEvent],
    body: &[u8],
) -> Option<[u8; 32]> {
    crate::model::dedupe::body_key(
        &settings.signature,
        source.dedupe_on_body,
        events.iter().map(|event| event.event_type.as_str()),
        body,
    )
}

fn take_source_token(source: &SourceRuntime) -> Result<(), ApiError> {
    if let Some(rate_limiter) = &source.rate_limiter {
        let verdict = rate_limiter
            .lock()
            .expect("rate limiter lock poisoned")
            .try_take(Instant::now());
        if let Err(wait) = verdict {
            return Err(ApiError::rate_limited(wait.as_secs().max(1)));
        }
    }
    Ok(())
}

/// Refuses a client address that sends faster than `server.pre_auth_rate_limit`, before its
/// request costs a body read, a signature check or a plugin call.
async fn limit_client_address(
    State(buckets): State<Arc<Mutex<AddressBuckets>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(peer) = peer {
        let verdict = buckets
            .lock()
            .expect("address buckets lock poisoned")
            .try_take(peer, Instant::now());
        if let Err(wait) = verdict {
            return ApiError::client_rate_limited(wait.as_secs().max(1)).into_response();
        }
    }
    next.run(request).await
}

/// Checks the request's signature with the source's secrets (401, or 400 for a header with too
/// many signatures), counts the MACs it cost, and says whether the host verified the request,
/// which decides whether the plugin may sign.
fn check_signature(
    source: &SourceRuntime,
    active: &ActivePlugin,
    header_pairs: &[(String, String)],
    body: &[u8],
    received_at: chrono::DateTime<chrono::Utc>,
) -> Result<RequestCheck, ApiError> {
    let verification = signature::verify_counting(
        &active.settings.signature,
        SignedRequest {
            headers: header_pairs,
            body,
        },
        &source.secrets,
        received_at.timestamp(),
        source.signature_tolerance_seconds,
    );
    metrics::signature_macs(&source.name, verification.mac_computations);
    verification
        .outcome
        .map_err(|error| ApiError::signature(&error))?;
    Ok(if active.settings.signature.is_checked_by_host() {
        RequestCheck::VerifiedByHost
    } else {
        RequestCheck::NotVerifiedByHost
    })
}

impl IngestState {
    /// Reloads the destinations' routes from the database.
    /// Follows the sources in the database: rebuilds each whose row changed, drops deleted
    /// ones and adds new ones. A source whose new row cannot be served keeps serving as it was
    /// (or stays absent) and is logged once per revision.
    pub async fn refresh_sources(&self, pool: &sqlx::PgPool) -> anyhow::Result<()> {
        let stored = crate::store::sources::load_sources(pool).await?;
        let current = self.sources.load_full();
        let mut next = HashMap::with_capacity(stored.len());
        let stored_names: std::collections::HashSet<String> = stored
            .iter()
            .map(|source| source.record.name.clone())
            .collect();
        let mut changed = false;
        for source in stored {
            let name = source.record.name.clone();
            if let Some(existing) = current.get(&name)
                && existing.revision == source.updated_at
            {
                next.insert(name, existing.clone());
                continue;
            }
            let already_failed = self
                .failing_sources
                .lock()
                .expect("failing sources lock poisoned")
                .get(&name)
                == Some(&source.updated_at);
            if !already_failed {
                match build_source(&self.runtime, pool, &source, &self.source_defaults).await {
                    Ok(runtime) => {
                        tracing::info!(
                            source = %name,
                            plugin = %runtime.active.load().plugin.label(),
                            "source ready at POST /webhooks/{name}"
                        );
                        self.failing_sources
                            .lock()
                            .expect("failing sources lock poisoned")
                            .remove(&name);
                        next.insert(name, Arc::new(runtime));
                        changed = true;
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(source = %name, "the source cannot be served: {}",
                            crate::plugins::escape_for_log(&format!("{error:#}"), crate::plugins::PLUGIN_ERROR_LOG_LIMIT)
                        );
                        self.failing_sources
                            .lock()
                            .expect("failing sources lock poisoned")
                            .insert(name.clone(), source.updated_at);
                    }
                }
            }
            if let Some(existing) = current.get(&name) {
                next.insert(name, existing.clone());
            }
        }
        // Deleted sources are forgotten, failing or not.
        self.failing_sources
            .lock()
            .expect("failing sources lock poisoned")
            .retain(|name, _| stored_names.contains(name));
        changed |= current.keys().any(|name| !next.contains_key(name));
        if changed {
            self.sources.store(Arc::new(next));
        }
        Ok(())
    }

    pub async fn refresh_destinations(&self, pool: &sqlx::PgPool) -> anyhow::Result<()> {
        let destinations = crate::store::destinations::load_destinations(pool, false).await?;
        self.destinations
            .store(Arc::new(destination_routes(destinations)));
        Ok(())
    }
}

/// The compiled routes of each destination; one whose stored routes do not compile is
/// skipped (and logged), since the API and the config refuse such routes.
pub fn destination_routes(
    destinations: Vec<crate::model::destination::Destination>,
) -> Vec<DestinationRoutes> {
    destinations
        .into_iter()
        .filter_map(|destination| match RoutePatterns::new(&destination.routes) {
            Ok(patterns) => Some(DestinationRoutes {
                name: destination.name,
                patterns,
            }),
            Err(error) => {
                tracing::warn!(destination = %destination.name, "skipping invalid routes: {error:#}");
                None
            }
        })
        .collect()
}

/// Pairs each event with the names of the destinations whose routes match it.
pub fn route_events(
    destinations: &[DestinationRoutes],
    events: Vec<crate::model::events::NormalizedEvent>,
) -> Vec<(crate::model::events::NormalizedEvent, Vec<String>)> {
    events
        .into_iter()
        .map(|event| {
            let matching = destinations
                .iter()
                .filter(|destination| destination.patterns.matches_any(&event.route_keys))
                .map(|destination| destination.name.clone())
                .collect();
            (event, matching)
        })
        .collect()
}

/// Every header as a (lower-case name, value) pair in arrival order; a value that is not UTF-8
/// is converted lossily.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Reads the body up to `limit` bytes; a declared or actual larger body is refused without
/// reading the rest.
pub(crate) async fn read_bounded_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::body_too_large(limit));
    }
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::body_too_large(limit))
        }
        Err(_) => Err(ApiError::body_unreadable()),
    }
}

fn ignored(reason: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "ignored", "reason": reason})),
    )
        .into_response()
}

fn plugin_reply(reply: crate::plugins::PluginReply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).expect("the runtime admits only valid statuses");
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Logs and counts a change of a source's plugin breaker.
pub fn report_plugin_breaker(source: &str, transition: Option<Transition>) {
    match transition {
        Some(Transition::Opened {
            consecutive_failures,
        }) => {
            tracing::error!(
                source = %source,
                "plugin breaker opened after {consecutive_failures} failed calls in a row: requests are quarantined without a call until a probe succeeds"
            );
            metrics::plugin_breaker_transition(source, true);
        }
        Some(Transition::Closed) => {
            tracing::info!(source = %source, "plugin breaker closed: the plugin answered");
            metrics::plugin_breaker_transition(source, false);
        }
        None => {}
    }
}

/// Loads a stored source's active plugin version with the source's limits, checks its config
/// through the plugin, and prepares its secrets and rate limiter.
pub async fn build_source(
    runtime: &Arc<PluginRuntime>,
    pool: &sqlx::PgPool,
    source: &crate::store::sources::StoredSource,
    defaults: &SourceDefaults,
) -> anyhow::Result<SourceRuntime> {
    use anyhow::Context as _;
    let record = &source.record;
    let overrides: crate::config::LimitOverrides =
        serde_json::from_value(record.limit_overrides.clone())
            .context("reading the source's limit overrides")?;
    let limits = overrides.apply(&defaults.limits);
    let version_id = crate::sources::hot_reload::active_version(pool, &record.plugin).await?;
    let active = crate::sources::hot_reload::load_for_source(
        runtime,
        pool,
        &record.plugin,
        version_id,
        limits.clone(),
        &record.config,
    )
    .await
    .with_context(|| format!("plugin {}", record.plugin))?;
    warn_about_unusable_secrets(&record.name, &active.settings.signature, &source.secrets);
    let rate_limiter = match (
        record.rate_limit_requests_per_second,
        record.rate_limit_burst,
    ) {
        (Some(rate), Some(burst)) => Some(Mutex::new(TokenBucket::new(
            rate,
            burst.max(1) as u32,
            Instant::now(),
        ))),
        _ => None,
    };
    Ok(SourceRuntime {
        name: record.name.clone(),
        revision: source.updated_at,
        plugin_name: record.plugin.clone(),
        limits,
        active: arc_swap::ArcSwap::from_pointee(active),
        secrets: source
            .secrets
            .iter()
            .map(|(_, secret)| Secret::new(secret.clone()))
            .collect(),
        config: record.config.clone(),
        signature_tolerance_seconds: record
            .signature_tolerance_seconds
            .unwrap_or(defaults.signature_tolerance_seconds as i64),
        dedupe_on_body: record.dedupe_on_body,
        rate_limiter,
        plugin_breaker: Mutex::new(CircuitBreaker::new(
            defaults.plugin_breaker_failure_threshold,
            defaults.plugin_breaker_cooldown,
        )),
    })
}

/// Logs each secret the source's scheme cannot use, by id and never by value. It is logged
/// when the source is built (once per change of its row), and the check skips it, so one bad
/// secret does not fail every request of its source.
fn warn_about_unusable_secrets(
    source: &str,
    scheme: &signature::SignatureScheme,
    secrets: &[(crate::store::secrets::SecretView, String)],
) {
    for (view, secret) in secrets {
        if let Some(reason) = signature::secret_problem(scheme, &Secret::new(secret.clone())) {
            tracing::warn!(
                source = %source,
                secret_id = %view.id,
                "skipping a secret the signature check cannot use: {reason}"
            );
        }
    }
}
