//! Replay: finished deliveries made due again, and quarantined requests run through the
//! current plugin version as if they had just arrived.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::Config;
use crate::ingest::{
    SourceDefaults, SourceRuntime, build_source, destination_routes, route_events,
};
use crate::plugins::{PluginOutcome, PluginRequest, PluginRuntime, RuntimeSettings};
use crate::queue::{self, ReplayFilter};
use crate::store::{self, IngestOutcome, IngestWrite};

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

/// Runs quarantined requests (one, or all) through the current plugins of their sources.
pub async fn replay_quarantined(
    config: &Config,
    pool: &PgPool,
    request_id: Option<Uuid>,
) -> anyhow::Result<Vec<(Uuid, QuarantineReplay)>> {
    let requests = store::quarantined_requests(pool, request_id, 10_000).await?;
    if request_id.is_some() && requests.is_empty() {
        anyhow::bail!("no quarantined request has that id");
    }
    let runtime = PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: config.plugins.max_concurrent_instances,
        pool_memory_bytes: config.plugins.pool_memory_bytes,
        compiled_cache_dir: Some(config.compiled_cache_dir()),
    })?;
    let defaults = SourceDefaults::from_config(config);
    let stored_sources = store::load_sources(pool).await?;
    let destinations = destination_routes(queue::load_destinations(pool, false).await?);
    // Each source is built once, when its first request comes up.
    let mut sources: HashMap<String, Result<SourceRuntime, String>> = HashMap::new();
    let mut results = Vec::with_capacity(requests.len());
    for raw in requests {
        if !sources.contains_key(&raw.source_name) {
            let built = match stored_sources
                .iter()
                .find(|source| source.record.name == raw.source_name)
            {
                Some(stored) => build_source(&runtime, pool, stored, &defaults)
                    .await
                    .map_err(|error| format!("the source cannot be served: {error:#}")),
                None => Err(format!("the source {:?} no longer exists", raw.source_name)),
            };
            sources.insert(raw.source_name.clone(), built);
        }
        let source = match &sources[&raw.source_name] {
            Ok(source) => source,
            Err(reason) => {
                results.push((raw.id, QuarantineReplay::NotStored(reason.clone())));
                continue;
            }
        };
        let plugin_request = PluginRequest {
            request_id: raw.id.to_string(),
            method: raw.method.clone(),
            path: raw.path.clone(),
            query: raw.query.clone(),
            headers: raw.headers.clone(),
            body: raw.body.clone(),
            received_at: raw.received_at,
            source_name: raw.source_name.clone(),
            config: source.config.clone(),
        };
        let active = source.active.load_full();
        let outcome = match active
            .plugin
            .handle(plugin_request, source.secrets.clone())
            .await
        {
            Err(error) => QuarantineReplay::StillFailing(error.to_string()),
            Ok(report) => match report.outcome {
                PluginOutcome::Events(events) if !events.is_empty() => {
                    let request_id = raw.id;
                    let mut raw = raw.clone();
                    raw.plugin = active.plugin.label().to_owned();
                    // No body key: a replayed request was authenticated and stored when it
                    // arrived, so it is no resend; its event ids still dedupe.
                    let write = IngestWrite::Events {
                        raw,
                        events: route_events(&destinations, events),
                        body_sha256: None,
                    };
                    let stored = store::write_batch(
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
                        store::mark_request_accepted(pool, request_id).await?;
                    }
                    QuarantineReplay::Stored(outcome)
                }
                PluginOutcome::Events(_) => {
                    QuarantineReplay::NotStored("the plugin produced no events".to_owned())
                }
                PluginOutcome::Rejected { kind, reason } => QuarantineReplay::NotStored(format!(
                    "the plugin refused it ({kind:?}): {reason}"
                )),
                PluginOutcome::Reply(reply) => QuarantineReplay::NotStored(format!(
                    "the plugin answered a handshake ({})",
                    reply.status
                )),
            },
        };
        results.push((raw.id, outcome));
    }
    Ok(results)
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
            let count = store::quarantined_requests(pool, request_id, 10_000)
                .await?
                .len();
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
        let count = queue::count_replay(pool, &filter).await?;
        println!("{count} deliveries would be replayed");
    } else {
        let count = queue::replay(pool, &filter).await?;
        println!("{count} deliveries replayed");
    }
    Ok(())
}
