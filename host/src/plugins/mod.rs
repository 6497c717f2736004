//! The plugin runtime: loads WebAssembly component plugins and runs them safely and fast.
//!
//! This is the only module that imports `wasmtime`. One [`PluginRuntime`] owns the engine (with
//! the pooling allocator and epoch interruption), the linker and a semaphore sized to the pool.
//! Each [`Plugin`] is one pre-instantiated component version. Every call gets a fresh `Store`,
//! so nothing leaks from one webhook to the next, and runs under a CPU deadline (epoch
//! interruption that yields every tick and traps at the deadline), a wall-clock timeout, a
//! memory limit and caps on output and log bytes. Whatever a plugin does, the failure comes back
//! as a [`PluginCallError`] that names plugin, version, request and cause.
//!
//! The folder owns the runtime, one concern a file: `engine` (the engine, its settings and
//! loading a component), `pool` (the pooling allocator's totals), `cache` (the compiled cache
//! and its trust check), `limits` (memory and log caps), `call` (one call: its store,
//! deadlines and output cap), `host_imports` (what a plugin may call on the host), `manifest`
//! (what a plugin may declare) and `wit` (the one `bindgen!` and the conversions between WIT
//! and host types). `mod.rs` keeps the types callers use. It may call the signature schemes,
//! the event model and the metrics; nothing else of the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::model::events::NormalizedEvent;
use crate::signature::SignatureScheme;

mod cache;
mod call;
pub mod engine;
pub mod host_imports;
mod limits;
pub(crate) mod manifest;
mod pool;
pub(crate) mod wit;

use engine::RuntimeSettings;
use host_imports::PluginState;
use pool::{CORE_INSTANCES_PER_SLOT, MEMORIES_PER_SLOT, TABLES_PER_SLOT};
use wit::bindings;

/// The contract versions this host can run, newest first.
pub const SUPPORTED_CONTRACT_VERSIONS: &[&str] = &["0.1.0"];
const HANDLER_EXPORT: &str = "wasmhook:plugin/handler@0.1.0";
const HANDLER_EXPORT_PREFIX: &str = "wasmhook:plugin/handler@";

/// Limits applied to every call of one plugin.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// CPU deadline for instantiation plus the call, in milliseconds.
    pub deadline_ms: u64,
    /// Most linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Most bytes of events or reply one call may return.
    pub max_output_bytes: usize,
    /// Most bytes one call may log (host log calls, stdout and stderr together).
    pub max_log_bytes: usize,
}

impl PluginLimits {
    /// The limits a source runs under: its overrides over these.
    pub fn with_overrides(&self, overrides: &crate::model::source::LimitOverrides) -> PluginLimits {
        PluginLimits {
            deadline_ms: overrides.deadline_ms.unwrap_or(self.deadline_ms),
            max_memory_bytes: overrides.max_memory_bytes.unwrap_or(self.max_memory_bytes),
            max_output_bytes: overrides.max_output_bytes.unwrap_or(self.max_output_bytes),
            max_log_bytes: overrides.max_log_bytes.unwrap_or(self.max_log_bytes),
        }
    }
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            deadline_ms: 100,
            max_memory_bytes: 32 << 20,
            max_output_bytes: 4 << 20,
            max_log_bytes: 64 << 10,
        }
    }
}

