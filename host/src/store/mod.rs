//! The durable store: PostgreSQL through sqlx, and the only folder with SQL. One file per
//! aggregate: `ingest` (the group commit's writes and the quarantine), `sources`,
//! `destinations`, `secrets` (theirs), `plugin_versions`, `events` (the admin API's read
//! model), `jobs` (the delivery queue) and `retention`; this file has the pool, the migrations
//! and the reachability check.
//!
//! Any layer may call it; it calls nothing of the crate but `model` (the types rows map to) and
//! `signature` (secrets as delivery signs with them). Every function returns a `StoreError`.

pub mod destinations;
pub mod embedded_postgres;
pub mod error;
pub mod events;
pub mod ingest;
pub mod job_state;
pub mod jobs;
pub mod notify;
pub mod plugin_versions;
pub mod retention;
pub mod secrets;
pub mod sources;
mod text;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

use crate::store::error::{Context, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a connection pool. Connections are made lazily, so a pool outlives a database outage
/// and reconnects by itself when the database returns.
pub fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)
        .context("parsing the database URL")?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// Creates `database` on the server of `admin_url` if it does not exist yet.
pub async fn create_database_if_missing(admin_url: &str, database: &str) -> Result<(), StoreError> {
    let pool = connect(admin_url, 1, Duration::from_secs(10))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&pool)
            .await
            .context("checking for the database")?;
    if !exists {
        pool.execute(format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\"")).as_str())
            .await
            .with_context(|| format!("creating the database {database}"))?;
    }
    pool.close().await;
    Ok(())
}

/// Runs the migrations in `migrations/`.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(|error| match error {
        sqlx::migrate::MigrateError::Execute(error) => {
            StoreError::from_sqlx("running the migrations", &error)
        }
        other => StoreError::other(format!("running the migrations: {other}")),
    })
}

/// Whether the database answers a trivial query.
pub async fn is_reachable(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
