//! The plugin runtime against real built components: the three plugins on real payloads and the
//! official signature vectors, hostile plugins failing alone, clear load errors, the compiled
//! cache and bursts beyond the pool.

use crate::support;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use wasmhook::plugins::engine::RuntimeSettings;
use wasmhook::plugins::{
    PluginLimits, PluginLoadError, PluginOutcome, PluginRuntime, RejectionKind,
};
use wasmhook::signature::{self, Secret, SignatureScheme, SignedRequest};

use support::{events, load_plugin, no_secrets, plugin_file, request, runtime};

#[tokio::test]
async fn github_normalizes_every_octokit_example() {
    let index_path = support::repository_root()
        .join("target/fixtures/octokit-webhooks-examples-7.6.1/api.github.com/index.json");
    let index_text = std::fs::read_to_string(&index_path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run `make fixtures` first",
            index_path.display()
        )
    });
    let index: Vec<serde_json::Value> = serde_json::from_str(&index_text).unwrap();
    let runtime = runtime();
    let github = load_plugin(&runtime, "github").await;

    let mut event_names = 0;
    let mut payloads = 0;
    for group in &index {
        let event_name = group["name"].as_str().unwrap();
        event_names += 1;
        for (position, example) in group["examples"].as_array().unwrap().iter().enumerate() {
            payloads += 1;
            let body = serde_json::to_vec(example).unwrap();
            let delivery_id = format!("{event_name}-{position}");
            let report = github
                .handle(
                    request(
                        "github",
                        &[
                            ("X-GitHub-Event", event_name),
                            ("X-GitHub-Delivery", &delivery_id),
                        ],
                        &body,
                        "",
                        Utc::now(),
                    ),
                    no_secrets(),
                )
                .await
                .unwrap_or_else(|error| panic!("{event_name} example {position}: {error}"));
            if event_name == "ping" {
                assert!(
                    matches!(&report.outcome, PluginOutcome::Reply(reply) if reply.status == 200),
                    "ping is answered, not routed: {:?}",
                    report.outcome
                );
                continue;
            }
            let events = match report.outcome {
                PluginOutcome::Events(events) => events,
                other => panic!("{event_name} example {position} was not normalized: {other:?}"),
            };
            assert_eq!(events.len(), 1);
            let event = &events[0];
            let expected_type = match example.get("action").and_then(|a| a.as_str()) {
                Some(action) => format!("github.{event_name}.{action}"),
                None => format!("github.{event_name}"),
            };
            assert_eq!(event.event_type, expected_type);
            assert_eq!(event.id, delivery_id);
            assert_eq!(event.route_keys, vec![expected_type.clone()]);
            if let Some(full_name) = example["repository"]["full_name"].as_str() {
                assert_eq!(event.subject.as_deref(), Some(full_name));
            }
            let data: serde_json::Value = serde_json::from_str(&event.data_json).unwrap();
            assert_eq!(&data["payload"], example, "the payload is kept whole");
            assert_eq!(data["event"], event_name);
            let cloud_event: serde_json::Value =
                serde_json::from_str(&event.to_cloudevent_json()).unwrap();
            assert_eq!(cloud_event["specversion"], "1.0");
            assert_eq!(cloud_event["type"], expected_type.as_str());
        }
    }
    assert_eq!(event_names, 58, "every event type of the package");
    assert!(payloads >= 320, "about 330 payloads, saw {payloads}");
}

