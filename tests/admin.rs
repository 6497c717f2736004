//! The admin API over HTTP: authentication, destinations, events, replay, and the OpenAPI
//! document checked against the routes that exist.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use support::app::TestApp;
use support::receiver::{Receiver, Reply};

const TOKEN: &str = "test-admin-token";

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
name = "configured"
url = "{}"
routes = ["order.*"]
allow_private_networks = true
"#,
        receiver.url("/configured")
    ))
    .await
}

async fn admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base_url))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_admin_request_needs_the_token() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = spawn(&receiver).await;
    let url = format!("{}/admin/v1/destinations", app.base_url);
    let missing = app.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("not-it")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
}

#[tokio::test]
async fn destinations_are_managed_with_write_only_secrets_and_clear_errors() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = spawn(&receiver).await;

    let (status, listed) = admin(&app, Method::GET, "/admin/v1/destinations", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed[0]["name"], "configured",
        "config destinations are in the database"
    );
    assert!(
        !listed.to_string().contains("whsec_"),
        "no secret is ever returned"
    );

    let new_destination = json!({
        "name": "api-made",
        "url": receiver.url("/api-made"),
        "routes": ["*"],
        "allow_private_networks": true,
        "retry_schedule_seconds": [0, 0.05]
    });
    let (status, created) = admin(
        &app,
        Method::POST,
        "/admin/v1/destinations",
        Some(new_destination.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let generated = created["generated_signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(generated.starts_with("whsec_"));
    let (status, conflict) = admin(
        &app,
        Method::POST,
        "/admin/v1/destinations",
        Some(new_destination),
    )
    .await;
    assert_eq!(
        (status, conflict["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );

    let (status, fetched) = admin(&app, Method::GET, "/admin/v1/destinations/api-made", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["has_signing_secret"], true);
    assert!(
        !fetched.to_string().contains(&generated),
        "the secret is shown only once"
    );
    assert_eq!(fetched["stats"]["delivered"], 0);

    let invalid = [
        (json!({"name": "x", "url": "ftp://nope"}), "url"),
        (
            json!({"name": "x", "url": "http://127.0.0.1/", "routes": ["a["]}),
            "routes",
        ),
        (
            json!({"name": "x", "url": "http://127.0.0.1/", "secret": "env:HOME"}),
            "secret",
        ),
        (
            json!({"name": "x", "url": "http://127.0.0.1/", "max_concurrency": 0}),
            "max_concurrency",
        ),
        (
            json!({"name": "x", "url": "http://127.0.0.1/", "surprise": 1}),
            "body",
        ),
        (json!({"url": "http://127.0.0.1/"}), "body"),
    ];
    for (body, field) in invalid {
        let (status, error) = admin(
            &app,
            Method::POST,
            "/admin/v1/destinations",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error["code"], "invalid_input");
        assert!(
            error["detail"].as_str().unwrap().starts_with(field),
            "{body}: {error}"
        );
    }

    let (status, updated) = admin(
        &app,
        Method::PUT,
        "/admin/v1/destinations/api-made",
        Some(json!({"name": "api-made", "url": receiver.url("/moved"), "routes": ["order.*"], "allow_private_networks": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["routes"], json!(["order.*"]));
    assert_eq!(
        updated["has_signing_secret"], true,
        "an update without a secret keeps it"
    );
    let (status, _) = admin(
        &app,
        Method::PUT,
        "/admin/v1/destinations/api-made",
        Some(json!({"name": "renamed", "url": receiver.url("/x")})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, paused) = admin(
        &app,
        Method::POST,
        "/admin/v1/destinations/api-made/pause",
        None,
    )
    .await;
    assert_eq!(
        (status, paused["paused"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, resumed) = admin(
        &app,
        Method::POST,
        "/admin/v1/destinations/api-made/resume",
        None,
    )
    .await;
    assert_eq!(
        (status, resumed["paused"].as_bool()),
        (StatusCode::OK, Some(false))
    );

    for (method, path) in [
        (Method::GET, "/admin/v1/destinations/nobody"),
        (Method::DELETE, "/admin/v1/destinations/nobody"),
        (Method::POST, "/admin/v1/destinations/nobody/pause"),
        (
            Method::GET,
            "/admin/v1/events/00000000-0000-0000-0000-000000000000",
        ),
        (Method::GET, "/admin/v1/events/not-a-uuid"),
    ] {
        let (status, error) = admin(&app, method.clone(), path, None).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{method} {path}"
        );
    }

    let (status, _) = admin(
        &app,
        Method::DELETE,
        "/admin/v1/destinations/api-made",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin(&app, Method::GET, "/admin/v1/destinations/api-made", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_destination_created_over_the_api_receives_events_at_once() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = spawn(&receiver).await;
    let (status, _) = admin(
        &app,
        Method::POST,
        "/admin/v1/destinations",
        Some(json!({"name": "late", "url": receiver.url("/late"), "routes": ["signup.*"], "allow_private_networks": true})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let response = app
        .post("acme", &[], r#"{"type":"signup.completed"}"#)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let requests = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(requests.len(), 1);
    let event: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(event["type"], "signup.completed");
}

#[tokio::test]
async fn events_are_listed_with_filters_and_cursors_and_shown_whole() {
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(200)).await;
    let app = spawn(&receiver).await;
    for number in 0..5 {
        let kind = if number % 2 == 0 {
            "order.paid"
        } else {
            "order.refunded"
        };
        let response = app
            .post("acme", &[], format!(r#"{{"type":"{kind}","n":{number}}}"#))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(cursor) => format!("/admin/v1/events?limit=2&cursor={cursor}"),
            None => "/admin/v1/events?limit=2".to_owned(),
        };
        let (status, page) = admin(&app, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for event in page["events"].as_array().unwrap() {
            seen.push(event["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (5, 5),
        "every event once across pages"
    );

    let (_, refunds) = admin(
        &app,
        Method::GET,
        "/admin/v1/events?type=order.refunded",
        None,
    )
    .await;
    assert_eq!(refunds["events"].as_array().unwrap().len(), 2);
    let (status, error) = admin(&app, Method::GET, "/admin/v1/events?limit=0", None).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input"))
    );
    let (status, _) = admin(&app, Method::GET, "/admin/v1/events?status=lost", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let first = &seen[seen.len() - 1];
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let (status, detail) = admin(
            &app,
            Method::GET,
            &format!("/admin/v1/events/{first}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        if detail["deliveries"][0]["state"] == "delivered" || Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(detail["data"]["n"], 0);
    assert_eq!(
        detail["raw_request"]["body"],
        r#"{"type":"order.paid","n":0}"#
    );
    assert_eq!(detail["deliveries"][0]["destination"], "configured");
    assert_eq!(detail["deliveries"][0]["state"], "delivered");
    let attempts = detail["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "the 500 and the 200: {detail}");
    assert_eq!(attempts[0]["status_code"], 500);

    let (status, dry) = admin(
        &app,
        Method::POST,
        "/admin/v1/replay",
        Some(json!({"destination": "configured", "states": ["delivered"], "dry_run": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dry["count"], 5);
    let (status, error) = admin(
        &app,
        Method::POST,
        "/admin/v1/replay",
        Some(json!({"states": ["lost"]})),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input"))
    );
    let (status, replayed) = admin(
        &app,
        Method::POST,
        "/admin/v1/replay",
        Some(json!({"event_id": first})),
    )
    .await;
    assert_eq!(
        (status, replayed["count"].as_i64()),
        (StatusCode::OK, Some(1))
    );
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_that_exist() {
    let receiver = Receiver::start(vec![], Reply::Status(200)).await;
    let app = spawn(&receiver).await;
    let document: Value = app
        .client
        .get(format!("{}/admin/v1/openapi.json", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let concrete = path
                .replace("{name}", "nobody")
                .replace("{id}", "00000000-0000-0000-0000-000000000000");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .client
                .request(method.clone(), format!("{}{concrete}", app.base_url))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                status != StatusCode::NOT_FOUND || body.contains("not_found"),
                "{method} {path} is documented but not routed"
            );
            assert!(
                !status.is_server_error(),
                "{method} {path}: {status} {body}"
            );
        }
    }
    assert_eq!(operations, 14, "every admin operation is documented");
}

#[tokio::test]
async fn the_admin_api_can_listen_on_its_own_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn(&format!(
        "[admin]\ntoken = \"{TOKEN}\"\nlisten = \"127.0.0.1:{port}\"\n[[sources]]\nname = \"acme\"\nplugin = \"generic\"\n"
    ))
    .await;
    let on_admin_address = app
        .client
        .get(format!("http://127.0.0.1:{port}/admin/v1/destinations"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(on_admin_address.status(), StatusCode::OK);
    let on_main_address = app
        .client
        .get(format!("{}/admin/v1/destinations", app.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        on_main_address.status(),
        StatusCode::NOT_FOUND,
        "not served on the webhook address"
    );
}
