//! The `wasmhook` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmhook::cli::plugin::{self, RunOptions, RunVerdict};
use wasmhook::config::Config;

#[derive(Parser)]
#[command(
    name = "wasmhook",
    version,
    about = "A webhook host with WebAssembly plugins"
)]
struct Cli {
    /// Log format: human-readable text, or one JSON object per line for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serves webhooks (POST /webhooks/{source}) and delivers them.
    Serve {
        /// A TOML config file; every key it omits keeps its default (`wasmhook config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Do not deliver in this process (another process runs the worker).
        #[arg(long)]
        no_worker: bool,
        /// Do not take webhooks in this process (it only delivers).
        #[arg(long)]
        no_ingest: bool,
    },
    /// Makes finished deliveries due again: one event, a destination's dead jobs, or a filter.
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only this event (its host id, as answered on ingest).
        #[arg(long)]
        event: Option<uuid::Uuid>,
        /// Only deliveries to this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Only events of this source.
        #[arg(long)]
        source: Option<String>,
        /// Only events of this type.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only jobs in these states (delivered, failed, dead); default: all three.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only events stored at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only events stored before this time (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Replay quarantined requests through the current plugins instead of deliveries.
        #[arg(long)]
        quarantined: bool,
        /// Replay this quarantined request (the `request_id` answered on ingest).
        #[arg(long)]
        request: Option<uuid::Uuid>,
        /// Count what would be replayed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Runs the database migrations and exits.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Prints the default configuration, every key documented.
    Config,
    /// Posts one webhook to a running host, signed as the source's platform would sign it.
    Send {
        /// The config the host runs with; names the source, its plugin and secrets.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The source to post to (POST /webhooks/{source}).
        #[arg(long)]
        source: String,
        /// A file holding the request body.
        #[arg(long)]
        body: PathBuf,
        /// An extra header, `Name: value`; repeat for several.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
    },
    /// Tools for plugin authors.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Loads a plugin component, prints its manifest, and fails with the reason when unusable.
    Check {
        /// The component file (`.wasm`).
        file: PathBuf,
    },
    /// Runs a plugin's handle() once and prints each event as a CloudEvents JSON line.
    Run {
        /// The component file (`.wasm`).
        file: PathBuf,
        /// A file holding the request body, sent byte for byte.
        #[arg(long, required_unless_present = "fixtures")]
        body: Option<PathBuf>,
        /// Run every request fixture (`*.json`) in this directory instead, and report each.
        #[arg(long, conflicts_with = "body")]
        fixtures: Option<PathBuf>,
        /// A request header, `Name: value`; repeat for several.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// A file holding the source's configuration string.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A source secret; when given, the signature is checked as the server would. Repeat
        /// for several (rotation).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// The source name the request is posted to.
        #[arg(long, default_value = "local")]
        source: String,
        /// The receive time (RFC 3339); defaults to now.
        #[arg(long)]
        received_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMHOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
}

/// Runs one command; `Ok(false)` means it ran but its verdict was negative (exit status 2).
async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Serve {
            config,
            no_worker,
            no_ingest,
        } => serve(
            config,
            wasmhook::app::serve::Roles {
                ingest: !no_ingest,
                worker: !no_worker,
            },
        )
        .await
        .map(|()| true),
        Command::Replay {
            config,
            event,
            destination,
            source,
            event_type,
            states,
            since,
            until,
            quarantined,
            request,
            dry_run,
        } => replay(
            config,
            wasmhook::store::jobs::ReplayFilter {
                event_row_id: event,
                destination_name: destination,
                source_name: source,
                event_type,
                job_states: states,
                since,
                until,
            },
            quarantined,
            request,
            dry_run,
        )
        .await
        .map(|()| true),
        Command::Migrate { config } => migrate(config).await.map(|()| true),
        Command::Config => {
            print!("{}", wasmhook::config::DEFAULT_CONFIG);
            Ok(true)
        }
        Command::Send {
            config,
            source,
            body,
            headers,
        } => {
            wasmhook::cli::send::send(wasmhook::cli::send::SendOptions {
                config_path: config,
                source_name: source,
                body_path: body,
                headers,
            })
            .await
        }
        Command::Plugin { command } => run_plugin_command(command).await,
    }
}

async fn run_plugin_command(command: PluginCommand) -> anyhow::Result<bool> {
    match command {
        PluginCommand::Check { file } => plugin::check(&file).await.map(|()| true),
        PluginCommand::Run {
            file,
            fixtures: Some(fixtures),
            ..
        } => plugin::run_fixtures(&file, &fixtures).await,
        PluginCommand::Run {
            file,
            body,
            fixtures: None,
            headers,
            config,
            secrets,
            source,
            received_at,
        } => plugin::run(RunOptions {
            plugin_path: file,
            body_path: body.expect("clap requires --body without --fixtures"),
            headers,
            config_path: config,
            secrets,
            source_name: source,
            received_at,
        })
        .await
        .map(|verdict| verdict != RunVerdict::Rejected),
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    roles: wasmhook::app::serve::Roles,
) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let server = wasmhook::app::serve::start_with_roles(config, roles).await?;
    server.serve_until(shutdown_signal()).await
}

async fn migrate(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let database = wasmhook::app::serve::open_database(&config).await?;
    database.pool.close().await;
    if let Some(cluster) = database.embedded {
        cluster.stop().context("stopping the embedded PostgreSQL")?;
    }
    eprintln!("migrations are up to date");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn replay(
    config_path: Option<PathBuf>,
    filter: wasmhook::store::jobs::ReplayFilter,
    quarantined: bool,
    request: Option<uuid::Uuid>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let database = wasmhook::app::serve::open_database(&config).await?;
    let result = wasmhook::ingest::replay::replay_command(
        &config,
        &database.pool,
        filter,
        quarantined,
        request,
        dry_run,
    )
    .await;
    database.pool.close().await;
    if let Some(cluster) = database.embedded {
        cluster.stop().context("stopping the embedded PostgreSQL")?;
    }
    result
}
