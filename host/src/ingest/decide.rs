//! The decide step, shared by the webhook handler and replay: from what the plugin made of a
//! verified request (events, a rejection, a handshake reply, or a failure) to what is stored and
//! what is answered. Pure: no I/O, so each case is a row of the table in the tests.

use crate::model::events::NormalizedEvent;
use crate::plugins::{PluginOutcome, PluginReply, RejectionKind};
use crate::sources::destinations::{DestinationRoutes, route_events};
use crate::sources::registry::{ActivePlugin, SourceRuntime};
use crate::store::{IngestWrite, RawRequest};

/// What becomes of a verified request once its plugin ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Store the events; the answer waits for the commit.
    Store(Vec<NormalizedEvent>),
    /// The plugin failed: store the request as quarantined, to replay through a fixed plugin.
    Quarantine(String),
    /// Store nothing and answer now.
    Answer(Answer),
}

/// An answer that stores nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The plugin produced no events.
    NoEvents,
    /// The plugin refused the request (`Ignored` is a refusal the sender must not retry).
    Refused { kind: RejectionKind, reason: String },
    /// A handshake, answered with the plugin's own response.
    Reply(PluginReply),
}

/// Decides from the plugin's outcome, or the text of its failure.
pub fn decide(result: Result<PluginOutcome, String>) -> Decision {
    match result {
        Err(error) => Decision::Quarantine(error),
        Ok(PluginOutcome::Events(events)) if events.is_empty() => {
            Decision::Answer(Answer::NoEvents)
        }
        Ok(PluginOutcome::Events(events)) => Decision::Store(events),
        Ok(PluginOutcome::Rejected { kind, reason }) => {
            Decision::Answer(Answer::Refused { kind, reason })
        }
        Ok(PluginOutcome::Reply(reply)) => Decision::Answer(Answer::Reply(reply)),
    }
}

/// The write that stores a request's events, each with the destinations its routes match,
/// and the body key its source dedupes on.
pub fn events_write(
    source: &SourceRuntime,
    active: &ActivePlugin,
    destinations: &[DestinationRoutes],
    raw: RawRequest,
    events: Vec<NormalizedEvent>,
) -> IngestWrite {
    IngestWrite::Events {
        body_sha256: source.body_key(&active.settings, &events, &raw.body),
        raw,
        events: route_events(destinations, events),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> NormalizedEvent {
        NormalizedEvent {
            id: id.to_owned(),
            source: "test".to_owned(),
            event_type: "push".to_owned(),
            subject: None,
            time: "2026-01-01T00:00:00Z".to_owned(),
            data_json: "{}".to_owned(),
            route_keys: vec!["push".to_owned()],
        }
    }

    fn reply() -> PluginReply {
        PluginReply {
            status: 200,
            headers: vec![],
            body: b"pong".to_vec(),
        }
    }

    #[test]
    fn each_plugin_outcome_decides_what_is_stored_and_answered() {
        let table: Vec<(Result<PluginOutcome, String>, Decision)> = vec![
            (
                Err("trapped".to_owned()),
                Decision::Quarantine("trapped".to_owned()),
            ),
            (
                Ok(PluginOutcome::Events(vec![])),
                Decision::Answer(Answer::NoEvents),
            ),
            (
                Ok(PluginOutcome::Events(vec![event("a"), event("b")])),
                Decision::Store(vec![event("a"), event("b")]),
            ),
            (
                Ok(PluginOutcome::Rejected {
                    kind: RejectionKind::Invalid,
                    reason: "no type".to_owned(),
                }),
                Decision::Answer(Answer::Refused {
                    kind: RejectionKind::Invalid,
                    reason: "no type".to_owned(),
                }),
            ),
            (
                Ok(PluginOutcome::Rejected {
                    kind: RejectionKind::Ignored,
                    reason: "a ping".to_owned(),
                }),
                Decision::Answer(Answer::Refused {
                    kind: RejectionKind::Ignored,
                    reason: "a ping".to_owned(),
                }),
            ),
            (
                Ok(PluginOutcome::Reply(reply())),
                Decision::Answer(Answer::Reply(reply())),
            ),
        ];
        for (result, expected) in table {
            let label = format!("{result:?}");
            assert_eq!(decide(result), expected, "{label}");
        }
    }
}