#[tokio::test]
async fn github_push_summary_and_refusals() {
    let runtime = runtime();
    let github = load_plugin(&runtime, "github").await;
    let push = br#"{"ref":"refs/heads/main","before":"0000","after":"1111","commits":[{"id":"1"},{"id":"2"},{"id":"3"}],"pusher":{"name":"octocat","email":"o@example.com"},"repository":{"full_name":"octo/hello","html_url":"https://github.com/octo/hello"}}"#;
    let headers = [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d-1")];
    let report = github
        .handle(
            request("github", &headers, push, "", Utc::now()),
            no_secrets(),
        )
        .await
        .unwrap();
    let event = &events(report.outcome)[0];
    let data: serde_json::Value = serde_json::from_str(&event.data_json).unwrap();
    assert_eq!(data["summary"]["commit_count"], 3);
    assert_eq!(data["summary"]["ref"], "refs/heads/main");
    assert_eq!(event.source, "https://github.com/octo/hello");

    type Refusal<'a> = (&'a [(&'a str, &'a str)], &'a [u8], RejectionKind);
    let refusals: &[Refusal] = &[
        (&headers, b"not json", RejectionKind::Malformed),
        (&headers, br#"{"ref":"x"}"#, RejectionKind::Invalid),
        (
            &[("X-GitHub-Delivery", "d-1")],
            push,
            RejectionKind::Malformed,
        ),
        (
            &[("X-GitHub-Event", "push")],
            push,
            RejectionKind::Malformed,
        ),
    ];
    for (headers, body, expected_kind) in refusals {
        let report = github
            .handle(
                request("github", headers, body, "", Utc::now()),
                no_secrets(),
            )
            .await
            .unwrap();
        match report.outcome {
            PluginOutcome::Rejected { kind, reason } => {
                assert_eq!(kind, *expected_kind, "reason: {reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn github_official_signature_vector_passes_and_tampering_fails() {
    let runtime = runtime();
    let github = load_plugin(&runtime, "github").await;
    let settings = github.configure("").await.unwrap();
    assert_eq!(settings.signature, github.manifest().signature);
    let secrets = [Secret::new("It's a Secret to Everybody")];
    let signature_header = (
        "x-hub-signature-256".to_owned(),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_owned(),
    );
    let check = |body: &[u8], headers: &[(String, String)]| {
        signature::verify(
            &settings.signature,
            SignedRequest { headers, body },
            &secrets,
            Utc::now().timestamp(),
            300,
        )
    };
    assert_eq!(
        check(b"Hello, World!", std::slice::from_ref(&signature_header)),
        Ok(())
    );
    assert!(check(b"Hello, World?", std::slice::from_ref(&signature_header)).is_err());
    assert!(check(b"Hello, World!", &[]).is_err());
}

#[tokio::test]
async fn generic_checks_the_standard_webhooks_vector_and_normalizes_it() {
    let runtime = runtime();
    let generic = load_plugin(&runtime, "generic").await;
    let settings = generic.configure("").await.unwrap();
    assert_eq!(settings.signature, SignatureScheme::StandardWebhooks);
    let body = br#"{"test": 2432232314}"#;
    let headers = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let received_at = Utc.timestamp_opt(1614265330, 0).unwrap();
    let inbound = request("acme", &headers, body, "", received_at);
    let secrets = [Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
    let verdict = |body: &[u8], now: i64| {
        signature::verify(
            &settings.signature,
            SignedRequest {
                headers: &inbound.headers,
                body,
            },
            &secrets,
            now,
            300,
        )
    };
    assert_eq!(verdict(body, 1614265330), Ok(()));
    assert!(verdict(br#"{"test": 2432232315}"#, 1614265330).is_err());
    assert!(verdict(body, 1614265330 + 301).is_err(), "stale");

    let report = generic.handle(inbound, no_secrets()).await.unwrap();
    let event = &events(report.outcome)[0];
    assert_eq!(event.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    assert_eq!(event.event_type, "generic.event");
    assert_eq!(event.data_json, r#"{"test": 2432232314}"#);
    assert_eq!(event.time, "2021-02-25T15:02:10.000Z", "the receive time");
}

#[tokio::test]
async fn generic_refuses_invalid_configuration_at_configure_time() {
    let runtime = runtime();
    let generic = load_plugin(&runtime, "generic").await;
    let error = generic
        .configure(r#"{"type_pointer":"kind"}"#)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("JSON pointer"),
        "the reason names the problem: {error}"
    );
    let settings = generic
        .configure(r#"{"signature":{"scheme":"hmac-sha256","header":"X-Acme-Signature","prefix":"sha256=","encoding":"hex"}}"#)
        .await
        .unwrap();
    assert!(matches!(
        settings.signature,
        SignatureScheme::BodyHmac { ref header, .. } if header == "x-acme-signature"
    ));
}

#[tokio::test]
async fn netflix_normalizes_every_fixture_and_signs_like_the_platform() {
    let runtime = runtime();
    let netflix = load_plugin(&runtime, "netflix").await;
    let settings = netflix.configure("").await.unwrap();
    let secret = Secret::new("catalogue-secret");
    let fixtures = support::repository_root().join("tests/fixtures/netflix");
    let expected = [
        (
            "content_added.json",
            "netflix.content.added",
            "content/80100172",
        ),
        (
            "content_updated.json",
            "netflix.content.updated",
            "content/81040344",
        ),
        (
            "content_removed.json",
            "netflix.content.removed",
            "content/70143836",
        ),
    ];
    for (file, event_type, subject) in expected {
        let body = std::fs::read(fixtures.join(file)).unwrap();
        // The platform's signature, computed by Python's hmac rather than by the host.
        let platform = format!(
            "sha256={}",
            support::python_hmac_sha256_hex(b"catalogue-secret", &body)
        );
        let signed = vec![("x-webhook-signature".to_owned(), platform)];
        assert_eq!(
            signature::sign(&settings.signature, &secret, &body, "", 0).unwrap(),
            signed,
            "{file}: the host signs as the platform does"
        );
        signature::verify(
            &settings.signature,
            SignedRequest {
                headers: &signed,
                body: &body,
            },
            std::slice::from_ref(&secret),
            0,
            300,
        )
        .unwrap();
        let headers: Vec<(&str, &str)> = signed
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let report = netflix
            .handle(
                request("netflix", &headers, &body, "", Utc::now()),
                no_secrets(),
            )
            .await
            .unwrap();
        let event = &events(report.outcome)[0];
        assert_eq!(event.event_type, event_type, "{file}");
        assert_eq!(event.subject.as_deref(), Some(subject), "{file}");
        assert_eq!(
            event.id,
            support::python_sha256_hex(&body),
            "the body's SHA-256 when no id header"
        );
        assert_eq!(event.data_json.as_bytes(), body.as_slice());
    }
}

#[tokio::test]
async fn a_burst_larger_than_the_pool_waits_instead_of_failing() {
    let runtime = PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: 2,
        compiled_cache_dir: Some(support::shared_compiled_cache()),
        ..RuntimeSettings::default()
    })
    .unwrap();
    let generic = Arc::new(load_plugin(&runtime, "generic").await);
    let calls = (0..64).map(|index| {
        let generic = generic.clone();
        tokio::spawn(async move {
            let id = format!("burst-{index}");
            generic
                .handle(
                    request("acme", &[("webhook-id", &id)], b"{}", "", Utc::now()),
                    no_secrets(),
                )
                .await
                .map(|report| events(report.outcome)[0].id.clone())
        })
    });
    let mut ids = Vec::new();
    for call in calls {
        ids.push(
            call.await
                .unwrap()
                .expect("no call fails for lack of a slot"),
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 64);
}

async fn load_error(text: &str) -> PluginLoadError {
    let runtime = runtime();
    runtime
        .load_bytes("test.wasm", text.as_bytes(), PluginLimits::default())
        .await
        .expect_err("the component must be refused")
}

#[tokio::test]
async fn unusable_components_are_refused_with_the_reason() {
    let not_wasm = runtime()
        .load_bytes("notes.txt", b"hello", PluginLimits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(not_wasm, PluginLoadError::NotAComponent { .. }),
        "{not_wasm}"
    );
    assert!(not_wasm.to_string().contains("magic bytes"), "{not_wasm}");

    let core_module = runtime()
        .load_bytes("core.wasm", b"\0asm\x01\0\0\0", PluginLimits::default())
        .await
        .unwrap_err();
    assert!(
        core_module.to_string().contains("core WebAssembly module"),
        "{core_module}"
    );

    let empty = load_error("(component)").await;
    assert!(
        matches!(empty, PluginLoadError::MissingHandlerExport { .. }),
        "{empty}"
    );
    assert!(
        empty
            .to_string()
            .contains("does not export `wasmhook:plugin/handler@0.1.0`"),
        "{empty}"
    );

    let handler = |version: &str| {
        format!(
            r#"(component
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (instance $h (export "describe" (func $f)))
                (export "wasmhook:plugin/handler@{version}" (instance $h)))"#
        )
    };
    let future_version = load_error(&handler("0.2.0")).await;
    assert!(
        matches!(&future_version, PluginLoadError::UnsupportedContractVersion { found, .. } if found == "0.2.0"),
        "{future_version}"
    );
    assert!(future_version.to_string().contains("supported: 0.1.0"));

    let mistyped = load_error(&handler("0.1.0")).await;
    assert!(
        matches!(mistyped, PluginLoadError::ContractMismatch { .. }),
        "{mistyped}"
    );

    let network_import = load_error(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance))
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $h (export "describe" (func $f)))
            (export "wasmhook:plugin/handler@0.1.0" (instance $h)))"#,
    )
    .await;
    assert!(
        matches!(&network_import, PluginLoadError::UnknownImport { import, .. } if import == "wasi:http/outgoing-handler@0.2.0"),
        "{network_import}"
    );
}

#[tokio::test]
async fn compiled_code_is_cached_and_a_corrupt_cache_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let settings = RuntimeSettings {
        max_concurrent_instances: 2,
        compiled_cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeSettings::default()
    };
    let runtime = PluginRuntime::new(settings.clone()).unwrap();
    let first = runtime
        .load_file(&plugin_file("netflix"), PluginLimits::default())
        .await
        .unwrap();
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one compiled artifact: {entries:?}");
    let entry_name = entries[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        entry_name.starts_with(first.content_hash()),
        "keyed by the content hash: {entry_name}"
    );

    let second_runtime = PluginRuntime::new(settings.clone()).unwrap();
    let second = second_runtime
        .load_file(&plugin_file("netflix"), PluginLimits::default())
        .await
        .unwrap();
    assert_eq!(second.manifest(), first.manifest());

    // A new file rather than an overwrite: the loaded components above still map the old one.
    std::fs::remove_file(&entries[0]).unwrap();
    std::fs::write(&entries[0], b"garbage").unwrap();
    let third = PluginRuntime::new(settings)
        .unwrap()
        .load_file(&plugin_file("netflix"), PluginLimits::default())
        .await
        .expect("a corrupt cache entry is ignored and replaced");
    assert_eq!(third.manifest().name, "netflix");
    assert_ne!(
        std::fs::read(&entries[0]).unwrap(),
        b"garbage",
        "the entry was rewritten"
    );
}

/// Replaces the cache entry at `path` with `planted` (a new file, since loaded components still
/// map the old one) and applies `permissions` to it.
fn plant_cache_entry(
    path: &std::path::Path,
    planted: &[u8],
    permissions: impl Fn(&std::path::Path),
) {
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, planted).unwrap();
    permissions(path);
}

/// A compiled-code cache of its own holding github and netflix, for planting one entry in place
/// of another: which plugin a load of netflix then serves shows whether the entry was trusted.
struct PlantableCache {
    _parent: tempfile::TempDir,
    directory: std::path::PathBuf,
    settings: RuntimeSettings,
    github_code: Vec<u8>,
    netflix_entry: std::path::PathBuf,
}

impl PlantableCache {
    async fn new() -> PlantableCache {
        let parent = tempfile::tempdir().unwrap();
        let directory = parent.path().join("compiled");
        let settings = RuntimeSettings {
            max_concurrent_instances: 2,
            compiled_cache_dir: Some(directory.clone()),
            ..RuntimeSettings::default()
        };
        let mut cache = PlantableCache {
            _parent: parent,
            directory,
            settings,
            github_code: Vec::new(),
            netflix_entry: std::path::PathBuf::new(),
        };
        let github = cache.load("github").await;
        let netflix = cache.load("netflix").await;
        cache.github_code = std::fs::read(cache.entry_of(github.content_hash())).unwrap();
        cache.netflix_entry = cache.entry_of(netflix.content_hash());
        cache
    }

    /// Loads a plugin through a fresh runtime on this cache.
    async fn load(&self, name: &str) -> wasmhook::plugins::Plugin {
        PluginRuntime::new(self.settings.clone())
            .unwrap()
            .load_file(&plugin_file(name), PluginLimits::default())
            .await
            .unwrap()
    }

    fn entry_of(&self, content_hash: &str) -> std::path::PathBuf {
        std::fs::read_dir(&self.directory)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(content_hash)
            })
            .unwrap()
    }

    /// Which plugin a load of netflix serves: `github` when the planted entry was trusted.
    async fn netflix_serves(&self) -> String {
        self.load("netflix").await.manifest().name.clone()
    }
}

#[tokio::test]
async fn a_compiled_cache_entry_another_user_could_have_written_is_not_loaded() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let cache = PlantableCache::new().await;
    assert_eq!(
        std::fs::metadata(&cache.directory).unwrap().mode() & 0o777,
        0o700,
        "the cache directory is private"
    );

    // Another user plants native code under netflix's name: compiled github, owned by nobody.
    plant_cache_entry(&cache.netflix_entry, &cache.github_code, |path| {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap()
    });
    assert_eq!(
        cache.netflix_serves().await,
        "netflix",
        "an entry owned by another user is not loaded"
    );
    let rewritten = std::fs::metadata(&cache.netflix_entry).unwrap();
    assert_eq!(
        (rewritten.uid(), rewritten.mode() & 0o077),
        (nix::unistd::geteuid().as_raw(), 0),
        "the recompiled entry replaced it, private to the host's user"
    );

    // The host's own file, but writable by everyone.
    plant_cache_entry(&cache.netflix_entry, &cache.github_code, |path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap()
    });
    assert_eq!(
        cache.netflix_serves().await,
        "netflix",
        "a world-writable entry is not loaded"
    );

    // The host's own private file is loaded as it is: the check refuses only what others could write.
    plant_cache_entry(&cache.netflix_entry, &cache.github_code, |path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap()
    });
    assert_eq!(
        cache.netflix_serves().await,
        "github",
        "a private entry is trusted"
    );
}

