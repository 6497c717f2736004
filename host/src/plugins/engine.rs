//! The engine and its settings, and loading a component: compile (through the cache), check
//! it against the contract, pre-instantiate it and read its manifest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::host_imports::PluginState;
use super::manifest::{placeholder_manifest, validate_manifest};
use super::wit::bindings;
use super::{
    HANDLER_EXPORT, HANDLER_EXPORT_PREFIX, Plugin, PluginLimits, PluginLoadError, PluginRuntime,
    SUPPORTED_CONTRACT_VERSIONS, cache, pool,
};

/// How often the epoch ticks. A running guest yields to the async executor on every tick, so a
/// plugin that computes for a long time shares its thread instead of holding it.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

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

impl PluginRuntime {
    /// Builds the engine and starts its epoch ticker thread (stopped when the runtime drops).
    pub fn new(settings: RuntimeSettings) -> anyhow::Result<Arc<PluginRuntime>> {
        let instances = settings.max_concurrent_instances.max(1);
        let pool = pool::pooling_config(instances, settings.pool_memory_bytes);
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
            cache::make_cache_dir_private(cache_dir);
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
        let cache_path = cache::entry_path(&self.engine, cache_dir, content_hash);
        if let Some(component) = cache::load(&self.engine, cache_dir, &cache_path) {
            return Ok(component);
        }
        let (component, serialized) = self.compile_fresh(label, bytes)?;
        if let Err(error) = cache::write_cache_entry(cache_dir, &cache_path, &serialized) {
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

fn error_chain(error: &wasmtime::Error) -> String {
    format!("{error:#}")
}
