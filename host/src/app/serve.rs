//! `wasmhook serve`: builds every part from the configuration (database, migrations, plugins,
//! sources, destinations, the ingest queue) and serves HTTP until asked to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::Config;
use crate::delivery::worker::{WorkerHandle, WorkerSettings};
use crate::ingest::group_commit::{IngestQueue, IngestQueueSettings};
use crate::ingest::handler::IngestState;
use crate::plugins::PluginRuntime;
use crate::plugins::engine::RuntimeSettings;
use crate::sources::registry::{SourceDefaults, SourceRegistry};
use crate::store::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use crate::store::{self, DestinationRecord};

const EMBEDDED_DATABASE: &str = "wasmhook";

/// A database the host uses: either the configured URL or its own embedded cluster.
pub struct Database {
    pub pool: PgPool,
    pub embedded: Option<EmbeddedPostgres>,
}

/// Connects to the configured database (starting the embedded one when no URL is set) and
/// runs the migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    let (url, embedded) = match &config.database.url {
        Some(url) => (url.clone(), None),
        None => {
            let directory = config.database.data_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || {
                EmbeddedPostgres::start(&directory, ClusterOptions::default())
            })
            .await
            .context("starting the embedded PostgreSQL")??;
            tracing::info!(
                socket_dir = %cluster.socket_dir().display(),
                "embedded PostgreSQL is running"
            );
            store::create_database_if_missing(&cluster.url("postgres"), EMBEDDED_DATABASE).await?;
            (cluster.url(EMBEDDED_DATABASE), Some(cluster))
        }
    };
    let pool = store::connect(
        &url,
        config.database.max_connections,
        Duration::from_secs(config.database.acquire_timeout_seconds),
    )?;
    store::migrate(&pool)
        .await
        .context("preparing the database (is it reachable?)")?;
    Ok(Database { pool, embedded })
}

/// A server that is accepting requests.
pub struct RunningServer {
    pub address: SocketAddr,
    /// Where the admin API listens, when it is on.
    pub admin_address: Option<SocketAddr>,
    pub pool: PgPool,
    shutdown: watch::Sender<bool>,
    /// The listeners' server loops.
    serving: Vec<tokio::task::JoinHandle<()>>,
    worker: Option<WorkerHandle>,
    /// Background tasks that loop until aborted (retention, the source and destination
    /// refresher, the plugin swapper, the queue gauge refresher).
    background: Vec<tokio::task::JoinHandle<()>>,
    embedded: Option<EmbeddedPostgres>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and stops the embedded database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.send_replace(true);
        self.finish().await
    }

    /// Serves until `stop` resolves, then shuts down.
    pub async fn serve_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        stop.await;
        tracing::info!("shutting down");
        self.shutdown.send_replace(true);
        self.finish().await
    }

    /// Stops everything at once, without waiting for in-flight work: the listeners, the worker
    /// (its leases expire and are rescued) and the background tasks. For a process that drops a
    /// server it no longer needs, such as a test; an orderly stop is `shutdown`.
    pub fn abort(&self) {
        self.shutdown.send_replace(true);
        for task in self.background.iter().chain(&self.serving) {
            task.abort();
        }
        if let Some(worker) = &self.worker {
            worker.abort();
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        for task in &self.background {
            task.abort();
        }
        if let Some(worker) = self.worker {
            worker.shutdown().await;
        }
        for serving in self.serving {
            serving.await.context("the HTTP server task failed")?;
        }
        self.pool.close().await;
        if let Some(cluster) = self.embedded {
            tokio::task::spawn_blocking(move || cluster.stop())
                .await
                .context("stopping the embedded PostgreSQL")??;
        }
        Ok(())
    }
}

/// Which parts of the host this process runs, so operators can split roles across processes.
#[derive(Clone, Copy, Debug)]
pub struct Roles {
    pub ingest: bool,
    pub worker: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            ingest: true,
            worker: true,
        }
    }
}

/// Builds everything and starts serving on `server.listen`, with every role.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with_roles(config, Roles::default()).await
}

