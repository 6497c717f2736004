//! The load generators: `wasmhook bench ingest` and `wasmhook bench e2e`.
//!
//! Both start a throwaway PostgreSQL cluster (the same server settings as the host's embedded
//! one: `synchronous_commit` and `fsync` on, so every 202 is durable) and real `wasmhook serve`
//! child processes on it, and send them a fixed number of signed GitHub push webhooks with
//! unique delivery ids from C concurrent connections. Every request goes to 127.0.0.1.
//!
//! `bench ingest` runs the host without its worker beside a bare axum server that answers 202
//! without doing anything (the HTTP ceiling on this machine) and reports, per connection count,
//! accepted/s, per-request p50 and p99, the host's CPU time per request, its peak RSS and the
//! ratio to the ceiling; the host's RSS at rest; and, with `--prefill-events N`, the same runs
//! again once the events table holds N more rows. `bench e2e` runs 1..N hosts with their
//! workers on one database, delivering to a receiver inside the load generator, and reports
//! deliveries/s and webhook-to-delivery latency.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::signature::{self, MacEncoding, Secret, SignatureScheme};
use crate::store;
use crate::store::embedded_postgres::{ClusterOptions, EmbeddedPostgres};

const BENCH_SECRET: &str = "wasmhook-bench-secret";
const BENCH_DATABASE: &str = "wasmhook";
/// How long the servers idle after they first answer before their resting RSS is read.
const REST: Duration = Duration::from_secs(2);
/// A request that takes longer than this counts as failed, so that a stuck server cannot hang
/// the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for filling the events table (`--prefill-events`), vacuum and checkpoint
/// included.
const PREFILL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Upper bound for the deliveries of one end-to-end run to arrive after the last webhook.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// What `wasmhook bench ingest` or `wasmhook bench e2e` was asked to do.
#[derive(Debug, Clone)]
pub struct IngestBenchOptions {
    /// Concurrent connections, one run each.
    pub connections: Vec<usize>,
    /// Requests per run: one count for every run, or one per entry of `connections`.
    pub requests: Vec<usize>,
    pub warmup_requests: usize,
    pub plugins_dir: PathBuf,
    pub body_path: PathBuf,
    /// Use this database instead of a throwaway cluster.
    pub database_url: Option<String>,
    /// `bench e2e`: how many host processes share the database, one set of runs each.
    pub hosts: Vec<usize>,
    /// `bench ingest`: after the runs, add this many rows to the events table (with their raw
    /// requests, dedupe keys and delivered jobs) and repeat the runs.
    pub prefill_events: u64,
}

impl IngestBenchOptions {
    /// Options with one run of 20,000 requests at 64 connections.
    pub fn new(plugins_dir: PathBuf, body_path: PathBuf) -> IngestBenchOptions {
        IngestBenchOptions {
            connections: vec![64],
            requests: vec![20_000],
            warmup_requests: 2_000,
            plugins_dir,
            body_path,
            database_url: None,
            hosts: vec![1],
            prefill_events: 0,
        }
    }

