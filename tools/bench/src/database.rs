//! The database the measured hosts share, and the load generator's own statements on it: the
//! prefill of `--prefill-events` and the event count before each run. The load generator is a
//! tool beside the host, so its SQL lives here rather than in the host's store.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmhook::store;
use wasmhook::store::embedded_postgres::{ClusterOptions, EmbeddedPostgres};

use crate::options::IngestBenchOptions;

const BENCH_DATABASE: &str = "wasmhook";
/// Upper bound for filling the events table (`--prefill-events`), vacuum and checkpoint
/// included.
const PREFILL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The database the hosts of one run share: a throwaway cluster of the load generator's own
/// (stopped when dropped) or the `--database-url` one, migrated.
pub struct BenchDatabase {
    pub url: String,
    cluster: Option<EmbeddedPostgres>,
    _directory: Option<tempfile::TempDir>,
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster
            && let Err(error) = cluster.stop()
        {
            eprintln!("warning: stopping the bench PostgreSQL: {error:#}");
        }
    }
}

/// Starts a PostgreSQL cluster with the embedded database's settings (durable: fsync and
/// synchronous commit on), or takes `--database-url`, and runs the migrations.
pub async fn open_bench_database(options: &IngestBenchOptions) -> anyhow::Result<BenchDatabase> {
    let database = match &options.database_url {
        Some(url) => BenchDatabase {
            url: url.clone(),
            cluster: None,
            _directory: None,
        },
        None => {
            let directory = tempfile::Builder::new()
                .prefix("wasmhook-bench-pg")
                .tempdir()
                .context("creating the database directory")?;
            let path = directory.path().to_owned();
            let cluster = tokio::task::spawn_blocking(move || {
                let options = ClusterOptions {
                    statement_statistics: true,
                    ..ClusterOptions::default()
                };
                EmbeddedPostgres::start(&path, options)
            })
            .await
            .context("starting PostgreSQL")??;
            let database = BenchDatabase {
                url: cluster.url(BENCH_DATABASE),
                cluster: Some(cluster),
                _directory: Some(directory),
            };
            if let Some(cluster) = &database.cluster {
                store::create_database_if_missing(&cluster.url("postgres"), BENCH_DATABASE).await?;
            }
            database
        }
    };
    // The hosts migrate the database when they start, each with its own migrations, so that
    // a baseline build (`make bench BASELINE=<rev>`) runs on the schema it was written for.
    let pool = bench_pool(&database.url)?;
    if let Err(error) = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&pool)
        .await
    {
        eprintln!("warning: no statement counts (pg_stat_statements): {error}");
    }
    pool.close().await;
    Ok(database)
}

impl BenchDatabase {
    /// The postmaster of the bench's own cluster, whose processes' CPU time is PostgreSQL's
    /// share of a run; none with `--database-url`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid = self.cluster.as_ref()?.pid()?;
        u32::try_from(pid).ok()
    }
}

/// A SQL expression for a version-7-like UUID: the millisecond timestamp `millis_sql` in the
/// first 48 bits (so prefilled rows sort before the host's new `Uuid::now_v7` ids, as older
/// rows would), then bits hashed from `seed_sql`.
fn uuid_v7_sql(millis_sql: &str, seed_sql: &str) -> String {
    format!(
        "(lpad(to_hex({millis_sql}), 12, '0') || '7' || substr(md5({seed_sql}), 1, 3) || '8' || substr(md5({seed_sql}), 4, 15))::uuid"
    )
}

