//! Every HTTP error the host answers, and its status: the one place where failures become
//! statuses. Bodies are `{"code", "detail"}`; details say what was wrong without revealing
//! secrets or internals (a 5xx says only that the service is unavailable).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::plugins::RejectionKind;
use crate::signature::SignatureError;
use crate::store::error::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after_seconds: None,
        }
    }

    pub fn unknown_source(source: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source named {source:?} is configured"),
        )
    }

    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn body_unreadable() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            "the request body could not be read",
        )
    }

    /// A dedupe header too long to be stored as an event id; the detail names the header.
    pub fn id_too_long(error: &crate::model::dedupe::IdTooLong) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "id_too_long", error.to_string())
    }

    pub fn rate_limited(retry_after_seconds: u64) -> ApiError {
        ApiError {
            retry_after_seconds: Some(retry_after_seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this source sends faster than its configured rate limit",
            )
        }
    }

    /// The per-address limit taken before authentication.
    pub fn client_rate_limited(retry_after_seconds: u64) -> ApiError {
        ApiError {
            retry_after_seconds: Some(retry_after_seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this client address sends faster than server.pre_auth_rate_limit allows",
            )
        }
    }

    /// An address that presented a wrong admin token too often.
    pub fn too_many_failed_logins(retry_after_seconds: u64) -> ApiError {
        ApiError {
            retry_after_seconds: Some(retry_after_seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_logins",
                format!(
                    "this client address presented a wrong admin token too often; retry in {retry_after_seconds} s"
                ),
            )
        }
    }

    pub fn body_read_timeout(seconds: u64) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_read_timeout",
            format!("the request body did not arrive within {seconds} s"),
        )
    }

    pub fn signature(error: &SignatureError) -> ApiError {
        let (status, code) = match error {
            SignatureError::TimestampOutsideTolerance { .. } => {
                (StatusCode::UNAUTHORIZED, "stale_signature")
            }
            SignatureError::TooManySignatures { .. } => {
                (StatusCode::BAD_REQUEST, "too_many_signatures")
            }
            _ => (StatusCode::UNAUTHORIZED, "invalid_signature"),
        };
        ApiError::new(status, code, error.to_string())
    }

    /// A plugin's refusal; `Ignored` is not an error and never reaches here.
    pub fn rejection(kind: RejectionKind, reason: String) -> ApiError {
        let (status, code) = match kind {
            RejectionKind::Malformed => (StatusCode::BAD_REQUEST, "malformed"),
            RejectionKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            RejectionKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            RejectionKind::StaleTimestamp => (StatusCode::BAD_REQUEST, "stale_timestamp"),
            RejectionKind::Ignored => (StatusCode::ACCEPTED, "ignored"),
        };
        ApiError::new(status, code, reason)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <admin token>`",
        )
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// Invalid input; the detail starts with the field's name.
    pub fn invalid_field(field: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("{field}: {problem}"),
        )
    }

    /// A `[redacted]` placeholder sent along with a destination's new scheme, host or port:
    /// the stored credential it stands for is not sent there.
    pub fn stored_credential_not_moved(problem: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "stored_credential_not_moved",
            format!("url: {problem}"),
        )
    }

    /// Something failed inside; the cause is logged, never shown. A `StoreError` anywhere in
    /// the cause's chain answers as that error does (an outage is a 503, not a 500), so that a
    /// handler need not tell store failures from its own.
    pub fn internal<E>(error: &E) -> ApiError
    where
        E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
    {
        let error = error.as_ref();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = cause {
            if let Some(store_error) = current.downcast_ref::<StoreError>() {
                return ApiError::from(store_error);
            }
            cause = current.source();
        }
        tracing::error!("admin request failed: {}", error_chain(error));
        ApiError::hidden_failure()
    }

    fn hidden_failure() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be completed; the server log has the cause",
        )
    }

    /// The webhook could not be stored; the sender should retry.
    pub fn store_unavailable() -> ApiError {
        ApiError::unavailable("the webhook could not be stored right now; retry later")
    }

    fn unavailable(detail: &'static str) -> ApiError {
        ApiError {
            retry_after_seconds: Some(5),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
        }
    }
}

/// A store failure as the API answers it: the kind decides the status; the message, which names
/// tables and the database's own words, only reaches the log.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::from(&error)
    }
}

impl From<&StoreError> for ApiError {
    fn from(error: &StoreError) -> ApiError {
        match error {
            StoreError::Unavailable(_) => {
                tracing::warn!("admin request failed: {error}");
                ApiError::unavailable("the database is unavailable right now; retry later")
            }
            StoreError::NotFound(_) => {
                tracing::info!("admin request found nothing: {error}");
                ApiError::not_found("the requested item does not exist")
            }
            StoreError::Conflict(_) => {
                tracing::info!("admin request conflicted: {error}");
                ApiError::conflict("the change conflicts with what is stored; reload and retry")
            }
            StoreError::Other { .. } => {
                tracing::error!("admin request failed: {error}");
                ApiError::hidden_failure()
            }
        }
    }
}

/// Every message of an error's chain, outermost first, as `anyhow`'s `{:#}` shows them.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "detail": self.detail});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("digits are a valid header"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_map_to_their_statuses() {
        let table = [
            (RejectionKind::Malformed, StatusCode::BAD_REQUEST),
            (RejectionKind::Invalid, StatusCode::UNPROCESSABLE_ENTITY),
            (RejectionKind::Unauthenticated, StatusCode::UNAUTHORIZED),
            (RejectionKind::StaleTimestamp, StatusCode::BAD_REQUEST),
        ];
        for (kind, status) in table {
            assert_eq!(ApiError::rejection(kind, String::new()).status, status);
        }
    }

    #[test]
    fn store_errors_answer_by_kind_wherever_they_are_in_the_chain() {
        let message = || "listing events: error returned from database: secret_table".to_owned();
        // (how the error is made from its message, expected status, expected code)
        type Row = (fn(String) -> StoreError, StatusCode, &'static str);
        let table: [Row; 4] = [
            (
                StoreError::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (StoreError::NotFound, StatusCode::NOT_FOUND, "not_found"),
            (StoreError::Conflict, StatusCode::CONFLICT, "conflict"),
            (
                StoreError::other,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (kind, status, code) in table {
            let error = kind(message());
            let direct = ApiError::internal(&error);
            let wrapped = ApiError::internal(&anyhow::Error::from(error).context("loading a view"));
            for answer in [direct, wrapped] {
                assert_eq!((answer.status, answer.code), (status, code));
                assert!(!answer.detail.contains("secret_table"), "{}", answer.detail);
            }
        }
        let plain = ApiError::internal(&anyhow::anyhow!("no store here"));
        assert_eq!(plain.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn retry_after_is_sent_for_rate_limits_and_outages() {
        for error in [
            ApiError::rate_limited(3),
            ApiError::client_rate_limited(1),
            ApiError::too_many_failed_logins(300),
            ApiError::store_unavailable(),
            ApiError::internal(&StoreError::Unavailable("down".to_owned())),
        ] {
            let response = error.into_response();
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }
    }
}
