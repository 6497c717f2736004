//! Destinations: their settings as the config and the API write them, and as delivery loads
//! them (with their secrets), their statistics and the pause a 410 Gone sets.

use sqlx::PgPool;

use crate::model::destination::{
    Destination, DestinationRecord, DestinationSettings, milliseconds, seconds,
};
use crate::signature::Secret;
use crate::store::error::{Context, StoreError};
use crate::store::secrets::{self, Change, SecretOwner, WriteMode};

/// The advisory lock that every ingest batch writing delivery jobs holds shared, and that the
/// deletion of a destination takes exclusively: the deletion then sees every job written for
/// the destination, and no batch writes one after it (jobs have no foreign key to their
/// destination, which cost a lookup and a row lock per job; see migration 0009).
pub const DESTINATION_DELETION_GUARD_LOCK: i64 = 0x7768_5f64_6573_7464;

/// Writes a destination's settings in `transaction`; `false` when `mode` refused the write.
async fn write_destination_settings(
    transaction: &mut sqlx::PgConnection,
    destination: &DestinationRecord,
    mode: WriteMode,
) -> Result<bool, StoreError> {
    if mode == WriteMode::Update
        && !secrets::lock_owner(transaction, SecretOwner::Destination, &destination.name).await?
    {
        return Ok(false);
    }
    let on_conflict = match mode {
        WriteMode::Create => "ON CONFLICT (name) DO NOTHING",
        WriteMode::Upsert | WriteMode::Update => {
            "ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, routes = EXCLUDED.routes,
                 headers = EXCLUDED.headers, timeout_ms = EXCLUDED.timeout_ms,
                 retry_schedule_ms = EXCLUDED.retry_schedule_ms,
                 throttle_min_delay_ms = EXCLUDED.throttle_min_delay_ms,
                 max_concurrency = EXCLUDED.max_concurrency,
                 rate_limit_per_second = EXCLUDED.rate_limit_per_second,
                 paused = EXCLUDED.paused, allow_private_networks = EXCLUDED.allow_private_networks,
                 retry_client_errors = EXCLUDED.retry_client_errors,
                 breaker_failure_threshold = EXCLUDED.breaker_failure_threshold,
                 breaker_cooldown_ms = EXCLUDED.breaker_cooldown_ms, updated_at = now()"
        }
    };
    let settings = &destination.settings;
    let written = sqlx::query(&format!(
        "INSERT INTO destinations (name, url, routes, headers, timeout_ms, retry_schedule_ms,
             throttle_min_delay_ms, max_concurrency, rate_limit_per_second, paused,
             allow_private_networks, retry_client_errors, breaker_failure_threshold,
             breaker_cooldown_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         {on_conflict}"
    ))
    .bind(&destination.name)
    .bind(&destination.url)
    .bind(&destination.routes)
    .bind(&destination.headers)
    .bind(milliseconds(settings.timeout_seconds))
    .bind(
        settings
            .retry_schedule_seconds
            .iter()
            .map(|seconds| milliseconds(*seconds))
            .collect::<Vec<_>>(),
    )
    .bind(milliseconds(settings.throttle_min_delay_seconds))
    .bind(settings.max_concurrency as i32)
    .bind(settings.rate_limit_per_second)
    .bind(settings.paused)
    .bind(settings.allow_private_networks)
    .bind(settings.retry_client_errors)
    .bind(settings.breaker_failure_threshold as i32)
    .bind(milliseconds(settings.breaker_cooldown_seconds))
    .execute(&mut *transaction)
    .await
    .with_context(|| format!("storing the destination {}", destination.name))?
    .rows_affected();
    Ok(written > 0)
}

/// Inserts or updates the configured destinations, each with the secret its config names.
/// Returns the names and secrets of destinations that were given a generated secret (they
/// had none), so the caller can show them once.
pub async fn apply_config_destinations(
    pool: &PgPool,
    destinations: &[(DestinationRecord, Option<String>)],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut generated = Vec::new();
    for (destination, secret) in destinations {
        let mut transaction = pool.begin().await.context("starting a transaction")?;
        write_destination_settings(&mut transaction, destination, WriteMode::Upsert).await?;
        secrets::replace_config_secrets(
            &mut transaction,
            SecretOwner::Destination,
            &destination.name,
            secret.as_slice(),
        )
        .await?;
        if secrets::count_secrets(
            &mut transaction,
            SecretOwner::Destination,
            &destination.name,
        )
        .await?
            == 0
        {
            let new_secret = secrets::generate_signing_secret();
            secrets::insert_secret(
                &mut transaction,
                SecretOwner::Destination,
                &destination.name,
                &new_secret,
                "generated",
            )
            .await?;
            generated.push((destination.name.clone(), new_secret));
        }
        transaction
            .commit()
            .await
            .context("committing the destination")?;
    }
    Ok(generated)
}

/// Creates a destination with its first secret; refuses a name that exists.
pub async fn create_destination(
    pool: &PgPool,
    destination: &DestinationRecord,
    secret: &str,
) -> Result<Change, StoreError> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_destination_settings(&mut transaction, destination, WriteMode::Create).await? {
        return Ok(Change::AlreadyExists);
    }
    secrets::insert_secret(
        &mut transaction,
        SecretOwner::Destination,
        &destination.name,
        secret,
        "api",
    )
    .await?;
    secrets::commit_change(transaction, "committing the destination").await
}

