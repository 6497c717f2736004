//! A destination as the store keeps it and as delivery uses it: the types both `store` (which
//! maps rows to them) and `delivery` (which acts on them) import, so that neither imports the
//! other's. `DestinationSettings` is the one home of a destination's tunable settings and their
//! defaults: the config, the admin API's input and view, the row and the worker all hold it.

use std::time::Duration;

use crate::model::settings::{FlattenedSettings, Keys, keys_of};
use crate::signature::Secret;

/// A destination's tunable settings, as the config and the admin API write them (durations in
/// seconds). Every key may be left out; its default is the one in `impl Default`, which the
/// embedded default config documents and the migrations repeat as column defaults (a unit test
/// checks that the three agree).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct DestinationSettings {
    pub timeout_seconds: f64,
    pub retry_schedule_seconds: Vec<f64>,
    pub throttle_min_delay_seconds: f64,
    pub max_concurrency: u32,
    pub rate_limit_per_second: Option<f64>,
    pub paused: bool,
    pub allow_private_networks: bool,
    pub retry_client_errors: bool,
    pub breaker_failure_threshold: u32,
    pub breaker_cooldown_seconds: f64,
}

impl Default for DestinationSettings {
    fn default() -> Self {
        DestinationSettings {
            timeout_seconds: 15.0,
            // Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 27.6 hours over 8
            // attempts.
            retry_schedule_seconds: vec![
                0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0,
            ],
            throttle_min_delay_seconds: 60.0,
            max_concurrency: 16,
            rate_limit_per_second: None,
            paused: false,
            allow_private_networks: false,
            retry_client_errors: false,
            breaker_failure_threshold: 10,
            breaker_cooldown_seconds: 60.0,
        }
    }
}

/// Seconds as the whole milliseconds a row stores them in.
pub fn milliseconds(seconds: f64) -> i32 {
    (seconds * 1000.0).round() as i32
}

/// A row's milliseconds as seconds, as the API shows them.
pub fn seconds(milliseconds: i32) -> f64 {
    duration(milliseconds).as_secs_f64()
}

/// A row's milliseconds as a duration; a negative value is none.
fn duration(milliseconds: i32) -> Duration {
    Duration::from_millis(milliseconds.max(0) as u64)
}

impl DestinationSettings {
    /// Checks every setting; an error names the key and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let seconds = [
            ("timeout_seconds", self.timeout_seconds),
            (
                "throttle_min_delay_seconds",
                self.throttle_min_delay_seconds,
            ),
            ("breaker_cooldown_seconds", self.breaker_cooldown_seconds),
        ];
        for (field, value) in seconds.into_iter().chain(
            self.retry_schedule_seconds
                .iter()
                .map(|value| ("retry_schedule_seconds", *value)),
        ) {
            if !(0.0..=30.0 * 86400.0).contains(&value) {
                return Err((field, "must be between 0 and 30 days".to_owned()));
            }
        }
        if self.retry_schedule_seconds.is_empty() {
            return Err((
                "retry_schedule_seconds",
                "needs at least one attempt".to_owned(),
            ));
        }
        if self.max_concurrency == 0 {
            return Err(("max_concurrency", "must be above 0".to_owned()));
        }
        if self.breaker_failure_threshold == 0 {
            return Err(("breaker_failure_threshold", "must be above 0".to_owned()));
        }
        if self
            .rate_limit_per_second
            .is_some_and(|rate| rate.is_nan() || rate <= 0.0)
        {
            return Err(("rate_limit_per_second", "must be above 0".to_owned()));
        }
        Ok(())
    }

    /// The timeout of one request, in the whole milliseconds a row holds.
    pub fn timeout(&self) -> Duration {
        duration(milliseconds(self.timeout_seconds))
    }

    /// The retry policy, in the whole milliseconds a row holds.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            schedule: self
                .retry_schedule_seconds
                .iter()
                .map(|seconds| duration(milliseconds(*seconds)))
                .collect(),
            throttle_min_delay: duration(milliseconds(self.throttle_min_delay_seconds)),
        }
    }

    /// How long the breaker stays open, in the whole milliseconds a row holds.
    pub fn breaker_cooldown(&self) -> Duration {
        duration(milliseconds(self.breaker_cooldown_seconds))
    }

    /// Requests in flight at once; never 0, which would stop the destination for good.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency.max(1) as usize
    }
}

impl FlattenedSettings for DestinationSettings {
    const NAME: &'static str = "DestinationSettings";

    fn keys() -> &'static [&'static str] {
        static KEYS: Keys = Keys::new(keys_of::<DestinationSettings>);
        &KEYS
    }
}

/// A destination as stored; its secrets live in `destination_secrets`, and the store writes
/// its settings' durations as milliseconds.
#[derive(Clone, Debug)]
pub struct DestinationRecord {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    pub headers: serde_json::Value,
    pub settings: DestinationSettings,
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
    /// As stored, except that `allow_private_networks` includes the server-wide override.
    pub settings: DestinationSettings,
}

/// A destination's retry policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before each attempt; its length is the number of attempts.
    pub schedule: Vec<Duration>,
    /// The least delay after a timeout or a 429.
    pub throttle_min_delay: Duration,
}

#[cfg(test)]
mod tests;
