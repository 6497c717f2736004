//! Hot-loading plugins. Plugin versions live in PostgreSQL, so every host process runs the same
//! ones. At start, a plugin file that is new or changed in the plugins directory becomes the
//! active version. While running, a swapper follows the active versions (woken by `NOTIFY
//! wasmhook_plugins`, with a one-second poll as a fallback) and has the source registry swap
//! them in (`SourceRegistry::follow_active_versions`): each new version is compiled off the
//! request path and checked against each source's configuration first. Requests already
//! running finish on the version they started with.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use sqlx::PgPool;
use uuid::Uuid;

use crate::plugins::{PluginLimits, PluginRuntime};
use crate::sources::registry::SourceRegistry;
use crate::store;

/// When a plugin file becomes the active version.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ActivateWhen {
    /// Its content was never registered, or the plugin has no active version (at start, and
    /// the first look at a plugin): a restart does not undo an upload or a rollback.
    NewContent,
    /// Its content differs from the active version (the file changed while running).
    DifferentFromActive,
}

/// Registers the files of the named plugins in `directory` as versions, and activates each
/// whose content is new.
pub async fn register_directory_plugins<'a>(
    directory: &Path,
    plugin_names: impl IntoIterator<Item = &'a str>,
    runtime: &Arc<PluginRuntime>,
    pool: &PgPool,
) -> anyhow::Result<()> {
    let names: BTreeSet<&str> = plugin_names.into_iter().collect();
    for name in names {
        let path = directory.join(format!("{name}.wasm"));
        if !path.exists() {
            // The database may hold an uploaded version; the sources report it if not.
            continue;
        }
        activate_file(runtime, pool, name, &path, ActivateWhen::NewContent).await?;
    }
    Ok(())
}

/// The plugin files the sources use, by plugin name, with when each last changed.
pub struct WatchedFiles {
    directory: PathBuf,
    files: HashMap<String, (PathBuf, Option<SystemTime>)>,
}

impl WatchedFiles {
    /// Watches `directory`; the first look at each plugin name records its file's time.
    pub fn new(directory: &Path) -> WatchedFiles {
        WatchedFiles {
            directory: directory.to_owned(),
            files: HashMap::new(),
        }
    }

    /// Registers and activates every file of `plugin_names` that changed since the last look.
    async fn activate_changed(
        &mut self,
        plugin_names: BTreeSet<String>,
        runtime: &Arc<PluginRuntime>,
        pool: &PgPool,
    ) {
        for name in plugin_names {
            let (when, path, modified) = match self.files.get(&name) {
                Some((path, last_modified)) => {
                    let modified = modified_at(path);
                    if modified.is_none() || modified == *last_modified {
                        continue;
                    }
                    (ActivateWhen::DifferentFromActive, path.clone(), modified)
                }
                None => {
                    let path = self.directory.join(format!("{name}.wasm"));
                    let modified = modified_at(&path);
                    (ActivateWhen::NewContent, path, modified)
                }
            };
            self.files.insert(name.clone(), (path.clone(), modified));
            if modified.is_none() {
                continue;
            }
            if let Err(error) = activate_file(runtime, pool, &name, &path, when).await {
                tracing::error!(
                    plugin = %name,
                    "the changed plugin file {} was not activated: {}",
                    path.display(),
                    crate::plugins::escape_for_log(
                        &format!("{error:#}"),
                        crate::plugins::PLUGIN_ERROR_LOG_LIMIT
                    )
                );
            }
        }
    }
}

fn modified_at(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
}

/// Checks a plugin file, stores it as a version and activates it unless it is active already.
async fn activate_file(
    runtime: &Arc<PluginRuntime>,
    pool: &PgPool,
    name: &str,
    path: &Path,
    when: ActivateWhen,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let plugin = runtime
        .load_bytes(&path.display().to_string(), &bytes, PluginLimits::default())
        .await?;
    let manifest = serde_json::to_value(plugin.manifest()).context("encoding the manifest")?;
    let (version_id, newly_registered) =
        store::register_plugin_version(pool, name, plugin.content_hash(), &bytes, &manifest)
            .await?;
    let active_hash = store::active_plugin_versions(pool)
        .await?
        .into_iter()
        .find(|(active_name, _, _)| active_name == name)
        .map(|(_, _, hash)| hash);
    let activate = match when {
        ActivateWhen::NewContent => newly_registered || active_hash.is_none(),
        ActivateWhen::DifferentFromActive => active_hash.as_deref() != Some(plugin.content_hash()),
    };
    if activate {
        store::activate_plugin_version(pool, name, version_id).await?;
        tracing::info!(
            plugin = name,
            version = %plugin.label(),
            content_sha256 = plugin.content_hash(),
            "activated the plugin file {}",
            path.display()
        );
    }
    Ok(())
}

/// Follows the active versions and swaps them into the sources until aborted; also watches
/// the plugin files, so that a new or changed file becomes the active version.
pub fn start_swapper(
    pool: PgPool,
    runtime: Arc<PluginRuntime>,
    registry: Arc<SourceRegistry>,
    mut watched: WatchedFiles,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => listener
                .listen("wasmhook_plugins")
                .await
                .ok()
                .map(|()| listener),
            Err(_) => None,
        };
        // Versions that failed for a source are not retried every second.
        let mut refused: HashSet<(String, Uuid)> = HashSet::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = async {
                    match listener.as_mut() {
                        // A lost connection is reconnected by the next `recv`; while the
                        // database refuses it, every `recv` fails at once, so wait before the
                        // next try instead of reconnecting in a tight loop (which floods the
                        // server's accept queue just when it is struggling).
                        Some(listener) => {
                            if listener.recv().await.is_err() {
                                crate::metrics::listen_connection_failed("plugins");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
            let plugin_names = registry
                .serving()
                .values()
                .map(|source| source.plugin_name.clone())
                .collect();
            watched
                .activate_changed(plugin_names, &runtime, &pool)
                .await;
            if let Err(error) = registry.follow_active_versions(&pool, &mut refused).await {
                tracing::warn!("cannot read the active plugin versions: {error:#}");
            }
        }
    })
}
