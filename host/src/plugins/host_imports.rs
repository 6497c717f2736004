//! What a plugin may call on the host (`wasmhook:plugin/host`): logging under its cap, and
//! HMAC-SHA256 with the source's secrets, which the plugin never sees. Also the state of one
//! store these calls read.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::escape_for_log;
use super::limits::MemoryLimiter;
use super::wit::bindings;
use super::wit::bindings::wasmhook::plugin::types as wit;
use crate::signature::{self, Secret};

/// Most `verify-hmac-sha256` calls one plugin call may make; later ones answer false. As many
/// as the candidates the host's own check accepts in one header.
pub const MAX_VERIFY_CALLS_PER_CALL: u32 = 16;

/// The state of one store: WASI with nothing granted, the memory limiter, and what the host
/// imports need for this call.
pub(super) struct PluginState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) plugin_label: Arc<str>,
    pub(super) request_id: String,
    pub(super) secrets: Arc<[Secret]>,
    /// Whether `sign-hmac-sha256` answers: set when the host verified the request, or once the
    /// plugin's own `verify-hmac-sha256` succeeded in this call.
    pub(super) signing_allowed: bool,
    pub(super) signing_refusal_reported: bool,
    /// How many more `verify-hmac-sha256` calls this call may make; each hashes the whole
    /// message once per secret, so a plugin looping over a caller's candidates is bounded
    /// as the host's own check is.
    pub(super) verify_calls_left: u32,
    pub(super) log_bytes_used: usize,
    pub(super) log_bytes_limit: usize,
    pub(super) log_limit_reported: bool,
    /// Epoch ticks the guest may still run in before it is interrupted.
    pub(super) ticks_left: u64,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PluginState {
    /// A warning about this call, labelled with its plugin and request like the plugin's own
    /// log lines.
    fn warn(&self, message: std::fmt::Arguments<'_>) {
        tracing::warn!(
            target: "wasmhook::plugin",
            plugin = %self.plugin_label,
            request_id = %self.request_id,
            "{message}"
        );
    }
}

impl wit::Host for PluginState {}

impl bindings::wasmhook::plugin::host::Host for PluginState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        if self.log_bytes_used + message.len() > self.log_bytes_limit {
            if !self.log_limit_reported {
                self.log_limit_reported = true;
                self.warn(format_args!(
                    "the plugin reached its log limit of {} bytes; further lines of this call are dropped",
                    self.log_bytes_limit
                ));
            }
            return;
        }
        self.log_bytes_used += message.len();
        // One call is one log line: a newline or terminal escape in the message must not let
        // the plugin forge lines of its own or recolour the operator's terminal.
        let message = escape_for_log(&message, usize::MAX);
        let plugin = &*self.plugin_label;
        let request_id = self.request_id.as_str();
        match level {
            wit::LogLevel::Trace => {
                tracing::trace!(target: "wasmhook::plugin", plugin, request_id, "{message}")
            }
            wit::LogLevel::Debug => {
                tracing::debug!(target: "wasmhook::plugin", plugin, request_id, "{message}")
            }
            wit::LogLevel::Info => {
                tracing::info!(target: "wasmhook::plugin", plugin, request_id, "{message}")
            }
            wit::LogLevel::Warn => {
                tracing::warn!(target: "wasmhook::plugin", plugin, request_id, "{message}")
            }
            wit::LogLevel::Error => {
                tracing::error!(target: "wasmhook::plugin", plugin, request_id, "{message}")
            }
        }
    }

    fn verify_hmac_sha256(&mut self, message: Vec<u8>, mac: Vec<u8>) -> bool {
        if self.verify_calls_left == 0 {
            return false;
        }
        self.verify_calls_left -= 1;
        let mut matched = false;
        // An empty key is public: a MAC under it proves nothing.
        for secret in self
            .secrets
            .iter()
            .filter(|secret| !secret.expose().is_empty())
        {
            matched |= signature::hmac_matches(secret.expose().as_bytes(), &[&message], &mac);
        }
        self.signing_allowed |= matched;
        matched
    }

    fn sign_hmac_sha256(&mut self, message: Vec<u8>) -> Option<Vec<u8>> {
        if !self.signing_allowed {
            if !self.signing_refusal_reported {
                self.signing_refusal_reported = true;
                self.warn(format_args!(
                    "refused sign-hmac-sha256: the request is not verified (the host signs only after its own check or a successful verify-hmac-sha256 in the same call)"
                ));
            }
            return None;
        }
        self.secrets
            .iter()
            .rev()
            .find(|secret| !secret.expose().is_empty())
            .map(|secret| signature::hmac_sha256(secret.expose().as_bytes(), &[&message]).to_vec())
    }
}
