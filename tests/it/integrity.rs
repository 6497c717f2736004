//! What the store keeps consistent by itself since events and delivery jobs have no foreign
//! keys (migration 0009): a destination's deletion takes its jobs with it, and the hot tables
//! carry no per-row foreign key checks.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::app::TestApp;
use wasmhook_testkit::receiver::{Receiver, Reply};

const TOKEN: &str = "integrity-test-admin-token-of-32-characters-or-more";

async fn spawn(receiver: &Receiver) -> TestApp {
    TestApp::spawn(&format!(
        r#"
[admin]
token = "{TOKEN}"

[[sources]]
name = "acme"
plugin = "generic"
config = '{{"signature": {{"scheme": "none"}}, "type_pointer": "/type"}}'

[[destinations]]
name = "doomed"
url = "{}"
routes = ["order.*"]
allow_private_networks = true
"#,
        receiver.url("/doomed")
    ))
    .await
}

async fn jobs_for(app: &TestApp, destination: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM delivery_jobs WHERE destination_name = $1")
        .bind(destination)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn deleting_a_destination_deletes_its_jobs_and_a_new_one_of_that_name_inherits_none() {
    // The receiver fails, so the jobs stay pending: a destination of the same name created
    // later would deliver them if they survived.
    let receiver = Receiver::start(vec![], Reply::Status(503)).await;
    let app = spawn(&receiver).await;
    for number in 0..3 {
        let response = app
            .post(
                "acme",
                &[],
                format!(r#"{{"type":"order.paid","n":{number}}}"#),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(jobs_for(&app, "doomed").await, 3);

    let (status, _) = app.admin_delete("/admin/v1/destinations/doomed").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(jobs_for(&app, "doomed").await, 0, "the jobs went with it");
    let orphan_attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_attempts a
         WHERE NOT EXISTS (SELECT 1 FROM delivery_jobs j WHERE j.id = a.job_id)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(orphan_attempts, 0, "and their attempts with them");

    let (status, _) = app
        .admin_post(
            "/admin/v1/destinations",
            &json!({"name": "doomed", "url": receiver.url("/reborn"), "routes": ["order.*"], "allow_private_networks": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        jobs_for(&app, "doomed").await,
        0,
        "a new destination of the same name inherits no job"
    );
}

#[tokio::test]
async fn the_ingest_tables_check_no_foreign_key_per_row() {
    let receiver = Receiver::start(vec![], Reply::Status(204)).await;
    let app = spawn(&receiver).await;
    let foreign_keys: Vec<String> = sqlx::query_scalar(
        "SELECT conrelid::regclass::text || ' -> ' || confrelid::regclass::text
         FROM pg_constraint
         WHERE contype = 'f' AND conrelid::regclass::text IN ('raw_requests', 'events', 'delivery_jobs')
         ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(foreign_keys, Vec::<String>::new());
}
