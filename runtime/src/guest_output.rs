//! A transport's stdout and stderr, sent line by line to tracing.
//!
//! Transports have no terminal; what they print is diagnostic output, so it
//! goes to the host's log under the transport's name, capped per session.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;

/// Most bytes of output logged per session; the rest is counted and dropped.
const MAX_TOTAL: usize = 1 << 20;

/// One of a transport's output streams.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Lines>>,
}

struct Lines {
    transport: String,
    stream: &'static str,
    partial: Vec<u8>,
    total: usize,
}

impl GuestOutput {
    /// An output stream named `stream` ("stdout" or "stderr").
    pub fn new(transport: &str, stream: &'static str) -> GuestOutput {
        GuestOutput {
            inner: Arc::new(Mutex::new(Lines {
                transport: transport.to_string(),
                stream,
                partial: Vec::new(),
                total: 0,
            })),
        }
    }
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_TOTAL.saturating_sub(self.total);
        self.total = self.total.saturating_add(bytes.len());
        for &b in &bytes[..bytes.len().min(room)] {
            if b == b'\n' {
                self.emit();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        tracing::info!(transport = %self.transport, stream = self.stream, "{line}");
        self.partial.clear();
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Ok(mut lines) = self.inner.lock() {
            lines.push(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Ok(mut lines) = self.inner.lock()
            && !lines.partial.is_empty()
        {
            lines.emit();
        }
        Poll::Ready(Ok(()))
    }
}
