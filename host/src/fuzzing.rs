//! The bodies of the fuzz targets, for `host/fuzz` (libFuzzer, nightly: `scripts/fuzz.sh`) and
//! for `tests/it/fuzz_regressions.rs` (stable, part of `cargo test`), which runs them over
//! hand-written seeds and over every input that once crashed a target. Not part of the host's
//! API: nothing else calls it.
//!
//! Each target takes raw fuzzer bytes, decodes a structured input from them with `arbitrary`
//! and passes it to a `check_*` function that calls the host code and asserts its properties;
//! tests call the `check_*` functions directly with the inputs they spell out.

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use base64::Engine as _;

use crate::http_error::ApiError;
use crate::plugins::wit::bindings::wasmhook::plugin::types as wit;
use crate::plugins::{self, PluginOutcome};
use crate::signature::{self, MacEncoding, Secret, SignatureError, SignatureScheme, SignedRequest};

/// A target's body: it takes the fuzzer's bytes and panics on a failed property.
pub type Body = fn(&[u8]);

/// Every target: its name (`host/fuzz/fuzz_targets/<name>.rs`, and the directory of its crash
/// inputs under `tests/fixtures/fuzz/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("signature", signature),
    ("config", config),
    ("ingest", ingest),
    ("plugin_output", plugin_output),
    ("plugin_manifest", plugin_manifest),
];

fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

/// Target `signature`: [`check_signature`] on a decoded [`SignatureInput`].
pub fn signature(data: &[u8]) {
    if let Some(input) = decode::<SignatureInput>(data) {
        check_signature(&input);
    }
}

/// Target `config`: [`check_config`] on the bytes as (lossy) UTF-8 text.
pub fn config(data: &[u8]) {
    check_config(&String::from_utf8_lossy(data));
}

/// Target `ingest`: [`check_ingest`] on a decoded [`IngestInput`].
pub fn ingest(data: &[u8]) {
    if let Some(input) = decode::<IngestInput>(data) {
        check_ingest(&input);
    }
}

/// Target `plugin_output`: [`check_plugin_output`] on a decoded [`OutcomeInput`].
pub fn plugin_output(data: &[u8]) {
    if let Some(input) = decode::<OutcomeInput>(data) {
        check_plugin_output(&input);
    }
}

/// Target `plugin_manifest`: [`check_plugin_manifest`] on a decoded [`ManifestInput`].
pub fn plugin_manifest(data: &[u8]) {
    if let Some(input) = decode::<ManifestInput>(data) {
        check_plugin_manifest(&input);
    }
}

