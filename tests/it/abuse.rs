//! Requests and plugins that try to abuse the host: make the signature check expensive, use a
//! plugin's reply as a signing oracle, or smuggle body data and forged lines into its log;
//! against a real host with real plugins. A test binary of its own, because it reads the
//! process-wide metrics.

use crate::support;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

use support::app::{TestApp, full_config, plugins_dir};
use support::database::TestDatabase;

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SIGNING_SECRET: &str = "the hostile plugin's source secret";

const SOURCES: &str = r#"
[[sources]]
name = "amplified-standard"
plugin = "generic"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[[sources]]
name = "amplified-stripe"
plugin = "generic"
secrets = ["whsec_test_secret"]
config = '{"signature": {"scheme": "stripe"}}'

[[sources]]
name = "rotating-standard"
plugin = "generic"
secrets = ["not base64 at all!", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
config = '{"type_pointer": "/type"}'

[[sources]]
name = "sign-unsigned"
plugin = "hostile"
secrets = ["the hostile plugin's source secret"]
config = "sign-unsigned"

[[sources]]
name = "sign-custom"
plugin = "hostile"
secrets = ["the hostile plugin's source secret"]
config = "sign-custom"

[[sources]]
name = "verify-many"
plugin = "hostile"
secrets = ["the hostile plugin's source secret"]
config = "verify-many"

[[sources]]
name = "sign-host-checked"
plugin = "hostile"
secrets = ["the hostile plugin's source secret"]
config = "sign-host-checked"
"#;

/// HMAC-SHA256 in hex, computed here rather than by the code under test.
fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn pairs(headers: &[(&str, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

/// The value of a counter with one `source` label in the host's exposition; 0 when absent.
async fn source_counter(app: &TestApp, metric: &str, source: &str) -> f64 {
    let exposition = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{metric}{{source=\"{source}\"}} ");
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

async fn status_and_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Thousands of empty candidates against a 1 MB body are refused with 400 before any MAC is
/// computed; the most candidates the host accepts, all wrong, cost one MAC for the source's one
/// secret, the cost of a normal check. Counted with the host's own MAC counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_signature_candidates_cost_at_most_one_mac_per_secret() {
    let app = TestApp::spawn(SOURCES).await;
    let body = vec![b'x'; 1_000_000];
    let now = chrono::Utc::now().timestamp().to_string();
    let standard = |signatures: String| {
        pairs(&[
            ("webhook-id", "msg_amplified".to_owned()),
            ("webhook-timestamp", now.clone()),
            ("webhook-signature", signatures),
        ])
    };
    let stripe =
        |pairs_text: String| pairs(&[("stripe-signature", format!("t={now},{pairs_text}"))]);
    let wrong_base64 = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let wrong_hex = "00".repeat(32);
    let cases = [
        (
            "amplified-standard",
            standard(vec!["v1,"; 5000].join(" ")),
            StatusCode::BAD_REQUEST,
            "too_many_signatures",
        ),
        (
            "amplified-standard",
            standard(vec![format!("v1,{wrong_base64}"); 16].join(" ")),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "amplified-stripe",
            stripe(vec!["v1="; 5000].join(",")),
            StatusCode::BAD_REQUEST,
            "too_many_signatures",
        ),
        (
            "amplified-stripe",
            stripe(vec![format!("v1={wrong_hex}"); 16].join(",")),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
    ];
    for (source, headers, expected_status, expected_code) in cases {
        let response = app.post(source, &headers, body.clone()).await;
        assert_eq!(
            status_and_code(response).await,
            (expected_status, expected_code.to_owned()),
            "{source}"
        );
    }
    for source in ["amplified-standard", "amplified-stripe"] {
        assert_eq!(
            source_counter(&app, "wasmhook_signature_macs_total", source).await,
            1.0,
            "{source}: MACs computed for two requests, one refused before any MAC"
        );
    }
    assert_eq!(app.counts().await.raw_requests, 0, "nothing is stored");
}

/// A source whose first secret is not usable for Standard Webhooks keeps accepting requests
/// signed with its other secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_secret_is_skipped_instead_of_failing_its_source() {
    let app = TestApp::spawn(SOURCES).await;
    let body = br#"{"type":"order.created","id":1}"#;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let key = base64::engine::general_purpose::STANDARD
        .decode(STANDARD_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let signed = [
        b"msg_rotating.".as_slice(),
        timestamp.as_bytes(),
        b".",
        body,
    ]
    .concat();
    let mac = hex::decode(hmac_hex(&key, &signed)).unwrap();
    let headers = pairs(&[
        ("webhook-id", "msg_rotating".to_owned()),
        ("webhook-timestamp", timestamp),
        (
            "webhook-signature",
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac)
            ),
        ),
    ]);
    let response = app.post("rotating-standard", &headers, body.to_vec()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// What the hostile plugin's `sign-*` behaviours reply: the MAC it got from the host, or
/// `refused`.
async fn signing_reply(app: &TestApp, source: &str, headers: &[(&str, String)]) -> String {
    let response = app.post(source, &pairs(headers), "forged webhook").await;
    assert_eq!(response.status(), StatusCode::OK, "{source}");
    response.text().await.unwrap()
}

/// A source, the headers sent to it, and what the plugin replies.
type SigningCase<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

/// `sign-hmac-sha256` answers only for a request proven authentic in the same call: never for
/// an unsigned source, for a custom source only after the plugin's own successful verify, and
/// for a host-checked source after the host's check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_can_sign_only_after_the_request_was_verified() {
    let app = TestApp::spawn(SOURCES).await;
    let body = b"forged webhook";
    let right_mac = hmac_hex(SIGNING_SECRET.as_bytes(), body);
    let wrong_mac = hmac_hex(b"a guessed secret", body);
    let table: [SigningCase<'_>; 5] = [
        ("sign-unsigned", vec![], "refused"),
        ("sign-custom", vec![], "refused"),
        (
            "sign-custom",
            vec![("x-hostile-verify", wrong_mac.clone())],
            "refused",
        ),
        (
            "sign-custom",
            vec![("x-hostile-verify", right_mac.clone())],
            &right_mac,
        ),
        (
            "sign-host-checked",
            vec![("x-hostile-signature", right_mac.clone())],
            &right_mac,
        ),
    ];
    for (source, headers, expected) in table {
        assert_eq!(
            signing_reply(&app, source, &headers).await,
            expected,
            "{source} with {headers:?}"
        );
    }
    let unsigned = app
        .post(
            "sign-host-checked",
            &pairs(&[("x-hostile-signature", wrong_mac)]),
            body.to_vec(),
        )
        .await;
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}

/// A plugin that hands the caller's candidates to `verify-hmac-sha256` one by one gets at most
/// as many checks as the host's own check would make, so it cannot bring item 1's
/// amplification back: the hundred checks of the right MAC answer yes sixteen times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_gets_a_bounded_number_of_mac_checks_per_call() {
    let app = TestApp::spawn(SOURCES).await;
    let right_mac = hmac_hex(SIGNING_SECRET.as_bytes(), b"forged webhook");
    let matched = signing_reply(&app, "verify-many", &[("x-hostile-verify", right_mac)]).await;
    assert_eq!(
        matched,
        wasmhook::plugins::host_imports::MAX_VERIFY_CALLS_PER_CALL.to_string(),
        "checks that said yes"
    );
}

/// A plugin that quotes the body on stderr and traps: the request is quarantined, and the
/// warning that says so carries the failure escaped (one line) and capped, not the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_warning_is_one_escaped_line_of_bounded_length() {
    let database = TestDatabase::create().await;
    let plugins = plugins_dir();
    let config = full_config(
        &database.url,
        plugins.path(),
        "[[sources]]\nname = \"quoting\"\nplugin = \"hostile\"\nconfig = \"trap-quoting-body\"\n",
    );
    let host = support::host_process::start(&config, &[]).await;
    let body = format!(
        "{}\nWARN forged: a line of its own \u{1b}[2J{}END-OF-BODY",
        "x".repeat(100),
        "y".repeat(4000)
    );
    let response = reqwest::Client::new()
        .post(host.url("/webhooks/quoting"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut warning = None;
    for _ in 0..100 {
        let log = host.log();
        warning = log
            .lines()
            .find(|line| line.contains("quarantined:"))
            .map(str::to_owned);
        if warning.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let warning = warning.expect("the quarantine is logged");
    assert!(!warning.contains("END-OF-BODY"), "{warning}");
    assert!(warning.contains("more bytes)"), "{warning}");
    assert!(warning.len() < 1024, "{} bytes: {warning}", warning.len());
    assert!(
        !host.log().contains("\u{1b}[2J"),
        "a raw escape reached the log"
    );
    assert!(
        !host
            .log()
            .lines()
            .any(|line| line.starts_with("WARN forged")),
        "a forged line reached the log"
    );
}
