//! What a bench command was asked to do.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// What `wasmhook-bench ingest` or `wasmhook-bench e2e` was asked to do.
#[derive(Debug, Clone)]
pub struct IngestBenchOptions {
    /// Concurrent connections, one run each.
    pub connections: Vec<usize>,
    /// Requests per run: one count for every run, or one per entry of `connections`.
    pub requests: Vec<usize>,
    pub warmup_requests: usize,
    /// The `wasmhook` binary the measured hosts run.
    pub wasmhook: PathBuf,
    pub plugins_dir: PathBuf,
    pub body_path: PathBuf,
    /// Use this database instead of a throwaway cluster.
    pub database_url: Option<String>,
    /// `e2e`: how many host processes share the database, one set of runs each.
    pub hosts: Vec<usize>,
    /// `ingest`: after the runs, add this many rows to the events table (with their raw
    /// requests, dedupe keys and delivered jobs) and repeat the runs.
    pub prefill_events: u64,
}

impl IngestBenchOptions {
    /// Options with one run of 20,000 requests at 64 connections.
    pub fn new(wasmhook: PathBuf, plugins_dir: PathBuf, body_path: PathBuf) -> IngestBenchOptions {
        IngestBenchOptions {
            connections: vec![64],
            requests: vec![20_000],
            warmup_requests: 2_000,
            wasmhook,
            plugins_dir,
            body_path,
            database_url: None,
            hosts: vec![1],
            prefill_events: 0,
        }
    }

    /// The runs: each connection count with its request count.
    pub fn runs(&self) -> anyhow::Result<Vec<(usize, usize)>> {
        if self.connections.is_empty() || self.connections.contains(&0) {
            bail!("--connections must be at least 1");
        }
        let requests = match self.requests.len() {
            1 => vec![self.requests[0]; self.connections.len()],
            given if given == self.connections.len() => self.requests.clone(),
            given => bail!(
                "give --requests once, or once per --connections ({given} given for {} connection counts)",
                self.connections.len()
            ),
        };
        if requests.contains(&0) {
            bail!("--requests must be at least 1");
        }
        Ok(self.connections.iter().copied().zip(requests).collect())
    }
}

/// `wasmhook` in the directory of this executable: `cargo build --release` puts both there.
pub fn wasmhook_beside_this_executable() -> anyhow::Result<PathBuf> {
    let this = std::env::current_exe().context("finding this executable")?;
    let wasmhook = this.with_file_name("wasmhook");
    if !wasmhook.is_file() {
        bail!(
            "{} is missing: build it (cargo build --release -p wasmhook) or pass --wasmhook",
            wasmhook.display()
        );
    }
    Ok(wasmhook)
}
