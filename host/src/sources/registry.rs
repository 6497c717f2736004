//! The source registry: every source this process serves, built from its stored row, and the
//! destinations' routes. Ingest only reads it; the periodic refresh, the admin API and hot
//! reload change it through its methods, each swapping a whole map or a whole plugin version so
//! that a request keeps what it started with.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::delivery::breaker::{Admission, CircuitBreaker, Transition};
use crate::model::events::NormalizedEvent;
use crate::plugins::{ConfiguredSource, Plugin, PluginLimits, PluginRuntime};
use crate::rate_limit::TokenBucket;
use crate::signature::{self, Secret};
use crate::sources::destinations::{DestinationRoutes, destination_routes};
use crate::store::{self, sources::StoredSource};

/// One source, ready to take requests. Rebuilt whole when its row changes.
pub struct SourceRuntime {
    pub name: String,
    /// The `updated_at` of the row this was built from.
    pub revision: DateTime<Utc>,
    pub plugin_name: String,
    pub limits: PluginLimits,
    /// The plugin version serving this source, swapped whole when another is activated;
    /// a request keeps the version it started with.
    pub active: ArcSwap<ActivePlugin>,
    pub secrets: Arc<[Secret]>,
    pub config: String,
    pub signature_tolerance_seconds: i64,
    pub dedupe_on_body: bool,
    pub rate_limiter: Option<Mutex<TokenBucket>>,
    /// Opens when the plugin fails call after call; while open, requests are quarantined
    /// without calling it.
    plugin_breaker: Mutex<CircuitBreaker>,
}

/// A loaded plugin version and what it made of the source's configuration.
pub struct ActivePlugin {
    pub plugin: Plugin,
    pub settings: ConfiguredSource,
    pub version_id: Uuid,
}

/// What a source gets for the settings its row leaves out.
#[derive(Clone, Debug)]
pub struct SourceDefaults {
    pub limits: PluginLimits,
    pub signature_tolerance_seconds: u64,
    pub plugin_breaker_failure_threshold: u32,
    pub plugin_breaker_cooldown: Duration,
}

impl SourceDefaults {
    pub fn from_config(config: &crate::config::Config) -> SourceDefaults {
        SourceDefaults {
            limits: config.plugins.limits.clone(),
            signature_tolerance_seconds: config.ingest.signature_tolerance_seconds,
            plugin_breaker_failure_threshold: config.plugins.breaker_failure_threshold,
            plugin_breaker_cooldown: Duration::from_secs_f64(
                config.plugins.breaker_cooldown_seconds.max(0.0),
            ),
        }
    }
}

impl SourceRuntime {
    /// The body key of a request's events (see `dedupe::body_key`), when this source has one.
    pub fn body_key(
        &self,
        settings: &ConfiguredSource,
        events: &[NormalizedEvent],
        body: &[u8],
    ) -> Option<[u8; 32]> {
        crate::model::dedupe::body_key(
            &settings.signature,
            self.dedupe_on_body,
            events.iter().map(|event| event.event_type.as_str()),
            body,
        )
    }

    /// Whether the plugin may be called now; while its breaker is open, the error is how long
    /// the breaker stays open before one request probes it.
    pub fn admit_plugin_call(&self) -> Result<(), Duration> {
        let mut breaker = self
            .plugin_breaker
            .lock()
            .expect("plugin breaker lock poisoned");
        match breaker.admit(Instant::now()) {
            Admission::Refused => Err(breaker.cooldown()),
            _ => Ok(()),
        }
    }

    /// Counts a call for the plugin breaker: `answered` is false when the plugin itself failed
    /// (an answer refused for what the request carried is still a sign of life).
    pub fn record_plugin_call(&self, answered: bool) {
        let transition = {
            let mut breaker = self
                .plugin_breaker
                .lock()
                .expect("plugin breaker lock poisoned");
            if answered {
                breaker.succeeded()
            } else {
                breaker.failed(Instant::now())
            }
        };
        report_plugin_breaker(&self.name, transition);
    }

    /// Swaps in another plugin version; the breaker closes, since another version deserves its
    /// own chance.
    fn swap_plugin(&self, loaded: ActivePlugin) {
        self.active.store(Arc::new(loaded));
        let transition = self
            .plugin_breaker
            .lock()
            .expect("plugin breaker lock poisoned")
            .succeeded();
        report_plugin_breaker(&self.name, transition);
    }
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
            crate::metrics::plugin_breaker_transition(source, true);
        }
        Some(Transition::Closed) => {
            tracing::info!(source = %source, "plugin breaker closed: the plugin answered");
            crate::metrics::plugin_breaker_transition(source, false);
        }
        None => {}
    }
}

/// Every source this process serves and the destinations' routes, swapped whole when the
/// database changes.
pub struct SourceRegistry {
    /// A request keeps the map it started with.
    sources: ArcSwap<HashMap<String, Arc<SourceRuntime>>>,
    /// Sources whose stored row cannot be served (its plugin is missing or refuses its
    /// config), with the revision that failed, so each failure is logged once.
    failing: Mutex<HashMap<String, DateTime<Utc>>>,
    destinations: ArcSwap<Vec<DestinationRoutes>>,
    defaults: SourceDefaults,
    runtime: Arc<PluginRuntime>,
}

