//! POST /webhooks/{source} against a real host, real PostgreSQL and real plugins.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wasmhook::signature::{self, MacEncoding, Secret, SignatureScheme};
use wasmhook::store::embedded_postgres::{ClusterOptions, EmbeddedPostgres};

use support::app::TestApp;

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const SOURCES: &str = r#"
[[sources]]
name = "github"
plugin = "github"
secrets = ["old-retired-secret", "It's a Secret to Everybody"]

[[sources]]
name = "netflix"
plugin = "netflix"
secrets = ["catalogue-secret"]

[[sources]]
name = "acme"
plugin = "generic"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
config = '{"type_pointer": "/type"}'

[[sources]]
name = "stripeish"
plugin = "generic"
secrets = ["whsec_test_secret"]
config = '{"signature": {"scheme": "stripe"}, "type_pointer": "/type"}'

[[sources]]
name = "slackish"
plugin = "generic"
secrets = ["8f742231b10e8888abcd99yyyzzz85a5"]
config = '{"signature": {"scheme": "slack"}}'

[[sources]]
name = "shopifyish"
plugin = "generic"
secrets = ["hush"]
config = '{"signature": {"scheme": "hmac-sha256", "header": "X-Shopify-Hmac-Sha256", "encoding": "base64"}, "id_header": "X-Shopify-Webhook-Id"}'

[[sources]]
name = "gitlabish"
plugin = "generic"
secrets = ["glpat-token"]
config = '{"signature": {"scheme": "shared-token", "header": "X-Gitlab-Token"}}'

[[sources]]
name = "limited"
plugin = "generic"
config = '{"signature": {"scheme": "none"}}'
rate_limit = { requests_per_second = 0.5, burst = 2 }

[[sources]]
name = "hostile"
plugin = "hostile"
config = "endless-loop"

[[destinations]]
name = "ci"
url = "http://127.0.0.1:9/ci"
routes = ["github.push", "github.pull_request.*"]

[[destinations]]
name = "catalogue"
url = "http://127.0.0.1:9/catalogue"
routes = ["netflix.*"]

[[destinations]]
name = "everything"
url = "http://127.0.0.1:9/all"
routes = ["*"]
"#;

fn push_body() -> Vec<u8> {
    std::fs::read(support::repository_root().join("tests/fixtures/github/push.json")).unwrap()
}

fn github_headers(body: &[u8], delivery: &str, secret: &str) -> Vec<(String, String)> {
    wasmhook_testkit::signed::github_push_headers(body, delivery, secret)
}

async fn json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

