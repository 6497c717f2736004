//! Webhook signature schemes: checking inbound requests and signing outbound ones.
//!
//! Pure logic: nothing here does IO or reads a clock. Callers pass the headers, the exact body
//! bytes, the source's secrets and `now`. MACs are compared in constant time, a request passes
//! when any active secret matches (so secrets rotate without downtime), and errors name what is
//! wrong without ever containing a secret or a computed MAC.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How a MAC is written into a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MacEncoding {
    Hex,
    Base64,
}

/// The signature schemes the host checks (mirrors `signature-scheme` in `wit/plugin.wit`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SignatureScheme {
    None,
    BodyHmac {
        header: String,
        prefix: String,
        encoding: MacEncoding,
    },
    StandardWebhooks,
    Stripe,
    VersionedHmac {
        signature_header: String,
        timestamp_header: String,
        version: String,
    },
    SharedToken {
        header: String,
    },
    Custom,
}

/// A secret as the operator configured it. Its `Debug` output is redacted so that it can sit in
/// structs that are logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's text; call sites are the few places that need the key material.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key for Standard Webhooks: the base64 after an optional `whsec_` prefix.
    pub fn standard_webhooks_key(&self) -> Result<Vec<u8>, SignatureError> {
        let encoded = self.0.strip_prefix("whsec_").unwrap_or(&self.0);
        BASE64
            .decode(encoded)
            .map_err(|_| SignatureError::UnusableSecret {
                reason: "a Standard Webhooks secret must be base64 after the `whsec_` prefix",
            })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

/// Why a request's signature was refused. Every variant maps to 401; the message is safe to
/// return to the sender.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing the `{header}` header")]
    MissingHeader { header: String },
    #[error("the `{header}` header is sent more than once")]
    RepeatedHeader { header: String },
    #[error("the `{header}` header is malformed: {reason}")]
    MalformedHeader {
        header: String,
        reason: &'static str,
    },
    #[error(
        "the timestamp in `{header}` is {distance_seconds} s away from the server's clock, outside the tolerance of {tolerance_seconds} s"
    )]
    TimestampOutsideTolerance {
        header: String,
        distance_seconds: i64,
        tolerance_seconds: i64,
    },
    #[error("no signature matched any of the source's secrets")]
    NoMatch,
    #[error("the source has no secret configured, so its signed requests cannot be checked")]
    NoSecret,
    #[error("a configured secret cannot be used: {reason}")]
    UnusableSecret { reason: &'static str },
}

/// What a check needs besides the scheme and the secrets.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// Every header, names in lower case, in arrival order.
    pub headers: &'a [(String, String)],
    /// The exact body bytes.
    pub body: &'a [u8],
}

impl<'a> SignedRequest<'a> {
    /// The single value of a header; an absent or repeated header is an error, because a
    /// repeated signature header is either a broken sender or an attempt to confuse the check.
    fn single_header(&self, name: &str) -> Result<&'a str, SignatureError> {
        let mut values = self
            .headers
            .iter()
            .filter(|(header_name, _)| header_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str());
        let first = values.next().ok_or_else(|| SignatureError::MissingHeader {
            header: name.to_owned(),
        })?;
        if values.next().is_some() {
            return Err(SignatureError::RepeatedHeader {
                header: name.to_owned(),
            });
        }
        Ok(first)
    }
}

