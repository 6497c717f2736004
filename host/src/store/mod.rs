//! The durable store: PostgreSQL through sqlx. All of the ingest path's SQL lives here.
//!
//! `write_batch` stores many ingested requests in one transaction (the group commit of
//! `ingest_queue`): dedupe keys first (event ids, and body digests for schemes that sign only
//! the body), so that only the first arrival creates anything, then raw requests, events and
//! one delivery job per matching destination. Every text goes through `postgres_text`, so no
//! NUL reaches PostgreSQL.

pub mod embedded_postgres;
pub mod jobs;
pub mod notify;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};
use uuid::Uuid;

use crate::model::events::NormalizedEvent;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The store is unreachable or failed; the request must not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("the database is unavailable: {0}")]
pub struct StoreUnavailable(pub String);

/// Opens a connection pool. Connections are made lazily, so a pool outlives a database outage
/// and reconnects by itself when the database returns.
pub fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
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
pub async fn create_database_if_missing(admin_url: &str, database: &str) -> anyhow::Result<()> {
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
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running the migrations")
}

/// Whether the database answers a trivial query.
pub async fn is_reachable(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

/// A destination's settings as stored; its secrets live in `destination_secrets`.
#[derive(Clone, Debug)]
pub struct DestinationRecord {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    pub retry_schedule_ms: Vec<i32>,
    pub throttle_min_delay_ms: i32,
    pub max_concurrency: i32,
    pub rate_limit_per_second: Option<f64>,
    pub paused: bool,
    pub allow_private_networks: bool,
    pub retry_client_errors: bool,
    pub breaker_failure_threshold: i32,
    pub breaker_cooldown_ms: i32,
}

/// How a settings write treats an existing row of the same name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// Insert, or overwrite the existing row (config applied at start).
    Upsert,
    /// Insert only; an existing row is a conflict (the API's create).
    Create,
    /// Overwrite only; a missing row is not found (the API's update).
    Update,
}

/// The outcome of an admin change to a source, a destination or a secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Done,
    NotFound,
    AlreadyExists,
    /// Retiring the last secret would leave the owner unable to sign or verify.
    LastSecret,
}

/// Writes a destination's settings in `transaction`; `false` when `mode` refused the write.
async fn write_destination_settings(
    transaction: &mut sqlx::PgConnection,
    destination: &DestinationRecord,
    mode: WriteMode,
) -> anyhow::Result<bool> {
    if mode == WriteMode::Update
        && !lock_owner(transaction, SecretOwner::Destination, &destination.name).await?
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
    .bind(destination.timeout_ms)
    .bind(&destination.retry_schedule_ms)
    .bind(destination.throttle_min_delay_ms)
    .bind(destination.max_concurrency)
    .bind(destination.rate_limit_per_second)
    .bind(destination.paused)
    .bind(destination.allow_private_networks)
    .bind(destination.retry_client_errors)
    .bind(destination.breaker_failure_threshold)
    .bind(destination.breaker_cooldown_ms)
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
) -> anyhow::Result<Vec<(String, String)>> {
    let mut generated = Vec::new();
    for (destination, secret) in destinations {
        let mut transaction = pool.begin().await.context("starting a transaction")?;
        write_destination_settings(&mut transaction, destination, WriteMode::Upsert).await?;
        replace_config_secrets(
            &mut transaction,
            SecretOwner::Destination,
            &destination.name,
            secret.as_slice(),
        )
        .await?;
        if count_secrets(
            &mut transaction,
            SecretOwner::Destination,
            &destination.name,
        )
        .await?
            == 0
        {
            let new_secret = generate_signing_secret();
            insert_secret(
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
) -> anyhow::Result<Change> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_destination_settings(&mut transaction, destination, WriteMode::Create).await? {
        return Ok(Change::AlreadyExists);
    }
    insert_secret(
        &mut transaction,
        SecretOwner::Destination,
        &destination.name,
        secret,
        "api",
    )
    .await?;
    transaction
        .commit()
        .await
        .context("committing the destination")?;
    Ok(Change::Done)
}

/// Replaces a destination's settings, and all of its secrets with `secret` when given.
pub async fn update_destination(
    pool: &PgPool,
    destination: &DestinationRecord,
    secret: Option<&str>,
) -> anyhow::Result<Change> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_destination_settings(&mut transaction, destination, WriteMode::Update).await? {
        return Ok(Change::NotFound);
    }
    if let Some(secret) = secret {
        replace_all_secrets(
            &mut transaction,
            SecretOwner::Destination,
            &destination.name,
            secret,
        )
        .await?;
    }
    transaction
        .commit()
        .await
        .context("committing the destination")?;
    Ok(Change::Done)
}

/// A new Standard Webhooks secret: `whsec_` and 32 bytes from the operating system's CSPRNG,
/// in base64.
pub fn generate_signing_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The request as received, kept for replay.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub id: Uuid,
    pub source_name: String,
    pub received_at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `name@version` of the plugin that handled it.
    pub plugin: String,
}

/// What one ingested request asks the store to keep.
#[derive(Clone, Debug)]
pub enum IngestWrite {
    /// Normalized events, each with the destinations its routes matched.
    Events {
        raw: RawRequest,
        events: Vec<(NormalizedEvent, Vec<String>)>,
        /// The body key (`dedupe::body_key`) when the source's signature covers only the body:
        /// a second dedupe key, so that the body sent again under a new delivery id, as the
        /// same event type, is a duplicate.
        body_sha256: Option<[u8; 32]>,
    },
    /// The plugin failed: keep the raw request for a replay through a fixed plugin.
    Quarantine { raw: RawRequest, error: String },
}

/// What the store did with one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// New events were stored, with these host ids.
    Accepted { event_ids: Vec<Uuid> },
    /// Every event was seen before; the id of the first stored event.
    Duplicate { event_id: Uuid },
    /// The raw request was stored for replay.
    Quarantined { request_id: Uuid },
}

/// Why a batch of writes was not stored.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// PostgreSQL refused a statement (a value it cannot hold, a deadlock): the same writes
    /// may be stored one by one, so that only a bad one fails.
    #[error("the database refused the batch: {0}")]
    Refused(String),
    /// The database could not be reached or failed; every write of the batch fails alike.
    #[error(transparent)]
    Unavailable(#[from] StoreUnavailable),
}

impl From<BatchError> for StoreUnavailable {
    fn from(error: BatchError) -> StoreUnavailable {
        match error {
            BatchError::Refused(message) => StoreUnavailable(message),
            BatchError::Unavailable(unavailable) => unavailable,
        }
    }
}

/// Whether PostgreSQL refused what a statement carried, or a value could not be encoded: then
/// the same rows may fail or succeed on their own. An outage (the server shutting down, too
/// many connections, a lost connection) is not: trying the writes one by one would only
/// multiply the waiting.
pub(crate) fn refused_by_database(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Encode(_)) => true,
            Some(sqlx::Error::Database(database)) => {
                database.code().is_some_and(|code| is_row_refusal(&code))
            }
            _ => false,
        })
}

