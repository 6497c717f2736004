//! The delivery worker: claims due jobs, delivers them, records every attempt, and moves each
//! job on (delivered, retrying with backoff, failed, dead). It wakes on `NOTIFY wasmhook_jobs`
//! from the ingest transaction, with a polling fallback, and enforces per-destination
//! concurrency, rate limits and a circuit breaker. Several workers (in one or many processes)
//! share a database: `SKIP LOCKED` claims keep them off each other's jobs.
//!
//! `run` loops over four steps until its token is cancelled: refresh (the destinations, now
//! and then), claim round (claim and start what each destination may take), wait (for a
//! notification, freed capacity or the poll interval) and, on stop, drain. `run_once` is one
//! refresh, one claim round and a drain, for callers that want to step the worker themselves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use tracing::Instrument;

use crate::delivery::attempt::Deliverer;
use crate::delivery::breaker::{Admission, CircuitBreaker, Transition};
use crate::delivery::retry::AttemptOutcome;
use crate::metrics;
use crate::model::destination::Destination;
use crate::rate_limit::TokenBucket;
use crate::store::job_state::JobState;
use crate::store::jobs::{self, ClaimedJob, FinishedAttempt};
use crate::store::notify::Notifications;

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
    /// How often the destinations are read again.
    pub destination_refresh: Duration,
    /// The least time between two tries to get a lost `LISTEN` connection back.
    pub listen_retry: Duration,
}

/// What a worker's deliveries came to: how many jobs it claimed, and the state each attempt
/// moved its job to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub claimed: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
    pub dead: usize,
}

impl DeliveryCounts {
    fn count(&mut self, state: JobState) {
        match state {
            JobState::Delivered => self.delivered += 1,
            JobState::Retrying => self.retrying += 1,
            JobState::Failed => self.failed += 1,
            JobState::Dead => self.dead += 1,
            // A finished attempt never leaves its job due or running, so there is nothing to count.
            JobState::Due | JobState::Running => {}
        }
    }
}

/// Runs the worker on `pool` until `token` is cancelled; then stops claiming, lets in-flight
/// deliveries finish within the grace period, and gives back the leases of those that did not.
pub async fn run(pool: PgPool, settings: WorkerSettings, token: CancellationToken) {
    let mut worker = Worker::new(pool.clone(), settings.clone());
    let notifications = tokio::select! {
        () = token.cancelled() => None,
        notifications = crate::store::notify::pg_listen(&pool, "wasmhook_jobs", settings.listen_retry) => Some(notifications),
    };
    if let Some(mut notifications) = notifications {
        while !token.is_cancelled() {
            worker.refresh().await;
            if worker.claim_round().await > 0 {
                // There may be more due work right away; loop without waiting.
                continue;
            }
            worker.wait(&mut notifications, &token).await;
        }
    }
    worker.drain().await;
}

