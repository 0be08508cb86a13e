//! Progress on a request's two bodies, so that a client that stops sending
//! or stops reading cannot hold a component instance.
//!
//! - [`RequestBody`] wraps the request body that the component reads. When
//!   the component waits on it and nothing arrives for the idle timeout,
//!   the body ends with an error: the guest's read fails and the request
//!   ends. When the request ends before its body was read to the end (an
//!   early 413, a refusal by the host), the rest is read and thrown away,
//!   bounded by [`DRAIN_BYTES`] and [`DRAIN_TIME`]: a client that writes
//!   its whole body before reading the answer then reads the answer,
//!   instead of a reset connection.
//! - [`Progress`] is shared between the response body (which marks when
//!   it hands hyper a frame and when hyper comes back for more), the
//!   connection ([`Tracked`] marks every write to the socket) and the
//!   runtime, which stops the instance once a frame has been waiting and
//!   the socket has taken nothing for the idle timeout: the client stopped
//!   reading. A slow but steady reader keeps the socket moving, however
//!   large the frames.
//!
//! This module knows bodies and clocks, nothing of wasm or OCI.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The most bytes of an unread request body read and thrown away after
/// the answer.
pub const DRAIN_BYTES: u64 = 64 << 20;
/// The longest an unread request body is drained after the answer.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A request body that gives up when the client sends nothing for
/// `idle`, and drains what is left when dropped unread.
pub struct RequestBody {
    inner: Option<Incoming>,
    idle: Duration,
    /// Running while the reader waits for bytes; reset by each frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
    /// Counts the bytes received, once the request's tenant is known.
    received: Option<prometheus_client::metrics::counter::Counter>,
}

impl RequestBody {
    pub fn new(inner: Incoming, idle: Duration) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            idle,
            timer: None,
            ended: false,
            received: None,
        }
    }

    /// Count the bytes received from now on in `counter`.
    pub fn count_into(&mut self, counter: prometheus_client::metrics::counter::Counter) {
        self.received = Some(counter);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                match &frame {
                    None | Some(Err(_)) => this.ended = true,
                    Some(Ok(frame)) => {
                        if let (Some(counter), Some(data)) = (&this.received, frame.data_ref()) {
                            counter.inc_by(data.len() as u64);
                        }
                    }
                }
                Poll::Ready(frame.map(|r| r.map_err(wasmtime_wasi_http::Error::from)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        this.ended = true;
                        this.inner = None;
                        tracing::info!(
                            idle = ?idle,
                            "request body sent nothing for the idle timeout; the request was cut"
                        );
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if self.ended || inner.is_end_stream() {
            return;
        }
        // Not on a runtime (a unit test dropping it): nothing to drain with.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(drain(inner));
    }
}

/// Read and discard the rest of a body, within the drain bounds.
async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt;
    let read = async {
        let mut read = 0u64;
        while read < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// When a connection last wrote to its socket.
pub struct Written {
    start: Instant,
    /// Milliseconds after `start`.
    at: AtomicU64,
}

impl Written {
    pub fn new() -> Arc<Written> {
        Arc::new(Written {
            start: Instant::now(),
            at: AtomicU64::new(0),
        })
    }

    fn mark(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.at.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.at.load(Ordering::Relaxed))
    }
}

/// A connection's transport that marks each write in [`Written`].
pub struct Tracked<I> {
    inner: I,
    written: Arc<Written>,
}

impl<I> Tracked<I> {
    pub fn new(inner: I, written: Arc<Written>) -> Tracked<I> {
        Tracked { inner, written }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.written.mark();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.written.mark();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a response body is being taken by the client.
pub struct Progress {
    start: Instant,
    /// Milliseconds after `start` when a frame was handed to hyper and
    /// hyper has not asked for the next one since; 0: not waiting.
    handed: AtomicU64,
    /// The connection's writes: a frame waiting while the socket still
    /// drains is a slow reader, not a stalled one.
    written: Arc<Written>,
    /// Told when the client stopped reading, to close its connection (an
    /// HTTP/2 one too: its stalled stream would otherwise keep the frames
    /// it was handed).
    cut: Arc<Notify>,
    /// How long the client may take nothing before it counts as stalled.
    idle: Duration,
}

impl Progress {
    /// `written`: the connection's writes; `cut`: the connection to close
    /// when the reader is found stalled after `idle`.
    pub fn new(written: Arc<Written>, cut: Arc<Notify>, idle: Duration) -> Arc<Progress> {
        Arc::new(Progress {
            start: Instant::now(),
            handed: AtomicU64::new(0),
            written,
            cut,
            idle,
        })
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Resolves once the client has left a frame untaken, with nothing
    /// taken off the socket, for the idle timeout.
    pub async fn stalled(&self) {
        let tick = (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            tokio::time::sleep(tick).await;
            if self.stalled_for().is_some_and(|d| d >= self.idle) {
                return;
            }
        }
    }

    fn now(&self) -> u64 {
        // At least 1: 0 means "not waiting".
        (self.start.elapsed().as_millis() as u64).max(1)
    }

    /// Hyper asks for the next frame.
    pub fn polled(&self) {
        self.handed.store(0, Ordering::Relaxed);
    }

    /// A frame went to hyper.
    pub fn handed(&self) {
        self.handed.store(self.now(), Ordering::Relaxed);
    }

    /// How long the client has left a frame untaken with nothing taken off
    /// the socket meanwhile, if it has.
    pub fn stalled_for(&self) -> Option<Duration> {
        let handed = self.handed.load(Ordering::Relaxed);
        if handed == 0 {
            return None;
        }
        let since = (self.start + Duration::from_millis(handed)).max(self.written.last());
        Some(since.elapsed())
    }

    /// Close the connection of a client that stopped reading.
    pub fn cut(&self) {
        self.cut.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_not_followed_by_a_poll_is_a_stall_and_a_poll_clears_it() {
        let p = Progress::new(
            Written::new(),
            Arc::new(Notify::new()),
            Duration::from_secs(60),
        );
        assert_eq!(p.stalled_for(), None);
        p.handed();
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.stalled_for().unwrap() >= Duration::from_millis(15));
        p.polled();
        assert_eq!(p.stalled_for(), None);
    }

    #[tokio::test]
    async fn a_socket_that_still_drains_is_a_slow_reader_not_a_stalled_one() {
        let written = Written::new();
        let p = Progress::new(
            written.clone(),
            Arc::new(Notify::new()),
            Duration::from_secs(60),
        );
        p.handed();
        std::thread::sleep(Duration::from_millis(30));
        let (mut near, mut far) = tokio::io::duplex(64);
        let mut tracked = Tracked::new(&mut near, written);
        tokio::io::AsyncWriteExt::write_all(&mut tracked, b"some bytes")
            .await
            .unwrap();
        assert!(p.stalled_for().unwrap() < Duration::from_millis(25));
        let mut buf = [0u8; 10];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut buf)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn cut_wakes_the_connection() {
        let notify = Arc::new(Notify::new());
        let p = Progress::new(Written::new(), notify.clone(), Duration::from_secs(60));
        p.cut();
        tokio::time::timeout(Duration::from_secs(1), notify.notified())
            .await
            .unwrap();
    }
}
