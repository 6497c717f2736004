//! Normalized events and their CloudEvents 1.0 structured-mode form.

use serde_json::value::RawValue;

/// One event a plugin produced, already checked by the plugin runtime: the id, source and type
/// are non-empty, the time is RFC 3339 and the data is one JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: String,
    pub data_json: String,
    pub route_keys: Vec<String>,
}

#[derive(serde::Serialize)]
struct CloudEventDocument<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    time: &'a str,
    datacontenttype: &'static str,
    data: &'a RawValue,
}

impl NormalizedEvent {
    /// The event as a CloudEvents 1.0 structured-mode JSON object. The data is embedded as the
    /// plugin wrote it, without re-parsing it into a tree.
    pub fn to_cloudevent_json(&self) -> String {
        let data: &RawValue = serde_json::from_str(&self.data_json)
            .expect("the plugin runtime only admits events whose data is one JSON document");
        let document = CloudEventDocument {
            specversion: "1.0",
            id: &self.id,
            source: &self.source,
            event_type: &self.event_type,
            subject: self.subject.as_deref(),
            time: &self.time,
            datacontenttype: "application/json",
            data,
        };
        serde_json::to_string(&document).expect("serializing borrowed strings cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevent_json_has_every_attribute_and_the_data_verbatim() {
        let event = NormalizedEvent {
            id: "d1".into(),
            source: "https://github.com/o/r".into(),
            event_type: "github.push".into(),
            subject: Some("o/r".into()),
            time: "2026-11-25T16:00:00Z".into(),
            data_json: r#"{"b":1,"a":[true]}"#.into(),
            route_keys: vec!["github.push".into()],
        };
        let json = event.to_cloudevent_json();
        assert_eq!(
            json,
            r#"{"specversion":"1.0","id":"d1","source":"https://github.com/o/r","type":"github.push","subject":"o/r","time":"2026-11-25T16:00:00Z","datacontenttype":"application/json","data":{"b":1,"a":[true]}}"#
        );
    }

    #[test]
    fn cloudevent_json_omits_an_absent_subject() {
        let event = NormalizedEvent {
            id: "1".into(),
            source: "s".into(),
            event_type: "t".into(),
            subject: None,
            time: "2026-11-25T16:00:00Z".into(),
            data_json: "null".into(),
            route_keys: vec![],
        };
        assert!(!event.to_cloudevent_json().contains("subject"));
    }
}
