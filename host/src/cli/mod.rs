//! The command-line tools besides `serve`: `wasmhook send` (one correctly signed webhook) and
//! the plugin author's `wasmhook plugin check` and `plugin run`. May call `plugins`, `signature`,
//! `config` and `model`.

pub mod plugin;
pub mod send;