impl SourceRegistry {
    /// A registry serving nothing yet: `start` and the refreshes fill it.
    pub fn new(runtime: Arc<PluginRuntime>, defaults: SourceDefaults) -> SourceRegistry {
        SourceRegistry {
            sources: ArcSwap::from_pointee(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
            destinations: ArcSwap::from_pointee(Vec::new()),
            defaults,
            runtime,
        }
    }

    /// The source named `name`, when it is served.
    pub fn get(&self, name: &str) -> Option<Arc<SourceRuntime>> {
        self.sources.load().get(name).cloned()
    }

    /// Every source served now.
    pub fn serving(&self) -> Arc<HashMap<String, Arc<SourceRuntime>>> {
        self.sources.load_full()
    }

    /// The names of the stored sources that cannot be served, sorted.
    pub fn failing_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .failing
            .lock()
            .expect("failing sources lock poisoned")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The destinations' routes now.
    pub fn destinations(&self) -> Arc<Vec<DestinationRoutes>> {
        self.destinations.load_full()
    }

    pub fn defaults(&self) -> &SourceDefaults {
        &self.defaults
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    /// Builds every stored source at start. A source for which `required` gives a context
    /// (the config declares it) stops the start when it cannot be served; any other is
    /// reported and listed as failing while the rest serve.
    pub async fn start(
        &self,
        pool: &PgPool,
        stored: Vec<StoredSource>,
        required: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> anyhow::Result<()> {
        self.follow(pool, stored, required).await
    }

    /// Follows the sources in the database: rebuilds each whose row changed, drops deleted
    /// ones and adds new ones. A source whose new row cannot be served keeps serving as it was
    /// (or stays absent) and is logged once per revision.
    pub async fn refresh_sources(&self, pool: &PgPool) -> anyhow::Result<()> {
        let stored = store::sources::load_sources(pool).await?;
        self.follow(pool, stored, &|_| None).await
    }

    /// Reloads the destinations' routes from the database.
    pub async fn refresh_destinations(&self, pool: &PgPool) -> anyhow::Result<()> {
        let destinations = store::destinations::load_destinations(pool, false).await?;
        self.destinations
            .store(Arc::new(destination_routes(destinations)));
        Ok(())
    }

    /// The one place that turns stored rows into the served map (see `start` and
    /// `refresh_sources`).
    async fn follow(
        &self,
        pool: &PgPool,
        stored: Vec<StoredSource>,
        required: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> anyhow::Result<()> {
        let current = self.sources.load_full();
        let mut next = HashMap::with_capacity(stored.len());
        let stored_names: HashSet<String> = stored
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
            if let Some(built) = self.build_or_report(pool, &source, required).await? {
                next.insert(name, built);
                changed = true;
            } else if let Some(existing) = current.get(&name) {
                next.insert(name, existing.clone());
            }
        }
        // Deleted sources are forgotten, failing or not.
        self.failing
            .lock()
            .expect("failing sources lock poisoned")
            .retain(|name, _| stored_names.contains(name));
        changed |= current.keys().any(|name| !next.contains_key(name));
        if changed {
            self.sources.store(Arc::new(next));
        }
        Ok(())
    }

    /// Builds one changed source. When it cannot be served, a required source is an error and
    /// any other is logged (once per revision) and listed as failing: `None`.
    async fn build_or_report(
        &self,
        pool: &PgPool,
        source: &StoredSource,
        required: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> anyhow::Result<Option<Arc<SourceRuntime>>> {
        let name = &source.record.name;
        let already_failed = self
            .failing
            .lock()
            .expect("failing sources lock poisoned")
            .get(name)
            == Some(&source.updated_at);
        if already_failed {
            return Ok(None);
        }
        match build_source(&self.runtime, pool, source, &self.defaults).await {
            Ok(built) => {
                tracing::info!(
                    source = %name,
                    plugin = %built.active.load().plugin.label(),
                    "source ready at POST /webhooks/{name}"
                );
                self.failing
                    .lock()
                    .expect("failing sources lock poisoned")
                    .remove(name);
                Ok(Some(Arc::new(built)))
            }
            Err(error) => {
                if let Some(context) = required(name) {
                    return Err(error.context(context));
                }
                tracing::error!(source = %name, "the source cannot be served: {}",
                    crate::plugins::escape_for_log(&format!("{error:#}"), crate::plugins::PLUGIN_ERROR_LOG_LIMIT)
                );
                self.failing
                    .lock()
                    .expect("failing sources lock poisoned")
                    .insert(name.clone(), source.updated_at);
                Ok(None)
            }
        }
    }

    /// Swaps each source's plugin to its active version when that changed: the new version is
    /// compiled and checked against the source's config off the request path first. A version
    /// that cannot serve a source is remembered in `refused` and not tried again for it.
    pub async fn follow_active_versions(
        &self,
        pool: &PgPool,
        refused: &mut HashSet<(String, Uuid)>,
    ) -> anyhow::Result<()> {
        let active = store::plugin_versions::active_plugin_versions(pool).await?;
        for source in self.serving().values() {
            let Some((_, version_id, _)) = active
                .iter()
                .find(|(name, _, _)| *name == source.plugin_name)
            else {
                continue;
            };
            if source.active.load().version_id == *version_id
                || refused.contains(&(source.name.clone(), *version_id))
            {
                continue;
            }
            let loaded = load_for_source(
                &self.runtime,
                pool,
                &source.plugin_name,
                *version_id,
                source.limits.clone(),
                &source.config,
            )
            .await;
            match loaded {
                Ok(loaded) => {
                    tracing::info!(
                        source = %source.name,
                        plugin = %loaded.plugin.label(),
                        "swapped in plugin version {version_id}"
                    );
                    source.swap_plugin(loaded);
                }
                Err(error) => {
                    tracing::error!(
                        source = %source.name,
                        "keeping the current plugin: version {version_id} cannot serve this source: {}",
                        crate::plugins::escape_for_log(
                            &format!("{error:#}"),
                            crate::plugins::PLUGIN_ERROR_LOG_LIMIT
                        )
                    );
                    refused.insert((source.name.clone(), *version_id));
                }
            }
        }
        Ok(())
    }
}

/// Builds a source from its stored row: loads its plugin's active version with the source's
/// limits, checks its config through the plugin, and prepares its secrets and rate limiter.
/// This is the only place a source is built; each caller decides what a failure means (the
/// registry reports it, the admin API refuses the change, replay leaves the request alone).
pub async fn build_source(
    runtime: &Arc<PluginRuntime>,
    pool: &PgPool,
    source: &StoredSource,
    defaults: &SourceDefaults,
) -> anyhow::Result<SourceRuntime> {
    if let Some(problem) = &source.unreadable {
        anyhow::bail!("{problem}");
    }
    let record = &source.record;
    let settings = &record.settings;
    let limits = defaults.limits.with_overrides(&settings.limits);
    let version_id = active_version(pool, &record.plugin).await?;
    let active = load_for_source(
        runtime,
        pool,
        &record.plugin,
        version_id,
        limits.clone(),
        &settings.config,
    )
    .await
    .with_context(|| format!("plugin {}", record.plugin))?;
    warn_about_unusable_secrets(&record.name, &active.settings.signature, &source.secrets);
    let rate_limiter = settings.rate_limit.map(|limit| {
        Mutex::new(TokenBucket::new(
            limit.requests_per_second,
            limit.burst.max(1),
            Instant::now(),
        ))
    });
    Ok(SourceRuntime {
        name: record.name.clone(),
        revision: source.updated_at,
        plugin_name: record.plugin.clone(),
        limits,
        active: ArcSwap::from_pointee(active),
        secrets: source
            .secrets
            .iter()
            .map(|(_, secret)| Secret::new(secret.clone()))
            .collect(),
        config: settings.config.clone(),
        signature_tolerance_seconds: settings
            .signature_tolerance(defaults.signature_tolerance_seconds),
        dedupe_on_body: settings.dedupe_on_body,
        rate_limiter,
        plugin_breaker: Mutex::new(CircuitBreaker::new(
            defaults.plugin_breaker_failure_threshold,
            defaults.plugin_breaker_cooldown,
        )),
    })
}

/// Loads one version of a plugin for one source: its limits, checked against its config.
async fn load_for_source(
    runtime: &Arc<PluginRuntime>,
    pool: &PgPool,
    plugin_name: &str,
    version_id: Uuid,
    limits: PluginLimits,
    source_config: &str,
) -> anyhow::Result<ActivePlugin> {
    let bytes = store::plugin_versions::plugin_component(pool, version_id).await?;
    let plugin = runtime
        .load_bytes(
            &format!("{plugin_name} version {version_id}"),
            &bytes,
            limits,
        )
        .await?;
    let settings = plugin
        .configure(source_config)
        .await
        .context("the source's config")?;
    Ok(ActivePlugin {
        plugin,
        settings,
        version_id,
    })
}

/// The active version id of `plugin_name`.
async fn active_version(pool: &PgPool, plugin_name: &str) -> anyhow::Result<Uuid> {
    store::plugin_versions::active_plugin_versions(pool)
        .await?
        .into_iter()
        .find(|(name, _, _)| name == plugin_name)
        .map(|(_, id, _)| id)
        .with_context(|| {
            format!("plugin {plugin_name:?} has no file in the plugins directory and no uploaded version")
        })
}

/// Logs each secret the source's scheme cannot use, by id and never by value. It is logged
/// when the source is built (once per change of its row), and the check skips it, so one bad
/// secret does not fail every request of its source.
fn warn_about_unusable_secrets(
    source: &str,
    scheme: &signature::SignatureScheme,
    secrets: &[(store::secrets::SecretView, String)],
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
