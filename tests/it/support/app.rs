//! A real host on 127.0.0.1 with a fresh database, and a client to talk to it.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;
use wasmhook::app::serve::RunningServer;
use wasmhook::config::Config;

use super::database::TestDatabase;

/// A running host and what the tests need around it.
pub struct TestApp {
    pub server: Option<RunningServer>,
    pub base_url: String,
    /// The admin API's own listener (`http://127.0.0.1:<port>`), when a token turns it on.
    pub admin_url: String,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    pub pool: sqlx::PgPool,
    pub plugins_dir: tempfile::TempDir,
    config_text: String,
    /// TOML merged over `config_text`, for settings the shared config already sets.
    overrides: String,
    /// The `[admin] token` of the config, which the `admin_*` helpers send.
    admin_token: Option<String>,
}

/// One delivery job of an event, as the wait helpers read it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRow {
    pub destination_name: String,
    pub state: String,
    pub attempt: i32,
    pub last_error: Option<String>,
}

/// The `[admin] token` the last of `layers` that sets one gives, when it is written inline.
fn admin_token(layers: &[&str]) -> Option<String> {
    layers.iter().rev().find_map(|layer| {
        let table: toml::Table = layer.parse().ok()?;
        Some(table.get("admin")?.get("token")?.as_str()?.to_owned())
    })
}

/// A response's status and its body as JSON (`Null` when the body is empty or not JSON).
pub async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("the host answers a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Merged under every test config: the admin API (when a token turns it on) listens on a free
/// port of its own, unless the test names one.
const TEST_BASE_LAYER: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// The admin URL of a running server.
pub fn admin_url(server: &RunningServer) -> String {
    server.admin_address.map_or_else(
        || "http://admin-api-is-off.invalid".to_owned(),
        |address| format!("http://{address}"),
    )
}

/// A directory with every built component, production and test plugins alike.
pub fn plugins_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (folder, names) in [
        (
            "plugins",
            &[
                "github", "netflix", "generic", "shopify", "gitlab", "stripe", "slack",
            ][..],
        ),
        ("test-plugins", &["hostile"][..]),
    ] {
        for name in names {
            let source = super::built_component(folder, name);
            std::os::unix::fs::symlink(&source, dir.path().join(format!("{name}.wasm"))).unwrap();
        }
    }
    dir
}

/// The settings every test host runs with (in-process or as a child process): fast polling,
/// lease rescue and database timeouts, so that recovery is measured in seconds, and
/// `sources_and_more` for the sources and destinations.
pub fn full_config(database_url: &str, plugins_dir: &Path, sources_and_more: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
header_read_timeout_seconds = 1
[database]
url = "{database_url}"
max_connections = 8
acquire_timeout_seconds = 1
[delivery]
poll_interval_ms = 100
rescue_interval_ms = 200
lease_margin_seconds = 1
shutdown_grace_seconds = 2
[plugins]
dir = "{plugins_dir}"
compiled_cache_dir = "{cache}"
max_concurrent_instances = 16
{sources_and_more}
"#,
        plugins_dir = plugins_dir.display(),
        cache = super::shared_compiled_cache().display(),
    )
}

/// A test's host stops with the test: its background tasks would otherwise go on polling a
/// database that is dropped right after, reconnecting over and over, and that storm of failed
/// connections fills the test cluster's accept queue until other tests' connections fail with
/// `EAGAIN`.
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

impl TestApp {
    /// Starts a host with the given `[[sources]]` and `[[destinations]]` TOML.
    pub async fn spawn(sources_and_more: &str) -> TestApp {
        Self::spawn_with_roles(sources_and_more, wasmhook::app::serve::Roles::default()).await
    }

    /// Starts a host running only the given roles.
    pub async fn spawn_with_roles(
        sources_and_more: &str,
        roles: wasmhook::app::serve::Roles,
    ) -> TestApp {
        Self::spawn_configured(sources_and_more, "", roles).await
    }

    /// Starts a host with `overrides` (TOML, e.g. a `[server]` table) merged over the shared
    /// test config.
    pub async fn spawn_with_overrides(sources_and_more: &str, overrides: &str) -> TestApp {
        Self::spawn_configured(
            sources_and_more,
            overrides,
            wasmhook::app::serve::Roles::default(),
        )
        .await
    }

    async fn spawn_configured(
        sources_and_more: &str,
        overrides: &str,
        roles: wasmhook::app::serve::Roles,
    ) -> TestApp {
        let database = TestDatabase::create().await;
        let plugins_dir = plugins_dir();
        let config_text = full_config(&database.url, plugins_dir.path(), sources_and_more);
        let server = start(&config_text, overrides, roles).await;
        TestApp {
            base_url: format!("http://{}", server.address),
            admin_url: admin_url(&server),
            server: Some(server),
            client: reqwest::Client::new(),
            pool: database.pool(),
            database,
            plugins_dir,
            admin_token: admin_token(&[&config_text, overrides]),
            config_text,
            overrides: overrides.to_owned(),
        }
    }

