//! A range of an object, read with ranged GETs.
//!
//! A task on the backend's runtime streams the range and hands its chunks
//! over a bounded channel, so a download holds at most [`AHEAD`] chunks
//! however large the blob, and a reader that stops reading stops the GET.
//! A GET that fails part way is issued again from where it stopped, a few
//! times, before the source reports the error.

use super::Inner;
use crate::storage::Source;
use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore};
use std::io;
use std::ops::Range;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks (as the connection delivers them, some KiB each) fetched ahead.
const AHEAD: usize = 64;

/// GETs tried for one range before its failure is reported.
const ATTEMPTS: usize = 3;

pub struct Ranged {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    buffered: Bytes,
    remaining: u64,
    error: Option<io::Error>,
    task: tokio::task::JoinHandle<()>,
}

impl Ranged {
    pub fn start(
        runtime: &tokio::runtime::Handle,
        s3: Arc<Inner>,
        key: Key,
        range: Range<u64>,
    ) -> Ranged {
        let (send, chunks) = mpsc::channel(AHEAD);
        let remaining = range.end - range.start;
        let task = runtime.spawn(fetch(s3, key, range, send));
        Ranged {
            chunks,
            buffered: Bytes::new(),
            remaining,
            error: None,
            task,
        }
    }

    fn take(&mut self, chunk: io::Result<Bytes>) {
        match chunk {
            Ok(bytes) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                self.buffered = bytes;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

impl Drop for Ranged {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Stream `range` of `key` into `send`, again from where it stopped when
/// a GET fails part way.
async fn fetch(s3: Arc<Inner>, key: Key, range: Range<u64>, send: mpsc::Sender<io::Result<Bytes>>) {
    use futures::StreamExt as _;
    let mut at = range.start;
    let mut failures = 0;
    while at < range.end {
        let options = GetOptions {
            range: Some(GetRange::Bounded(at..range.end)),
            ..Default::default()
        };
        let failure = match s3.store.get_opts(&key, options).await {
            Ok(result) => {
                let mut stream = result.into_stream();
                let mut failure = None;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => {
                            let bytes = bytes.slice(..bytes.len().min((range.end - at) as usize));
                            at += bytes.len() as u64;
                            if send.send(Ok(bytes)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                match failure {
                    Some(e) => e,
                    None if at < range.end => object_store::Error::Generic {
                        store: "S3",
                        source: format!("the object ended at byte {at}, before {}", range.end)
                            .into(),
                    },
                    None => return,
                }
            }
            Err(e) => e,
        };
        failures += 1;
        if failures >= ATTEMPTS {
            let message = format!("{} reading {key} at byte {at}: {failure}", s3.name);
            let _ = send.send(Err(io::Error::other(message))).await;
            return;
        }
        tracing::debug!(%key, at, error = %failure, "an S3 read failed part way; reading on");
    }
}

#[async_trait::async_trait]
impl Source for Ranged {
    fn read(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        if self.buffered.is_empty() {
            if let Some(e) = &self.error {
                return Err(io::Error::new(e.kind(), e.to_string()));
            }
            if self.remaining == 0 {
                return Ok(None);
            }
            match self.chunks.try_recv() {
                Ok(chunk) => self.take(chunk),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(Some(Bytes::new())),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the S3 read ended early"));
                }
            }
            if let Some(e) = &self.error {
                return Err(io::Error::new(e.kind(), e.to_string()));
            }
        }
        Ok(Some(self.buffered.split_to(max.min(self.buffered.len()))))
    }

    async fn ready(&mut self) {
        if !self.buffered.is_empty() || self.error.is_some() || self.remaining == 0 {
            return;
        }
        match self.chunks.recv().await {
            Some(chunk) => self.take(chunk),
            None => self.error = Some(io::Error::other("the S3 read ended early")),
        }
    }
}
