//! Requests signed as a platform signs them, with the host's own signing code.

use wasmhook::signature::{self, MacEncoding, Secret, SignatureScheme};

/// GitHub's scheme: an HMAC-SHA256 of the body, hex, in `X-Hub-Signature-256` after `sha256=`.
pub fn github_scheme() -> SignatureScheme {
    SignatureScheme::BodyHmac {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
        encoding: MacEncoding::Hex,
    }
}

/// The `X-Hub-Signature-256` value GitHub would send with `body` under `secret`.
pub fn github_signature(body: &[u8], secret: &str) -> String {
    signature::sign(&github_scheme(), &Secret::new(secret), body, "", 0)
        .expect("a body HMAC signs any body")
        .into_iter()
        .next()
        .map(|(_, value)| value)
        .expect("a body HMAC is one header")
}

/// The headers of a GitHub push delivery: its signature, event, delivery id and content type.
pub fn github_push_headers(body: &[u8], delivery: &str, secret: &str) -> Vec<(String, String)> {
    vec![
        ("x-hub-signature-256".into(), github_signature(body, secret)),
        ("x-github-event".into(), "push".into()),
        ("x-github-delivery".into(), delivery.into()),
        ("content-type".into(), "application/json".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example: the secret "It's a Secret to Everybody" over "Hello, World!".
    #[test]
    fn the_github_signature_matches_githubs_documented_example() {
        assert_eq!(
            github_signature(b"Hello, World!", "It's a Secret to Everybody"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn push_headers_carry_the_signature_event_and_delivery() {
        let headers = github_push_headers(b"{}", "d-1", "s");
        assert_eq!(headers[0].1, github_signature(b"{}", "s"));
        assert_eq!(headers[1], ("x-github-event".into(), "push".into()));
        assert_eq!(headers[2], ("x-github-delivery".into(), "d-1".into()));
    }
}
