//! `POST /webhooks/{source}`: the inbound path. In order: the client address's limit (429, when
//! configured), find the source (404), bound the body (413), check the signature (401), the
//! source's rate limit (429), bound the dedupe header (400), run the plugin (its rejection, its
//! reply, or a quarantine when it fails), then store through the group-commit queue and answer
//! 202 (or 200 for a duplicate) only after the commit.

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

use crate::http_error::ApiError;
use crate::ingest::decide::{Answer, Decision, decide, events_write};
use crate::ingest::group_commit::IngestQueue;
use crate::metrics;
use crate::model::ingest::{IngestOutcome, IngestWrite, RawRequest};
use crate::plugins::{PluginOutcome, PluginRequest, RejectionKind, RequestCheck};
use crate::rate_limit::AddressBuckets;
use crate::signature::{self, SignedRequest};
use crate::sources::registry::{ActivePlugin, SourceRegistry, SourceRuntime};

/// Most bytes of a plugin failure logged with a quarantine.
const QUARANTINE_LOG_LIMIT: usize = 512;

/// What the ingest handler needs.
pub struct IngestState {
    /// The sources and destination routes, read per request; others change them.
    pub registry: Arc<SourceRegistry>,
    pub queue: IngestQueue,
    pub max_body_bytes: usize,
}

/// Most client addresses the pre-authentication limit tracks at once.
const PRE_AUTH_TRACKED_ADDRESSES: usize = 65_536;

