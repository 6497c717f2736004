//! Configuration: the commented default embedded in the binary, a TOML file over it, and
//! `WASMHOOK_<SECTION>__<KEY>` environment variables over both. Invalid configuration fails at
//! start with the key named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::model::source::{RateLimitConfig, SourceSettings};
use crate::plugins::PluginLimits;
use crate::signature::Secret;

/// The default configuration, with every key documented.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

pub mod tasks;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub plugins: PluginsConfig,
    pub ingest: IngestConfig,
    pub delivery: DeliveryConfig,
    pub retention: RetentionConfig,
    pub admin: AdminConfig,
    #[serde(default)]
    pub tasks: tasks::TasksConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub header_read_timeout_seconds: u64,
    pub max_head_bytes: usize,
    /// Seconds a client may take to send its whole request body; then it is answered 408.
    pub body_read_timeout_seconds: u64,
    /// Connections served at once per listener; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Serve HTTP/2 (with prior knowledge, h2c) besides HTTP/1.1, with fixed stream limits.
    pub http2: bool,
    /// A token bucket per client address, taken before a request is authenticated; off when
    /// absent.
    pub pre_auth_rate_limit: Option<RateLimitConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: Option<String>,
    pub data_dir: PathBuf,
    pub max_connections: u32,
    pub acquire_timeout_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    pub dir: PathBuf,
    pub compiled_cache_dir: PathBuf,
    pub max_concurrent_instances: u32,
    pub pool_memory_bytes: usize,
    pub breaker_failure_threshold: u32,
    pub breaker_cooldown_seconds: f64,
    pub limits: PluginLimits,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub dedupe_window_seconds: u64,
    pub signature_tolerance_seconds: u64,
    pub batch_max_requests: usize,
    pub writers: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub poll_interval_ms: u64,
    pub claim_batch: usize,
    pub rescue_interval_ms: u64,
    pub lease_margin_seconds: u64,
    pub shutdown_grace_seconds: u64,
    pub allow_private_networks: bool,
    pub allowed_ports: Vec<u16>,
    /// How often the worker reads the destinations again, in milliseconds.
    #[serde(default = "default_destination_refresh_ms")]
    pub destination_refresh_ms: u64,
}

pub(crate) fn default_destination_refresh_ms() -> u64 {
    2000
}

/// The admin API. Off unless a token is configured here or in `WASMHOOK_ADMIN_TOKEN`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub token: Option<SecretReference>,
    /// The admin API's own address, never the webhook one (loopback by default).
    pub listen: SocketAddr,
}

/// The shortest admin token accepted: a token is the only thing between a caller and every
/// secret the host holds, so it must be long enough not to be guessed.
pub const ADMIN_TOKEN_MIN_CHARACTERS: usize = 32;

impl AdminConfig {
    /// The token, from the config or `WASMHOOK_ADMIN_TOKEN`; `None` turns the admin API off.
    /// A token shorter than 32 characters is an error naming where it came from.
    pub fn resolve_token(&self) -> anyhow::Result<Option<Secret>> {
        self.resolve_token_with(std::env::var("WASMHOOK_ADMIN_TOKEN").ok())
    }

