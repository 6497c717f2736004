//! The plugin author's commands: `wasmhook plugin check` and `wasmhook plugin run`.
//!
//! They load a component exactly as the server does and run it through the same runtime,
//! limits and signature checks, so a plugin that passes here behaves the same in production.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::plugins::{
    Plugin, PluginCallReport, PluginLimits, PluginOutcome, PluginRequest, PluginRuntime,
    RuntimeSettings,
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
        signature::verify(
            &settings.signature,
            SignedRequest {
                headers: &headers,
                body: &body,
            },
            &secrets,
            received_at.timestamp(),
            300,
        )
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
    let report = plugin.handle(request, secrets).await?;
    print_budget(&report);
    let verdict = match &report.outcome {
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
    };
    Ok(verdict)
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
