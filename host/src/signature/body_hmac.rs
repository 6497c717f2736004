//! HMAC-SHA256 of the body alone, in one header, hex or base64 after an optional prefix:
//! GitHub's `X-Hub-Signature-256: sha256=<hex>`, Shopify's `X-Shopify-Hmac-Sha256: <base64>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Challenge, MacEncoding, NOT_AN_HMAC, Secret, SignatureError, SignedRequest};

pub(super) fn challenge<'a>(
    request: SignedRequest<'a>,
    header: &str,
    prefix: &str,
    encoding: MacEncoding,
) -> Result<Challenge<'a>, SignatureError> {
    let value = request.single_header(header)?;
    let malformed = |reason| super::malformed(header, reason);
    let encoded = value
        .strip_prefix(prefix)
        .ok_or_else(|| malformed("it does not start with the expected prefix"))?;
    let mac = decode_mac(encoded.trim(), encoding).ok_or_else(|| {
        malformed(match encoding {
            MacEncoding::Hex => "the signature is not hexadecimal",
            MacEncoding::Base64 => "the signature is not base64",
        })
    })?;
    let mac = super::mac_of_hmac_length(mac).ok_or_else(|| malformed(NOT_AN_HMAC))?;
    Ok(Challenge {
        signed_parts: vec![request.body],
        candidates: vec![mac],
    })
}

/// The one header a sender of this scheme puts on `body`.
pub(super) fn sign(
    secret: &Secret,
    body: &[u8],
    header: &str,
    prefix: &str,
    encoding: MacEncoding,
) -> Vec<(String, String)> {
    let mac = super::hmac_sha256(secret.expose().as_bytes(), &[body]);
    let encoded = match encoding {
        MacEncoding::Hex => hex::encode(mac),
        MacEncoding::Base64 => BASE64.encode(mac),
    };
    vec![(header.to_owned(), format!("{prefix}{encoded}"))]
}

fn decode_mac(encoded: &str, encoding: MacEncoding) -> Option<Vec<u8>> {
    match encoding {
        MacEncoding::Hex => hex::decode(encoded).ok(),
        MacEncoding::Base64 => BASE64.decode(encoded).ok(),
    }
}
