//! The delivery worker: claims due jobs, delivers them, records every attempt, and moves each
//! job on (delivered, retrying with backoff, failed, dead). It wakes on `NOTIFY wasmhook_jobs`
//! from the ingest transaction, with a polling fallback, and enforces per-destination
//! concurrency, rate limits and a circuit breaker. Several workers (in one or many processes)
//! share a database: `SKIP LOCKED` claims keep them off each other's jobs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use uuid::Uuid;

use tracing::Instrument;

use crate::delivery::attempt::Deliverer;
use crate::delivery::breaker::{Admission, CircuitBreaker, Transition};
use crate::delivery::retry::{AttemptOutcome, NextStep};
use crate::metrics;
use crate::model::destination::Destination;
use crate::rate_limit::TokenBucket;
use crate::store::job_state::JobState;
use crate::store::jobs::{self, ClaimedJob, FinishedAttempt};

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Polling fallback when no notification arrives.
    pub poll_interval: Duration,
    /// Most jobs claimed for one destination at a time (also bounded by its concurrency).
    pub claim_batch: usize,
    /// How often expired leases are returned to the queue.
    pub rescue_interval: Duration,
    /// Added to a destination's timeout to make a claim's lease.
    pub lease_margin: Duration,
    /// How long in-flight deliveries may finish after shutdown is requested.
    pub shutdown_grace: Duration,
    /// Deliver to private addresses for every destination (tests, local examples).
    pub allow_private_networks: bool,
    /// The only ports a destination URL may name; empty: any port.
    pub allowed_ports: Vec<u16>,
}

/// A running worker.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops claiming, lets in-flight deliveries finish within the grace period, and gives
    /// back the leases of those that did not.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops the worker at once, without waiting: its leases expire and are rescued.
    pub fn abort(&self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

/// Starts a worker on `pool`.
pub fn start(pool: PgPool, settings: WorkerSettings) -> WorkerHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(pool, settings, stopped));
    WorkerHandle { stop, task }
}

/// Per-destination state that lives in this worker.
struct DestinationState {
    concurrency: Arc<Semaphore>,
    concurrency_limit: usize,
    rate_limiter: Option<TokenBucket>,
    rate_limit_per_second: Option<f64>,
    breaker: CircuitBreaker,
}

impl DestinationState {
    fn new(destination: &Destination) -> DestinationState {
        DestinationState {
            concurrency: Arc::new(Semaphore::new(destination.max_concurrency)),
            concurrency_limit: destination.max_concurrency,
            rate_limiter: destination
                .rate_limit_per_second
                .map(|rate| TokenBucket::new(rate, rate.ceil().max(1.0) as u32, Instant::now())),
            rate_limit_per_second: destination.rate_limit_per_second,
            breaker: CircuitBreaker::new(
                destination.breaker_failure_threshold,
                destination.breaker_cooldown,
            ),
        }
    }

    /// How many jobs may be claimed now.
    fn claimable(&mut self, batch: usize, now: Instant) -> usize {
        let free = self.concurrency.available_permits();
        let allowed_by_breaker = match self.breaker.admit(now) {
            Admission::Allowed => free,
            // One probe decides; it may only start when nothing else is in flight.
            Admission::Probe => usize::from(free == self.concurrency_limit),
            Admission::Refused => 0,
        };
        let mut claimable = allowed_by_breaker.min(batch);
        if let Some(bucket) = &mut self.rate_limiter {
            let mut tokens = 0;
            while tokens < claimable && bucket.try_take(now).is_ok() {
                tokens += 1;
            }
            claimable = tokens;
        }
        claimable
    }

    /// After a claim: a probe that did not start (no due job, no token, a failed claim, other
    /// deliveries still in flight) is tried again next round instead of waiting forever.
    fn probe_claimed(&mut self, claimed: usize) {
        if claimed == 0 {
            self.breaker.probe_not_started(Instant::now());
        }
    }

    /// Counts an outcome against the breaker; when the breaker changes, returns whether it
    /// opened and a log line.
    fn record(
        &mut self,
        outcome: &AttemptOutcome,
        destination: &Destination,
    ) -> Option<(bool, String)> {
        self.breaker.configure(
            destination.breaker_failure_threshold,
            destination.breaker_cooldown,
        );
        let transition = match outcome {
            AttemptOutcome::Delivered => self.breaker.succeeded(),
            AttemptOutcome::Retryable { .. } | AttemptOutcome::Gone => {
                self.breaker.failed(Instant::now())
            }
            // A 4xx means the receiver is up: a probe that gets one closes the breaker.
            AttemptOutcome::Failed if !self.breaker.is_closed() => self.breaker.succeeded(),
            AttemptOutcome::Failed => None,
        };
        transition.map(|transition| match transition {
            Transition::Opened {
                consecutive_failures,
            } => (
                true,
                format!(
                    "circuit breaker opened after {consecutive_failures} consecutive failures; next probe in {:?}",
                    self.breaker.cooldown()
                ),
            ),
            Transition::Closed => (
                false,
                "circuit breaker closed: the receiver answered the probe".to_owned(),
            ),
        })
    }
}

