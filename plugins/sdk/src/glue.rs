//! Conversions between the SDK's plain types and the types `wit-bindgen` generates. They move
//! every buffer instead of copying it, so the glue costs no more than the call itself.

use crate::bindings::wasmhook::plugin::{host, types};
use crate::{
    Event, Header, LogLevel, MacEncoding, Manifest, Outcome, RejectionKind, Request,
    SignatureScheme, SourceSettings,
};

pub fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => types::LogLevel::Trace,
        LogLevel::Debug => types::LogLevel::Debug,
        LogLevel::Info => types::LogLevel::Info,
        LogLevel::Warn => types::LogLevel::Warn,
        LogLevel::Error => types::LogLevel::Error,
    };
    host::log(level, message);
}

fn signature_to_wit(scheme: SignatureScheme) -> types::SignatureScheme {
    match scheme {
        SignatureScheme::None => types::SignatureScheme::None,
        SignatureScheme::BodyHmac(body_hmac) => types::SignatureScheme::BodyHmac(types::BodyHmac {
            header: body_hmac.header,
            prefix: body_hmac.prefix,
            encoding: match body_hmac.encoding {
                MacEncoding::Hex => types::MacEncoding::Hex,
                MacEncoding::Base64 => types::MacEncoding::Base64,
            },
        }),
        SignatureScheme::StandardWebhooks => types::SignatureScheme::StandardWebhooks,
        SignatureScheme::Stripe => types::SignatureScheme::Stripe,
        SignatureScheme::VersionedHmac(versioned) => {
            types::SignatureScheme::VersionedHmac(types::VersionedHmac {
                signature_header: versioned.signature_header,
                timestamp_header: versioned.timestamp_header,
                version: versioned.version,
            })
        }
        SignatureScheme::SharedToken(header) => types::SignatureScheme::SharedToken(header),
        SignatureScheme::Custom => types::SignatureScheme::Custom,
    }
}

pub fn manifest_to_wit(manifest: Manifest) -> types::Manifest {
    types::Manifest {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        signature: signature_to_wit(manifest.signature),
        dedupe_header: manifest.dedupe_header,
        event_types: manifest.event_types,
    }
}

pub fn source_settings_to_wit(settings: SourceSettings) -> types::SourceSettings {
    types::SourceSettings {
        signature: signature_to_wit(settings.signature),
        dedupe_header: settings.dedupe_header,
    }
}

fn headers_from_wit(headers: Vec<types::Header>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|header| Header {
            name: header.name,
            value: header.value,
        })
        .collect()
}

fn headers_to_wit(headers: Vec<Header>) -> Vec<types::Header> {
    headers
        .into_iter()
        .map(|header| types::Header {
            name: header.name,
            value: header.value,
        })
        .collect()
}

pub fn request_from_wit(request: types::Request) -> Request {
    Request {
        method: request.method,
        path: request.path,
        query: request.query,
        headers: headers_from_wit(request.headers),
        body: request.body,
        received_at_unix_ms: request.received_at_unix_ms,
        received_at: request.received_at,
        source_name: request.source_name,
        config: request.config,
    }
}

fn event_to_wit(event: Event) -> types::Event {
    types::Event {
        id: event.id,
        source: event.source,
        type_: event.event_type,
        subject: event.subject,
        time: event.time,
        data: event.data,
        route_keys: event.route_keys,
    }
}

pub fn outcome_to_wit(outcome: Outcome) -> types::Outcome {
    match outcome {
        Outcome::Events(events) => {
            types::Outcome::Events(events.into_iter().map(event_to_wit).collect())
        }
        Outcome::Rejected(rejection) => types::Outcome::Rejected(types::Rejection {
            kind: match rejection.kind {
                RejectionKind::Malformed => types::RejectionKind::Malformed,
                RejectionKind::Invalid => types::RejectionKind::Invalid,
                RejectionKind::Unauthenticated => types::RejectionKind::Unauthenticated,
                RejectionKind::StaleTimestamp => types::RejectionKind::StaleTimestamp,
                RejectionKind::Ignored => types::RejectionKind::Ignored,
            },
            reason: rejection.reason,
        }),
        Outcome::Reply(reply) => types::Outcome::Reply(types::Reply {
            status: reply.status,
            headers: headers_to_wit(reply.headers),
            body: reply.body,
        }),
    }
}
