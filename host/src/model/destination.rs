//! A destination as the store keeps it and as delivery uses it: the types both `store` (which
//! maps rows to them) and `delivery` (which acts on them) import, so that neither imports the
//! other's.

use std::time::Duration;

use crate::signature::Secret;

/// A destination's settings as stored; its secrets live in `destination_secrets`.
#[derive(Clone, Debug)]
pub struct DestinationRecord {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    pub retry_schedule_ms: Vec<i32>,
    pub throttle_min_delay_ms: i32,
    pub max_concurrency: i32,
    pub rate_limit_per_second: Option<f64>,
    pub paused: bool,
    pub allow_private_networks: bool,
    pub retry_client_errors: bool,
    pub breaker_failure_threshold: i32,
    pub breaker_cooldown_ms: i32,
}

/// A destination with everything the worker needs to deliver to it.
#[derive(Clone, Debug)]
pub struct Destination {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    /// Every delivery is signed with each of these (several while a secret is rotated).
    pub signing_secrets: Vec<Secret>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub retry_policy: RetryPolicy,
    pub max_concurrency: usize,
    pub rate_limit_per_second: Option<f64>,
    pub paused: bool,
    pub allow_private_networks: bool,
    pub retry_client_errors: bool,
    pub breaker_failure_threshold: u32,
    pub breaker_cooldown: Duration,
}

/// A destination's retry policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before each attempt; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    /// The least delay after a timeout or a 429.
    pub throttle_min_delay: Duration,
}