struct Shared {
    pool: PgPool,
    deliverer: Deliverer,
    states: Mutex<HashMap<String, DestinationState>>,
    in_flight: Mutex<HashSet<(Uuid, i32)>>,
    finished: mpsc::UnboundedSender<FinishedAttempt>,
    capacity_freed: Notify,
}

async fn run(pool: PgPool, settings: WorkerSettings, mut stopped: watch::Receiver<bool>) {
    let (finished_sender, finished_receiver) = mpsc::unbounded_channel();
    let finisher = tokio::spawn(run_finisher(pool.clone(), finished_receiver));
    let shared = Arc::new(Shared {
        pool: pool.clone(),
        deliverer: Deliverer::new(settings.allowed_ports.clone()),
        states: Mutex::new(HashMap::new()),
        in_flight: Mutex::new(HashSet::new()),
        finished: finished_sender,
        capacity_freed: Notify::new(),
    });
    let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
        Ok(mut listener) => match listener.listen("wasmhook_jobs").await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!("LISTEN failed, polling only: {error}");
                None
            }
        },
        Err(error) => {
            tracing::warn!("LISTEN connection failed, polling only: {error}");
            None
        }
    };
    let mut destinations: Vec<Destination> = Vec::new();
    let mut destinations_loaded_at: Option<Instant> = None;
    let mut last_rescue = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();

    while !*stopped.borrow() {
        if destinations_loaded_at.is_none_or(|at| at.elapsed() > Duration::from_secs(2)) {
            match crate::store::destinations::load_destinations(
                &pool,
                settings.allow_private_networks,
            )
            .await
            {
                Ok(loaded) => {
                    destinations = loaded;
                    destinations_loaded_at = Some(Instant::now());
                    // A deleted destination takes its state and its HTTP client with it, so
                    // the maps stay as large as the destination list.
                    shared
                        .states
                        .lock()
                        .expect("worker state lock poisoned")
                        .retain(|name, _| destinations.iter().any(|d| d.name == *name));
                    shared.deliverer.retain_clients(&destinations);
                }
                Err(error) => tracing::warn!("cannot load destinations: {error:#}"),
            }
        }
        if last_rescue.elapsed() >= settings.rescue_interval {
            last_rescue = Instant::now();
            match jobs::rescue_expired_leases(&pool).await {
                Ok(0) => {}
                Ok(rescued) => tracing::warn!(
                    "returned {rescued} jobs whose lease expired (a worker stopped mid-delivery) to the queue"
                ),
                Err(error) => tracing::warn!("cannot rescue expired leases: {error:#}"),
            }
        }

        let mut claimed_any = false;
        for destination in destinations.iter().filter(|d| !d.paused) {
            let claimable = {
                let mut states = shared.states.lock().expect("worker state lock poisoned");
                let state = states
                    .entry(destination.name.clone())
                    .or_insert_with(|| DestinationState::new(destination));
                if state.concurrency_limit != destination.max_concurrency
                    || state.rate_limit_per_second != destination.rate_limit_per_second
                {
                    *state = DestinationState::new(destination);
                }
                state.claimable(settings.claim_batch, Instant::now())
            };
            if claimable == 0 {
                continue;
            }
            let lease = destination.timeout + settings.lease_margin;
            let jobs = match jobs::claim(&pool, &destination.name, claimable, lease).await {
                Ok(jobs) => jobs,
                Err(error) => {
                    tracing::warn!(destination = %destination.name, "cannot claim jobs: {error:#}");
                    Vec::new()
                }
            };
            if let Some(state) = shared
                .states
                .lock()
                .expect("worker state lock poisoned")
                .get_mut(&destination.name)
            {
                state.probe_claimed(jobs.len());
            }
            claimed_any |= !jobs.is_empty();
            for job in jobs {
                let permit = {
                    let states = shared.states.lock().expect("worker state lock poisoned");
                    states[&destination.name]
                        .concurrency
                        .clone()
                        .try_acquire_owned()
                        .expect("no more jobs are claimed than there are free permits")
                };
                shared
                    .in_flight
                    .lock()
                    .expect("in-flight lock poisoned")
                    .insert((job.job_id, job.attempt));
                let shared = shared.clone();
                let destination = destination.clone();
                tasks.spawn(async move {
                    deliver_one(&shared, &destination, job).await;
                    drop(permit);
                    shared.capacity_freed.notify_one();
                });
            }
        }
        while tasks.try_join_next().is_some() {}
        if claimed_any {
            // There may be more due work right away; loop without waiting.
            continue;
        }
        tokio::select! {
            _ = stopped.changed() => {}
            _ = shared.capacity_freed.notified() => {}
            _ = tokio::time::sleep(settings.poll_interval) => {}
            notification = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            } => {
                if let Err(error) = notification {
                    tracing::warn!("lost the LISTEN connection, polling: {error}");
                    tokio::time::sleep(settings.poll_interval).await;
                }
            }
        }
    }

    // Shutdown: no more claims; in-flight deliveries get the grace period.
    let graceful = tokio::time::timeout(settings.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if graceful.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let unfinished: Vec<(Uuid, i32)> = shared
        .in_flight
        .lock()
        .expect("in-flight lock poisoned")
        .iter()
        .copied()
        .collect();
    drop(shared);
    let _ = finisher.await;
    if !unfinished.is_empty() {
        match jobs::release(&pool, &unfinished).await {
            Ok(released) => tracing::info!("gave back {released} unfinished deliveries"),
            Err(error) => tracing::warn!(
                "could not give back unfinished deliveries (their leases will expire): {error:#}"
            ),
        }
    }
}

