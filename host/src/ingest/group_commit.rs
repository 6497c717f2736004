//! Group commit: concurrent ingest requests are written together, so that durable throughput
//! grows with concurrency instead of paying one commit per request.
//!
//! Each request submits its write and waits for its own outcome, which arrives only after the
//! transaction holding its rows has committed. A few writer tasks take turns: while one commits,
//! the next collects whatever arrived meanwhile (up to `batch_max_requests`) into its batch.
//! A batch PostgreSQL refuses is retried write by write, so one bad request fails alone.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::model::ingest::{IngestOutcome, IngestWrite};
use crate::store;
use crate::store::error::StoreError;

struct PendingWrite {
    write: IngestWrite,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// The submitting side of the group-commit queue.
#[derive(Clone)]
pub struct IngestQueue {
    sender: mpsc::Sender<PendingWrite>,
}

/// How the queue batches.
#[derive(Clone, Copy, Debug)]
pub struct IngestQueueSettings {
    pub batch_max_requests: usize,
    pub writers: usize,
    pub dedupe_window: Duration,
}

impl IngestQueue {
    /// Starts the writer tasks. They stop when every `IngestQueue` clone is dropped.
    pub fn start(pool: PgPool, settings: IngestQueueSettings) -> IngestQueue {
        let (sender, receiver) = mpsc::channel::<PendingWrite>(settings.batch_max_requests * 8);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..settings.writers {
            tokio::spawn(run_writer(pool.clone(), receiver.clone(), settings));
        }
        IngestQueue { sender }
    }

    /// Submits one write and waits until it is committed (or the store failed).
    pub async fn write(&self, write: IngestWrite) -> Result<IngestOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(PendingWrite { write, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the ingest writers have stopped".to_owned()))?;
        outcome.await.map_err(|_| {
            StoreError::Unavailable("the ingest writer stopped before answering".to_owned())
        })?
    }
}

async fn run_writer(
    pool: PgPool,
    receiver: Arc<Mutex<mpsc::Receiver<PendingWrite>>>,
    settings: IngestQueueSettings,
) {
    let mut batch: Vec<PendingWrite> = Vec::with_capacity(settings.batch_max_requests);
    loop {
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < settings.batch_max_requests {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (writes, replies): (Vec<IngestWrite>, Vec<_>) = batch
            .drain(..)
            .map(|pending| (pending.write, pending.reply))
            .unzip();
        let outcomes = write_or_split(&pool, &writes, settings.dedupe_window).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A requester that went away still had its rows committed; nothing to do.
            let _ = reply.send(outcome);
        }
    }
}

/// Writes the batch in one transaction. When PostgreSQL refuses it (one write holds something
/// it cannot store), each write is tried alone, so that only the bad one fails and the others
/// are committed; when the database is out of reach, every write fails at once.
pub async fn write_or_split(
    pool: &PgPool,
    writes: &[IngestWrite],
    dedupe_window: Duration,
) -> Vec<Result<IngestOutcome, StoreError>> {
    let error =
        match store::ingest::write_batch(pool, writes, dedupe_window, chrono::Utc::now()).await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(error) => error,
        };
    if error.is_row_refusal() && writes.len() > 1 {
        tracing::warn!(
            "the database refused an ingest batch of {} requests ({error}); storing them one by one",
            writes.len()
        );
        return write_one_by_one(pool, writes, dedupe_window).await;
    }
    tracing::error!(
        "an ingest batch of {} requests was not stored: {error}",
        writes.len()
    );
    writes.iter().map(|_| Err(error.clone())).collect()
}

/// Stores each write in its own transaction. A write refused alone fails alone; one that meets
/// an outage fails with every write after it, without trying them against a database that is
/// failing as a whole.
async fn write_one_by_one(
    pool: &PgPool,
    writes: &[IngestWrite],
    dedupe_window: Duration,
) -> Vec<Result<IngestOutcome, StoreError>> {
    let mut outcomes = Vec::with_capacity(writes.len());
    for write in writes {
        let single = std::slice::from_ref(write);
        match store::ingest::write_batch(pool, single, dedupe_window, chrono::Utc::now()).await {
            Ok(mut outcome) => outcomes.push(Ok(outcome.remove(0))),
            Err(error) if error.is_row_refusal() => {
                tracing::error!("an ingest request was not stored: {error}");
                outcomes.push(Err(error));
            }
            Err(error) => {
                let left = writes.len() - outcomes.len();
                tracing::error!("{left} ingest requests were not stored: {error}");
                outcomes.extend((0..left).map(|_| Err(error.clone())));
                break;
            }
        }
    }
    outcomes
}
