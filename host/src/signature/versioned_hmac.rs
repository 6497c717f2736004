//! A versioned HMAC with its timestamp in a header of its own, over
//! `<version>:<timestamp>:<body>`: Slack's `X-Slack-Signature: v0=<hex>` with
//! `X-Slack-Request-Timestamp`.

use super::{
    Challenge, Clock, NOT_AN_HMAC, Secret, SignatureError, SignedRequest, check_timestamp,
    hmac_sha256, mac_of_hmac_length,
};

/// Where a source of this scheme carries the signature and the timestamp, and the version
/// that prefixes both the signed text and the signature.
pub(super) struct Headers<'a> {
    pub(super) signature_header: &'a str,
    pub(super) timestamp_header: &'a str,
    pub(super) version: &'a str,
}

pub(super) fn challenge<'a>(
    request: SignedRequest<'a>,
    headers: Headers<'a>,
    clock: Clock,
) -> Result<Challenge<'a>, SignatureError> {
    let Headers {
        signature_header,
        timestamp_header,
        version,
    } = headers;
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

/// The timestamp and signature headers a sender of this scheme puts on `body`.
pub(super) fn sign(
    secret: &Secret,
    body: &[u8],
    headers: Headers<'_>,
    timestamp: &str,
) -> Vec<(String, String)> {
    let version = headers.version;
    let mac = hmac_sha256(
        secret.expose().as_bytes(),
        &[version.as_bytes(), b":", timestamp.as_bytes(), b":", body],
    );
    vec![
        (headers.timestamp_header.to_owned(), timestamp.to_owned()),
        (
            headers.signature_header.to_owned(),
            format!("{version}={}", hex::encode(mac)),
        ),
    ]
}
