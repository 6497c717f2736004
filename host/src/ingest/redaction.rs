//! Credentials the host neither keeps nor shows. A request's credential headers are redacted
//! once its signature has been checked, before it is stored or handed to a plugin; the
//! credentials of a destination (header values, the userinfo of its URL) are write-only in the
//! admin API. Redacting keeps the header's name and position, so it is still seen to have been
//! there.

use std::collections::BTreeMap;

use crate::signature::SignatureScheme;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// Request headers that carry a credential whatever the scheme. MAC headers are not in the
/// list: a MAC proves one body and gives away no key.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Destination headers whose values the admin API shows; every other value is write-only,
/// since an operator-chosen name (`X-Api-Key`, `X-Splunk-Token`, …) says nothing reliable
/// about whether it holds a credential.
const VISIBLE_DESTINATION_HEADERS: &[&str] = &["accept", "content-type", "user-agent"];

/// Replaces the values of the credential headers and of the scheme's shared-token header (the
/// source's secret itself) with `[redacted]`. Runs after the host verified the request.
pub fn redact_request_headers(scheme: &SignatureScheme, headers: &mut [(String, String)]) {
    let shared_token_header = match scheme {
        SignatureScheme::SharedToken { header } => Some(header.as_str()),
        _ => None,
    };
    for (name, value) in headers.iter_mut() {
        let is_credential = CREDENTIAL_HEADERS
            .iter()
            .chain(shared_token_header.iter())
            .any(|credential| name.eq_ignore_ascii_case(credential));
        if is_credential {
            *value = REDACTED.to_owned();
        }
    }
}

/// Redacts every value: for a stored request whose source's scheme is unknown (the source is
/// gone or cannot be built), since any header may then have held its token.
pub fn redact_every_header_value(headers: &mut [(String, String)]) {
    for (_, value) in headers.iter_mut() {
        *value = REDACTED.to_owned();
    }
}

/// A destination's headers as the admin API shows them.
pub fn destination_headers_view(
    headers: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    headers
        .into_iter()
        .map(|(name, value)| {
            let visible = VISIBLE_DESTINATION_HEADERS
                .iter()
                .any(|shown| name.eq_ignore_ascii_case(shown));
            let value = if visible { value } else { REDACTED.to_owned() };
            (name, value)
        })
        .collect()
}

/// Puts the stored value back wherever an update sent `[redacted]` (what the API showed),
/// so that sending a shown destination back keeps its credentials. Fails with the header's
/// name when there is no stored value of that name.
pub fn keep_redacted_destination_headers(
    submitted: &mut BTreeMap<String, String>,
    stored: &[(String, String)],
) -> Result<(), String> {
    for (name, value) in submitted.iter_mut() {
        if value != REDACTED {
            continue;
        }
        let stored_value = stored
            .iter()
            .find(|(stored_name, _)| stored_name.eq_ignore_ascii_case(name))
            .map(|(_, stored_value)| stored_value.clone());
        *value = stored_value.ok_or_else(|| {
            format!("{name}: `{REDACTED}` stands for the stored value, and this header has none")
        })?;
    }
    Ok(())
}

/// The URL without its userinfo, which reads `[redacted]@` when there was one
/// (`https://user:pass@host/` and `https://token@host/` both show as
/// `https://[redacted]@host/`): a token is often sent as the username. A URL that does not
/// parse is shown as it is (the API refuses such URLs, so there is nothing to hide).
pub fn url_without_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed
                .to_string()
                .replacen("://", &format!("://{REDACTED}@"), 1)
        }
        _ => url.to_owned(),
    }
}

/// Whether a submitted URL carries the `[redacted]@` placeholder the API shows for stored
/// userinfo.
pub fn has_redacted_userinfo(url: &str) -> bool {
    url.contains(&format!("://{REDACTED}@"))
}

/// Whether two URLs have the same scheme, host and port, so that a stored credential may go
/// on being sent to the submitted one. A URL that does not parse is nobody's origin.
pub fn same_origin(submitted: &str, stored: &str) -> bool {
    match (url::Url::parse(submitted), url::Url::parse(stored)) {
        (Ok(submitted), Ok(stored)) => {
            submitted.scheme() == stored.scheme()
                && submitted.host_str() == stored.host_str()
                && submitted.port_or_known_default() == stored.port_or_known_default()
        }
        _ => false,
    }
}

/// Whether an update uses a `[redacted]` placeholder (a header value or the URL's userinfo),
/// that is, asks to keep a stored credential.
pub fn keeps_a_stored_credential(url: &str, headers: &BTreeMap<String, String>) -> bool {
    has_redacted_userinfo(url) || headers.values().any(|value| value == REDACTED)
}