/// One step of a worker: reads the destinations, claims what is due for each (as far as its
/// concurrency, rate limit and breaker allow), delivers it and records every attempt before
/// returning. Leases, retry times and the breakers behave as in `run`, so a test can step the
/// queue with this instead of waiting for a running worker; the breakers start closed, since
/// they live in a worker and this one lasts one round.
pub async fn run_once(pool: PgPool, settings: WorkerSettings) -> DeliveryCounts {
    let mut worker = Worker::new(pool, settings);
    worker.refresh().await;
    worker.claim_round().await;
    worker.drain().await
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
            concurrency: Arc::new(Semaphore::new(destination.settings.max_concurrency())),
            concurrency_limit: destination.settings.max_concurrency(),
            rate_limiter: destination
                .settings
                .rate_limit_per_second
                .map(|rate| TokenBucket::new(rate, rate.ceil().max(1.0) as u32, Instant::now())),
            rate_limit_per_second: destination.settings.rate_limit_per_second,
            breaker: CircuitBreaker::new(
                destination.settings.breaker_failure_threshold,
                destination.settings.breaker_cooldown(),
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
            destination.settings.breaker_failure_threshold,
            destination.settings.breaker_cooldown(),
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
    counts: Mutex<DeliveryCounts>,
}

impl Shared {
    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, DestinationState>> {
        self.states.lock().expect("worker state lock poisoned")
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<(Uuid, i32)>> {
        self.in_flight.lock().expect("in-flight lock poisoned")
    }
}

/// One worker's loop state.
struct Worker {
    shared: Arc<Shared>,
    settings: WorkerSettings,
    finisher: tokio::task::JoinHandle<()>,
    destinations: Vec<Destination>,
    destinations_loaded_at: Option<Instant>,
    last_rescue: Instant,
    deliveries: tokio::task::JoinSet<()>,
}

impl Worker {
    fn new(pool: PgPool, settings: WorkerSettings) -> Worker {
        let (finished, finished_receiver) = mpsc::unbounded_channel();
        let finisher = tokio::spawn(run_finisher(pool.clone(), finished_receiver));
        let shared = Arc::new(Shared {
            pool,
            deliverer: Deliverer::new(settings.allowed_ports.clone()),
            states: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            finished,
            capacity_freed: Notify::new(),
            counts: Mutex::new(DeliveryCounts::default()),
        });
        Worker {
            shared,
            settings,
            finisher,
            destinations: Vec::new(),
            destinations_loaded_at: None,
            last_rescue: Instant::now(),
            deliveries: tokio::task::JoinSet::new(),
        }
    }

    /// Reads the destinations when they are older than `destination_refresh`, and returns
    /// expired leases to the queue every `rescue_interval`.
    async fn refresh(&mut self) {
        let pool = &self.shared.pool;
        if self
            .destinations_loaded_at
            .is_none_or(|at| at.elapsed() > self.settings.destination_refresh)
        {
            match crate::store::destinations::load_destinations(
                pool,
                self.settings.allow_private_networks,
            )
            .await
            {
                Ok(loaded) => {
                    self.destinations = loaded;
                    self.destinations_loaded_at = Some(Instant::now());
                    // A deleted destination takes its state and its HTTP client with it, so
                    // the maps stay as large as the destination list.
                    let destinations = &self.destinations;
                    self.shared
                        .states()
                        .retain(|name, _| destinations.iter().any(|d| d.name == *name));
                    self.shared.deliverer.retain_clients(destinations);
                }
                Err(error) => tracing::warn!("cannot load destinations: {error:#}"),
            }
        }
        if self.last_rescue.elapsed() >= self.settings.rescue_interval {
            self.last_rescue = Instant::now();
            match jobs::rescue_expired_leases(pool).await {
                Ok(0) => {}
                Ok(rescued) => tracing::warn!(
                    "returned {rescued} jobs whose lease expired (a worker stopped mid-delivery) to the queue"
                ),
                Err(error) => tracing::warn!("cannot rescue expired leases: {error:#}"),
            }
        }
    }

    /// Claims what each destination may take now and starts delivering it; returns how many
    /// jobs were claimed.
    async fn claim_round(&mut self) -> usize {
        // Taken out for the round so that claiming may borrow the worker; put back after.
        let destinations = std::mem::take(&mut self.destinations);
        let mut claimed = 0;
        for destination in destinations
            .iter()
            .filter(|destination| !destination.settings.paused)
        {
            claimed += self.claim_for(destination).await;
        }
        self.destinations = destinations;
        // Finished deliveries are collected here so the set stays as large as what is in
        // flight.
        while self.deliveries.try_join_next().is_some() {}
        self.shared
            .counts
            .lock()
            .expect("counts lock poisoned")
            .claimed += claimed;
        claimed
    }

    /// How many jobs `destination` may take now; its state is made (or made again, when its
    /// concurrency or rate limit changed) on the way.
    fn claimable(&self, destination: &Destination) -> usize {
        let mut states = self.shared.states();
        let state = states
            .entry(destination.name.clone())
            .or_insert_with(|| DestinationState::new(destination));
        if state.concurrency_limit != destination.settings.max_concurrency()
            || state.rate_limit_per_second != destination.settings.rate_limit_per_second
        {
            *state = DestinationState::new(destination);
        }
        state.claimable(self.settings.claim_batch, Instant::now())
    }

    /// Claims and starts the jobs `destination` may take; returns how many.
    async fn claim_for(&mut self, destination: &Destination) -> usize {
        let claimable = self.claimable(destination);
        if claimable == 0 {
            return 0;
        }
        let lease = destination.settings.timeout() + self.settings.lease_margin;
        let claimed =
            match jobs::claim(&self.shared.pool, &destination.name, claimable, lease).await {
                Ok(jobs) => jobs,
                Err(error) => {
                    tracing::warn!(destination = %destination.name, "cannot claim jobs: {error:#}");
                    Vec::new()
                }
            };
        if let Some(state) = self.shared.states().get_mut(&destination.name) {
            state.probe_claimed(claimed.len());
        }
        let count = claimed.len();
        for job in claimed {
            self.start_delivery(destination, job);
        }
        count
    }

    /// Delivers one claimed job in its own task, holding one of its destination's permits.
    fn start_delivery(&mut self, destination: &Destination, job: ClaimedJob) {
        let permit = self.shared.states()[&destination.name]
            .concurrency
            .clone()
            .try_acquire_owned()
            .expect("no more jobs are claimed than there are free permits");
        self.shared.in_flight().insert((job.job_id, job.attempt));
        let shared = self.shared.clone();
        let destination = destination.clone();
        self.deliveries.spawn(async move {
            deliver_one(&shared, &destination, job).await;
            drop(permit);
            shared.capacity_freed.notify_one();
        });
    }

    /// Waits for something that may make a job claimable: a notification of new jobs, a
    /// delivery that freed capacity, the poll interval, or the stop.
    async fn wait(&self, notifications: &mut Notifications, token: &CancellationToken) {
        tokio::select! {
            () = token.cancelled() => {}
            () = self.shared.capacity_freed.notified() => {}
            () = tokio::time::sleep(self.settings.poll_interval) => {}
            received = notifications.recv() => {
                // `Notifications` bounds how often the connection is tried again; polling
                // goes on meanwhile.
                if let Err(error) = received {
                    metrics::listen_connection_failed("jobs");
                    tracing::warn!("lost the LISTEN connection, polling: {error}");
                }
            }
        }
    }

    /// No more claims: in-flight deliveries get the grace period, the attempts are written,
    /// and the leases of deliveries that did not finish are given back. Returns the counts.
    async fn drain(mut self) -> DeliveryCounts {
        let graceful = tokio::time::timeout(self.settings.shutdown_grace, async {
            while self.deliveries.join_next().await.is_some() {}
        })
        .await;
        if graceful.is_err() {
            self.deliveries.abort_all();
            while self.deliveries.join_next().await.is_some() {}
        }
        let unfinished: Vec<(Uuid, i32)> = self.shared.in_flight().iter().copied().collect();
        let counts = *self.shared.counts.lock().expect("counts lock poisoned");
        let pool = self.shared.pool.clone();
        // The finisher ends when the last sender (held by `shared`) is gone.
        drop(self.shared);
        let _ = self.finisher.await;
        if !unfinished.is_empty() {
            match jobs::release(&pool, &unfinished).await {
                Ok(released) => tracing::info!("gave back {released} unfinished deliveries"),
                Err(error) => tracing::warn!(
                    "could not give back unfinished deliveries (their leases will expire): {error:#}"
                ),
            }
        }
        counts
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
        .states()
        .get_mut(&destination.name)
        .and_then(|state| state.record(&record.outcome, destination));
    metrics::delivery_attempt(&destination.name, record.outcome.label(), record.duration);
    if let Some((opened, change)) = breaker_change {
        metrics::breaker_transition(&destination.name, opened);
        tracing::warn!("{change}");
    }

    let next = crate::delivery::next_state::next_state(
        &record.outcome,
        &destination.settings.retry_policy(),
        (job.attempt - job.attempt_base).max(0) as u32,
        started_at,
        fastrand::f64() * 2.0 - 1.0,
    );
    if next.pause_destination {
        tracing::warn!(
            "the receiver answered 410 Gone: pausing the destination until an operator resumes it"
        );
        metrics::destination_paused(&destination.name);
        if let Err(error) =
            crate::store::destinations::set_paused(&shared.pool, &destination.name, true).await
        {
            tracing::error!("could not pause the destination: {error:#}");
        }
    }
    let _ = shared.finished.send(FinishedAttempt {
        job_id: job.job_id,
        attempt: job.attempt,
        started_at,
        duration: record.duration,
        status_code: record.status_code,
        response_body: record.response_body,
        error: record.error,
        outcome: record.outcome.label(),
        next_state: next.state,
        next_attempt_at: next.next_attempt_at,
    });
    shared
        .counts
        .lock()
        .expect("counts lock poisoned")
        .count(next.state);
    shared.in_flight().remove(&(job.job_id, job.attempt));
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