    /// Stops the host (graceful shutdown) and starts a new one on the same database.
    pub async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
        let server = start(
            &self.config_text,
            &self.overrides,
            wasmhook::app::serve::Roles::default(),
        )
        .await;
        self.base_url = format!("http://{}", server.address);
        self.admin_url = admin_url(&server);
        self.server = Some(server);
    }

    pub async fn post(
        &self,
        source: &str,
        headers: &[(String, String)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/webhooks/{source}", self.base_url))
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.expect("the host answers")
    }

    /// Posts a webhook to `source` and returns the status and the JSON answer (which every
    /// answer of the webhook endpoint is).
    pub async fn post_webhook(
        &self,
        source: &str,
        headers: &[(String, String)],
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self.post(source, headers, body).await;
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    /// An admin API request with the config's token, and `body` as JSON when given.
    pub async fn admin_request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.admin_url));
        if let Some(token) = &self.admin_token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        status_and_json(request.send().await.expect("the admin API answers")).await
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.admin_request(Method::GET, path, None).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.admin_request(Method::POST, path, Some(body)).await
    }

    pub async fn admin_put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.admin_request(Method::PUT, path, Some(body)).await
    }

    pub async fn admin_patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.admin_request(Method::PATCH, path, Some(body)).await
    }

    pub async fn admin_delete(&self, path: &str) -> (StatusCode, Value) {
        self.admin_request(Method::DELETE, path, None).await
    }

    /// The delivery jobs of an event, by destination name.
    pub async fn jobs_of(&self, event_id: Uuid) -> Vec<JobRow> {
        sqlx::query_as(
            "SELECT destination_name, state, attempt, last_error FROM delivery_jobs
             WHERE event_row_id = $1 ORDER BY destination_name",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await
        .expect("reading the event's jobs")
    }

    /// Polls the event's jobs until `done` holds of them or `limit` passes, and returns the
    /// jobs as last read either way: the caller asserts what it expects.
    pub async fn wait_for_jobs(
        &self,
        event_id: Uuid,
        limit: Duration,
        done: impl Fn(&[JobRow]) -> bool,
    ) -> Vec<JobRow> {
        let deadline = Instant::now() + limit;
        loop {
            let jobs = self.jobs_of(event_id).await;
            if done(&jobs) || Instant::now() >= deadline {
                return jobs;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The event's job to `destination` once it is out of `due`, `running` and `retrying` (or
    /// as it is when `limit` passes).
    pub async fn wait_for_settled_job(
        &self,
        event_id: Uuid,
        destination: &str,
        limit: Duration,
    ) -> JobRow {
        let settled = |job: &JobRow| !matches!(job.state.as_str(), "due" | "running" | "retrying");
        let jobs = self
            .wait_for_jobs(event_id, limit, |jobs| {
                jobs.iter()
                    .any(|job| job.destination_name == destination && settled(job))
            })
            .await;
        jobs.into_iter()
            .find(|job| job.destination_name == destination)
            .unwrap_or_else(|| panic!("the event {event_id} has no job to {destination}"))
    }

    /// Waits until the event's only job is in `state`; fails the test after `limit`.
    pub async fn wait_for_job_state(&self, event_id: Uuid, state: &str, limit: Duration) -> JobRow {
        let jobs = self
            .wait_for_jobs(event_id, limit, |jobs| {
                jobs.first().is_some_and(|job| job.state == state)
            })
            .await;
        match jobs.into_iter().next() {
            Some(job) if job.state == state => job,
            other => {
                panic!("the job of {event_id} did not reach {state} within {limit:?}: {other:?}")
            }
        }
    }

    /// The configuration the host runs with.
    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    /// Another host process on the same database, running only `roles`.
    pub async fn start_another(&self, roles: wasmhook::app::serve::Roles) -> RunningServer {
        start(&self.config_text, &self.overrides, roles).await
    }

    pub async fn counts(&self) -> wasmhook::store::events::StoredCounts {
        wasmhook::store::events::stored_counts(&self.pool)
            .await
            .unwrap()
    }
}

async fn start(
    config_text: &str,
    overrides: &str,
    roles: wasmhook::app::serve::Roles,
) -> RunningServer {
    let config = Config::from_toml_layers(&[TEST_BASE_LAYER, config_text, overrides])
        .expect("the test configuration is valid");
    wasmhook::app::serve::start_with_roles(config, roles)
        .await
        .expect("the host starts")
}