/// Why a component could not become a plugin. Messages name the problem in the plugin
/// author's terms, not wasmtime's.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    #[error("{path}: cannot read the file: {cause}")]
    Unreadable { path: String, cause: String },
    #[error(
        "{path}: not a WebAssembly component ({cause}); build the plugin as a component, e.g. `cargo build --target wasm32-wasip2`"
    )]
    NotAComponent { path: String, cause: String },
    #[error(
        "{path}: the component implements contract version {found}, which this host does not support (supported: {supported})"
    )]
    UnsupportedContractVersion {
        path: String,
        found: String,
        supported: String,
    },
    #[error(
        "{path}: the component does not export `{HANDLER_EXPORT}`, so it is not a wasmhook plugin (it exports: {exports})"
    )]
    MissingHandlerExport { path: String, exports: String },
    #[error(
        "{path}: the component imports `{import}`, which the host does not provide (plugins get `wasmhook:plugin/host` and WASI 0.2 without filesystem, network or environment)"
    )]
    UnknownImport { path: String, import: String },
    #[error("{path}: the component does not match the contract: {cause}")]
    ContractMismatch { path: String, cause: String },
    #[error("{path}: describe() failed: {cause}")]
    DescribeFailed { path: String, cause: String },
    #[error("{path}: describe() returned an unusable manifest: {reason}")]
    InvalidManifest { path: String, reason: String },
    #[error(
        "{path}: the plugin's max_memory_bytes ({requested}) exceeds the runtime's pool slot size ({pool})"
    )]
    MemoryLimitAbovePool {
        path: String,
        requested: usize,
        pool: usize,
    },
    #[error(
        "{path}: the component needs more than one slot of the instance pool holds ({CORE_INSTANCES_PER_SLOT} core instances, {MEMORIES_PER_SLOT} memories, {TABLES_PER_SLOT} tables): {cause}"
    )]
    TooLargeForPool { path: String, cause: String },
    #[error("{path}: the compilation was interrupted (the host is shutting down)")]
    CompilationInterrupted { path: String },
}

/// Why one call of a plugin failed. Each names plugin, version and request.
#[derive(Debug, thiserror::Error)]
pub enum PluginCallError {
    #[error("plugin {plugin} exceeded its deadline of {deadline_ms} ms on request {request_id}")]
    DeadlineExceeded {
        plugin: String,
        request_id: String,
        deadline_ms: u64,
    },
    #[error(
        "plugin {plugin} ran out of memory (limit {limit_bytes} bytes) on request {request_id}: {cause}"
    )]
    MemoryExhausted {
        plugin: String,
        request_id: String,
        limit_bytes: usize,
        cause: String,
    },
    #[error("plugin {plugin} trapped on request {request_id}: {cause}")]
    Trapped {
        plugin: String,
        request_id: String,
        cause: String,
    },
    #[error(
        "plugin {plugin} returned {output_bytes} bytes on request {request_id}, over its limit of {limit_bytes}"
    )]
    OutputTooLarge {
        plugin: String,
        request_id: String,
        output_bytes: usize,
        limit_bytes: usize,
    },
    #[error("plugin {plugin} returned an invalid answer on request {request_id}: {reason}")]
    InvalidOutput {
        plugin: String,
        request_id: String,
        reason: String,
    },
    /// An event id over the bound: the plugin took it from what the request carried (a header
    /// or the body), so the request is at fault rather than the plugin.
    #[error("plugin {plugin} returned an invalid answer on request {request_id}: {reason}")]
    EventIdTooLong {
        plugin: String,
        request_id: String,
        reason: String,
    },
}

/// What a plugin says about itself, in the host's own types.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginManifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub signature: SignatureScheme,
    pub dedupe_header: Option<String>,
    pub event_types: Vec<String>,
}

/// What a plugin's `configure()` made of one source's config (the contract's
/// `source-settings`): the signature scheme its requests are checked with and the header that
/// carries their delivery id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConfiguredSource {
    pub signature: SignatureScheme,
    pub dedupe_header: Option<String>,
}

/// One inbound request as the plugin sees it.
#[derive(Clone, Debug)]
pub struct PluginRequest {
    /// The host's id for this request, used in logs and errors (never shown to the plugin).
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub source_name: String,
    pub config: String,
}

/// Why a plugin refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectionKind {
    Malformed,
    Invalid,
    Unauthenticated,
    StaleTimestamp,
    Ignored,
}

/// An immediate answer for a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What `handle` decided, checked by the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginOutcome {
    Events(Vec<NormalizedEvent>),
    Rejected { kind: RejectionKind, reason: String },
    Reply(PluginReply),
}

/// Whether the host checked a request's signature before `handle`. It decides when the plugin
/// may use `sign-hmac-sha256` (see its doc comment in `wit/plugin.wit`): only for a request
/// proven to come from the holder of the secret, so that no reply becomes a signing oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestCheck {
    /// The host verified the signature (every scheme but `none` and `custom`): signing is
    /// allowed from the start of the call.
    VerifiedByHost,
    /// Nothing was verified yet: signing is allowed once the plugin's own
    /// `verify-hmac-sha256` succeeded in this call.
    NotVerifiedByHost,
}