/// Every [`SignatureScheme`], with both MAC encodings as their own variants.
#[derive(Arbitrary, Clone, Debug)]
pub enum SchemeInput {
    None,
    BodyHmacHex {
        header: String,
        prefix: String,
    },
    BodyHmacBase64 {
        header: String,
        prefix: String,
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

impl SchemeInput {
    pub fn scheme(&self) -> SignatureScheme {
        match self.clone() {
            SchemeInput::None => SignatureScheme::None,
            SchemeInput::BodyHmacHex { header, prefix } => SignatureScheme::BodyHmac {
                header,
                prefix,
                encoding: MacEncoding::Hex,
            },
            SchemeInput::BodyHmacBase64 { header, prefix } => SignatureScheme::BodyHmac {
                header,
                prefix,
                encoding: MacEncoding::Base64,
            },
            SchemeInput::StandardWebhooks => SignatureScheme::StandardWebhooks,
            SchemeInput::Stripe => SignatureScheme::Stripe,
            SchemeInput::VersionedHmac {
                signature_header,
                timestamp_header,
                version,
            } => SignatureScheme::VersionedHmac {
                signature_header,
                timestamp_header,
                version,
            },
            SchemeInput::SharedToken { header } => SignatureScheme::SharedToken { header },
            SchemeInput::Custom => SignatureScheme::Custom,
        }
    }

    /// The scheme as a plugin returns it through the WIT interface.
    fn to_wit(&self) -> wit::SignatureScheme {
        let body_hmac = |header: &String, prefix: &String, encoding| {
            wit::SignatureScheme::BodyHmac(wit::BodyHmac {
                header: header.clone(),
                prefix: prefix.clone(),
                encoding,
            })
        };
        match self {
            SchemeInput::None => wit::SignatureScheme::None,
            SchemeInput::BodyHmacHex { header, prefix } => {
                body_hmac(header, prefix, wit::MacEncoding::Hex)
            }
            SchemeInput::BodyHmacBase64 { header, prefix } => {
                body_hmac(header, prefix, wit::MacEncoding::Base64)
            }
            SchemeInput::StandardWebhooks => wit::SignatureScheme::StandardWebhooks,
            SchemeInput::Stripe => wit::SignatureScheme::Stripe,
            SchemeInput::VersionedHmac {
                signature_header,
                timestamp_header,
                version,
            } => wit::SignatureScheme::VersionedHmac(wit::VersionedHmac {
                signature_header: signature_header.clone(),
                timestamp_header: timestamp_header.clone(),
                version: version.clone(),
            }),
            SchemeInput::SharedToken { header } => {
                wit::SignatureScheme::SharedToken(header.clone())
            }
            SchemeInput::Custom => wit::SignatureScheme::Custom,
        }
    }
}

/// A header name: mostly one the scheme reads, so that the fuzzer reaches the parsers.
#[derive(Arbitrary, Clone, Debug)]
pub enum HeaderNameInput {
    /// The scheme's n-th header name (modulo their count); upper-cased when bit 7 is set.
    Expected(u8),
    Named(String),
}

impl HeaderNameInput {
    fn resolve(&self, scheme: &SignatureScheme) -> String {
        match self {
            HeaderNameInput::Named(name) => name.clone(),
            HeaderNameInput::Expected(index) => {
                let names = scheme_header_names(scheme);
                let name = names[usize::from(*index & 0x7f) % names.len()];
                if index & 0x80 != 0 {
                    name.to_ascii_uppercase()
                } else {
                    name.to_owned()
                }
            }
        }
    }
}

fn scheme_header_names(scheme: &SignatureScheme) -> Vec<&str> {
    match scheme {
        SignatureScheme::BodyHmac { header, .. } | SignatureScheme::SharedToken { header } => {
            vec![header]
        }
        SignatureScheme::StandardWebhooks => {
            vec!["webhook-id", "webhook-timestamp", "webhook-signature"]
        }
        SignatureScheme::Stripe => vec!["stripe-signature"],
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            ..
        } => vec![signature_header, timestamp_header],
        SignatureScheme::None | SignatureScheme::Custom => vec!["content-type"],
    }
}

/// One request to check, and what a signer of the same scheme would use.
#[derive(Arbitrary, Clone, Debug)]
pub struct SignatureInput {
    pub scheme: SchemeInput,
    pub headers: Vec<(HeaderNameInput, String)>,
    pub body: Vec<u8>,
    pub secrets: Vec<String>,
    pub now: i64,
    pub tolerance: i64,
    /// The Standard Webhooks message id the round trip signs with.
    pub message_id: String,
}

/// `signature::verify` never panics on any headers, body, secrets and clock; schemes that sign
/// nothing accept everything, signed schemes without a secret refuse; and the headers `sign`
/// produces verify with the same secret and clock but not with another secret or body.
pub fn check_signature(input: &SignatureInput) {
    check_scheme(&input.scheme.scheme(), input);
}

/// [`check_signature`] with `scheme` in place of the input's.
fn check_scheme(scheme: &SignatureScheme, input: &SignatureInput) {
    let headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.resolve(scheme), value.clone()))
        .collect();
    let secrets: Vec<Secret> = input.secrets.iter().map(Secret::new).collect();
    let outcome = signature::verify(
        scheme,
        SignedRequest {
            headers: &headers,
            body: &input.body,
        },
        &secrets,
        input.now,
        input.tolerance,
    );
    check_verify_outcome(scheme, &secrets, &outcome);
    let secret = input.secrets.first().map_or("", String::as_str);
    check_round_trip(
        scheme,
        &Secret::new(secret),
        &input.body,
        &input.message_id,
        input.now,
        input.tolerance.max(0),
    );
}

