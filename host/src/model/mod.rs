//! Shared types that every layer speaks: normalized events and their CloudEvents form, and the
//! dedupe keys ingest and the store agree on. Pure; imports nothing of the crate but `signature`.

pub mod dedupe;
pub mod events;
