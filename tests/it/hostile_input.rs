//! Malformed requests on the ingest endpoint, written byte for byte on a raw connection: each
//! gets its clear 4xx (or, where hyper may refuse the bytes before the host sees them, is
//! dropped), none gets a 5xx or harms the host, and nothing is stored.

use crate::support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::app::TestApp;

const SOURCES: &str = r#"
[[sources]]
name = "github"
plugin = "github"
secrets = ["It's a Secret to Everybody"]

[[sources]]
name = "open"
plugin = "generic"
config = '{"signature": {"scheme": "none"}}'

[[sources]]
name = "svix"
plugin = "generic"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
"#;

/// What a raw request got back.
#[derive(Debug)]
enum Answer {
    Status(u16, String),
    /// The host closed the connection without an answer.
    Dropped,
}

/// Whether a row may end with the connection closed and no answer. Only requests that hyper
/// refuses before the host's handler runs may be dropped; every other row must get its status,
/// so that a handler that panics (and drops the connection) fails the test.
#[derive(Clone, Copy, Debug)]
enum IfDropped {
    /// hyper may close the connection instead of answering; the text says why.
    Acceptable(&'static str),
    /// The host's handler answers this request, so a drop is a failure.
    Fails,
}

/// Writes `request` on a new connection and reads the answer (at most five seconds).
async fn send_raw(app: &TestApp, request: &[u8]) -> Answer {
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The host may answer and close before the whole request is written; that is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => answer.extend_from_slice(&buffer[..count]),
            }
            if let Some(end) = find(&answer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the host neither answered nor closed within 5 s"
    );
    let text = String::from_utf8_lossy(&answer).into_owned();
    match text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
    {
        Some(status) => Answer::Status(status, text),
        None => Answer::Dropped,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A POST with `headers` (complete lines) and `body`, with its Content-Length.
fn post(path: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn github_signature(body: &[u8]) -> String {
    let signature = wasmhook_testkit::signed::github_signature(body, "It's a Secret to Everybody");
    format!("X-Hub-Signature-256: {signature}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_their_clear_4xx_or_a_drop_only_where_hyper_refuses_and_store_nothing()
 {
    let app = TestApp::spawn(SOURCES).await;
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let push = br#"{"ref":"refs/heads/main"}"#;
    let mut chunked_too_large =
        b"POST /webhooks/open HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..20 {
        chunked_too_large.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked_too_large.extend_from_slice(&[b'x'; 65536]);
        chunked_too_large.extend_from_slice(b"\r\n");
    }
    chunked_too_large.extend_from_slice(b"0\r\n\r\n");
    let many_headers: Vec<String> = (0..200).map(|n| format!("X-Filler-{n}: x")).collect();
    // Random letters do not compress, so an id this long would exceed PostgreSQL's btree limit.
    let long_id: String = (0..6000).map(|_| fastrand::alphanumeric()).collect();
    let large_body = vec![b'x'; 1_000_000];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let standard_webhooks = |signatures: String| {
        vec![
            "Webhook-Id: msg_hostile".to_owned(),
            format!("Webhook-Timestamp: {now}"),
            format!("Webhook-Signature: {signatures}"),
        ]
    };

    // Each row: what it is, its bytes, the statuses it may get, and whether a drop is acceptable.
    let table: Vec<(&str, Vec<u8>, std::ops::RangeInclusive<u16>, IfDropped)> = vec![
        (
            "a body that is not UTF-8",
            post("/webhooks/open", &[], &[0xff, 0xfe, 0x00, 0xc3]),
            400..=422,
            IfDropped::Fails,
        ),
        (
            "a body that is not JSON",
            post("/webhooks/open", &[], b"this is not json"),
            400..=422,
            IfDropped::Fails,
        ),
        (
            "JSON nested 100,000 levels deep",
            post("/webhooks/open", &[], nested.as_bytes()),
            400..=422,
            IfDropped::Fails,
        ),
        (
            "an empty body",
            post("/webhooks/open", &[], b""),
            400..=422,
            IfDropped::Fails,
        ),
        (
            "a 100 KB header",
            post(
                "/webhooks/open",
                &[format!("X-Huge: {}", "a".repeat(100_000))],
                b"{}",
            ),
            400..=431,
            IfDropped::Acceptable("hyper refuses an oversized head"),
        ),
        (
            "two hundred headers",
            post("/webhooks/open", &many_headers, b"{}"),
            400..=431,
            IfDropped::Acceptable("hyper refuses an oversized head"),
        ),
        (
            "two signature headers",
            post(
                "/webhooks/github",
                &[
                    "X-GitHub-Event: push".to_owned(),
                    "X-GitHub-Delivery: d-1".to_owned(),
                    github_signature(push),
                    github_signature(push),
                ],
                push,
            ),
            401..=401,
            IfDropped::Fails,
        ),
        (
            "an X-GitHub-Delivery over 256 bytes",
            post(
                "/webhooks/github",
                &[
                    "X-GitHub-Event: push".to_owned(),
                    format!("X-GitHub-Delivery: {long_id}"),
                    github_signature(push),
                ],
                push,
            ),
            400..=400,
            IfDropped::Fails,
        ),
        (
            "a webhook-id over 256 bytes",
            post("/webhooks/open", &[format!("Webhook-Id: {long_id}")], b"{}"),
            400..=400,
            IfDropped::Fails,
        ),
        (
            "a header value folded onto a new line",
            post(
                "/webhooks/open",
                &["X-Folded: first\r\n second".to_owned()],
                b"{}",
            ),
            400..=400,
            IfDropped::Acceptable("hyper refuses a folded header"),
        ),
        (
            "a newline inside a header name",
            post("/webhooks/open", &["X-Bad\nName: x".to_owned()], b"{}"),
            400..=400,
            IfDropped::Acceptable("hyper refuses a head it cannot parse"),
        ),
        (
            "5,000 empty Standard Webhooks signatures against a 1 MB body",
            post(
                "/webhooks/svix",
                &standard_webhooks(vec!["v1,"; 5000].join(" ")),
                &large_body,
            ),
            400..=400,
            IfDropped::Fails,
        ),
        (
            "16 Standard Webhooks signatures of the wrong length",
            post(
                "/webhooks/svix",
                &standard_webhooks(vec!["v1,AAAA"; 16].join(" ")),
                &large_body,
            ),
            401..=401,
            IfDropped::Fails,
        ),
        (
            "a wrong method",
            b"GET /webhooks/open HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".to_vec(),
            405..=405,
            IfDropped::Fails,
        ),
        (
            "a chunked body larger than the limit",
            chunked_too_large,
            413..=413,
            IfDropped::Fails,
        ),
        (
            "an unknown source",
            post("/webhooks/nobody", &[], b"{}"),
            404..=404,
            IfDropped::Fails,
        ),
        (
            "a request line that is not HTTP",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n".to_vec(),
            400..=400,
            IfDropped::Acceptable("hyper refuses bytes that are not HTTP"),
        ),
    ];
    for (case, request, expected, if_dropped) in table {
        let answer = send_raw(&app, &request).await;
        println!(
            "{case}: {}",
            match &answer {
                Answer::Status(status, _) => status.to_string(),
                Answer::Dropped => "dropped".to_owned(),
            }
        );
        match answer {
            Answer::Status(status, text) => {
                assert!(
                    expected.contains(&status),
                    "{case}: expected {expected:?}, got {status}:\n{}",
                    &text[..text.len().min(500)]
                );
                // The host's own answers say what was wrong; hyper's answers to requests it
                // cannot parse (400, 431) come before the host sees them and carry no body.
                if text.contains("application/json") {
                    assert!(
                        text.contains("\"code\"") && text.contains("\"detail\""),
                        "{case}: {text}"
                    );
                }
            }
            Answer::Dropped => match if_dropped {
                IfDropped::Acceptable(reason) => println!("{case}: a drop is acceptable: {reason}"),
                IfDropped::Fails => {
                    panic!(
                        "{case}: the connection was closed without an answer, expected {expected:?}"
                    )
                }
            },
        }
    }

    // A slowloris client trickling its headers is closed after the header timeout while the
    // host keeps serving others.
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /webhooks/open HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let response = app.post("open", &[], r#"{"a":1}"#).await;
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let _ = slow.write_all(b"X-Slow: 1\r\n").await;
            match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => return,
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client was cut off");

    // Nothing of the rejected requests was stored: only the one good request.
    let counts = app.counts().await;
    assert_eq!((counts.raw_requests, counts.events), (1, 1));
    let health = reqwest::get(format!("{}/healthz", app.base_url))
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        reqwest::StatusCode::OK,
        "the host still runs"
    );
}

/// Everything the host sends back for `request` until it closes (at most five seconds).
async fn raw_answer_bytes(app: &TestApp, request: &[u8]) -> Vec<u8> {
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(count) = stream.read(&mut buffer).await {
            if count == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..count]);
        }
    })
    .await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_http2_prefaces_and_early_answers_get_their_answer_and_store_nothing() {
    let app =
        TestApp::spawn_with_overrides(SOURCES, "[server]\nbody_read_timeout_seconds = 1\n").await;
    let mut stalled = post("/webhooks/open", &[], &[b'x'; 100]);
    stalled.truncate(stalled.len() - 90);
    let oversized_written_whole = post("/webhooks/open", &[], &vec![b'x'; 4 << 20]);
    let unknown_source_written_whole = post("/webhooks/nobody", &[], &vec![b'x'; 4 << 20]);
    let table: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a body that stalls mid-way",
            stalled,
            408,
            "body_read_timeout",
        ),
        (
            "a 4 MiB body over the limit, written whole before reading",
            oversized_written_whole,
            413,
            "body_too_large",
        ),
        (
            "a 4 MiB body for an unknown source, written whole before reading",
            unknown_source_written_whole,
            404,
            "unknown_source",
        ),
    ];
    for (case, request, expected, code) in table {
        match send_raw(&app, &request).await {
            Answer::Status(status, text) => {
                assert_eq!(
                    status,
                    expected,
                    "{case}:\n{}",
                    &text[..text.len().min(500)]
                );
                assert!(
                    text.contains(&format!("\"code\":\"{code}\"")) && text.contains("\"detail\""),
                    "{case}: {text}"
                );
            }
            Answer::Dropped => panic!("{case}: the connection closed without the {expected}"),
        }
    }

    // HTTP/2 with prior knowledge is off by default: the preface is refused, never answered
    // with HTTP/2 frames.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let answer = raw_answer_bytes(&app, preface).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 4"),
        "an HTTP/2 preface: {answer:?}"
    );

    let counts = app.counts().await;
    assert_eq!((counts.raw_requests, counts.events), (0, 0));
}
