//! A minimal wasmhook plugin in Rust: any JSON object becomes one `example.received` event.
//!
//! The host checks `X-Webhook-Signature: sha256=<hex>` (HMAC-SHA256 of the raw body with the
//! source's secret) before `handle` runs, so this code only parses and normalizes.

use wasmhook_plugin_sdk::{
    BodyHmac, Event, MacEncoding, Manifest, Outcome, Plugin, RejectionKind, Request,
    SignatureScheme, SourceSettings, export_plugin,
};

/// The example plugin.
pub struct Example;

export_plugin!(Example);

const ID_HEADER: &str = "x-webhook-id";

impl Plugin for Example {
    fn describe() -> Manifest {
        Manifest {
            name: "example".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "An example plugin: any JSON object becomes one event.".to_owned(),
            signature: SignatureScheme::BodyHmac(BodyHmac {
                header: "x-webhook-signature".to_owned(),
                prefix: "sha256=".to_owned(),
                encoding: MacEncoding::Hex,
            }),
            dedupe_header: Some(ID_HEADER.to_owned()),
            event_types: vec!["example.received".to_owned()],
        }
    }

    fn configure(config: &str) -> Result<SourceSettings, String> {
        wasmhook_plugin_sdk::settings_without_configuration(config, Self::describe())
    }

    fn handle(request: Request) -> Outcome {
        let payload: serde_json::Value = match serde_json::from_slice(&request.body) {
            Ok(payload) => payload,
            Err(error) => {
                return Outcome::reject(
                    RejectionKind::Malformed,
                    format!("the body is not JSON: {error}"),
                );
            }
        };
        let Some(object) = payload.as_object() else {
            return Outcome::reject(RejectionKind::Malformed, "the body is not a JSON object");
        };
        // The dedupe key: the delivery id header, else the payload's own `id`.
        let id = match (request.header(ID_HEADER), object.get("id")) {
            (Some(header), _) if !header.is_empty() => header.to_owned(),
            (_, Some(serde_json::Value::String(id))) => id.clone(),
            (_, Some(id)) if !id.is_null() => id.to_string(),
            _ => {
                return Outcome::reject(
                    RejectionKind::Invalid,
                    "no X-Webhook-Id header and no `id` field",
                );
            }
        };
        Outcome::Events(vec![Event {
            id,
            source: format!("urn:wasmhook:{}", request.source_name),
            event_type: "example.received".to_owned(),
            subject: None,
            // Empty: the host uses the request's receive time.
            time: String::new(),
            data: String::from_utf8_lossy(&request.body).into_owned(),
            route_keys: Vec::new(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_object_becomes_one_event_and_anything_else_is_refused() {
        let table: [(&[(&str, &str)], &str, Result<&str, RejectionKind>); 4] = [
            (&[("x-webhook-id", "msg_1")], r#"{"a":1}"#, Ok("msg_1")),
            (&[], r#"{"id":42}"#, Ok("42")),
            (&[], r#"{"a":1}"#, Err(RejectionKind::Invalid)),
            (&[], "not json", Err(RejectionKind::Malformed)),
        ];
        for (headers, body, expected) in table {
            let outcome = Example::handle(Request::post("example", headers, body.as_bytes()));
            match (outcome, expected) {
                (Outcome::Events(events), Ok(id)) => assert_eq!(events[0].id, id, "{body}"),
                (Outcome::Rejected(rejection), Err(kind)) => {
                    assert_eq!(rejection.kind, kind, "{body}")
                }
                (other, expected) => panic!("{body}: got {other:?}, expected {expected:?}"),
            }
        }
    }
}
