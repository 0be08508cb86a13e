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
//!   it hands hyper bytes and when hyper comes back for more) and the
//!   runtime, which stops the instance once hyper has not come back for
//!   the idle timeout: the client stopped reading. Hyper pulls the body
//!   only as the socket drains, so a frame handed over and not followed
//!   by another pull means the client took nothing.
//!
//! This module knows bodies and clocks, nothing of wasm or OCI.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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
}

impl RequestBody {
    pub fn new(inner: Incoming, idle: Duration) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            idle,
            timer: None,
            ended: false,
        }
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
                    Some(Ok(_)) => {}
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

/// How a response body is being taken by the client.
pub struct Progress {
    start: Instant,
    /// Milliseconds after `start` when a frame was handed to hyper and
    /// hyper has not asked for the next one since; 0: not waiting.
    handed: AtomicU64,
    /// Told when the client stopped reading, to close an HTTP/1
    /// connection whose socket no longer drains.
    cut: Option<Arc<Notify>>,
}

impl Progress {
    /// `cut`: the connection to close when the reader is found stalled
    /// (HTTP/1; an HTTP/2 stream is reset instead).
    pub fn new(cut: Option<Arc<Notify>>) -> Arc<Progress> {
        Arc::new(Progress {
            start: Instant::now(),
            handed: AtomicU64::new(0),
            cut,
        })
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

    /// How long the client has left the last frame untaken, if it has.
    pub fn stalled_for(&self) -> Option<Duration> {
        let handed = self.handed.load(Ordering::Relaxed);
        (handed != 0).then(|| Duration::from_millis(self.now().saturating_sub(handed)))
    }

    /// Close the connection of a client that stopped reading.
    pub fn cut(&self) {
        if let Some(cut) = &self.cut {
            cut.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_not_followed_by_a_poll_is_a_stall_and_a_poll_clears_it() {
        let p = Progress::new(None);
        assert_eq!(p.stalled_for(), None);
        p.handed();
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.stalled_for().unwrap() >= Duration::from_millis(15));
        p.polled();
        assert_eq!(p.stalled_for(), None);
    }

    #[tokio::test]
    async fn cut_wakes_the_connection() {
        let notify = Arc::new(Notify::new());
        let p = Progress::new(Some(notify.clone()));
        p.cut();
        tokio::time::timeout(Duration::from_secs(1), notify.notified())
            .await
            .unwrap();
    }
}
