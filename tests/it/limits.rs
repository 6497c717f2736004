//! Limits an unauthenticated client meets: the per-address limit taken before authentication,
//! the source's limit taken only after it, the connection cap, the body read deadline, HTTP/2
//! off by default, lingering after early answers, and the admin API's own listener with its
//! login throttle. Everything over real connections to a real host.

use crate::support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::app::TestApp;

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const TOKEN: &str = "limits-admin-token-of-at-least-32-characters";

const SOURCES: &str = r#"
[[sources]]
name = "github"
plugin = "github"
secrets = ["It's a Secret to Everybody"]
rate_limit = { requests_per_second = 0.001, burst = 2 }

[[sources]]
name = "open"
plugin = "generic"
config = '{"signature": {"scheme": "none"}}'
"#;

fn with_admin(sources: &str) -> String {
    format!("[admin]\ntoken = \"{TOKEN}\"\n{sources}")
}

/// A push signed like GitHub signs it (the HMAC computed here with the `hmac` crate, not by the
/// host's signing code), with its own delivery id.
fn signed_push(delivery: &str) -> (Vec<(String, String)>, Vec<u8>) {
    use hmac::Mac;
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"a","after":"b","pusher":{{"name":"p"}},"delivery":"{delivery}"}}"#
    )
    .into_bytes();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = vec![
        ("x-hub-signature-256".to_owned(), signature),
        ("x-github-event".to_owned(), "push".to_owned()),
        ("x-github-delivery".to_owned(), delivery.to_owned()),
    ];
    (headers, body)
}

fn unsigned_push(delivery: &str) -> Vec<(String, String)> {
    vec![
        ("x-github-event".to_owned(), "push".to_owned()),
        ("x-github-delivery".to_owned(), delivery.to_owned()),
    ]
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].is_string(), "{body}");
    body["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn unsigned_requests_do_not_spend_the_sources_rate_limit() {
    let app = TestApp::spawn(SOURCES).await;
    for attempt in 0..50 {
        let response = app
            .post(
                "github",
                &unsigned_push(&format!("junk-{attempt}")),
                r#"{"ref":"x"}"#,
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "unsigned request {attempt}"
        );
    }
    let (headers, body) = signed_push("real-1");
    let response = app.post("github", &headers, body).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the platform's signed request after 50 unsigned ones"
    );
    // The source's own limit still holds for verified requests: burst 2, then 429.
    let (headers, body) = signed_push("real-2");
    assert_eq!(
        app.post("github", &headers, body).await.status(),
        StatusCode::ACCEPTED
    );
    let (headers, body) = signed_push("real-3");
    let response = app.post("github", &headers, body).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(response).await, "rate_limited");
}

