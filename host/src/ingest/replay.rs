//! Replay: finished deliveries made due again, and quarantined requests run through the
//! current plugin version as if they had just arrived.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::Config;
use crate::ingest::decide::{Answer, Decision, decide, events_write};
use crate::model::ingest::{IngestOutcome, RawRequest};
use crate::plugins::PluginRuntime;
use crate::plugins::engine::RuntimeSettings;
use crate::sources::destinations::{DestinationRoutes, destination_routes};
use crate::sources::registry::{SourceDefaults, SourceRuntime, build_source};
use crate::store;
use crate::store::jobs::{self, ReplayFilter};

/// What became of one quarantined request.
#[derive(Debug)]
pub enum QuarantineReplay {
    /// The plugin produced events; they were stored (or were duplicates) and are delivered.
    Stored(IngestOutcome),
    /// The plugin refused or ignored the request, or answered a handshake; it stays quarantined.
    NotStored(String),
    /// The plugin still fails; it stays quarantined.
    StillFailing(String),
}

/// Quarantined requests are read this many at a time, so a replay holds one page of bodies.
pub const QUARANTINE_PAGE_SIZE: i64 = 100;

/// Runs quarantined requests (one, or all) through the current plugins of their sources, a
/// page at a time. The signature is not checked again: a request is stored only after the
/// host verified it, and its credentials (a shared token) were redacted before it was stored.
/// Retention leaves replayable rows alone while this runs.
pub async fn replay_quarantined(
    config: &Config,
    pool: &PgPool,
    request_id: Option<Uuid>,
) -> anyhow::Result<Vec<(Uuid, QuarantineReplay)>> {
    let guard = store::retention::ReplayGuard::hold(pool).await?;
    let result = replay_pages(config, pool, request_id).await;
    guard.release().await;
    result
}

async fn replay_pages(
    config: &Config,
    pool: &PgPool,
    request_id: Option<Uuid>,
) -> anyhow::Result<Vec<(Uuid, QuarantineReplay)>> {
    let mut replayer = Replayer::new(config, pool).await?;
    let mut results = Vec::new();
    let mut after = None;
    loop {
        let page =
            store::ingest::quarantined_requests(pool, request_id, after, QUARANTINE_PAGE_SIZE)
                .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.received_at, last.id));
        let full_page = page.len() as i64 == QUARANTINE_PAGE_SIZE;
        for raw in page {
            let id = raw.id;
            let outcome = replayer.replay(raw).await?;
            results.push((id, outcome));
        }
        if !full_page {
            break;
        }
    }
    if request_id.is_some() && results.is_empty() {
        anyhow::bail!("no quarantined request has that id");
    }
    Ok(results)
}

/// What a replay of quarantined requests keeps between requests: the runtime, the stored
/// sources and destinations, and each source once it is built.
struct Replayer<'a> {
    config: &'a Config,
    pool: &'a PgPool,
    runtime: std::sync::Arc<PluginRuntime>,
    defaults: SourceDefaults,
    stored_sources: Vec<store::sources::StoredSource>,
    destinations: Vec<DestinationRoutes>,
    sources: HashMap<String, Result<SourceRuntime, String>>,
}

impl<'a> Replayer<'a> {
    async fn new(config: &'a Config, pool: &'a PgPool) -> anyhow::Result<Replayer<'a>> {
        let runtime = PluginRuntime::new(RuntimeSettings {
            max_concurrent_instances: config.plugins.max_concurrent_instances,
            pool_memory_bytes: config.plugins.pool_memory_bytes,
            compiled_cache_dir: Some(config.compiled_cache_dir()),
        })?;
        Ok(Replayer {
            config,
            pool,
            runtime,
            defaults: SourceDefaults::from_config(config),
            stored_sources: store::sources::load_sources(pool).await?,
            destinations: destination_routes(
                crate::store::destinations::load_destinations(pool, false).await?,
            ),
            sources: HashMap::new(),
        })
    }

    /// Builds a request's source once, when its first request comes up.
    async fn build_if_missing(&mut self, name: &str) {
        if self.sources.contains_key(name) {
            return;
        }
        let built = match self
            .stored_sources
            .iter()
            .find(|source| source.record.name == name)
        {
            Some(stored) => build_source(&self.runtime, self.pool, stored, &self.defaults)
                .await
                .map_err(|error| format!("the source cannot be served: {error:#}")),
            None => Err(format!("the source {name:?} no longer exists")),
        };
        self.sources.insert(name.to_owned(), built);
    }

    async fn replay(&mut self, raw: RawRequest) -> anyhow::Result<QuarantineReplay> {
        self.build_if_missing(&raw.source_name).await;
        let source = &self.sources[&raw.source_name];
        match source {
            Err(reason) => Ok(QuarantineReplay::NotStored(reason.clone())),
            Ok(source) => {
                replay_through(self.config, self.pool, &self.destinations, source, raw).await
            }
        }
    }
}

