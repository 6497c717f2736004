//! `wasmhook send`: posts one correctly signed webhook to a running host, signing it the way
//! the source's platform would (the scheme comes from the source's plugin and configuration).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::plugin::parse_header_line;
use crate::config::Config;
use crate::plugins::PluginRuntime;
use crate::plugins::engine::RuntimeSettings;
use crate::signature;

/// What `wasmhook send` was asked to do.
#[derive(Debug)]
pub struct SendOptions {
    pub config_path: Option<PathBuf>,
    pub source_name: String,
    pub body_path: PathBuf,
    pub headers: Vec<String>,
}

/// Signs and posts the webhook, prints the host's answer, and says whether it was a 2xx.
pub async fn send(options: SendOptions) -> anyhow::Result<bool> {
    let config = Config::load(options.config_path.as_deref())?;
    let source = config
        .sources
        .iter()
        .find(|source| source.name == options.source_name)
        .with_context(|| {
            format!(
                "the configuration has no source named {:?}",
                options.source_name
            )
        })?;
    let body = std::fs::read(&options.body_path)
        .with_context(|| format!("reading {}", options.body_path.display()))?;
    let mut headers = options
        .headers
        .iter()
        .map(|line| parse_header_line(line))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let runtime = PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: 1,
        compiled_cache_dir: Some(config.compiled_cache_dir()),
        ..RuntimeSettings::default()
    })?;
    let plugin_path: &Path = &config.plugins.dir.join(format!("{}.wasm", source.plugin));
    let plugin = runtime
        .load_file(
            plugin_path,
            config
                .plugins
                .limits
                .with_overrides(&source.settings.limits),
        )
        .await?;
    let settings = plugin.configure(&source.settings.config).await?;
    let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    if let Some(dedupe_header) = &settings.dedupe_header
        && !headers.iter().any(|(name, _)| name == dedupe_header)
    {
        headers.push((dedupe_header.clone(), message_id.clone()));
    }
    if let Some(secret) = source.secrets.first() {
        let secret = secret.resolve().context("the source's first secret")?;
        let signed = signature::sign(
            &settings.signature,
            &secret,
            &body,
            &message_id,
            chrono::Utc::now().timestamp(),
        )?;
        headers.retain(|(name, _)| !signed.iter().any(|(signed_name, _)| signed_name == name));
        headers.extend(signed);
    }

    let url = format!(
        "http://{}/webhooks/{}",
        config.server.listen, options.source_name
    );
    let mut request = reqwest::Client::new().post(&url).body(body);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("posting to {url} (is `wasmhook serve` running?)"))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    println!("{} {answer}", status.as_u16());
    if status.is_server_error() {
        bail!("the host answered {status}");
    }
    Ok(status.is_success())
}