/// Checks a request against a scheme. `now_unix_seconds` is the server's clock; timestamped
/// schemes refuse requests more than `tolerance_seconds` away from it in either direction.
pub fn verify(
    scheme: &SignatureScheme,
    request: SignedRequest<'_>,
    secrets: &[Secret],
    now_unix_seconds: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    if matches!(scheme, SignatureScheme::None | SignatureScheme::Custom) {
        return Ok(());
    }
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    match scheme {
        SignatureScheme::None | SignatureScheme::Custom => Ok(()),
        SignatureScheme::BodyHmac {
            header,
            prefix,
            encoding,
        } => {
            let value = request.single_header(header)?;
            let encoded = value.strip_prefix(prefix.as_str()).ok_or_else(|| {
                SignatureError::MalformedHeader {
                    header: header.clone(),
                    reason: "it does not start with the expected prefix",
                }
            })?;
            let mac = decode_mac(encoded.trim(), *encoding).ok_or_else(|| {
                SignatureError::MalformedHeader {
                    header: header.clone(),
                    reason: match encoding {
                        MacEncoding::Hex => "the signature is not hexadecimal",
                        MacEncoding::Base64 => "the signature is not base64",
                    },
                }
            })?;
            any_secret_matches(secrets, |secret| {
                Ok(hmac_matches(
                    secret.expose().as_bytes(),
                    &[request.body],
                    &mac,
                ))
            })
        }
        SignatureScheme::StandardWebhooks => {
            let message_id = request.single_header("webhook-id")?;
            let timestamp_text = request.single_header("webhook-timestamp")?;
            let signatures = request.single_header("webhook-signature")?;
            check_timestamp(
                "webhook-timestamp",
                timestamp_text,
                now_unix_seconds,
                tolerance_seconds,
            )?;
            let candidates: Vec<Vec<u8>> = signatures
                .split(' ')
                .filter_map(|entry| entry.strip_prefix("v1,"))
                .filter_map(|encoded| BASE64.decode(encoded).ok())
                .collect();
            if candidates.is_empty() {
                return Err(SignatureError::MalformedHeader {
                    header: "webhook-signature".to_owned(),
                    reason: "it holds no `v1,<base64>` signature",
                });
            }
            let signed_parts: [&[u8]; 5] = [
                message_id.as_bytes(),
                b".",
                timestamp_text.as_bytes(),
                b".",
                request.body,
            ];
            any_secret_matches(secrets, |secret| {
                let key = secret.standard_webhooks_key()?;
                Ok(candidates
                    .iter()
                    .any(|candidate| hmac_matches(&key, &signed_parts, candidate)))
            })
        }
        SignatureScheme::Stripe => {
            let header = "stripe-signature";
            let value = request.single_header(header)?;
            let mut timestamp_text = None;
            let mut candidates = Vec::new();
            for pair in value.split(',') {
                match pair.trim().split_once('=') {
                    Some(("t", text)) => timestamp_text = Some(text),
                    // Only v1 counts; ignoring other schemes (v0 and any future one) prevents
                    // a downgrade to a weaker scheme.
                    Some(("v1", encoded)) => {
                        if let Ok(mac) = hex::decode(encoded) {
                            candidates.push(mac);
                        }
                    }
                    _ => {}
                }
            }
            let timestamp_text = timestamp_text.ok_or(SignatureError::MalformedHeader {
                header: header.to_owned(),
                reason: "it has no `t=` timestamp",
            })?;
            if candidates.is_empty() {
                return Err(SignatureError::MalformedHeader {
                    header: header.to_owned(),
                    reason: "it has no `v1=` signature",
                });
            }
            check_timestamp(header, timestamp_text, now_unix_seconds, tolerance_seconds)?;
            let signed_parts: [&[u8]; 3] = [timestamp_text.as_bytes(), b".", request.body];
            any_secret_matches(secrets, |secret| {
                Ok(candidates.iter().any(|candidate| {
                    hmac_matches(secret.expose().as_bytes(), &signed_parts, candidate)
                }))
            })
        }
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            version,
        } => {
            let timestamp_text = request.single_header(timestamp_header)?;
            let value = request.single_header(signature_header)?;
            check_timestamp(
                timestamp_header,
                timestamp_text,
                now_unix_seconds,
                tolerance_seconds,
            )?;
            let mac = value
                .strip_prefix(version.as_str())
                .and_then(|rest| rest.strip_prefix('='))
                .and_then(|encoded| hex::decode(encoded.trim()).ok())
                .ok_or_else(|| SignatureError::MalformedHeader {
                    header: signature_header.clone(),
                    reason: "it is not `<version>=<hex>` with the expected version",
                })?;
            let signed_parts: [&[u8]; 5] = [
                version.as_bytes(),
                b":",
                timestamp_text.as_bytes(),
                b":",
                request.body,
            ];
            any_secret_matches(secrets, |secret| {
                Ok(hmac_matches(
                    secret.expose().as_bytes(),
                    &signed_parts,
                    &mac,
                ))
            })
        }
        SignatureScheme::SharedToken { header } => {
            let presented = request.single_header(header)?;
            // Comparing digests keeps the comparison constant-time even in the token's length.
            let presented_digest = Sha256::digest(presented.as_bytes());
            any_secret_matches(secrets, |secret| {
                let expected_digest = Sha256::digest(secret.expose().as_bytes());
                Ok(bool::from(presented_digest.ct_eq(&expected_digest)))
            })
        }
    }
}

