//! The load generator: `wasmhook bench ingest`. It starts a real `wasmhook serve` (with its
//! embedded PostgreSQL, synchronous commit on) and, in the same run, a bare axum server that
//! answers 202 without doing anything (the HTTP ceiling on this machine), and sends each the
//! same fixed number of signed GitHub push webhooks with unique delivery ids from C concurrent
//! connections. It reports accepted/s, per-request p50 and p99, the server's CPU time per
//! request and its peak RSS. Every request goes to 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::signature::{self, MacEncoding, Secret, SignatureScheme};

const BENCH_SECRET: &str = "wasmhook-bench-secret";

/// What `wasmhook bench ingest` was asked to do.
#[derive(Debug, Clone)]
pub struct IngestBenchOptions {
    pub connections: Vec<usize>,
    pub requests: usize,
    pub warmup_requests: usize,
    pub plugins_dir: PathBuf,
    pub body_path: PathBuf,
    /// Use this database instead of an embedded one.
    pub database_url: Option<String>,
}

/// One load run's figures.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub connections: usize,
    pub requests: usize,
    pub accepted: usize,
    pub other_statuses: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub server_cpu: Duration,
    pub server_peak_rss_bytes: u64,
}

impl LoadReport {
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }
}

/// A child server process, stopped with SIGTERM when dropped.
struct ChildServer {
    child: Child,
    address: SocketAddr,
    _workspace: tempfile::TempDir,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..300 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_local_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("reading the free port")
}

/// Waits (at most two minutes) until the server answers HTTP.
async fn wait_until_serving(client: &reqwest::Client, address: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..1200 {
        if client
            .post(format!("http://{address}/webhooks/readiness-probe"))
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server at {address} did not start within two minutes")
}

fn start_host(options: &IngestBenchOptions) -> anyhow::Result<ChildServer> {
    let workspace = tempfile::Builder::new()
        .prefix("wasmhook-bench")
        .tempdir()
        .context("creating the bench directory")?;
    let address = free_local_address()?;
    let database = match &options.database_url {
        Some(url) => format!("url = {url:?}"),
        None => format!("data_dir = {:?}", workspace.path().join("data")),
    };
    let plugins_dir = std::path::absolute(&options.plugins_dir).context("resolving plugins dir")?;
    let config = format!(
        r#"
[server]
listen = "{address}"
[database]
{database}
max_connections = 16
[plugins]
dir = {plugins_dir:?}
[[sources]]
name = "github"
plugin = "github"
secrets = ["{BENCH_SECRET}"]
[[destinations]]
name = "sink"
url = "http://127.0.0.1:9/unused"
routes = ["github.push"]
"#
    );
    let config_path = workspace.path().join("wasmhook.toml");
    std::fs::write(&config_path, config).context("writing the bench configuration")?;
    let child = Command::new(std::env::current_exe().context("finding this executable")?)
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("WASMHOOK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting wasmhook serve")?;
    Ok(ChildServer {
        child,
        address,
        _workspace: workspace,
    })
}

fn start_bare_server() -> anyhow::Result<ChildServer> {
    let workspace = tempfile::tempdir().context("creating a directory")?;
    let address = free_local_address()?;
    let child = Command::new(std::env::current_exe().context("finding this executable")?)
        .args(["bench", "bare-server", "--listen", &address.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the bare axum server")?;
    Ok(ChildServer {
        child,
        address,
        _workspace: workspace,
    })
}

/// `wasmhook bench bare-server`: the ceiling, an axum handler that reads the body and answers
/// 202 without doing anything else.
pub async fn serve_bare(listen: SocketAddr) -> anyhow::Result<()> {
    let router = axum::Router::new().route(
        "/webhooks/{source}",
        axum::routing::post(|_body: axum::body::Bytes| async {
            (
                axum::http::StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "accepted"})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    axum::serve(listener, router).await.context("serving")
}

/// CPU time (user + system) a process has used so far, from /proc.
fn process_cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|pair| {
            pair.iter()
                .filter_map(|field| field.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Duration::from_secs_f64(ticks as f64 / ticks_per_second)
}

fn process_peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kilobytes| kilobytes * 1024)
}

/// Sends `requests` signed pushes from `connections` connections and measures them.
async fn run_load(
    server: &ChildServer,
    body: Arc<Vec<u8>>,
    signature_value: Arc<String>,
    connections: usize,
    requests: usize,
    run_label: &str,
) -> anyhow::Result<LoadReport> {
    let next = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(format!("http://{}/webhooks/github", server.address));
    let cpu_before = process_cpu_time(server.child.id());
    let started = Instant::now();
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .http1_only()
            .build()
            .context("building an HTTP client")?;
        let (next, url, body, signature_value) = (
            next.clone(),
            url.clone(),
            body.clone(),
            signature_value.clone(),
        );
        let run_label = run_label.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0usize;
            let mut other = 0usize;
            // Bounded: each worker takes request numbers until all `requests` are taken.
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= requests {
                    break;
                }
                let sent = Instant::now();
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("{run_label}-{number}"))
                    .header("x-hub-signature-256", signature_value.as_str())
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                match response {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.bytes().await;
                        latencies.push(sent.elapsed());
                        if status == reqwest::StatusCode::ACCEPTED {
                            accepted += 1;
                        } else {
                            other += 1;
                        }
                    }
                    Err(_) => other += 1,
                }
            }
            (latencies, accepted, other)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut accepted = 0;
    let mut other_statuses = 0;
    for worker in workers {
        let (worker_latencies, worker_accepted, worker_other) =
            worker.await.context("a load worker failed")?;
        latencies.extend(worker_latencies);
        accepted += worker_accepted;
        other_statuses += worker_other;
    }
    let elapsed = started.elapsed();
    let server_cpu = process_cpu_time(server.child.id()).saturating_sub(cpu_before);
    latencies.sort_unstable();
    let at = |fraction: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * fraction).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok(LoadReport {
        connections,
        requests,
        accepted,
        other_statuses,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        server_cpu,
        server_peak_rss_bytes: process_peak_rss_bytes(server.child.id()),
    })
}

