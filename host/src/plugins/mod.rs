//! The plugin runtime: loads WebAssembly component plugins and runs them safely and fast.
//!
//! This is the only module that imports `wasmtime`. One [`PluginRuntime`] owns the engine (with
//! the pooling allocator and epoch interruption), the linker and a semaphore sized to the pool.
//! Each [`Plugin`] is one pre-instantiated component version. Every call gets a fresh `Store`,
//! so nothing leaks from one webhook to the next, and runs under a CPU deadline (epoch
//! interruption that yields every tick and traps at the deadline), a wall-clock timeout, a
//! memory limit and caps on output and log bytes. Whatever a plugin does, the failure comes back
//! as a [`PluginCallError`] that names plugin, version, request and cause.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::metrics;
use crate::model::events::NormalizedEvent;
use crate::signature::{self, MacEncoding, Secret, SignatureScheme};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        exports: { default: async },
    });
}

use bindings::wasmhook::plugin::types as wit;

/// The contract versions this host can run, newest first.
pub const SUPPORTED_CONTRACT_VERSIONS: &[&str] = &["0.1.0"];
const HANDLER_EXPORT: &str = "wasmhook:plugin/handler@0.1.0";
const HANDLER_EXPORT_PREFIX: &str = "wasmhook:plugin/handler@";

/// How often the epoch ticks. A running guest yields to the async executor on every tick, so a
/// plugin that computes for a long time shares its thread instead of holding it.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What one slot of the instance pool holds. Components built by wit-component link a few core
/// modules (the plugin, shims, an adapter); a componentize-js component links 4 and a
/// componentize-py one 14, so a slot holds 16. Two memories per component cover every
/// toolchain measured here.
const CORE_INSTANCES_PER_SLOT: u32 = 16;
const MEMORIES_PER_SLOT: u32 = 2;
const TABLES_PER_SLOT: u32 = 8;

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

/// Engine-wide settings, fixed when the runtime starts.
#[derive(Clone, Debug)]
pub struct RuntimeSettings {
    /// Instances that may run at once; the pool holds this many slots and a burst beyond it
    /// waits for a slot instead of failing.
    pub max_concurrent_instances: u32,
    /// The size of each pooled memory slot; no plugin's `max_memory_bytes` may exceed it.
    pub pool_memory_bytes: usize,
    /// Where compiled plugins are cached; `None` compiles on every load.
    pub compiled_cache_dir: Option<PathBuf>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            max_concurrent_instances: 64,
            pool_memory_bytes: 256 << 20,
            compiled_cache_dir: None,
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

/// How one source bound to a plugin is set up.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceSettings {
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

impl PluginRuntime {
    /// Builds the engine and starts its epoch ticker thread (stopped when the runtime drops).
    pub fn new(settings: RuntimeSettings) -> anyhow::Result<Arc<PluginRuntime>> {
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        let instances = settings.max_concurrent_instances.max(1);
        // Each total is the slots times what one component may use, so a call that holds one
        // of the semaphore's permits always finds room: a plugin can never take what another
        // needs to instantiate. A component that needs more than one slot's share is refused
        // when it loads (`PluginLoadError::TooLargeForPool`).
        pool.total_component_instances(instances)
            .max_core_instances_per_component(CORE_INSTANCES_PER_SLOT)
            .total_core_instances(instances * CORE_INSTANCES_PER_SLOT)
            .max_memories_per_component(MEMORIES_PER_SLOT)
            .total_memories(instances * MEMORIES_PER_SLOT)
            .max_tables_per_component(TABLES_PER_SLOT)
            .total_tables(instances * TABLES_PER_SLOT)
            .total_stacks(instances)
            .max_memory_size(settings.pool_memory_bytes)
            // Resetting a slot by zeroing its first pages, instead of handing them back to the
            // kernel, saves a page fault per touched page on the next instantiation; a Rust
            // plugin touches about a megabyte (its stack and a little heap) per call.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10);
        let mut config = Config::new();
        config
            .allocation_strategy(pool)
            .epoch_interruption(true)
            .concurrency_support(false);
        let engine = Engine::new(&config)
            .map_err(|error| anyhow::anyhow!("creating the engine: {error}"))?;

        let mut linker = Linker::<PluginState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|error| anyhow::anyhow!("linking WASI: {error}"))?;
        bindings::Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|error| anyhow::anyhow!("linking the host interface: {error}"))?;

        let epoch_ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = epoch_ticker_stop.clone();
        std::thread::Builder::new()
            .name("wasmhook-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        if let Some(cache_dir) = &settings.compiled_cache_dir {
            make_cache_dir_private(cache_dir);
        }

