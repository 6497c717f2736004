//! The generic plugin: any JSON platform, driven by the source's configuration.
//!
//! Configuration (JSON; every key optional, unknown keys refused so typos fail at load time):
//!
//! ```json
//! {
//!   "id_header": "webhook-id",
//!   "type_header": "x-event-type",
//!   "type_pointer": "/type",
//!   "subject_pointer": "/data/id",
//!   "time_pointer": "/created_at",
//!   "source": "https://platform.example",
//!   "signature": { "scheme": "standard-webhooks" }
//! }
//! ```
//!
//! The id comes from `id_header` (default `webhook-id`), else the body's SHA-256. The type
//! comes from `type_header` or `type_pointer` (at most one), else it is `generic.event`.
//! `signature.scheme` is one of `standard-webhooks` (the default), `hmac-sha256` (with
//! `header`, optional `prefix` and `encoding` `hex` or `base64`), `stripe`, `slack` (with
//! optional `signature_header`, `timestamp_header`, `version`), `shared-token` (with `header`)
//! or `none`.

use serde::Deserialize;
use serde_json::Value;
use wasmhook_plugin_sdk::{
    BodyHmac, Event, MacEncoding, Manifest, Outcome, Plugin, Refusal, RejectionKind, Request,
    SignatureScheme, SourceSettings, VersionedHmac, export_plugin,
};

/// The generic plugin.
pub struct Generic;

export_plugin!(Generic);

const DEFAULT_ID_HEADER: &str = "webhook-id";
const DEFAULT_TYPE: &str = "generic.event";

/// A source's configuration, parsed.
#[derive(Deserialize, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GenericConfig {
    pub id_header: Option<String>,
    pub type_header: Option<String>,
    pub type_pointer: Option<String>,
    pub subject_pointer: Option<String>,
    pub time_pointer: Option<String>,
    pub source: Option<String>,
    pub signature: Option<SignatureConfig>,
}

/// The signature part of the configuration.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SignatureConfig {
    StandardWebhooks,
    HmacSha256 {
        header: String,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        encoding: EncodingConfig,
    },
    Stripe,
    Slack {
        #[serde(default = "slack_signature_header")]
        signature_header: String,
        #[serde(default = "slack_timestamp_header")]
        timestamp_header: String,
        #[serde(default = "slack_version")]
        version: String,
    },
    SharedToken {
        header: String,
    },
    None,
}

#[derive(Deserialize, Debug, Default, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum EncodingConfig {
    #[default]
    Hex,
    Base64,
}

fn slack_signature_header() -> String {
    "x-slack-signature".to_owned()
}

fn slack_timestamp_header() -> String {
    "x-slack-request-timestamp".to_owned()
}

fn slack_version() -> String {
    "v0".to_owned()
}

impl GenericConfig {
    /// Parses and checks a configuration string; empty means every default.
    pub fn parse(config: &str) -> Result<GenericConfig, String> {
        if config.trim().is_empty() {
            return Ok(GenericConfig::default());
        }
        let parsed: GenericConfig = serde_json::from_str(config)
            .map_err(|error| format!("the configuration is not valid: {error}"))?;
        if parsed.type_header.is_some() && parsed.type_pointer.is_some() {
            return Err("set at most one of `type_header` and `type_pointer`".to_owned());
        }
        for (key, pointer) in [
            ("type_pointer", &parsed.type_pointer),
            ("subject_pointer", &parsed.subject_pointer),
            ("time_pointer", &parsed.time_pointer),
        ] {
            if let Some(pointer) = pointer
                && !pointer.starts_with('/')
            {
                return Err(format!(
                    "`{key}` {pointer:?} is not a JSON pointer (it must start with '/')"
                ));
            }
        }
        for (key, header) in [
            ("id_header", &parsed.id_header),
            ("type_header", &parsed.type_header),
        ] {
            if let Some(header) = header
                && !is_header_name(header)
            {
                return Err(format!("`{key}` {header:?} is not a header name"));
            }
        }
        Ok(parsed)
    }