/// Replaces a destination's settings, and all of its secrets with `secret` when given.
pub async fn update_destination(
    pool: &PgPool,
    destination: &DestinationRecord,
    secret: Option<&str>,
) -> Result<Change, StoreError> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_destination_settings(&mut transaction, destination, WriteMode::Update).await? {
        return Ok(Change::NotFound);
    }
    if let Some(secret) = secret {
        secrets::replace_all_secrets(
            &mut transaction,
            SecretOwner::Destination,
            &destination.name,
            secret,
        )
        .await?;
    }
    secrets::commit_change(transaction, "committing the destination").await
}

/// Deletes a destination with its jobs (and, through their foreign key, their attempts). The
/// guard waits for the ingest batches writing jobs now; a batch that starts later finds the
/// destination gone and writes no job for it.
pub async fn delete_destination(pool: &PgPool, name: &str) -> Result<Change, StoreError> {
    let mut transaction = pool.begin().await.context("deleting the destination")?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(DESTINATION_DELETION_GUARD_LOCK)
        .execute(&mut *transaction)
        .await
        .context("taking the destination deletion guard")?;
    let deleted = sqlx::query("DELETE FROM destinations WHERE name = $1")
        .bind(name)
        .execute(&mut *transaction)
        .await
        .context("deleting the destination")?
        .rows_affected();
    if deleted == 0 {
        return Ok(Change::NotFound);
    }
    sqlx::query("DELETE FROM delivery_jobs WHERE destination_name = $1")
        .bind(name)
        .execute(&mut *transaction)
        .await
        .context("deleting the destination's jobs")?;
    secrets::commit_change(transaction, "committing the destination's deletion").await
}

/// Delivery counts and the last error of one destination.
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct DestinationStats {
    pub delivered: i64,
    pub failed: i64,
    pub dead: i64,
    pub pending: i64,
    pub last_error: Option<String>,
}

pub async fn destination_stats(pool: &PgPool, name: &str) -> Result<DestinationStats, StoreError> {
    let (delivered, failed, dead, pending): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'delivered'),
                count(*) FILTER (WHERE state = 'failed'),
                count(*) FILTER (WHERE state = 'dead'),
                count(*) FILTER (WHERE state IN ('due', 'running', 'retrying'))
         FROM delivery_jobs WHERE destination_name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .context("counting the destination's jobs")?;
    let last_error: Option<String> = sqlx::query_scalar(
        "SELECT a.error FROM delivery_attempts a JOIN delivery_jobs j ON j.id = a.job_id
         WHERE j.destination_name = $1 AND a.outcome <> 'delivered'
         ORDER BY a.started_at DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .context("reading the destination's last error")?
    .flatten();
    Ok(DestinationStats {
        delivered,
        failed,
        dead,
        pending,
        last_error,
    })
}

#[derive(sqlx::FromRow)]
struct DestinationRow {
    name: String,
    url: String,
    routes: Vec<String>,
    signing_secrets: Vec<String>,
    headers: serde_json::Value,
    timeout_ms: i32,
    retry_schedule_ms: Vec<i32>,
    throttle_min_delay_ms: i32,
    max_concurrency: i32,
    rate_limit_per_second: Option<f64>,
    paused: bool,
    allow_private_networks: bool,
    retry_client_errors: bool,
    breaker_failure_threshold: i32,
    breaker_cooldown_ms: i32,
}

/// Every destination with its delivery settings. `allow_private_everywhere` is the server-wide
/// override of the SSRF guard.
pub async fn load_destinations(
    pool: &PgPool,
    allow_private_everywhere: bool,
) -> Result<Vec<Destination>, StoreError> {
    let rows: Vec<DestinationRow> = sqlx::query_as(
        "SELECT name, url, routes, headers, timeout_ms, retry_schedule_ms,
                throttle_min_delay_ms, max_concurrency, rate_limit_per_second, paused,
                allow_private_networks, retry_client_errors, breaker_failure_threshold,
                breaker_cooldown_ms,
                ARRAY(SELECT secret FROM destination_secrets s WHERE s.destination_name = d.name
                      ORDER BY s.created_at, s.id) AS signing_secrets
         FROM destinations d ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .context("loading destinations")?;
    Ok(rows
        .into_iter()
        .map(|row| Destination {
            name: row.name,
            url: row.url,
            routes: row.routes,
            signing_secrets: row.signing_secrets.into_iter().map(Secret::new).collect(),
            headers: row
                .headers
                .as_object()
                .map(|object| {
                    object
                        .iter()
                        .filter_map(|(name, value)| {
                            value.as_str().map(|value| (name.clone(), value.to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            settings: DestinationSettings {
                timeout_seconds: seconds(row.timeout_ms),
                retry_schedule_seconds: row.retry_schedule_ms.into_iter().map(seconds).collect(),
                throttle_min_delay_seconds: seconds(row.throttle_min_delay_ms),
                max_concurrency: row.max_concurrency.max(1) as u32,
                rate_limit_per_second: row.rate_limit_per_second,
                paused: row.paused,
                allow_private_networks: row.allow_private_networks || allow_private_everywhere,
                retry_client_errors: row.retry_client_errors,
                breaker_failure_threshold: row.breaker_failure_threshold.max(1) as u32,
                breaker_cooldown_seconds: seconds(row.breaker_cooldown_ms),
            },
        })
        .collect())
}

/// Pauses a destination (its receiver answered 410 Gone, or an operator asked).
pub async fn set_paused(
    pool: &PgPool,
    destination_name: &str,
    paused: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE destinations SET paused = $2, updated_at = now() WHERE name = $1")
        .bind(destination_name)
        .bind(paused)
        .execute(pool)
        .await
        .context("pausing the destination")?;
    Ok(())
}
