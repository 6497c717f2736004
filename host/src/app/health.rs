//! `GET /healthz` (the process is alive), `GET /readyz` (the database answers and plugins are
//! loaded) and `GET /metrics` (Prometheus text format).
//!
//! `/metrics` is unauthenticated and on the public port, so it never touches the database: the
//! queue gauges are read by a background task every few seconds and a scrape renders what it
//! last read. Otherwise every hit would cost two queries and a pool connection that ingest
//! needs. `/readyz` does ask the database, but at most once a second: concurrent and repeated
//! probes share the last answer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

/// What the health and metrics endpoints look at.
pub struct HealthState {
    pub pool: PgPool,
    /// The sources this process serves, and the ones it cannot.
    pub ingest: Arc<crate::ingest::handler::IngestState>,
    /// When the database was last asked whether it answers, and what it said. Held across the
    /// check, so that probes arriving meanwhile wait for its answer instead of asking again.
    pub last_database_check: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

impl HealthState {
    pub fn new(pool: PgPool, ingest: Arc<crate::ingest::handler::IngestState>) -> HealthState {
        HealthState {
            pool,
            ingest,
            last_database_check: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether the database answers, asked at most once per `DATABASE_CHECK_REUSE`.
    async fn database_is_reachable(&self) -> bool {
        let mut last = self.last_database_check.lock().await;
        let now = std::time::Instant::now();
        if let Some((checked_at, reachable)) = *last
            && now.saturating_duration_since(checked_at) < DATABASE_CHECK_REUSE
        {
            return reachable;
        }
        crate::metrics::readiness_database_check();
        let reachable = tokio::time::timeout(
            Duration::from_secs(2),
            crate::store::is_reachable(&self.pool),
        )
        .await
        .unwrap_or(false);
        *last = Some((std::time::Instant::now(), reachable));
        reachable
    }
}

/// How long one answer of the database serves `/readyz` probes.
const DATABASE_CHECK_REUSE: Duration = Duration::from_secs(1);

pub fn router(state: Arc<HealthState>) -> axum::Router {
    // Installing the recorder here makes sure metrics recorded before the first scrape count.
    crate::metrics::handle();
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<Arc<HealthState>>) -> Response {
    let database = state.database_is_reachable().await;
    // A stored source that cannot be served (its plugin is missing or refuses its config)
    // is listed but does not take the process out of service: the other sources still work,
    // and every source the config declares was served at start.
    let sources_serving = state.ingest.registry.serving().len();
    let sources_failing = state.ingest.registry.failing_names();
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "database": if database { "reachable" } else { "unreachable" },
            "sources_serving": sources_serving,
            "sources_failing": sources_failing,
        })),
    )
        .into_response()
}

/// How often the queue gauges are read from the database.
const GAUGE_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Reads the queue gauges once; a database outage leaves them as they were.
pub async fn refresh_queue_gauges(pool: &PgPool) {
    if let Ok(Ok((states, oldest_due_age))) = tokio::time::timeout(
        Duration::from_secs(2),
        crate::store::jobs::queue_gauges(pool),
    )
    .await
    {
        crate::metrics::queue_state(&states, oldest_due_age);
    }
    crate::metrics::queue_gauges_refreshed();
}

/// Refreshes the queue gauges every few seconds until aborted.
pub fn start_gauge_refresher(pool: PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(GAUGE_REFRESH_INTERVAL).await;
            refresh_queue_gauges(&pool).await;
        }
    })
}

async fn metrics(State(state): State<Arc<HealthState>>) -> Response {
    // The pool's counts are in memory; the queue gauges are the refresher's.
    crate::metrics::database_pool(state.pool.size(), state.pool.num_idle());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}
