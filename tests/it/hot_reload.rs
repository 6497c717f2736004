//! Hot-loading plugins through the admin API, with two host processes on one database.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wasmhook::signature::{self, MacEncoding, Secret, SignatureScheme};

use support::app::TestApp;

const TOKEN: &str = "hot-reload-token-of-32-characters-at-least";
const SECRET: &str = "gh-secret";

fn config() -> String {
    format!(
        r#"
[admin]
token = "{TOKEN}"

[[sources]]
name = "github"
plugin = "github"
secrets = ["{SECRET}"]
"#
    )
}

async fn admin(
    client: &reqwest::Client,
    base_url: &str,
    method: Method,
    path: &str,
    body: Option<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut request = client
        .request(method, format!("{base_url}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The same component with a custom section appended: a different version, the same code.
fn with_custom_section(component: &[u8], payload: &[u8]) -> Vec<u8> {
    let name = b"wasmhook-test";
    let mut bytes = component.to_vec();
    bytes.push(0);
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

/// A push of its own for each delivery: the same body under a new delivery id is a replay,
/// answered as a duplicate.
fn signed_push(delivery: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let body = format!(
        r#"{{"ref":"r","before":"a","after":"b","pusher":{{"name":"p"}},"delivery":"{delivery}"}}"#
    )
    .into_bytes();
    let scheme = SignatureScheme::BodyHmac {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    };
    let mut headers = signature::sign(&scheme, &Secret::new(SECRET), &body, "", 0).unwrap();
    headers.push(("x-github-event".into(), "push".into()));
    headers.push(("x-github-delivery".into(), delivery.into()));
    (headers, body)
}

async fn post_push(client: &reqwest::Client, base_url: &str, delivery: &str) -> StatusCode {
    let (headers, body) = signed_push(delivery);
    let mut request = client
        .post(format!("{base_url}/webhooks/github"))
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status()
}

/// Posts fresh pushes (bounded: 60 tries, 50 ms apart) until one gets `expected`; returns how
/// long that took, or `None`.
async fn wait_for_status(
    client: &reqwest::Client,
    base_url: &str,
    label: &str,
    expected: StatusCode,
) -> Option<Duration> {
    let started = Instant::now();
    for attempt in 0..60 {
        if post_push(client, base_url, &format!("{label}-{attempt}")).await == expected {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Activates a version of the github plugin over the admin API.
async fn activate_github(
    client: &reqwest::Client,
    base_url: &str,
    version_id: &Value,
) -> StatusCode {
    let body = json!({ "version_id": version_id }).to_string();
    admin(
        client,
        base_url,
        Method::POST,
        "/admin/v1/plugins/github/activate",
        Some(body.into()),
    )
    .await
    .0
}

async fn active_github_version(client: &reqwest::Client, base_url: &str) -> String {
    let (_, versions) = admin(client, base_url, Method::GET, "/admin/v1/plugins", None).await;
    versions
        .as_array()
        .unwrap()
        .iter()
        .find(|version| version["plugin_name"] == "github" && version["active"] == true)
        .map(|version| version["id"].as_str().unwrap().to_owned())
        .expect("github has an active version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_the_active_version_keeps_serving() {
    let app = TestApp::spawn(&config()).await;
    let client = reqwest::Client::new();
    let before = active_github_version(&client, &app.admin_url).await;
    let (status, error) = admin(
        &client,
        &app.admin_url,
        Method::PUT,
        "/admin/v1/plugins/github",
        Some(b"not a component".to_vec().into()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly component"),
        "{error}"
    );
    let (status, _) = admin(
        &client,
        &app.admin_url,
        Method::POST,
        "/admin/v1/plugins/github/rollback",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to roll back to yet");
    let status = activate_github(&client, &app.admin_url, &json!(uuid::Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(active_github_version(&client, &app.admin_url).await, before);
    assert_eq!(
        post_push(&client, &app.base_url, "after-bad-upload").await,
        StatusCode::ACCEPTED
    );
}

/// Ten swaps in a row under steady load on two processes: no request fails, no event is lost;
/// a behaviour-changing version reaches the other process within about a second, and a
/// rollback brings the old one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_under_load_on_two_processes_fails_nothing_and_loses_nothing() {
    let app = TestApp::spawn(&config()).await;
    let second = app
        .start_another(wasmhook::app::serve::Roles {
            ingest: true,
            worker: true,
        })
        .await;
    let second_url = format!("http://{}", second.address);
    let client = reqwest::Client::new();
    let first_version = active_github_version(&client, &app.admin_url).await;
    let github = std::fs::read(support::built_component("plugins", "github")).unwrap();
    let (status, uploaded) = admin(
        &client,
        &app.admin_url,
        Method::PUT,
        "/admin/v1/plugins/github",
        Some(with_custom_section(&github, b"v2").into()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let second_version = uploaded["id"].as_str().unwrap().to_owned();
    assert_eq!(
        uploaded["active"], false,
        "an upload does not activate by itself"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, accepted, failed) = (stop.clone(), accepted.clone(), failed.clone());
        let urls = [app.base_url.clone(), second_url.clone()];
        let client = client.clone();
        tokio::spawn(async move {
            for number in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let status = post_push(&client, &urls[number % 2], &format!("load-{number}")).await;
                if status == StatusCode::ACCEPTED {
                    accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for swap in 0..10 {
        let version = if swap % 2 == 0 {
            &second_version
        } else {
            &first_version
        };
        let status = activate_github(&client, &app.admin_url, &json!(version)).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during the swaps"
    );
    let stored = app.counts().await.events as usize;
    assert!(accepted.load(Ordering::Relaxed) > 10, "the load ran");
    assert_eq!(
        stored,
        accepted.load(Ordering::Relaxed),
        "every 202 is stored"
    );

    // A version that changes behaviour: the generic plugin checks Standard Webhooks signatures,
    // so a GitHub-signed push is refused once the other process has swapped it in.
    let generic = std::fs::read(support::built_component("plugins", "generic")).unwrap();
    let (_, uploaded) = admin(
        &client,
        &app.admin_url,
        Method::PUT,
        "/admin/v1/plugins/github",
        Some(generic.into()),
    )
    .await;
    let status = activate_github(&client, &app.admin_url, &uploaded["id"]).await;
    assert_eq!(status, StatusCode::OK);
    let swapped_after = wait_for_status(&client, &second_url, "probe", StatusCode::UNAUTHORIZED)
        .await
        .expect("the other process swapped the version in");
    assert!(
        swapped_after < Duration::from_millis(2500),
        "swapped after {swapped_after:?}"
    );

    let (status, _) = admin(
        &client,
        &app.admin_url,
        Method::POST,
        "/admin/v1/plugins/github/rollback",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        wait_for_status(&client, &second_url, "restored", StatusCode::ACCEPTED)
            .await
            .is_some(),
        "the rollback brought the previous version back"
    );
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_in_the_plugins_directory_becomes_the_active_version() {
    let app = TestApp::spawn(&config()).await;
    let client = reqwest::Client::new();
    assert_eq!(
        post_push(&client, &app.base_url, "before").await,
        StatusCode::ACCEPTED
    );
    let file = app.plugins_dir.path().join("github.wasm");
    let replace_with = |component: &str| {
        std::fs::remove_file(&file).unwrap();
        std::fs::copy(support::built_component("plugins", component), &file).unwrap();
    };
    // A different plugin under the same name changes how requests are checked.
    replace_with("generic");
    assert!(
        wait_for_status(&client, &app.base_url, "changed", StatusCode::UNAUTHORIZED)
            .await
            .is_some(),
        "the changed file was activated"
    );
    replace_with("github");
    assert!(
        wait_for_status(&client, &app.base_url, "restored", StatusCode::ACCEPTED)
            .await
            .is_some(),
        "the original file is active again"
    );
}

/// The swapper follows activations over a LISTEN connection. When the database refuses every
/// attempt to get it back (here: it was dropped), each attempt fails at once; the swapper must
/// wait between tries rather than reconnect in a tight loop, which floods the server's accept
/// queue (seen as `EAGAIN` for every other client) just when the server is struggling.
#[tokio::test]
async fn a_lost_listen_connection_is_retried_at_a_bounded_rate() {
    let app = TestApp::spawn(&config()).await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let server = {
        use std::str::FromStr as _;
        let options = sqlx::postgres::PgConnectOptions::from_str(&app.database.url)
            .unwrap()
            .database("postgres");
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap()
    };
    sqlx::query(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .execute(&server)
        .await
        .unwrap();
    server.close().await;
    let failures = || async {
        let exposition = app
            .client
            .get(format!("{}/metrics", app.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        exposition
            .lines()
            .find_map(|line| {
                line.strip_prefix(
                    r#"wasmhook_listen_connection_failures_total{listener="plugins"} "#,
                )
            })
            .map_or(0.0, |value| value.trim().parse::<f64>().unwrap())
    };
    let before = failures().await;
    // Counted over a window: the rate is what this test is about.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = failures().await - before;
    assert!(
        (1.0..=6.0).contains(&during),
        "{during} failed reconnections in three seconds (a tight loop makes hundreds; none means the loss was not seen)"
    );
}