/// Tries every secret (without stopping early on a mismatch) and succeeds when one matched.
fn any_secret_matches(
    secrets: &[Secret],
    mut matches: impl FnMut(&Secret) -> Result<bool, SignatureError>,
) -> Result<(), SignatureError> {
    let mut matched = false;
    for secret in secrets {
        matched |= matches(secret)?;
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

fn decode_mac(encoded: &str, encoding: MacEncoding) -> Option<Vec<u8>> {
    match encoding {
        MacEncoding::Hex => hex::decode(encoded).ok(),
        MacEncoding::Base64 => BASE64.decode(encoded).ok(),
    }
}

fn check_timestamp(
    header: &str,
    timestamp_text: &str,
    now_unix_seconds: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let timestamp: i64 =
        timestamp_text
            .trim()
            .parse()
            .map_err(|_| SignatureError::MalformedHeader {
                header: header.to_owned(),
                reason: "the timestamp is not a whole number of seconds",
            })?;
    let distance_seconds = now_unix_seconds.saturating_sub(timestamp).saturating_abs();
    if distance_seconds > tolerance_seconds {
        return Err(SignatureError::TimestampOutsideTolerance {
            header: header.to_owned(),
            distance_seconds,
            tolerance_seconds,
        });
    }
    Ok(())
}

/// HMAC-SHA256 over the concatenation of `parts`, compared in constant time with `expected`.
pub fn hmac_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The Standard Webhooks headers of an outbound delivery, signed with every one of `secrets`:
/// the signature header carries one `v1,<mac>` per secret, separated by spaces, so a receiver
/// that knows any of them verifies it while a secret is rotated. No secrets, no signature.
pub fn sign_standard_webhooks(
    secrets: &[Secret],
    body: &[u8],
    message_id: &str,
    now_unix_seconds: i64,
) -> Result<Vec<(String, String)>, SignatureError> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let headers = sign(
            &SignatureScheme::StandardWebhooks,
            secret,
            body,
            message_id,
            now_unix_seconds,
        )?;
        signatures.extend(
            headers
                .into_iter()
                .filter(|(name, _)| name == "webhook-signature")
                .map(|(_, value)| value),
        );
    }
    let mut headers = vec![
        ("webhook-id".to_owned(), message_id.to_owned()),
        ("webhook-timestamp".to_owned(), now_unix_seconds.to_string()),
    ];
    if !signatures.is_empty() {
        headers.push(("webhook-signature".to_owned(), signatures.join(" ")));
    }
    Ok(headers)
}

