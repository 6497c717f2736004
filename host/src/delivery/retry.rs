//! Delivery outcomes and retry timing. Pure: the caller passes `now` and the jitter sample. The
//! policy itself is `model::destination::RetryPolicy`, beside the destination that has it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::destination::RetryPolicy;

/// What one delivery attempt came to. A value, not an error: failing receivers are normal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Delivered,
    /// 408, 409, 425, 429, 5xx, a timeout, a connection or TLS error: try again later.
    Retryable {
        /// The receiver's `Retry-After`, when it sent a usable one.
        retry_after: Option<Duration>,
        /// A timeout or 429: the receiver is overwhelmed, so wait at least the throttle delay.
        throttled: bool,
    },
    /// Another 4xx (or a refused destination): retrying would not help.
    Failed,
    /// 410 Gone: the receiver says it no longer exists; the destination is paused.
    Gone,
}

impl AttemptOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retryable { .. } => "retryable",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Gone => "gone",
        }
    }
}

/// Classifies an HTTP status. `retry_client_errors` makes every 4xx but 410 retryable.
pub fn classify_status(
    status: u16,
    retry_after_header: Option<&str>,
    retry_client_errors: bool,
    now: DateTime<Utc>,
) -> AttemptOutcome {
    let retryable = |throttled| AttemptOutcome::Retryable {
        retry_after: retry_after_header.and_then(|value| parse_retry_after(value, now)),
        throttled,
    };
    match status {
        200..=299 => AttemptOutcome::Delivered,
        410 => AttemptOutcome::Gone,
        429 => retryable(true),
        408 | 409 | 425 | 500..=599 => retryable(false),
        400..=499 if retry_client_errors => retryable(false),
        _ => AttemptOutcome::Failed,
    }
}

/// Parses `Retry-After`: whole seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// What happens after a retryable failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    RetryIn(Duration),
    /// Every attempt is spent: the job is dead, kept for replay.
    Dead,
}

/// The delay before the next attempt after `attempts_made` attempts. `jitter` is a sample in
/// [-1, 1] that spreads the delay by ±20 %; `Retry-After` is honoured within [delay, 2 × delay].
pub fn next_step(
    policy: &RetryPolicy,
    attempts_made: u32,
    retry_after: Option<Duration>,
    throttled: bool,
    jitter: f64,
) -> NextStep {
    let Some(base) = policy.schedule.get(attempts_made as usize) else {
        return NextStep::Dead;
    };
    let jitter = jitter.clamp(-1.0, 1.0);
    let mut delay = base.mul_f64(1.0 + 0.2 * jitter);
    if let Some(retry_after) = retry_after {
        delay = retry_after.clamp(delay, delay * 2);
    }
    if throttled {
        delay = delay.max(policy.throttle_min_delay);
    }
    NextStep::RetryIn(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::test_support::{now, policy};

    #[test]
    fn statuses_are_classified() {
        let retryable = AttemptOutcome::Retryable {
            retry_after: None,
            throttled: false,
        };
        let table = [
            (200, false, AttemptOutcome::Delivered),
            (204, false, AttemptOutcome::Delivered),
            (301, false, AttemptOutcome::Failed),
            (400, false, AttemptOutcome::Failed),
            (400, true, retryable.clone()),
            (404, false, AttemptOutcome::Failed),
            (408, false, retryable.clone()),
            (409, false, retryable.clone()),
            (410, false, AttemptOutcome::Gone),
            (410, true, AttemptOutcome::Gone),
            (425, false, retryable.clone()),
            (
                429,
                false,
                AttemptOutcome::Retryable {
                    retry_after: None,
                    throttled: true,
                },
            ),
            (500, false, retryable.clone()),
            (503, false, retryable),
        ];
        for (status, retry_client_errors, expected) in table {
            assert_eq!(
                classify_status(status, None, retry_client_errors, now()),
                expected,
                "status {status}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let table = [
            ("120", Some(Duration::from_secs(120))),
            (" 7 ", Some(Duration::from_secs(7))),
            (
                "Wed, 25 Nov 2026 12:00:30 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Wed, 25 Nov 2026 11:00:00 GMT", Some(Duration::ZERO)),
            ("soon", None),
            ("-5", None),
        ];
        for (value, expected) in table {
            assert_eq!(parse_retry_after(value, now()), expected, "{value:?}");
        }
    }

    #[test]
    fn delays_follow_the_schedule_with_jitter_retry_after_and_throttling() {
        let seconds = Duration::from_secs;
        let policy = policy();
        // (attempts made, Retry-After, throttled, jitter, expected)
        let table = [
            (1, None, false, 0.0, NextStep::RetryIn(seconds(5))),
            (1, None, false, 1.0, NextStep::RetryIn(seconds(6))),
            (1, None, false, -1.0, NextStep::RetryIn(seconds(4))),
            (1, None, false, 7.0, NextStep::RetryIn(seconds(6))),
            (2, None, false, 0.0, NextStep::RetryIn(seconds(300))),
            (3, None, false, 0.0, NextStep::Dead),
            (
                1,
                Some(seconds(8)),
                false,
                0.0,
                NextStep::RetryIn(seconds(8)),
            ),
            (
                1,
                Some(seconds(1)),
                false,
                0.0,
                NextStep::RetryIn(seconds(5)),
            ),
            (
                1,
                Some(seconds(3600)),
                false,
                0.0,
                NextStep::RetryIn(seconds(10)),
            ),
            (1, None, true, 0.0, NextStep::RetryIn(seconds(60))),
            (2, None, true, 0.0, NextStep::RetryIn(seconds(300))),
        ];
        for (attempts, retry_after, throttled, jitter, expected) in table {
            assert_eq!(
                next_step(&policy, attempts, retry_after, throttled, jitter),
                expected,
                "attempts {attempts}, retry-after {retry_after:?}, throttled {throttled}, jitter {jitter}"
            );
        }
    }
}