/// One call's outcome and what it cost, for metrics and for plugin authors' budgets.
#[derive(Clone, Debug)]
pub struct PluginCallReport {
    pub outcome: PluginOutcome,
    /// Time to create the store and instantiate the component.
    pub instantiate: Duration,
    /// Time of the `handle` call itself: copying in, guest work, copying out.
    pub call: Duration,
    /// The largest linear memory the instance grew to, in bytes.
    pub peak_memory_bytes: usize,
    /// Bytes of events or reply returned.
    pub output_bytes: usize,
    /// Bytes the plugin logged (accepted within its cap).
    pub log_bytes: usize,
}

impl PluginCallError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginCallError::DeadlineExceeded { .. } => "deadline",
            PluginCallError::MemoryExhausted { .. } => "memory",
            PluginCallError::Trapped { .. } => "trap",
            PluginCallError::OutputTooLarge { .. } => "output_too_large",
            PluginCallError::InvalidOutput { .. } => "invalid_output",
            PluginCallError::EventIdTooLong { .. } => "id_too_long",
        }
    }

    /// Whether the failure says something about the plugin's health, and so counts toward the
    /// source's plugin breaker. An over-long event id does not (the plugin ran and answered): a
    /// few requests carrying one would otherwise open the breaker for the whole source.
    pub fn counts_against_the_plugin(&self) -> bool {
        !matches!(self, PluginCallError::EventIdTooLong { .. })
    }
}

/// Why a source's configuration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("the plugin refused the configuration: {0}")]
    Refused(String),
    #[error(transparent)]
    Call(PluginCallError),
}

/// The wasmtime engine, linker and instance pool shared by every plugin.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    instance_permits: Arc<Semaphore>,
    settings: RuntimeSettings,
    epoch_ticker_stop: Arc<AtomicBool>,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.epoch_ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// One loaded plugin version, ready to serve calls.
pub struct Plugin {
    runtime: Arc<PluginRuntime>,
    pre: bindings::PluginPre<PluginState>,
    /// `name@version`, used in logs and errors.
    label: Arc<str>,
    manifest: PluginManifest,
    content_hash: String,
    limits: PluginLimits,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Plugin")
            .field("label", &self.label)
            .field("content_hash", &self.content_hash)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub fn manifest(&self) -> &PluginManifest {
        &self.manifest
    }

    /// The SHA-256 of the component's bytes, in hex.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// `name@version`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// Most bytes of a plugin's failure (its refusal of a configuration, a trap with its stderr)
/// that go into one log line.
pub const PLUGIN_ERROR_LOG_LIMIT: usize = 2048;

/// `text` with every control character escaped (a newline becomes `\n`, ESC `\u{1b}`), so that
/// what a plugin wrote stays on one log line and cannot forge others or drive the terminal;
/// cut after about `limit` bytes, with a note of how many were left out.
pub fn escape_for_log(text: &str, limit: usize) -> String {
    let mut escaped = String::with_capacity(text.len().min(limit));
    let mut consumed = 0;
    for character in text.chars() {
        if escaped.len() >= limit {
            break;
        }
        if character.is_control() {
            escaped.extend(character.escape_default());
        } else {
            escaped.push(character);
        }
        consumed += character.len_utf8();
    }
    if consumed < text.len() {
        escaped.push_str(&format!("… ({} more bytes)", text.len() - consumed));
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_escaped_and_capped() {
        let table = [
            ("plain", usize::MAX, "plain"),
            ("two\nlines", usize::MAX, "two\\nlines"),
            ("\u{1b}[31mred\r\t", usize::MAX, "\\u{1b}[31mred\\r\\t"),
            ("ünïcode stays", usize::MAX, "ünïcode stays"),
            ("abcdefgh", 3, "abc… (5 more bytes)"),
            ("ab\ncd", 3, "ab\\n… (2 more bytes)"),
            ("", 0, ""),
        ];
        for (text, limit, expected) in table {
            assert_eq!(escape_for_log(text, limit), expected, "{text:?}");
        }
    }
}
