//! A database outage as the admin API answers it: 503 with the usual `{"code", "detail"}` body
//! and nothing of the cause, and 200 again once the database is back.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Executor;

use support::app::TestApp;

const TOKEN: &str = "test-admin-token-of-32-characters-at-least";

const ADMIN_READS: [&str; 3] = [
    "/admin/v1/sources",
    "/admin/v1/destinations",
    "/admin/v1/events",
];

async fn spawn() -> TestApp {
    TestApp::spawn(&format!(
        r#"
[admin]
token = "{TOKEN}"

[[sources]]
name = "acme"
plugin = "generic"
config = '{{"signature": {{"scheme": "none"}}, "type_pointer": "/type"}}'

[[destinations]]
name = "configured"
url = "http://127.0.0.1:9/unused"
routes = ["order.*"]
allow_private_networks = true
"#
    ))
    .await
}

/// The status, the `Retry-After` header and the JSON body of an authenticated GET.
async fn get(app: &TestApp, path: &str) -> (StatusCode, Option<String>, Value) {
    let response = app
        .client
        .get(format!("{}{path}", app.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the admin API answers");
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

/// Runs statements on the cluster's `postgres` database, beside the test's own.
async fn as_cluster_admin(app: &TestApp, statements: &[String]) {
    let admin_url = app
        .database
        .url
        .replace(&format!("/{}", app.database.name), "/postgres");
    let admin = wasmhook::store::connect(&admin_url, 1, Duration::from_secs(10)).unwrap();
    for statement in statements {
        admin
            .execute(statement.as_str())
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    admin.close().await;
}

/// Refuses new connections to the test's database and ends the ones it has, the host's pool
/// included: every query the host makes now fails as in an outage.
async fn take_the_database_away(app: &TestApp) {
    let name = &app.database.name;
    as_cluster_admin(
        app,
        &[
            format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ),
        ],
    )
    .await;
}

async fn bring_the_database_back(app: &TestApp) {
    let name = &app.database.name;
    as_cluster_admin(
        app,
        &[format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")],
    )
    .await;
}

#[tokio::test]
async fn admin_reads_answer_503_during_an_outage_and_recover_after_it() {
    let app = spawn().await;
    for path in ADMIN_READS {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path} before the outage: {body}");
    }

    take_the_database_away(&app).await;
    for path in ADMIN_READS {
        let (status, retry_after, body) = get(&app, path).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path} during the outage: {body}"
        );
        assert_eq!(retry_after.as_deref(), Some("5"), "{path}");
        let object = body.as_object().expect("a JSON object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "detail"], "{path}: {body}");
        assert_eq!(body["code"], "unavailable", "{path}");
        let detail = body["detail"].as_str().expect("a text detail");
        for internal in [
            app.database.name.as_str(),
            "connection",
            "sqlx",
            "SQLSTATE",
            "returned from database",
            "pool",
        ] {
            assert!(
                !detail.contains(internal),
                "{path} reveals {internal:?}: {detail}"
            );
        }
    }

    bring_the_database_back(&app).await;
    for path in ADMIN_READS {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _, body) = get(&app, path).await;
            if status == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not recover: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
