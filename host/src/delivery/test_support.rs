//! Fixtures shared by the unit tests of the pure delivery decisions, so that their schedules
//! are checked against one fixed instant.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::destination::RetryPolicy;

/// The instant the delivery unit tests decide at.
pub(crate) fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A schedule of an immediate retry, then 5 s, then 300 s, throttled to at least 60 s.
pub(crate) fn policy() -> RetryPolicy {
    RetryPolicy {
        schedule: [0, 5, 300].map(Duration::from_secs).to_vec(),
        throttle_min_delay: Duration::from_secs(60),
    }
}
