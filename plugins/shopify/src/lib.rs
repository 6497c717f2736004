//! The Shopify plugin: `X-Shopify-Topic` deliveries (`orders/create`, `products/update`, ...)
//! become `shopify.<resource>.<action>` events about `<resource>/<id>`.
//!
//! The host checks `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the raw body) before this
//! code runs. The dedupe id is `X-Shopify-Webhook-Id`, which Shopify keeps across retries.

use serde::Deserialize;
use wasmhook_plugin_sdk::{
    BodyHmac, Event, MacEncoding, Manifest, Outcome, Plugin, Refusal, RejectionKind, Request,
    SignatureScheme, SourceSettings, export_plugin,
};

/// The Shopify plugin.
pub struct Shopify;

export_plugin!(Shopify);

const ID_HEADER: &str = "x-shopify-webhook-id";

#[derive(Deserialize)]
struct Resource {
    id: Option<serde_json::Value>,
}

fn signature_scheme() -> SignatureScheme {
    SignatureScheme::BodyHmac(BodyHmac {
        header: "x-shopify-hmac-sha256".to_owned(),
        prefix: String::new(),
        encoding: MacEncoding::Base64,
    })
}

impl Plugin for Shopify {
    fn describe() -> Manifest {
        Manifest {
            name: "shopify".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Shopify store webhooks (orders, products, customers, ...).".to_owned(),
            signature: signature_scheme(),
            dedupe_header: Some(ID_HEADER.to_owned()),
            event_types: vec!["shopify.*".to_owned()],
        }
    }

    fn configure(config: &str) -> Result<SourceSettings, String> {
        wasmhook_plugin_sdk::settings_without_configuration(config, Self::describe())
    }

    fn handle(request: Request) -> Outcome {
        Outcome::one_event(normalize(&request))
    }
}

/// Normalizes one delivery (plain Rust, also called natively by tests).
pub fn normalize(request: &Request) -> Result<Event, Refusal> {
    let malformed = |reason: &str| (RejectionKind::Malformed, reason.to_owned());
    let topic = request
        .header("x-shopify-topic")
        .ok_or_else(|| malformed("missing the X-Shopify-Topic header"))?;
    let Some((resource, action)) = topic.split_once('/') else {
        return Err(malformed("X-Shopify-Topic is not `<resource>/<action>`"));
    };
    let is_word = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
    };
    if !is_word(resource) || !is_word(action) {
        return Err(malformed("X-Shopify-Topic is not `<resource>/<action>`"));
    }
    let webhook_id = request
        .header(ID_HEADER)
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| malformed("missing the X-Shopify-Webhook-Id header"))?;
    if request.body.trim_ascii_start().first() != Some(&b'{') {
        return Err(malformed("the body is not a JSON object"));
    }
    let resource_body: Resource = serde_json::from_slice(&request.body).map_err(|error| {
        (
            RejectionKind::Malformed,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    let subject = resource_body.id.and_then(|id| match id {
        serde_json::Value::Number(number) => Some(format!("{resource}/{number}")),
        serde_json::Value::String(text) if !text.is_empty() => Some(format!("{resource}/{text}")),
        _ => None,
    });
    let shop = request.header("x-shopify-shop-domain").unwrap_or("shopify");
    let event_type = format!("shopify.{resource}.{action}");
    let data = std::str::from_utf8(&request.body)
        .map_err(|_| malformed("the body is not UTF-8"))?
        .to_owned();
    Ok(Event {
        id: webhook_id.to_owned(),
        source: format!("https://{shop}"),
        route_keys: vec![event_type.clone()],
        event_type,
        subject,
        time: request
            .header("x-shopify-triggered-at")
            .filter(|time| chrono::DateTime::parse_from_rfc3339(time).is_ok())
            .unwrap_or_default()
            .to_owned(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], body: &str) -> Request {
        Request::post("shopify", headers, body.as_bytes())
    }

    /// Shaped like the `orders/create` example of Shopify's webhook documentation.
    const ORDER: &str = r#"{"id":820982911946154508,"email":"jon@example.com","total_price":"403.00","currency":"USD","line_items":[{"id":866550311766439020,"title":"IPod Nano - 8GB","quantity":1}]}"#;

    #[test]
    fn an_order_becomes_an_event_about_the_order() {
        let event = normalize(&request(
            &[
                ("x-shopify-topic", "orders/create"),
                (
                    "x-shopify-webhook-id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
                ("x-shopify-shop-domain", "example.myshopify.com"),
                ("x-shopify-triggered-at", "2026-11-25T10:00:00.000Z"),
            ],
            ORDER,
        ))
        .unwrap();
        assert_eq!(event.event_type, "shopify.orders.create");
        assert_eq!(event.id, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
        assert_eq!(event.subject.as_deref(), Some("orders/820982911946154508"));
        assert_eq!(event.source, "https://example.myshopify.com");
        assert_eq!(event.time, "2026-11-25T10:00:00.000Z");
        assert_eq!(event.data, ORDER);
    }

    #[test]
    fn refusals_name_what_is_missing() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let table: &[Case] = &[
            (&[("x-shopify-webhook-id", "1")], ORDER, "X-Shopify-Topic"),
            (
                &[("x-shopify-topic", "orders"), ("x-shopify-webhook-id", "1")],
                ORDER,
                "<resource>/<action>",
            ),
            (
                &[("x-shopify-topic", "orders/create")],
                ORDER,
                "X-Shopify-Webhook-Id",
            ),
            (
                &[
                    ("x-shopify-topic", "orders/create"),
                    ("x-shopify-webhook-id", "1"),
                ],
                "[]",
                "JSON object",
            ),
        ];
        for (headers, body, reason_part) in table {
            let (kind, reason) = normalize(&request(headers, body)).unwrap_err();
            assert_eq!(kind, RejectionKind::Malformed);
            assert!(reason.contains(reason_part), "{reason}");
        }
    }
}
