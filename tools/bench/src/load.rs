//! One measured load run: signed pushes from C connections spread over the servers, and the
//! servers' CPU time and memory from /proc around it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmhook_testkit::process::HostProcess;

use crate::options::IngestBenchOptions;

/// The one secret of the measured hosts' `github` source.
pub const BENCH_SECRET: &str = "wasmhook-bench-secret";
/// How long the servers idle after they first answer before their resting RSS is read.
pub const REST: Duration = Duration::from_secs(2);
/// A request that takes longer than this counts as failed, so that a stuck server cannot hang
/// the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A server under load: where to send, and which process to read /proc of.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub address: SocketAddr,
    pub pid: u32,
}

impl Server {
    pub fn of(host: &HostProcess) -> Server {
        Server {
            address: host.address,
            pid: host.pid().expect("a measured host runs"),
        }
    }
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
    /// CPU time of the servers during the run, summed over them.
    pub server_cpu: Duration,
    /// The largest peak RSS of a server during the run (VmHWM, reset before the run).
    pub server_peak_rss_bytes: u64,
}

impl LoadReport {
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    pub fn cpu_micros_per_request(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.requests as f64
    }
}

/// CPU time (user + system) a process has used so far, from /proc.
pub fn process_cpu_time(pid: u32) -> Duration {
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat.
    stat_ticks(pid, 11..13)
}

/// The sum of some clock-tick fields of /proc/<pid>/stat, counted from the first field after
/// the parenthesized command name (field 3), as a duration; zero for a process that is gone.
pub fn stat_ticks(pid: u32, fields: std::ops::Range<usize>) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let values: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = values
        .get(fields)
        .map(|chosen| {
            chosen
                .iter()
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

/// A memory figure of a process from /proc/<pid>/status: `VmRSS` (now) or `VmHWM` (peak).
pub fn process_memory_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
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

/// Resets a process's peak RSS (VmHWM) to its current RSS (Linux 4.0+), so that the next
/// reading is the peak of what follows. Without it, the reading is the peak since start.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The resting RSS of servers that just started: the largest VmRSS after `REST` of idling.
pub async fn resting_rss(servers: &[Server]) -> u64 {
    tokio::time::sleep(REST).await;
    servers
        .iter()
        .map(|server| process_memory_bytes(server.pid, "VmRSS"))
        .max()
        .unwrap_or(0)
}

/// One HTTP client per connection, each keeping one connection alive. The same clients serve a
/// warm-up and the measured run after it, so that the measured run sends on open connections
/// (and pays neither the connection set-up nor the building of the clients).
pub fn clients(connections: usize) -> anyhow::Result<Vec<reqwest::Client>> {
    (0..connections)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .http1_only()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .context("building an HTTP client")
        })
        .collect()
}

/// Sends `requests` signed pushes, one connection per client, spread over `servers`
/// (connection i goes to server i mod n), and measures them.
pub async fn run_load(
    servers: &[Server],
    clients: &[reqwest::Client],
    body: Arc<Vec<u8>>,
    requests: usize,
    run_label: &str,
    send_times: Option<Arc<std::sync::Mutex<Vec<Option<Instant>>>>>,
) -> anyhow::Result<LoadReport> {
    let connections = clients.len();
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before: Vec<Duration> = servers
        .iter()
        .map(|server| process_cpu_time(server.pid))
        .collect();
    for server in servers {
        reset_peak_rss(server.pid);
    }
    let started = Instant::now();
    let mut workers = Vec::with_capacity(connections);
    for (connection, client) in clients.iter().enumerate() {
        let client = client.clone();
        let url = format!(
            "http://{}/webhooks/github",
            servers[connection % servers.len()].address
        );
        let (next, body) = (next.clone(), body.clone());
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
                let (request_body, signature_value) =
                    distinct_signed_push(&body, &run_label, number);
                let sent = Instant::now();
                if let Some(send_times) = &send_times {
                    send_times.lock().expect("send times lock poisoned")[number] = Some(sent);
                }
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("{run_label}-{number}"))
                    .header("x-hub-signature-256", signature_value)
                    .body(request_body)
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
    let server_cpu = servers
        .iter()
        .zip(cpu_before)
        .map(|(server, before)| process_cpu_time(server.pid).saturating_sub(before))
        .sum();
    let server_peak_rss_bytes = servers
        .iter()
        .map(|server| process_memory_bytes(server.pid, "VmHWM"))
        .max()
        .unwrap_or(0);
    latencies.sort_unstable();
    Ok(LoadReport {
        connections,
        requests,
        accepted,
        other_statuses,
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        server_cpu,
        server_peak_rss_bytes,
    })
}

/// The value at `fraction` of sorted samples (zero when there are none).
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * fraction).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// The push payload every request is made from; it must be one JSON object.
pub fn push_template(options: &IngestBenchOptions) -> anyhow::Result<Arc<Vec<u8>>> {
    let body = std::fs::read(&options.body_path)
        .with_context(|| format!("reading {}", options.body_path.display()))?;
    if !body.trim_ascii_start().starts_with(b"{") {
        bail!("{} is not a JSON object", options.body_path.display());
    }
    Ok(Arc::new(body))
}

/// Request `number` of a run: the push payload with a leading field naming the request, and its
/// GitHub signature under the bench secret. GitHub signs only the body, so the host answers an
/// identical body under a new delivery id as a replayed duplicate: every request needs its own.
pub fn distinct_signed_push(template: &[u8], run_label: &str, number: usize) -> (Vec<u8>, String) {
    let object_start = template
        .iter()
        .position(|byte| *byte == b'{')
        .expect("push_template admits only JSON objects");
    let mut body = Vec::with_capacity(template.len() + run_label.len() + 40);
    let rest = &template[object_start + 1..];
    let separator = if rest.trim_ascii_start().starts_with(b"}") {
        ""
    } else {
        ","
    };
    body.extend_from_slice(&template[..=object_start]);
    body.extend_from_slice(
        format!(r#""wasmhook_bench_request":"{run_label}-{number}"{separator}"#).as_bytes(),
    );
    body.extend_from_slice(rest);
    let signature_value = wasmhook_testkit::signed::github_signature(&body, BENCH_SECRET);
    (body, signature_value)
}