/// A client that connects from `local` (any address of 127.0.0.0/8 is this machine).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_pre_authentication_limit_answers_429_per_client_address() {
    let app = TestApp::spawn_with_overrides(
        SOURCES,
        "[server]\npre_auth_rate_limit = { requests_per_second = 0.001, burst = 3 }\n",
    )
    .await;
    let url = format!("{}/webhooks/open", app.base_url);
    let first = client_from("127.0.0.1");
    let body = |number: usize| format!(r#"{{"number":{number}}}"#);
    for attempt in 0..3 {
        let response = first.post(&url).body(body(attempt)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "request {attempt}");
    }
    let refused = first.post(&url).body(body(3)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(error_code(refused).await, "rate_limited");
    // Even a request for an unknown source is refused before it is looked at.
    let unknown = first
        .post(format!("{}/webhooks/nobody", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address has its own bucket.
    let second = client_from("127.0.0.2");
    let response = second.post(&url).body(body(4)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let counts = app.counts().await;
    assert_eq!(counts.raw_requests, 4, "refused requests store nothing");
}

/// Sends `request` on `stream` and reads one answer: its status and the whole text.
async fn round_trip(stream: &mut TcpStream, request: &[u8]) -> (u16, String) {
    stream.write_all(request).await.unwrap();
    read_answer(stream).await.expect("an answer")
}

/// Reads one HTTP/1.1 answer (head and Content-Length body), at most ten seconds; `None` when
/// the connection closes or fails first.
async fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = answer.windows(4).position(|window| window == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&answer).into_owned();
            let length = text[..end]
                .to_ascii_lowercase()
                .lines()
                .find_map(|line| line.strip_prefix("content-length:").map(str::to_owned))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                let status = text.get(9..12)?.parse().ok()?;
                return Some((status, text));
            }
        }
        let remaining = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(count)) => answer.extend_from_slice(&buffer[..count]),
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test]
async fn beyond_the_connection_cap_a_connection_waits_until_another_closes() {
    let app = TestApp::spawn_with_overrides(
        SOURCES,
        "[server]\nmax_connections = 2\nheader_read_timeout_seconds = 60\n",
    )
    .await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut first = TcpStream::connect(&address).await.unwrap();
    let mut second = TcpStream::connect(&address).await.unwrap();
    assert_eq!(round_trip(&mut first, HEALTHZ).await.0, 200);
    assert_eq!(round_trip(&mut second, HEALTHZ).await.0, 200);

    let mut third = TcpStream::connect(&address).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    // The host keeps serving the two open connections, and the third gets nothing meanwhile.
    assert_eq!(round_trip(&mut first, HEALTHZ).await.0, 200);
    assert_eq!(round_trip(&mut second, HEALTHZ).await.0, 200);
    let mut peek = [0u8; 1];
    match third.try_read(&mut peek) {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the third connection was served while two were open: {other:?}"),
    }

    drop(first);
    let (status, _) = read_answer(&mut third)
        .await
        .expect("the waiting connection is served once one closes");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_body_that_stalls_midway_is_answered_408() {
    let app =
        TestApp::spawn_with_overrides(SOURCES, "[server]\nbody_read_timeout_seconds = 1\n").await;
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /webhooks/open HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"partial\":")
        .await
        .unwrap();
    let (status, text) = read_answer(&mut stream).await.expect("an answer");
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("\"code\":\"body_read_timeout\""), "{text}");
    assert!(text.contains("\"detail\""), "{text}");
    assert_eq!(app.counts().await.raw_requests, 0);
}

/// The client preface of HTTP/2 with prior knowledge, and an empty SETTINGS frame.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Everything the host sends after `request` until it closes (at most five seconds).
async fn everything_answered(address: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    // The host may close before the whole request is written.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Ok(Ok(count)) if count > 0 => answer.extend_from_slice(&buffer[..count]),
            _ => break,
        }
    }
    answer
}

#[tokio::test]
async fn http2_is_refused_by_default_and_served_when_switched_on() {
    let app = TestApp::spawn(SOURCES).await;
    let answer =
        everything_answered(app.base_url.trim_start_matches("http://"), HTTP2_PREFACE).await;
    // An HTTP/2 server answers with its own SETTINGS frame: a 9-byte header of type 4.
    let is_http2_settings = answer.len() >= 9 && answer[3] == 4;
    assert!(
        !is_http2_settings && (answer.is_empty() || answer.starts_with(b"HTTP/1.1 ")),
        "the preface was answered as HTTP/2: {answer:?}"
    );

    let with_http2 = TestApp::spawn_with_overrides(SOURCES, "[server]\nhttp2 = true\n").await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/healthz", with_http2.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
}

