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

impl SignatureScheme {
    /// Whether the host checks this scheme before it calls the plugin (`none` checks nothing,
    /// `custom` leaves the check to the plugin).
    pub fn is_checked_by_host(&self) -> bool {
        !matches!(self, SignatureScheme::None | SignatureScheme::Custom)
    }
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
                reason: STANDARD_WEBHOOKS_SECRET_PROBLEM,
            })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

/// Why a request's signature was refused. Every variant maps to 401 but `TooManySignatures`
/// (400: the header is malformed whatever the secrets); the message is safe to return to the
/// sender.
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
    #[error("no configured secret of the source can be used: {reason}")]
    UnusableSecret { reason: &'static str },
    #[error(
        "the `{header}` header carries {count} signatures, more than the {limit} the host compares"
    )]
    TooManySignatures {
        header: String,
        count: usize,
        limit: usize,
    },
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

/// Most signatures one signature header may carry. A sender puts one per secret it signs with
/// (two during a rotation); more is either broken or an attempt to make the host compare many
/// candidates, so it is refused before any MAC is computed.
pub const MAX_SIGNATURE_CANDIDATES: usize = 16;

/// The length of an HMAC-SHA256; a candidate of any other length cannot match and is dropped.
const MAC_LENGTH: usize = 32;

/// A check's verdict and what it cost: the number of HMACs computed, at most one per usable
/// secret whatever the request holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub outcome: Result<(), SignatureError>,
    pub mac_computations: usize,
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
    verify_counting(
        scheme,
        request,
        secrets,
        now_unix_seconds,
        tolerance_seconds,
    )
    .outcome
}

/// [`verify`], also reporting how many HMACs the check computed.
pub fn verify_counting(
    scheme: &SignatureScheme,
    request: SignedRequest<'_>,
    secrets: &[Secret],
    now_unix_seconds: i64,
    tolerance_seconds: i64,
) -> Verification {
    let mut mac_computations = 0;
    let outcome = check(
        scheme,
        request,
        secrets,
        Clock {
            now_unix_seconds,
            tolerance_seconds,
        },
        &mut mac_computations,
    );
    Verification {
        outcome,
        mac_computations,
    }
}

/// The server's clock and how far a signed timestamp may be from it.
#[derive(Clone, Copy)]
struct Clock {
    now_unix_seconds: i64,
    tolerance_seconds: i64,
}

/// The bytes a scheme signs and the candidate MACs the request presents, all 32 bytes long.
struct Challenge<'a> {
    signed_parts: Vec<&'a [u8]>,
    candidates: Vec<[u8; MAC_LENGTH]>,
}

fn check(
    scheme: &SignatureScheme,
    request: SignedRequest<'_>,
    secrets: &[Secret],
    clock: Clock,
    mac_computations: &mut usize,
) -> Result<(), SignatureError> {
    if !scheme.is_checked_by_host() {
        return Ok(());
    }
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let challenge = match scheme {
        SignatureScheme::None | SignatureScheme::Custom => return Ok(()),
        SignatureScheme::SharedToken { header } => {
            return check_shared_token(scheme, header, request, secrets);
        }
        SignatureScheme::BodyHmac {
            header,
            prefix,
            encoding,
        } => body_hmac_challenge(request, header, prefix, *encoding)?,
        SignatureScheme::StandardWebhooks => standard_webhooks_challenge(request, clock)?,
        SignatureScheme::Stripe => stripe_challenge(request, clock)?,
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            version,
        } => versioned_hmac_challenge(request, signature_header, timestamp_header, version, clock)?,
    };
    match_candidates(scheme, secrets, &challenge, mac_computations)
}

fn body_hmac_challenge<'a>(
    request: SignedRequest<'a>,
    header: &str,
    prefix: &str,
    encoding: MacEncoding,
) -> Result<Challenge<'a>, SignatureError> {
    let value = request.single_header(header)?;
    let malformed = |reason| SignatureError::MalformedHeader {
        header: header.to_owned(),
        reason,
    };
    let encoded = value
        .strip_prefix(prefix)
        .ok_or_else(|| malformed("it does not start with the expected prefix"))?;
    let mac = decode_mac(encoded.trim(), encoding).ok_or_else(|| {
        malformed(match encoding {
            MacEncoding::Hex => "the signature is not hexadecimal",
            MacEncoding::Base64 => "the signature is not base64",
        })
    })?;
    let mac = mac_of_hmac_length(mac).ok_or_else(|| malformed(NOT_AN_HMAC))?;
    Ok(Challenge {
        signed_parts: vec![request.body],
        candidates: vec![mac],
    })
}

const NOT_AN_HMAC: &str = "the signature is not 32 bytes long, the length of an HMAC-SHA256";

