//! What a plugin may declare about itself: a manifest and a signature scheme the host can
//! serve and store.

use super::PluginManifest;
use crate::signature::SignatureScheme;

/// The manifest of a plugin whose `describe` has not answered yet.
pub(super) fn placeholder_manifest() -> PluginManifest {
    PluginManifest {
        name: String::new(),
        version: String::new(),
        description: String::new(),
        signature: SignatureScheme::None,
        dedupe_header: None,
        event_types: Vec::new(),
    }
}

pub(crate) fn validate_manifest(manifest: &PluginManifest) -> Result<(), String> {
    let name_is_plain = !manifest.name.is_empty()
        && manifest.name.len() <= 64
        && manifest
            .name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if !name_is_plain {
        return Err(format!(
            "name {:?} must be 1-64 characters of a-z, 0-9 and '-'",
            manifest.name
        ));
    }
    if manifest.version.trim().is_empty() {
        return Err("version is empty".to_owned());
    }
    // The version labels every log line of the plugin, so a control character in it could
    // forge lines.
    if manifest.version.chars().any(char::is_control) {
        return Err(format!(
            "version {:?} contains a control character",
            manifest.version
        ));
    }
    if manifest.event_types.iter().any(|t| t.trim().is_empty()) {
        return Err("event-types contains an empty type".to_owned());
    }
    validate_scheme(&manifest.signature)?;
    // The manifest is stored as `jsonb`, which refuses NUL (`\u0000`): refused here, such a
    // plugin fails to load instead of failing the insert of its version.
    let scheme_texts = match &manifest.signature {
        SignatureScheme::BodyHmac { prefix, .. } => vec![prefix],
        SignatureScheme::VersionedHmac { version, .. } => vec![version],
        _ => Vec::new(),
    };
    let mut texts = [&manifest.version, &manifest.description]
        .into_iter()
        .chain(&manifest.dedupe_header)
        .chain(&manifest.event_types)
        .chain(scheme_texts);
    if texts.any(|text| text.contains('\0')) {
        return Err("a field contains a NUL character".to_owned());
    }
    Ok(())
}

pub(super) fn validate_scheme(scheme: &SignatureScheme) -> Result<(), String> {
    let header_is_valid = |header: &str| {
        !header.is_empty()
            && header
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    match scheme {
        SignatureScheme::BodyHmac { header, .. } | SignatureScheme::SharedToken { header }
            if !header_is_valid(header) =>
        {
            Err(format!("signature header {header:?} is not a header name"))
        }
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            ..
        } if !header_is_valid(signature_header) || !header_is_valid(timestamp_header) => {
            Err("versioned-hmac signature and timestamp headers must be header names".to_owned())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::MacEncoding;

    /// A manifest the host serves, to vary one field at a time.
    fn valid() -> PluginManifest {
        PluginManifest {
            name: "github".into(),
            version: "1.0.0".into(),
            description: "GitHub".into(),
            signature: SignatureScheme::BodyHmac {
                header: "x-hub-signature-256".into(),
                prefix: "sha256=".into(),
                encoding: MacEncoding::Hex,
            },
            dedupe_header: Some("x-github-delivery".into()),
            event_types: vec!["github.*".into()],
        }
    }

    fn slack(version: &str) -> SignatureScheme {
        SignatureScheme::VersionedHmac {
            signature_header: "x-slack-signature".into(),
            timestamp_header: "x-slack-request-timestamp".into(),
            version: version.into(),
        }
    }

    /// Manifests that cannot be served: a name, version, event type or header the host refuses.
    fn unservable_cases() -> Vec<(&'static str, PluginManifest, bool)> {
        let valid = valid();
        vec![
            ("valid", valid.clone(), true),
            (
                "valid versioned-hmac",
                PluginManifest {
                    signature: slack("v0"),
                    ..valid.clone()
                },
                true,
            ),
            (
                "upper-case name",
                PluginManifest {
                    name: "GitHub".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "blank version",
                PluginManifest {
                    version: " ".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "a newline in the version",
                PluginManifest {
                    version: "1.0.0\nINFO forged".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "empty event type",
                PluginManifest {
                    event_types: vec![String::new()],
                    ..valid.clone()
                },
                false,
            ),
            (
                "signature header that is not a header name",
                PluginManifest {
                    signature: SignatureScheme::SharedToken {
                        header: "x token".into(),
                    },
                    ..valid.clone()
                },
                false,
            ),
        ]
    }

    /// Manifests that cannot be stored: PostgreSQL's jsonb refuses NUL in any text.
    fn unstorable_cases() -> Vec<(&'static str, PluginManifest, bool)> {
        let valid = valid();
        vec![
            // Found by the plugin_manifest fuzz target (tests/fixtures/fuzz/plugin_manifest):
            // PostgreSQL's jsonb refuses `\u0000`, so the version could not be stored.
            (
                "NUL in the version",
                PluginManifest {
                    version: "7\u{0}7".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the description",
                PluginManifest {
                    description: "\u{0}".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the dedupe header",
                PluginManifest {
                    dedupe_header: Some("x\u{0}".into()),
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in an event type",
                PluginManifest {
                    event_types: vec!["a\u{0}".into()],
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the body-hmac prefix",
                PluginManifest {
                    signature: SignatureScheme::BodyHmac {
                        header: "x-sig".into(),
                        prefix: "sha256\u{0}=".into(),
                        encoding: MacEncoding::Base64,
                    },
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the versioned-hmac version",
                PluginManifest {
                    signature: slack("v\u{0}"),
                    ..valid.clone()
                },
                false,
            ),
        ]
    }

    #[test]
    fn manifests_that_cannot_be_served_or_stored_are_refused() {
        let table = [unservable_cases(), unstorable_cases()]
            .into_iter()
            .flatten();
        for (name, manifest, admitted) in table {
            assert_eq!(
                validate_manifest(&manifest).is_ok(),
                admitted,
                "case: {name}"
            );
        }
    }
}