/// Writes `head` and the whole `body` before reading anything, as many clients do, and returns
/// the status it then reads (`None` if the connection failed first).
async fn status_after_writing_everything(address: &str, head: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    read_answer(&mut stream).await.map(|(status, _)| status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_reach_clients_that_write_the_whole_body_first() {
    let app = TestApp::spawn(SOURCES).await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let body = vec![b'x'; 4 << 20];
    let cases = [("/webhooks/open", 413, 20), ("/webhooks/nobody", 404, 5)];
    for (path, expected, tries) in cases {
        let mut statuses = Vec::new();
        for _ in 0..tries {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            statuses.push(status_after_writing_everything(&address, &head, &body).await);
        }
        assert!(
            statuses.iter().all(|status| *status == Some(expected)),
            "{path}: every try sees {expected}: {statuses:?}"
        );
    }
}

#[tokio::test]
async fn the_admin_api_has_its_own_listener_with_the_same_protections() {
    let app = TestApp::spawn(&with_admin(SOURCES)).await;
    assert_ne!(app.admin_url, app.base_url);
    let on_webhook_port = app
        .client
        .get(format!("{}/admin/v1/destinations", app.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(on_webhook_port.status(), StatusCode::NOT_FOUND);
    let on_admin_port = app
        .client
        .get(format!("{}/admin/v1/destinations", app.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(on_admin_port.status(), StatusCode::OK);

    // A slowloris client trickling its headers to the admin listener is cut off after the
    // header read timeout (one second in the tests).
    let mut slow = TcpStream::connect(app.admin_url.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"GET /admin/v1/destinations HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buffer)).await {
                Ok(_) => return,
                Err(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the admin listener cut the slow client off");
}

#[tokio::test]
async fn an_address_that_guesses_the_admin_token_is_throttled() {
    let app = TestApp::spawn(&with_admin(SOURCES)).await;
    let url = format!("{}/admin/v1/sources", app.admin_url);
    let guesser = client_from("127.0.0.1");
    for guess in 0..10 {
        let response = guesser
            .get(&url)
            .bearer_auth(format!("guess-{guess}-of-the-admin-token-with-32-chars"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "guess {guess}");
    }
    let blocked = guesser.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(
        blocked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "right after the tenth guess even the right token waits"
    );
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(error_code(blocked).await, "too_many_failed_logins");
    // A throttled address may still try once a second: the operator, who shares 127.0.0.1 with
    // every local process, gets in within seconds however often someone else guesses.
    let mut operator_status = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..50 {
        operator_status = guesser
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status();
        if operator_status != StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        operator_status,
        StatusCode::OK,
        "the right token got in while the address was throttled"
    );
    let other = client_from("127.0.0.2");
    let response = other.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "other addresses log in");
}

/// The value of a sample without labels in a Prometheus exposition.
fn plain_sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test]
async fn scraping_metrics_does_not_query_the_database() {
    let app = TestApp::spawn(SOURCES).await;
    let url = format!("{}/metrics", app.base_url);
    let scrape = || async {
        let exposition = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        plain_sample(&exposition, "wasmhook_queue_gauge_refreshes_total")
            .unwrap_or_else(|| panic!("no refresh count in:\n{exposition}"))
    };
    let before = scrape().await;
    let scrapes = 100;
    for _ in 0..scrapes {
        scrape().await;
    }
    let after = scrape().await;
    // The background refresh (every five seconds, in every host of this test process) may run
    // a few times meanwhile; a query per scrape would add at least a hundred.
    assert!(
        after - before < f64::from(scrapes) / 2.0,
        "{} refreshes during {scrapes} scrapes",
        after - before
    );
}

#[tokio::test]
async fn readiness_probes_share_one_database_check_a_second() {
    let app = TestApp::spawn(SOURCES).await;
    let probe = || async {
        let answer = app
            .client
            .get(format!("{}/readyz", app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    };
    let checks = || async {
        let exposition = app
            .client
            .get(format!("{}/metrics", app.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        plain_sample(&exposition, "wasmhook_readiness_database_checks_total")
            .unwrap_or_else(|| panic!("no readiness check count in:\n{exposition}"))
    };
    probe().await;
    let before = checks().await;
    let probes = 100;
    futures::future::join_all((0..probes).map(|_| probe())).await;
    let after = checks().await;
    // A check per probe would add a hundred; sharing one answer a second adds one or two.
    assert!(
        after - before < f64::from(probes) / 10.0,
        "{} database checks for {probes} probes",
        after - before
    );
}