async fn deliver_one(shared: &Shared, destination: &Destination, job: ClaimedJob) {
    let span = tracing::info_span!(
        "delivery",
        destination = %destination.name,
        job_id = %job.job_id,
        event_id = %job.event.id,
        attempt = job.attempt
    );
    deliver_one_in_span(shared, destination, job)
        .instrument(span)
        .await
}

async fn deliver_one_in_span(shared: &Shared, destination: &Destination, job: ClaimedJob) {
    let started_at = chrono::Utc::now();
    let body = job.event.to_cloudevent_json();
    let record = shared
        .deliverer
        .attempt(destination, &job.job_id.to_string(), &body)
        .await;

    let breaker_change = shared
        .states
        .lock()
        .expect("worker state lock poisoned")
        .get_mut(&destination.name)
        .and_then(|state| state.record(&record.outcome, destination));
    metrics::delivery_attempt(&destination.name, record.outcome.label(), record.duration);
    if let Some((opened, change)) = breaker_change {
        metrics::breaker_transition(&destination.name, opened);
        tracing::warn!("{change}");
    }

    let (next_state, next_attempt_at) = match &record.outcome {
        AttemptOutcome::Delivered => (JobState::Delivered, None),
        AttemptOutcome::Failed => (JobState::Failed, None),
        AttemptOutcome::Gone => {
            tracing::warn!(
                "the receiver answered 410 Gone: pausing the destination until an operator resumes it"
            );
            metrics::destination_paused(&destination.name);
            if let Err(error) =
                crate::store::destinations::set_paused(&shared.pool, &destination.name, true).await
            {
                tracing::error!("could not pause the destination: {error:#}");
            }
            (JobState::Failed, None)
        }
        AttemptOutcome::Retryable {
            retry_after,
            throttled,
        } => {
            let jitter = fastrand::f64() * 2.0 - 1.0;
            match crate::delivery::retry::next_step(
                &destination.retry_policy,
                (job.attempt - job.attempt_base).max(0) as u32,
                *retry_after,
                *throttled,
                jitter,
            ) {
                NextStep::RetryIn(delay) => (
                    JobState::Retrying,
                    Some(started_at + chrono::Duration::from_std(delay).unwrap_or_default()),
                ),
                NextStep::Dead => (JobState::Dead, None),
            }
        }
    };
    let _ = shared.finished.send(FinishedAttempt {
        job_id: job.job_id,
        attempt: job.attempt,
        started_at,
        duration: record.duration,
        status_code: record.status_code,
        response_body: record.response_body,
        error: record.error,
        outcome: record.outcome.label(),
        next_state,
        next_attempt_at,
    });
    shared
        .in_flight
        .lock()
        .expect("in-flight lock poisoned")
        .remove(&(job.job_id, job.attempt));
}

/// Writes finished attempts in batches: whatever arrived while the previous batch committed.
async fn run_finisher(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<FinishedAttempt>) {
    let mut batch = Vec::new();
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        while batch.len() < 1024 {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Bounded retries: if the database stays away, the leases expire and the rescuer
        // returns these jobs, so they are delivered again rather than lost.
        for attempt in 0..5 {
            match jobs::finish(&pool, &batch).await {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(
                        "could not record {} attempts (try {attempt}): {error:#}",
                        batch.len()
                    );
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        batch.clear();
    }
}
