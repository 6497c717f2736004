//! What bounds one call besides its deadline: the memory limit inside the pool's larger slots,
//! and stdout and stderr captured up to the log cap.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::ResourceLimiter;

/// Enforces the per-plugin memory limit inside the pool's larger slots, and records the peak.
pub(super) struct MemoryLimiter {
    pub(super) max_memory_bytes: usize,
    pub(super) peak_memory_bytes: usize,
    pub(super) limit_hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.limit_hit = true;
            return Ok(false);
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// A bounded in-memory stdout or stderr. Bytes past the cap are dropped rather than trapping,
/// so a chatty plugin loses log lines, not the webhook.
#[derive(Clone)]
pub(super) struct CapturedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
}

impl CapturedOutput {
    pub(super) fn new(capacity: usize) -> CapturedOutput {
        CapturedOutput {
            buffer: Arc::new(Mutex::new(Vec::new())),
            capacity,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.buffer.lock().expect("capture lock poisoned").len()
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("capture lock poisoned")).into_owned()
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl CapturedOutput {
    /// Appends what fits under the cap and drops the rest.
    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().expect("capture lock poisoned");
        let room = self.capacity.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// A direct synchronous stream: the default adapter moves every write through a channel to
    /// a background task, which makes each `println!` in a plugin cost microseconds.
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        // Always report room: bytes past the cap are dropped, never refused.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
