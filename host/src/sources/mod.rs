//! Sources: the registry of every source this process serves (built from its stored row in one
//! function, refreshed from the database, its plugin swapped when another version is
//! activated, its plugin breaker) and the destinations' routes, plus hot reload, which
//! registers plugin files as versions and swaps them in through the registry. Ingest only
//! reads the registry; the admin API, replay and the app change or build through it. May call
//! `plugins`, `delivery`'s pure parts, `store`, `signature` and `model`; never `ingest`,
//! `admin` or `app`.

pub mod destinations;
pub mod hot_reload;
pub mod registry;