/// Adds `rows` accepted webhooks to the database as the ingest path would have stored them: a
/// raw request (this push body), an event (the github plugin's data for it), a dedupe key and
/// a delivered job per destination each, spread over the last six days (inside the dedupe
/// window and the retention period, so nothing expires during the run). One `INSERT … SELECT
/// generate_series` per table, then `VACUUM (ANALYZE)` and a checkpoint, so that the
/// measured run starts without a vacuum or checkpoint debt. Returns the time it took.
pub async fn prefill_events(
    database_url: &str,
    rows: u64,
    body: &[u8],
) -> anyhow::Result<(Duration, i64)> {
    let started = Instant::now();
    let pool = bench_pool(database_url)?;
    let rows = i64::try_from(rows).context("--prefill-events is too large")?;
    let span_ms: i64 = 6 * 24 * 3600 * 1000;
    let step_ms = (span_ms / rows).max(1);
    let first_ms = chrono::Utc::now().timestamp_millis() - span_ms - 60_000;
    let millis = "($2::bigint + n * $3::bigint)";
    let at = format!("to_timestamp({millis} / 1000.0)");
    let raw_id = uuid_v7_sql(millis, "'raw' || n");
    let event_id = uuid_v7_sql(millis, "'event' || n");
    let job_id = uuid_v7_sql(millis, "'job' || n || d.name");
    let body_text = std::str::from_utf8(body).context("the push body is not UTF-8")?;
    let data = format!(r#"{{"event":"push","summary":null,"payload":{body_text}}}"#);
    // Each statement binds the row count, first timestamp and step; the first two also one
    // value of their own as $4.
    let statements = [
        format!(
            "INSERT INTO raw_requests
                 (id, source_name, received_at, method, path, query, headers, body, status, plugin, error)
             SELECT {raw_id}, 'github', {at}, 'POST', '/webhooks/github', '',
                 jsonb_build_array(
                     jsonb_build_array('content-type', 'application/json'),
                     jsonb_build_array('x-github-event', 'push'),
                     jsonb_build_array('x-github-delivery', 'prefill-' || n)),
                 $4::bytea, 'accepted', 'github', NULL
             FROM generate_series(1::bigint, $1::bigint) AS n"
        ),
        format!(
            "INSERT INTO events
                 (id, raw_request_id, source_name, event_id, event_type, event_source, subject,
                  time, data, route_keys, created_at)
             SELECT {event_id}, {raw_id}, 'github', 'prefill-' || n, 'github.push',
                 'https://github.com/Codertocat/Hello-World', 'Codertocat/Hello-World',
                 to_char({at} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                 $4::text, '{{github.push}}', {at}
             FROM generate_series(1::bigint, $1::bigint) AS n"
        ),
        format!(
            "INSERT INTO dedupe_keys (source_name, event_id, event_row_id, created_at)
             SELECT 'github', 'prefill-' || n, {event_id}, {at}
             FROM generate_series(1::bigint, $1::bigint) AS n"
        ),
        format!(
            "INSERT INTO delivery_jobs
                 (id, event_row_id, destination_name, state, attempt, next_attempt_at, created_at,
                  last_status, finished_at)
             SELECT {job_id}, {event_id}, d.name, 'delivered', 1, {at}, {at}, 204,
                 {at} + interval '50 milliseconds'
             FROM generate_series(1::bigint, $1::bigint) AS n CROSS JOIN destinations d"
        ),
    ];
    let work = async {
        for (index, statement) in statements.iter().enumerate() {
            let query = sqlx::query(statement)
                .bind(rows)
                .bind(first_ms)
                .bind(step_ms);
            let query = match index {
                0 => query.bind(body),
                1 => query.bind(data.as_str()),
                _ => query,
            };
            query
                .execute(&pool)
                .await
                .context("prefilling the events table")?;
        }
        sqlx::query("VACUUM (ANALYZE) raw_requests, events, dedupe_keys, delivery_jobs")
            .execute(&pool)
            .await
            .context("vacuuming after the prefill")?;
        if let Err(error) = sqlx::query("CHECKPOINT").execute(&pool).await {
            eprintln!("warning: no checkpoint after the prefill: {error}");
        }
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&pool)
            .await
            .context("reading the database size")?;
        anyhow::Ok(size)
    };
    let size = tokio::time::timeout(PREFILL_TIMEOUT, work)
        .await
        .context("the prefill took longer than 30 minutes")??;
    pool.close().await;
    Ok((started.elapsed(), size))
}

/// A one-connection pool for the load generator's own statements, which are slow on purpose
/// (the prefill) and so are not logged as slow.
pub fn bench_pool(database_url: &str) -> anyhow::Result<sqlx::PgPool> {
    use sqlx::ConnectOptions;
    let options = sqlx::postgres::PgConnectOptions::from_str(database_url)
        .context("parsing the database URL")?
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(1));
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect_lazy_with(options))
}

pub async fn count_events(database_url: &str) -> anyhow::Result<i64> {
    let pool = bench_pool(database_url)?;
    let count = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .context("counting events")?;
    pool.close().await;
    Ok(count)
}