    /// The runs: each connection count with its request count.
    fn runs(&self) -> anyhow::Result<Vec<(usize, usize)>> {
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

    fn cpu_micros_per_request(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.requests as f64
    }
}

/// A child server process, stopped with SIGTERM when dropped.
struct ChildServer {
    child: Child,
    address: SocketAddr,
    _workspace: tempfile::TempDir,
}

impl ChildServer {
    fn pid(&self) -> u32 {
        self.child.id()
    }
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

/// The database the hosts of one run share: a throwaway cluster of the load generator's own
/// (stopped when dropped) or the `--database-url` one, migrated.
struct BenchDatabase {
    url: String,
    cluster: Option<EmbeddedPostgres>,
    _directory: Option<tempfile::TempDir>,
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster
            && let Err(error) = cluster.stop()
        {
            eprintln!("warning: stopping the bench PostgreSQL: {error:#}");
        }
    }
}

/// Starts a PostgreSQL cluster with the embedded database's settings (durable: fsync and
/// synchronous commit on), or takes `--database-url`, and runs the migrations.
async fn open_bench_database(options: &IngestBenchOptions) -> anyhow::Result<BenchDatabase> {
    let database = match &options.database_url {
        Some(url) => BenchDatabase {
            url: url.clone(),
            cluster: None,
            _directory: None,
        },
        None => {
            let directory = tempfile::Builder::new()
                .prefix("wasmhook-bench-pg")
                .tempdir()
                .context("creating the database directory")?;
            let path = directory.path().to_owned();
            let cluster = tokio::task::spawn_blocking(move || {
                EmbeddedPostgres::start(&path, ClusterOptions::default())
            })
            .await
            .context("starting PostgreSQL")??;
            let database = BenchDatabase {
                url: cluster.url(BENCH_DATABASE),
                cluster: Some(cluster),
                _directory: Some(directory),
            };
            if let Some(cluster) = &database.cluster {
                store::create_database_if_missing(&cluster.url("postgres"), BENCH_DATABASE).await?;
            }
            database
        }
    };
    let pool = store::connect(&database.url, 2, Duration::from_secs(60))?;
    store::migrate(&pool).await?;
    pool.close().await;
    Ok(database)
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

/// Starts `wasmhook serve` on `database_url`, caching its compiled plugins in `compile_cache`;
/// deliveries go to `receiver` when given, else the host runs without its worker so that ingest
/// is measured alone.
fn start_host(
    options: &IngestBenchOptions,
    database_url: &str,
    compile_cache: &std::path::Path,
    receiver: Option<SocketAddr>,
) -> anyhow::Result<ChildServer> {
    let workspace = tempfile::Builder::new()
        .prefix("wasmhook-bench")
        .tempdir()
        .context("creating the bench directory")?;
    let address = free_local_address()?;
    let plugins_dir = std::path::absolute(&options.plugins_dir).context("resolving plugins dir")?;
    let config = format!(
        r#"
[server]
listen = "{address}"
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

/// A compile cache for the hosts of one bench command, filled by a first host that compiles the
/// plugins and stops: the measured hosts then start as a restarted host does, loading the
/// compiled plugins. Returns the cache and the first host's RSS at rest (after compiling).
async fn warm_compile_cache(
    options: &IngestBenchOptions,
    database_url: &str,
    receiver: Option<SocketAddr>,
) -> anyhow::Result<(tempfile::TempDir, u64)> {
    let cache = tempfile::Builder::new()
        .prefix("wasmhook-bench-compiled")
        .tempdir()
        .context("creating the compile cache directory")?;
    let host = start_host(options, database_url, cache.path(), receiver)?;
    wait_until_serving(&reqwest::Client::new(), host.address).await?;
    let rest_rss = resting_rss(&[&host]).await;
    drop(host);
    Ok((cache, rest_rss))
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

/// A memory figure of a process from /proc/<pid>/status: `VmRSS` (now) or `VmHWM` (peak).
fn process_memory_bytes(pid: u32, field: &str) -> u64 {
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

fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The resting RSS of servers that just started: the largest VmRSS after `REST` of idling.
async fn resting_rss(servers: &[&ChildServer]) -> u64 {
    tokio::time::sleep(REST).await;
    servers
        .iter()
        .map(|server| process_memory_bytes(server.pid(), "VmRSS"))
        .max()
        .unwrap_or(0)
}

/// One HTTP client per connection, each keeping one connection alive. The same clients serve a
/// warm-up and the measured run after it, so that the measured run sends on open connections
/// (and pays neither the connection set-up nor the building of the clients).
fn clients(connections: usize) -> anyhow::Result<Vec<reqwest::Client>> {
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
async fn run_load(
    servers: &[&ChildServer],
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
        .map(|server| process_cpu_time(server.pid()))
        .collect();
    for server in servers {
        reset_peak_rss(server.pid());
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
        .map(|(server, before)| process_cpu_time(server.pid()).saturating_sub(before))
        .sum();
    let server_peak_rss_bytes = servers
        .iter()
        .map(|server| process_memory_bytes(server.pid(), "VmHWM"))
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
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * fraction).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// The push payload every request is made from; it must be one JSON object.
fn push_template(options: &IngestBenchOptions) -> anyhow::Result<Arc<Vec<u8>>> {
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
fn distinct_signed_push(template: &[u8], run_label: &str, number: usize) -> (Vec<u8>, String) {
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
    let scheme = SignatureScheme::BodyHmac {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    };
    let signed = signature::sign(&scheme, &Secret::new(BENCH_SECRET), &body, "", 0)
        .expect("a body HMAC signs any body");
    let signature_value = signed
        .into_iter()
        .next()
        .map(|(_, value)| value)
        .expect("a body HMAC is one header");
    (body, signature_value)
}

/// A SQL expression for a version-7-like UUID: the millisecond timestamp `millis_sql` in the
/// first 48 bits (so prefilled rows sort before the host's new `Uuid::now_v7` ids, as older
/// rows would), then bits hashed from `seed_sql`.
fn uuid_v7_sql(millis_sql: &str, seed_sql: &str) -> String {
    format!(
        "(lpad(to_hex({millis_sql}), 12, '0') || '7' || substr(md5({seed_sql}), 1, 3) || '8' || substr(md5({seed_sql}), 4, 15))::uuid"
    )
}

/// Adds `rows` accepted webhooks to the database as the ingest path would have stored them: a
/// raw request (this push body), an event (the github plugin's data for it), a dedupe key and
/// a delivered job per destination each, spread over the last six days (inside the dedupe
/// window and the retention period, so nothing expires during the run). One `INSERT … SELECT
/// generate_series` per table, then `VACUUM (ANALYZE)` and a checkpoint, so that the
/// measured run starts without a vacuum or checkpoint debt. Returns the time it took.
async fn prefill_events(
    database_url: &str,
    rows: u64,
    body: &[u8],
) -> anyhow::Result<(Duration, i64)> {
    let started = Instant::now();
    let pool = bench_pool(database_url)?;
    let rows = i64::try_from(rows).context("--prefill-events is too large")?;
    let span_ms: i64 = 6 * 24 * 3600 * 1000;
    let step_ms = (span_ms / rows).max(1);
    let first_ms = chrono::Utc::now().timestamp_millis() - span_ms - 60_000;
    let millis = "($2::bigint + n * $3::bigint)";
    let at = format!("to_timestamp({millis} / 1000.0)");
    let raw_id = uuid_v7_sql(millis, "'raw' || n");
    let event_id = uuid_v7_sql(millis, "'event' || n");
    let job_id = uuid_v7_sql(millis, "'job' || n || d.name");
    let body_text = std::str::from_utf8(body).context("the push body is not UTF-8")?;
    let data = format!(r#"{{"event":"push","summary":null,"payload":{body_text}}}"#);
    // Each statement binds the row count, first timestamp and step; the first two also one
    // value of their own as $4.
    let statements = [
        format!(
            "INSERT INTO raw_requests
                 (id, source_name, received_at, method, path, query, headers, body, status, plugin, error)
             SELECT {raw_id}, 'github', {at}, 'POST', '/webhooks/github', '',
                 jsonb_build_array(
                     jsonb_build_array('content-type', 'application/json'),
                     jsonb_build_array('x-github-event', 'push'),
                     jsonb_build_array('x-github-delivery', 'prefill-' || n)),
                 $4::bytea, 'accepted', 'github', NULL
             FROM generate_series(1::bigint, $1::bigint) AS n"
        ),
        format!(
            "INSERT INTO events
                 (id, raw_request_id, source_name, event_id, event_type, event_source, subject,
                  time, data, route_keys, created_at)
             SELECT {event_id}, {raw_id}, 'github', 'prefill-' || n, 'github.push',
                 'https://github.com/Codertocat/Hello-World', 'Codertocat/Hello-World',
                 to_char({at} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                 $4::text, '{{github.push}}', {at}
             FROM generate_series(1::bigint, $1::bigint) AS n"
        ),
        format!(
            "INSERT INTO dedupe_keys (source_name, event_id, event_row_id, created_at)
             SELECT 'github', 'prefill-' || n, {event_id}, {at}
             FROM generate_series(1::bigint, $1::bigint) AS n"
        ),
        format!(
            "INSERT INTO delivery_jobs
                 (id, event_row_id, destination_name, state, attempt, next_attempt_at, created_at,
                  last_status, finished_at)
             SELECT {job_id}, {event_id}, d.name, 'delivered', 1, {at}, {at}, 204,
                 {at} + interval '50 milliseconds'
             FROM generate_series(1::bigint, $1::bigint) AS n CROSS JOIN destinations d"
        ),
    ];
    let work = async {
        for (index, statement) in statements.iter().enumerate() {
            let query = sqlx::query(statement)
                .bind(rows)
                .bind(first_ms)
                .bind(step_ms);
            let query = match index {
                0 => query.bind(body),
                1 => query.bind(data.as_str()),
                _ => query,
            };
            query
                .execute(&pool)
                .await
                .context("prefilling the events table")?;
        }
        sqlx::query("VACUUM (ANALYZE) raw_requests, events, dedupe_keys, delivery_jobs")
            .execute(&pool)
            .await
            .context("vacuuming after the prefill")?;
        if let Err(error) = sqlx::query("CHECKPOINT").execute(&pool).await {
            eprintln!("warning: no checkpoint after the prefill: {error}");
        }
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&pool)
            .await
            .context("reading the database size")?;
        anyhow::Ok(size)
    };
    let size = tokio::time::timeout(PREFILL_TIMEOUT, work)
        .await
        .context("the prefill took longer than 30 minutes")??;
    pool.close().await;
    Ok((started.elapsed(), size))
}

/// A one-connection pool for the load generator's own statements, which are slow on purpose
/// (the prefill) and so are not logged as slow.
fn bench_pool(database_url: &str) -> anyhow::Result<sqlx::PgPool> {
    use sqlx::ConnectOptions;
    let options = sqlx::postgres::PgConnectOptions::from_str(database_url)
        .context("parsing the database URL")?
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(1));
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect_lazy_with(options))
}

async fn count_events(database_url: &str) -> anyhow::Result<i64> {
    let pool = bench_pool(database_url)?;
    let count = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .context("counting events")?;
    pool.close().await;
    Ok(count)
}

/// `wasmhook bench ingest`: the host and the bare ceiling under the same load, printed as
/// Markdown tables.
pub async fn bench_ingest(options: IngestBenchOptions) -> anyhow::Result<()> {
    let runs = options.runs()?;
    let body = push_template(&options)?;

    let database = open_bench_database(&options).await?;
    let (compile_cache, cold_rest_rss) = warm_compile_cache(&options, &database.url, None).await?;
    let probe = reqwest::Client::new();
    let host = start_host(&options, &database.url, compile_cache.path(), None)?;
    let bare = start_bare_server()?;
    wait_until_serving(&probe, host.address).await?;
    wait_until_serving(&probe, bare.address).await?;
    let host_rest_rss = resting_rss(&[&host]).await;
    let bare_rest_rss = resting_rss(&[&bare]).await;

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let warmup = |server: &'static str, index: usize| format!("{run_id}-warmup-{server}-{index}");
    let mut results: Vec<(i64, LoadReport, LoadReport)> = Vec::new();
    for (index, &(connections, requests)) in runs.iter().enumerate() {
        let (host_clients, bare_clients) = (clients(connections)?, clients(connections)?);
        for (name, server, clients) in [
            ("host", &host, &host_clients),
            ("bare", &bare, &bare_clients),
        ] {
            run_load(
                &[server],
                clients,
                body.clone(),
                options.warmup_requests,
                &warmup(name, index),
                None,
            )
            .await?;
        }
        let events_before = count_events(&database.url).await?;
        let host_report = run_load(
            &[&host],
            &host_clients,
            body.clone(),
            requests,
            &format!("{run_id}-{index}"),
            None,
        )
        .await?;
        let bare_report = run_load(
            &[&bare],
            &bare_clients,
            body.clone(),
            requests,
            &format!("{run_id}-bare-{index}"),
            None,
        )
        .await?;
        results.push((events_before, host_report, bare_report));
    }

    println!(
        "ingest: signed GitHub pushes of {} bytes, unique delivery ids, 127.0.0.1; {} warm-up requests per server before each run. \
         Host RSS at rest ({} s after it first answered): {:.1} MiB after a start that loaded its compiled plugins from the cache \
         (the host measured below), {:.1} MiB after a first start that compiled them; bare axum: {:.1} MiB.",
        body.len(),
        options.warmup_requests,
        REST.as_secs(),
        mebibytes(host_rest_rss),
        mebibytes(cold_rest_rss),
        mebibytes(bare_rest_rss),
    );
    println!();
    println!(
        "| connections | requests | wasmhook accepted/s | p50 ms | p99 ms | CPU µs/request | peak RSS MiB | bare axum accepted/s | bare p99 ms | ratio wasmhook/bare | non-202 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (_, host_report, bare_report) in &results {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {:.0} | {:.2} | {:.3} | {} |",
            host_report.connections,
            host_report.requests,
            host_report.accepted_per_second(),
            millis(host_report.p50),
            millis(host_report.p99),
            host_report.cpu_micros_per_request(),
            mebibytes(host_report.server_peak_rss_bytes),
            bare_report.accepted_per_second(),
            millis(bare_report.p99),
            host_report.accepted_per_second() / bare_report.accepted_per_second(),
            host_report.other_statuses,
        );
    }

    if options.prefill_events == 0 {
        return Ok(());
    }
    let (took, size) = prefill_events(&database.url, options.prefill_events, &body).await?;
    let mut prefilled = Vec::new();
    for (index, &(connections, requests)) in runs.iter().enumerate() {
        let host_clients = clients(connections)?;
        run_load(
            &[&host],
            &host_clients,
            body.clone(),
            options.warmup_requests,
            &warmup("prefilled", index),
            None,
        )
        .await?;
        let events_before = count_events(&database.url).await?;
        let report = run_load(
            &[&host],
            &host_clients,
            body.clone(),
            requests,
            &format!("{run_id}-prefilled-{index}"),
            None,
        )
        .await?;
        prefilled.push((events_before, report));
    }
    println!();
    println!(
        "ingest with a full events table: {} rows each added to raw_requests, events, dedupe_keys and delivery_jobs (delivered) \
         in {:.1} s (one INSERT … SELECT generate_series per table, then VACUUM ANALYZE and CHECKPOINT); database {:.2} GiB. \
         Same host process, same runs repeated.",
        options.prefill_events,
        took.as_secs_f64(),
        size as f64 / f64::from(1 << 30),
    );
    println!();
    println!(
        "| connections | events in the table | accepted/s | p50 ms | p99 ms | CPU µs/request | peak RSS MiB | ratio to the run before the prefill |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for ((empty_count, empty, _), (full_count, full)) in results.iter().zip(&prefilled) {
        for (count, report, ratio) in [
            (empty_count, empty, String::from("1")),
            (
                full_count,
                full,
                format!(
                    "{:.3}",
                    full.accepted_per_second() / empty.accepted_per_second()
                ),
            ),
        ] {
            println!(
                "| {} | {count} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {ratio} |",
                report.connections,
                report.accepted_per_second(),
                millis(report.p50),
                millis(report.p99),
                report.cpu_micros_per_request(),
                mebibytes(report.server_peak_rss_bytes),
            );
        }
    }
    drop(host);
    drop(compile_cache);
    drop(database);
    Ok(())
}

/// Arrival times at the end-to-end receiver, by request number.
struct Arrivals {
    prefix: String,
    times: Vec<Option<Instant>>,
    total: usize,
}

/// `wasmhook bench e2e`: webhook in to receiver hit. A receiver on 127.0.0.1 answers 204 and
/// timestamps each event's arrival; latency is from sending the webhook to its arrival. Each
/// `--hosts` count gets a fresh database with that many host processes on it, the load split
/// evenly over them.
pub async fn bench_e2e(options: IngestBenchOptions) -> anyhow::Result<()> {
    let runs = options.runs()?;
    if options.hosts.is_empty() || options.hosts.contains(&0) {
        bail!("--hosts must be at least 1");
    }
    let body = push_template(&options)?;

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

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    println!(
        "end to end: signed GitHub pushes of {} bytes in, CloudEvents out to one receiver answering 204, 127.0.0.1; \
         {} warm-up webhooks before each run; with several hosts, connections are spread evenly over them; \
         RSS is the largest host's, at rest after a start that loaded its compiled plugins from the cache.",
        body.len(),
        options.warmup_requests,
    );
    println!();
    println!(
        "| hosts | connections | webhooks | deliveries/s | latency p50 ms | latency p99 ms | receiver hits (duplicates) | host RSS at rest MiB | host peak RSS MiB | ratio to 1 host |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut one_host: HashMap<usize, f64> = HashMap::new();
    let mut compile_cache = None;
    for &host_count in &options.hosts {
        let database = open_bench_database(&options).await?;
        if compile_cache.is_none() {
            compile_cache = Some(
                warm_compile_cache(&options, &database.url, Some(receiver_address))
                    .await?
                    .0,
            );
        }
        let compile_cache = compile_cache.as_ref().context("the compile cache")?.path();
        let probe = reqwest::Client::new();
        let mut hosts = Vec::with_capacity(host_count);
        for _ in 0..host_count {
            // One after the other: each applies the configuration to the shared database.
            let host = start_host(
                &options,
                &database.url,
                compile_cache,
                Some(receiver_address),
            )?;
            wait_until_serving(&probe, host.address).await?;
            hosts.push(host);
        }
        let servers: Vec<&ChildServer> = hosts.iter().collect();
        let rest_rss = resting_rss(&servers).await;
        for (index, &(connections, requests)) in runs.iter().enumerate() {
            // Warm up connections, the plugin pool and the database first.
            let load_clients = clients(connections)?;
            run_load(
                &servers,
                &load_clients,
                body.clone(),
                options.warmup_requests,
                &format!("{run_id}-warmup-{host_count}-{index}"),
                None,
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let run_label = format!("{run_id}-{host_count}-{index}");
            // Delivery ids are `{run_label}-{number}`.
            {
                let mut arrivals = arrivals.lock().expect("arrivals lock poisoned");
                arrivals.prefix = format!("{run_label}-");
                arrivals.times = vec![None; requests];
                arrivals.total = 0;
            }
            let send_times = Arc::new(std::sync::Mutex::new(vec![None; requests]));
            let started = Instant::now();
            let report = run_load(
                &servers,
                &load_clients,
                body.clone(),
                requests,
                &run_label,
                Some(send_times.clone()),
            )
            .await?;
            // Bounded wait for the deliveries to arrive.
            let deadline = Instant::now() + DELIVERY_TIMEOUT;
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
            // The peak over the run and its deliveries.
            let peak_rss = servers
                .iter()
                .map(|server| process_memory_bytes(server.pid(), "VmHWM"))
                .max()
                .unwrap_or(report.server_peak_rss_bytes);
            let arrivals = arrivals.lock().expect("arrivals lock poisoned");
            let send_times = send_times.lock().expect("send times lock poisoned");
            let mut latencies: Vec<Duration> = arrivals
                .times
                .iter()
                .zip(send_times.iter())
                .filter_map(|(arrived, sent)| {
                    Some(arrived.as_ref()?.duration_since(*sent.as_ref()?))
                })
                .collect();
            let last_arrival = arrivals.times.iter().flatten().max().copied();
            latencies.sort_unstable();
            let span = last_arrival.map_or(Duration::ZERO, |last| last.duration_since(started));
            let deliveries_per_second =
                latencies.len() as f64 / span.as_secs_f64().max(f64::EPSILON);
            if host_count == 1 {
                one_host.insert(connections, deliveries_per_second);
            }
            let ratio = one_host.get(&connections).map_or(String::new(), |base| {
                format!("{:.2}", deliveries_per_second / base)
            });
            println!(
                "| {host_count} | {connections} | {requests} | {deliveries_per_second:.0} | {:.2} | {:.2} | {} ({}) | {:.1} | {:.1} | {ratio} |",
                millis(percentile(&latencies, 0.50)),
                millis(percentile(&latencies, 0.99)),
                latencies.len(),
                arrivals.total.saturating_sub(latencies.len()),
                mebibytes(rest_rss),
                mebibytes(peak_rss),
            );
        }
        drop(hosts);
        drop(database);
    }
    Ok(())
}
