//! The one `bindgen!` for contract 0.1.0 (`wit/plugin.wit`), and the conversions between its
//! types and the host's, checking what a plugin returned on the way in.

use std::collections::BTreeSet;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        exports: { default: async },
    });
}

use bindings::wasmhook::plugin::types as wit;

use super::{PluginManifest, PluginOutcome, PluginReply, PluginRequest, RejectionKind};
use crate::model::events::NormalizedEvent;
use crate::signature::{MacEncoding, SignatureScheme};

/// One request in the contract's terms.
pub(super) fn request_to_wit(request: PluginRequest) -> wit::Request {
    wit::Request {
        method: request.method,
        path: request.path,
        query: request.query,
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| wit::Header { name, value })
            .collect(),
        body: request.body,
        received_at_unix_ms: request.received_at.timestamp_millis(),
        received_at: request
            .received_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        source_name: request.source_name,
        config: request.config,
    }
}

pub(super) fn scheme_from_wit(scheme: wit::SignatureScheme) -> SignatureScheme {
    match scheme {
        wit::SignatureScheme::None => SignatureScheme::None,
        wit::SignatureScheme::BodyHmac(body_hmac) => SignatureScheme::BodyHmac {
            header: body_hmac.header.to_ascii_lowercase(),
            prefix: body_hmac.prefix,
            encoding: match body_hmac.encoding {
                wit::MacEncoding::Hex => MacEncoding::Hex,
                wit::MacEncoding::Base64 => MacEncoding::Base64,
            },
        },
        wit::SignatureScheme::StandardWebhooks => SignatureScheme::StandardWebhooks,
        wit::SignatureScheme::Stripe => SignatureScheme::Stripe,
        wit::SignatureScheme::VersionedHmac(versioned) => SignatureScheme::VersionedHmac {
            signature_header: versioned.signature_header.to_ascii_lowercase(),
            timestamp_header: versioned.timestamp_header.to_ascii_lowercase(),
            version: versioned.version,
        },
        wit::SignatureScheme::SharedToken(header) => SignatureScheme::SharedToken {
            header: header.to_ascii_lowercase(),
        },
        wit::SignatureScheme::Custom => SignatureScheme::Custom,
    }
}

pub(crate) fn manifest_from_wit(manifest: wit::Manifest) -> PluginManifest {
    PluginManifest {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        signature: scheme_from_wit(manifest.signature),
        dedupe_header: manifest.dedupe_header.map(|h| h.to_ascii_lowercase()),
        event_types: manifest.event_types,
    }
}

pub(super) fn outcome_size(outcome: &wit::Outcome) -> usize {
    match outcome {
        wit::Outcome::Events(events) => events
            .iter()
            .map(|event| {
                event.id.len()
                    + event.source.len()
                    + event.type_.len()
                    + event.subject.as_ref().map_or(0, String::len)
                    + event.time.len()
                    + event.data.len()
                    + event.route_keys.iter().map(String::len).sum::<usize>()
            })
            .sum(),
        wit::Outcome::Rejected(rejection) => rejection.reason.len(),
        wit::Outcome::Reply(reply) => {
            reply.body.len()
                + reply
                    .headers
                    .iter()
                    .map(|header| header.name.len() + header.value.len())
                    .sum::<usize>()
        }
    }
}

/// Why a plugin's answer is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InvalidAnswer {
    /// An event id over `dedupe::MAX_ID_BYTES`, taken from what the request carried.
    EventIdTooLong(String),
    Other(String),
}

impl InvalidAnswer {
    /// Only the fuzz bodies read the reason back.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn reason(&self) -> &str {
        match self {
            InvalidAnswer::EventIdTooLong(reason) | InvalidAnswer::Other(reason) => reason,
        }
    }
}

impl From<String> for InvalidAnswer {
    fn from(reason: String) -> InvalidAnswer {
        InvalidAnswer::Other(reason)
    }
}

