//! `wasmhook serve`: builds every part from the configuration (database, migrations, plugins,
//! sources, destinations, the ingest queue), starts the background tasks (`app/tasks.rs`) and
//! serves HTTP until asked to stop. `start_with_roles` reads as the list of those steps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::app::tasks::{BackgroundTasks, TaskInputs};
use crate::config::Config;
use crate::ingest::group_commit::{IngestQueue, IngestQueueSettings};
use crate::ingest::handler::IngestState;
use crate::model::destination::DestinationRecord;
use crate::plugins::PluginRuntime;
use crate::plugins::engine::RuntimeSettings;
use crate::sources::registry::{SourceDefaults, SourceRegistry};
use crate::store;
use crate::store::embedded_postgres::{ClusterOptions, EmbeddedPostgres};

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
    /// Retention, the refreshers, the plugin swapper and the delivery worker.
    tasks: BackgroundTasks,
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

    /// Stops everything at once, without waiting for in-flight work: the listeners and the
    /// background tasks (the worker's leases expire and are rescued). For a process that drops
    /// a server it no longer needs, such as a test; an orderly stop is `shutdown`.
    pub fn abort(&self) {
        self.shutdown.send_replace(true);
        self.tasks.abort();
        for task in &self.serving {
            task.abort();
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        // The background tasks stop first (the worker within its grace period), while the
        // database is still there for their last writes.
        self.tasks.stop().await;
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
    let runtime = plugin_runtime(&config)?;
    apply_config_destinations(&config, &database.pool).await?;
    let state = ingest_state(&config, &runtime, &database.pool).await?;
    let routers = routers(&config, roles, &database.pool, &state, &runtime).await?;
    let listeners = Listeners::bind(&config, routers.admin.is_some()).await?;
    let tasks = crate::app::tasks::start(TaskInputs {
        config: &config,
        pool: database.pool.clone(),
        registry: state.registry.clone(),
        runtime,
        worker: roles.worker,
    });
    let settings = crate::app::http_server::ServeSettings::from_config(&config.server);
    let (shutdown, shutdown_requested) = watch::channel(false);
    let mut serving = vec![serve_listener(
        listeners.main,
        routers.main,
        settings,
        shutdown_requested.clone(),
    )];
    if let (Some(listener), Some(admin)) = (listeners.admin, routers.admin) {
        serving.push(serve_listener(
            listener,
            admin,
            settings,
            shutdown_requested,
        ));
    }
    Ok(RunningServer {
        address: listeners.address,
        admin_address: listeners.admin_address,
        pool: database.pool,
        shutdown,
        serving,
        tasks,
        embedded: database.embedded,
    })
}

/// The plugin runtime the config describes.
fn plugin_runtime(config: &Config) -> anyhow::Result<Arc<PluginRuntime>> {
    PluginRuntime::new(RuntimeSettings {
        max_concurrent_instances: config.plugins.max_concurrent_instances,
        pool_memory_bytes: config.plugins.pool_memory_bytes,
        compiled_cache_dir: Some(config.compiled_cache_dir()),
    })
}

/// Writes the config's destinations to the database, and shows each signing secret it had to
/// generate.
async fn apply_config_destinations(config: &Config, pool: &PgPool) -> anyhow::Result<()> {
    let generated =
        store::destinations::apply_config_destinations(pool, &config_destinations(config)?).await?;
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
    Ok(())
}

/// The webhook endpoint's state: the source registry (its sources loaded by `load_sources`,
/// its destinations read) and the group-commit queue.
async fn ingest_state(
    config: &Config,
    runtime: &Arc<PluginRuntime>,
    pool: &PgPool,
) -> anyhow::Result<Arc<IngestState>> {
    let registry = Arc::new(SourceRegistry::new(
        runtime.clone(),
        SourceDefaults::from_config(config),
    ));
    load_sources(config, &registry, pool).await?;
    registry.refresh_destinations(pool).await?;
    let queue = IngestQueue::start(
        pool.clone(),
        IngestQueueSettings {
            batch_max_requests: config.ingest.batch_max_requests,
            writers: config.ingest.writers,
            dedupe_window: Duration::from_secs(config.ingest.dedupe_window_seconds),
        },
    );
    Ok(Arc::new(IngestState {
        registry,
        queue,
        max_body_bytes: config.server.max_body_bytes,
    }))
}

/// What each listener serves.
struct Routers {
    /// The webhooks (with the ingest role) and the health endpoints.
    main: axum::Router,
    /// The admin API, when a token turns it on.
    admin: Option<axum::Router>,
}

/// The routers of the listeners (installing the metrics recorder on the way).
async fn routers(
    config: &Config,
    roles: Roles,
    pool: &PgPool,
    state: &Arc<IngestState>,
    runtime: &Arc<PluginRuntime>,
) -> anyhow::Result<Routers> {
    // The router installs the metrics recorder, so the first gauge refresh comes after it;
    // the background task `queue-gauges` refreshes them from then on.
    let health = crate::app::health::router(Arc::new(crate::app::health::HealthState::new(
        pool.clone(),
        state.clone(),
    )));
    crate::app::health::refresh_queue_gauges(pool).await;
    let admin = match config.admin.resolve_token()? {
        Some(token) => Some(crate::admin::router(Arc::new(
            crate::admin::AdminState::new(
                pool.clone(),
                token.expose(),
                roles.ingest.then(|| state.clone()),
                runtime.clone(),
                state.registry.defaults().clone(),
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
    let main = if roles.ingest {
        crate::ingest::handler::router(state.clone(), config.server.pre_auth_rate_limit)
            .merge(health)
    } else {
        health
    };
    Ok(Routers { main, admin })
}

/// The bound listeners, before they serve.
struct Listeners {
    main: tokio::net::TcpListener,
    address: SocketAddr,
    admin: Option<tokio::net::TcpListener>,
    admin_address: Option<SocketAddr>,
}

impl Listeners {
    /// Binds `server.listen`, and `admin.listen` when the admin API is on: the admin API has
    /// its own listener (loopback by default), never the webhook port.
    async fn bind(config: &Config, admin_on: bool) -> anyhow::Result<Listeners> {
        let (admin, admin_address) = if admin_on {
            let listen = config.admin.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!("listening on {listen} for the admin API (admin.listen)")
                })?;
            let address = listener.local_addr().context("reading the admin address")?;
            tracing::info!("the admin API is on http://{address}/admin/v1");
            (Some(listener), Some(address))
        } else {
            (None, None)
        };
        let main = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listening on {}", config.server.listen))?;
        let address = main.local_addr().context("reading the bound address")?;
        tracing::info!("wasmhook is listening on http://{address}");
        Ok(Listeners {
            main,
            address,
            admin,
            admin_address,
        })
    }
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
    store::sources::apply_config_sources(pool, &config_sources).await?;
    let stored = store::sources::load_sources(pool).await?;
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
