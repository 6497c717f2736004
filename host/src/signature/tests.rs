//! The tables every scheme is checked against through `verify`: the platforms' published
//! vectors with the tampering that must break each, and what a check may cost; and the
//! properties every scheme shares (signing round-trips, secrets never show).

use super::*;

fn github_scheme() -> SignatureScheme {
    SignatureScheme::BodyHmac {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    }
}

fn shopify_scheme() -> SignatureScheme {
    SignatureScheme::BodyHmac {
        header: "x-shopify-hmac-sha256".into(),
        prefix: String::new(),
        encoding: MacEncoding::Base64,
    }
}

fn slack_scheme() -> SignatureScheme {
    SignatureScheme::VersionedHmac {
        signature_header: "x-slack-signature".into(),
        timestamp_header: "x-slack-request-timestamp".into(),
        version: "v0".into(),
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const STRIPE_BODY: &str = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\",\n  \"data\": { \"object\": { \"id\": \"rdr_123\", \"object\": \"terminal.reader\" } }\n}";

struct Case {
    name: &'static str,
    scheme: SignatureScheme,
    headers: Vec<(String, String)>,
    body: &'static str,
    secrets: Vec<&'static str>,
    now: i64,
    expected: Result<(), SignatureError>,
}

/// Standard Webhooks' first published vector.
fn standard_headers() -> Vec<(String, String)> {
    headers(&[
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ])
}

/// The published vectors (see `tests/fixtures/signature-vectors.json` for their sources),
/// each with the tampering that must break it.
fn cases() -> Vec<Case> {
    [
        github_cases(),
        github_header_cases(),
        standard_webhooks_vectors(),
        standard_webhooks_tampering(),
        stripe_cases(),
        slack_and_shopify_cases(),
        token_and_unsigned_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Body HMACs in hex: GitHub's published vector and its tampering.
fn github_cases() -> Vec<Case> {
    let github_headers = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
    let no_match = Err(SignatureError::NoMatch);
    vec![
        Case {
            name: "github official vector",
            scheme: github_scheme(),
            headers: github_headers.clone(),
            body: "Hello, World!",
            secrets: vec!["It's a Secret to Everybody"],
            now: 0,
            expected: Ok(()),
        },
        Case {
            name: "github one body byte changed",
            scheme: github_scheme(),
            headers: github_headers.clone(),
            body: "Hello, World?",
            secrets: vec!["It's a Secret to Everybody"],
            now: 0,
            expected: no_match.clone(),
        },
        Case {
            name: "github header one hex digit changed",
            scheme: github_scheme(),
            headers: headers(&[(
                "x-hub-signature-256",
                "sha256=857107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )]),
            body: "Hello, World!",
            secrets: vec!["It's a Secret to Everybody"],
            now: 0,
            expected: no_match.clone(),
        },
        Case {
            name: "github rotation: the old secret first, the right one second",
            scheme: github_scheme(),
            headers: github_headers.clone(),
            body: "Hello, World!",
            secrets: vec!["retired secret", "It's a Secret to Everybody"],
            now: 0,
            expected: Ok(()),
        },
    ]
}

/// Body HMACs: a missing, repeated or malformed signature header.
fn github_header_cases() -> Vec<Case> {
    let github_headers = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
    vec![
        Case {
            name: "github missing header",
            scheme: github_scheme(),
            headers: Vec::new(),
            body: "Hello, World!",
            secrets: vec!["It's a Secret to Everybody"],
            now: 0,
            expected: Err(SignatureError::MissingHeader {
                header: "x-hub-signature-256".into(),
            }),
        },
        Case {
            name: "github repeated header",
            scheme: github_scheme(),
            headers: [github_headers.clone(), github_headers.clone()].concat(),
            body: "Hello, World!",
            secrets: vec!["It's a Secret to Everybody"],
            now: 0,
            expected: Err(SignatureError::RepeatedHeader {
                header: "x-hub-signature-256".into(),
            }),
        },
        Case {
            name: "github wrong prefix",
            scheme: github_scheme(),
            headers: headers(&[("x-hub-signature-256", "sha1=757107ea")]),
            body: "Hello, World!",
            secrets: vec!["It's a Secret to Everybody"],
            now: 0,
            expected: Err(SignatureError::MalformedHeader {
                header: "x-hub-signature-256".into(),
                reason: "it does not start with the expected prefix",
            }),
        },
    ]
}

/// Standard Webhooks: the published vectors, and several signatures of which one is valid.
fn standard_webhooks_vectors() -> Vec<Case> {
    let standard_headers = standard_headers();
    vec![
        Case {
            name: "standard webhooks official vector",
            scheme: SignatureScheme::StandardWebhooks,
            headers: standard_headers.clone(),
            body: "{\"test\": 2432232314}",
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now: 1614265330,
            expected: Ok(()),
        },
        Case {
            name: "standard webhooks several signatures, one valid",
            scheme: SignatureScheme::StandardWebhooks,
            headers: headers(&[
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", "1614265330"),
                (
                    "webhook-signature",
                    "v1a,ignoredEd25519 v1,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ]),
            body: "{\"test\": 2432232314}",
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now: 1614265330,
            expected: Ok(()),
        },
        Case {
            name: "standard webhooks second official vector",
            scheme: SignatureScheme::StandardWebhooks,
            headers: headers(&[
                ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
                ("webhook-timestamp", "1649367553"),
                (
                    "webhook-signature",
                    "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
                ),
            ]),
            body: "{\"email\":\"test@example.com\",\"username\":\"test_user\"}",
            secrets: vec!["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"],
            now: 1649367553 + 299,
            expected: Ok(()),
        },
    ]
}

/// Standard Webhooks: a changed id or timestamp, and a stale or early one.
fn standard_webhooks_tampering() -> Vec<Case> {
    let standard_headers = standard_headers();
    let no_match = Err(SignatureError::NoMatch);
    vec![
        Case {
            name: "standard webhooks id changed",
            scheme: SignatureScheme::StandardWebhooks,
            headers: headers(&[
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJeK"),
                ("webhook-timestamp", "1614265330"),
                (
                    "webhook-signature",
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ]),
            body: "{\"test\": 2432232314}",
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now: 1614265330,
            expected: no_match.clone(),
        },
        Case {
            name: "standard webhooks timestamp changed by one second",
            scheme: SignatureScheme::StandardWebhooks,
            headers: headers(&[
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", "1614265331"),
                (
                    "webhook-signature",
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ]),
            body: "{\"test\": 2432232314}",
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now: 1614265330,
            expected: no_match.clone(),
        },
        Case {
            name: "standard webhooks stale by more than the tolerance",
            scheme: SignatureScheme::StandardWebhooks,
            headers: standard_headers.clone(),
            body: "{\"test\": 2432232314}",
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now: 1614265330 + 301,
            expected: Err(SignatureError::TimestampOutsideTolerance {
                header: "webhook-timestamp".into(),
                distance_seconds: 301,
                tolerance_seconds: 300,
            }),
        },
        Case {
            name: "standard webhooks from the future by more than the tolerance",
            scheme: SignatureScheme::StandardWebhooks,
            headers: standard_headers.clone(),
            body: "{\"test\": 2432232314}",
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now: 1614265330 - 301,
            expected: Err(SignatureError::TimestampOutsideTolerance {
                header: "webhook-timestamp".into(),
                distance_seconds: 301,
                tolerance_seconds: 300,
            }),
        },
    ]
}

/// Stripe: the derived vector, a secret roll, a downgrade to v0, tampering and staleness.
fn stripe_cases() -> Vec<Case> {
    let stripe_headers = headers(&[(
        "stripe-signature",
        "t=1492774577,v1=d21d91b425674689e03346536b8fec6384a8721d43ebe269a1689a3ad22cba9c",
    )]);
    let no_match = Err(SignatureError::NoMatch);
    vec![
        Case {
            name: "stripe derived vector",
            scheme: SignatureScheme::Stripe,
            headers: stripe_headers.clone(),
            body: STRIPE_BODY,
            secrets: vec!["whsec_test_secret"],
            now: 1492774577 + 10,
            expected: Ok(()),
        },
        Case {
            name: "stripe several v1 during a roll, and a v0 that is ignored",
            scheme: SignatureScheme::Stripe,
            headers: headers(&[(
                "stripe-signature",
                "t=1492774577,v0=ffff,v1=0000,v1=d21d91b425674689e03346536b8fec6384a8721d43ebe269a1689a3ad22cba9c",
            )]),
            body: STRIPE_BODY,
            secrets: vec!["whsec_test_secret"],
            now: 1492774577,
            expected: Ok(()),
        },
        Case {
            name: "stripe only a v0 signature does not pass",
            scheme: SignatureScheme::Stripe,
            headers: headers(&[(
                "stripe-signature",
                "t=1492774577,v0=d21d91b425674689e03346536b8fec6384a8721d43ebe269a1689a3ad22cba9c",
            )]),
            body: STRIPE_BODY,
            secrets: vec!["whsec_test_secret"],
            now: 1492774577,
            expected: Err(SignatureError::MalformedHeader {
                header: "stripe-signature".into(),
                reason: "it has no `v1=` signature of 32 bytes",
            }),
        },
        Case {
            name: "stripe body tampered",
            scheme: SignatureScheme::Stripe,
            headers: stripe_headers.clone(),
            body: "{\n  \"id\": \"evt_test_webhooK\",\n  \"object\": \"event\",\n  \"data\": { \"object\": { \"id\": \"rdr_123\", \"object\": \"terminal.reader\" } }\n}",
            secrets: vec!["whsec_test_secret"],
            now: 1492774577,
            expected: no_match.clone(),
        },
        Case {
            name: "stripe stale",
            scheme: SignatureScheme::Stripe,
            headers: stripe_headers,
            body: STRIPE_BODY,
            secrets: vec!["whsec_test_secret"],
            now: 1492774577 + 3600,
            expected: Err(SignatureError::TimestampOutsideTolerance {
                header: "stripe-signature".into(),
                distance_seconds: 3600,
                tolerance_seconds: 300,
            }),
        },
    ]
}

/// Slack's versioned HMAC and Shopify's base64 body HMAC.
fn slack_and_shopify_cases() -> Vec<Case> {
    let slack_headers = headers(&[
        ("x-slack-request-timestamp", "1531420618"),
        (
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    let no_match = Err(SignatureError::NoMatch);
    vec![
        Case {
            name: "slack official vector",
            scheme: slack_scheme(),
            headers: slack_headers.clone(),
            body: SLACK_BODY,
            secrets: vec!["8f742231b10e8888abcd99yyyzzz85a5"],
            now: 1531420618,
            expected: Ok(()),
        },
        Case {
            name: "slack timestamp header changed",
            scheme: slack_scheme(),
            headers: headers(&[
                ("x-slack-request-timestamp", "1531420619"),
                (
                    "x-slack-signature",
                    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                ),
            ]),
            body: SLACK_BODY,
            secrets: vec!["8f742231b10e8888abcd99yyyzzz85a5"],
            now: 1531420618,
            expected: no_match.clone(),
        },
        Case {
            name: "shopify derived vector",
            scheme: shopify_scheme(),
            headers: headers(&[(
                "x-shopify-hmac-sha256",
                "yi2xVY9/ZkF2VJ6a0kqiyUGNRkBwBHgakWO+Gsh1My8=",
            )]),
            body: "{\"id\":9554194432293,\"title\":\"T-Shirt\"}",
            secrets: vec!["hush"],
            now: 0,
            expected: Ok(()),
        },
        Case {
            name: "shopify body tampered",
            scheme: shopify_scheme(),
            headers: headers(&[(
                "x-shopify-hmac-sha256",
                "yi2xVY9/ZkF2VJ6a0kqiyUGNRkBwBHgakWO+Gsh1My8=",
            )]),
            body: "{\"id\":9554194432294,\"title\":\"T-Shirt\"}",
            secrets: vec!["hush"],
            now: 0,
            expected: no_match.clone(),
        },
    ]
}

/// Shared tokens, a signed scheme without a secret, and no scheme.
fn token_and_unsigned_cases() -> Vec<Case> {
    let github_headers = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
    let no_match = Err(SignatureError::NoMatch);
    vec![
        Case {
            name: "shared token right",
            scheme: SignatureScheme::SharedToken {
                header: "x-gitlab-token".into(),
            },
            headers: headers(&[("x-gitlab-token", "glpat-token")]),
            body: "{}",
            secrets: vec!["glpat-token"],
            now: 0,
            expected: Ok(()),
        },
        Case {
            name: "shared token wrong",
            scheme: SignatureScheme::SharedToken {
                header: "x-gitlab-token".into(),
            },
            headers: headers(&[("x-gitlab-token", "glpat-tokem")]),
            body: "{}",
            secrets: vec!["glpat-token"],
            now: 0,
            expected: no_match.clone(),
        },
        Case {
            name: "signed scheme with no secret configured",
            scheme: github_scheme(),
            headers: github_headers,
            body: "Hello, World!",
            secrets: vec![],
            now: 0,
            expected: Err(SignatureError::NoSecret),
        },
        Case {
            name: "no scheme accepts anything",
            scheme: SignatureScheme::None,
            headers: Vec::new(),
            body: "anything",
            secrets: vec![],
            now: 0,
            expected: Ok(()),
        },
    ]
}

#[test]
fn published_vectors_pass_and_tampering_fails() {
    for case in cases() {
        let secrets: Vec<Secret> = case.secrets.iter().map(|s| Secret::new(*s)).collect();
        let outcome = verify(
            &case.scheme,
            SignedRequest {
                headers: &case.headers,
                body: case.body.as_bytes(),
            },
            &secrets,
            case.now,
            300,
        );
        assert_eq!(outcome, case.expected, "case: {}", case.name);
    }
}

struct CostCase {
    name: &'static str,
    scheme: SignatureScheme,
    headers: Vec<(String, String)>,
    secrets: Vec<&'static str>,
    expected: Result<(), SignatureError>,
    expected_mac_computations: usize,
}

/// Requests against a 1 MiB body whose headers hold many, empty, short or repeated
/// candidates: each costs at most one MAC per usable secret.
fn cost_cases(body: &[u8]) -> Vec<CostCase> {
    [standard_webhooks_costs(body), other_costs()]
        .into_iter()
        .flatten()
        .collect()
}

const COST_NOW: i64 = 1_700_000_000;

fn malformed(header: &str, reason: &'static str) -> Result<(), SignatureError> {
    Err(SignatureError::MalformedHeader {
        header: header.into(),
        reason,
    })
}

fn too_many(header: &str, count: usize) -> Result<(), SignatureError> {
    Err(SignatureError::TooManySignatures {
        header: header.into(),
        count,
        limit: MAX_SIGNATURE_CANDIDATES,
    })
}

/// Standard Webhooks: empty, wrong and right candidates, and secrets that cannot be used.
fn standard_webhooks_costs(body: &[u8]) -> Vec<CostCase> {
    let standard_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let now = COST_NOW;
    let valid_standard = sign(
        &SignatureScheme::StandardWebhooks,
        &Secret::new(standard_secret),
        body,
        "msg_1",
        now,
    )
    .unwrap();
    let valid_standard_signature = valid_standard[2].1.clone();
    let standard = |signatures: String| {
        headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &now.to_string()),
            ("webhook-signature", &signatures),
        ])
    };
    let wrong_base64_mac = BASE64.encode([0u8; 32]);
    vec![
        CostCase {
            name: "standard webhooks: 5,000 empty candidates",
            scheme: SignatureScheme::StandardWebhooks,
            headers: standard(vec!["v1,"; 5000].join(" ")),
            secrets: vec![standard_secret],
            expected: too_many("webhook-signature", 5000),
            expected_mac_computations: 0,
        },
        CostCase {
            name: "standard webhooks: 16 empty candidates",
            scheme: SignatureScheme::StandardWebhooks,
            headers: standard(vec!["v1,"; 16].join(" ")),
            secrets: vec![standard_secret],
            expected: malformed(
                "webhook-signature",
                "it holds no `v1,<base64>` signature of 32 bytes",
            ),
            expected_mac_computations: 0,
        },
        CostCase {
            name: "standard webhooks: 15 wrong candidates and the right one, two secrets",
            scheme: SignatureScheme::StandardWebhooks,
            headers: standard(format!(
                "{} {valid_standard_signature}",
                vec![format!("v1,{wrong_base64_mac}"); 15].join(" ")
            )),
            secrets: vec![
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                standard_secret,
            ],
            expected: Ok(()),
            expected_mac_computations: 2,
        },
        CostCase {
            name: "standard webhooks: an unusable secret is skipped",
            scheme: SignatureScheme::StandardWebhooks,
            headers: valid_standard.clone(),
            secrets: vec!["not base64!", standard_secret],
            expected: Ok(()),
            expected_mac_computations: 1,
        },
        CostCase {
            name: "standard webhooks: only unusable secrets",
            scheme: SignatureScheme::StandardWebhooks,
            headers: valid_standard,
            secrets: vec!["not base64!", "whsec_"],
            expected: Err(SignatureError::UnusableSecret {
                reason: STANDARD_WEBHOOKS_SECRET_PROBLEM,
            }),
            expected_mac_computations: 0,
        },
    ]
}

/// Stripe's many candidates, and MACs of the wrong length in the other schemes.
fn other_costs() -> Vec<CostCase> {
    let now = COST_NOW;
    let stripe = |pairs: String| headers(&[("stripe-signature", &format!("t={now},{pairs}"))]);
    let wrong_hex_mac = "00".repeat(32);
    vec![
        CostCase {
            name: "stripe: 5,000 empty v1 candidates",
            scheme: SignatureScheme::Stripe,
            headers: stripe(vec!["v1="; 5000].join(",")),
            secrets: vec!["whsec_test_secret"],
            expected: too_many("stripe-signature", 5000),
            expected_mac_computations: 0,
        },
        CostCase {
            name: "stripe: 16 wrong candidates",
            scheme: SignatureScheme::Stripe,
            headers: stripe(vec![format!("v1={wrong_hex_mac}"); 16].join(",")),
            secrets: vec!["whsec_test_secret"],
            expected: Err(SignatureError::NoMatch),
            expected_mac_computations: 1,
        },
        CostCase {
            name: "stripe: two timestamps",
            scheme: SignatureScheme::Stripe,
            headers: stripe(format!("t={now},v1={wrong_hex_mac}")),
            secrets: vec!["whsec_test_secret"],
            expected: malformed("stripe-signature", "it has more than one `t=` timestamp"),
            expected_mac_computations: 0,
        },
        CostCase {
            name: "github: a MAC of the wrong length",
            scheme: github_scheme(),
            headers: headers(&[("x-hub-signature-256", "sha256=00")]),
            secrets: vec!["It's a Secret to Everybody"],
            expected: malformed("x-hub-signature-256", NOT_AN_HMAC),
            expected_mac_computations: 0,
        },
        CostCase {
            name: "shopify: an empty MAC",
            scheme: shopify_scheme(),
            headers: headers(&[("x-shopify-hmac-sha256", "")]),
            secrets: vec!["hush"],
            expected: malformed("x-shopify-hmac-sha256", NOT_AN_HMAC),
            expected_mac_computations: 0,
        },
        CostCase {
            name: "slack: a MAC of the wrong length",
            scheme: slack_scheme(),
            headers: headers(&[
                ("x-slack-request-timestamp", &now.to_string()),
                ("x-slack-signature", "v0=abcd"),
            ]),
            secrets: vec!["8f742231b10e8888abcd99yyyzzz85a5"],
            expected: malformed("x-slack-signature", NOT_AN_HMAC),
            expected_mac_computations: 0,
        },
        CostCase {
            name: "shared token: an empty secret never matches an empty token",
            scheme: SignatureScheme::SharedToken {
                header: "x-gitlab-token".into(),
            },
            headers: headers(&[("x-gitlab-token", "")]),
            secrets: vec![""],
            expected: Err(SignatureError::UnusableSecret {
                reason: "the secret is empty",
            }),
            expected_mac_computations: 0,
        },
    ]
}

#[test]
fn a_check_costs_at_most_one_mac_per_secret_whatever_the_candidates() {
    let body = vec![b'x'; 1 << 20];
    for case in cost_cases(&body) {
        let secrets: Vec<Secret> = case.secrets.iter().map(|s| Secret::new(*s)).collect();
        let verification = verify_counting(
            &case.scheme,
            SignedRequest {
                headers: &case.headers,
                body: &body,
            },
            &secrets,
            1_700_000_000,
            300,
        );
        assert_eq!(
            verification,
            Verification {
                outcome: case.expected,
                mac_computations: case.expected_mac_computations,
            },
            "case: {}",
            case.name
        );
    }
}

#[test]
fn only_usable_secrets_pass_the_format_check() {
    let table = [
        (
            SignatureScheme::StandardWebhooks,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            true,
        ),
        (
            SignatureScheme::StandardWebhooks,
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            true,
        ),
        (
            SignatureScheme::StandardWebhooks,
            "whsec_not base64!",
            false,
        ),
        (SignatureScheme::StandardWebhooks, "whsec_", false),
        (SignatureScheme::Stripe, "whsec_anything goes", true),
        (github_scheme(), "", false),
        (SignatureScheme::Custom, "", false),
        (SignatureScheme::None, "", true),
    ];
    for (scheme, secret, usable) in table {
        assert_eq!(
            secret_problem(&scheme, &Secret::new(secret)).is_none(),
            usable,
            "{scheme:?} with {secret:?}"
        );
    }
}

#[test]
fn signing_then_verifying_round_trips_for_every_scheme() {
    let schemes = [
        github_scheme(),
        shopify_scheme(),
        SignatureScheme::StandardWebhooks,
        SignatureScheme::Stripe,
        slack_scheme(),
        SignatureScheme::SharedToken {
            header: "x-gitlab-token".into(),
        },
    ];
    let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    for scheme in schemes {
        let headers = sign(&scheme, &secret, b"{\"a\":1}", "msg_1", 1_700_000_000).unwrap();
        let request = SignedRequest {
            headers: &headers,
            body: b"{\"a\":1}",
        };
        assert_eq!(
            verify(
                &scheme,
                request,
                std::slice::from_ref(&secret),
                1_700_000_000,
                300
            ),
            Ok(()),
            "scheme {scheme:?}"
        );
    }
}

#[test]
fn errors_and_debug_output_never_contain_the_secret() {
    let secret = Secret::new("super-secret-value");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    let headers = headers(&[("x-hub-signature-256", "sha256=00")]);
    let error = verify(
        &github_scheme(),
        SignedRequest {
            headers: &headers,
            body: b"x",
        },
        &[secret],
        0,
        300,
    )
    .unwrap_err();
    assert!(!error.to_string().contains("super-secret-value"));
}