fn standard_webhooks_challenge<'a>(
    request: SignedRequest<'a>,
    clock: Clock,
) -> Result<Challenge<'a>, SignatureError> {
    let header = "webhook-signature";
    let message_id = request.single_header("webhook-id")?;
    let timestamp_text = request.single_header("webhook-timestamp")?;
    let signatures = request.single_header(header)?;
    let entries = || signatures.split(' ').filter(|entry| !entry.is_empty());
    refuse_too_many(header, entries().count())?;
    check_timestamp("webhook-timestamp", timestamp_text, clock)?;
    let candidates: Vec<[u8; MAC_LENGTH]> = entries()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .filter_map(mac_of_hmac_length)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::MalformedHeader {
            header: header.to_owned(),
            reason: "it holds no `v1,<base64>` signature of 32 bytes",
        });
    }
    Ok(Challenge {
        signed_parts: vec![
            message_id.as_bytes(),
            b".",
            timestamp_text.as_bytes(),
            b".",
            request.body,
        ],
        candidates,
    })
}

fn stripe_challenge<'a>(
    request: SignedRequest<'a>,
    clock: Clock,
) -> Result<Challenge<'a>, SignatureError> {
    let header = "stripe-signature";
    let value = request.single_header(header)?;
    let malformed = |reason| SignatureError::MalformedHeader {
        header: header.to_owned(),
        reason,
    };
    let pairs: Vec<(&str, &str)> = value
        .split(',')
        .filter_map(|pair| pair.trim().split_once('='))
        .collect();
    let timestamps: Vec<&str> = pairs
        .iter()
        .filter(|(key, _)| *key == "t")
        .map(|(_, text)| *text)
        .collect();
    refuse_too_many(header, pairs.len() - timestamps.len())?;
    let timestamp_text = match timestamps.as_slice() {
        [] => return Err(malformed("it has no `t=` timestamp")),
        [one] => *one,
        _ => return Err(malformed("it has more than one `t=` timestamp")),
    };
    // Only v1 counts; ignoring other schemes (v0 and any future one) prevents a downgrade to a
    // weaker scheme.
    let candidates: Vec<[u8; MAC_LENGTH]> = pairs
        .iter()
        .filter(|(key, _)| *key == "v1")
        .filter_map(|(_, encoded)| hex::decode(encoded).ok())
        .filter_map(mac_of_hmac_length)
        .collect();
    if candidates.is_empty() {
        return Err(malformed("it has no `v1=` signature of 32 bytes"));
    }
    check_timestamp(header, timestamp_text, clock)?;
    Ok(Challenge {
        signed_parts: vec![timestamp_text.as_bytes(), b".", request.body],
        candidates,
    })
}

fn versioned_hmac_challenge<'a>(
    request: SignedRequest<'a>,
    signature_header: &str,
    timestamp_header: &str,
    version: &'a str,
    clock: Clock,
) -> Result<Challenge<'a>, SignatureError> {
    let timestamp_text = request.single_header(timestamp_header)?;
    let value = request.single_header(signature_header)?;
    check_timestamp(timestamp_header, timestamp_text, clock)?;
    let malformed = |reason| SignatureError::MalformedHeader {
        header: signature_header.to_owned(),
        reason,
    };
    let mac = value
        .strip_prefix(version)
        .and_then(|rest| rest.strip_prefix('='))
        .and_then(|encoded| hex::decode(encoded.trim()).ok())
        .ok_or_else(|| malformed("it is not `<version>=<hex>` with the expected version"))?;
    let mac = mac_of_hmac_length(mac).ok_or_else(|| malformed(NOT_AN_HMAC))?;
    Ok(Challenge {
        signed_parts: vec![
            version.as_bytes(),
            b":",
            timestamp_text.as_bytes(),
            b":",
            request.body,
        ],
        candidates: vec![mac],
    })
}

fn check_shared_token(
    scheme: &SignatureScheme,
    header: &str,
    request: SignedRequest<'_>,
    secrets: &[Secret],
) -> Result<(), SignatureError> {
    let presented = request.single_header(header)?;
    // Comparing digests keeps the comparison constant-time even in the token's length.
    let presented_digest = Sha256::digest(presented.as_bytes());
    let mut tally = SecretTally::default();
    for secret in secrets {
        if let Some(reason) = secret_problem(scheme, secret) {
            tally.skip(reason);
            continue;
        }
        let expected_digest = Sha256::digest(secret.expose().as_bytes());
        tally.compare(bool::from(presented_digest.ct_eq(&expected_digest)));
    }
    tally.verdict()
}

/// Computes the MAC once per usable secret and compares it in constant time with every
/// candidate, without stopping early; unusable secrets are skipped.
fn match_candidates(
    scheme: &SignatureScheme,
    secrets: &[Secret],
    challenge: &Challenge<'_>,
    mac_computations: &mut usize,
) -> Result<(), SignatureError> {
    let mut tally = SecretTally::default();
    for secret in secrets {
        let key = match hmac_key(scheme, secret) {
            Ok(key) => key,
            Err(reason) => {
                tally.skip(reason);
                continue;
            }
        };
        let expected = hmac_sha256(&key, &challenge.signed_parts);
        *mac_computations += 1;
        for candidate in &challenge.candidates {
            tally.compare(bool::from(expected.ct_eq(candidate)));
        }
    }
    tally.verdict()
}

