//! `LISTEN`/`NOTIFY`: a wake-up channel from one host process to the others (new jobs, a newly
//! activated plugin version). Notifications only wake a waiter early; every waiter also polls,
//! so a lost notification delays work without losing it.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::time::Instant;

/// A `LISTEN` connection on one channel that reconnects by itself, at a bounded rate.
pub struct Notifications {
    pool: PgPool,
    channel: &'static str,
    listener: Option<PgListener>,
    retry_wait: Duration,
    /// The earliest time the next connection may be tried, set when one failed.
    next_try: Option<Instant>,
    /// Why the first connection failed, for the first `recv` to report.
    first_error: Option<sqlx::Error>,
}

/// Listens on `channel` through `pool`, connecting at once so that nothing sent from now on is
/// missed. If that fails, the first `recv` returns the error and the connection is tried again
/// after `retry_wait`; a connection lost later is tried again at most once per `retry_wait`.
pub async fn pg_listen(
    pool: &PgPool,
    channel: &'static str,
    retry_wait: Duration,
) -> Notifications {
    let mut notifications = Notifications {
        pool: pool.clone(),
        channel,
        listener: None,
        retry_wait,
        next_try: None,
        first_error: None,
    };
    if let Err(error) = notifications.connect().await {
        notifications.next_try = Some(Instant::now() + retry_wait);
        notifications.first_error = Some(error);
    }
    notifications
}

impl Notifications {
    /// Waits for the next notification on the channel. An error means the connection could not
    /// be made or was lost; it is tried again by the next call.
    ///
    /// While the database refuses connections every try fails at once, so a caller looping on
    /// `recv` would reconnect in a tight loop and flood the server's accept queue just when it
    /// is struggling. The wait before the next try is therefore kept here as a deadline rather
    /// than a sleep in the caller: it holds however often `recv` is called and even when the
    /// caller drops the future for another branch of a `select!`. Cancelling is safe: nothing
    /// is lost but the notification itself, which the callers' polling covers.
    pub async fn recv(&mut self) -> Result<(), sqlx::Error> {
        if let Some(error) = self.first_error.take() {
            return Err(error);
        }
        if let Some(next_try) = self.next_try {
            tokio::time::sleep_until(next_try).await;
        }
        let result = self.recv_now().await;
        self.next_try = match result {
            Ok(()) => None,
            Err(_) => Some(Instant::now() + self.retry_wait),
        };
        result
    }

    async fn connect(&mut self) -> Result<&mut PgListener, sqlx::Error> {
        let listener = match self.listener.take() {
            Some(listener) => listener,
            None => {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(self.channel).await?;
                listener
            }
        };
        Ok(self.listener.insert(listener))
    }

    async fn recv_now(&mut self) -> Result<(), sqlx::Error> {
        // A lost connection is reconnected (and listens again) inside `PgListener::recv`.
        self.connect().await?.recv().await.map(drop)
    }
}
