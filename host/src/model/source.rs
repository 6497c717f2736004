//! A source's tunable settings, the one home of their defaults: the config, the admin API's
//! input and view, the row and the registry all hold `SourceSettings`.

use crate::model::settings::{FlattenedSettings, Keys, keys_of};

/// A source's tunable settings, as the config and the admin API write them. Every key may be
/// left out; its default is the one in `impl Default`, which the embedded default config
/// documents and the migrations repeat as column defaults (a unit test checks that the three
/// agree).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SourceSettings {
    /// Handed to the plugin's `configure()` as is (the generic plugin reads it).
    pub config: String,
    /// How far a timestamped signature may be from the server's clock; absent,
    /// `ingest.signature_tolerance_seconds`.
    pub signature_tolerance_seconds: Option<u64>,
    /// A token bucket taken after the signature is verified; absent, no limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// Overrides of `plugins.limits` for this source.
    pub limits: LimitOverrides,
    /// Whether a body-only signature's resend (the same body and event type under a new
    /// delivery id) is a duplicate within the dedupe window; see `dedupe.rs`.
    pub dedupe_on_body: bool,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            config: String::new(),
            signature_tolerance_seconds: None,
            rate_limit: None,
            limits: LimitOverrides::default(),
            dedupe_on_body: true,
        }
    }
}

impl FlattenedSettings for SourceSettings {
    const NAME: &'static str = "SourceSettings";

    fn keys() -> &'static [&'static str] {
        static KEYS: Keys = Keys::new(keys_of::<SourceSettings>);
        &KEYS
    }
}

/// The most a source's signature tolerance may be: one day.
const MAX_SIGNATURE_TOLERANCE_SECONDS: u64 = 86400;

impl SourceSettings {
    /// Checks every setting; an error names the key and what is wrong with it. (NULs in text
    /// are refused with the other keys' text, by `SourceConfig::check`.)
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self
            .signature_tolerance_seconds
            .is_some_and(|seconds| seconds > MAX_SIGNATURE_TOLERANCE_SECONDS)
        {
            return Err((
                "signature_tolerance_seconds",
                "must be at most 86400 (one day)".to_owned(),
            ));
        }
        if let Some(rate_limit) = self.rate_limit
            && !rate_limit.is_usable()
        {
            return Err((
                "rate_limit",
                "needs requests_per_second and burst above 0".to_owned(),
            ));
        }
        if self.limits.deadline_ms == Some(0) || self.limits.max_memory_bytes == Some(0) {
            return Err((
                "limits",
                "deadline_ms and max_memory_bytes must be above 0".to_owned(),
            ));
        }
        Ok(())
    }

    /// The signature tolerance this source runs with, given the server-wide default.
    pub fn signature_tolerance(&self, server_default_seconds: u64) -> i64 {
        self.signature_tolerance_seconds
            .unwrap_or(server_default_seconds)
            .min(i64::MAX as u64) as i64
    }
}

/// A token bucket: `requests_per_second` refill, `burst` capacity.
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests_per_second: f64,
    pub burst: u32,
}

impl RateLimitConfig {
    /// Whether the bucket refills and holds at least one token (and its burst fits a row).
    pub fn is_usable(&self) -> bool {
        self.requests_per_second > 0.0 && self.burst > 0 && self.burst <= i32::MAX as u32
    }
}

/// Per-source overrides of the plugin limits; absent keys keep `plugins.limits`.
#[derive(
    Clone, Debug, Default, serde::Deserialize, serde::Serialize, PartialEq, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<usize>,
}

#[cfg(test)]
mod tests;
