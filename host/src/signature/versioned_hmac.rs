//! A versioned HMAC with its timestamp in a header of its own, over
//! `<version>:<timestamp>:<body>`: Slack's `X-Slack-Signature: v0=<hex>` with
//! `X-Slack-Request-Timestamp`.

use super::{Challenge, Clock, NOT_AN_HMAC, Secret, SignatureError, SignedRequest};

pub(super) fn challenge<'a>(
    request: SignedRequest<'a>,
    signature_header: &str,
    timestamp_header: &str,
    version: &'a str,
    clock: Clock,
) -> Result<Challenge<'a>, SignatureError> {
    let timestamp_text = request.single_header(timestamp_header)?;
    let value = request.single_header(signature_header)?;
    super::check_timestamp(timestamp_header, timestamp_text, clock)?;
    let malformed = |reason| super::malformed(signature_header, reason);
    let mac = value
        .strip_prefix(version)
        .and_then(|rest| rest.strip_prefix('='))
        .and_then(|encoded| hex::decode(encoded.trim()).ok())
        .ok_or_else(|| malformed("it is not `<version>=<hex>` with the expected version"))?;
    let mac = super::mac_of_hmac_length(mac).ok_or_else(|| malformed(NOT_AN_HMAC))?;
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

/// The timestamp and signature headers a sender of this scheme puts on `body`; `names` are
/// the signature header, the timestamp header and the version.
pub(super) fn sign(
    secret: &Secret,
    body: &[u8],
    names: [&str; 3],
    timestamp: &str,
) -> Vec<(String, String)> {
    let [signature_header, timestamp_header, version] = names;
    let mac = super::hmac_sha256(
        secret.expose().as_bytes(),
        &[version.as_bytes(), b":", timestamp.as_bytes(), b":", body],
    );
    vec![
        (timestamp_header.to_owned(), timestamp.to_owned()),
        (
            signature_header.to_owned(),
            format!("{version}={}", hex::encode(mac)),
        ),
    ]
}