fn check_verify_outcome(
    scheme: &SignatureScheme,
    secrets: &[Secret],
    outcome: &Result<(), SignatureError>,
) {
    if matches!(scheme, SignatureScheme::None | SignatureScheme::Custom) {
        assert_eq!(outcome, &Ok(()), "{scheme:?} checks nothing");
    } else if secrets.is_empty() {
        assert_eq!(outcome, &Err(SignatureError::NoSecret), "{scheme:?}");
    }
    if let Err(error) = outcome {
        // What the sender gets: a 401 (a 400 for a header with too many signatures) with the
        // error's message.
        let api_error = ApiError::signature(error);
        let expected_status = match error {
            SignatureError::TooManySignatures { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        assert_eq!(api_error.status, expected_status);
        assert!(!api_error.detail.is_empty());
    }
}

/// Signs `body` the way a platform using `scheme` would and checks the result verifies, with
/// the same secret only and with the same body only.
fn check_round_trip(
    scheme: &SignatureScheme,
    secret: &Secret,
    body: &[u8],
    message_id: &str,
    now: i64,
    tolerance: i64,
) {
    let Some(headers) = signed_headers(scheme, secret, body, message_id, now) else {
        return;
    };
    verify_signed(scheme, &headers, secret, body, now, tolerance);
}

/// The headers `sign` produces, or `None` where no round trip is expected: schemes that sign
/// nothing, a secret the check refuses to use (empty, or a Standard Webhooks secret that is not
/// base64, the one case `sign` refuses too), and a versioned-hmac scheme whose two headers are
/// one (every request then repeats it).
fn signed_headers(
    scheme: &SignatureScheme,
    secret: &Secret,
    body: &[u8],
    message_id: &str,
    now: i64,
) -> Option<Vec<(String, String)>> {
    match scheme {
        SignatureScheme::None | SignatureScheme::Custom => return None,
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            ..
        } if signature_header.eq_ignore_ascii_case(timestamp_header) => return None,
        _ => {}
    }
    let unusable = signature::secret_problem(scheme, secret).is_some();
    match signature::sign(scheme, secret, body, message_id, now) {
        Ok(_) if unusable => None,
        Ok(headers) => Some(headers),
        Err(error) => {
            assert!(
                matches!(scheme, SignatureScheme::StandardWebhooks)
                    && matches!(error, SignatureError::UnusableSecret { .. }),
                "sign({scheme:?}) failed: {error}"
            );
            None
        }
    }
}

fn verify_signed(
    scheme: &SignatureScheme,
    headers: &[(String, String)],
    secret: &Secret,
    body: &[u8],
    now: i64,
    tolerance: i64,
) {
    let verify = |secret: &Secret, body: &[u8]| {
        signature::verify(
            scheme,
            SignedRequest { headers, body },
            std::slice::from_ref(secret),
            now,
            tolerance,
        )
    };
    assert_eq!(
        verify(secret, body),
        Ok(()),
        "{scheme:?}: signed headers {headers:?} do not verify"
    );
    let other = different_secret(scheme, secret);
    assert!(
        verify(&other, body).is_err(),
        "{scheme:?}: verifies with another secret"
    );
    if !matches!(scheme, SignatureScheme::SharedToken { .. }) {
        let mut tampered = body.to_vec();
        tampered.push(b'!');
        assert!(
            verify(secret, &tampered).is_err(),
            "{scheme:?}: verifies another body"
        );
    }
}

/// A secret that differs from `secret` as a key: for Standard Webhooks one more key byte (a
/// usable secret, so that the check gets to the MAC), otherwise one more character. (Not a NUL:
/// HMAC pads short keys with zeros, so `k` and `k\0` are the same key.)
fn different_secret(scheme: &SignatureScheme, secret: &Secret) -> Secret {
    let base64 = base64::engine::general_purpose::STANDARD;
    match (scheme, secret.standard_webhooks_key()) {
        (SignatureScheme::StandardWebhooks, Ok(mut key)) => {
            key.push(1);
            Secret::new(format!("whsec_{}", base64.encode(key)))
        }
        _ => Secret::new(format!("{}x", secret.expose())),
    }
}

/// `Config::from_toml` never panics, whatever the text; a configuration it accepts converts to
/// its stored rows without panicking either.
pub fn check_config(text: &str) {
    let Ok(config) = crate::config::Config::from_toml(text) else {
        return;
    };
    let _ = config.compiled_cache_dir();
    for source in &config.sources {
        assert!(source.check().is_ok());
        let _ = source.to_record();
        let _ = config
            .plugins
            .limits
            .with_overrides(&source.settings.limits);
    }
    for destination in &config.destinations {
        assert!(destination.check().is_ok());
        let _ = destination.to_record();
    }
}

/// One request as the ingest handler receives it, up to the plugin call.
#[derive(Arbitrary, Clone, Debug)]
pub struct IngestInput {
    pub scheme: SchemeInput,
    /// Raw header bytes; those HTTP cannot carry are left out, as hyper would refuse them.
    pub headers: Vec<(HeaderNameInput, Vec<u8>)>,
    pub content_length: Option<String>,
    pub body: Vec<u8>,
    /// `server.max_body_bytes`, small so that bodies fall on both sides of it.
    pub max_body_bytes: u16,
    pub secrets: Vec<String>,
    pub now: i64,
    pub tolerance: i64,
    pub message_id: String,
}

/// The ingest path before the plugin: the body is bounded exactly as declared and read, the
/// headers convert to pairs (lower-case names, no NUL, so the raw request's `jsonb` headers
/// store), the signature check does not panic, and signed headers that travel through a
/// `HeaderMap` still verify.
pub fn check_ingest(input: &IngestInput) {
    let scheme = input.scheme.scheme();
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.resolve(&scheme).as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(Ok(length)) = input.content_length.as_deref().map(HeaderValue::from_str) {
        headers.append(header::CONTENT_LENGTH, length);
    }

    check_body_bound(input, &headers);

    let pairs = crate::ingest::handler::header_pairs(&headers);
    assert_eq!(pairs.len(), headers.len());
    for (name, value) in &pairs {
        assert_eq!(name, &name.to_ascii_lowercase());
        assert!(!name.contains('\0') && !value.contains('\0'));
    }
    let secrets: Vec<Secret> = input.secrets.iter().map(Secret::new).collect();
    let outcome = signature::verify(
        &scheme,
        SignedRequest {
            headers: &pairs,
            body: &input.body,
        },
        &secrets,
        input.now,
        input.tolerance,
    );
    check_verify_outcome(&scheme, &secrets, &outcome);

    let secret = Secret::new(input.secrets.first().map_or("", String::as_str));
    let Some(signed) = signed_headers(&scheme, &secret, &input.body, &input.message_id, input.now)
    else {
        return;
    };
    let mut signed_map = HeaderMap::new();
    for (name, value) in signed {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                signed_map.append(name, value);
            }
            // Not sendable over HTTP (a name that is not a token, a control character).
            _ => return,
        }
    }
    verify_signed(
        &scheme,
        &crate::ingest::handler::header_pairs(&signed_map),
        &secret,
        &input.body,
        input.now,
        input.tolerance.max(0),
    );
}

