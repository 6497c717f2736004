//! Sources: their settings as the config and the API write them, and as every host process
//! loads them with their secrets.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::model::source::{RateLimitConfig, SourceSettings};
use crate::store::error::{Context, StoreError};
use crate::store::secrets::{self, Change, SecretOwner, SecretView, WriteMode};

/// A source as stored; its secrets live in `source_secrets`, and the store writes its rate
/// limit as two columns and its limit overrides as a JSON object.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRecord {
    pub name: String,
    pub plugin: String,
    pub settings: SourceSettings,
}

/// A stored source with its secrets, as every host process serves it.
#[derive(Clone, Debug)]
pub struct StoredSource {
    pub record: SourceRecord,
    pub secrets: Vec<(SecretView, String)>,
    pub updated_at: DateTime<Utc>,
    /// Why this version cannot read the row's settings (a hand edit, or a key a newer version
    /// wrote), when it cannot: then `record` holds the defaults in their place, and the source
    /// must not be served, while every other source is.
    pub unreadable: Option<String>,
}

/// Writes a source's settings in `transaction`; `false` when `mode` refused the write.
async fn write_source_settings(
    transaction: &mut sqlx::PgConnection,
    source: &SourceRecord,
    mode: WriteMode,
) -> Result<bool, StoreError> {
    if !secrets::may_write(transaction, SecretOwner::Source, &source.name, mode).await? {
        return Ok(false);
    }
    // An unchanged row keeps its `updated_at`, so a restart does not make every host process
    // rebuild every source.
    let on_conflict = match mode {
        WriteMode::Create => "ON CONFLICT (name) DO NOTHING",
        WriteMode::Upsert | WriteMode::Update => {
            "ON CONFLICT (name) DO UPDATE SET plugin = EXCLUDED.plugin, config = EXCLUDED.config,
                 signature_tolerance_seconds = EXCLUDED.signature_tolerance_seconds,
                 rate_limit_requests_per_second = EXCLUDED.rate_limit_requests_per_second,
                 rate_limit_burst = EXCLUDED.rate_limit_burst,
                 limit_overrides = EXCLUDED.limit_overrides,
                 dedupe_on_body = EXCLUDED.dedupe_on_body, updated_at = now()
             WHERE (sources.plugin, sources.config, sources.signature_tolerance_seconds,
                    sources.rate_limit_requests_per_second, sources.rate_limit_burst,
                    sources.limit_overrides, sources.dedupe_on_body)
                 IS DISTINCT FROM
                   (EXCLUDED.plugin, EXCLUDED.config, EXCLUDED.signature_tolerance_seconds,
                    EXCLUDED.rate_limit_requests_per_second, EXCLUDED.rate_limit_burst,
                    EXCLUDED.limit_overrides, EXCLUDED.dedupe_on_body)"
        }
    };
    let settings = &source.settings;
    let written = sqlx::query(&format!(
        "INSERT INTO sources (name, plugin, config, signature_tolerance_seconds,
             rate_limit_requests_per_second, rate_limit_burst, limit_overrides, dedupe_on_body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         {on_conflict}"
    ))
    .bind(&source.name)
    .bind(&source.plugin)
    .bind(&settings.config)
    .bind(
        settings
            .signature_tolerance_seconds
            .map(|seconds| seconds.min(i64::MAX as u64) as i64),
    )
    .bind(settings.rate_limit.map(|limit| limit.requests_per_second))
    .bind(settings.rate_limit.map(|limit| limit.burst as i32))
    .bind(sqlx::types::Json(&settings.limits))
    .bind(settings.dedupe_on_body)
    .execute(&mut *transaction)
    .await
    .with_context(|| format!("storing the source {}", source.name))?
    .rows_affected();
    Ok(written > 0 || mode != WriteMode::Create)
}

/// Inserts or updates the configured sources, each with the secrets its config names.
pub async fn apply_config_sources(
    pool: &PgPool,
    sources: &[(SourceRecord, Vec<String>)],
) -> Result<(), StoreError> {
    for (source, secrets) in sources {
        let mut transaction = pool.begin().await.context("starting a transaction")?;
        write_source_settings(&mut transaction, source, WriteMode::Upsert).await?;
        secrets::replace_config_secrets(
            &mut transaction,
            SecretOwner::Source,
            &source.name,
            secrets,
        )
        .await?;
        transaction
            .commit()
            .await
            .context("committing the source")?;
    }
    Ok(())
}

