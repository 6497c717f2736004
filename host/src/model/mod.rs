//! Shared types that every layer speaks: normalized events and their CloudEvents form, the
//! dedupe keys ingest and the store agree on, destinations as stored and delivered, the
//! settings of sources and destinations with their defaults, and the writes ingest hands the
//! store. Pure; imports nothing of the crate but `signature`.

pub mod dedupe;
pub mod destination;
pub mod events;
pub mod ingest;
pub mod settings;
pub mod source;
