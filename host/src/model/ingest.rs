//! What one ingested request asks the store to keep, and what the store did with it: the
//! types the ingest handler builds and `store::ingest::write_batch` takes and answers.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::events::NormalizedEvent;

/// The request as received, kept for replay.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub id: Uuid,
    pub source_name: String,
    pub received_at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `name@version` of the plugin that handled it.
    pub plugin: String,
}

/// What one ingested request asks the store to keep.
#[derive(Clone, Debug)]
pub enum IngestWrite {
    /// Normalized events, each with the destinations its routes matched.
    Events {
        raw: RawRequest,
        events: Vec<(NormalizedEvent, Vec<String>)>,
        /// The body key (`dedupe::body_key`) when the source's signature covers only the body:
        /// a second dedupe key, so that the body sent again under a new delivery id, as the
        /// same event type, is a duplicate.
        body_sha256: Option<[u8; 32]>,
    },
    /// The plugin failed: keep the raw request for a replay through a fixed plugin.
    Quarantine { raw: RawRequest, error: String },
}

/// What the store did with one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// New events were stored, with these host ids.
    Accepted { event_ids: Vec<Uuid> },
    /// Every event was seen before; the id of the first stored event.
    Duplicate { event_id: Uuid },
    /// The raw request was stored for replay.
    Quarantined { request_id: Uuid },
}