/// The webhook route; with `pre_auth_rate_limit`, each client address has its own bucket,
/// taken before anything else.
pub fn router(
    state: Arc<IngestState>,
    pre_auth_rate_limit: Option<crate::model::source::RateLimitConfig>,
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
    let source_label = if state.registry.get(&source_name).is_some() {
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
        .registry
        .get(source_name)
        .ok_or_else(|| ApiError::unknown_source(source_name))?;
    let body = read_bounded_body(&headers, body, state.max_body_bytes).await?;
    let active = source.active.load_full();
    let header_pairs = header_pairs(&headers);
    let check = check_signature(&source, &active, &header_pairs, &body, received_at)?;
    // Only a verified request spends the source's budget: unsigned junk must not use up what
    // the platform is allowed to send.
    take_source_token(&source)?;
    let raw = RawRequest {
        id: Uuid::now_v7(),
        source_name: source.name.clone(),
        received_at,
        method: method.to_string(),
        path: format!("/webhooks/{}", source.name),
        query: query.unwrap_or_default(),
        headers: authenticated_headers(&active, header_pairs)?,
        body,
        plugin: active.plugin.label().to_owned(),
    };
    let result = call_plugin(
        &source,
        &active,
        plugin_request(&raw, &source.config),
        check,
    )
    .await;
    let write = match decide(result) {
        Decision::Answer(answer) => return answer_now(answer),
        Decision::Quarantine(error) => quarantine_write(raw, error),
        Decision::Store(events) => events_write(
            &source,
            &active,
            &state.registry.destinations(),
            raw,
            events,
        ),
    };
    let outcome = state
        .queue
        .write(write)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    Ok(stored_answer(outcome))
}

/// The headers of a verified request as they are stored and handed to the plugin: its dedupe
/// header bounded (400), and its credentials redacted, since it is authentic.
fn authenticated_headers(
    active: &ActivePlugin,
    mut header_pairs: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ApiError> {
    crate::model::dedupe::check_dedupe_header(
        active.settings.dedupe_header.as_deref(),
        &header_pairs,
    )
    .map_err(|error| ApiError::id_too_long(&error))?;
    crate::ingest::redaction::redact_request_headers(&active.settings.signature, &mut header_pairs);
    Ok(header_pairs)
}

/// The plugin's view of a request, as received or as stored for replay.
pub fn plugin_request(raw: &RawRequest, config: &str) -> PluginRequest {
    PluginRequest {
        request_id: raw.id.to_string(),
        method: raw.method.clone(),
        path: raw.path.clone(),
        query: raw.query.clone(),
        headers: raw.headers.clone(),
        body: raw.body.clone(),
        received_at: raw.received_at,
        source_name: raw.source_name.clone(),
        config: config.to_owned(),
    }
}

/// Calls the plugin unless its breaker is open, and counts the call for the breaker; the error
/// is the text a quarantine keeps.
async fn call_plugin(
    source: &SourceRuntime,
    active: &ActivePlugin,
    request: PluginRequest,
    check: RequestCheck,
) -> Result<PluginOutcome, String> {
    if let Err(cooldown) = source.admit_plugin_call() {
        return Err(format!(
            "not run: the plugin failed call after call, so this source's requests are quarantined without a call for {cooldown:?} (then one request probes it)"
        ));
    }
    let result = active
        .plugin
        .handle_checked(request, source.secrets.clone(), check)
        .await;
    // An answer refused for what the request carried is still a sign of life.
    source.record_plugin_call(match &result {
        Ok(_) => true,
        Err(error) => !error.counts_against_the_plugin(),
    });
    result
        .map(|report| report.outcome)
        .map_err(|error| error.to_string())
}

/// The webhook is authentic but the plugin failed: it is kept for a replay through a fixed
/// plugin rather than lost. The error may carry the plugin's stderr, which may quote the body:
/// it is logged escaped and capped (the stored quarantine row keeps the whole text).
fn quarantine_write(raw: RawRequest, error: String) -> IngestWrite {
    tracing::warn!(
        source = %raw.source_name,
        request_id = %raw.id,
        "quarantined: {}",
        crate::plugins::escape_for_log(&error, QUARANTINE_LOG_LIMIT)
    );
    IngestWrite::Quarantine { raw, error }
}

/// The answer to a request that stores nothing, with its outcome label.
fn answer_now(answer: Answer) -> Result<(Response, &'static str), ApiError> {
    match answer {
        Answer::NoEvents => Ok((
            ignored("the plugin produced no events for this request"),
            "ignored",
        )),
        Answer::Refused {
            kind: RejectionKind::Ignored,
            reason,
        } => Ok((ignored(&reason), "ignored")),
        Answer::Refused { kind, reason } => Err(ApiError::rejection(kind, reason)),
        Answer::Reply(reply) => Ok((plugin_reply(reply), "replied")),
    }
}

/// The answer once the store committed, with its outcome label.
fn stored_answer(outcome: IngestOutcome) -> (Response, &'static str) {
    match outcome {
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_store_nothing_have_their_status_and_label() {
        let reply = crate::plugins::PluginReply {
            status: 200,
            headers: vec![("x-challenge".to_owned(), "abc".to_owned())],
            body: b"abc".to_vec(),
        };
        let refused = |kind| Answer::Refused {
            kind,
            reason: "because".to_owned(),
        };
        let table = [
            (Answer::NoEvents, Ok((StatusCode::ACCEPTED, "ignored"))),
            (
                refused(RejectionKind::Ignored),
                Ok((StatusCode::ACCEPTED, "ignored")),
            ),
            (Answer::Reply(reply), Ok((StatusCode::OK, "replied"))),
            (
                refused(RejectionKind::Invalid),
                Err((StatusCode::UNPROCESSABLE_ENTITY, "invalid")),
            ),
            (
                refused(RejectionKind::Unauthenticated),
                Err((StatusCode::UNAUTHORIZED, "unauthenticated")),
            ),
        ];
        for (answer, expected) in table {
            let label = format!("{answer:?}");
            let got = answer_now(answer)
                .map(|(response, outcome)| (response.status(), outcome))
                .map_err(|error| (error.status, error.code));
            assert_eq!(got, expected, "{label}");
        }
    }

    #[test]
    fn a_reply_keeps_the_plugins_headers() {
        let (response, _) = answer_now(Answer::Reply(crate::plugins::PluginReply {
            status: 200,
            headers: vec![("x-challenge".to_owned(), "abc".to_owned())],
            body: b"abc".to_vec(),
        }))
        .unwrap();
        assert_eq!(response.headers()["x-challenge"], "abc");
    }

    #[test]
    fn stored_outcomes_have_their_status_and_label() {
        let id = Uuid::now_v7();
        let table = [
            (
                IngestOutcome::Accepted {
                    event_ids: vec![id],
                },
                StatusCode::ACCEPTED,
                "accepted",
            ),
            (
                IngestOutcome::Duplicate { event_id: id },
                StatusCode::OK,
                "duplicate",
            ),
            (
                IngestOutcome::Quarantined { request_id: id },
                StatusCode::ACCEPTED,
                "quarantined",
            ),
        ];
        for (outcome, status, label) in table {
            let (response, got) = stored_answer(outcome);
            assert_eq!((response.status(), got), (status, label));
        }
    }
}