/// Builds everything and starts the given roles.
pub async fn start_with_roles(config: Config, roles: Roles) -> anyhow::Result<RunningServer> {
    let database = open_database(&config).await?;
    let runtime = PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: config.plugins.max_concurrent_instances,
        pool_memory_bytes: config.plugins.pool_memory_bytes,
        compiled_cache_dir: Some(config.compiled_cache_dir()),
    })?;

    let generated =
        store::apply_config_destinations(&database.pool, &config_destinations(&config)?).await?;
    // Shown once, and only to a person at a terminal: when stderr is collected (a service, a
    // container) it is a log, and secrets never go to the log.
    let stderr_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (name, secret) in generated {
        if stderr_is_terminal {
            eprintln!(
                "destination {name}: generated signing secret {secret} (shown once; verify deliveries with it)"
            );
        } else {
            tracing::warn!(
                destination = %name,
                "generated a signing secret, not shown since stderr is not a terminal: set `secret` in the config, or add one with POST /admin/v1/destinations/{name}/secrets"
            );
        }
    }
    let registry = Arc::new(SourceRegistry::new(
        runtime.clone(),
        SourceDefaults::from_config(&config),
    ));
    load_sources(&config, &registry, &database.pool).await?;
    registry.refresh_destinations(&database.pool).await?;

    let queue = IngestQueue::start(
        database.pool.clone(),
        IngestQueueSettings {
            batch_max_requests: config.ingest.batch_max_requests,
            writers: config.ingest.writers,
            dedupe_window: Duration::from_secs(config.ingest.dedupe_window_seconds),
        },
    );
    let state = Arc::new(IngestState {
        registry: registry.clone(),
        queue,
        max_body_bytes: config.server.max_body_bytes,
    });
    // Sources and destinations can change under a running host (the admin API, another
    // process): the ingest path follows the database every two seconds.
    let refresher = {
        let registry = registry.clone();
        let pool = database.pool.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(error) = registry.refresh_destinations(&pool).await {
                    tracing::warn!("cannot refresh destinations: {error:#}");
                }
                if let Err(error) = registry.refresh_sources(&pool).await {
                    tracing::warn!("cannot refresh sources: {error:#}");
                }
            }
        })
    };
    let swapper = crate::sources::hot_reload::start_swapper(
        database.pool.clone(),
        runtime.clone(),
        registry.clone(),
        crate::sources::hot_reload::WatchedFiles::new(&config.plugins.dir),
    );
    // The router installs the metrics recorder, so the first refresh comes after it.
    let health = crate::app::health::router(Arc::new(crate::app::health::HealthState::new(
        database.pool.clone(),
        state.clone(),
    )));
    crate::app::health::refresh_queue_gauges(&database.pool).await;
    let gauge_refresher = crate::app::health::start_gauge_refresher(database.pool.clone());
    let admin = match config.admin.resolve_token()? {
        Some(token) => Some(crate::admin::router(Arc::new(
            crate::admin::AdminState::new(
                database.pool.clone(),
                token.expose(),
                roles.ingest.then(|| state.clone()),
                runtime.clone(),
                registry.defaults().clone(),
                config.plugins.dir.clone(),
            ),
        ))),
        None => {
            tracing::info!(
                "the admin API is off: set admin.token or WASMHOOK_ADMIN_TOKEN to turn it on"
            );
            None
        }
    };
    let router = if roles.ingest {
        crate::ingest::handler::router(state, config.server.pre_auth_rate_limit).merge(health)
    } else {
        health
    };
    // The admin API has its own listener (loopback by default), never the webhook port.
    let admin_listener = match admin {
        Some(admin) => {
            let listen = config.admin.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!("listening on {listen} for the admin API (admin.listen)")
                })?;
            let address = listener.local_addr().context("reading the admin address")?;
            tracing::info!("the admin API is on http://{address}/admin/v1");
            Some((listener, admin, address))
        }
        None => None,
    };
    let retention = crate::app::retention::start(
        database.pool.clone(),
        crate::app::retention::RetentionSettings {
            events: Duration::from_secs_f64(config.retention.events_days * 86400.0),
            replayable: Duration::from_secs_f64(config.retention.replayable_days * 86400.0),
            attempts: Duration::from_secs_f64(config.retention.attempts_days * 86400.0),
            dedupe_keys: Duration::from_secs(config.ingest.dedupe_window_seconds),
            batch_size: config.retention.batch_size,
            pause_between_batches: Duration::from_millis(config.retention.pause_between_batches_ms),
            interval: Duration::from_secs(config.retention.interval_seconds),
        },
    );
    let worker = roles.worker.then(|| {
        crate::delivery::worker::start(
            database.pool.clone(),
            WorkerSettings {
                poll_interval: Duration::from_millis(config.delivery.poll_interval_ms),
                claim_batch: config.delivery.claim_batch,
                rescue_interval: Duration::from_millis(config.delivery.rescue_interval_ms),
                lease_margin: Duration::from_secs(config.delivery.lease_margin_seconds),
                shutdown_grace: Duration::from_secs(config.delivery.shutdown_grace_seconds),
                allow_private_networks: config.delivery.allow_private_networks,
                allowed_ports: config.delivery.allowed_ports.clone(),
            },
        )
    });

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("listening on {}", config.server.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!("wasmhook is listening on http://{address}");
    let (shutdown, shutdown_requested) = watch::channel(false);
    let settings = crate::app::http_server::ServeSettings::from_config(&config.server);
    let mut serving = vec![serve_listener(
        listener,
        router,
        settings,
        shutdown_requested.clone(),
    )];
    let admin_address = admin_listener.map(|(listener, admin, address)| {
        serving.push(serve_listener(
            listener,
            admin,
            settings,
            shutdown_requested.clone(),
        ));
        address
    });
    Ok(RunningServer {
        address,
        admin_address,
        pool: database.pool,
        shutdown,
        serving,
        worker,
        background: vec![retention, refresher, swapper, gauge_refresher],
        embedded: database.embedded,
    })
}

