//! The host's background tasks, started in one place with their periods from the config
//! (`[tasks]`, `retention.interval_seconds`, `[delivery]`): retention, the source and destination
//! refresher, the plugin swapper, the queue gauges and the delivery worker. Each runs under a
//! name and stops when the shared cancellation token is cancelled: `BackgroundTasks::stop`
//! cancels it and waits for every task to return, so the worker drains (within its grace
//! period) and no task still runs when the pool closes. A periodic task's tick under way is
//! dropped at its next await; each tick is idempotent or commits in small transactions, so a
//! later tick (in this process or the next) picks up where it stopped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plugins::PluginRuntime;
use crate::sources::hot_reload::{Swapper, WatchedFiles};
use crate::sources::registry::SourceRegistry;

/// The running background tasks, by name.
pub struct BackgroundTasks {
    token: CancellationToken,
    running: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

/// When a periodic task first runs.
#[derive(Clone, Copy)]
enum FirstRun {
    /// At start, then every period.
    AtStart,
    /// One period after start.
    AfterOnePeriod,
}

/// What the background tasks work on.
pub struct TaskInputs<'a> {
    pub config: &'a Config,
    pub pool: PgPool,
    pub registry: Arc<SourceRegistry>,
    pub runtime: Arc<PluginRuntime>,
    /// Whether this process delivers (the worker role).
    pub worker: bool,
}

/// Starts every background task this process runs.
pub fn start(inputs: TaskInputs<'_>) -> BackgroundTasks {
    let TaskInputs {
        config,
        pool,
        registry,
        runtime,
        worker,
    } = inputs;
    let periods = &config.tasks;
    let mut tasks = BackgroundTasks::new();
    let retention = crate::app::retention::RetentionSettings::from_config(config);
    tasks.every(
        "retention",
        retention.interval,
        FirstRun::AtStart,
        retention_pass(pool.clone(), retention.clone()),
    );
    tasks.every(
        "source-refresher",
        Duration::from_millis(periods.source_refresh_ms),
        FirstRun::AfterOnePeriod,
        refresh_sources(pool.clone(), registry.clone()),
    );
    tasks.every(
        "queue-gauges",
        Duration::from_millis(periods.queue_gauges_ms),
        FirstRun::AfterOnePeriod,
        {
            let pool = pool.clone();
            move || {
                let pool = pool.clone();
                async move { crate::app::health::refresh_queue_gauges(&pool).await }
            }
        },
    );
    let swapper = Swapper::new(
        pool.clone(),
        runtime,
        registry,
        WatchedFiles::new(&config.plugins.dir),
    );
    let swapper_periods = periods.clone();
    let swapper_pool = pool.clone();
    tasks.spawn("plugin-swapper", move |token| {
        run_swapper(swapper_pool, swapper, swapper_periods, token)
    });
    if worker {
        let settings = worker_settings(config);
        tasks.spawn("delivery-worker", move |token| {
            crate::delivery::worker::run(pool, settings, token)
        });
    }
    tasks
}

