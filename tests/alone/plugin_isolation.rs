//! Hostile plugins against the real runtime, alone (tests/alone) so that the other plugin
//! tests do not compete with the bystander for the machine's two cores.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use wasmhook::plugins::{PluginCallError, PluginLimits};

use support::{events, load_plugin, no_secrets, request, runtime, test_plugin_file};

/// Each hostile behaviour fails alone with its own typed error, an endless loop is stopped by
/// the guest's tick count rather than the wall-clock fallback, and a well-behaved plugin on the
/// same runtime keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_alone_while_others_keep_answering() {
    let _one_at_a_time = crate::ONE_AT_A_TIME.lock().await;
    let runtime = runtime();
    // 4 MiB is plenty for the well-behaved paths and keeps the memory grab (which fills every
    // page it gets) quick even on a loaded machine; the oversized output is 1.5 MiB.
    let limits = PluginLimits {
        max_memory_bytes: 4 << 20,
        max_output_bytes: 1 << 20,
        ..PluginLimits::default()
    };
    let hostile = Arc::new(
        runtime
            .load_file(&test_plugin_file("hostile"), limits)
            .await
            .unwrap(),
    );
    let github = Arc::new(load_plugin(&runtime, "github").await);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bystander = {
        let github = github.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let push = br#"{"ref":"r","before":"a","after":"b","pusher":{"name":"p"}}"#;
            let mut answered = 0u32;
            for round in 0..10_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let delivery = format!("bystander-{round}");
                let report = github
                    .handle(
                        request(
                            "github",
                            &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", &delivery)],
                            push,
                            "",
                            Utc::now(),
                        ),
                        no_secrets(),
                    )
                    .await
                    .expect("the well-behaved plugin keeps answering");
                assert_eq!(events(report.outcome).len(), 1);
                answered += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            answered
        })
    };

    type Check = fn(&PluginCallError) -> bool;
    let behaviours: [(&str, Check); 5] = [
        ("endless-loop", |error| {
            matches!(error, PluginCallError::DeadlineExceeded { .. })
        }),
        ("memory-grab", |error| {
            matches!(error, PluginCallError::MemoryExhausted { .. })
        }),
        (
            "trap",
            |error| matches!(error, PluginCallError::Trapped { cause, .. } if cause.contains("traps on purpose")),
        ),
        ("oversized-output", |error| {
            matches!(error, PluginCallError::OutputTooLarge { .. })
        }),
        (
            "invalid-output",
            |error| matches!(error, PluginCallError::InvalidOutput { reason, .. } if reason.contains("JSON")),
        ),
    ];
    for (behaviour, is_expected) in behaviours {
        let error = hostile
            .handle(
                request("hostile", &[], b"{}", behaviour, Utc::now()),
                no_secrets(),
            )
            .await
            .expect_err(behaviour);
        assert!(is_expected(&error), "{behaviour}: unexpected error {error}");
        let message = error.to_string();
        assert!(
            message.contains("hostile@0.0.1") && message.contains("test-hostile"),
            "{behaviour}: the error names plugin, version and request: {message}"
        );
    }
    assert_stopped_by_ticks(&runtime).await;
    // The trap's cause carries the wasm backtrace.
    let trap = hostile
        .handle(
            request("hostile", &[], b"{}", "trap", Utc::now()),
            no_secrets(),
        )
        .await
        .unwrap_err();
    assert!(trap.to_string().contains("wasm backtrace"), "{trap}");

    // Floods of logs or stdout are capped, not fatal.
    for behaviour in ["log-flood", "stdout-flood"] {
        let report = hostile
            .handle(
                request("hostile", &[], b"{}", behaviour, Utc::now()),
                no_secrets(),
            )
            .await
            .unwrap_or_else(|error| panic!("{behaviour}: {error}"));
        assert!(
            report.log_bytes <= 2 * PluginLimits::default().max_log_bytes,
            "{behaviour}: logged {} bytes",
            report.log_bytes
        );
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = bystander.await.unwrap();
    assert!(
        answered > 0,
        "the bystander answered while hostile calls ran"
    );

    // The hostile plugin itself is still usable after all of that.
    let report = hostile
        .handle(
            request("hostile", &[], b"{}", "well-behaved", Utc::now()),
            no_secrets(),
        )
        .await
        .unwrap();
    assert_eq!(events(report.outcome).len(), 1);
}

/// The deadline counts the epoch ticks the guest ran in; a wall-clock timeout of ten times the
/// deadline (at least a second) backs it up for what ticks cannot see. Both end in
/// `DeadlineExceeded`, so what tells them apart is which limit was reached: with a 20 ms deadline
/// the ticks stop an endless loop after four ticks of running, while the fallback waits a whole
/// second, fifty times as long. The bound below is the fallback's own, not a guess at speed: only a
/// loop the ticks did not stop (or a guest given under 2% of a second) reaches it.
async fn assert_stopped_by_ticks(runtime: &Arc<wasmhook::plugins::PluginRuntime>) {
    let limits = PluginLimits {
        deadline_ms: 20,
        ..PluginLimits::default()
    };
    let wall_clock_fallback = Duration::from_secs(1);
    let short_deadline = runtime
        .load_file(&test_plugin_file("hostile"), limits)
        .await
        .unwrap();
    let started = Instant::now();
    let error = short_deadline
        .handle(
            request("hostile", &[], b"{}", "endless-loop", Utc::now()),
            no_secrets(),
        )
        .await
        .expect_err("an endless loop");
    let elapsed = started.elapsed();
    assert!(
        matches!(
            error,
            PluginCallError::DeadlineExceeded {
                deadline_ms: 20,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        elapsed < wall_clock_fallback,
        "the loop ran {elapsed:?}: the wall-clock fallback, not the tick count, stopped it"
    );
}