/// An older host left its cache directory group-writable: a host that owns it makes it private
/// when it starts, and trusts what it finds there from then on instead of compiling every time.
#[tokio::test]
async fn a_group_writable_cache_directory_of_the_hosts_is_made_private_and_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let cache = PlantableCache::new().await;
    // Which entry is loaded shows whether the cache is trusted: the host's own private file
    // under netflix's name holds github's code.
    plant_cache_entry(&cache.netflix_entry, &cache.github_code, |path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap()
    });
    std::fs::set_permissions(&cache.directory, std::fs::Permissions::from_mode(0o775)).unwrap();

    assert_eq!(
        cache.netflix_serves().await,
        "github",
        "the cache is trusted once its directory is private"
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&cache.directory).unwrap()) & 0o777,
        0o700,
        "the directory was made private"
    );
}

#[tokio::test]
async fn a_memory_limit_above_the_pool_slot_is_refused() {
    let runtime = runtime();
    let error = runtime
        .load_file(
            &plugin_file("github"),
            PluginLimits {
                max_memory_bytes: 1 << 40,
                ..PluginLimits::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, PluginLoadError::MemoryLimitAbovePool { .. }),
        "{error}"
    );
}

/// A component that needs more of the pool than one slot's share (more memories or core
/// instances than every slot can hold at once) is refused when it loads, with a message that
/// says so, instead of loading and then failing or starving other plugins' instantiations.
#[tokio::test]
async fn a_component_larger_than_one_pool_slot_is_refused_at_load() {
    let runtime = runtime();
    let instantiations = |count: usize| "(core instance (instantiate $m))".repeat(count);
    let table = [
        (
            "three memories",
            format!(
                "(component (core module $m (memory 1)) {})",
                instantiations(3)
            ),
        ),
        (
            "seventeen core instances",
            format!("(component (core module $m) {})", instantiations(17)),
        ),
    ];
    for (name, text) in table {
        let error = runtime
            .load_bytes(name, text.as_bytes(), PluginLimits::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, PluginLoadError::TooLargeForPool { .. }),
            "{name}: {error}"
        );
        assert!(error.to_string().contains("instance pool"), "{error}");
    }
}

