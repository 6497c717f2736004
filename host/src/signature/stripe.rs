//! Stripe's scheme: one `Stripe-Signature: t=<timestamp>,v1=<hex>[,v1=<hex>…]` header over
//! `<timestamp>.<body>`; several `v1` signatures while a secret rolls.

use super::{Challenge, Clock, MAC_LENGTH, Secret, SignatureError, SignedRequest};

const HEADER: &str = "stripe-signature";

pub(super) fn challenge<'a>(
    request: SignedRequest<'a>,
    clock: Clock,
) -> Result<Challenge<'a>, SignatureError> {
    let value = request.single_header(HEADER)?;
    let malformed = |reason| super::malformed(HEADER, reason);
    let pairs: Vec<(&str, &str)> = value
        .split(',')
        .filter_map(|pair| pair.trim().split_once('='))
        .collect();
    let timestamps: Vec<&str> = pairs
        .iter()
        .filter(|(key, _)| *key == "t")
        .map(|(_, text)| *text)
        .collect();
    super::refuse_too_many(HEADER, pairs.len() - timestamps.len())?;
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
        .filter_map(super::mac_of_hmac_length)
        .collect();
    if candidates.is_empty() {
        return Err(malformed("it has no `v1=` signature of 32 bytes"));
    }
    super::check_timestamp(HEADER, timestamp_text, clock)?;
    Ok(Challenge {
        signed_parts: vec![timestamp_text.as_bytes(), b".", request.body],
        candidates,
    })
}

/// The header Stripe puts on `body` sent at `timestamp`.
pub(super) fn sign(secret: &Secret, body: &[u8], timestamp: &str) -> Vec<(String, String)> {
    let mac = super::hmac_sha256(
        secret.expose().as_bytes(),
        &[timestamp.as_bytes(), b".", body],
    );
    vec![(
        HEADER.to_owned(),
        format!("t={timestamp},v1={}", hex::encode(mac)),
    )]
}