/// SQLSTATE classes of a refusal tied to the rows: data exceptions (22, such as a NUL in text
/// or a time out of range), integrity constraints (23), a rollback for a conflict with another
/// transaction (40: deadlock, serialization) and program limits (54, such as the btree row size).
fn is_row_refusal(sqlstate: &str) -> bool {
    ["22", "23", "40", "54"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
}

/// Text as PostgreSQL can hold it. A `text` value (and a string inside `jsonb`) cannot contain
/// NUL, and one such value fails its statement and every write sharing the transaction, so
/// every text the host writes passes through here: NUL becomes U+FFFD, as invalid UTF-8
/// already does where the host decodes bytes lossily.
pub(crate) fn postgres_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Stores a batch of writes in one transaction and says what became of each.
pub async fn write_batch(
    pool: &PgPool,
    writes: &[IngestWrite],
    dedupe_window: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>, BatchError> {
    write_batch_inner(pool, writes, dedupe_window, now)
        .await
        .map_err(|error| {
            let message = format!("{error:#}");
            if refused_by_database(&error) {
                BatchError::Refused(message)
            } else {
                BatchError::Unavailable(StoreUnavailable(message))
            }
        })
}

/// A row of `dedupe_keys`: the scope (a source name, or a source's body-key scope) and the key
/// (an event id, or a body's SHA-256 in hex).
type DedupeKey<'a> = (&'a str, &'a str);

/// The body key of each write, owned here so that the claims can borrow it.
fn body_keys(writes: &[IngestWrite]) -> Vec<Option<(String, String)>> {
    writes
        .iter()
        .map(|write| match write {
            IngestWrite::Events {
                raw,
                body_sha256: Some(digest),
                ..
            } => Some((
                crate::model::dedupe::body_key_scope(&raw.source_name),
                hex::encode(digest),
            )),
            _ => None,
        })
        .collect()
}

/// Gives every event a fresh row id and finds the first claim of each key in the batch (later
/// arrivals in the same batch are its duplicates). A body key points at its write's first event.
fn plan_claims<'a>(
    writes: &'a [IngestWrite],
    body_keys: &'a [Option<(String, String)>],
) -> (Vec<Vec<Uuid>>, HashMap<DedupeKey<'a>, Uuid>) {
    let mut row_ids: Vec<Vec<Uuid>> = Vec::with_capacity(writes.len());
    let mut first_claim: HashMap<DedupeKey<'a>, Uuid> = HashMap::new();
    for (write, body_key) in writes.iter().zip(body_keys) {
        let ids: Vec<Uuid> = match write {
            IngestWrite::Events { raw, events, .. } => events
                .iter()
                .map(|(event, _)| {
                    let id = Uuid::now_v7();
                    first_claim
                        .entry((raw.source_name.as_str(), event.id.as_str()))
                        .or_insert(id);
                    id
                })
                .collect(),
            IngestWrite::Quarantine { .. } => Vec::new(),
        };
        if let (Some((scope, key)), Some(first_row)) = (body_key, ids.first()) {
            first_claim
                .entry((scope.as_str(), key.as_str()))
                .or_insert(*first_row);
        }
        row_ids.push(ids);
    }
    (row_ids, first_claim)
}

/// What the database said about a batch's keys, and what each key won here stands for.
struct Claims<'a> {
    first_claim: HashMap<DedupeKey<'a>, Uuid>,
    won: std::collections::HashSet<DedupeKey<'a>>,
    /// The stored row of keys that were already claimed within the window.
    existing: HashMap<DedupeKey<'a>, Uuid>,
    /// The event each key won in this batch stands for, filled as writes are resolved in order
    /// (a key is always first claimed by an earlier or the same write).
    targets: HashMap<DedupeKey<'a>, Uuid>,
}

impl<'a> Claims<'a> {
    /// Whether `row_id` made the claim of `key` that won.
    fn won_by(&self, key: DedupeKey<'a>, row_id: Uuid) -> bool {
        self.first_claim.get(&key) == Some(&row_id) && self.won.contains(&key)
    }

    /// The event a key stands for when the caller did not win it.
    fn first_arrival(&self, key: DedupeKey<'a>) -> Uuid {
        let known = if self.won.contains(&key) {
            self.targets.get(&key)
        } else {
            self.existing.get(&key)
        };
        // A key deleted between the claim and the read (retention) has no row to name; the
        // write is still a duplicate of something stored within the window.
        known
            .or_else(|| self.first_claim.get(&key))
            .copied()
            .expect("every key of the batch was claimed")
    }
}

