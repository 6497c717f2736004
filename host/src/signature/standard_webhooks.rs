//! Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature: v1,<base64> …` over `<id>.<timestamp>.<body>`, with a base64 key
//! after `whsec_`. Inbound sources may use it, and every outbound delivery is signed with it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Challenge, Clock, MAC_LENGTH, Secret, SignatureError, SignedRequest};

const SIGNATURE_HEADER: &str = "webhook-signature";

pub(super) fn challenge<'a>(
    request: SignedRequest<'a>,
    clock: Clock,
) -> Result<Challenge<'a>, SignatureError> {
    let header = SIGNATURE_HEADER;
    let message_id = request.single_header("webhook-id")?;
    let timestamp_text = request.single_header("webhook-timestamp")?;
    let signatures = request.single_header(header)?;
    let entries = || signatures.split(' ').filter(|entry| !entry.is_empty());
    super::refuse_too_many(header, entries().count())?;
    super::check_timestamp("webhook-timestamp", timestamp_text, clock)?;
    let candidates: Vec<[u8; MAC_LENGTH]> = entries()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .filter_map(super::mac_of_hmac_length)
        .collect();
    if candidates.is_empty() {
        return Err(super::malformed(
            header,
            "it holds no `v1,<base64>` signature of 32 bytes",
        ));
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

/// The three headers of a message signed with one secret.
pub(super) fn sign(
    secret: &Secret,
    body: &[u8],
    message_id: &str,
    timestamp: String,
) -> Result<Vec<(String, String)>, SignatureError> {
    let key = secret.standard_webhooks_key()?;
    let signature = signature_of(&key, body, message_id, &timestamp);
    Ok(vec![
        ("webhook-id".to_owned(), message_id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp),
        (SIGNATURE_HEADER.to_owned(), signature),
    ])
}

/// One `v1,<base64>` signature.
fn signature_of(key: &[u8], body: &[u8], message_id: &str, timestamp: &str) -> String {
    let mac = super::hmac_sha256(
        key,
        &[
            message_id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", BASE64.encode(mac))
}

/// The Standard Webhooks headers of an outbound delivery, signed with every one of `secrets`:
/// the signature header carries one `v1,<mac>` per secret, separated by spaces, so a receiver
/// that knows any of them verifies it while a secret is rotated. No secrets, no signature.
pub fn sign_with_all(
    secrets: &[Secret],
    body: &[u8],
    message_id: &str,
    now_unix_seconds: i64,
) -> Result<Vec<(String, String)>, SignatureError> {
    let timestamp = now_unix_seconds.to_string();
    let signatures = secrets
        .iter()
        .map(|secret| {
            let key = secret.standard_webhooks_key()?;
            Ok(signature_of(&key, body, message_id, &timestamp))
        })
        .collect::<Result<Vec<_>, SignatureError>>()?;
    let mut headers = vec![
        ("webhook-id".to_owned(), message_id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp),
    ];
    if !signatures.is_empty() {
        headers.push((SIGNATURE_HEADER.to_owned(), signatures.join(" ")));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_reproduces_the_standard_webhooks_vector() {
        let headers = sign(
            &Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            b"{\"test\": 2432232314}",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330".to_owned(),
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
            let headers = sign_with_all(
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
    fn a_secret_that_is_not_base64_cannot_sign() {
        let unusable = Secret::new("whsec_not base64!");
        assert!(matches!(
            sign_with_all(&[unusable], b"{}", "msg_1", 0),
            Err(SignatureError::UnusableSecret { .. })
        ));
    }
}
