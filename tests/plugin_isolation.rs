//! Hostile plugins against the real runtime. In a test binary of its own, so that the timing
//! promise (each failure within twice the deadline) is checked without the other plugin tests
//! competing for the machine's two cores at the same moment.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use wasmhook::plugins::{PluginCallError, PluginLimits};

use support::{events, load_plugin, no_secrets, request, runtime, test_plugin_file};

/// Each hostile behaviour fails alone with its own typed error, within twice the deadline,
/// while a well-behaved plugin on the same runtime keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_alone_while_others_keep_answering() {
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
    let deadline = Duration::from_millis(PluginLimits::default().deadline_ms);

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
        let started = Instant::now();
        let error = hostile
            .handle(
                request("hostile", &[], b"{}", behaviour, Utc::now()),
                no_secrets(),
            )
            .await
            .expect_err(behaviour);
        let elapsed = started.elapsed();
        assert!(is_expected(&error), "{behaviour}: unexpected error {error}");
        let message = error.to_string();
        assert!(
            message.contains("hostile@0.0.1") && message.contains("test-hostile"),
            "{behaviour}: the error names plugin, version and request: {message}"
        );
        assert!(
            elapsed < deadline * 2,
            "{behaviour} took {elapsed:?}, over twice the deadline"
        );
    }
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