/// The rows a batch writes once its claims are known, and what each write gets.
#[derive(Default)]
struct BatchPlan<'a> {
    outcomes: Vec<IngestOutcome>,
    raw_rows: Vec<(&'a RawRequest, &'static str, Option<&'a str>)>,
    event_rows: Vec<(Uuid, &'a RawRequest, &'a NormalizedEvent)>,
    job_rows: Vec<(Uuid, Uuid, &'a str)>,
    suppressed: HashMap<DedupeKey<'a>, i32>,
    /// Keys won here that must name another event than the row id they were claimed with
    /// (their write turned out a duplicate, or stored a later event first), so that no key
    /// names a row that was never written.
    repointed: Vec<(DedupeKey<'a>, Uuid)>,
}

async fn write_batch_inner(
    pool: &PgPool,
    writes: &[IngestWrite],
    dedupe_window: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<IngestOutcome>> {
    let body_keys = body_keys(writes);
    let (row_ids, first_claim) = plan_claims(writes, &body_keys);
    // Keys in a fixed order, so that concurrent batches lock them in the same order.
    let mut keys: Vec<(DedupeKey, Uuid)> = first_claim
        .iter()
        .map(|(&key, &row_id)| (key, row_id))
        .collect();
    keys.sort_unstable();

    let mut transaction = pool.begin().await.context("beginning a transaction")?;
    let won = claim_keys(&mut transaction, &keys, dedupe_window, now).await?;
    let lost: Vec<DedupeKey> = keys
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| !won.contains(key))
        .collect();
    let existing = first_arrivals(&mut transaction, &lost).await?;
    let claims = Claims {
        first_claim,
        won,
        existing,
        targets: HashMap::new(),
    };
    let plan = resolve_batch(writes, &row_ids, &body_keys, claims)?;
    count_suppressed(&mut transaction, &plan.suppressed).await?;
    repoint_keys(&mut transaction, &plan.repointed).await?;
    insert_raw_requests(&mut transaction, &plan.raw_rows).await?;
    insert_events(&mut transaction, &plan.event_rows, now).await?;
    insert_jobs(&mut transaction, &plan.job_rows, now).await?;
    transaction.commit().await.context("committing")?;
    Ok(plan.outcomes)
}

/// Claims the keys (new, or older than the window and so reclaimed); returns those won.
async fn claim_keys<'a>(
    transaction: &mut sqlx::PgConnection,
    keys: &[(DedupeKey<'a>, Uuid)],
    dedupe_window: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<std::collections::HashSet<DedupeKey<'a>>> {
    let won: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO dedupe_keys (source_name, event_id, event_row_id, created_at)
         SELECT source_name, event_id, event_row_id, $4
         FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS claim (source_name, event_id, event_row_id)
         ON CONFLICT (source_name, event_id) DO UPDATE
             SET event_row_id = EXCLUDED.event_row_id, created_at = EXCLUDED.created_at
             WHERE dedupe_keys.created_at < EXCLUDED.created_at - $5 * interval '1 second'
         RETURNING source_name, event_id",
    )
    .bind(keys.iter().map(|(key, _)| postgres_text(key.0)).collect::<Vec<_>>())
    .bind(keys.iter().map(|(key, _)| postgres_text(key.1)).collect::<Vec<_>>())
    .bind(keys.iter().map(|(_, row_id)| *row_id).collect::<Vec<_>>())
    .bind(now)
    .bind(dedupe_window.as_secs_f64())
    .fetch_all(&mut *transaction)
    .await
    .context("claiming dedupe keys")?;
    let won: std::collections::HashSet<(String, String)> = won.into_iter().collect();
    Ok(keys
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| {
            won.contains(&(
                postgres_text(key.0).into_owned(),
                postgres_text(key.1).into_owned(),
            ))
        })
        .collect())
}

/// The stored row of each key that was claimed before (within the window).
async fn first_arrivals<'a>(
    transaction: &mut sqlx::PgConnection,
    lost: &[DedupeKey<'a>],
) -> anyhow::Result<HashMap<DedupeKey<'a>, Uuid>> {
    if lost.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
        "SELECT d.source_name, d.event_id, d.event_row_id
         FROM dedupe_keys d
         JOIN UNNEST($1::text[], $2::text[]) AS lost (source_name, event_id)
           ON d.source_name = lost.source_name AND d.event_id = lost.event_id",
    )
    .bind(
        lost.iter()
            .map(|key| postgres_text(key.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        lost.iter()
            .map(|key| postgres_text(key.1))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *transaction)
    .await
    .context("reading the first arrivals of duplicates")?;
    let rows: HashMap<(String, String), Uuid> = rows
        .into_iter()
        .map(|(scope, key, row_id)| ((scope, key), row_id))
        .collect();
    Ok(lost
        .iter()
        .filter_map(|key| {
            let stored = (
                postgres_text(key.0).into_owned(),
                postgres_text(key.1).into_owned(),
            );
            rows.get(&stored).map(|row_id| (*key, *row_id))
        })
        .collect())
}

/// Decides, write by write in batch order, what is stored and what each write is answered.
fn resolve_batch<'a>(
    writes: &'a [IngestWrite],
    row_ids: &[Vec<Uuid>],
    body_keys: &'a [Option<(String, String)>],
    mut claims: Claims<'a>,
) -> anyhow::Result<BatchPlan<'a>> {
    let mut plan = BatchPlan::default();
    for ((write, ids), body_key) in writes.iter().zip(row_ids).zip(body_keys) {
        match write {
            IngestWrite::Quarantine { raw, error } => {
                plan.raw_rows
                    .push((raw, "quarantined", Some(error.as_str())));
                plan.outcomes
                    .push(IngestOutcome::Quarantined { request_id: raw.id });
            }
            IngestWrite::Events { raw, events, .. } => {
                let body_key = body_key
                    .as_ref()
                    .map(|(scope, key)| (scope.as_str(), key.as_str()));
                let outcome = resolve_events(&mut plan, &mut claims, raw, events, ids, body_key)?;
                plan.outcomes.push(outcome);
            }
        }
    }
    Ok(plan)
}

/// One write's events: each is stored when this write won its id (and its body key, when it
/// has one); a write whose body was seen within the window is a duplicate as a whole.
fn resolve_events<'a>(
    plan: &mut BatchPlan<'a>,
    claims: &mut Claims<'a>,
    raw: &'a RawRequest,
    events: &'a [(NormalizedEvent, Vec<String>)],
    ids: &[Uuid],
    body_key: Option<DedupeKey<'a>>,
) -> anyhow::Result<IngestOutcome> {
    let first_row = *ids.first().context("a write without events")?;
    let body_won = body_key.is_none_or(|key| claims.won_by(key, first_row));
    let mut first_duplicate = None;
    if let Some(key) = body_key
        && !body_won
    {
        *plan.suppressed.entry(key).or_default() += 1;
        first_duplicate = Some(claims.first_arrival(key));
    }
    let mut accepted = Vec::new();
    let mut won_but_not_stored = Vec::new();
    for ((event, destinations), row_id) in events.iter().zip(ids) {
        let key = (raw.source_name.as_str(), event.id.as_str());
        if !claims.won_by(key, *row_id) {
            *plan.suppressed.entry(key).or_default() += 1;
            first_duplicate.get_or_insert_with(|| claims.first_arrival(key));
        } else if body_won {
            accepted.push(*row_id);
            claims.targets.insert(key, *row_id);
            plan.event_rows.push((*row_id, raw, event));
            for destination in destinations {
                plan.job_rows
                    .push((Uuid::now_v7(), *row_id, destination.as_str()));
            }
        } else {
            won_but_not_stored.push(key);
        }
    }
    // The keys this write won but stored no event for (and its body key) stand for the write's
    // first stored event, or for the event it duplicates.
    let stands_for = accepted
        .first()
        .copied()
        .or(first_duplicate)
        .context("a write without events")?;
    won_but_not_stored.extend(body_key.filter(|_| body_won));
    for key in won_but_not_stored {
        claims.targets.insert(key, stands_for);
        if claims.first_claim.get(&key) != Some(&stands_for) {
            plan.repointed.push((key, stands_for));
        }
    }
    if accepted.is_empty() {
        return Ok(IngestOutcome::Duplicate {
            event_id: stands_for,
        });
    }
    plan.raw_rows.push((raw, "accepted", None));
    Ok(IngestOutcome::Accepted {
        event_ids: accepted,
    })
}

