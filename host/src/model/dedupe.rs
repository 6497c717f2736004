//! What ingest deduplicates on, and the bound that keeps every stored id storable (pure).
//!
//! An event's dedupe key is its id within its source: the primary key of `dedupe_keys`, a
//! btree, whose entries PostgreSQL refuses above about 2.7 KB. Such a refusal would fail the
//! whole group-commit transaction, so every id the host stores is bounded far below that: a
//! longer dedupe header is refused with a 400 naming it, and a plugin's longer event id is an
//! invalid answer (see `plugins.rs`).
//!
//! A signature that covers only the body (no timestamp, no signed delivery id) can be replayed
//! by anyone who once saw a signed delivery, under a fresh delivery-id header. For those schemes
//! a second dedupe key covers the body and the event types the plugin made of it, written in
//! the same transaction as the event ids and reclaimed after the same window; see
//! `store::ingest::write_batch`. The event types are part of it because platforms send one body under
//! several topics (Shopify's `orders/create`, `orders/paid` and `orders/updated` carry the same
//! order JSON): those are distinct deliveries. A resend that changes the unsigned event-type
//! header therefore gets through, but only as another event type, never as a second copy of
//! the same one.

use sha2::{Digest, Sha256};

use crate::signature::SignatureScheme;

/// Most bytes in an id the host stores (an event id, or the dedupe header it comes from).
pub const MAX_ID_BYTES: usize = 256;

/// A dedupe header whose value is too long to be stored as an event id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the `{header}` header is {length} bytes long; an id is at most {MAX_ID_BYTES} bytes",
    MAX_ID_BYTES = MAX_ID_BYTES
)]
pub struct IdTooLong {
    pub header: String,
    pub length: usize,
}

/// Refuses a request whose dedupe header (the header its plugin takes the event id from) is
/// longer than an id may be; every occurrence of the header counts.
pub fn check_dedupe_header(
    dedupe_header: Option<&str>,
    headers: &[(String, String)],
) -> Result<(), IdTooLong> {
    let Some(dedupe_header) = dedupe_header else {
        return Ok(());
    };
    match headers.iter().find(|(name, value)| {
        name.eq_ignore_ascii_case(dedupe_header) && value.len() > MAX_ID_BYTES
    }) {
        Some((name, value)) => Err(IdTooLong {
            header: name.clone(),
            length: value.len(),
        }),
        None => Ok(()),
    }
}

/// Whether a scheme's signature leaves everything but the body unsigned, so that a delivery
/// sent again under a new delivery id still verifies. A shared token signs nothing at all, but
/// the body is still the only thing a resend must repeat to be the same webhook. Unsigned and
/// custom schemes are left out: the first has nothing to replay, the second is the plugin's.
pub fn signs_only_the_body(scheme: &SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::BodyHmac { .. } | SignatureScheme::SharedToken { .. }
    )
}

/// The body key when the source's scheme signs only the body and the source dedupes on it
/// (`dedupe_on_body`), else `None`: the SHA-256 of each event type, length-prefixed so that no
/// two lists of types run together alike, followed by the body.
pub fn body_key<'a>(
    scheme: &SignatureScheme,
    dedupe_on_body: bool,
    event_types: impl IntoIterator<Item = &'a str>,
    body: &[u8],
) -> Option<[u8; 32]> {
    if !dedupe_on_body || !signs_only_the_body(scheme) {
        return None;
    }
    let mut digest = Sha256::new();
    for event_type in event_types {
        digest.update((event_type.len() as u64).to_be_bytes());
        digest.update(event_type.as_bytes());
    }
    digest.update(body);
    Some(digest.finalize().into())
}