    fn resolve_token_with(&self, environment: Option<String>) -> anyhow::Result<Option<Secret>> {
        let (token, key) = if let Some(token) = &self.token {
            (token.resolve().context("admin.token")?, "admin.token")
        } else {
            match environment.filter(|token| !token.is_empty()) {
                Some(token) => (Secret::new(token), "WASMHOOK_ADMIN_TOKEN"),
                None => return Ok(None),
            }
        };
        if token.expose().chars().count() < ADMIN_TOKEN_MIN_CHARACTERS {
            bail!(
                "invalid configuration: {key} must be at least {ADMIN_TOKEN_MIN_CHARACTERS} characters (generate one with `openssl rand -hex 32`)"
            );
        }
        Ok(Some(token))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub events_days: f64,
    /// Quarantined requests and requests with a dead or failed delivery: kept for replay.
    pub replayable_days: f64,
    pub attempts_days: f64,
    pub batch_size: i64,
    pub pause_between_batches_ms: u64,
    pub interval_seconds: u64,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The path segment of `POST /webhooks/{name}`: 1-64 characters of a-z, 0-9, '-' and '_'.
    pub name: String,
    /// The plugin's name: a file `<plugin>.wasm` in the plugins directory, or an uploaded one.
    pub plugin: String,
    /// The secrets signatures are checked against; several match at once during a rotation.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub secrets: Vec<SecretReference>,
    // The tunable settings, at the same level as the keys above in TOML and JSON.
    #[serde(
        flatten,
        deserialize_with = "crate::model::settings::deserialize_flattened"
    )]
    #[schema(inline)]
    pub settings: SourceSettings,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub name: String,
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_…`); generated when absent.
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretReference>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    // The tunable settings, at the same level as the keys above in TOML and JSON.
    #[serde(
        flatten,
        deserialize_with = "crate::model::settings::deserialize_flattened"
    )]
    #[schema(inline)]
    pub settings: crate::model::destination::DestinationSettings,
}

impl DestinationConfig {
    /// Checks every field; an error names the field and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.name.trim().is_empty() || self.name.len() > 128 {
            return Err(("name", "must be 1-128 characters".to_owned()));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://"))
            || url::Url::parse(&self.url).is_err()
        {
            return Err(("url", "must be an http or https URL".to_owned()));
        }
        if let Err(error) = crate::delivery::routes::RoutePatterns::new(&self.routes) {
            return Err(("routes", format!("has an invalid pattern: {error}")));
        }
        refuse_nul("routes", self.routes.iter().map(String::as_str))?;
        refuse_nul("name", [self.name.as_str()])?;
        refuse_nul(
            "secret",
            self.secret.iter().map(SecretReference::as_literal),
        )?;
        for (name, value) in &self.headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(value).is_err()
            {
                return Err((
                    "headers",
                    format!("{name:?} is not a valid HTTP header name and value"),
                ));
            }
        }
        self.settings.check()
    }

    /// The row this destination is stored as (its secrets are stored apart).
    pub fn to_record(&self) -> crate::model::destination::DestinationRecord {
        crate::model::destination::DestinationRecord {
            name: self.name.clone(),
            url: self.url.clone(),
            routes: self.routes.clone(),
            headers: serde_json::json!(self.headers),
            settings: self.settings.clone(),
        }
    }
}

/// A secret as written in the configuration: a literal, `env:NAME` or `file:PATH`. Its `Debug`
/// output never shows a literal.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretReference(String);

/// Most bytes in a secret. Secrets are stored under a unique btree index, whose entries
/// PostgreSQL refuses above about 2.7 KB; no platform's secret comes near this bound.
pub const MAX_SECRET_BYTES: usize = 1024;

/// What is wrong with a secret's value, if anything; never quotes it.
pub fn secret_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("is empty".to_owned())
    } else if value.len() > MAX_SECRET_BYTES {
        Some(format!(
            "is {} bytes long; a secret is at most {MAX_SECRET_BYTES} bytes",
            value.len()
        ))
    } else {
        None
    }
}

impl std::fmt::Debug for SecretReference {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.starts_with("env:") || self.0.starts_with("file:") {
            write!(formatter, "SecretReference({:?})", self.0)
        } else {
            formatter.write_str("SecretReference(<literal>)")
        }
    }
}

impl SecretReference {
    pub fn literal(value: impl Into<String>) -> SecretReference {
        SecretReference(value.into())
    }

    /// The text as written, without resolving `env:` or `file:`.
    pub fn as_literal(&self) -> &str {
        &self.0
    }

    /// Reads the secret. Errors name the variable or file, never the value.
    pub fn resolve(&self) -> anyhow::Result<Secret> {
        let value = if let Some(variable) = self.0.strip_prefix("env:") {
            std::env::var(variable)
                .with_context(|| format!("environment variable {variable} is not set"))?
        } else if let Some(path) = self.0.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the secret file {path}"))?
                .trim_end_matches(['\n', '\r'])
                .to_owned()
        } else {
            self.0.clone()
        };
        if let Some(problem) = secret_value_problem(&value) {
            bail!("the secret {problem}");
        }
        Ok(Secret::new(value))
    }
}

/// Whether `name` is usable in a URL path and a metrics label as it is.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        })
}

impl SourceConfig {
    /// Checks every field that needs no plugin; an error names the field and the problem.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !is_plain_name(&self.name) {
            return Err((
                "name",
                "must be 1-64 characters of a-z, 0-9, '-' and '_'".to_owned(),
            ));
        }
        if !is_plain_name(&self.plugin) {
            return Err((
                "plugin",
                "must be 1-64 characters of a-z, 0-9, '-' and '_'".to_owned(),
            ));
        }
        refuse_nul("config", [self.settings.config.as_str()])?;
        refuse_nul(
            "secrets",
            self.secrets.iter().map(SecretReference::as_literal),
        )?;
        self.settings.check()
    }

    /// The row this source is stored as (its secrets are stored apart).
    pub fn to_record(&self) -> crate::store::sources::SourceRecord {
        crate::store::sources::SourceRecord {
            name: self.name.clone(),
            plugin: self.plugin.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl Config {
    /// Loads the default, then `file` (if given), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(file) = file {
            if !file.exists() {
                bail!("the config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only variables with a section separator are configuration keys; others such as
        // WASMHOOK_LOG or WASMHOOK_ADMIN_TOKEN are read elsewhere.
        figment = figment.merge(
            Env::prefixed("WASMHOOK_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Parses a configuration from TOML text over the defaults, without the environment.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Self::from_toml_layers(&[text])
    }

    /// Parses TOML texts merged in order (a later one wins) over the defaults, without the
    /// environment.
    pub fn from_toml_layers(layers: &[&str]) -> anyhow::Result<Config> {
        let figment = layers.iter().fold(
            Figment::from(Toml::string(DEFAULT_CONFIG)),
            |figment, text| figment.merge(Toml::string(text)),
        );
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> anyhow::Result<Config> {
        let config: Config = figment
            .extract()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.server.max_body_bytes == 0 {
            bail!("invalid configuration: server.max_body_bytes must be above 0");
        }
        if self.server.max_connections == 0 {
            bail!("invalid configuration: server.max_connections must be above 0");
        }
        if self.server.body_read_timeout_seconds == 0 {
            bail!("invalid configuration: server.body_read_timeout_seconds must be above 0");
        }
        if let Some(limit) = self.server.pre_auth_rate_limit
            && !limit.is_usable()
        {
            bail!(
                "invalid configuration: server.pre_auth_rate_limit needs requests_per_second and burst above 0"
            );
        }
        if !(self.retention.events_days > 0.0
            && self.retention.replayable_days > 0.0
            && self.retention.attempts_days > 0.0)
            || self.retention.batch_size <= 0
        {
            bail!(
                "invalid configuration: retention.events_days, replayable_days, attempts_days and batch_size must be above 0"
            );
        }
        if self.plugins.breaker_failure_threshold == 0
            || !(0.0..=86400.0).contains(&self.plugins.breaker_cooldown_seconds)
        {
            bail!(
                "invalid configuration: plugins.breaker_failure_threshold must be above 0 and plugins.breaker_cooldown_seconds between 0 and 86400"
            );
        }
        self.tasks.check(self.delivery.destination_refresh_ms)?;
        if self.ingest.batch_max_requests == 0 || self.ingest.writers == 0 {
            bail!(
                "invalid configuration: ingest.batch_max_requests and ingest.writers must be above 0"
            );
        }
        let mut source_names = std::collections::BTreeSet::new();
        for (index, source) in self.sources.iter().enumerate() {
            if let Err((field, problem)) = source.check() {
                bail!(
                    "invalid configuration: sources[{index}].{field} {problem} (source {:?})",
                    source.name
                );
            }
            if !source_names.insert(source.name.as_str()) {
                bail!(
                    "invalid configuration: sources[{index}].name {:?} is used twice",
                    source.name
                );
            }
        }
        let mut destination_names = std::collections::BTreeSet::new();
        for (index, destination) in self.destinations.iter().enumerate() {
            if destination.name.trim().is_empty() {
                bail!("invalid configuration: destinations[{index}].name is empty");
            }
            if !destination_names.insert(destination.name.as_str()) {
                bail!(
                    "invalid configuration: destinations[{index}].name {:?} is used twice",
                    destination.name
                );
            }
            if let Err((field, problem)) = destination.check() {
                bail!("invalid configuration: destinations[{index}].{field} {problem}");
            }
        }
        Ok(())
    }

    /// Where compiled plugins are cached.
    pub fn compiled_cache_dir(&self) -> PathBuf {
        if self.plugins.compiled_cache_dir.as_os_str().is_empty() {
            self.database.data_dir.join("compiled")
        } else {
            self.plugins.compiled_cache_dir.clone()
        }
    }
}

/// Refuses a field whose texts contain NUL, which PostgreSQL cannot store in a text column.
fn refuse_nul<'a>(
    field: &'static str,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<(), (&'static str, String)> {
    if texts.into_iter().any(|text| text.contains('\0')) {
        return Err((field, "must not contain NUL characters".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_parses_and_documents_every_section() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.server.max_body_bytes, 1 << 20);
        assert_eq!(config.ingest.dedupe_window_seconds, 7 * 24 * 3600);
        assert_eq!(config.plugins.limits, PluginLimits::default());
        assert!(config.database.url.is_none());
    }

    #[test]
    fn invalid_configuration_names_the_key() {
        let table = [
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            ("[server]\nmax_body_bytes = -1", "server.max_body_bytes"),
            ("[server]\nlisten_typo = 1", "listen_typo"),
            (
                "[[sources]]\nname = \"Git Hub\"\nplugin = \"github\"",
                "sources[0].name",
            ),
            (
                "[[sources]]\nname = \"a\"\nplugin = \"x\"\n[[sources]]\nname = \"a\"\nplugin = \"y\"",
                "sources[1].name",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"ftp://x\"",
                "destinations[0].url",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nheaders = { \"bad name\" = \"v\" }",
                "destinations[0].headers",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nsecret = \"a\\u0000b\"",
                "destinations[0].secret",
            ),
            (
                "[[sources]]\nname = \"a\"\nplugin = \"x\"\nconfig = \"a\\u0000b\"",
                "sources[0].config",
            ),
            (
                "[[sources]]\nname = \"a\"\nplugin = \"x\"\nsecrets = [\"a\\u0000b\"]",
                "sources[0].secrets",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nroutes = [\"a\\u0000\"]",
                "destinations[0].routes",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nroutes = [\"a[\"]",
                "destinations[0].routes",
            ),
            (
                "[[sources]]\nname = \"a\"\nplugin = \"x\"\nrate_limit = { requests_per_second = 0.0, burst = 1 }",
                "sources[0].rate_limit",
            ),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            (
                "[server]\nbody_read_timeout_seconds = 0",
                "server.body_read_timeout_seconds",
            ),
            (
                "[server]\npre_auth_rate_limit = { requests_per_second = 5.0, burst = 0 }",
                "server.pre_auth_rate_limit",
            ),
            ("[server]\nhttp2 = \"yes\"", "http2"),
            // The destination settings are flattened, and their reader names the key itself.
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\ntimeout_seconds = \"x\"",
                "timeout_seconds",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nmax_concurrency = -1",
                "max_concurrency",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nmax_concurency = 1",
                "max_concurency",
            ),
            (
                "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nmax_concurrency = 0",
                "destinations[0].max_concurrency",
            ),
        ];
        for (text, key) in table {
            let error = format!("{:#}", Config::from_toml(text).unwrap_err());
            assert!(error.contains(key), "{text:?}: {error}");
        }
    }

    /// The source settings are flattened like the destination ones, and their reader names
    /// the key itself, for a wrong type, an unknown key inside a setting and a misspelt one.
    #[test]
    fn a_bad_source_setting_names_its_key() {
        let source = "[[sources]]\nname = \"a\"\nplugin = \"x\"\n";
        let table = [
            (
                "signature_tolerance_seconds = \"x\"",
                "signature_tolerance_seconds",
            ),
            (
                "signature_tolerance_seconds = 86401",
                "sources[0].signature_tolerance_seconds",
            ),
            ("rate_limit = 1", "rate_limit"),
            ("limits = { deadline = 1 }", "limits"),
            ("dedupe_on_body = \"no\"", "dedupe_on_body"),
            (
                "rate_limt = { requests_per_second = 1.0, burst = 1 }",
                "rate_limt",
            ),
        ];
        for (line, key) in table {
            let text = format!("{source}{line}");
            let error = format!("{:#}", Config::from_toml(&text).unwrap_err());
            assert!(error.contains(key), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_zero_background_period_names_its_key() {
        let table = [
            ("[tasks]\nplugin_poll_ms = 0", "tasks.plugin_poll_ms"),
            (
                "[delivery]\ndestination_refresh_ms = 0",
                "delivery.destination_refresh_ms",
            ),
        ];
        for (text, key) in table {
            let error = format!("{:#}", Config::from_toml(text).unwrap_err());
            assert!(error.contains(key), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_admin_api_listens_on_loopback_apart_from_the_webhooks_by_default() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:8081");
        assert_ne!(config.admin.listen, config.server.listen);
        assert!(!config.server.http2);
        assert!(config.server.pre_auth_rate_limit.is_none());
    }

    #[test]
    fn an_admin_token_shorter_than_32_characters_is_refused_naming_its_key() {
        let long = "x".repeat(ADMIN_TOKEN_MIN_CHARACTERS);
        let short = "x".repeat(ADMIN_TOKEN_MIN_CHARACTERS - 1);
        // (admin.token in the config, WASMHOOK_ADMIN_TOKEN, the key an error names or None)
        let table: [(Option<&str>, Option<&str>, Option<&str>); 6] = [
            (Some(&long), None, None),
            (Some(&short), None, Some("admin.token")),
            (Some("short"), Some(&long), Some("admin.token")),
            (None, Some(&long), None),
            (None, Some(&short), Some("WASMHOOK_ADMIN_TOKEN")),
            (None, None, None),
        ];
        for (configured, environment, refused_key) in table {
            let admin = AdminConfig {
                token: configured.map(SecretReference::literal),
                listen: "127.0.0.1:8081".parse().unwrap(),
            };
            let result = admin.resolve_token_with(environment.map(str::to_owned));
            match refused_key {
                Some(key) => {
                    let error = result.unwrap_err().to_string();
                    assert!(error.contains(key) && error.contains("32"), "{error}");
                    assert!(!error.contains(&short), "the token is not shown: {error}");
                }
                None => assert!(result.is_ok(), "{configured:?} {environment:?}"),
            }
        }
    }

    #[test]
    fn secrets_resolve_from_literals_environment_and_files_without_leaking() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(
            SecretReference::literal("plain")
                .resolve()
                .unwrap()
                .expose(),
            "plain"
        );
        assert_eq!(
            SecretReference::literal(format!("file:{}", path.display()))
                .resolve()
                .unwrap()
                .expose(),
            "from-file"
        );
        let missing = SecretReference::literal("env:WASMHOOK_TEST_SURELY_UNSET_VARIABLE")
            .resolve()
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("WASMHOOK_TEST_SURELY_UNSET_VARIABLE")
        );
        assert_eq!(
            format!("{:?}", SecretReference::literal("hunter2")),
            "SecretReference(<literal>)"
        );
    }

    #[test]
    fn secrets_longer_than_the_bound_are_refused_without_quoting_them() {
        let table = [
            ("", Some("is empty".to_owned())),
            ("s", None),
            (&"s".repeat(MAX_SECRET_BYTES), None),
            (
                &"s".repeat(MAX_SECRET_BYTES + 1),
                Some("is 1025 bytes long; a secret is at most 1024 bytes".to_owned()),
            ),
        ];
        for (value, expected) in table {
            assert_eq!(
                secret_value_problem(value),
                expected,
                "{} bytes",
                value.len()
            );
        }
        let long = "s".repeat(MAX_SECRET_BYTES + 1);
        let error = SecretReference::literal(long.clone())
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(error.contains("at most 1024 bytes") && !error.contains(&long[..64]));
    }

    #[test]
    fn source_limits_override_only_what_they_name() {
        let config = Config::from_toml(
            "[[sources]]\nname = \"a\"\nplugin = \"x\"\nlimits = { deadline_ms = 250 }",
        )
        .unwrap();
        let limits = config
            .plugins
            .limits
            .with_overrides(&config.sources[0].settings.limits);
        assert_eq!(limits.deadline_ms, 250);
        assert_eq!(
            limits.max_memory_bytes,
            PluginLimits::default().max_memory_bytes
        );
    }
}