/// Counts the later arrivals answered as duplicates on their keys' rows.
async fn count_suppressed(
    transaction: &mut sqlx::PgConnection,
    suppressed: &HashMap<DedupeKey<'_>, i32>,
) -> anyhow::Result<()> {
    if suppressed.is_empty() {
        return Ok(());
    }
    // In key order, like the claims, so concurrent batches lock rows in the same order.
    let mut counts: Vec<(DedupeKey, i32)> = suppressed
        .iter()
        .map(|(key, count)| (*key, *count))
        .collect();
    counts.sort_unstable();
    sqlx::query(
        "UPDATE dedupe_keys d SET duplicates_suppressed = d.duplicates_suppressed + c.count
         FROM UNNEST($1::text[], $2::text[], $3::int[]) AS c (source_name, event_id, count)
         WHERE d.source_name = c.source_name AND d.event_id = c.event_id",
    )
    .bind(
        counts
            .iter()
            .map(|(key, _)| postgres_text(key.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        counts
            .iter()
            .map(|(key, _)| postgres_text(key.1))
            .collect::<Vec<_>>(),
    )
    .bind(counts.iter().map(|(_, count)| *count).collect::<Vec<_>>())
    .execute(&mut *transaction)
    .await
    .context("counting suppressed duplicates")?;
    Ok(())
}

/// Points keys won by this batch at the event they stand for (see `BatchPlan::repointed`);
/// this transaction holds their rows already.
async fn repoint_keys(
    transaction: &mut sqlx::PgConnection,
    repointed: &[(DedupeKey<'_>, Uuid)],
) -> anyhow::Result<()> {
    if repointed.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE dedupe_keys d SET event_row_id = r.event_row_id
         FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS r (source_name, event_id, event_row_id)
         WHERE d.source_name = r.source_name AND d.event_id = r.event_id",
    )
    .bind(
        repointed
            .iter()
            .map(|(key, _)| postgres_text(key.0))
            .collect::<Vec<_>>(),
    )
    .bind(
        repointed
            .iter()
            .map(|(key, _)| postgres_text(key.1))
            .collect::<Vec<_>>(),
    )
    .bind(
        repointed
            .iter()
            .map(|(_, row_id)| *row_id)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *transaction)
    .await
    .context("pointing dedupe keys at their first events")?;
    Ok(())
}

/// The request's headers as stored: a JSON array of `[name, value]` pairs.
fn stored_headers(raw: &RawRequest) -> serde_json::Value {
    raw.headers
        .iter()
        .map(|(name, value)| serde_json::json!([postgres_text(name), postgres_text(value)]))
        .collect()
}

async fn insert_raw_requests(
    transaction: &mut sqlx::PgConnection,
    raw_rows: &[(&RawRequest, &'static str, Option<&str>)],
) -> anyhow::Result<()> {
    if raw_rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO raw_requests
             (id, source_name, received_at, method, path, query, headers, body, status, plugin, error)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
             $6::text[], $7::jsonb[], $8::bytea[], $9::text[], $10::text[], $11::text[])
         -- A replayed quarantined request is written again under its own id: it becomes
         -- accepted, with the plugin version that handled it this time.
         ON CONFLICT (id) DO UPDATE
             SET status = EXCLUDED.status, plugin = EXCLUDED.plugin, error = EXCLUDED.error",
    )
    .bind(raw_rows.iter().map(|r| r.0.id).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.source_name)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.0.received_at).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.method)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.path)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.query)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| stored_headers(r.0)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.0.body.as_slice()).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| postgres_text(&r.0.plugin)).collect::<Vec<_>>())
    .bind(raw_rows.iter().map(|r| r.2.map(postgres_text)).collect::<Vec<_>>())
    .execute(&mut *transaction)
    .await
    .context("storing raw requests")?;
    Ok(())
}

async fn insert_events(
    transaction: &mut sqlx::PgConnection,
    event_rows: &[(Uuid, &RawRequest, &NormalizedEvent)],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if event_rows.is_empty() {
        return Ok(());
    }
    let route_keys: Vec<String> = event_rows
        .iter()
        .map(|(_, _, event)| postgres_text_array(&event.route_keys))
        .collect();
    sqlx::query(
        "INSERT INTO events
             (id, raw_request_id, source_name, event_id, event_type, event_source, subject,
              time, data, route_keys, created_at)
         SELECT id, raw_request_id, source_name, event_id, event_type, event_source, subject,
              time, data, route_keys::text[], $11
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::text[], $10::text[])
              AS e (id, raw_request_id, source_name, event_id, event_type, event_source,
                    subject, time, data, route_keys)",
    )
    .bind(event_rows.iter().map(|e| e.0).collect::<Vec<_>>())
    .bind(event_rows.iter().map(|e| e.1.id).collect::<Vec<_>>())
    .bind(
        event_rows
            .iter()
            .map(|e| postgres_text(&e.1.source_name))
            .collect::<Vec<_>>(),
    )
    .bind(
        event_rows
            .iter()
            .map(|e| postgres_text(&e.2.id))
            .collect::<Vec<_>>(),
    )
    .bind(
        event_rows
            .iter()
            .map(|e| postgres_text(&e.2.event_type))
            .collect::<Vec<_>>(),
    )
    .bind(
        event_rows
            .iter()
            .map(|e| postgres_text(&e.2.source))
            .collect::<Vec<_>>(),
    )
    .bind(
        event_rows
            .iter()
            .map(|e| e.2.subject.as_deref().map(postgres_text))
            .collect::<Vec<_>>(),
    )
    .bind(
        event_rows
            .iter()
            .map(|e| postgres_text(&e.2.time))
            .collect::<Vec<_>>(),
    )
    .bind(
        event_rows
            .iter()
            .map(|e| postgres_text(&e.2.data_json))
            .collect::<Vec<_>>(),
    )
    .bind(route_keys)
    .bind(now)
    .execute(&mut *transaction)
    .await
    .context("storing events")?;
    Ok(())
}

async fn insert_jobs(
    transaction: &mut sqlx::PgConnection,
    job_rows: &[(Uuid, Uuid, &str)],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if job_rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO delivery_jobs (id, event_row_id, destination_name, next_attempt_at, created_at)
         SELECT j.id, j.event_row_id, j.destination_name, $4, $4
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS j (id, event_row_id, destination_name)
         -- A destination deleted since the routes were last refreshed gets no job, rather
         -- than failing every request in the batch.
         WHERE EXISTS (SELECT 1 FROM destinations d WHERE d.name = j.destination_name)",
    )
    .bind(job_rows.iter().map(|j| j.0).collect::<Vec<_>>())
    .bind(job_rows.iter().map(|j| j.1).collect::<Vec<_>>())
    .bind(job_rows.iter().map(|j| j.2).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut *transaction)
    .await
    .context("creating delivery jobs")?;
    // Wakes the delivery workers as soon as this transaction commits.
    sqlx::query("SELECT pg_notify('wasmhook_jobs', '')")
        .execute(&mut *transaction)
        .await
        .context("notifying the workers")?;
    Ok(())
}

