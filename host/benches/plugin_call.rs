//! The github plugin's handle() on a real push payload: through the full host path (fresh
//! store, pooled instantiation, call, result checked) against the same plugin logic called
//! natively, in the same run. Every call is timed on its own so that p50 and p99 are per-call
//! figures, and the wasm time is broken down by the runtime's own per-call report.
//!
//! Run with `make bench` (or `cargo bench -p wasmhook --bench plugin_call` after `make
//! plugins`). Set `WASMHOOK_BENCH_CALLS` to change the number of timed calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmhook::plugins::engine::RuntimeSettings;
use wasmhook::plugins::{PluginLimits, PluginOutcome, PluginRequest, PluginRuntime};
use wasmhook::signature::Secret;
use wasmhook_plugin_github::GitHub;
use wasmhook_plugin_sdk::{Header, Outcome, Plugin};

struct Percentiles {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort_unstable();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() {
    let calls: usize = std::env::var("WASMHOOK_BENCH_CALLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let body = std::fs::read(root.join("tests/fixtures/github/push.json"))
        .expect("the push fixture is in the repository");
    let component = root.join("target/plugins/github.wasm");
    assert!(component.exists(), "run `make plugins` first");

    let headers = vec![
        ("x-github-event".to_owned(), "push".to_owned()),
        (
            "x-github-delivery".to_owned(),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let received_at = chrono::Utc::now();
    let host_request = PluginRequest {
        request_id: "bench".to_owned(),
        method: "POST".to_owned(),
        path: "/webhooks/github".to_owned(),
        query: String::new(),
        headers: headers.clone(),
        body: body.clone(),
        received_at,
        source_name: "github".to_owned(),
        config: String::new(),
    };
    // The same request without the event header: the plugin refuses it right after the
    // request is copied in, which isolates the copy-in cost from the guest's parsing.
    let mut early_refusal_request = host_request.clone();
    early_refusal_request
        .headers
        .retain(|(name, _)| name != "x-github-event");

    let native_request = wasmhook_plugin_sdk::Request {
        method: "POST".to_owned(),
        path: "/webhooks/github".to_owned(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(name, value)| Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        body,
        received_at_unix_ms: received_at.timestamp_millis(),
        received_at: received_at.to_rfc3339(),
        source_name: "github".to_owned(),
        config: String::new(),
    };

    // Native: the plugin's logic as plain Rust, including the request copy the host path pays.
    let mut native = Vec::with_capacity(calls);
    for round in 0..calls + calls / 10 {
        let started = Instant::now();
        let outcome = GitHub::handle(std::hint::black_box(native_request.clone()));
        let elapsed = started.elapsed();
        assert!(matches!(outcome, Outcome::Events(ref events) if events.len() == 1));
        if round >= calls / 10 {
            native.push(elapsed);
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (full, instantiate, call, early_refusal_call, peak_memory, output_bytes) = runtime
        .block_on(async {
            let plugin_runtime = PluginRuntime::new(RuntimeSettings {
                max_concurrent_instances: 4,
                compiled_cache_dir: Some(root.join("target/bench-compiled-cache")),
                ..RuntimeSettings::default()
            })
            .unwrap();
            let plugin = plugin_runtime
                .load_file(&component, PluginLimits::default())
                .await
                .unwrap();
            let secrets: Arc<[Secret]> = Arc::from(Vec::new());
            let mut full = Vec::with_capacity(calls);
            let mut instantiate = Vec::with_capacity(calls);
            let mut call = Vec::with_capacity(calls);
            let mut early_refusal_call = Vec::with_capacity(calls);
            let mut peak_memory = 0;
            let mut output_bytes = 0;
            for round in 0..calls + calls / 10 {
                let started = Instant::now();
                let report = plugin
                    .handle(host_request.clone(), secrets.clone())
                    .await
                    .unwrap();
                let elapsed = started.elapsed();
                assert!(
                    matches!(report.outcome, PluginOutcome::Events(ref events) if events.len() == 1)
                );
                let refusal = plugin
                    .handle(early_refusal_request.clone(), secrets.clone())
                    .await
                    .unwrap();
                assert!(matches!(refusal.outcome, PluginOutcome::Rejected { .. }));
                if round >= calls / 10 {
                    full.push(elapsed);
                    instantiate.push(report.instantiate);
                    call.push(report.call);
                    early_refusal_call.push(refusal.call);
                    peak_memory = report.peak_memory_bytes;
                    output_bytes = report.output_bytes;
                }
            }
            (
                full,
                instantiate,
                call,
                early_refusal_call,
                peak_memory,
                output_bytes,
            )
        });

    let native = percentiles(native);
    let full = percentiles(full);
    let instantiate = percentiles(instantiate);
    let call = percentiles(call);
    let early_refusal_call = percentiles(early_refusal_call);
    println!(
        "github handle() on a {} byte push payload, {calls} timed calls each",
        native_request.body.len()
    );
    println!("| path | p50 µs | p99 µs |");
    println!("|---|---|---|");
    println!(
        "| native (plain Rust, same logic) | {:.1} | {:.1} |",
        micros(native.p50),
        micros(native.p99)
    );
    println!(
        "| wasm, full host path (fresh store + instantiate + call + checks) | {:.1} | {:.1} |",
        micros(full.p50),
        micros(full.p99)
    );
    println!(
        "| - store + instantiate | {:.1} | {:.1} |",
        micros(instantiate.p50),
        micros(instantiate.p99)
    );
    println!(
        "| - call (copy in, guest work, copy out) | {:.1} | {:.1} |",
        micros(call.p50),
        micros(call.p99)
    );
    println!(
        "| - of which copy in + trivial guest (call refused before parsing) | {:.1} | {:.1} |",
        micros(early_refusal_call.p50),
        micros(early_refusal_call.p99)
    );
    println!(
        "| - of which guest work + copy out (call minus the line above) | {:.1} | |",
        micros(call.p50.saturating_sub(early_refusal_call.p50))
    );
    println!(
        "wasm/native ratio at p50: {:.2}; peak linear memory {} bytes; output {} bytes",
        full.p50.as_secs_f64() / native.p50.as_secs_f64(),
        peak_memory,
        output_bytes
    );
}