/// Runs one quarantined request through its source's plugin and stores what it produced.
async fn replay_through(
    config: &Config,
    pool: &PgPool,
    destinations: &[DestinationRoutes],
    source: &SourceRuntime,
    raw: RawRequest,
) -> anyhow::Result<QuarantineReplay> {
    let active = source.active.load_full();
    // A row stored before requests were redacted still holds the source's token; the plugin
    // gets `[redacted]` in its place, as it would for a request arriving now.
    let mut raw = raw;
    crate::ingest::redaction::redact_request_headers(&active.settings.signature, &mut raw.headers);
    let plugin_request = crate::ingest::handler::plugin_request(&raw, &source.config);
    let result = active
        .plugin
        .handle(plugin_request, source.secrets.clone())
        .await
        .map(|report| report.outcome)
        .map_err(|error| error.to_string());
    let events = match decide(result) {
        Decision::Store(events) => events,
        Decision::Quarantine(error) => return Ok(QuarantineReplay::StillFailing(error)),
        Decision::Answer(answer) => return Ok(QuarantineReplay::NotStored(not_stored(answer))),
    };
    let request_id = raw.id;
    raw.plugin = active.plugin.label().to_owned();
    // The body key as at ingest: resends of one body that were each quarantined while the
    // plugin failed are one event once replayed, the later ones duplicates.
    let write = events_write(source, &active, destinations, raw, events);
    let stored = store::ingest::write_batch(
        pool,
        std::slice::from_ref(&write),
        Duration::from_secs(config.ingest.dedupe_window_seconds),
        chrono::Utc::now(),
    )
    .await
    .context("storing the replayed events")?;
    let outcome = stored.into_iter().next().context("one outcome")?;
    if matches!(outcome, IngestOutcome::Duplicate { .. }) {
        // Its events were stored meanwhile; the request is handled.
        store::ingest::mark_request_accepted(pool, request_id).await?;
    }
    Ok(QuarantineReplay::Stored(outcome))
}

/// Why a replayed request stays quarantined when its plugin answered without events.
fn not_stored(answer: Answer) -> String {
    match answer {
        Answer::NoEvents => "the plugin produced no events".to_owned(),
        Answer::Refused { kind, reason } => format!("the plugin refused it ({kind:?}): {reason}"),
        Answer::Reply(reply) => format!("the plugin answered a handshake ({})", reply.status),
    }
}

/// `wasmhook replay`: jobs by filter, or quarantined requests.
pub async fn replay_command(
    config: &Config,
    pool: &PgPool,
    filter: ReplayFilter,
    quarantined: bool,
    request_id: Option<Uuid>,
    dry_run: bool,
) -> anyhow::Result<()> {
    if quarantined || request_id.is_some() {
        if dry_run {
            let count = store::ingest::count_quarantined(pool, request_id).await?;
            println!("{count} quarantined requests would be replayed");
            return Ok(());
        }
        for (id, outcome) in replay_quarantined(config, pool, request_id).await? {
            println!("{id}: {outcome:?}");
        }
        return Ok(());
    }
    for state in &filter.job_states {
        if !["delivered", "failed", "dead"].contains(&state.as_str()) {
            anyhow::bail!("--state {state:?} is not one of delivered, failed, dead");
        }
    }
    if dry_run {
        let count = jobs::count_replay(pool, &filter).await?;
        println!("{count} deliveries would be replayed");
    } else {
        let count = jobs::replay(pool, &filter).await?;
        println!("{count} deliveries replayed");
    }
    Ok(())
}
