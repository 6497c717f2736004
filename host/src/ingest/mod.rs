//! Ingest: the webhook handler (look up the source, bound the body, rate limit, verify, call
//! the plugin, decide), the group-commit queue that writes many requests in one transaction,
//! replay of quarantined requests through the same path, and the redaction of credentials
//! before anything is stored. May call `sources`, `delivery`'s pure parts, `plugins`, `store`,
//! `signature` and `model`.

pub mod group_commit;
pub mod handler;
pub mod redaction;
pub mod replay;