/// `wasmhook bench ingest`: the host and the bare ceiling under the same load, printed as a
/// Markdown table.
pub async fn bench_ingest(
    options: IngestBenchOptions,
) -> anyhow::Result<Vec<(LoadReport, LoadReport)>> {
    let body = Arc::new(
        std::fs::read(&options.body_path)
            .with_context(|| format!("reading {}", options.body_path.display()))?,
    );
    let scheme = SignatureScheme::BodyHmac {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    };
    let signed = signature::sign(&scheme, &Secret::new(BENCH_SECRET), &body, "", 0)?;
    let signature_value = Arc::new(signed[0].1.clone());

    let probe = reqwest::Client::new();
    let host = start_host(&options)?;
    let bare = start_bare_server()?;
    wait_until_serving(&probe, host.address).await?;
    wait_until_serving(&probe, bare.address).await?;

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut results = Vec::new();
    for (index, &connections) in options.connections.iter().enumerate() {
        for server in [&host, &bare] {
            run_load(
                server,
                body.clone(),
                signature_value.clone(),
                connections,
                options.warmup_requests,
                &format!("{run_id}-warmup-{index}"),
            )
            .await?;
        }
        let host_report = run_load(
            &host,
            body.clone(),
            signature_value.clone(),
            connections,
            options.requests,
            &format!("{run_id}-{index}"),
        )
        .await?;
        let bare_report = run_load(
            &bare,
            body.clone(),
            signature_value.clone(),
            connections,
            options.requests,
            &format!("{run_id}-bare-{index}"),
        )
        .await?;
        results.push((host_report, bare_report));
    }

    println!(
        "ingest: {} signed GitHub pushes of {} bytes per run, unique delivery ids, 127.0.0.1",
        options.requests,
        body.len()
    );
    println!(
        "| connections | server | accepted/s | p50 ms | p99 ms | server CPU µs/request | peak RSS MiB | non-202 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (host_report, bare_report) in &results {
        for (label, report) in [("wasmhook", host_report), ("bare axum", bare_report)] {
            println!(
                "| {} | {label} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {} |",
                report.connections,
                report.accepted_per_second(),
                report.p50.as_secs_f64() * 1e3,
                report.p99.as_secs_f64() * 1e3,
                report.server_cpu.as_secs_f64() * 1e6 / report.requests as f64,
                report.server_peak_rss_bytes as f64 / (1 << 20) as f64,
                report.other_statuses,
            );
        }
        println!(
            "| {} | ratio wasmhook/bare | {:.2} | | | | | |",
            host_report.connections,
            host_report.accepted_per_second() / bare_report.accepted_per_second()
        );
    }
    Ok(results)
}