/// The body bound: a body within the limit is read whole, one over it is refused with 413.
fn check_body_bound(input: &IngestInput, headers: &HeaderMap) {
    let limit = usize::from(input.max_body_bytes);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let fits = declared.is_none_or(|length| length <= limit as u64) && input.body.len() <= limit;
    let read = futures::executor::block_on(crate::ingest::handler::read_bounded_body(
        headers,
        axum::body::Body::from(input.body.clone()),
        limit,
    ));
    match read {
        Ok(body) => {
            assert!(fits, "a body over the limit of {limit} was read");
            assert_eq!(body, input.body);
        }
        Err(error) => {
            assert!(!fits, "a body within the limit was refused: {error:?}");
            assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
}

/// What a plugin's `handle` returns.
#[derive(Arbitrary, Clone, Debug)]
pub enum OutcomeInput {
    Events(Vec<EventInput>),
    Rejected {
        kind: u8,
        reason: String,
    },
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Clone, Debug)]
pub struct EventInput {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: TimeInput,
    pub data: String,
    pub route_keys: Vec<String>,
}

/// An event's time: empty, a well-formed RFC 3339 rendering of an instant, or any text.
#[derive(Arbitrary, Clone, Debug)]
pub enum TimeInput {
    Empty,
    Instant {
        seconds: i64,
        nanoseconds: u32,
        offset_minutes: i16,
    },
    Text(String),
}

impl TimeInput {
    fn text(&self) -> String {
        match self {
            TimeInput::Empty => String::new(),
            TimeInput::Text(text) => text.clone(),
            TimeInput::Instant {
                seconds,
                nanoseconds,
                offset_minutes,
            } => chrono::DateTime::from_timestamp(*seconds, *nanoseconds)
                .zip(chrono::FixedOffset::east_opt(
                    i32::from(*offset_minutes) * 60,
                ))
                .map(|(instant, offset)| instant.with_timezone(&offset).to_rfc3339())
                .unwrap_or_default(),
        }
    }
}

impl OutcomeInput {
    fn to_wit(&self) -> wit::Outcome {
        let header = |(name, value): &(String, String)| wit::Header {
            name: name.clone(),
            value: value.clone(),
        };
        match self {
            OutcomeInput::Events(events) => wit::Outcome::Events(
                events
                    .iter()
                    .map(|event| wit::Event {
                        id: event.id.clone(),
                        source: event.source.clone(),
                        type_: event.event_type.clone(),
                        subject: event.subject.clone(),
                        time: event.time.text(),
                        data: event.data.clone(),
                        route_keys: event.route_keys.clone(),
                    })
                    .collect(),
            ),
            OutcomeInput::Rejected { kind, reason } => wit::Outcome::Rejected(wit::Rejection {
                kind: match kind % 5 {
                    0 => wit::RejectionKind::Malformed,
                    1 => wit::RejectionKind::Invalid,
                    2 => wit::RejectionKind::Unauthenticated,
                    3 => wit::RejectionKind::StaleTimestamp,
                    _ => wit::RejectionKind::Ignored,
                },
                reason: reason.clone(),
            }),
            OutcomeInput::Reply {
                status,
                headers,
                body,
            } => wit::Outcome::Reply(wit::Reply {
                status: *status,
                headers: headers.iter().map(header).collect(),
                body: body.clone(),
            }),
        }
    }
}

/// The plugin runtime's check of a `handle` outcome never panics, and what it admits holds what
/// the rest of the host relies on: events without NUL (PostgreSQL text), with an id (bounded,
/// a btree key), source and type, an RFC 3339 time, route keys, unique (source, id) pairs, and
/// a CloudEvent rendering that is JSON carrying the data verbatim; replies with a status
/// `StatusCode` accepts and headers of visible ASCII.
pub fn check_plugin_output(input: &OutcomeInput) {
    let received_at = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid instant");
    let outcome = match plugins::wit::outcome_from_wit(input.to_wit(), received_at) {
        Ok(outcome) => outcome,
        Err(invalid) => {
            assert!(!invalid.reason().is_empty());
            return;
        }
    };
    match outcome {
        PluginOutcome::Events(events) => {
            let mut seen = BTreeSet::new();
            for event in &events {
                check_event(event);
                assert!(seen.insert((event.source.clone(), event.id.clone())));
            }
        }
        PluginOutcome::Rejected { .. } => {}
        PluginOutcome::Reply(reply) => {
            assert!((100..=599).contains(&reply.status));
            assert!(StatusCode::from_u16(reply.status).is_ok());
            for (name, value) in &reply.headers {
                assert!(!name.is_empty() && name.bytes().all(|byte| byte.is_ascii_graphic()));
                assert!(HeaderValue::from_str(value).is_ok(), "{value:?}");
            }
        }
    }
}

fn check_event(event: &crate::model::events::NormalizedEvent) {
    let texts = [
        &event.id,
        &event.source,
        &event.event_type,
        &event.time,
        &event.data_json,
    ];
    for text in texts
        .into_iter()
        .chain(&event.subject)
        .chain(&event.route_keys)
    {
        assert!(!text.contains('\0'), "{event:?}");
    }
    assert!(!event.id.trim().is_empty() && !event.source.trim().is_empty());
    assert!(
        event.id.len() <= crate::model::dedupe::MAX_ID_BYTES,
        "{event:?}"
    );
    assert!(!event.event_type.trim().is_empty());
    assert!(chrono::DateTime::parse_from_rfc3339(&event.time).is_ok());
    assert!(!event.route_keys.is_empty());
    let json = event.to_cloudevent_json();
    // Raw values, not a `serde_json::Value`: JSON admits numbers such as `1e999` that serde_json
    // does not parse into a tree, and the data is forwarded as written.
    let document: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(&json).expect("a CloudEvent is one JSON object");
    let attribute = |name: &str| -> serde_json::Value {
        serde_json::from_str(document[name].get()).expect("attributes are strings")
    };
    assert_eq!(attribute("specversion"), "1.0");
    assert_eq!(attribute("id"), event.id.as_str());
    assert_eq!(attribute("type"), event.event_type.as_str());
    let data = event
        .data_json
        .trim_matches(|character| matches!(character, ' ' | '\t' | '\n' | '\r'));
    assert_eq!(document["data"].get(), data);
}

/// What a plugin's `describe` returns.
#[derive(Arbitrary, Clone, Debug)]
pub struct ManifestInput {
    pub name: String,
    pub version: String,
    pub description: String,
    pub signature: SchemeInput,
    pub dedupe_header: Option<String>,
    pub event_types: Vec<String>,
    /// A request to check against the declared scheme (its own `scheme` is not used).
    pub request: SignatureInput,
}

/// The runtime's manifest check never panics; a manifest it admits has a plain name, header
/// names that are HTTP tokens, stores as `jsonb` (no NUL anywhere: PostgreSQL refuses
/// `\u0000` in `jsonb`), and its scheme verifies requests like any other.
pub fn check_plugin_manifest(input: &ManifestInput) {
    let manifest = plugins::wit::manifest_from_wit(wit::Manifest {
        name: input.name.clone(),
        version: input.version.clone(),
        description: input.description.clone(),
        signature: input.signature.to_wit(),
        dedupe_header: input.dedupe_header.clone(),
        event_types: input.event_types.clone(),
    });
    if plugins::manifest::validate_manifest(&manifest).is_err() {
        return;
    }
    assert!(crate::config::is_plain_name(&manifest.name));
    for name in scheme_header_names(&manifest.signature) {
        assert!(HeaderName::from_bytes(name.as_bytes()).is_ok(), "{name:?}");
        assert_eq!(name, name.to_ascii_lowercase());
    }
    let stored = serde_json::to_string(&manifest).expect("a manifest serializes");
    assert!(
        !stored.contains("\\u0000"),
        "an admitted manifest cannot be stored: {stored}"
    );
    check_scheme(&manifest.signature, &input.request);
}
