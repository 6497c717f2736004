//! Webhook signature schemes: checking inbound requests and signing outbound ones.
//!
//! Pure logic: nothing here does IO or reads a clock. Callers pass the headers, the exact body
//! bytes, the source's secrets and `now`. MACs are compared in constant time, a request passes
//! when any active secret matches (so secrets rotate without downtime), and errors name what is
//! wrong without ever containing a secret or a computed MAC.
//!
//! This folder owns every scheme, one file per family with its check and its signer; `mod.rs`
//! keeps what they share (the scheme enum, secrets, errors, the constant-time comparison of
//! candidates and the dispatch by scheme). It calls nothing else of the host.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

mod body_hmac;
mod shared_token;
pub mod standard_webhooks;
mod stripe;
mod versioned_hmac;

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
            return shared_token::check(scheme, header, request, secrets);
        }
        SignatureScheme::BodyHmac {
            header,
            prefix,
            encoding,
        } => body_hmac::challenge(request, header, prefix, *encoding)?,
        SignatureScheme::StandardWebhooks => standard_webhooks::challenge(request, clock)?,
        SignatureScheme::Stripe => stripe::challenge(request, clock)?,
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            version,
        } => {
            versioned_hmac::challenge(request, signature_header, timestamp_header, version, clock)?
        }
    };
    match_candidates(scheme, secrets, &challenge, mac_computations)
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

/// The error for a signature header that is not of the scheme's form.
fn malformed(header: &str, reason: &'static str) -> SignatureError {
    SignatureError::MalformedHeader {
        header: header.to_owned(),
        reason,
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

/// Why a signature header is malformed when its MAC has the wrong length.
const NOT_AN_HMAC: &str = "the signature is not 32 bytes long, the length of an HMAC-SHA256";

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
        } => body_hmac::sign(secret, body, header, prefix, *encoding),
        SignatureScheme::StandardWebhooks => {
            standard_webhooks::sign(secret, body, message_id, timestamp)?
        }
        SignatureScheme::Stripe => stripe::sign(secret, body, &timestamp),
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            version,
        } => versioned_hmac::sign(
            secret,
            body,
            [signature_header, timestamp_header, version],
            &timestamp,
        ),
        SignatureScheme::SharedToken { header } => shared_token::sign(secret, header),
    };
    Ok(headers)
}

#[cfg(test)]
mod tests;
