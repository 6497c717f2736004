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

/// Starts `wasmhook serve`; deliveries go to `receiver` when given, else the host runs without
/// its worker so that ingest is measured alone.
fn start_host(
    options: &IngestBenchOptions,
    receiver: Option<SocketAddr>,
) -> anyhow::Result<ChildServer> {
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
{destination}
"#,
        destination = match receiver {
            Some(receiver) => format!(
                "[[destinations]]\nname = \"receiver\"\nurl = \"http://{receiver}/hook\"\nroutes = [\"github.push\"]\nallow_private_networks = true\nmax_concurrency = 64\n[delivery]\npoll_interval_ms = 200\nclaim_batch = 64"
            ),
            None => "[[destinations]]\nname = \"sink\"\nurl = \"http://127.0.0.1:9/unused\"\nroutes = [\"github.push\"]".to_owned(),
        }
    );
    let config_path = workspace.path().join("wasmhook.toml");
    std::fs::write(&config_path, config).context("writing the bench configuration")?;
    let mut command = Command::new(std::env::current_exe().context("finding this executable")?);
    command.args(["serve", "--config"]).arg(&config_path);
    if receiver.is_none() {
        // Ingest is measured alone: the jobs are still written, but nobody delivers them.
        command.arg("--no-worker");
    }
    let child = command
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
    send_times: Option<Arc<std::sync::Mutex<Vec<Option<Instant>>>>>,
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
        let send_times = send_times.clone();
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
                if let Some(send_times) = &send_times {
                    send_times.lock().expect("send times lock poisoned")[number] = Some(sent);
                }
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

/// The push payload and its GitHub signature under the bench secret (the same for every
/// request: GitHub signs the body only).
fn signed_push(options: &IngestBenchOptions) -> anyhow::Result<(Arc<Vec<u8>>, Arc<String>)> {
    let body = std::fs::read(&options.body_path)
        .with_context(|| format!("reading {}", options.body_path.display()))?;
    let scheme = SignatureScheme::BodyHmac {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    };
    let signed = signature::sign(&scheme, &Secret::new(BENCH_SECRET), &body, "", 0)?;
    Ok((Arc::new(body), Arc::new(signed[0].1.clone())))
}

/// `wasmhook bench ingest`: the host and the bare ceiling under the same load, printed as a
/// Markdown table.
pub async fn bench_ingest(
    options: IngestBenchOptions,
) -> anyhow::Result<Vec<(LoadReport, LoadReport)>> {
    let (body, signature_value) = signed_push(&options)?;

    let probe = reqwest::Client::new();
    let host = start_host(&options, None)?;
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
                None,
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
            None,
        )
        .await?;
        let bare_report = run_load(
            &bare,
            body.clone(),
            signature_value.clone(),
            connections,
            options.requests,
            &format!("{run_id}-bare-{index}"),
            None,
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

/// Arrival times at the end-to-end receiver, by request number.
struct Arrivals {
    prefix: String,
    times: Vec<Option<Instant>>,
    total: usize,
}

/// `wasmhook bench e2e`: webhook in to receiver hit. A receiver on 127.0.0.1 answers 204 and
/// timestamps each event's arrival; latency is from sending the webhook to its arrival.
pub async fn bench_e2e(options: IngestBenchOptions) -> anyhow::Result<()> {
    let (body, signature_value) = signed_push(&options)?;

    let arrivals = Arc::new(std::sync::Mutex::new(Arrivals {
        prefix: String::new(),
        times: Vec::new(),
        total: 0,
    }));
    let receiver_state = arrivals.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let arrivals = receiver_state.clone();
            async move {
                let arrived = Instant::now();
                #[derive(serde::Deserialize)]
                struct CloudEventId<'a> {
                    #[serde(borrow)]
                    id: std::borrow::Cow<'a, str>,
                }
                if let Ok(event) = serde_json::from_slice::<CloudEventId>(&body) {
                    let mut arrivals = arrivals.lock().expect("arrivals lock poisoned");
                    arrivals.total += 1;
                    let number = event
                        .id
                        .strip_prefix(arrivals.prefix.as_str())
                        .and_then(|rest| rest.parse::<usize>().ok());
                    if let Some(number) = number
                        && let Some(slot) = arrivals.times.get_mut(number)
                        && slot.is_none()
                    {
                        *slot = Some(arrived);
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let receiver_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the receiver")?;
    let receiver_address = receiver_listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(receiver_listener, receiver).await;
    });

    let host = start_host(&options, Some(receiver_address))?;
    wait_until_serving(&reqwest::Client::new(), host.address).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    println!(
        "end to end: signed GitHub pushes of {} bytes in, CloudEvents out to a receiver answering 204, 127.0.0.1",
        body.len()
    );
    println!(
        "| connections | webhooks | deliveries/s | latency p50 ms | latency p99 ms | receiver hits (duplicates) |"
    );
    println!("|---|---|---|---|---|---|");
    for (index, &connections) in options.connections.iter().enumerate() {
        // Warm up connections, the plugin pool and the database first.
        run_load(
            &host,
            body.clone(),
            signature_value.clone(),
            connections,
            options.warmup_requests,
            &format!("{run_id}-warmup-{index}"),
            None,
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let run_label = format!("{run_id}-{index}");
        // Delivery ids are `{run_label}-{number}`.
        let prefix = format!("{run_label}-");
        {
            let mut arrivals = arrivals.lock().expect("arrivals lock poisoned");
            arrivals.prefix = prefix.clone();
            arrivals.times = vec![None; options.requests];
            arrivals.total = 0;
        }
        let send_times = Arc::new(std::sync::Mutex::new(vec![None; options.requests]));
        let started = Instant::now();
        let report = run_load(
            &host,
            body.clone(),
            signature_value.clone(),
            connections,
            options.requests,
            &run_label,
            Some(send_times.clone()),
        )
        .await?;
        // Bounded wait for the deliveries to arrive.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (arrived, total) = {
                let arrivals = arrivals.lock().expect("arrivals lock poisoned");
                let arrived = arrivals.times.iter().filter(|time| time.is_some()).count();
                (arrived, arrivals.total)
            };
            if arrived >= report.accepted
                || total >= 2 * report.accepted
                || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let arrivals = arrivals.lock().expect("arrivals lock poisoned");
        let send_times = send_times.lock().expect("send times lock poisoned");
        let mut latencies: Vec<Duration> = arrivals
            .times
            .iter()
            .zip(send_times.iter())
            .filter_map(|(arrived, sent)| Some(arrived.as_ref()?.duration_since(*sent.as_ref()?)))
            .collect();
        let last_arrival = arrivals.times.iter().flatten().max().copied();
        latencies.sort_unstable();
        let at = |fraction: f64| {
            latencies
                .get(((latencies.len().saturating_sub(1)) as f64 * fraction).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        let span = last_arrival.map_or(Duration::ZERO, |last| last.duration_since(started));
        println!(
            "| {connections} | {} | {:.0} | {:.2} | {:.2} | {} ({}) |",
            options.requests,
            latencies.len() as f64 / span.as_secs_f64().max(f64::EPSILON),
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            latencies.len(),
            arrivals.total.saturating_sub(latencies.len()),
        );
    }
    Ok(())
}
