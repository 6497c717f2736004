//! Stored plugin components, their versions and which one is active.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::error::{Context, StoreError};

/// Stores a checked component as a version of `plugin_name` (once per content hash) and
/// returns its id, and whether this call stored it (rather than finding it).
pub async fn register_plugin_version(
    pool: &PgPool,
    plugin_name: &str,
    content_sha256: &str,
    component: &[u8],
    manifest: &serde_json::Value,
) -> Result<(Uuid, bool), StoreError> {
    // `xmax = 0` holds for a row this statement inserted, not for one it found.
    sqlx::query_as(
        "INSERT INTO plugin_versions (id, plugin_name, content_sha256, component, manifest)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (plugin_name, content_sha256) DO UPDATE SET plugin_name = EXCLUDED.plugin_name
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(Uuid::now_v7())
    .bind(plugin_name)
    .bind(content_sha256)
    .bind(component)
    .bind(manifest)
    .fetch_one(pool)
    .await
    .context("storing the plugin version")
}

/// The active version of every plugin: (plugin name, version id, content hash).
pub async fn active_plugin_versions(
    pool: &PgPool,
) -> Result<Vec<(String, Uuid, String)>, StoreError> {
    sqlx::query_as(
        "SELECT DISTINCT ON (a.plugin_name) a.plugin_name, v.id, v.content_sha256
         FROM plugin_activations a JOIN plugin_versions v ON v.id = a.version_id
         ORDER BY a.plugin_name, a.id DESC",
    )
    .fetch_all(pool)
    .await
    .context("reading the active plugin versions")
}

/// Makes a version the active one and tells every host process (NOTIFY wasmhook_plugins).
/// False when the version does not belong to the plugin.
pub async fn activate_plugin_version(
    pool: &PgPool,
    plugin_name: &str,
    version_id: Uuid,
) -> Result<bool, StoreError> {
    let mut transaction = pool.begin().await.context("beginning an activation")?;
    let inserted = sqlx::query(
        "INSERT INTO plugin_activations (plugin_name, version_id)
         SELECT plugin_name, id FROM plugin_versions WHERE id = $2 AND plugin_name = $1",
    )
    .bind(plugin_name)
    .bind(version_id)
    .execute(&mut *transaction)
    .await
    .context("activating the plugin version")?
    .rows_affected();
    if inserted == 1 {
        sqlx::query("SELECT pg_notify('wasmhook_plugins', $1)")
            .bind(plugin_name)
            .execute(&mut *transaction)
            .await
            .context("notifying the hosts")?;
    }
    transaction
        .commit()
        .await
        .context("committing the activation")?;
    Ok(inserted == 1)
}

/// The version that was active before the current one, for a rollback.
pub async fn previous_plugin_version(
    pool: &PgPool,
    plugin_name: &str,
) -> Result<Option<Uuid>, StoreError> {
    sqlx::query_scalar(
        "WITH history AS (
             SELECT version_id, id FROM plugin_activations WHERE plugin_name = $1
         ), current AS (
             SELECT version_id FROM history ORDER BY id DESC LIMIT 1
         )
         SELECT h.version_id FROM history h, current c
         WHERE h.version_id <> c.version_id ORDER BY h.id DESC LIMIT 1",
    )
    .bind(plugin_name)
    .fetch_optional(pool)
    .await
    .context("reading the plugin's previous version")
}

/// A stored component's bytes.
pub async fn plugin_component(pool: &PgPool, version_id: Uuid) -> Result<Vec<u8>, StoreError> {
    sqlx::query_scalar("SELECT component FROM plugin_versions WHERE id = $1")
        .bind(version_id)
        .fetch_one(pool)
        .await
        .context("reading the plugin component")
}

/// One stored plugin version, as the admin API lists it.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PluginVersionView {
    pub id: Uuid,
    pub plugin_name: String,
    pub content_sha256: String,
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
    pub uploaded_at: DateTime<Utc>,
    pub active: bool,
}

pub async fn list_plugin_versions(pool: &PgPool) -> Result<Vec<PluginVersionView>, StoreError> {
    sqlx::query_as(
        "WITH active AS (
             SELECT DISTINCT ON (plugin_name) plugin_name, version_id
             FROM plugin_activations ORDER BY plugin_name, id DESC
         )
         SELECT v.id, v.plugin_name, v.content_sha256, v.manifest, v.uploaded_at,
                (a.version_id IS NOT NULL) AS active
         FROM plugin_versions v LEFT JOIN active a ON a.version_id = v.id
         ORDER BY v.plugin_name, v.uploaded_at",
    )
    .fetch_all(pool)
    .await
    .context("listing plugin versions")
}
