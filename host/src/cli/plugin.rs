//! The plugin author's commands: `wasmhook plugin check` and `wasmhook plugin run`.
//!
//! They load a component exactly as the server does and run it through the same runtime,
//! limits and signature checks, so a plugin that passes here behaves the same in production.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::plugins::engine::RuntimeSettings;
use crate::plugins::{
    Plugin, PluginCallReport, PluginLimits, PluginOutcome, PluginRequest, PluginRuntime,
    RequestCheck,
};
use crate::signature::{self, Secret, SignedRequest};

/// Where compiled plugins are cached for the command-line tools.
pub fn default_compiled_cache_dir() -> Option<PathBuf> {
    let cache_home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache_home.join("wasmhook").join("compiled"))
}

async fn load(path: &Path, limits: PluginLimits) -> anyhow::Result<Plugin> {
    let runtime = PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: 4,
        compiled_cache_dir: default_compiled_cache_dir(),
        ..RuntimeSettings::default()
    })?;
    Ok(runtime.load_file(path, limits).await?)
}

/// `wasmhook plugin check FILE`: prints the manifest as JSON, or fails with the reason.
/// The host's own signature check of a request, at the request's receive time and the
/// default tolerance.
fn check_signature(
    scheme: &crate::signature::SignatureScheme,
    headers: &[(String, String)],
    body: &[u8],
    secrets: &[Secret],
    received_at: chrono::DateTime<chrono::Utc>,
) -> Result<(), crate::signature::SignatureError> {
    signature::verify(
        scheme,
        SignedRequest { headers, body },
        secrets,
        received_at.timestamp(),
        300,
    )
}