    fn signature_scheme(&self) -> SignatureScheme {
        match &self.signature {
            None | Some(SignatureConfig::StandardWebhooks) => SignatureScheme::StandardWebhooks,
            Some(SignatureConfig::HmacSha256 {
                header,
                prefix,
                encoding,
            }) => SignatureScheme::BodyHmac(BodyHmac {
                header: header.to_ascii_lowercase(),
                prefix: prefix.clone(),
                encoding: match encoding {
                    EncodingConfig::Hex => MacEncoding::Hex,
                    EncodingConfig::Base64 => MacEncoding::Base64,
                },
            }),
            Some(SignatureConfig::Stripe) => SignatureScheme::Stripe,
            Some(SignatureConfig::Slack {
                signature_header,
                timestamp_header,
                version,
            }) => SignatureScheme::VersionedHmac(VersionedHmac {
                signature_header: signature_header.to_ascii_lowercase(),
                timestamp_header: timestamp_header.to_ascii_lowercase(),
                version: version.clone(),
            }),
            Some(SignatureConfig::SharedToken { header }) => {
                SignatureScheme::SharedToken(header.to_ascii_lowercase())
            }
            Some(SignatureConfig::None) => SignatureScheme::None,
        }
    }

    fn id_header(&self) -> &str {
        self.id_header.as_deref().unwrap_or(DEFAULT_ID_HEADER)
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

impl Plugin for Generic {
    fn describe() -> Manifest {
        Manifest {
            name: "generic".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Any JSON webhook, shaped by the source's configuration.".to_owned(),
            signature: SignatureScheme::StandardWebhooks,
            dedupe_header: Some(DEFAULT_ID_HEADER.to_owned()),
            event_types: vec!["*".to_owned()],
        }
    }

    fn configure(config: &str) -> Result<SourceSettings, String> {
        let parsed = GenericConfig::parse(config)?;
        Ok(SourceSettings {
            signature: parsed.signature_scheme(),
            dedupe_header: Some(parsed.id_header().to_owned()),
        })
    }

    fn handle(request: Request) -> Outcome {
        let config = match GenericConfig::parse(&request.config) {
            Ok(config) => config,
            Err(reason) => return Outcome::reject(RejectionKind::Invalid, reason),
        };
        Outcome::one_event(normalize(&request, &config))
    }
}

/// Normalizes one request under a parsed configuration (plain Rust, also called natively).
pub fn normalize(request: &Request, config: &GenericConfig) -> Result<Event, Refusal> {
    let body_text = std::str::from_utf8(&request.body)
        .map_err(|_| (RejectionKind::Malformed, "the body is not UTF-8".to_owned()))?;
    let document: Value = serde_json::from_str(body_text).map_err(|error| {
        (
            RejectionKind::Malformed,
            format!("the body is not JSON: {error}"),
        )
    })?;
    let text_at = |pointer: &str, what: &str| -> Result<String, Refusal> {
        match document.pointer(pointer) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(Value::Number(number)) => Ok(number.to_string()),
            _ => Err((
                RejectionKind::Invalid,
                format!("the {what} at {pointer} is missing or not a string"),
            )),
        }
    };
    let event_type = match (&config.type_header, &config.type_pointer) {
        (Some(header), _) => request
            .header(header)
            .filter(|value| !value.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                (
                    RejectionKind::Invalid,
                    format!("missing the {header} header that names the event type"),
                )
            })?,
        (None, Some(pointer)) => text_at(pointer, "event type")?,
        (None, None) => DEFAULT_TYPE.to_owned(),
    };
    let subject = config
        .subject_pointer
        .as_deref()
        .map(|pointer| text_at(pointer, "subject"))
        .transpose()?;
    let time = match &config.time_pointer {
        Some(pointer) => {
            let time = text_at(pointer, "time")?;
            chrono::DateTime::parse_from_rfc3339(&time).map_err(|_| {
                (
                    RejectionKind::Invalid,
                    format!("the time {time:?} at {pointer} is not RFC 3339"),
                )
            })?;
            time
        }
        None => String::new(),
    };
    let id = match request.header(config.id_header()) {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        _ => request.body_sha256_hex(),
    };
    let source = config
        .source
        .clone()
        .unwrap_or_else(|| format!("urn:wasmhook:source:{}", request.source_name));
    Ok(Event {
        id,
        source,
        route_keys: vec![event_type.clone()],
        event_type,
        subject,
        time,
        data: body_text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], body: &str, config: &str) -> Request {
        Request {
            config: config.to_owned(),
            ..Request::post("acme", headers, body.as_bytes())
        }
    }