        Ok(Arc::new(PluginRuntime {
            engine,
            linker,
            instance_permits: Arc::new(Semaphore::new(instances as usize)),
            settings,
            epoch_ticker_stop,
        }))
    }

    /// Loads a component file: compiles it (or reuses the cached compilation), checks that it
    /// implements the contract, pre-instantiates it and reads its manifest.
    pub async fn load_file(
        self: &Arc<Self>,
        path: &Path,
        limits: PluginLimits,
    ) -> Result<Plugin, PluginLoadError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| PluginLoadError::Unreadable {
            path: label.clone(),
            cause: error.to_string(),
        })?;
        self.load_bytes(&label, &bytes, limits).await
    }

    /// Loads a component from bytes; `label` names it in errors (a path or an upload name).
    pub async fn load_bytes(
        self: &Arc<Self>,
        label: &str,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Plugin, PluginLoadError> {
        if limits.max_memory_bytes > self.settings.pool_memory_bytes {
            return Err(PluginLoadError::MemoryLimitAbovePool {
                path: label.to_owned(),
                requested: limits.max_memory_bytes,
                pool: self.settings.pool_memory_bytes,
            });
        }
        let content_hash = hex::encode(Sha256::digest(bytes));
        let component = self
            .compile_off_the_executor(label, bytes, &content_hash)
            .await?;
        self.check_world(label, &component)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|error| {
            PluginLoadError::ContractMismatch {
                path: label.to_owned(),
                cause: error_chain(&error),
            }
        })?;
        let pre = bindings::PluginPre::new(instance_pre).map_err(|error| {
            PluginLoadError::ContractMismatch {
                path: label.to_owned(),
                cause: error_chain(&error),
            }
        })?;
        let mut plugin = Plugin {
            runtime: self.clone(),
            pre,
            label: Arc::from(label),
            manifest: placeholder_manifest(),
            content_hash,
            limits,
        };
        let manifest =
            plugin
                .describe()
                .await
                .map_err(|error| PluginLoadError::DescribeFailed {
                    path: label.to_owned(),
                    cause: error.to_string(),
                })?;
        validate_manifest(&manifest).map_err(|reason| PluginLoadError::InvalidManifest {
            path: label.to_owned(),
            reason,
        })?;
        plugin.label = Arc::from(format!("{}@{}", manifest.name, manifest.version));
        plugin.manifest = manifest;
        Ok(plugin)
    }

    /// [`PluginRuntime::compile`] on a blocking thread: compiling a component takes from
    /// milliseconds to seconds of CPU, which would stall every request on an executor thread.
    async fn compile_off_the_executor(
        self: &Arc<Self>,
        label: &str,
        bytes: &[u8],
        content_hash: &str,
    ) -> Result<Component, PluginLoadError> {
        let runtime = self.clone();
        let (label_owned, bytes, content_hash) =
            (label.to_owned(), bytes.to_vec(), content_hash.to_owned());
        match tokio::task::spawn_blocking(move || {
            runtime.compile(&label_owned, &bytes, &content_hash)
        })
        .await
        {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(PluginLoadError::CompilationInterrupted {
                path: label.to_owned(),
            }),
        }
    }

    /// Compiles a component, or deserializes the compilation this host cached for the same
    /// bytes and the same engine configuration.
    fn compile(
        &self,
        label: &str,
        bytes: &[u8],
        content_hash: &str,
    ) -> Result<Component, PluginLoadError> {
        if !looks_like_component(bytes) {
            return Err(PluginLoadError::NotAComponent {
                path: label.to_owned(),
                cause: describe_non_component(bytes),
            });
        }
        let Some(cache_dir) = &self.settings.compiled_cache_dir else {
            return self
                .compile_fresh(label, bytes)
                .map(|(component, _)| component);
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let cache_path = cache_dir.join(format!("{content_hash}-{:016x}.cwasm", hasher.finish()));
        let trusted = match cache_entry_is_trusted(cache_dir, &cache_path) {
            Ok(trusted) => trusted,
            Err(reason) => {
                // Loading it would run whatever native code another user put there.
                tracing::warn!(
                    cache_file = %cache_path.display(),
                    "not loading a compiled plugin cache entry ({reason}): compiling instead"
                );
                false
            }
        };
        if trusted {
            // SAFETY: the file was written by `Engine::precompile_component` of this host, for these
            // exact bytes (the content hash) and an engine with the same compatibility hash; it
            // and its directory belong to the host's user and nobody else can write them.
            match unsafe { Component::deserialize_file(&self.engine, &cache_path) } {
                Ok(component) => return Ok(component),
                Err(error) => tracing::warn!(
                    cache_file = %cache_path.display(),
                    "ignoring an unusable compiled plugin cache entry: {error}"
                ),
            }
        }
        let (component, serialized) = self.compile_fresh(label, bytes)?;
        if let Err(error) = write_cache_entry(cache_dir, &cache_path, &serialized) {
            tracing::warn!(
                cache_file = %cache_path.display(),
                "could not cache the compiled plugin: {error:#}"
            );
        }
        Ok(component)
    }

    /// Compiles `bytes`, then loads the compilation, which is where wasmtime checks that the
    /// component fits one slot of the pool: two steps, so that a component too large for the
    /// pool is told apart from one that does not compile. Returns the serialized compilation
    /// too, for the cache.
    fn compile_fresh(
        &self,
        label: &str,
        bytes: &[u8],
    ) -> Result<(Component, Vec<u8>), PluginLoadError> {
        let serialized = self.engine.precompile_component(bytes).map_err(|error| {
            PluginLoadError::NotAComponent {
                path: label.to_owned(),
                cause: error_chain(&error),
            }
        })?;
        // SAFETY: `serialized` was produced just now by `precompile_component` of this engine.
        let component =
            unsafe { Component::deserialize(&self.engine, &serialized) }.map_err(|error| {
                PluginLoadError::TooLargeForPool {
                    path: label.to_owned(),
                    cause: error_chain(&error),
                }
            })?;
        Ok((component, serialized))
    }

    /// Checks exports and imports against the contract before linking, so that a mismatch is
    /// reported in terms of interfaces rather than as a raw link error.
    fn check_world(&self, label: &str, component: &Component) -> Result<(), PluginLoadError> {
        let component_type = component.component_type();
        let exports: Vec<&str> = component_type
            .exports(&self.engine)
            .map(|(name, _)| name)
            .collect();
        if !exports.contains(&HANDLER_EXPORT) {
            if let Some(other) = exports
                .iter()
                .find_map(|name| name.strip_prefix(HANDLER_EXPORT_PREFIX))
            {
                return Err(PluginLoadError::UnsupportedContractVersion {
                    path: label.to_owned(),
                    found: other.to_owned(),
                    supported: SUPPORTED_CONTRACT_VERSIONS.join(", "),
                });
            }
            return Err(PluginLoadError::MissingHandlerExport {
                path: label.to_owned(),
                exports: if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                },
            });
        }
        for (import, _) in component_type.imports(&self.engine) {
            if !import_is_provided(import) {
                return Err(PluginLoadError::UnknownImport {
                    path: label.to_owned(),
                    import: import.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Whether the host links an import of this name: its own interfaces and WASI 0.2 (with every
/// capability withheld at run time).
fn import_is_provided(import: &str) -> bool {
    const OWN: &[&str] = &["wasmhook:plugin/host@0.1.0", "wasmhook:plugin/types@0.1.0"];
    const WASI_PACKAGES: &[&str] = &[
        "wasi:cli/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:filesystem/",
        "wasi:sockets/",
    ];
    OWN.contains(&import)
        || (WASI_PACKAGES
            .iter()
            .any(|package| import.starts_with(package))
            && import.contains("@0.2."))
}

/// Component binaries carry layer 1 in the preamble, core modules layer 0. The text format is
/// accepted too (it is compiled the same way), which keeps small test components readable.
fn looks_like_component(bytes: &[u8]) -> bool {
    let binary_component = bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [1, 0];
    binary_component || bytes.trim_ascii_start().starts_with(b"(component")
}

fn describe_non_component(bytes: &[u8]) -> String {
    if bytes.len() >= 8 && bytes[0..4] == *b"\0asm" {
        "it is a core WebAssembly module, not a component".to_owned()
    } else if bytes.trim_ascii_start().starts_with(b"(module") {
        "it is the text of a core WebAssembly module, not a component".to_owned()
    } else {
        "the file does not start with the WebAssembly magic bytes".to_owned()
    }
}

/// Whether a cache entry may be loaded as native code: `Ok(false)` when there is none, an
/// error naming the reason when it or its directory is not the host user's alone (another
/// owner, writable by group or others, or not a plain file).
fn cache_entry_is_trusted(cache_dir: &Path, cache_path: &Path) -> Result<bool, String> {
    use std::os::unix::fs::MetadataExt;
    let host_user = nix::unistd::geteuid().as_raw();
    let private_to_host = |path: &Path, metadata: &std::fs::Metadata| {
        if metadata.uid() != host_user {
            Err(format!(
                "{} is owned by uid {}, not the host's user",
                path.display(),
                metadata.uid()
            ))
        } else if metadata.mode() & 0o022 != 0 {
            Err(format!("{} is writable by group or others", path.display()))
        } else {
            Ok(())
        }
    };
    let entry = match std::fs::symlink_metadata(cache_path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(format!("{}: {error}", cache_path.display())),
    };
    if !entry.file_type().is_file() {
        return Err(format!("{} is not a plain file", cache_path.display()));
    }
    let directory = std::fs::metadata(cache_dir)
        .map_err(|error| format!("{}: {error}", cache_dir.display()))?;
    private_to_host(cache_dir, &directory)?;
    private_to_host(cache_path, &entry)?;
    Ok(true)
}

/// An older host left its cache directory writable by its group; were it kept so, no entry
/// would ever be trusted and every load would compile again. When the directory is the host
/// user's, it is made private (0700), so that the entries it writes from now on are trusted.
/// A directory of another user's is left alone, and its entries stay untrusted.
fn make_cache_dir_private(cache_dir: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(metadata) = std::fs::symlink_metadata(cache_dir) else {
        return;
    };
    let owned_by_host = metadata.uid() == nix::unistd::geteuid().as_raw();
    if metadata.is_dir() && owned_by_host && metadata.mode() & 0o077 != 0 {
        let private = std::fs::Permissions::from_mode(0o700);
        if let Err(error) = std::fs::set_permissions(cache_dir, private) {
            tracing::warn!(
                cache_dir = %cache_dir.display(),
                "could not make the compiled plugin cache private: {error}"
            );
        }
    }
}

fn write_cache_entry(cache_dir: &Path, cache_path: &Path, serialized: &[u8]) -> anyhow::Result<()> {
    // Private to the host's user: what is in here is loaded as native code.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(cache_dir)
        .context("creating the cache directory")?;
    // Write a uniquely named file, then rename it into place: loaders map cache entries into
    // memory, so an entry must never be truncated or rewritten once it has its final name.
    let mut temporary =
        tempfile::NamedTempFile::new_in(cache_dir).context("creating a temporary cache file")?;
    std::io::Write::write_all(&mut temporary, serialized).context("writing the cache entry")?;
    temporary
        .persist(cache_path)
        .context("renaming the cache entry into place")?;
    Ok(())
}

fn error_chain(error: &wasmtime::Error) -> String {
    format!("{error:#}")
}

fn placeholder_manifest() -> PluginManifest {
    PluginManifest {
        name: String::new(),
        version: String::new(),
        description: String::new(),
        signature: SignatureScheme::None,
        dedupe_header: None,
        event_types: Vec::new(),
    }
}

pub(crate) fn validate_manifest(manifest: &PluginManifest) -> Result<(), String> {
    let name_is_plain = !manifest.name.is_empty()
        && manifest.name.len() <= 64
        && manifest
            .name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if !name_is_plain {
        return Err(format!(
            "name {:?} must be 1-64 characters of a-z, 0-9 and '-'",
            manifest.name
        ));
    }
    if manifest.version.trim().is_empty() {
        return Err("version is empty".to_owned());
    }
    // The version labels every log line of the plugin, so a control character in it could
    // forge lines.
    if manifest.version.chars().any(char::is_control) {
        return Err(format!(
            "version {:?} contains a control character",
            manifest.version
        ));
    }
    if manifest.event_types.iter().any(|t| t.trim().is_empty()) {
        return Err("event-types contains an empty type".to_owned());
    }
    validate_scheme(&manifest.signature)?;
    // The manifest is stored as `jsonb`, which refuses NUL (`\u0000`): refused here, such a
    // plugin fails to load instead of failing the insert of its version.
    let scheme_texts = match &manifest.signature {
        SignatureScheme::BodyHmac { prefix, .. } => vec![prefix],
        SignatureScheme::VersionedHmac { version, .. } => vec![version],
        _ => Vec::new(),
    };
    let mut texts = [&manifest.version, &manifest.description]
        .into_iter()
        .chain(&manifest.dedupe_header)
        .chain(&manifest.event_types)
        .chain(scheme_texts);
    if texts.any(|text| text.contains('\0')) {
        return Err("a field contains a NUL character".to_owned());
    }
    Ok(())
}

fn validate_scheme(scheme: &SignatureScheme) -> Result<(), String> {
    let header_is_valid = |header: &str| {
        !header.is_empty()
            && header
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    match scheme {
        SignatureScheme::BodyHmac { header, .. } | SignatureScheme::SharedToken { header }
            if !header_is_valid(header) =>
        {
            Err(format!("signature header {header:?} is not a header name"))
        }
        SignatureScheme::VersionedHmac {
            signature_header,
            timestamp_header,
            ..
        } if !header_is_valid(signature_header) || !header_is_valid(timestamp_header) => {
            Err("versioned-hmac signature and timestamp headers must be header names".to_owned())
        }
        _ => Ok(()),
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

    async fn describe(&self) -> Result<PluginManifest, PluginCallError> {
        let (manifest, _) = self
            .run("load", CallSecrets::none(), async |plugin, store| {
                plugin
                    .wasmhook_plugin_handler()
                    .call_describe(store)
                    .await
                    .map(manifest_from_wit)
            })
            .await?;
        Ok(manifest)
    }

    /// Checks one source's configuration string and derives its settings.
    pub async fn configure(&self, config: &str) -> Result<SourceSettings, ConfigureError> {
        let (settings, _) = self
            .run("configure", CallSecrets::none(), async |plugin, store| {
                plugin
                    .wasmhook_plugin_handler()
                    .call_configure(store, config)
                    .await
            })
            .await
            .map_err(ConfigureError::Call)?;
        let settings = settings.map_err(ConfigureError::Refused)?;
        let settings = SourceSettings {
            signature: scheme_from_wit(settings.signature),
            dedupe_header: settings.dedupe_header,
        };
        validate_scheme(&settings.signature).map_err(ConfigureError::Refused)?;
        Ok(settings)
    }

    /// Runs `handle` on one request that the host did not verify (see [`Plugin::handle_checked`]).
    pub async fn handle(
        &self,
        request: PluginRequest,
        secrets: Arc<[Secret]>,
    ) -> Result<PluginCallReport, PluginCallError> {
        self.handle_checked(request, secrets, RequestCheck::NotVerifiedByHost)
            .await
    }

    /// Runs `handle` on one request in a fresh instance. `secrets` are the source's active
    /// secrets, used only by the `verify-hmac-sha256` and `sign-hmac-sha256` imports; `check`
    /// says whether the host verified the request, which decides when signing is allowed.
    pub async fn handle_checked(
        &self,
        request: PluginRequest,
        secrets: Arc<[Secret]>,
        check: RequestCheck,
    ) -> Result<PluginCallReport, PluginCallError> {
        let request_id = request.request_id.clone();
        let wit_request = wit::Request {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request
                .headers
                .into_iter()
                .map(|(name, value)| wit::Header { name, value })
                .collect(),
            body: request.body,
            received_at_unix_ms: request.received_at.timestamp_millis(),
            received_at: request
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            source_name: request.source_name,
            config: request.config,
        };
        let received_at = request.received_at;
        let started = Instant::now();
        let result = self
            .run(
                &request_id,
                CallSecrets { secrets, check },
                async |plugin, store| {
                    plugin
                        .wasmhook_plugin_handler()
                        .call_handle(store, &wit_request)
                        .await
                },
            )
            .await;
        metrics::plugin_call(
            &self.manifest.name,
            &self.manifest.version,
            started.elapsed(),
        );
        let (outcome, usage) = result.inspect_err(|error| {
            metrics::plugin_failure(&self.manifest.name, &self.manifest.version, error.kind());
        })?;
        let output_bytes = outcome_size(&outcome);
        if output_bytes > self.limits.max_output_bytes {
            metrics::plugin_failure(
                &self.manifest.name,
                &self.manifest.version,
                "output_too_large",
            );
            return Err(PluginCallError::OutputTooLarge {
                plugin: self.label.to_string(),
                request_id,
                output_bytes,
                limit_bytes: self.limits.max_output_bytes,
            });
        }
        let outcome = outcome_from_wit(outcome, received_at).map_err(|invalid| {
            let plugin = self.label.to_string();
            let request_id = request_id.clone();
            let error = match invalid {
                InvalidAnswer::EventIdTooLong(reason) => PluginCallError::EventIdTooLong {
                    plugin,
                    request_id,
                    reason,
                },
                InvalidAnswer::Other(reason) => PluginCallError::InvalidOutput {
                    plugin,
                    request_id,
                    reason,
                },
            };
            metrics::plugin_failure(&self.manifest.name, &self.manifest.version, error.kind());
            error
        })?;
        Ok(PluginCallReport {
            outcome,
            instantiate: usage.instantiate,
            call: usage.call,
            peak_memory_bytes: usage.peak_memory_bytes,
            output_bytes,
            log_bytes: usage.log_bytes,
        })
    }

    /// Instantiates the component in a fresh store under every limit, runs `call`, forwards
    /// the captured stdout and stderr as logs, and turns any failure into a typed error.
    async fn run<R>(
        &self,
        request_id: &str,
        secrets: CallSecrets,
        call: impl AsyncFnOnce(&bindings::Plugin, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<(R, CallUsage), PluginCallError> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self
            .runtime
            .instance_permits
            .acquire()
            .await
            .expect("the instance semaphore is never closed");
        let deadline = Duration::from_millis(self.limits.deadline_ms);
        let started = Instant::now();
        let stdout = CapturedOutput::new(self.limits.max_log_bytes);
        let stderr = CapturedOutput::new(self.limits.max_log_bytes);
        // The deadline counts the ticks in which the guest ran, not wall time: a plugin waiting
        // for a busy executor (it yields every tick) is not charged for the wait, so a loaded
        // host does not fail well-behaved plugins.
        let deadline_ticks = deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64;
        let mut store = self.new_store(request_id, secrets, &stdout, &stderr, deadline_ticks);

        let mut instantiate = Duration::ZERO;
        // Epoch interruption stops a guest that computes; this wall-clock timeout covers what
        // ticks cannot see (a host call that would block), generously, so that a busy executor
        // does not trip it.
        let wall_clock_limit = (deadline * 10).max(Duration::from_secs(1));
        let result = tokio::time::timeout(wall_clock_limit, async {
            let plugin = self.pre.instantiate_async(&mut store).await?;
            instantiate = started.elapsed();
            call(&plugin, &mut store).await
        })
        .await;
        let elapsed = started.elapsed();

        self.forward_captured_output(request_id, &stdout, &stderr);
        let state = store.data();
        let usage = CallUsage {
            instantiate,
            call: elapsed.saturating_sub(instantiate),
            peak_memory_bytes: state.limiter.peak_memory_bytes,
            log_bytes: state.log_bytes_used + stdout.len() + stderr.len(),
        };
        let failure = match result {
            Ok(Ok(value)) => return Ok((value, usage)),
            Ok(Err(error)) => error,
            Err(_elapsed) => {
                return Err(PluginCallError::DeadlineExceeded {
                    plugin: self.label.to_string(),
                    request_id: request_id.to_owned(),
                    deadline_ms: self.limits.deadline_ms,
                });
            }
        };
        let error = if failure.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
        {
            PluginCallError::DeadlineExceeded {
                plugin: self.label.to_string(),
                request_id: request_id.to_owned(),
                deadline_ms: self.limits.deadline_ms,
            }
        } else if state.limiter.limit_hit {
            PluginCallError::MemoryExhausted {
                plugin: self.label.to_string(),
                request_id: request_id.to_owned(),
                limit_bytes: self.limits.max_memory_bytes,
                cause: describe_trap(&failure, &stderr),
            }
        } else {
            PluginCallError::Trapped {
                plugin: self.label.to_string(),
                request_id: request_id.to_owned(),
                cause: describe_trap(&failure, &stderr),
            }
        };
        Err(error)
    }

    fn new_store(
        &self,
        request_id: &str,
        secrets: CallSecrets,
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
        deadline_ticks: u64,
    ) -> Store<PluginState> {
        // No preopened directories, environment, arguments or network: the only things a
        // plugin can reach are its captured stdout and stderr, randomness, and a wall clock
        // frozen at the epoch (its real clock is the request's receive time).
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock)
            .build();
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_memory_bytes: self.limits.max_memory_bytes,
                peak_memory_bytes: 0,
                limit_hit: false,
            },
            plugin_label: self.label.clone(),
            request_id: request_id.to_owned(),
            signing_allowed: secrets.check == RequestCheck::VerifiedByHost,
            signing_refusal_reported: false,
            verify_calls_left: MAX_VERIFY_CALLS_PER_CALL,
            secrets: secrets.secrets,
            log_bytes_used: 0,
            log_bytes_limit: self.limits.max_log_bytes,
            log_limit_reported: false,
            ticks_left: deadline_ticks,
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            state.ticks_left = state.ticks_left.saturating_sub(1);
            if state.ticks_left == 0 {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // tokio's own yield sends the task to the back of the run queue. wasmtime's
                // plain yield wakes the task from inside the worker, which tokio runs next
                // (its LIFO slot): a plugin spinning until its deadline would then hold a
                // worker thread, and every request queued behind it would wait.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store
    }

    fn forward_captured_output(
        &self,
        request_id: &str,
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
    ) {
        for (stream, captured) in [("stdout", stdout), ("stderr", stderr)] {
            let text = captured.text();
            for line in text.lines().filter(|line| !line.trim().is_empty()) {
                tracing::info!(
                    target: "wasmhook::plugin",
                    plugin = %self.label,
                    request_id,
                    stream,
                    "{}",
                    escape_for_log(line, usize::MAX)
                );
            }
        }
    }
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

/// The secrets one call may use through the host imports, and whether the host verified the
/// request.
struct CallSecrets {
    secrets: Arc<[Secret]>,
    check: RequestCheck,
}

impl CallSecrets {
    /// For `describe` and `configure`, which handle no request.
    fn none() -> CallSecrets {
        CallSecrets {
            secrets: Vec::new().into(),
            check: RequestCheck::NotVerifiedByHost,
        }
    }
}

struct CallUsage {
    instantiate: Duration,
    call: Duration,
    peak_memory_bytes: usize,
    log_bytes: usize,
}

fn describe_trap(error: &wasmtime::Error, stderr: &CapturedOutput) -> String {
    // The alternate display carries the cause chain with the wasm backtrace; the debug form
    // would add the host's own native backtrace (slow to symbolize, useless to plugin authors).
    let mut cause = format!("{error:#}");
    let guest_stderr = stderr.text();
    let guest_stderr = guest_stderr.trim();
    if !guest_stderr.is_empty() {
        cause.push_str("\nplugin stderr: ");
        cause.push_str(guest_stderr);
    }
    cause
}

/// Most `verify-hmac-sha256` calls one plugin call may make; later ones answer false. As many
/// as the candidates the host's own check accepts in one header.
pub const MAX_VERIFY_CALLS_PER_CALL: u32 = 16;

/// The state of one store: WASI with nothing granted, the memory limiter, and what the host
/// imports need for this call.
struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    plugin_label: Arc<str>,
    request_id: String,
    secrets: Arc<[Secret]>,
    /// Whether `sign-hmac-sha256` answers: set when the host verified the request, or once the
    /// plugin's own `verify-hmac-sha256` succeeded in this call.
    signing_allowed: bool,
    signing_refusal_reported: bool,
    /// How many more `verify-hmac-sha256` calls this call may make; each hashes the whole
    /// message once per secret, so a plugin looping over a caller's candidates is bounded
    /// as the host's own check is.
    verify_calls_left: u32,
    log_bytes_used: usize,
    log_bytes_limit: usize,
    log_limit_reported: bool,
    /// Epoch ticks the guest may still run in before it is interrupted.
    ticks_left: u64,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for PluginState {}

impl bindings::wasmhook::plugin::host::Host for PluginState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        if self.log_bytes_used + message.len() > self.log_bytes_limit {
            if !self.log_limit_reported {
                self.log_limit_reported = true;
                tracing::warn!(
                    target: "wasmhook::plugin",
                    plugin = %self.plugin_label,
                    request_id = %self.request_id,
                    "the plugin reached its log limit of {} bytes; further lines of this call are dropped",
                    self.log_bytes_limit
                );
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
                tracing::warn!(
                    target: "wasmhook::plugin",
                    plugin = %self.plugin_label,
                    request_id = %self.request_id,
                    "refused sign-hmac-sha256: the request is not verified (the host signs only after its own check or a successful verify-hmac-sha256 in the same call)"
                );
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

/// Enforces the per-plugin memory limit inside the pool's larger slots, and records the peak.
struct MemoryLimiter {
    max_memory_bytes: usize,
    peak_memory_bytes: usize,
    limit_hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.limit_hit = true;
            return Ok(false);
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// A wall clock stuck at the Unix epoch: plugins get time from the request, so that a plugin's
/// answer depends on its input alone.
struct FrozenWallClock;

impl wasmtime_wasi::HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A bounded in-memory stdout or stderr. Bytes past the cap are dropped rather than trapping,
/// so a chatty plugin loses log lines, not the webhook.
#[derive(Clone)]
struct CapturedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
}

impl CapturedOutput {
    fn new(capacity: usize) -> CapturedOutput {
        CapturedOutput {
            buffer: Arc::new(Mutex::new(Vec::new())),
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.buffer.lock().expect("capture lock poisoned").len()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("capture lock poisoned")).into_owned()
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl CapturedOutput {
    /// Appends what fits under the cap and drops the rest.
    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().expect("capture lock poisoned");
        let room = self.capacity.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// A direct synchronous stream: the default adapter moves every write through a channel to
    /// a background task, which makes each `println!` in a plugin cost microseconds.
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        // Always report room: bytes past the cap are dropped, never refused.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn scheme_from_wit(scheme: wit::SignatureScheme) -> SignatureScheme {
    match scheme {
        wit::SignatureScheme::None => SignatureScheme::None,
        wit::SignatureScheme::BodyHmac(body_hmac) => SignatureScheme::BodyHmac {
            header: body_hmac.header.to_ascii_lowercase(),
            prefix: body_hmac.prefix,
            encoding: match body_hmac.encoding {
                wit::MacEncoding::Hex => MacEncoding::Hex,
                wit::MacEncoding::Base64 => MacEncoding::Base64,
            },
        },
        wit::SignatureScheme::StandardWebhooks => SignatureScheme::StandardWebhooks,
        wit::SignatureScheme::Stripe => SignatureScheme::Stripe,
        wit::SignatureScheme::VersionedHmac(versioned) => SignatureScheme::VersionedHmac {
            signature_header: versioned.signature_header.to_ascii_lowercase(),
            timestamp_header: versioned.timestamp_header.to_ascii_lowercase(),
            version: versioned.version,
        },
        wit::SignatureScheme::SharedToken(header) => SignatureScheme::SharedToken {
            header: header.to_ascii_lowercase(),
        },
        wit::SignatureScheme::Custom => SignatureScheme::Custom,
    }
}

pub(crate) fn manifest_from_wit(manifest: wit::Manifest) -> PluginManifest {
    PluginManifest {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        signature: scheme_from_wit(manifest.signature),
        dedupe_header: manifest.dedupe_header.map(|h| h.to_ascii_lowercase()),
        event_types: manifest.event_types,
    }
}

fn outcome_size(outcome: &wit::Outcome) -> usize {
    match outcome {
        wit::Outcome::Events(events) => events
            .iter()
            .map(|event| {
                event.id.len()
                    + event.source.len()
                    + event.type_.len()
                    + event.subject.as_ref().map_or(0, String::len)
                    + event.time.len()
                    + event.data.len()
                    + event.route_keys.iter().map(String::len).sum::<usize>()
            })
            .sum(),
        wit::Outcome::Rejected(rejection) => rejection.reason.len(),
        wit::Outcome::Reply(reply) => {
            reply.body.len()
                + reply
                    .headers
                    .iter()
                    .map(|header| header.name.len() + header.value.len())
                    .sum::<usize>()
        }
    }
}

/// Why a plugin's answer is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InvalidAnswer {
    /// An event id over `dedupe::MAX_ID_BYTES`, taken from what the request carried.
    EventIdTooLong(String),
    Other(String),
}

impl InvalidAnswer {
    /// Only the fuzz bodies read the reason back.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn reason(&self) -> &str {
        match self {
            InvalidAnswer::EventIdTooLong(reason) | InvalidAnswer::Other(reason) => reason,
        }
    }
}

impl From<String> for InvalidAnswer {
    fn from(reason: String) -> InvalidAnswer {
        InvalidAnswer::Other(reason)
    }
}

/// Checks what a plugin returned and converts it into the host's types.
pub(crate) fn outcome_from_wit(
    outcome: wit::Outcome,
    received_at: chrono::DateTime<chrono::Utc>,
) -> Result<PluginOutcome, InvalidAnswer> {
    match outcome {
        wit::Outcome::Events(events) => {
            let mut seen_ids = BTreeSet::new();
            let mut normalized = Vec::with_capacity(events.len());
            for (index, event) in events.into_iter().enumerate() {
                // The id is a btree key of `dedupe_keys`; a longer one would be refused by
                // PostgreSQL and fail the group-commit transaction shared with other requests.
                if event.id.len() > crate::model::dedupe::MAX_ID_BYTES {
                    return Err(InvalidAnswer::EventIdTooLong(format!(
                        "event {index}: the id is {} bytes long; an id is at most {} bytes",
                        event.id.len(),
                        crate::model::dedupe::MAX_ID_BYTES
                    )));
                }
                let event = event_from_wit(event, received_at)
                    .map_err(|reason| format!("event {index}: {reason}"))?;
                if !seen_ids.insert((event.source.clone(), event.id.clone())) {
                    return Err(format!(
                        "event {index}: id {:?} is repeated within one answer",
                        event.id
                    )
                    .into());
                }
                normalized.push(event);
            }
            Ok(PluginOutcome::Events(normalized))
        }
        wit::Outcome::Rejected(rejection) => Ok(PluginOutcome::Rejected {
            kind: match rejection.kind {
                wit::RejectionKind::Malformed => RejectionKind::Malformed,
                wit::RejectionKind::Invalid => RejectionKind::Invalid,
                wit::RejectionKind::Unauthenticated => RejectionKind::Unauthenticated,
                wit::RejectionKind::StaleTimestamp => RejectionKind::StaleTimestamp,
                wit::RejectionKind::Ignored => RejectionKind::Ignored,
            },
            reason: rejection.reason,
        }),
        wit::Outcome::Reply(reply) => {
            if !(100..=599).contains(&reply.status) {
                return Err(format!("reply status {} is not an HTTP status", reply.status).into());
            }
            let headers = reply
                .headers
                .into_iter()
                .map(|header| {
                    let valid_name =
                        axum::http::HeaderName::from_bytes(header.name.as_bytes()).is_ok();
                    let valid_value = header
                        .value
                        .bytes()
                        .all(|byte| byte == b'\t' || (b' '..=b'~').contains(&byte));
                    if valid_name && valid_value {
                        Ok((header.name, header.value))
                    } else {
                        Err(format!(
                            "reply header {:?} is not a valid header",
                            header.name
                        ))
                    }
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(PluginOutcome::Reply(PluginReply {
                status: reply.status,
                headers,
                body: reply.body,
            }))
        }
    }
}

fn event_from_wit(
    event: wit::Event,
    received_at: chrono::DateTime<chrono::Utc>,
) -> Result<NormalizedEvent, String> {
    // PostgreSQL text cannot hold NUL; refusing it here keeps one bad event from failing the
    // whole group-commit transaction it would share with other requests.
    let texts = [
        &event.id,
        &event.source,
        &event.type_,
        &event.time,
        &event.data,
    ]
    .into_iter()
    .chain(event.subject.as_ref())
    .chain(event.route_keys.iter());
    for text in texts {
        if text.contains('\0') {
            return Err("a field contains a NUL character".to_owned());
        }
    }
    if event.id.trim().is_empty() {
        return Err("the id is empty".to_owned());
    }
    if event.source.trim().is_empty() {
        return Err("the source is empty".to_owned());
    }
    if event.type_.trim().is_empty() {
        return Err("the type is empty".to_owned());
    }
    let time = if event.time.is_empty() {
        received_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    } else {
        chrono::DateTime::parse_from_rfc3339(&event.time)
            .map_err(|_| format!("the time {:?} is not RFC 3339", event.time))?;
        event.time
    };
    if serde_json::from_str::<&serde_json::value::RawValue>(&event.data).is_err() {
        return Err("the data is not one JSON document".to_owned());
    }
    let route_keys = if event.route_keys.is_empty() {
        vec![event.type_.clone()]
    } else {
        event.route_keys
    };
    Ok(NormalizedEvent {
        id: event.id,
        source: event.source,
        event_type: event.type_,
        subject: event.subject,
        time,
        data_json: event.data,
        route_keys,
    })
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

    #[test]
    fn manifests_that_cannot_be_served_or_stored_are_refused() {
        let valid = PluginManifest {
            name: "github".into(),
            version: "1.0.0".into(),
            description: "GitHub".into(),
            signature: SignatureScheme::BodyHmac {
                header: "x-hub-signature-256".into(),
                prefix: "sha256=".into(),
                encoding: MacEncoding::Hex,
            },
            dedupe_header: Some("x-github-delivery".into()),
            event_types: vec!["github.*".into()],
        };
        let slack = |version: &str| SignatureScheme::VersionedHmac {
            signature_header: "x-slack-signature".into(),
            timestamp_header: "x-slack-request-timestamp".into(),
            version: version.into(),
        };
        let table: Vec<(&str, PluginManifest, bool)> = vec![
            ("valid", valid.clone(), true),
            (
                "valid versioned-hmac",
                PluginManifest {
                    signature: slack("v0"),
                    ..valid.clone()
                },
                true,
            ),
            (
                "upper-case name",
                PluginManifest {
                    name: "GitHub".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "blank version",
                PluginManifest {
                    version: " ".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "a newline in the version",
                PluginManifest {
                    version: "1.0.0\nINFO forged".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "empty event type",
                PluginManifest {
                    event_types: vec![String::new()],
                    ..valid.clone()
                },
                false,
            ),
            (
                "signature header that is not a header name",
                PluginManifest {
                    signature: SignatureScheme::SharedToken {
                        header: "x token".into(),
                    },
                    ..valid.clone()
                },
                false,
            ),
            // Found by the plugin_manifest fuzz target (tests/fixtures/fuzz/plugin_manifest):
            // PostgreSQL's jsonb refuses `\u0000`, so the version could not be stored.
            (
                "NUL in the version",
                PluginManifest {
                    version: "7\u{0}7".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the description",
                PluginManifest {
                    description: "\u{0}".into(),
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the dedupe header",
                PluginManifest {
                    dedupe_header: Some("x\u{0}".into()),
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in an event type",
                PluginManifest {
                    event_types: vec!["a\u{0}".into()],
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the body-hmac prefix",
                PluginManifest {
                    signature: SignatureScheme::BodyHmac {
                        header: "x-sig".into(),
                        prefix: "sha256\u{0}=".into(),
                        encoding: MacEncoding::Base64,
                    },
                    ..valid.clone()
                },
                false,
            ),
            (
                "NUL in the versioned-hmac version",
                PluginManifest {
                    signature: slack("v\u{0}"),
                    ..valid.clone()
                },
                false,
            ),
        ];
        for (name, manifest, admitted) in table {
            assert_eq!(
                validate_manifest(&manifest).is_ok(),
                admitted,
                "case: {name}"
            );
        }
    }
}
