//! The media-catalogue plugin: `content_added`, `content_updated` and `content_removed`
//! notifications become `netflix.content.added|updated|removed` events about `content/<id>`.

use serde::Deserialize;
use wasmhook_plugin_sdk::{
    BodyHmac, Event, MacEncoding, Manifest, Outcome, Plugin, Refusal, RejectionKind, Request,
    SignatureScheme, SourceSettings, export_plugin,
};

/// The media-catalogue plugin.
pub struct Netflix;

export_plugin!(Netflix);

const ID_HEADER: &str = "x-webhook-id";
const SOURCE: &str = "https://www.netflix.com/catalogue";

#[derive(Deserialize)]
struct Notification {
    event_type: Option<String>,
    platform: Option<String>,
    timestamp: Option<String>,
    payload: Option<Content>,
}

#[derive(Deserialize)]
struct Content {
    content_id: Option<ContentId>,
    title: Option<String>,
    content_type: Option<String>,
    regions: Option<Vec<String>>,
}

/// Catalogues write content ids as strings or as numbers; both name the same thing.
#[derive(Deserialize)]
#[serde(untagged)]
enum ContentId {
    Text(String),
    Number(u64),
}

impl Plugin for Netflix {
    fn describe() -> Manifest {
        Manifest {
            name: "netflix".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Media-catalogue content notifications (added, updated, removed)."
                .to_owned(),
            signature: signature_scheme(),
            dedupe_header: Some(ID_HEADER.to_owned()),
            event_types: vec![
                "netflix.content.added".to_owned(),
                "netflix.content.updated".to_owned(),
                "netflix.content.removed".to_owned(),
            ],
        }
    }

    fn configure(config: &str) -> Result<SourceSettings, String> {
        wasmhook_plugin_sdk::settings_without_configuration(config, Self::describe())
    }

    fn handle(request: Request) -> Outcome {
        Outcome::one_event(normalize(&request))
    }
}

fn signature_scheme() -> SignatureScheme {
    SignatureScheme::BodyHmac(BodyHmac {
        header: "x-webhook-signature".to_owned(),
        prefix: "sha256=".to_owned(),
        encoding: MacEncoding::Hex,
    })
}

fn invalid(reason: impl Into<String>) -> Refusal {
    (RejectionKind::Invalid, reason.into())
}