    #[test]
    fn defaults_use_the_webhook_id_and_a_generic_type() {
        let Outcome::Events(events) =
            Generic::handle(request(&[("webhook-id", "msg_1")], r#"{"a":1}"#, ""))
        else {
            panic!("expected events");
        };
        assert_eq!(events[0].id, "msg_1");
        assert_eq!(events[0].event_type, "generic.event");
        assert_eq!(events[0].source, "urn:wasmhook:source:acme");
        assert_eq!(
            Generic::configure("").unwrap().signature,
            SignatureScheme::StandardWebhooks
        );
    }

    #[test]
    fn type_subject_and_time_come_from_the_configured_places() {
        let config = r#"{"type_pointer":"/kind","subject_pointer":"/order/id","time_pointer":"/at","source":"https://shop.example"}"#;
        let body = r#"{"kind":"order.paid","order":{"id":981},"at":"2026-11-25T10:00:00Z"}"#;
        let Outcome::Events(events) = Generic::handle(request(&[], body, config)) else {
            panic!("expected events");
        };
        let event = &events[0];
        assert_eq!(event.event_type, "order.paid");
        assert_eq!(event.subject.as_deref(), Some("981"));
        assert_eq!(event.time, "2026-11-25T10:00:00Z");
        assert_eq!(event.source, "https://shop.example");
        assert_eq!(event.id, request(&[], body, config).body_sha256_hex());
    }

    #[test]
    fn type_from_a_header() {
        let config = r#"{"type_header":"X-Event"}"#;
        let Outcome::Events(events) =
            Generic::handle(request(&[("x-event", "thing.done")], "{}", config))
        else {
            panic!("expected events");
        };
        assert_eq!(events[0].event_type, "thing.done");
        assert!(matches!(
            Generic::handle(request(&[], "{}", config)),
            Outcome::Rejected(rejection) if rejection.kind == RejectionKind::Invalid
        ));
    }

    #[test]
    fn invalid_configuration_fails_with_the_reason() {
        let table = [
            ("{", "not valid"),
            (r#"{"typo":1}"#, "unknown field"),
            (r#"{"type_header":"a","type_pointer":"/b"}"#, "at most one"),
            (r#"{"subject_pointer":"id"}"#, "JSON pointer"),
            (r#"{"id_header":"bad header"}"#, "header name"),
            (r#"{"signature":{"scheme":"md5"}}"#, "unknown variant"),
            (r#"{"signature":{"scheme":"hmac-sha256"}}"#, "header"),
        ];
        for (config, reason_part) in table {
            let error = Generic::configure(config).unwrap_err();
            assert!(error.contains(reason_part), "config {config}: {error}");
        }
    }

    #[test]
    fn signature_schemes_come_from_the_configuration() {
        let table = [
            (
                r#"{"signature":{"scheme":"hmac-sha256","header":"X-Sig","prefix":"sha256=","encoding":"base64"}}"#,
                SignatureScheme::BodyHmac(BodyHmac {
                    header: "x-sig".into(),
                    prefix: "sha256=".into(),
                    encoding: MacEncoding::Base64,
                }),
            ),
            (
                r#"{"signature":{"scheme":"stripe"}}"#,
                SignatureScheme::Stripe,
            ),
            (r#"{"signature":{"scheme":"none"}}"#, SignatureScheme::None),
            (
                r#"{"signature":{"scheme":"slack"}}"#,
                SignatureScheme::VersionedHmac(VersionedHmac {
                    signature_header: "x-slack-signature".into(),
                    timestamp_header: "x-slack-request-timestamp".into(),
                    version: "v0".into(),
                }),
            ),
            (
                r#"{"signature":{"scheme":"shared-token","header":"X-Token"}}"#,
                SignatureScheme::SharedToken("x-token".into()),
            ),
        ];
        for (config, expected) in table {
            assert_eq!(Generic::configure(config).unwrap().signature, expected);
        }
    }

    #[test]
    fn bodies_that_are_not_json_are_malformed() {
        assert!(matches!(
            Generic::handle(request(&[], "<xml/>", "")),
            Outcome::Rejected(rejection) if rejection.kind == RejectionKind::Malformed
        ));
    }
}
