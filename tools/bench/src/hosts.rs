//! The measured `wasmhook serve` processes: the test kit's child host, configured for the
//! bench (one `github` source under the bench secret), logging warnings to this console and
//! stopped with SIGTERM when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use wasmhook_testkit::process::{HostOptions, HostProcess, Log};

use crate::load::{BENCH_SECRET, Server, resting_rss};
use crate::options::IngestBenchOptions;

/// Starts `wasmhook serve` on `database_url`, caching its compiled plugins in `compile_cache`,
/// and waits (at most two minutes) until it is ready; deliveries go to `receiver` when given,
/// else the host runs without its worker so that ingest is measured alone.
pub async fn start_host(
    options: &IngestBenchOptions,
    database_url: &str,
    compile_cache: &std::path::Path,
    receiver: Option<SocketAddr>,
) -> anyhow::Result<HostProcess> {
    let plugins_dir = std::path::absolute(&options.plugins_dir).context("resolving plugins dir")?;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[database]
url = {database_url:?}
max_connections = 16
[plugins]
dir = {plugins_dir:?}
compiled_cache_dir = {compile_cache:?}
[[sources]]
name = "github"
plugin = "github"
secrets = ["{BENCH_SECRET}"]
{destination}
"#,
        destination = match receiver {
            Some(receiver) => format!(
                "[[destinations]]\nname = \"receiver\"\nurl = \"http://{receiver}/hook\"\nroutes = [\"github.push\"]\nallow_private_networks = true\nmax_concurrency = 64\n[delivery]\npoll_interval_ms = 200\nclaim_batch = 64"
            ),
            None => "[[destinations]]\nname = \"sink\"\nurl = \"http://127.0.0.1:9/unused\"\nroutes = [\"github.push\"]".to_owned(),
        }
    );
    // Ingest is measured alone: the jobs are still written, but nobody delivers them.
    let arguments: &[&str] = if receiver.is_none() {
        &["--no-worker"]
    } else {
        &[]
    };
    let host_options = HostOptions {
        log_level: "warn".to_owned(),
        log: Log::Inherit,
        ready_within: Duration::from_secs(120),
        terminate_on_drop: true,
        ..HostOptions::new(&options.wasmhook, arguments)
    };
    Ok(HostProcess::start(&config, host_options).await)
}

/// A compile cache for the hosts of one bench command, filled by a first host that compiles the
/// plugins and stops: the measured hosts then start as a restarted host does, loading the
/// compiled plugins. Returns the cache and the first host's RSS at rest (after compiling).
pub async fn warm_compile_cache(
    options: &IngestBenchOptions,
    database_url: &str,
    receiver: Option<SocketAddr>,
) -> anyhow::Result<(tempfile::TempDir, u64)> {
    let cache = tempfile::Builder::new()
        .prefix("wasmhook-bench-compiled")
        .tempdir()
        .context("creating the compile cache directory")?;
    let host = start_host(options, database_url, cache.path(), receiver).await?;
    let rest_rss = resting_rss(&[Server::of(&host)]).await;
    drop(host);
    Ok((cache, rest_rss))
}
