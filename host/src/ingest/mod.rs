//! Ingest: the webhook handler as a pipeline of steps (look up the source, bound the body,
//! verify, rate limit, call the plugin, decide), the pure decide step it shares with replay of
//! quarantined requests, the group-commit queue that writes many requests in one transaction,
//! and the redaction of credentials before anything is stored. It only reads sources through
//! `sources::registry`. May call `sources`, `delivery`'s pure parts, `plugins`, `store`,
//! `signature` and `model`; never `admin` or `app`.

pub mod decide;
pub mod group_commit;
pub mod handler;
pub mod redaction;
pub mod replay;