#[tokio::test]
async fn a_signed_github_push_is_stored_with_one_job_per_matching_destination() {
    let app = TestApp::spawn(SOURCES).await;
    let body = push_body();
    let (status, answer) = app
        .post_webhook(
            "github",
            &github_headers(&body, "delivery-1", GITHUB_SECRET),
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let event_id: uuid::Uuid = answer["event_id"].as_str().unwrap().parse().unwrap();

    let (stored_body, event_type, destinations): (Vec<u8>, String, Vec<String>) = sqlx::query_as(
        "SELECT r.body, e.event_type,
                ARRAY(SELECT destination_name FROM delivery_jobs j WHERE j.event_row_id = e.id ORDER BY 1)
         FROM events e JOIN raw_requests r ON r.id = e.raw_request_id WHERE e.id = $1",
    )
    .bind(event_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored_body, body, "the exact body bytes are kept");
    assert_eq!(event_type, "github.push");
    assert_eq!(destinations, vec!["ci".to_owned(), "everything".to_owned()]);
}

#[tokio::test]
async fn tampering_with_body_signature_or_secret_is_refused_and_stores_nothing() {
    let app = TestApp::spawn(SOURCES).await;
    let body = push_body();
    let mut tampered_body = body.clone();
    tampered_body[100] ^= 1;
    let cases = [
        (
            "one body byte",
            github_headers(&body, "d", GITHUB_SECRET),
            tampered_body,
        ),
        (
            "wrong secret",
            github_headers(&body, "d", "not the secret"),
            body.clone(),
        ),
        (
            "no signature",
            vec![
                ("x-github-event".to_owned(), "push".to_owned()),
                ("x-github-delivery".to_owned(), "d".to_owned()),
            ],
            body.clone(),
        ),
    ];
    for (what, headers, body) in cases {
        let (status, answer) = app.post_webhook("github", &headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert_eq!(answer["code"], "invalid_signature", "{what}");
        assert!(answer["detail"].as_str().unwrap().len() > 5, "{what}");
        assert!(
            !answer.to_string().contains(GITHUB_SECRET),
            "no secret in the answer"
        );
    }
    assert_eq!(app.counts().await, Default::default());
}

#[tokio::test]
async fn every_secret_of_a_rotation_is_accepted() {
    let app = TestApp::spawn(SOURCES).await;
    for (index, (delivery, secret)) in [("r-1", "old-retired-secret"), ("r-2", GITHUB_SECRET)]
        .into_iter()
        .enumerate()
    {
        // A body of its own per delivery (trailing newlines): the same body again would be a
        // replayed duplicate.
        let body = [push_body(), b"\n".repeat(index)].concat();
        let response = app
            .post(
                "github",
                &github_headers(&body, delivery, secret),
                body.clone(),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "secret for {delivery}"
        );
    }
}

/// Each scheme with a correctly signed request, then the same request with one byte of the
/// body changed.
#[tokio::test]
async fn every_signature_scheme_accepts_its_signature_and_refuses_tampering() {
    let app = TestApp::spawn(SOURCES).await;
    let now = chrono::Utc::now().timestamp();
    let slack = SignatureScheme::VersionedHmac {
        signature_header: "x-slack-signature".into(),
        timestamp_header: "x-slack-request-timestamp".into(),
        version: "v0".into(),
    };
    let shopify = SignatureScheme::BodyHmac {
        header: "x-shopify-hmac-sha256".into(),
        prefix: String::new(),
        encoding: MacEncoding::Base64,
    };
    let gitlab = SignatureScheme::SharedToken {
        header: "x-gitlab-token".into(),
    };
    let cases = [
        ("acme", SignatureScheme::StandardWebhooks, STANDARD_SECRET),
        ("stripeish", SignatureScheme::Stripe, "whsec_test_secret"),
        ("slackish", slack, "8f742231b10e8888abcd99yyyzzz85a5"),
        ("shopifyish", shopify, "hush"),
        ("gitlabish", gitlab, "glpat-token"),
    ];
    for (index, (source, scheme, secret)) in cases.into_iter().enumerate() {
        let body = format!(r#"{{"type":"thing.happened","n":{index}}}"#).into_bytes();
        let message_id = format!("msg_{index}");
        let headers =
            signature::sign(&scheme, &Secret::new(secret), &body, &message_id, now).unwrap();
        let (status, answer) = app.post_webhook(source, &headers, body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{source}: {answer}");
        let mut tampered = body.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 1;
        let (status, answer) = app.post_webhook(source, &headers, tampered).await;
        if source == "gitlabish" {
            // A shared token signs nothing, so a changed body still passes.
            assert_eq!(status, StatusCode::ACCEPTED, "{source}: {answer}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{source}: {answer}");
        }
    }
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let app = TestApp::spawn(SOURCES).await;
    let body = br#"{"type":"x"}"#.to_vec();
    // The host's clock only moves forward while the request travels: a past timestamp only gets
    // staler, so it keeps the exact boundary, while a future one gets closer to the host's clock
    // by the request's latency, so it keeps a margin that a loaded machine cannot eat. The exact
    // boundaries on both sides are in signature.rs's table, where `now` is a parameter.
    for offset in [-301, 330, -3600] {
        let timestamp = chrono::Utc::now().timestamp() + offset;
        let headers = signature::sign(
            &SignatureScheme::StandardWebhooks,
            &Secret::new(STANDARD_SECRET),
            &body,
            "msg_stale",
            timestamp,
        )
        .unwrap();
        let (status, answer) = app.post_webhook("acme", &headers, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "offset {offset}: {answer}"
        );
        assert_eq!(answer["code"], "stale_signature");
    }
    assert_eq!(app.counts().await.events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_identical_requests_store_exactly_one_event() {
    let app = TestApp::spawn(SOURCES).await;
    let body = push_body();
    let headers = github_headers(&body, "the-same-delivery", GITHUB_SECRET);
    let requests = (0..50).map(|_| app.post("github", &headers, body.clone()));
    let answers = futures::future::join_all(requests).await;
    let mut accepted = 0;
    let mut duplicates = 0;
    let mut event_ids = std::collections::BTreeSet::new();
    for answer in answers {
        let (status, answer) = json(answer).await;
        match status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::OK => {
                assert_eq!(answer["status"], "duplicate");
                duplicates += 1;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
        event_ids.insert(answer["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!((accepted, duplicates), (1, 49));
    assert_eq!(event_ids.len(), 1, "every answer names the first event");
    let counts = app.counts().await;
    assert_eq!((counts.events, counts.raw_requests), (1, 1));
    let listed = wasmhook::store::events::list_events(
        &app.pool,
        &wasmhook::store::events::EventFilter {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        listed[0].duplicates_suppressed, 49,
        "the event shows how many duplicates were suppressed"
    );
}

#[tokio::test]
async fn each_status_code_with_a_clear_error_body() {
    let app = TestApp::spawn(SOURCES).await;

    let (status, answer) = app.post_webhook("nobody", &[], "{}").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_source"))
    );

    let huge = vec![b'a'; 1_048_577];
    let (status, answer) = app.post_webhook("acme", &[], huge.clone()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        huge.chunks(65536).map(|chunk| Ok(chunk.to_vec())).collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, _) = app.post_webhook("acme", &[], streamed).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "a chunked body without a length"
    );

    let netflix_body = br#"{"event_type":"content_added","platform":"hulu","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"1","title":"t"}}"#;
    let scheme = SignatureScheme::BodyHmac {
        header: "x-webhook-signature".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    };
    let headers = signature::sign(
        &scheme,
        &Secret::new("catalogue-secret"),
        netflix_body,
        "",
        0,
    )
    .unwrap();
    let (status, answer) = app
        .post_webhook("netflix", &headers, netflix_body.to_vec())
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid"))
    );
    assert!(
        answer["detail"].as_str().unwrap().contains("platform"),
        "{answer}"
    );

    let not_json = b"this is not json".to_vec();
    let mut headers = github_headers(&not_json, "d-bad", GITHUB_SECRET);
    let (status, answer) = app.post_webhook("github", &headers, not_json).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed"))
    );

    // A ping is a handshake: answered by the plugin, nothing stored.
    let ping = br#"{"zen":"Design for failure.","hook_id":1}"#.to_vec();
    headers = github_headers(&ping, "d-ping", GITHUB_SECRET);
    headers.retain(|(name, _)| name != "x-github-event");
    headers.push(("x-github-event".into(), "ping".into()));
    let response = app.post("github", &headers, ping).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"status":"pong"}"#);

    for attempt in 0..2 {
        let response = app
            .post("limited", &[], format!(r#"{{"n":{attempt}}}"#))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "burst request {attempt}"
        );
    }
    let response = app.post("limited", &[], r#"{"n":2}"#).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let (_, answer) = json(response).await;
    assert_eq!(answer["code"], "rate_limited");

    let counts = app.counts().await;
    assert_eq!(
        counts.events, 2,
        "only the two requests within the burst were stored"
    );
}

#[tokio::test]
async fn a_failing_plugin_quarantines_the_webhook_instead_of_losing_it() {
    let app = TestApp::spawn(SOURCES).await;
    let (status, answer) = app.post_webhook("hostile", &[], r#"{"keep":"me"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "quarantined");
    let request_id: uuid::Uuid = answer["request_id"].as_str().unwrap().parse().unwrap();
    let (body, status, error): (Vec<u8>, String, Option<String>) =
        sqlx::query_as("SELECT body, status, error FROM raw_requests WHERE id = $1")
            .bind(request_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(body, br#"{"keep":"me"}"#);
    assert_eq!(status, "quarantined");
    assert!(error.unwrap().contains("deadline"));
    // The host keeps serving other sources.
    let response = app.post("limited", &[], r#"{"after":"quarantine"}"#).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_restarted_host_keeps_everything_it_stored() {
    let mut app = TestApp::spawn(SOURCES).await;
    let body = push_body();
    let headers = github_headers(&body, "before-restart", GITHUB_SECRET);
    let (_, first) = app.post_webhook("github", &headers, body.clone()).await;
    let before = app.counts().await;
    app.restart().await;
    assert_eq!(app.counts().await, before);
    let (status, again) = app.post_webhook("github", &headers, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["event_id"], first["event_id"],
        "dedupe survives the restart"
    );
}

/// With PostgreSQL stopped the host answers 503 with Retry-After and never a 2xx; when it
/// returns, the host recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_the_host_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || {
            EmbeddedPostgres::start(
                &path,
                ClusterOptions {
                    throwaway: true,
                    ..ClusterOptions::default()
                },
            )
            .unwrap()
        }
    })
    .await
    .unwrap();
    wasmhook::store::create_database_if_missing(&cluster.url("postgres"), "wasmhook")
        .await
        .unwrap();
    let plugins = support::built_component("plugins", "generic");
    let config_text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[database]
url = "{url}"
acquire_timeout_seconds = 1
[plugins]
dir = "{dir}"
compiled_cache_dir = "{cache}"
[[sources]]
name = "acme"
plugin = "generic"
config = '{{"signature": {{"scheme": "none"}}}}'
"#,
        url = cluster.url("wasmhook"),
        dir = plugins.parent().unwrap().display(),
        cache = support::shared_compiled_cache().display(),
    );
    let server =
        wasmhook::app::serve::start(wasmhook::config::Config::from_toml(&config_text).unwrap())
            .await
            .unwrap();
    let url = format!("http://{}/webhooks/acme", server.address);
    let client = reqwest::Client::new();
    let post = |n: u32| client.post(&url).body(format!(r#"{{"n":{n}}}"#)).send();

    assert_eq!(post(1).await.unwrap().status(), StatusCode::ACCEPTED);
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap();
        cluster
    })
    .await
    .unwrap();
    for n in 2..5 {
        let response = post(n).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        let (_, answer) = json(response).await;
        assert_eq!(answer["code"], "unavailable");
        assert!(
            !answer["detail"].as_str().unwrap().contains("postgres"),
            "nothing internal"
        );
    }
    let readiness = client
        .get(format!("http://{}/readyz", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE);
    let liveness = client
        .get(format!("http://{}/healthz", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        liveness.status(),
        StatusCode::OK,
        "alive even while not ready"
    );
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart().unwrap();
        cluster
    })
    .await
    .unwrap();
    let mut recovered = false;
    for attempt in 0..50 {
        let response = post(100 + attempt).await.unwrap();
        if response.status() == StatusCode::ACCEPTED {
            recovered = true;
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the host recovered without a restart");
    let counts = wasmhook::store::events::stored_counts(&server.pool)
        .await
        .unwrap();
    assert_eq!(
        counts.events, 2,
        "the two 2xx'd events, nothing from the outage"
    );
    server.shutdown().await.unwrap();
    tokio::task::spawn_blocking(move || cluster.stop().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_command_posts_a_correctly_signed_webhook() {
    let app = TestApp::spawn(SOURCES).await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let config_path = app.plugins_dir.path().join("send.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"{address}\"\n[plugins]\ndir = \"{}\"\ncompiled_cache_dir = \"{}\"\n{SOURCES}",
            app.plugins_dir.path().display(),
            support::shared_compiled_cache().display()
        ),
    )
    .unwrap();
    let body_path = support::repository_root().join("tests/fixtures/github/push.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .arg("send")
        .arg("--config")
        .arg(&config_path)
        .args(["--source", "github", "-H", "X-GitHub-Event: push", "--body"])
        .arg(&body_path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("202 "), "{stdout}");
    assert!(stdout.contains("\"accepted\""), "{stdout}");
    assert_eq!(app.counts().await.events, 1);
}

/// A client that trickles its headers is disconnected after the header timeout, while other
/// clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_disconnected_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(SOURCES).await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /webhooks/limited HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    for round in 0..40 {
        // One more header byte every 100 ms: never a complete request.
        if slow.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        if round == 3 {
            let response = app.post("limited", &[], r#"{"while":"slow"}"#).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED, "others are served");
        }
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(closed, "the slow client was disconnected");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the 1 s header timeout (and some slack)"
    );
}

/// The Shopify plugin with the derived Shopify vector, and the GitLab plugin with its shared
/// token, through the whole ingest path.
#[tokio::test]
async fn shopify_and_gitlab_webhooks_are_verified_and_normalized() {
    let app = TestApp::spawn(
        r#"
[[sources]]
name = "shop"
plugin = "shopify"
secrets = ["hush"]

[[sources]]
name = "gitlab"
plugin = "gitlab"
secrets = ["glpat-secret-token"]
"#,
    )
    .await;
    let order = br#"{"id":9554194432293,"title":"T-Shirt"}"#.to_vec();
    let shopify_headers = |signature: &str| {
        vec![
            ("x-shopify-hmac-sha256".to_owned(), signature.to_owned()),
            ("x-shopify-topic".to_owned(), "products/create".to_owned()),
            (
                "x-shopify-webhook-id".to_owned(),
                "shopify-delivery-1".to_owned(),
            ),
        ]
    };
    let (status, answer) = app
        .post_webhook(
            "shop",
            &shopify_headers("yi2xVY9/ZkF2VJ6a0kqiyUGNRkBwBHgakWO+Gsh1My8="),
            order.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, _) = app
        .post_webhook(
            "shop",
            &shopify_headers("zi2xVY9/ZkF2VJ6a0kqiyUGNRkBwBHgakWO+Gsh1My8="),
            order,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let push = br#"{"object_kind":"push","project":{"path_with_namespace":"group/app"}}"#.to_vec();
    let gitlab_headers = |token: &str| {
        vec![
            ("x-gitlab-token".to_owned(), token.to_owned()),
            ("x-gitlab-event".to_owned(), "Push Hook".to_owned()),
            (
                "x-gitlab-event-uuid".to_owned(),
                "gitlab-delivery-1".to_owned(),
            ),
        ]
    };
    let (status, _) = app
        .post_webhook(
            "gitlab",
            &gitlab_headers("glpat-secret-token"),
            push.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = app
        .post_webhook("gitlab", &gitlab_headers("glpat-wrong"), push)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let types: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT event_type, subject FROM events ORDER BY event_type")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        types,
        vec![
            ("gitlab.push".to_owned(), Some("group/app".to_owned())),
            (
                "shopify.products.create".to_owned(),
                Some("products/9554194432293".to_owned())
            ),
        ]
    );
}

/// The JavaScript (stripe) and Python (slack) plugins serve in a real host like the Rust ones.
#[tokio::test]
async fn the_javascript_and_python_plugins_serve_real_requests() {
    let app = TestApp::spawn(
        r#"
[[sources]]
name = "stripe"
plugin = "stripe"
secrets = ["whsec_stripe_test_secret"]

[[sources]]
name = "slack"
plugin = "slack"
secrets = ["slack-test-signing-secret"]
"#,
    )
    .await;
    let now = chrono::Utc::now().timestamp();

    let stripe_body = r#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1680064028,"data":{"object":{"id":"pi_1","object":"payment_intent"}}}"#;
    let stripe_headers = signature::sign(
        &SignatureScheme::Stripe,
        &Secret::new("whsec_stripe_test_secret"),
        stripe_body.as_bytes(),
        "",
        now,
    )
    .unwrap();
    let (status, answer) = app
        .post_webhook("stripe", &stripe_headers, stripe_body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, answer) = app
        .post_webhook("stripe", &stripe_headers, stripe_body)
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "Stripe's event id dedupes"
    );
    let tampered = stripe_body.replace("pi_1", "pi_2");
    let status = app.post("stripe", &stripe_headers, tampered).await.status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let slack_scheme = SignatureScheme::VersionedHmac {
        signature_header: "x-slack-signature".to_owned(),
        timestamp_header: "x-slack-request-timestamp".to_owned(),
        version: "v0".to_owned(),
    };
    let handshake = r#"{"token":"t","challenge":"the-challenge","type":"url_verification"}"#;
    let headers = signature::sign(
        &slack_scheme,
        &Secret::new("slack-test-signing-secret"),
        handshake.as_bytes(),
        "",
        now,
    )
    .unwrap();
    let response = app.post("slack", &headers, handshake).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("the-challenge"));
    let event = r#"{"type":"event_callback","team_id":"T1","event_id":"Ev1","event_time":1680064028,"event":{"type":"app_mention","user":"U1","channel":"C1","text":"hi","ts":"1.2"}}"#;
    let headers = signature::sign(
        &slack_scheme,
        &Secret::new("slack-test-signing-secret"),
        event.as_bytes(),
        "",
        now,
    )
    .unwrap();
    let (status, answer) = app.post_webhook("slack", &headers, event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // Slack retries with the same body, signed again a little later, and says so in a header:
    // the body's event_id makes it a duplicate.
    let mut retry = signature::sign(
        &slack_scheme,
        &Secret::new("slack-test-signing-secret"),
        event.as_bytes(),
        "",
        now + 1,
    )
    .unwrap();
    retry.push(("x-slack-retry-num".to_owned(), "1".to_owned()));
    retry.push(("x-slack-retry-reason".to_owned(), "http_timeout".to_owned()));
    let (status, answer) = app.post_webhook("slack", &retry, event).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "a Slack retry dedupes on event_id: {answer}"
    );
    let counts = app.counts().await;
    assert_eq!(
        (counts.events, counts.raw_requests),
        (2, 2),
        "one Stripe and one Slack event; the handshake stored nothing"
    );
}