/// Compiling runs on a blocking thread: on a single-threaded executor another task keeps
/// getting turns while a component compiles, seen by that task finding the load started and
/// its compiled artifact not yet written. Counted, not timed.
#[tokio::test(flavor = "current_thread")]
async fn compiling_a_component_leaves_the_executor_free() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cache = tempfile::tempdir().unwrap();
    let runtime = PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: 2,
        compiled_cache_dir: Some(cache.path().to_owned()),
        ..RuntimeSettings::default()
    })
    .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (runtime, started) = (runtime.clone(), started.clone());
        async move {
            started.store(true, Ordering::SeqCst);
            runtime
                .load_file(&plugin_file("netflix"), PluginLimits::default())
                .await
        }
    });
    let compiled_artifact_written = || {
        std::fs::read_dir(cache.path())
            .unwrap()
            .any(|entry| entry.unwrap().path().extension() == Some(std::ffi::OsStr::new("cwasm")))
    };
    let mut turns_while_compiling = 0u64;
    for _ in 0..10_000_000 {
        if load.is_finished() {
            break;
        }
        if started.load(Ordering::SeqCst) && !compiled_artifact_written() {
            turns_while_compiling += 1;
        }
        tokio::task::yield_now().await;
    }
    load.await.unwrap().expect("netflix loads");
    assert!(compiled_artifact_written());
    assert!(
        turns_while_compiling > 0,
        "no other task ran while the component compiled"
    );
}
