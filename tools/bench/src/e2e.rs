//! `wasmhook-bench e2e`: webhooks in, CloudEvents out to a receiver in this process, with the
//! latency from sending each webhook to its delivery's arrival.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmhook_testkit::receiver::{Receiver, Reply};

use crate::cost::{CostSplit, print_cost_table, read_counters};
use crate::database::open_bench_database;
use crate::hosts::{start_host, warm_compile_cache};
use crate::load::{
    Server, clients, mebibytes, millis, percentile, process_memory_bytes, push_template,
    resting_rss, run_load,
};
use crate::options::IngestBenchOptions;

/// Upper bound for the deliveries of one end-to-end run to arrive after the last webhook.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Arrival times at the end-to-end receiver, by request number.
struct Arrivals {
    prefix: String,
    times: Vec<Option<Instant>>,
    total: usize,
}

/// `wasmhook-bench e2e`: webhook in to receiver hit. A receiver on 127.0.0.1 answers 204 and
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
    let receiver = Receiver::start_observed(
        Reply::Status(204),
        Box::new(move |body, arrived| record_arrival(&receiver_state, body, arrived)),
    )
    .await;
    let receiver_address = receiver.address;

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
    let mut costs = Vec::new();
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
        let mut hosts = Vec::with_capacity(host_count);
        for _ in 0..host_count {
            // One after the other: each applies the configuration to the shared database.
            hosts.push(
                start_host(
                    &options,
                    &database.url,
                    compile_cache,
                    Some(receiver_address),
                )
                .await?,
            );
        }
        let servers: Vec<Server> = hosts.iter().map(Server::of).collect();
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
            let counters_before = read_counters(&database, &servers).await?;
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
            wait_for_arrivals(&arrivals, report.accepted).await;
            let counters_after = read_counters(&database, &servers).await?;
            costs.push((
                format!("end to end, {host_count} host(s), {connections} connections"),
                CostSplit::between(&counters_before, &counters_after, report.accepted),
            ));
            // The peak over the run and its deliveries.
            let peak_rss = servers
                .iter()
                .map(|server| process_memory_bytes(server.pid, "VmHWM"))
                .max()
                .unwrap_or(report.server_peak_rss_bytes);
            let arrivals = arrivals.lock().expect("arrivals lock poisoned");
            let send_times = send_times.lock().expect("send times lock poisoned");
            let (latencies, span) = run_latencies(&arrivals, &send_times, started);
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
    println!();
    println!(
        "cost per delivered webhook in the runs above (ingest and delivery); the load generator's CPU includes the receiver's, \
         which runs in its process; columns as in the ingest cost table."
    );
    print_cost_table(&costs);
    Ok(())
}

/// Notes the arrival of one delivery of the current run (its CloudEvent id is the run's prefix
/// and the request number); the first arrival of each counts.
fn record_arrival(arrivals: &std::sync::Mutex<Arrivals>, body: &[u8], arrived: Instant) {
    #[derive(serde::Deserialize)]
    struct CloudEventId<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let Ok(event) = serde_json::from_slice::<CloudEventId>(body) else {
        return;
    };
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

/// Waits until every accepted webhook of the run arrived, or twice as many deliveries as
/// accepted webhooks arrived in all, or `DELIVERY_TIMEOUT` passed: the wait is bounded.
async fn wait_for_arrivals(arrivals: &std::sync::Mutex<Arrivals>, accepted: usize) {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let (arrived, total) = {
            let arrivals = arrivals.lock().expect("arrivals lock poisoned");
            let arrived = arrivals.times.iter().filter(|time| time.is_some()).count();
            (arrived, arrivals.total)
        };
        if arrived >= accepted || total >= 2 * accepted || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sorted latencies of the run's delivered webhooks (send to first arrival) and the span
/// from the start of the run to the last arrival.
fn run_latencies(
    arrivals: &Arrivals,
    send_times: &[Option<Instant>],
    started: Instant,
) -> (Vec<Duration>, Duration) {
    let mut latencies: Vec<Duration> = arrivals
        .times
        .iter()
        .zip(send_times.iter())
        .filter_map(|(arrived, sent)| Some(arrived.as_ref()?.duration_since(*sent.as_ref()?)))
        .collect();
    latencies.sort_unstable();
    let last_arrival = arrivals.times.iter().flatten().max().copied();
    let span = last_arrival.map_or(Duration::ZERO, |last| last.duration_since(started));
    (latencies, span)
}