/// The URL an update stores: where it has the `[redacted]@` placeholder the API showed, the
/// stored userinfo takes its place. The caller has checked that the origin is unchanged.
pub fn keep_redacted_url_userinfo(submitted: &str, stored: &str) -> String {
    if !has_redacted_userinfo(submitted) {
        return submitted.to_owned();
    }
    if url_without_userinfo(stored) == submitted {
        return stored.to_owned();
    }
    let without_placeholder = submitted.replacen(&format!("{REDACTED}@"), "", 1);
    match (
        url::Url::parse(&without_placeholder),
        url::Url::parse(stored),
    ) {
        (Ok(mut kept), Ok(stored)) => {
            let _ = kept.set_username(stored.username());
            let _ = kept.set_password(stored.password());
            kept.to_string()
        }
        _ => submitted.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pair = (&'static str, &'static str);

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn request_credentials_are_redacted_and_everything_else_is_kept() {
        let gitlab = SignatureScheme::SharedToken {
            header: "x-gitlab-token".to_owned(),
        };
        let github = SignatureScheme::BodyHmac {
            header: "x-hub-signature-256".to_owned(),
            prefix: "sha256=".to_owned(),
            encoding: crate::signature::MacEncoding::Hex,
        };
        let cases: &[(&SignatureScheme, &[Pair], &[Pair])] = &[
            (
                &gitlab,
                &[
                    ("x-gitlab-token", "secret"),
                    ("x-gitlab-event", "Push Hook"),
                ],
                &[
                    ("x-gitlab-token", REDACTED),
                    ("x-gitlab-event", "Push Hook"),
                ],
            ),
            (
                &github,
                &[
                    ("x-hub-signature-256", "sha256=ab"),
                    ("Authorization", "Bearer t"),
                ],
                &[
                    ("x-hub-signature-256", "sha256=ab"),
                    ("Authorization", REDACTED),
                ],
            ),
            (
                &SignatureScheme::None,
                &[
                    ("cookie", "a=1"),
                    ("proxy-authorization", "Basic x"),
                    ("x-gitlab-token", "t"),
                ],
                &[
                    ("cookie", REDACTED),
                    ("proxy-authorization", REDACTED),
                    ("x-gitlab-token", "t"),
                ],
            ),
        ];
        for (scheme, headers, expected) in cases {
            let mut headers = pairs(headers);
            redact_request_headers(scheme, &mut headers);
            assert_eq!(headers, pairs(expected), "{scheme:?}");
        }
    }

    #[test]
    fn destination_header_values_are_write_only_except_a_safe_few() {
        let shown = destination_headers_view(pairs(&[
            ("Authorization", "Bearer t"),
            ("X-Api-Key", "k"),
            ("Content-Type", "application/json"),
        ]));
        assert_eq!(shown["Authorization"], REDACTED);
        assert_eq!(shown["X-Api-Key"], REDACTED);
        assert_eq!(shown["Content-Type"], "application/json");
    }

    #[test]
    fn a_shown_destination_sent_back_keeps_its_stored_credentials() {
        let stored = pairs(&[("Authorization", "Bearer t")]);
        let mut submitted = BTreeMap::from([
            ("authorization".to_owned(), REDACTED.to_owned()),
            ("X-Team".to_owned(), "payments".to_owned()),
        ]);
        keep_redacted_destination_headers(&mut submitted, &stored).unwrap();
        assert_eq!(submitted["authorization"], "Bearer t");
        assert_eq!(submitted["X-Team"], "payments");
        let mut unknown = BTreeMap::from([("X-Key".to_owned(), REDACTED.to_owned())]);
        let error = keep_redacted_destination_headers(&mut unknown, &stored).unwrap_err();
        assert!(error.starts_with("X-Key:"), "{error}");
    }

    #[test]
    fn url_userinfo_is_hidden_whole_and_kept_on_a_round_trip() {
        let cases = [
            (
                "https://user:pass@example.com/hook",
                "https://[redacted]@example.com/hook",
            ),
            (
                "https://sk_live_token@example.com/hook",
                "https://[redacted]@example.com/hook",
            ),
            (
                "https://:pass@example.com/",
                "https://[redacted]@example.com/",
            ),
            ("https://example.com/hook", "https://example.com/hook"),
            ("not a url", "not a url"),
        ];
        for (stored, shown) in cases {
            assert_eq!(url_without_userinfo(stored), shown, "{stored}");
            assert_eq!(
                keep_redacted_url_userinfo(shown, stored),
                stored,
                "{stored}"
            );
        }
        assert_eq!(
            keep_redacted_url_userinfo(
                "https://[redacted]@example.com/other",
                "https://user:pass@example.com/hook"
            ),
            "https://user:pass@example.com/other"
        );
        assert_eq!(
            keep_redacted_url_userinfo(
                "https://other@example.com/",
                "https://user:pass@example.com/"
            ),
            "https://other@example.com/"
        );
    }

    #[test]
    fn a_stored_credential_goes_only_to_the_same_scheme_host_and_port() {
        let stored = "https://user:pass@example.com/hook";
        let cases = [
            ("https://[redacted]@example.com/other", true),
            ("https://example.com:443/hook", true),
            ("http://[redacted]@example.com/hook", false),
            ("https://[redacted]@example.org/hook", false),
            ("https://[redacted]@example.com:8443/hook", false),
            ("not a url", false),
        ];
        for (submitted, same) in cases {
            assert_eq!(same_origin(submitted, stored), same, "{submitted}");
        }
        let headers = |value: &str| BTreeMap::from([("X-Key".to_owned(), value.to_owned())]);
        assert!(keeps_a_stored_credential(
            "https://example.com/",
            &headers(REDACTED)
        ));
        assert!(keeps_a_stored_credential(
            "https://[redacted]@example.com/",
            &headers("new")
        ));
        assert!(!keeps_a_stored_credential(
            "https://example.com/",
            &headers("new")
        ));
    }
}