/// Creates a source with its secrets; refuses a name that exists.
pub async fn create_source(
    pool: &PgPool,
    source: &SourceRecord,
    secrets: &[String],
) -> Result<Change, StoreError> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_source_settings(&mut transaction, source, WriteMode::Create).await? {
        return Ok(Change::AlreadyExists);
    }
    secrets::insert_api_secrets(&mut transaction, SecretOwner::Source, &source.name, secrets)
        .await?;
    secrets::commit_change(transaction, "committing the source").await
}

/// Replaces a source's settings, and all of its secrets with `secrets` when given.
pub async fn update_source(
    pool: &PgPool,
    source: &SourceRecord,
    secrets: Option<&[String]>,
) -> Result<Change, StoreError> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_source_settings(&mut transaction, source, WriteMode::Update).await? {
        return Ok(Change::NotFound);
    }
    if let Some(secrets) = secrets {
        secrets::replace_api_secrets(&mut transaction, SecretOwner::Source, &source.name, secrets)
            .await?;
        secrets::touch_owner(&mut transaction, SecretOwner::Source, &source.name).await?;
    }
    secrets::commit_change(transaction, "committing the source").await
}

/// Deletes a source. Its stored requests and events stay until retention removes them.
pub async fn delete_source(pool: &PgPool, name: &str) -> Result<Change, StoreError> {
    secrets::delete_named(
        pool,
        "DELETE FROM sources WHERE name = $1",
        name,
        "deleting the source",
    )
    .await
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    name: String,
    plugin: String,
    config: String,
    signature_tolerance_seconds: Option<i64>,
    rate_limit_requests_per_second: Option<f64>,
    rate_limit_burst: Option<i32>,
    limit_overrides: serde_json::Value,
    dedupe_on_body: bool,
    updated_at: DateTime<Utc>,
}

impl SourceRow {
    /// The record this row stores, and why its limit overrides cannot be read, if they cannot
    /// (the defaults stand in for them; the caller refuses to serve such a source).
    fn record(self) -> (SourceRecord, Option<String>) {
        let (limits, unreadable) = match serde_json::from_value(self.limit_overrides) {
            Ok(limits) => (limits, None),
            Err(error) => (
                Default::default(),
                Some(format!(
                    "its stored limit overrides cannot be read: {error}"
                )),
            ),
        };
        let rate_limit = self
            .rate_limit_requests_per_second
            .zip(self.rate_limit_burst)
            .map(|(requests_per_second, burst)| RateLimitConfig {
                requests_per_second,
                burst: burst.max(0) as u32,
            });
        let record = SourceRecord {
            name: self.name,
            plugin: self.plugin,
            settings: SourceSettings {
                config: self.config,
                signature_tolerance_seconds: self
                    .signature_tolerance_seconds
                    .map(|seconds| seconds.max(0) as u64),
                rate_limit,
                limits,
                dedupe_on_body: self.dedupe_on_body,
            },
        };
        (record, unreadable)
    }
}

#[derive(sqlx::FromRow)]
struct SourceSecretRow {
    source_name: String,
    secret: String,
    #[sqlx(flatten)]
    view: SecretView,
}

/// Every source with its secrets (values included: the ingest path verifies with them).
pub async fn load_sources(pool: &PgPool) -> Result<Vec<StoredSource>, StoreError> {
    let mut connection = pool.acquire().await.context("acquiring a connection")?;
    let rows: Vec<SourceRow> = sqlx::query_as(
        "SELECT name, plugin, config, signature_tolerance_seconds, rate_limit_requests_per_second,
                rate_limit_burst, limit_overrides, dedupe_on_body, updated_at
         FROM sources ORDER BY name",
    )
    .fetch_all(&mut *connection)
    .await
    .context("loading sources")?;
    let secret_rows: Vec<SourceSecretRow> = sqlx::query_as(
        "SELECT source_name, secret, id, origin, created_at FROM source_secrets
         ORDER BY created_at, id",
    )
    .fetch_all(&mut *connection)
    .await
    .context("loading source secrets")?;
    let mut secrets_by_source: HashMap<String, Vec<(SecretView, String)>> = HashMap::new();
    for row in secret_rows {
        secrets_by_source
            .entry(row.source_name)
            .or_default()
            .push((row.view, row.secret));
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let updated_at = row.updated_at;
            let (record, unreadable) = row.record();
            StoredSource {
                secrets: secrets_by_source.remove(&record.name).unwrap_or_default(),
                record,
                updated_at,
                unreadable,
            }
        })
        .collect())
}