/// Checks what a plugin returned and converts it into the host's types.
pub(crate) fn outcome_from_wit(
    outcome: wit::Outcome,
    received_at: chrono::DateTime<chrono::Utc>,
) -> Result<PluginOutcome, InvalidAnswer> {
    match outcome {
        wit::Outcome::Events(events) => {
            let mut seen_ids = BTreeSet::new();
            let mut normalized = Vec::with_capacity(events.len());
            for (index, event) in events.into_iter().enumerate() {
                // The id is a btree key of `dedupe_keys`; a longer one would be refused by
                // PostgreSQL and fail the group-commit transaction shared with other requests.
                if event.id.len() > crate::model::dedupe::MAX_ID_BYTES {
                    return Err(InvalidAnswer::EventIdTooLong(format!(
                        "event {index}: the id is {} bytes long; an id is at most {} bytes",
                        event.id.len(),
                        crate::model::dedupe::MAX_ID_BYTES
                    )));
                }
                let event = event_from_wit(event, received_at)
                    .map_err(|reason| format!("event {index}: {reason}"))?;
                if !seen_ids.insert((event.source.clone(), event.id.clone())) {
                    return Err(format!(
                        "event {index}: id {:?} is repeated within one answer",
                        event.id
                    )
                    .into());
                }
                normalized.push(event);
            }
            Ok(PluginOutcome::Events(normalized))
        }
        wit::Outcome::Rejected(rejection) => Ok(PluginOutcome::Rejected {
            kind: match rejection.kind {
                wit::RejectionKind::Malformed => RejectionKind::Malformed,
                wit::RejectionKind::Invalid => RejectionKind::Invalid,
                wit::RejectionKind::Unauthenticated => RejectionKind::Unauthenticated,
                wit::RejectionKind::StaleTimestamp => RejectionKind::StaleTimestamp,
                wit::RejectionKind::Ignored => RejectionKind::Ignored,
            },
            reason: rejection.reason,
        }),
        wit::Outcome::Reply(reply) => {
            if !(100..=599).contains(&reply.status) {
                return Err(format!("reply status {} is not an HTTP status", reply.status).into());
            }
            let headers = reply
                .headers
                .into_iter()
                .map(|header| {
                    let valid_name =
                        axum::http::HeaderName::from_bytes(header.name.as_bytes()).is_ok();
                    let valid_value = header
                        .value
                        .bytes()
                        .all(|byte| byte == b'\t' || (b' '..=b'~').contains(&byte));
                    if valid_name && valid_value {
                        Ok((header.name, header.value))
                    } else {
                        Err(format!(
                            "reply header {:?} is not a valid header",
                            header.name
                        ))
                    }
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(PluginOutcome::Reply(PluginReply {
                status: reply.status,
                headers,
                body: reply.body,
            }))
        }
    }
}

fn event_from_wit(
    event: wit::Event,
    received_at: chrono::DateTime<chrono::Utc>,
) -> Result<NormalizedEvent, String> {
    // PostgreSQL text cannot hold NUL; refusing it here keeps one bad event from failing the
    // whole group-commit transaction it would share with other requests.
    let texts = [
        &event.id,
        &event.source,
        &event.type_,
        &event.time,
        &event.data,
    ]
    .into_iter()
    .chain(event.subject.as_ref())
    .chain(event.route_keys.iter());
    for text in texts {
        if text.contains('\0') {
            return Err("a field contains a NUL character".to_owned());
        }
    }
    if event.id.trim().is_empty() {
        return Err("the id is empty".to_owned());
    }
    if event.source.trim().is_empty() {
        return Err("the source is empty".to_owned());
    }
    if event.type_.trim().is_empty() {
        return Err("the type is empty".to_owned());
    }
    let time = if event.time.is_empty() {
        received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    } else {
        chrono::DateTime::parse_from_rfc3339(&event.time)
            .map_err(|_| format!("the time {:?} is not RFC 3339", event.time))?;
        event.time
    };
    if serde_json::from_str::<&serde_json::value::RawValue>(&event.data).is_err() {
        return Err("the data is not one JSON document".to_owned());
    }
    let route_keys = if event.route_keys.is_empty() {
        vec![event.type_.clone()]
    } else {
        event.route_keys
    };
    Ok(NormalizedEvent {
        id: event.id,
        source: event.source,
        event_type: event.type_,
        subject: event.subject,
        time,
        data_json: event.data,
        route_keys,
    })
}