/// Signs a request the way a platform using `scheme` would, returning the headers to send.
/// Used by the outbound signer, the `send` command and the load generator.
pub fn sign(
    scheme: &SignatureScheme,
    secret: &Secret,
    body: &[u8],
    message_id: &str,
    now_unix_seconds: i64,
) -> Result<Vec<(String, String)>, SignatureError> {
    let timestamp = now_unix_seconds.to_string();
    let headers = match scheme {
        SignatureScheme::None | SignatureScheme::Custom => Vec::new(),
        SignatureScheme::BodyHmac {
            header,
            prefix,
            encoding,
        } => {
            let mac = hmac_sha256(secret.expose().as_bytes(), &[body]);
            let encoded = match encoding {
                MacEncoding::Hex => hex::encode(mac),
                MacEncoding::Base64 => BASE64.encode(mac),
            };
            vec![(header.clone(), format!("{prefix}{encoded}"))]
        }
        SignatureScheme::StandardWebhooks => {
            let key = secret.standard_webhooks_key()?;
            let mac = hmac_sha256(
                &key,
                &[
                    message_id.as_bytes(),
                    b".",
                    timestamp.as_bytes(),
                    b".",
                    body,
                ],
            );
            vec![
                ("webhook-id".to_owned(), message_id.to_owned()),
                ("webhook-timestamp".to_owned(), timestamp),
                (
                    "webhook-signature".to_owned(),
                    format!("v1,{}", BASE64.encode(mac)),
                ),
            ]
        }
        SignatureScheme::Stripe => {
            let mac = hmac_sha256(
                secret.expose().as_bytes(),
                &[timestamp.as_bytes(), b".", body],
            );
            vec![(
                "stripe-signature".to_owned(),
                format!("t={timestamp},v1={}", hex::encode(mac)),
            )]
        }
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            version,
        } => {
            let mac = hmac_sha256(
                secret.expose().as_bytes(),
                &[version.as_bytes(), b":", timestamp.as_bytes(), b":", body],
            );
            vec![
                (timestamp_header.clone(), timestamp),
                (
                    signature_header.clone(),
                    format!("{version}={}", hex::encode(mac)),
                ),
            ]
        }
        SignatureScheme::SharedToken { header } => {
            vec![(header.clone(), secret.expose().to_owned())]
        }
    };
    Ok(headers)
}

#[cfg(test)]
mod tests {
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

    /// The published vectors (see `tests/fixtures/signature-vectors.json` for their sources),
    /// each with the tampering that must break it.
    fn cases() -> Vec<Case> {
        let github_headers = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
        let standard_headers = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let stripe_headers = headers(&[(
            "stripe-signature",
            "t=1492774577,v1=d21d91b425674689e03346536b8fec6384a8721d43ebe269a1689a3ad22cba9c",
        )]);
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
                    reason: "it has no `v1=` signature",
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
    fn signing_reproduces_the_standard_webhooks_vector() {
        let headers = sign(
            &SignatureScheme::StandardWebhooks,
            &Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            b"{\"test\": 2432232314}",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
        )
        .unwrap();
        assert!(headers.contains(&(
            "webhook-signature".to_owned(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_owned()
        )));
    }

    #[test]
    fn standard_webhooks_deliveries_carry_one_signature_per_secret() {
        let official = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let other = Secret::new("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let official_signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let table: [(Vec<Secret>, Option<usize>); 3] = [
            (vec![], None),
            (vec![official.clone()], Some(1)),
            (vec![other.clone(), official.clone()], Some(2)),
        ];
        for (secrets, expected_signatures) in table {
            let headers = sign_standard_webhooks(
                &secrets,
                b"{\"test\": 2432232314}",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
            )
            .unwrap();
            assert!(headers.contains(&("webhook-timestamp".to_owned(), "1614265330".to_owned())));
            let signature = headers
                .iter()
                .find(|(name, _)| name == "webhook-signature")
                .map(|(_, value)| value.clone());
            assert_eq!(
                signature.as_ref().map(|value| value.split(' ').count()),
                expected_signatures
            );
            if let Some(signature) = signature {
                assert!(signature.split(' ').any(|part| part == official_signature));
            }
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
}