/// One retention pass, for the periodic task.
fn retention_pass(
    pool: PgPool,
    settings: crate::app::retention::RetentionSettings,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static {
    move || {
        let pool = pool.clone();
        let settings = settings.clone();
        Box::pin(async move { crate::app::retention::run_logged_pass(&pool, &settings).await })
    }
}

/// Sources and destinations can change under a running host (the admin API, another process):
/// the ingest path follows the database.
fn refresh_sources(
    pool: PgPool,
    registry: Arc<SourceRegistry>,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static {
    move || {
        let pool = pool.clone();
        let registry = registry.clone();
        Box::pin(async move {
            if let Err(error) = registry.refresh_destinations(&pool).await {
                tracing::warn!("cannot refresh destinations: {error:#}");
            }
            if let Err(error) = registry.refresh_sources(&pool).await {
                tracing::warn!("cannot refresh sources: {error:#}");
            }
        })
    }
}

/// The plugin swapper: a round every `plugin_poll_ms`, or sooner when another process
/// announces a newly activated version.
async fn run_swapper(
    pool: PgPool,
    mut swapper: Swapper,
    periods: crate::config::tasks::TasksConfig,
    token: CancellationToken,
) {
    let retry = Duration::from_millis(periods.listen_retry_ms);
    let mut notifications = tokio::select! {
        () = token.cancelled() => return,
        notifications = crate::store::notify::pg_listen(&pool, "wasmhook_plugins", retry) => notifications,
    };
    let poll = Duration::from_millis(periods.plugin_poll_ms);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
            received = notifications.recv() => {
                if received.is_err() {
                    crate::metrics::listen_connection_failed("plugins");
                }
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = swapper.round() => {}
        }
    }
}

impl BackgroundTasks {
    fn new() -> BackgroundTasks {
        BackgroundTasks {
            token: CancellationToken::new(),
            running: Vec::new(),
        }
    }

    /// Starts `body` as the task `name`; it must return soon after the token it is given is
    /// cancelled.
    fn spawn<Body, Running>(&mut self, name: &'static str, body: Body)
    where
        Body: FnOnce(CancellationToken) -> Running,
        Running: Future<Output = ()> + Send + 'static,
    {
        let running = body(self.token.clone());
        let handle = tokio::spawn(async move {
            tracing::info!(task = name, "background task started");
            running.await;
            tracing::info!(task = name, "background task stopped");
        });
        self.running.push((name, handle));
    }

    /// Starts the task `name` that runs `tick` every `period` until cancelled (a tick under way
    /// is dropped at its next await).
    fn every<Tick, Ticking>(
        &mut self,
        name: &'static str,
        period: Duration,
        first: FirstRun,
        mut tick: Tick,
    ) where
        Tick: FnMut() -> Ticking + Send + 'static,
        Ticking: Future<Output = ()> + Send,
    {
        self.spawn(name, move |token| async move {
            let mut wait_first = matches!(first, FirstRun::AfterOnePeriod);
            loop {
                if wait_first {
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(period) => {}
                    }
                }
                wait_first = true;
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tick() => {}
                }
            }
        });
    }

    /// Cancels every task and waits for each to return.
    pub async fn stop(self) {
        self.token.cancel();
        for (name, handle) in self.running {
            if let Err(error) = handle.await {
                tracing::error!(task = name, "the background task failed: {error}");
            }
        }
    }

    /// Cancels every task and aborts it without waiting, for a process that drops a server it
    /// no longer needs (a test); an orderly stop is `stop`.
    pub fn abort(&self) {
        self.token.cancel();
        for (_, handle) in &self.running {
            handle.abort();
        }
    }
}

/// The worker's settings, from `[delivery]` and `tasks.listen_retry_ms`. They are read here
/// rather than in the worker, because the configuration sits above delivery in the layers.
pub fn worker_settings(config: &crate::config::Config) -> crate::delivery::worker::WorkerSettings {
    let delivery = &config.delivery;
    crate::delivery::worker::WorkerSettings {
        poll_interval: Duration::from_millis(delivery.poll_interval_ms),
        claim_batch: delivery.claim_batch,
        rescue_interval: Duration::from_millis(delivery.rescue_interval_ms),
        lease_margin: Duration::from_secs(delivery.lease_margin_seconds),
        shutdown_grace: Duration::from_secs(delivery.shutdown_grace_seconds),
        allow_private_networks: delivery.allow_private_networks,
        allowed_ports: delivery.allowed_ports.clone(),
        destination_refresh: Duration::from_millis(delivery.destination_refresh_ms),
        listen_retry: Duration::from_millis(config.tasks.listen_retry_ms),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn stop_cancels_every_task_and_waits_for_each_to_return() {
        let mut tasks = BackgroundTasks::new();
        let ticks = Arc::new(AtomicUsize::new(0));
        let counted = ticks.clone();
        tasks.every(
            "counter",
            Duration::from_millis(5),
            FirstRun::AtStart,
            move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        // A tick that never ends by itself: the token must still stop it.
        tasks.every(
            "stuck",
            Duration::from_millis(1),
            FirstRun::AfterOnePeriod,
            std::future::pending::<()>,
        );
        let returned = Arc::new(AtomicBool::new(false));
        let flag = returned.clone();
        tasks.spawn("waiter", move |token| async move {
            token.cancelled().await;
            flag.store(true, Ordering::SeqCst);
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(ticks.load(Ordering::SeqCst) >= 2, "the periodic task ticks");
        tokio::time::timeout(Duration::from_secs(5), tasks.stop())
            .await
            .expect("stop returns once every task has");
        assert!(returned.load(Ordering::SeqCst), "stop waited for the task");
        let after_stop = ticks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            after_stop,
            "no tick after stop"
        );
    }
}
