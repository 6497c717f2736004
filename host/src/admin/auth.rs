//! The bearer token in front of every operation, and the throttle on guessing it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;
use crate::http_error::ApiError;
use crate::rate_limit::LoginThrottle;

/// Wrong tokens a client address may present before it is refused for a while.
const MAX_FAILED_LOGINS: u32 = 10;
/// How long an address that guessed too often is refused.
const FAILED_LOGIN_BLOCK: std::time::Duration = std::time::Duration::from_secs(300);
/// Most client addresses whose failed logins are remembered at once.
const FAILED_LOGIN_ADDRESSES: usize = 4096;

/// The digest the presented tokens are compared with.
pub(super) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// An empty throttle with the admin API's limits.
pub(super) fn login_throttle() -> LoginThrottle {
    LoginThrottle::new(
        MAX_FAILED_LOGINS,
        FAILED_LOGIN_BLOCK,
        FAILED_LOGIN_ADDRESSES,
    )
}

pub(super) async fn require_token(
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
fn presented_token_matches(request: &Request, expected: &[u8; 32]) -> Option<bool> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))?;
    let presented_digest: [u8; 32] = token_digest(presented.trim());
    Some(bool::from(presented_digest.ct_eq(expected)))
}
