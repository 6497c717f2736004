//! The HTTP server loop: hyper with a header read timeout (a client that trickles its headers,
//! slowloris-style, is disconnected instead of holding a connection open) and graceful
//! shutdown (in-flight requests get their answers, bounded by a deadline).
//!
//! Shutdown drains before it closes. Closing an idle keep-alive connection races with a client
//! that is just sending a request on it: the request is lost in flight and the client sees the
//! connection drop. So the listener closes first, and for a short drain period every answer
//! carries `Connection: close`; busy clients learn to reconnect (and are refused, so they retry
//! elsewhere) instead of reusing a connection that is about to close. Only then are the
//! connections still idle closed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long in-flight connections may finish after shutdown is requested.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How long connections keep serving, each answer closing its connection, before the idle ones
/// are closed.
const DRAIN_PERIOD: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` until `shutdown` resolves, then waits for in-flight
/// connections (at most 30 seconds).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    max_head_bytes: usize,
    shutdown: impl Future<Output = ()>,
) {
    let draining = Arc::new(AtomicBool::new(false));
    let router = router.layer(axum::middleware::map_response({
        let draining = draining.clone();
        move |mut response: axum::response::Response| {
            let draining = draining.load(Ordering::Relaxed);
            async move {
                if draining {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        }
    }));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // hyper's read buffer bounds the request head (431 beyond it); bodies stream through
        // it in pieces, so it does not bound them. hyper needs at least 8 KiB.
        .max_buf_size(max_head_bytes.max(8192));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Running out of file descriptors and similar conditions pass; back off
                        // briefly instead of spinning.
                        tracing::warn!("accepting a connection failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // Client disconnects and header timeouts end here; nothing to report.
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    draining.store(true, Ordering::Relaxed);
    tokio::time::sleep(DRAIN_PERIOD).await;
    if tokio::time::timeout(SHUTDOWN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {SHUTDOWN_DEADLINE:?}");
    }
}