/// Serves one listener through the hardened server loop until shutdown is requested.
fn serve_listener(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    settings: crate::app::http_server::ServeSettings,
    mut shutdown_requested: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        crate::app::http_server::serve(listener, router, settings, async move {
            let _ = shutdown_requested.wait_for(|requested| *requested).await;
        })
        .await;
    })
}

/// Applies the config's sources to the database (their secrets resolved), registers the plugin
/// files every stored source uses, and builds every stored source. A config-declared source
/// that cannot be served stops the start, with the reason; one only the database holds (the
/// admin API made it) is logged and listed by `/readyz`, and the others serve.
async fn load_sources(
    config: &Config,
    registry: &SourceRegistry,
    pool: &PgPool,
) -> anyhow::Result<()> {
    let mut config_sources = Vec::with_capacity(config.sources.len());
    for (index, source) in config.sources.iter().enumerate() {
        let secrets = source
            .secrets
            .iter()
            .enumerate()
            .map(|(secret_index, secret)| {
                secret
                    .resolve()
                    .map(|secret| secret.expose().to_owned())
                    .with_context(|| format!("sources[{index}].secrets[{secret_index}]"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        config_sources.push((source.to_record(), secrets));
    }
    store::apply_config_sources(pool, &config_sources).await?;
    let stored = store::load_sources(pool).await?;
    crate::sources::hot_reload::register_directory_plugins(
        &config.plugins.dir,
        stored.iter().map(|source| source.record.plugin.as_str()),
        registry.runtime(),
        pool,
    )
    .await?;
    let declared = |name: &str| {
        config
            .sources
            .iter()
            .position(|declared| declared.name == name)
            .map(|index| format!("sources[{index}] ({name})"))
    };
    registry.start(pool, stored, &declared).await
}

/// The config's destinations as rows, each with its secret resolved.
fn config_destinations(
    config: &Config,
) -> anyhow::Result<Vec<(DestinationRecord, Option<String>)>> {
    config
        .destinations
        .iter()
        .enumerate()
        .map(|(index, destination)| {
            let signing_secret = destination
                .secret
                .as_ref()
                .map(|secret| secret.resolve())
                .transpose()
                .with_context(|| format!("destinations[{index}].secret"))?;
            Ok((
                destination.to_record(),
                signing_secret.map(|secret| secret.expose().to_owned()),
            ))
        })
        .collect()
}