pub async fn check(path: &Path) -> anyhow::Result<()> {
    let plugin = load(path, PluginLimits::default()).await?;
    let report = serde_json::json!({
        "file": path.display().to_string(),
        "content_sha256": plugin.content_hash(),
        "manifest": plugin.manifest(),
        "limits": plugin.limits(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// What `wasmhook plugin run` was asked to do.
#[derive(Debug)]
pub struct RunOptions {
    pub plugin_path: PathBuf,
    pub body_path: PathBuf,
    /// Raw `Name: value` lines.
    pub headers: Vec<String>,
    pub config_path: Option<PathBuf>,
    /// When given, the signature is checked as the server would check it.
    pub secrets: Vec<String>,
    pub source_name: String,
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a run ended with, for the process exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum RunVerdict {
    Events,
    Reply,
    Rejected,
}

/// `wasmhook plugin run`: runs `handle` once and prints the outcome as JSON lines.
pub async fn run(options: RunOptions) -> anyhow::Result<RunVerdict> {
    let body = std::fs::read(&options.body_path)
        .with_context(|| format!("reading the body file {}", options.body_path.display()))?;
    let config = match &options.config_path {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?,
        None => String::new(),
    };
    let headers = options
        .headers
        .iter()
        .map(|line| parse_header_line(line))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plugin = load(&options.plugin_path, PluginLimits::default()).await?;
    let settings = plugin
        .configure(&config)
        .await
        .context("configuring the plugin")?;
    let received_at = options.received_at.unwrap_or_else(chrono::Utc::now);

    if options.secrets.is_empty() {
        eprintln!("note: no --secret given, so the signature was not checked");
    } else {
        let secrets: Vec<Secret> = options.secrets.iter().map(Secret::new).collect();
        check_signature(&settings.signature, &headers, &body, &secrets, received_at)
            .context("the signature check failed (the server would answer 401)")?;
    }

    let request = PluginRequest {
        request_id: "cli".to_owned(),
        method: "POST".to_owned(),
        path: format!("/webhooks/{}", options.source_name),
        query: String::new(),
        headers,
        body,
        received_at,
        source_name: options.source_name.clone(),
        config,
    };
    let secrets: Arc<[Secret]> = options.secrets.iter().map(Secret::new).collect();
    let report = plugin
        .handle_checked(
            request,
            secrets,
            request_check(&settings, !options.secrets.is_empty()),
        )
        .await?;
    print_budget(&report);
    Ok(print_outcome(&report.outcome))
}

/// Prints an outcome as JSON lines (one per event) and says which kind it was.
fn print_outcome(outcome: &PluginOutcome) -> RunVerdict {
    match outcome {
        PluginOutcome::Events(events) => {
            for event in events {
                println!("{}", event.to_cloudevent_json());
            }
            RunVerdict::Events
        }
        PluginOutcome::Rejected { kind, reason } => {
            println!(
                "{}",
                serde_json::json!({"rejected": {"kind": kind, "reason": reason}})
            );
            RunVerdict::Rejected
        }
        PluginOutcome::Reply(reply) => {
            let headers: Vec<_> = reply
                .headers
                .iter()
                .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"reply": {
                    "status": reply.status,
                    "headers": headers,
                    "body": String::from_utf8_lossy(&reply.body),
                }})
            );
            RunVerdict::Reply
        }
    }
}

fn print_budget(report: &PluginCallReport) {
    eprintln!(
        "budget: instantiate {:.3} ms, call {:.3} ms, peak memory {} bytes, output {} bytes, logs {} bytes",
        report.instantiate.as_secs_f64() * 1e3,
        report.call.as_secs_f64() * 1e3,
        report.peak_memory_bytes,
        report.output_bytes,
        report.log_bytes,
    );
}

/// Parses `Name: value` into a lower-case name and a trimmed value.
pub fn parse_header_line(line: &str) -> anyhow::Result<(String, String)> {
    let Some((name, value)) = line.split_once(':') else {
        bail!("header {line:?} is not `Name: value`");
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_graphic()) {
        bail!("header {line:?} has no valid name");
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_parse_into_lower_case_names() {
        let table = [
            ("X-GitHub-Event: push", Some(("x-github-event", "push"))),
            (
                "webhook-signature:v1,abc= v1,def=",
                Some(("webhook-signature", "v1,abc= v1,def=")),
            ),
            ("Host: a:b:c", Some(("host", "a:b:c"))),
            ("no colon", None),
            (": empty name", None),
        ];
        for (line, expected) in table {
            let parsed = parse_header_line(line).ok();
            assert_eq!(
                parsed,
                expected.map(|(name, value)| (name.to_owned(), value.to_owned())),
                "line {line:?}"
            );
        }
    }
}

/// One request fixture: a request and the outcome the plugin must give it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    description: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// A JSON value is sent as its JSON text; a string is sent as it is.
    body: serde_json::Value,
    #[serde(default)]
    config: String,
    /// When given, the request is signed with it the way the platform would, and the signature
    /// is checked the way the server would. With `signed`, the fixture's own signature is
    /// checked with it instead.
    secret: Option<String>,
    /// The request as the platform signed it, with signature headers made outside wasmhook (by
    /// the platform's own library or an independent HMAC), so the check is not a round trip
    /// through the host's own signing.
    signed: Option<PlatformSignature>,
    expect: Expectation,
}

/// Signature headers made outside wasmhook, and the moment they were made.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformSignature {
    /// Unix seconds when the platform signed the request: the server's clock for the check.
    at: i64,
    headers: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
enum Expectation {
    Events {
        types: Vec<String>,
        #[serde(default)]
        subjects: Option<Vec<Option<String>>>,
        /// The events' ids, in order: what the host dedupes on.
        #[serde(default)]
        ids: Option<Vec<String>>,
        /// Per event, JSON pointers into its data and the value each must have there.
        #[serde(default)]
        data: Option<Vec<std::collections::BTreeMap<String, serde_json::Value>>>,
    },
    Rejected {
        kind: crate::plugins::RejectionKind,
    },
    Reply {
        status: u16,
    },
}

/// `wasmhook plugin run --fixtures DIR`: runs every `*.json` fixture in `dir` and reports each,
/// with its budget. Returns whether all passed.
pub async fn run_fixtures(plugin_path: &Path, dir: &Path) -> anyhow::Result<bool> {
    let plugin = load(plugin_path, PluginLimits::default()).await?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the fixtures directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("{} holds no *.json fixtures", dir.display());
    }
    let (mut passed, mut failed) = (0, 0);
    for path in paths {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_fixture(&plugin, &path).await {
            Ok(report) => {
                passed += 1;
                println!(
                    "PASS {name}: {:.3} ms, peak memory {} bytes, output {} bytes, logs {} bytes",
                    (report.instantiate + report.call).as_secs_f64() * 1e3,
                    report.peak_memory_bytes,
                    report.output_bytes,
                    report.log_bytes
                );
            }
            Err(error) => {
                failed += 1;
                println!("FAIL {name}: {error:#}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

async fn run_fixture(plugin: &Plugin, path: &Path) -> anyhow::Result<PluginCallReport> {
    let text = std::fs::read_to_string(path).context("reading the fixture")?;
    let fixture: Fixture = serde_json::from_str(&text).context("parsing the fixture")?;
    let body = match &fixture.body {
        serde_json::Value::String(text) => text.clone().into_bytes(),
        _ if fixture.signed.is_some() => {
            bail!("a `signed` fixture's body must be a string: its bytes are what was signed")
        }
        other => serde_json::to_vec(other).context("encoding the body")?,
    };
    let settings = plugin
        .configure(&fixture.config)
        .await
        .context("configuring the plugin")?;
    let received_at = match &fixture.signed {
        Some(signed) => chrono::DateTime::from_timestamp(signed.at, 0)
            .context("`signed.at` is not a Unix time")?,
        None => chrono::Utc::now(),
    };
    let mut headers: Vec<(String, String)> = fixture
        .headers
        .iter()
        .chain(fixture.signed.iter().flat_map(|signed| &signed.headers))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect();
    let secrets: Vec<Secret> = fixture.secret.iter().map(Secret::new).collect();
    if let Some(secret) = secrets.first() {
        if fixture.signed.is_none() {
            let message_id = headers
                .iter()
                .find(|(name, _)| Some(name) == settings.dedupe_header.as_ref())
                .map_or_else(|| "msg_fixture".to_owned(), |(_, value)| value.clone());
            headers.extend(signature::sign(
                &settings.signature,
                secret,
                &body,
                &message_id,
                received_at.timestamp(),
            )?);
        }
        check_signature(&settings.signature, &headers, &body, &secrets, received_at)
            .context("the signature check failed")?;
    }
    let request = PluginRequest {
        request_id: format!("fixture {}", fixture.description),
        method: "POST".to_owned(),
        path: "/webhooks/fixture".to_owned(),
        query: String::new(),
        headers,
        body,
        received_at,
        source_name: "fixture".to_owned(),
        config: fixture.config.clone(),
    };
    let check = request_check(&settings, !secrets.is_empty());
    let report = plugin
        .handle_checked(request, secrets.into(), check)
        .await?;
    check_expectation(&fixture.expect, &report.outcome)?;
    Ok(report)
}

fn check_expectation(expect: &Expectation, outcome: &PluginOutcome) -> anyhow::Result<()> {
    match (expect, outcome) {
        (
            Expectation::Events {
                types,
                subjects,
                ids,
                data,
            },
            PluginOutcome::Events(events),
        ) => {
            let actual: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            if actual != *types {
                bail!("expected event types {types:?}, got {actual:?}");
            }
            if let Some(subjects) = subjects {
                let actual: Vec<Option<String>> =
                    events.iter().map(|event| event.subject.clone()).collect();
                if actual != *subjects {
                    bail!("expected subjects {subjects:?}, got {actual:?}");
                }
            }
            if let Some(ids) = ids {
                let actual: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
                if actual != *ids {
                    bail!("expected ids {ids:?}, got {actual:?}");
                }
            }
            if let Some(data) = data {
                check_data(data, events)?;
            }
        }
        (
            Expectation::Rejected { kind },
            PluginOutcome::Rejected {
                kind: actual,
                reason,
            },
        ) => {
            if actual != kind {
                bail!("expected a {kind:?} rejection, got {actual:?}: {reason}");
            }
        }
        (Expectation::Reply { status }, PluginOutcome::Reply(reply)) => {
            if reply.status != *status {
                bail!(
                    "expected a reply with status {status}, got {}",
                    reply.status
                );
            }
        }
        (_, outcome) => bail!("the outcome differs from the expectation: {outcome:?}"),
    }
    Ok(())
}

/// Checks each event's data at the JSON pointers its expectation names.
fn check_data(
    expected: &[std::collections::BTreeMap<String, serde_json::Value>],
    events: &[crate::model::events::NormalizedEvent],
) -> anyhow::Result<()> {
    if expected.len() != events.len() {
        bail!(
            "expected data for {} events, got {} events",
            expected.len(),
            events.len()
        );
    }
    for (index, (fields, event)) in expected.iter().zip(events).enumerate() {
        let data: serde_json::Value = serde_json::from_str(&event.data_json)
            .with_context(|| format!("event {index}'s data is not JSON"))?;
        for (pointer, value) in fields {
            let actual = data.pointer(pointer);
            if actual != Some(value) {
                bail!("event {index}: expected {value} at {pointer:?} of its data, got {actual:?}");
            }
        }
    }
    Ok(())
}

/// Whether the signature was checked as the server checks it before `handle` (a secret was
/// given and the scheme is one the host checks), which decides whether the plugin may sign.
fn request_check(settings: &crate::plugins::ConfiguredSource, checked: bool) -> RequestCheck {
    if checked && settings.signature.is_checked_by_host() {
        RequestCheck::VerifiedByHost
    } else {
        RequestCheck::NotVerifiedByHost
    }
}
