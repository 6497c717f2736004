//! The HTTP server loop every listener uses (the webhooks and the admin API): hyper with a
//! header read timeout (a client that trickles its headers, slowloris-style, is disconnected
//! instead of holding a connection open), a body read deadline (408), a cap on the connections
//! served at once, HTTP/1.1 only unless HTTP/2 is switched on (with stream limits), lingering
//! after early answers, and graceful shutdown (in-flight requests get their answers, bounded by
//! a deadline).
//!
//! Beyond the connection cap the loop stops accepting: new connections wait in the kernel's
//! accept queue (and are served as others close) rather than being refused, so a burst of
//! honest clients is slowed, not failed.
//!
//! An answer given before the body is read (413 for a declared oversized body, 401, 404)
//! would reach few clients if the connection closed at once: the unread body left in the
//! kernel's buffer makes it send a reset, and a client still writing its body sees a broken
//! pipe instead of the answer. So, as nginx's lingering close does, a body a handler drops
//! unread is read and discarded, for at most 5 seconds and 8 MiB, before the connection
//! closes.
//!
//! Shutdown drains before it closes. Closing an idle keep-alive connection races with a client
//! that is just sending a request on it: the request is lost in flight and the client sees the
//! connection drop. So the listener closes first, and for a short drain period every answer
//! carries `Connection: close`; busy clients learn to reconnect (and are refused, so they retry
//! elsewhere) instead of reusing a connection that is about to close. Only then are the
//! connections still idle closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

use crate::http_error::ApiError;

/// How long in-flight connections may finish after shutdown is requested.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How long connections keep serving, each answer closing its connection, before the idle ones
/// are closed.
const DRAIN_PERIOD: Duration = Duration::from_millis(500);

/// How long, and how much of it, a body dropped unread is read and discarded so that the
/// client sees the early answer.
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
const LINGER_MAX_BYTES: usize = 8 << 20;

/// HTTP/2 limits, when it is switched on: streams per connection, and the keep-alive ping that
/// closes a connection whose peer stopped answering.
const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);
const HTTP2_MAX_PENDING_RESETS: usize = 20;

/// How one listener serves its connections.
#[derive(Clone, Copy, Debug)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub max_head_bytes: usize,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub http2: bool,
}

impl ServeSettings {
    pub fn from_config(server: &crate::config::ServerConfig) -> ServeSettings {
        ServeSettings {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
            max_head_bytes: server.max_head_bytes,
            body_read_timeout: Duration::from_secs(server.body_read_timeout_seconds),
            max_connections: server.max_connections,
            http2: server.http2,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for in-flight
/// connections (at most 30 seconds).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let draining = Arc::new(AtomicBool::new(false));
    let router = close_while_draining(router, draining.clone());
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&settings);
    let connection_slots = Arc::new(Semaphore::new(settings.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the cap, connections wait in the accept queue.
        let slot = tokio::select! {
            slot = connection_slots.clone().acquire_owned() => {
                slot.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Running out of file descriptors and similar conditions pass; back off
                // briefly instead of spinning.
                tracing::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_read_timeout = settings.body_read_timeout;
        let service = hyper::service::service_fn(move |request| {
            serve_request(router.clone(), request, peer, body_read_timeout)
        });
        let io = TokioIo::new(stream);
        match &builder {
            ConnectionBuilder::Http1Only(http1) => {
                spawn_connection(graceful.watch(http1.serve_connection(io, service)), slot);
            }
            ConnectionBuilder::Auto(auto) => {
                let connection = auto.serve_connection(io, service).into_owned();
                spawn_connection(graceful.watch(connection), slot);
            }
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

/// While draining, every answer closes its connection.
fn close_while_draining(router: axum::Router, draining: Arc<AtomicBool>) -> axum::Router {
    router.layer(axum::middleware::map_response(
        move |mut response: Response| {
            let draining = draining.load(Ordering::Relaxed);
            async move {
                if draining {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        },
    ))
}

/// HTTP/1.1 alone, or HTTP/1.1 and HTTP/2 told apart by the preface.
enum ConnectionBuilder {
    Http1Only(hyper::server::conn::http1::Builder),
    Auto(Builder<TokioExecutor>),
}

fn connection_builder(settings: &ServeSettings) -> ConnectionBuilder {
    // hyper's read buffer bounds the request head (431 beyond it); bodies stream through it in
    // pieces, so it does not bound them. hyper needs at least 8 KiB.
    let max_buf_size = settings.max_head_bytes.max(8192);
    if !settings.http2 {
        // An HTTP/2 preface is then a malformed HTTP/1.1 request, and the connection closes.
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(max_buf_size)
            .max_header_size(settings.max_head_bytes);
        return ConnectionBuilder::Http1Only(http1);
    }
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(max_buf_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(settings.max_head_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE)
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS);
    ConnectionBuilder::Auto(builder)
}

/// Serves one connection to its end, then frees its slot under the connection cap.
fn spawn_connection<C>(connection: C, slot: tokio::sync::OwnedSemaphorePermit)
where
    C: Future + Send + 'static,
{
    tokio::spawn(async move {
        // Client disconnects and header timeouts end here; nothing to report.
        let _ = connection.await;
        drop(slot);
    });
}

/// Runs one request through the router with the peer's address in its extensions and its body
/// under the read deadline; a body that missed the deadline is answered 408, whatever the
/// handler made of the failed read.
async fn serve_request(
    mut router: axum::Router,
    request: Request<Incoming>,
    peer: SocketAddr,
    body_read_timeout: Duration,
) -> Result<Response, Infallible> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = GuardedBody {
        inner: Some(body),
        deadline: Box::pin(tokio::time::sleep(body_read_timeout)),
        timed_out: timed_out.clone(),
        finished: false,
    };
    let request = Request::from_parts(parts, axum::body::Body::new(body));
    let response = router.call(request).await?;
    if timed_out.load(Ordering::Relaxed) {
        let mut response = ApiError::body_read_timeout(body_read_timeout.as_secs()).into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    Ok(response)
}

/// The body read deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyReadTimedOut;

/// A request body that fails once its deadline passes, and that is read to its end in the
/// background (bounded) when dropped unread.
struct GuardedBody {
    inner: Option<Incoming>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
    /// The body ended, failed or timed out: nothing is left to linger for.
    finished: bool,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut().filter(|_| !this.finished) else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(error))) => {
                this.finished = true;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(context).is_ready() {
                    this.finished = true;
                    this.timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyReadTimedOut.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) if !self.finished => inner.size_hint(),
            _ => SizeHint::with_exact(0),
        }
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(inner) = self.inner.take()
            && !inner.is_end_stream()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(linger(inner));
        }
    }
}

/// Reads and discards what is left of a body, bounded in time and size, so that hyper can
/// finish the connection without the reset an unread body causes.
async fn linger(mut body: Incoming) {
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        let mut discarded = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            discarded += frame.data_ref().map_or(0, Bytes::len);
            if discarded > LINGER_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}