/// Normalizes one notification (plain Rust, also called natively by tests).
pub fn normalize(request: &Request) -> Result<Event, Refusal> {
    if request.body.trim_ascii_start().first() != Some(&b'{') {
        return Err((
            RejectionKind::Malformed,
            "the body is not a JSON object".to_owned(),
        ));
    }
    let notification: Notification = serde_json::from_slice(&request.body).map_err(|error| {
        (
            RejectionKind::Malformed,
            format!("the body is not a valid notification: {error}"),
        )
    })?;
    let platform = notification
        .platform
        .ok_or_else(|| invalid("`platform` is missing"))?;
    if platform != "netflix" {
        return Err(invalid(format!(
            "`platform` is {platform:?}; this source accepts only \"netflix\""
        )));
    }
    let event_type = notification
        .event_type
        .ok_or_else(|| invalid("`event_type` is missing"))?;
    let (type_suffix, needs_title) = match event_type.as_str() {
        "content_added" => ("added", true),
        "content_updated" => ("updated", true),
        "content_removed" => ("removed", false),
        other => {
            return Err(invalid(format!(
                "`event_type` {other:?} is not one of content_added, content_updated, content_removed"
            )));
        }
    };
    let timestamp = notification
        .timestamp
        .ok_or_else(|| invalid("`timestamp` is missing"))?;
    chrono::DateTime::parse_from_rfc3339(&timestamp)
        .map_err(|_| invalid(format!("`timestamp` {timestamp:?} is not an RFC 3339 time")))?;
    let content = notification
        .payload
        .ok_or_else(|| invalid("`payload` is missing"))?;
    let content_id = match content.content_id {
        Some(ContentId::Text(text)) if !text.trim().is_empty() => text,
        Some(ContentId::Number(number)) => number.to_string(),
        _ => return Err(invalid("`payload.content_id` is missing")),
    };
    if needs_title
        && content
            .title
            .as_deref()
            .is_none_or(|title| title.trim().is_empty())
    {
        return Err(invalid(format!(
            "`payload.title` is required for {event_type}"
        )));
    }
    if let Some(content_type) = &content.content_type
        && !matches!(content_type.as_str(), "movie" | "series" | "episode")
    {
        return Err(invalid(format!(
            "`payload.content_type` {content_type:?} is not one of movie, series, episode"
        )));
    }
    if content.regions.as_ref().is_some_and(|regions| {
        regions
            .iter()
            .any(|region| region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()))
    }) {
        return Err(invalid(
            "`payload.regions` must hold two-letter upper-case country codes",
        ));
    }
    let id = match request.header(ID_HEADER) {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        _ => request.body_sha256_hex(),
    };
    let event_type = format!("netflix.content.{type_suffix}");
    let data = String::from_utf8(request.body.clone())
        .map_err(|_| (RejectionKind::Malformed, "the body is not UTF-8".to_owned()))?;
    Ok(Event {
        id,
        source: SOURCE.to_owned(),
        route_keys: vec![event_type.clone()],
        event_type,
        subject: Some(format!("content/{content_id}")),
        time: timestamp,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str, id: Option<&str>) -> Request {
        let headers: Vec<(&str, &str)> = id.map(|id| ("x-webhook-id", id)).into_iter().collect();
        Request::post("netflix", &headers, body.as_bytes())
    }

    const ADDED: &str = r#"{"event_type":"content_added","platform":"netflix","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"80100172","title":"Dark","content_type":"series","regions":["US","DE"]}}"#;

    #[test]
    fn added_content_becomes_an_event_about_the_content() {
        let event = normalize(&request(ADDED, Some("n-1"))).unwrap();
        assert_eq!(event.id, "n-1");
        assert_eq!(event.event_type, "netflix.content.added");
        assert_eq!(event.subject.as_deref(), Some("content/80100172"));
        assert_eq!(event.time, "2026-11-25T10:00:00Z");
        assert_eq!(event.data, ADDED);
    }

    #[test]
    fn without_an_id_header_the_id_is_the_body_hash() {
        let event = normalize(&request(ADDED, None)).unwrap();
        assert_eq!(event.id.len(), 64);
        assert_eq!(event.id, request(ADDED, None).body_sha256_hex());
    }

    #[test]
    fn every_rule_is_enforced_with_a_reason() {
        let table: &[(&str, RejectionKind, &str)] = &[
            ("nope", RejectionKind::Malformed, "JSON object"),
            (
                r#"{"event_type":"content_added","platform":"hulu","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"1","title":"t"}}"#,
                RejectionKind::Invalid,
                "platform",
            ),
            (
                r#"{"event_type":"content_deleted","platform":"netflix","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"1"}}"#,
                RejectionKind::Invalid,
                "content_deleted",
            ),
            (
                r#"{"event_type":"content_added","platform":"netflix","timestamp":"yesterday","payload":{"content_id":"1","title":"t"}}"#,
                RejectionKind::Invalid,
                "RFC 3339",
            ),
            (
                r#"{"event_type":"content_added","platform":"netflix","timestamp":"2026-11-25T10:00:00Z","payload":{"title":"t"}}"#,
                RejectionKind::Invalid,
                "content_id",
            ),
            (
                r#"{"event_type":"content_updated","platform":"netflix","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"1"}}"#,
                RejectionKind::Invalid,
                "title",
            ),
            (
                r#"{"event_type":"content_added","platform":"netflix","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"1","title":"t","content_type":"podcast"}}"#,
                RejectionKind::Invalid,
                "content_type",
            ),
            (
                r#"{"event_type":"content_added","platform":"netflix","timestamp":"2026-11-25T10:00:00Z","payload":{"content_id":"1","title":"t","regions":["usa"]}}"#,
                RejectionKind::Invalid,
                "regions",
            ),
        ];
        for (body, kind, reason_part) in table {
            let (actual_kind, reason) = normalize(&request(body, None)).unwrap_err();
            assert_eq!(actual_kind, *kind, "body {body}");
            assert!(reason.contains(reason_part), "reason {reason:?} for {body}");
        }
    }

    #[test]
    fn removal_needs_no_title_and_numeric_ids_are_accepted() {
        let body = r#"{"event_type":"content_removed","platform":"netflix","timestamp":"2026-11-25T10:00:00+01:00","payload":{"content_id":42}}"#;
        let event = normalize(&request(body, None)).unwrap();
        assert_eq!(event.event_type, "netflix.content.removed");
        assert_eq!(event.subject.as_deref(), Some("content/42"));
    }
}
