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
    /// `None` while there is no connection: the next `recv` makes one.
    listener: Option<PgListener>,
    retry_wait: Duration,
    /// The earliest time the next connection may be tried: `retry_wait` after the last try
    /// started or failed.
    next_try: Instant,
    /// Why the first connection failed, for the first `recv` to report.
    first_error: Option<sqlx::Error>,
}

/// Listens on `channel` through `pool`, connecting at once so that nothing sent from now on is
/// missed. If that fails, the first `recv` returns the error. Connections are tried at most
/// once per `retry_wait`.
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
        next_try: Instant::now(),
        first_error: None,
    };
    if let Err(error) = notifications.connect().await {
        notifications.first_error = Some(error);
    }
    notifications
}

impl Notifications {
    /// Waits for the next notification on the channel. An error means the connection could not
    /// be made or was lost; the next call makes a new one.
    ///
    /// While the database refuses connections every try fails at once, so a caller looping on
    /// `recv` would reconnect in a tight loop and flood the server's accept queue just when it
    /// is struggling. The time of the next try is therefore kept here rather than in a sleep of
    /// the caller's: it holds however often `recv` is called, and also when the caller drops the
    /// future for another branch of a `select!` (even in the middle of a try, which still
    /// counts). Cancelling is otherwise safe: a notification not yet read stays buffered on the
    /// connection, and the callers poll besides.
    pub async fn recv(&mut self) -> Result<(), sqlx::Error> {
        if let Some(error) = self.first_error.take() {
            return Err(error);
        }
        loop {
            if self.listener.is_none() {
                tokio::time::sleep_until(self.next_try).await;
                self.connect().await?;
            }
            let listener = self.listener.as_mut().expect("connected above");
            match listener.try_recv().await {
                Ok(Some(_)) => return Ok(()),
                // The connection was lost (reconnecting is left to this loop, at its pace).
                Ok(None) => self.listener = None,
                Err(error) => {
                    self.listener = None;
                    self.next_try = Instant::now() + self.retry_wait;
                    return Err(error);
                }
            }
        }
    }

    /// One connection try; whether it succeeds or fails, the next waits `retry_wait`.
    async fn connect(&mut self) -> Result<(), sqlx::Error> {
        self.next_try = Instant::now() + self.retry_wait;
        let result = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            // A lost connection is reported, not reconnected inside `PgListener`, so that
            // every try goes through `connect` and its pace.
            listener.eager_reconnect(false);
            listener.listen(self.channel).await?;
            Ok(listener)
        }
        .await;
        match result {
            Ok(listener) => {
                self.listener = Some(listener);
                Ok(())
            }
            Err(error) => {
                self.next_try = Instant::now() + self.retry_wait;
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A caller that polls every few milliseconds, dropping `recv` each time, still makes at
    /// most one connection try per `retry_wait` while the server refuses it.
    #[tokio::test]
    async fn a_refused_connection_is_tried_again_at_most_once_per_retry_wait() {
        // A "server" that counts connections and closes each at once, so every try fails fast.
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((connection, _)) = server.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(connection);
            }
        });
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy(&format!("postgres://wasmhook@127.0.0.1:{port}/nothing"))
            .unwrap();
        let mut notifications = pg_listen(&pool, "wasmhook_test", Duration::from_millis(300)).await;
        let mut failures = 0;
        let deadline = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < deadline {
            tokio::select! {
                received = notifications.recv() => {
                    assert!(received.is_err(), "the server closes every connection");
                    failures += 1;
                }
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        accepting.abort();
        let tries = tries.load(Ordering::SeqCst);
        assert!(failures >= 1, "the failed connection is reported");
        // At 0, 0.3, 0.6, 0.9 and 1.2 s at most; a loop paced by its caller makes hundreds.
        assert!(
            (2..=5).contains(&tries),
            "{tries} connection tries in 1.2 s"
        );
    }
}