/// What the secrets of a source made of one request.
#[derive(Default)]
struct SecretTally {
    matched: bool,
    usable: usize,
    first_problem: Option<&'static str>,
}

impl SecretTally {
    fn skip(&mut self, reason: &'static str) {
        self.first_problem.get_or_insert(reason);
    }

    fn compare(&mut self, matched: bool) {
        self.usable += 1;
        self.matched |= matched;
    }

    /// A match passes. Otherwise the request is refused, as `UnusableSecret` when not one
    /// secret of the source could be used (a configuration problem the operator must see).
    fn verdict(self) -> Result<(), SignatureError> {
        match (self.matched, self.usable, self.first_problem) {
            (true, _, _) => Ok(()),
            (false, 0, Some(reason)) => Err(SignatureError::UnusableSecret { reason }),
            _ => Err(SignatureError::NoMatch),
        }
    }
}

/// Refuses a header with more signatures than the host compares.
fn refuse_too_many(header: &str, count: usize) -> Result<(), SignatureError> {
    if count > MAX_SIGNATURE_CANDIDATES {
        return Err(SignatureError::TooManySignatures {
            header: header.to_owned(),
            count,
            limit: MAX_SIGNATURE_CANDIDATES,
        });
    }
    Ok(())
}

fn mac_of_hmac_length(mac: Vec<u8>) -> Option<[u8; MAC_LENGTH]> {
    mac.try_into().ok()
}

/// The HMAC key a secret gives under `scheme`, or why it cannot be used.
fn hmac_key(scheme: &SignatureScheme, secret: &Secret) -> Result<Vec<u8>, &'static str> {
    if let Some(reason) = secret_problem(scheme, secret) {
        return Err(reason);
    }
    match scheme {
        SignatureScheme::StandardWebhooks => secret
            .standard_webhooks_key()
            .map_err(|_| STANDARD_WEBHOOKS_SECRET_PROBLEM),
        _ => Ok(secret.expose().as_bytes().to_vec()),
    }
}

const STANDARD_WEBHOOKS_SECRET_PROBLEM: &str =
    "a Standard Webhooks secret must be base64 after the `whsec_` prefix";

/// Why `secret` cannot serve a source checked with `scheme`, if it cannot: an empty secret
/// would let an empty token or a MAC anyone can compute through, and a Standard Webhooks secret
/// must decode to key bytes. Checked when a secret is added over the API, and at each request
/// (an unusable secret is skipped, so it does not take its source down with it).
pub fn secret_problem(scheme: &SignatureScheme, secret: &Secret) -> Option<&'static str> {
    if matches!(scheme, SignatureScheme::None) {
        return None;
    }
    if secret.expose().is_empty() {
        return Some("the secret is empty");
    }
    match scheme {
        SignatureScheme::StandardWebhooks => match secret.standard_webhooks_key() {
            Err(_) => Some(STANDARD_WEBHOOKS_SECRET_PROBLEM),
            Ok(key) if key.is_empty() => {
                Some("a Standard Webhooks secret must hold key bytes after the `whsec_` prefix")
            }
            Ok(_) => None,
        },
        _ => None,
    }
}

fn decode_mac(encoded: &str, encoding: MacEncoding) -> Option<Vec<u8>> {
    match encoding {
        MacEncoding::Hex => hex::decode(encoded).ok(),
        MacEncoding::Base64 => BASE64.decode(encoded).ok(),
    }
}

fn check_timestamp(header: &str, timestamp_text: &str, clock: Clock) -> Result<(), SignatureError> {
    let timestamp: i64 =
        timestamp_text
            .trim()
            .parse()
            .map_err(|_| SignatureError::MalformedHeader {
                header: header.to_owned(),
                reason: "the timestamp is not a whole number of seconds",
            })?;
    let distance_seconds = clock
        .now_unix_seconds
        .saturating_sub(timestamp)
        .saturating_abs();
    if distance_seconds > clock.tolerance_seconds {
        return Err(SignatureError::TimestampOutsideTolerance {
            header: header.to_owned(),
            distance_seconds,
            tolerance_seconds: clock.tolerance_seconds,
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
        let standard_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let now = 1_700_000_000;
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
        let stripe = |pairs: String| headers(&[("stripe-signature", &format!("t={now},{pairs}"))]);
        let wrong_hex_mac = "00".repeat(32);
        let wrong_base64_mac = BASE64.encode([0u8; 32]);
        let malformed = |header: &str, reason| {
            Err(SignatureError::MalformedHeader {
                header: header.into(),
                reason,
            })
        };
        let too_many = |header: &str, count| {
            Err(SignatureError::TooManySignatures {
                header: header.into(),
                count,
                limit: MAX_SIGNATURE_CANDIDATES,
            })
        };
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