/// A text array literal (`{"a","b"}`), because arrays of arrays cannot be bound directly; NUL is
/// replaced like every other text the host writes.
fn postgres_text_array(items: &[String]) -> String {
    let mut literal = String::from("{");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            literal.push(',');
        }
        literal.push('"');
        for character in postgres_text(item).chars() {
            if character == '"' || character == '\\' {
                literal.push('\\');
            }
            literal.push(character);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

#[derive(sqlx::FromRow)]
struct RawRequestRow {
    id: Uuid,
    source_name: String,
    received_at: DateTime<Utc>,
    method: String,
    path: String,
    query: String,
    headers: serde_json::Value,
    body: Vec<u8>,
    plugin: String,
}

/// One page of quarantined raw requests in arrival order (one by id, or every one), after
/// `after`, the `(received_at, id)` of the last request of the previous page. Paging by key
/// keeps a replay's memory to one page and never reads a request twice, even when it stays
/// quarantined.
pub async fn quarantined_requests(
    pool: &PgPool,
    request_id: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> anyhow::Result<Vec<RawRequest>> {
    let rows: Vec<RawRequestRow> = sqlx::query_as(
        "SELECT id, source_name, received_at, method, path, query, headers, body, plugin
         FROM raw_requests
         WHERE status = 'quarantined' AND ($1::uuid IS NULL OR id = $1)
           AND ($2::timestamptz IS NULL OR (received_at, id) > ($2, $3))
         ORDER BY received_at, id LIMIT $4",
    )
    .bind(request_id)
    .bind(after.map(|(received_at, _)| received_at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("reading quarantined requests")?;
    Ok(rows
        .into_iter()
        .map(|row| RawRequest {
            id: row.id,
            source_name: row.source_name,
            received_at: row.received_at,
            method: row.method,
            path: row.path,
            query: row.query,
            headers: serde_json::from_value(row.headers).unwrap_or_default(),
            body: row.body,
            plugin: row.plugin,
        })
        .collect())
}

/// Counts the quarantined requests a replay would run (one by id, or every one).
pub async fn count_quarantined(pool: &PgPool, request_id: Option<Uuid>) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM raw_requests
         WHERE status = 'quarantined' AND ($1::uuid IS NULL OR id = $1)",
    )
    .bind(request_id)
    .fetch_one(pool)
    .await
    .context("counting quarantined requests")
}

/// The advisory lock that a job replay holds shared in its transaction and that retention
/// takes exclusively (without waiting) around its deletes of requests, so that retention never
/// deletes a row a job replay is making due again (delivered and dead jobs alike).
pub const REPLAY_GUARD_LOCK: i64 = 0x7768_5f72_6570_6c61;

/// The advisory lock that a replay of quarantined requests holds shared for its whole run and
/// that retention takes exclusively (without waiting) around its delete of replayable
/// requests only: such a replay reads quarantined rows, never delivered ones, so requests
/// whose deliveries all succeeded are still deleted while it runs.
pub const QUARANTINE_REPLAY_GUARD_LOCK: i64 = 0x7768_5f71_7265_706c;

/// Held by a replay of quarantined requests for its whole run, on a connection of its own
/// (outside the pool), so that the lock goes with the connection even if the replay is
/// dropped half-way.
pub struct ReplayGuard {
    connection: sqlx::PgConnection,
}

impl ReplayGuard {
    pub async fn hold(pool: &PgPool) -> anyhow::Result<ReplayGuard> {
        use sqlx::ConnectOptions;
        let mut connection = pool
            .connect_options()
            .connect()
            .await
            .context("connecting for the replay guard")?;
        sqlx::query("SELECT pg_advisory_lock_shared($1)")
            .bind(QUARANTINE_REPLAY_GUARD_LOCK)
            .execute(&mut connection)
            .await
            .context("taking the replay guard")?;
        Ok(ReplayGuard { connection })
    }

    /// Closing the connection releases the lock.
    pub async fn release(self) {
        use sqlx::Connection;
        let _ = self.connection.close().await;
    }
}

/// How much one retention batch deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionBatch {
    /// Requests (with their events, jobs and attempts) whose deliveries all succeeded.
    pub raw_requests: u64,
    /// Requests kept for a replay: quarantined, or with a dead or failed delivery.
    pub replayable_requests: u64,
    pub attempts: u64,
    pub dedupe_keys: u64,
    /// Whether a replay held its guard, so that replayable requests were left for later.
    pub replayable_skipped: bool,
}

impl RetentionBatch {
    pub fn total(&self) -> u64 {
        self.raw_requests + self.replayable_requests + self.attempts + self.dedupe_keys
    }
}

/// Deletes at most `batch` rows of each kind older than its cut-off, each kind in its own
/// short statement so that no lock is held for long: raw requests (with their events, jobs and
/// attempts) whose deliveries all succeeded, requests kept for replay, attempts, and expired
/// dedupe keys.
pub async fn delete_expired_batch(
    pool: &PgPool,
    events_before: DateTime<Utc>,
    replayable_before: DateTime<Utc>,
    attempts_before: DateTime<Utc>,
    dedupe_keys_before: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<RetentionBatch> {
    let (raw_requests, replayable_requests, replayable_skipped) =
        delete_expired_requests(pool, events_before, replayable_before, batch).await?;
    let attempts = sqlx::query(
        "DELETE FROM delivery_attempts WHERE id IN (
             SELECT id FROM delivery_attempts WHERE started_at < $1
             ORDER BY started_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(attempts_before)
    .bind(batch)
    .execute(pool)
    .await
    .context("deleting old attempts")?
    .rows_affected();
    let dedupe_keys = sqlx::query(
        "DELETE FROM dedupe_keys WHERE (source_name, event_id) IN (
             SELECT source_name, event_id FROM dedupe_keys WHERE created_at < $1
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(dedupe_keys_before)
    .bind(batch)
    .execute(pool)
    .await
    .context("deleting expired dedupe keys")?
    .rows_affected();
    Ok(RetentionBatch {
        raw_requests,
        replayable_requests,
        attempts,
        dedupe_keys,
        replayable_skipped,
    })
}

/// Requests whose deliveries are all finished, each kind after its own cut-off, and whether the
/// replayable ones were skipped. Nothing is deleted while a job replay holds its guard, and no
/// replayable request while a quarantine replay holds its own; once retention holds a guard,
/// the deletes read the rows as the replays committed them, and a replay that starts waits for
/// this short commit.
async fn delete_expired_requests(
    pool: &PgPool,
    events_before: DateTime<Utc>,
    replayable_before: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<(u64, u64, bool)> {
    let mut transaction = pool.begin().await.context("starting a retention batch")?;
    if !try_guard(&mut transaction, REPLAY_GUARD_LOCK).await? {
        return Ok((0, 0, true));
    }
    let replayable_guarded = try_guard(&mut transaction, QUARANTINE_REPLAY_GUARD_LOCK).await?;
    let delivered = sqlx::query(
        "DELETE FROM raw_requests WHERE id IN (
             SELECT r.id FROM raw_requests r
             WHERE r.received_at < $1 AND r.status = 'accepted'
               AND NOT EXISTS (
                   SELECT 1 FROM events e JOIN delivery_jobs j ON j.event_row_id = e.id
                   WHERE e.raw_request_id = r.id
                     AND j.state IN ('due', 'running', 'retrying', 'failed', 'dead'))
             ORDER BY r.received_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(events_before)
    .bind(batch)
    .execute(&mut *transaction)
    .await
    .context("deleting old requests and events")?
    .rows_affected();
    let replayable = if replayable_guarded {
        delete_expired_replayable(&mut transaction, replayable_before, batch).await?
    } else {
        0
    };
    transaction
        .commit()
        .await
        .context("committing a retention batch")?;
    Ok((delivered, replayable, !replayable_guarded))
}

/// Takes a replay guard exclusively for the transaction, without waiting; `false` when a
/// replay holds it.
async fn try_guard(transaction: &mut sqlx::PgConnection, lock: i64) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(lock)
        .fetch_one(transaction)
        .await
        .context("taking the replay guard")
}

/// Quarantined requests and requests with a dead or failed delivery (and none pending).
async fn delete_expired_replayable(
    transaction: &mut sqlx::PgConnection,
    replayable_before: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<u64> {
    let replayable = sqlx::query(
        "DELETE FROM raw_requests WHERE id IN (
             SELECT r.id FROM raw_requests r
             WHERE r.received_at < $1
               AND (r.status = 'quarantined' OR EXISTS (
                   SELECT 1 FROM events e JOIN delivery_jobs j ON j.event_row_id = e.id
                   WHERE e.raw_request_id = r.id AND j.state IN ('failed', 'dead')))
               AND NOT EXISTS (
                   SELECT 1 FROM events e JOIN delivery_jobs j ON j.event_row_id = e.id
                   WHERE e.raw_request_id = r.id AND j.state IN ('due', 'running', 'retrying'))
             ORDER BY r.received_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(replayable_before)
    .bind(batch)
    .execute(transaction)
    .await
    .context("deleting old quarantined requests and dead deliveries")?
    .rows_affected();
    Ok(replayable)
}

/// Marks a quarantined request as handled (its events turned out to be duplicates on replay).
pub async fn mark_request_accepted(pool: &PgPool, request_id: Uuid) -> anyhow::Result<()> {
    sqlx::query("UPDATE raw_requests SET status = 'accepted', error = NULL WHERE id = $1")
        .bind(request_id)
        .execute(pool)
        .await
        .context("marking the request accepted")?;
    Ok(())
}

/// Counts used by tests and the admin API: rows per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredCounts {
    pub raw_requests: i64,
    pub quarantined: i64,
    pub events: i64,
    pub delivery_jobs: i64,
}

pub async fn stored_counts(pool: &PgPool) -> anyhow::Result<StoredCounts> {
    let (raw_requests, quarantined, events, delivery_jobs): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM raw_requests),
                (SELECT count(*) FROM raw_requests WHERE status = 'quarantined'),
                (SELECT count(*) FROM events),
                (SELECT count(*) FROM delivery_jobs)",
    )
    .fetch_one(pool)
    .await
    .context("counting stored rows")?;
    Ok(StoredCounts {
        raw_requests,
        quarantined,
        events,
        delivery_jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_tied_to_the_rows_split_a_batch() {
        let table = [
            ("22021", true),  // invalid byte sequence (a NUL in text)
            ("22008", true),  // a time out of range
            ("23514", true),  // a check constraint
            ("40P01", true),  // a deadlock
            ("54000", true),  // an index row over the btree limit
            ("57P01", false), // the server is shutting down
            ("53300", false), // too many connections
            ("08006", false), // the connection failed
            ("42P01", false), // a missing table: every write fails alike
        ];
        for (sqlstate, row_refusal) in table {
            assert_eq!(is_row_refusal(sqlstate), row_refusal, "{sqlstate}");
        }
    }

    #[test]
    fn nul_is_replaced_in_every_text_written() {
        assert_eq!(postgres_text("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert!(matches!(
            postgres_text("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
        assert_eq!(postgres_text_array(&["a\0".to_owned()]), "{\"a\u{FFFD}\"}");
    }

    #[test]
    fn text_array_literals_escape_quotes_and_backslashes() {
        let table: &[(&[&str], &str)] = &[
            (&[], "{}"),
            (&["github.push"], r#"{"github.push"}"#),
            (&["a", "b,c"], r#"{"a","b,c"}"#),
            (
                &[r#"q"uote"#, r"back\slash"],
                r#"{"q\"uote","back\\slash"}"#,
            ),
        ];
        for (items, expected) in table {
            let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
            assert_eq!(postgres_text_array(&items), *expected);
        }
    }
}

/// Deletes a destination with its jobs.
pub async fn delete_destination(pool: &PgPool, name: &str) -> anyhow::Result<Change> {
    let deleted = sqlx::query("DELETE FROM destinations WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await
        .context("deleting the destination")?
        .rows_affected();
    Ok(if deleted == 0 {
        Change::NotFound
    } else {
        Change::Done
    })
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

pub async fn destination_stats(pool: &PgPool, name: &str) -> anyhow::Result<DestinationStats> {
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

/// Filters for listing stored events, newest first.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub source_name: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this one (the previous page's last id).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// One row of an event listing.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EventSummary {
    pub id: Uuid,
    pub source_name: String,
    pub event_id: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub created_at: DateTime<Utc>,
    pub raw_request_id: Uuid,
    /// Later arrivals of this event id answered as duplicates within the dedupe window.
    pub duplicates_suppressed: i32,
}

pub async fn list_events(pool: &PgPool, filter: &EventFilter) -> anyhow::Result<Vec<EventSummary>> {
    sqlx::query_as(
        "SELECT e.id, e.source_name, e.event_id, e.event_type, e.subject, e.created_at,
                e.raw_request_id, coalesce(d.duplicates_suppressed, 0) AS duplicates_suppressed
         FROM events e
         LEFT JOIN dedupe_keys d ON d.source_name = e.source_name AND d.event_id = e.event_id
                                AND d.event_row_id = e.id
         WHERE ($1::text IS NULL OR e.source_name = $1)
           AND ($2::text IS NULL OR e.event_type = $2)
           AND ($3::timestamptz IS NULL OR e.created_at >= $3)
           AND ($4::timestamptz IS NULL OR e.created_at < $4)
           AND ($5::uuid IS NULL OR e.id < $5)
         ORDER BY e.id DESC LIMIT $6",
    )
    .bind(filter.source_name.as_deref())
    .bind(filter.event_type.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(pool)
    .await
    .context("listing events")
}

/// One quarantined request in a listing.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct QuarantinedSummary {
    pub id: Uuid,
    pub source_name: String,
    pub received_at: DateTime<Utc>,
    pub plugin: String,
    pub error: Option<String>,
}

pub async fn list_quarantined(
    pool: &PgPool,
    filter: &EventFilter,
) -> anyhow::Result<Vec<QuarantinedSummary>> {
    sqlx::query_as(
        "SELECT id, source_name, received_at, plugin, error FROM raw_requests
         WHERE status = 'quarantined'
           AND ($1::text IS NULL OR source_name = $1)
           AND ($2::timestamptz IS NULL OR received_at >= $2)
           AND ($3::timestamptz IS NULL OR received_at < $3)
           AND ($4::uuid IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5",
    )
    .bind(filter.source_name.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(pool)
    .await
    .context("listing quarantined requests")
}

/// An event with its raw request and every delivery with every attempt.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EventDetail {
    pub id: Uuid,
    pub source_name: String,
    pub event_id: String,
    pub event_type: String,
    pub event_source: String,
    pub subject: Option<String>,
    pub time: String,
    /// The event data, as the plugin produced it.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub route_keys: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub raw_request: RawRequestView,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RawRequestView {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: String,
    /// `[name, value]` pairs as received, credentials redacted (`[redacted]`).
    pub headers: Vec<(String, String)>,
    /// The body as text (invalid UTF-8 replaced); `body_base64` has the exact bytes.
    pub body: String,
    pub body_base64: String,
    pub plugin: String,
    pub status: String,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub job_id: Uuid,
    pub destination: String,
    pub state: String,
    pub attempt: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub attempts: Vec<AttemptView>,
}

#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: String,
}

pub async fn event_detail(pool: &PgPool, id: Uuid) -> anyhow::Result<Option<EventDetail>> {
    type EventRow = (
        Uuid,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        Vec<String>,
        DateTime<Utc>,
        Uuid,
    );
    let event: Option<EventRow> = sqlx::query_as(
        "SELECT id, source_name, event_id, event_type, event_source, subject, time, data,
                route_keys, created_at, raw_request_id
         FROM events WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("reading the event")?;
    let Some(event) = event else {
        return Ok(None);
    };
    type RawRow = (
        Uuid,
        DateTime<Utc>,
        String,
        String,
        String,
        serde_json::Value,
        Vec<u8>,
        String,
        String,
    );
    let raw: RawRow = sqlx::query_as(
        "SELECT id, received_at, method, path, query, headers, body, plugin, status
         FROM raw_requests WHERE id = $1",
    )
    .bind(event.10)
    .fetch_one(pool)
    .await
    .context("reading the raw request")?;
    let jobs: Vec<(Uuid, String, String, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, destination_name, state, attempt, next_attempt_at
         FROM delivery_jobs WHERE event_row_id = $1 ORDER BY destination_name",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .context("reading the deliveries")?;
    let mut deliveries = Vec::with_capacity(jobs.len());
    for (job_id, destination, state, attempt, next_attempt_at) in jobs {
        let attempts: Vec<AttemptView> = sqlx::query_as(
            "SELECT attempt, started_at, duration_ms, status_code, response_body, error, outcome
             FROM delivery_attempts WHERE job_id = $1 ORDER BY started_at",
        )
        .bind(job_id)
        .fetch_all(pool)
        .await
        .context("reading the attempts")?;
        deliveries.push(DeliveryView {
            job_id,
            destination,
            state,
            attempt,
            next_attempt_at,
            attempts,
        });
    }
    use base64::Engine as _;
    Ok(Some(EventDetail {
        id: event.0,
        source_name: event.1,
        event_id: event.2,
        event_type: event.3,
        event_source: event.4,
        subject: event.5,
        time: event.6,
        data: serde_json::from_str(&event.7).unwrap_or(serde_json::Value::Null),
        route_keys: event.8,
        created_at: event.9,
        raw_request: RawRequestView {
            id: raw.0,
            received_at: raw.1,
            method: raw.2,
            path: raw.3,
            query: raw.4,
            headers: serde_json::from_value(raw.5).unwrap_or_default(),
            body: String::from_utf8_lossy(&raw.6).into_owned(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&raw.6),
            plugin: raw.7,
            status: raw.8,
        },
        deliveries,
    }))
}

/// Stores a checked component as a version of `plugin_name` (once per content hash) and
/// returns its id, and whether this call stored it (rather than finding it).
pub async fn register_plugin_version(
    pool: &PgPool,
    plugin_name: &str,
    content_sha256: &str,
    component: &[u8],
    manifest: &serde_json::Value,
) -> anyhow::Result<(Uuid, bool)> {
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
pub async fn active_plugin_versions(pool: &PgPool) -> anyhow::Result<Vec<(String, Uuid, String)>> {
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
) -> anyhow::Result<bool> {
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
) -> anyhow::Result<Option<Uuid>> {
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
pub async fn plugin_component(pool: &PgPool, version_id: Uuid) -> anyhow::Result<Vec<u8>> {
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

pub async fn list_plugin_versions(pool: &PgPool) -> anyhow::Result<Vec<PluginVersionView>> {
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

/// Whose secrets a secret operation touches. Sources check signatures with every one of
/// theirs; destinations sign every delivery with every one of theirs.
#[derive(Clone, Copy, Debug)]
pub enum SecretOwner {
    Source,
    Destination,
}

impl SecretOwner {
    /// The owners' table, the secrets' table and its column naming the owner.
    fn tables(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SecretOwner::Source => ("sources", "source_secrets", "source_name"),
            SecretOwner::Destination => ("destinations", "destination_secrets", "destination_name"),
        }
    }
}

/// A secret as the API shows it: never its value.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct SecretView {
    pub id: Uuid,
    /// `config` (from the config file, replaced from it at start), `api` or `generated`.
    pub origin: String,
    pub created_at: DateTime<Utc>,
}

/// Locks the owner's row for the rest of the transaction; `false` when it does not exist.
async fn lock_owner(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
) -> anyhow::Result<bool> {
    let (owners, _, _) = owner.tables();
    let found: Option<i32> = sqlx::query_scalar(&format!(
        "SELECT 1 FROM {owners} WHERE name = $1 FOR UPDATE"
    ))
    .bind(name)
    .fetch_optional(&mut *transaction)
    .await
    .with_context(|| format!("locking {owners} row {name}"))?;
    Ok(found.is_some())
}

/// Marks the owner changed, so every host process rebuilds what it keeps of it.
async fn touch_owner(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
) -> anyhow::Result<()> {
    let (owners, _, _) = owner.tables();
    sqlx::query(&format!(
        "UPDATE {owners} SET updated_at = now() WHERE name = $1"
    ))
    .bind(name)
    .execute(&mut *transaction)
    .await
    .with_context(|| format!("marking {owners} row {name} changed"))?;
    Ok(())
}

async fn count_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
) -> anyhow::Result<i64> {
    let (_, secrets, owner_column) = owner.tables();
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {secrets} WHERE {owner_column} = $1"
    ))
    .bind(name)
    .fetch_one(&mut *transaction)
    .await
    .context("counting secrets")
}

/// Adds a secret unless the owner has it already; `None` when it had.
async fn insert_secret(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    secret: &str,
    origin: &str,
) -> anyhow::Result<Option<SecretView>> {
    let (_, secrets, owner_column) = owner.tables();
    let inserted = sqlx::query_as(&format!(
        "INSERT INTO {secrets} (id, {owner_column}, secret, origin) VALUES ($1, $2, $3, $4)
         ON CONFLICT ({owner_column}, secret) DO NOTHING
         RETURNING id, origin, created_at"
    ))
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(secret)
    .bind(origin)
    .fetch_optional(&mut *transaction)
    .await
    .context("storing a secret")?;
    if inserted.is_some() {
        touch_owner(transaction, owner, name).await?;
    }
    Ok(inserted)
}

/// Makes the config-owned secrets exactly `config_secrets`, leaving the API's alone.
async fn replace_config_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    config_secrets: &[String],
) -> anyhow::Result<()> {
    let (_, secrets, owner_column) = owner.tables();
    let removed = sqlx::query(&format!(
        "DELETE FROM {secrets} WHERE {owner_column} = $1 AND origin = 'config'
             AND NOT (secret = ANY($2))"
    ))
    .bind(name)
    .bind(config_secrets)
    .execute(&mut *transaction)
    .await
    .context("removing secrets the config no longer names")?
    .rows_affected();
    if removed > 0 {
        touch_owner(transaction, owner, name).await?;
    }
    for secret in config_secrets {
        insert_secret(transaction, owner, name, secret, "config").await?;
    }
    Ok(())
}

/// Replaces every secret of the owner with `secret`.
async fn replace_all_secrets(
    transaction: &mut sqlx::PgConnection,
    owner: SecretOwner,
    name: &str,
    secret: &str,
) -> anyhow::Result<()> {
    let (_, secrets, owner_column) = owner.tables();
    sqlx::query(&format!("DELETE FROM {secrets} WHERE {owner_column} = $1"))
        .bind(name)
        .execute(&mut *transaction)
        .await
        .context("removing the old secrets")?;
    insert_secret(transaction, owner, name, secret, "api").await?;
    Ok(())
}

/// The secrets of an owner, oldest first, without their values; `None` when it does not exist.
pub async fn list_secrets(
    pool: &PgPool,
    owner: SecretOwner,
    name: &str,
) -> anyhow::Result<Option<Vec<SecretView>>> {
    let mut connection = pool.acquire().await.context("acquiring a connection")?;
    let (owners, secrets, owner_column) = owner.tables();
    let exists: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {owners} WHERE name = $1)"
    ))
    .bind(name)
    .fetch_one(&mut *connection)
    .await
    .context("looking up the owner of the secrets")?;
    if !exists {
        return Ok(None);
    }
    let views = sqlx::query_as(&format!(
        "SELECT id, origin, created_at FROM {secrets} WHERE {owner_column} = $1
         ORDER BY created_at, id"
    ))
    .bind(name)
    .fetch_all(&mut *connection)
    .await
    .context("listing secrets")?;
    Ok(Some(views))
}

/// Adds a secret through the API; both old and new ones are in force until one is retired.
pub async fn add_secret(
    pool: &PgPool,
    owner: SecretOwner,
    name: &str,
    secret: &str,
) -> anyhow::Result<Result<SecretView, Change>> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !lock_owner(&mut transaction, owner, name).await? {
        return Ok(Err(Change::NotFound));
    }
    let Some(view) = insert_secret(&mut transaction, owner, name, secret, "api").await? else {
        return Ok(Err(Change::AlreadyExists));
    };
    transaction
        .commit()
        .await
        .context("committing the secret")?;
    Ok(Ok(view))
}

/// Retires one secret; refuses the last one, which would leave nothing to sign or verify with.
pub async fn retire_secret(
    pool: &PgPool,
    owner: SecretOwner,
    name: &str,
    secret_id: Uuid,
) -> anyhow::Result<Change> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !lock_owner(&mut transaction, owner, name).await? {
        return Ok(Change::NotFound);
    }
    if count_secrets(&mut transaction, owner, name).await? <= 1 {
        let (_, secrets, owner_column) = owner.tables();
        let is_theirs: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {secrets} WHERE {owner_column} = $1 AND id = $2)"
        ))
        .bind(name)
        .bind(secret_id)
        .fetch_one(&mut *transaction)
        .await
        .context("looking up the secret")?;
        return Ok(if is_theirs {
            Change::LastSecret
        } else {
            Change::NotFound
        });
    }
    let (_, secrets, owner_column) = owner.tables();
    let removed = sqlx::query(&format!(
        "DELETE FROM {secrets} WHERE {owner_column} = $1 AND id = $2"
    ))
    .bind(name)
    .bind(secret_id)
    .execute(&mut *transaction)
    .await
    .context("retiring the secret")?
    .rows_affected();
    if removed == 0 {
        return Ok(Change::NotFound);
    }
    touch_owner(&mut transaction, owner, name).await?;
    transaction
        .commit()
        .await
        .context("committing the retirement")?;
    Ok(Change::Done)
}

/// A source's settings as stored; its secrets live in `source_secrets`.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SourceRecord {
    pub name: String,
    pub plugin: String,
    pub config: String,
    pub signature_tolerance_seconds: Option<i64>,
    pub rate_limit_requests_per_second: Option<f64>,
    pub rate_limit_burst: Option<i32>,
    /// The `[sources.limits]` overrides as a JSON object.
    pub limit_overrides: serde_json::Value,
    pub dedupe_on_body: bool,
}

/// A stored source with its secrets, as every host process serves it.
#[derive(Clone, Debug)]
pub struct StoredSource {
    pub record: SourceRecord,
    pub secrets: Vec<(SecretView, String)>,
    pub updated_at: DateTime<Utc>,
}

/// Writes a source's settings in `transaction`; `false` when `mode` refused the write.
async fn write_source_settings(
    transaction: &mut sqlx::PgConnection,
    source: &SourceRecord,
    mode: WriteMode,
) -> anyhow::Result<bool> {
    if mode == WriteMode::Update
        && !lock_owner(transaction, SecretOwner::Source, &source.name).await?
    {
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
    let written = sqlx::query(&format!(
        "INSERT INTO sources (name, plugin, config, signature_tolerance_seconds,
             rate_limit_requests_per_second, rate_limit_burst, limit_overrides, dedupe_on_body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         {on_conflict}"
    ))
    .bind(&source.name)
    .bind(&source.plugin)
    .bind(&source.config)
    .bind(source.signature_tolerance_seconds)
    .bind(source.rate_limit_requests_per_second)
    .bind(source.rate_limit_burst)
    .bind(&source.limit_overrides)
    .bind(source.dedupe_on_body)
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
) -> anyhow::Result<()> {
    for (source, secrets) in sources {
        let mut transaction = pool.begin().await.context("starting a transaction")?;
        write_source_settings(&mut transaction, source, WriteMode::Upsert).await?;
        replace_config_secrets(&mut transaction, SecretOwner::Source, &source.name, secrets)
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
) -> anyhow::Result<Change> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_source_settings(&mut transaction, source, WriteMode::Create).await? {
        return Ok(Change::AlreadyExists);
    }
    for secret in secrets {
        insert_secret(
            &mut transaction,
            SecretOwner::Source,
            &source.name,
            secret,
            "api",
        )
        .await?;
    }
    transaction
        .commit()
        .await
        .context("committing the source")?;
    Ok(Change::Done)
}

/// Replaces a source's settings, and all of its secrets with `secrets` when given.
pub async fn update_source(
    pool: &PgPool,
    source: &SourceRecord,
    secrets: Option<&[String]>,
) -> anyhow::Result<Change> {
    let mut transaction = pool.begin().await.context("starting a transaction")?;
    if !write_source_settings(&mut transaction, source, WriteMode::Update).await? {
        return Ok(Change::NotFound);
    }
    if let Some(secrets) = secrets {
        sqlx::query("DELETE FROM source_secrets WHERE source_name = $1")
            .bind(&source.name)
            .execute(&mut *transaction)
            .await
            .context("removing the old secrets")?;
        for secret in secrets {
            insert_secret(
                &mut transaction,
                SecretOwner::Source,
                &source.name,
                secret,
                "api",
            )
            .await?;
        }
        touch_owner(&mut transaction, SecretOwner::Source, &source.name).await?;
    }
    transaction
        .commit()
        .await
        .context("committing the source")?;
    Ok(Change::Done)
}

/// Deletes a source. Its stored requests and events stay until retention removes them.
pub async fn delete_source(pool: &PgPool, name: &str) -> anyhow::Result<Change> {
    let deleted = sqlx::query("DELETE FROM sources WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await
        .context("deleting the source")?
        .rows_affected();
    Ok(if deleted == 0 {
        Change::NotFound
    } else {
        Change::Done
    })
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    #[sqlx(flatten)]
    record: SourceRecord,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SourceSecretRow {
    source_name: String,
    secret: String,
    #[sqlx(flatten)]
    view: SecretView,
}

/// Every source with its secrets (values included: the ingest path verifies with them).
pub async fn load_sources(pool: &PgPool) -> anyhow::Result<Vec<StoredSource>> {
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
        .map(|row| StoredSource {
            secrets: secrets_by_source
                .remove(&row.record.name)
                .unwrap_or_default(),
            record: row.record,
            updated_at: row.updated_at,
        })
        .collect())
}
