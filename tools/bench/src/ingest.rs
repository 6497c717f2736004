//! `wasmhook-bench ingest`: the host without its worker and a bare axum ceiling under the same
//! load, printed as Markdown tables; with `--prefill-events`, the runs again over a full events
//! table.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cost::{CostSplit, print_cost_table, read_counters};
use crate::database::{count_events, open_bench_database, prefill_events};
use crate::hosts::{start_host, warm_compile_cache};
use crate::load::{
    LoadReport, REST, Server, clients, mebibytes, millis, push_template, resting_rss, run_load,
};
use crate::options::IngestBenchOptions;

/// The bare ceiling server as a child process (`wasmhook-bench bare-server`), stopped with
/// SIGTERM when dropped.
struct BareServer {
    child: Child,
    address: SocketAddr,
}

impl BareServer {
    fn server(&self) -> Server {
        Server {
            address: self.address,
            pid: self.child.id(),
        }
    }
}

impl Drop for BareServer {
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

fn start_bare_server() -> anyhow::Result<BareServer> {
    let address = SocketAddr::from(([127, 0, 0, 1], wasmhook_testkit::process::free_port()));
    let child = Command::new(std::env::current_exe().context("finding this executable")?)
        .args(["bare-server", "--listen", &address.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the bare axum server")?;
    Ok(BareServer { child, address })
}

/// `wasmhook-bench bare-server`: the ceiling, an axum handler that reads the body and answers
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

/// `wasmhook-bench ingest`: the host and the bare ceiling under the same load, printed as
/// Markdown tables.
pub async fn bench_ingest(options: IngestBenchOptions) -> anyhow::Result<()> {
    let runs = options.runs()?;
    let body = push_template(&options)?;

    let database = open_bench_database(&options).await?;
    let (compile_cache, cold_rest_rss) = warm_compile_cache(&options, &database.url, None).await?;
    let probe = reqwest::Client::new();
    let host_process = start_host(&options, &database.url, compile_cache.path(), None).await?;
    let host = Server::of(&host_process);
    let bare_process = start_bare_server()?;
    let bare = bare_process.server();
    wait_until_serving(&probe, bare.address).await?;
    let host_rest_rss = resting_rss(&[host]).await;
    let bare_rest_rss = resting_rss(&[bare]).await;

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let warmup = |server: &'static str, index: usize| format!("{run_id}-warmup-{server}-{index}");
    let mut results: Vec<(i64, LoadReport, LoadReport)> = Vec::new();
    let mut costs = Vec::new();
    for (index, &(connections, requests)) in runs.iter().enumerate() {
        let (host_clients, bare_clients) = (clients(connections)?, clients(connections)?);
        for (name, server, clients) in
            [("host", host, &host_clients), ("bare", bare, &bare_clients)]
        {
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
        let counters_before = read_counters(&database, &[host]).await?;
        let host_report = run_load(
            &[host],
            &host_clients,
            body.clone(),
            requests,
            &format!("{run_id}-{index}"),
            None,
        )
        .await?;
        let counters_after = read_counters(&database, &[host]).await?;
        costs.push((
            format!("ingest, {connections} connections"),
            CostSplit::between(&counters_before, &counters_after, host_report.accepted),
        ));
        let bare_report = run_load(
            &[bare],
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
    print_ingest_table(&results);
    println!();
    println!(
        "cost per accepted webhook in the runs above (host without its worker: the jobs are written, not delivered); \
         PostgreSQL CPU is the postmaster's and all its processes' from /proc; WAL from pg_current_wal_lsn(); \
         statements sent from pg_stat_statements (each one round trip: sqlx sends a prepared statement's bind and execute together), nested ones are those PostgreSQL ran inside them (foreign key checks); \
         transactions are the COMMITs sent."
    );
    print_cost_table(&costs);

    if options.prefill_events == 0 {
        return Ok(());
    }
    let (took, size) = prefill_events(&database.url, options.prefill_events, &body).await?;
    let mut prefilled = Vec::new();
    for (index, &(connections, requests)) in runs.iter().enumerate() {
        let host_clients = clients(connections)?;
        run_load(
            &[host],
            &host_clients,
            body.clone(),
            options.warmup_requests,
            &warmup("prefilled", index),
            None,
        )
        .await?;
        let events_before = count_events(&database.url).await?;
        let report = run_load(
            &[host],
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
    print_prefill_table(&results, &prefilled);
    drop(host_process);
    drop(bare_process);
    drop(compile_cache);
    drop(database);
    Ok(())
}

/// The first table: per connection count, the host against the bare ceiling.
fn print_ingest_table(results: &[(i64, LoadReport, LoadReport)]) {
    println!();
    println!(
        "| connections | requests | wasmhook accepted/s | p50 ms | p99 ms | CPU µs/request | peak RSS MiB | bare axum accepted/s | bare p99 ms | ratio wasmhook/bare | non-202 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (_, host_report, bare_report) in results {
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
}

/// The second table: each run before and after the prefill, with the ratio of the two.
fn print_prefill_table(results: &[(i64, LoadReport, LoadReport)], prefilled: &[(i64, LoadReport)]) {
    println!();
    println!(
        "| connections | events in the table | accepted/s | p50 ms | p99 ms | CPU µs/request | peak RSS MiB | ratio to the run before the prefill |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for ((empty_count, empty, _), (full_count, full)) in results.iter().zip(prefilled) {
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
}