/// The `dedupe_keys.source_name` under which a source's body keys live. A source name holds
/// only a-z, 0-9, '-' and '_', so this scope can never be a source's own, and no event id a
/// plugin chooses can collide with a body key.
pub fn body_key_scope(source_name: &str) -> String {
    format!("{source_name}/body-sha256")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::MacEncoding;

    fn headers(pairs: &[(&str, String)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    #[test]
    fn dedupe_headers_longer_than_an_id_are_refused() {
        let at_limit = "a".repeat(MAX_ID_BYTES);
        let over_limit = "a".repeat(MAX_ID_BYTES + 1);
        let table = [
            (
                "no dedupe header",
                None,
                headers(&[("webhook-id", over_limit.clone())]),
                None,
            ),
            (
                "at the limit",
                Some("webhook-id"),
                headers(&[("webhook-id", at_limit.clone())]),
                None,
            ),
            (
                "over the limit",
                Some("webhook-id"),
                headers(&[("webhook-id", over_limit.clone())]),
                Some(("webhook-id", MAX_ID_BYTES + 1)),
            ),
            (
                "named in another case",
                Some("X-Shopify-Webhook-Id"),
                headers(&[("x-shopify-webhook-id", over_limit.clone())]),
                Some(("x-shopify-webhook-id", MAX_ID_BYTES + 1)),
            ),
            (
                "a second occurrence over the limit",
                Some("webhook-id"),
                headers(&[
                    ("webhook-id", "short".into()),
                    ("webhook-id", over_limit.clone()),
                ]),
                Some(("webhook-id", MAX_ID_BYTES + 1)),
            ),
            (
                "another header over the limit",
                Some("webhook-id"),
                headers(&[("x-other", over_limit.clone())]),
                None,
            ),
        ];
        for (case, dedupe_header, headers, expected) in table {
            let expected = expected.map(|(header, length)| IdTooLong {
                header: header.to_owned(),
                length,
            });
            assert_eq!(
                check_dedupe_header(dedupe_header, &headers).err(),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn only_schemes_that_sign_only_the_body_get_a_body_key() {
        let table = [
            (
                SignatureScheme::BodyHmac {
                    header: "x-hub-signature-256".into(),
                    prefix: "sha256=".into(),
                    encoding: MacEncoding::Hex,
                },
                true,
            ),
            (
                SignatureScheme::SharedToken {
                    header: "x-gitlab-token".into(),
                },
                true,
            ),
            (SignatureScheme::StandardWebhooks, false),
            (SignatureScheme::Stripe, false),
            (
                SignatureScheme::VersionedHmac {
                    signature_header: "x-slack-signature".into(),
                    timestamp_header: "x-slack-request-timestamp".into(),
                    version: "v0".into(),
                },
                false,
            ),
            (SignatureScheme::None, false),
            (SignatureScheme::Custom, false),
        ];
        for (scheme, keyed) in table {
            assert_eq!(
                body_key(&scheme, true, ["push"], b"{}").is_some(),
                keyed,
                "{scheme:?}"
            );
            assert_eq!(
                body_key(&scheme, false, ["push"], b"{}"),
                None,
                "{scheme:?}"
            );
        }
    }

    #[test]
    fn the_body_key_covers_the_event_types_and_the_body() {
        let scheme = SignatureScheme::SharedToken {
            header: "x-gitlab-token".into(),
        };
        let key = |types: &[&str], body: &[u8]| {
            body_key(&scheme, true, types.iter().copied(), body).map(hex::encode)
        };
        // `printf abc | sha256sum`, the FIPS 180-2 example: no event types, only the body.
        assert_eq!(
            key(&[], b"abc").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        // `printf '\0\0\0\0\0\0\0\x01aabc' | sha256sum`.
        assert_eq!(
            key(&["a"], b"abc").as_deref(),
            Some("8c5e37640539f41dab837ec92170d1caecfb7ca3e167f183356cf4f864142b9b")
        );
        let table: [(&[&str], &[&str]); 3] = [
            (&["orders.create"], &["orders.paid"]),
            (&["ab", "c"], &["a", "bc"]),
            (&["a"], &["a", "a"]),
        ];
        for (one, other) in table {
            assert_ne!(key(one, b"{}"), key(other, b"{}"), "{one:?} and {other:?}");
        }
    }

    #[test]
    fn body_keys_live_outside_every_source_name() {
        let scope = body_key_scope("github");
        assert_eq!(scope, "github/body-sha256");
        assert!(scope.contains('/'), "source names cannot hold '/'");
    }
}
