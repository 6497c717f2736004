//! The compiled cache: a component's compilation kept on disk, keyed by its bytes and the
//! engine's compatibility hash, and loaded as native code only when it and its directory are
//! the host user's alone.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where the compilation of the component with `content_hash` is cached for `engine`.
pub(super) fn entry_path(engine: &Engine, cache_dir: &Path, content_hash: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    cache_dir.join(format!("{content_hash}-{:016x}.cwasm", hasher.finish()))
}

/// The cached compilation at `cache_path`, when there is one that may be trusted and loads.
pub(super) fn load(engine: &Engine, cache_dir: &Path, cache_path: &Path) -> Option<Component> {
    let trusted = match cache_entry_is_trusted(cache_dir, cache_path) {
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
    if !trusted {
        return None;
    }
    // SAFETY: the file was written by `Engine::precompile_component` of this host, for these
    // exact bytes (the content hash) and an engine with the same compatibility hash; it
    // and its directory belong to the host's user and nobody else can write them.
    match unsafe { Component::deserialize_file(engine, cache_path) } {
        Ok(component) => Some(component),
        Err(error) => {
            tracing::warn!(
                cache_file = %cache_path.display(),
                "ignoring an unusable compiled plugin cache entry: {error}"
            );
            None
        }
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
pub(super) fn make_cache_dir_private(cache_dir: &Path) {
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

pub(super) fn write_cache_entry(
    cache_dir: &Path,
    cache_path: &Path,
    serialized: &[u8],
) -> anyhow::Result<()> {
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
