//! `wasmhook-bench`: the load generators of `make bench` (see BENCHMARKS.md), out of the
//! product binary.
//!
//! Both start a throwaway PostgreSQL cluster (the same server settings as the host's embedded
//! one: `synchronous_commit` and `fsync` on, so every 202 is durable) and real `wasmhook serve`
//! child processes on it, and send them a fixed number of signed GitHub push webhooks with
//! unique delivery ids from C concurrent connections. Every request goes to 127.0.0.1.
//!
//! `ingest` runs the host without its worker beside a bare axum server that answers 202
//! without doing anything (the HTTP ceiling on this machine) and reports, per connection count,
//! accepted/s, per-request p50 and p99, the host's CPU time per request, its peak RSS and the
//! ratio to the ceiling; the host's RSS at rest; and, with `--prefill-events N`, the same runs
//! again once the events table holds N more rows. `e2e` runs 1..N hosts with their workers on
//! one database, delivering to a receiver inside the load generator, and reports deliveries/s
//! and webhook-to-delivery latency.

mod cost;
mod database;
mod e2e;
mod hosts;
mod ingest;
mod load;
mod options;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::options::IngestBenchOptions;

#[derive(Parser)]
#[command(
    name = "wasmhook-bench",
    version,
    about = "Load generators for wasmhook (see BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

/// Options shared by the load generators.
#[derive(clap::Args)]
struct LoadOptions {
    /// Concurrent connections; repeat for several runs.
    #[arg(long = "connections", short = 'c', default_values_t = [64])]
    connections: Vec<usize>,
    /// Requests per run; give it once for every run, or once per --connections (in order).
    #[arg(long = "requests", default_values_t = [20_000])]
    requests: Vec<usize>,
    /// Unmeasured requests before each run.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    #[arg(long, default_value = "target/plugins")]
    plugins_dir: PathBuf,
    /// The push payload to send.
    #[arg(long, default_value = "tests/fixtures/github/push.json")]
    body: PathBuf,
    /// Use this database instead of a throwaway PostgreSQL cluster.
    #[arg(long)]
    database_url: Option<String>,
    /// The `wasmhook` binary to measure; by default the one beside this executable.
    #[arg(long, env = "WASMHOOK")]
    wasmhook: Option<PathBuf>,
}

impl LoadOptions {
    fn into_options(self) -> anyhow::Result<IngestBenchOptions> {
        let wasmhook = match self.wasmhook {
            Some(path) => path,
            None => options::wasmhook_beside_this_executable()?,
        };
        Ok(IngestBenchOptions {
            connections: self.connections,
            requests: self.requests,
            warmup_requests: self.warmup,
            database_url: self.database_url,
            ..IngestBenchOptions::new(wasmhook, self.plugins_dir, self.body)
        })
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Ingest throughput and latency: wasmhook against a bare axum ceiling, same load.
    Ingest {
        #[command(flatten)]
        load: LoadOptions,
        /// After the runs, add this many rows to the events table (with their raw requests,
        /// dedupe keys and delivered jobs) and repeat the runs.
        #[arg(long, default_value_t = 0)]
        prefill_events: u64,
    },
    /// End to end: webhooks in, deliveries out to a receiver on 127.0.0.1.
    E2e {
        #[command(flatten)]
        load: LoadOptions,
        /// Host processes sharing one database, the load spread over them; repeat for several
        /// sets of runs.
        #[arg(long = "hosts", default_values_t = [1])]
        hosts: Vec<usize>,
    },
    /// The bare axum ceiling server used by `ingest`.
    #[command(hide = true)]
    BareServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMHOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            BenchCommand::Ingest {
                load,
                prefill_events,
            } => {
                ingest::bench_ingest(IngestBenchOptions {
                    prefill_events,
                    ..load.into_options()?
                })
                .await
            }
            BenchCommand::E2e { load, hosts } => {
                e2e::bench_e2e(IngestBenchOptions {
                    hosts,
                    ..load.into_options()?
                })
                .await
            }
            BenchCommand::BareServer { listen } => ingest::serve_bare(listen).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
