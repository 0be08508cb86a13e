//! `wasi:io` streams over files: a blob range to read, an upload to append to.
//!
//! File I/O runs on tokio's blocking pool in batches of [`BATCH`] bytes, one
//! batch in flight while the next one fills, so a stream never holds more
//! than about two batches in memory however large the blob. Upload bytes are
//! hashed on the blocking pool too, next to the write, so hashing overlaps
//! with receiving.

use super::uploads::{Active, Slot};
use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use tokio::task::JoinHandle;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Bytes per file read or write.
pub const BATCH: usize = 1 << 20;

fn failed(e: &io::Error) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::format_err!("{e}"))
}

/// A range of a file, read ahead one batch at a time.
pub struct FileRange {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    buffered: Bytes,
    task: Option<JoinHandle<io::Result<Bytes>>>,
    error: Option<io::Error>,
}

impl FileRange {
    pub fn new(file: File, offset: u64, length: u64) -> FileRange {
        FileRange {
            file: Arc::new(file),
            offset,
            remaining: length,
            buffered: Bytes::new(),
            task: None,
            error: None,
        }
    }

    fn start_read(&mut self) {
        if self.task.is_some() || self.remaining == 0 || self.error.is_some() {
            return;
        }
        let file = self.file.clone();
        let offset = self.offset;
        let len = (self.remaining as usize).min(BATCH);
        self.task = Some(tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(len);
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], offset + filled as u64)? {
                    0 => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "blob file is shorter than its recorded size",
                        ));
                    }
                    n => filled += n,
                }
            }
            Ok(buf.freeze())
        }));
    }
}

impl InputStream for FileRange {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if !self.buffered.is_empty() {
            let n = size.min(self.buffered.len());
            let out = self.buffered.split_to(n);
            if self.buffered.is_empty() {
                self.start_read();
            }
            return Ok(out);
        }
        if let Some(e) = &self.error {
            return Err(failed(e));
        }
        if self.remaining == 0 && self.task.is_none() {
            return Err(StreamError::Closed);
        }
        self.start_read();
        Ok(Bytes::new())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileRange {
    async fn ready(&mut self) {
        if !self.buffered.is_empty() || self.error.is_some() {
            return;
        }
        self.start_read();
        let Some(task) = self.task.take() else { return };
        match task.await {
            Ok(Ok(bytes)) => {
                self.offset += bytes.len() as u64;
                self.remaining -= bytes.len() as u64;
                self.buffered = bytes;
            }
            Ok(Err(e)) => self.error = Some(e),
            Err(e) => self.error = Some(io::Error::other(e)),
        }
    }
}

/// Appends to an upload session's file, hashing as it goes.
pub struct UploadWriter {
    slot: Arc<Slot>,
    active: Option<Active>,
    pending: Vec<Bytes>,
    pending_len: usize,
    task: Option<JoinHandle<(Active, io::Result<()>)>>,
    flushing: bool,
    error: Option<io::Error>,
}

impl UploadWriter {
    pub fn new(slot: Arc<Slot>, active: Active) -> UploadWriter {
        UploadWriter {
            slot,
            active: Some(active),
            pending: Vec::new(),
            pending_len: 0,
            task: None,
            flushing: false,
            error: None,
        }
    }

    /// Hand the pending bytes to the blocking pool, if none are in flight.
    fn start_write(&mut self) {
        if self.task.is_some() || self.pending.is_empty() {
            return;
        }
        let Some(mut active) = self.active.take() else {
            return;
        };
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let slot = self.slot.clone();
        self.task = Some(tokio::task::spawn_blocking(move || {
            let result = (|| {
                for chunk in &chunks {
                    active.file.write_all(chunk)?;
                    active.hasher.update(chunk);
                    active.written += chunk.len() as u64;
                }
                Ok(())
            })();
            slot.set_written(active.written);
            (active, result)
        }));
    }

    async fn complete_write(&mut self) {
        let Some(task) = self.task.take() else { return };
        match task.await {
            Ok((active, result)) => {
                self.active = Some(active);
                if let Err(e) = result {
                    self.error = Some(e);
                }
            }
            // The write panicked: the session's state is unknown, so it is
            // reloaded from disk the next time it is opened.
            Err(e) => self.error = Some(io::Error::other(e)),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for UploadWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if let Some(e) = &self.error {
            return Err(failed(e));
        }
        if bytes.len() > BATCH.saturating_sub(self.pending_len) {
            return Err(StreamError::trap("write exceeds the permitted length"));
        }
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        if self.pending_len >= BATCH {
            self.start_write();
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        if let Some(e) = &self.error {
            return Err(failed(e));
        }
        self.flushing = true;
        self.start_write();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if let Some(e) = &self.error {
            return Err(failed(e));
        }
        if self.flushing {
            return Ok(0);
        }
        Ok(BATCH.saturating_sub(self.pending_len))
    }

    async fn cancel(&mut self) {
        // Dropped by the guest: everything it wrote must reach the file
        // before the session can be used again.
        self.flushing = true;
        while (self.task.is_some() || !self.pending.is_empty()) && self.error.is_none() {
            self.complete_write().await;
            self.start_write();
        }
        self.complete_write().await;
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for UploadWriter {
    async fn ready(&mut self) {
        if self.task.is_some() && (self.pending_len >= BATCH || self.flushing) {
            self.complete_write().await;
        }
        if self.error.is_some() {
            return;
        }
        if self.pending_len >= BATCH || (self.flushing && !self.pending.is_empty()) {
            self.start_write();
        }
        if self.flushing {
            self.complete_write().await;
            if self.pending.is_empty() {
                self.flushing = false;
            }
        }
    }
}

impl Drop for UploadWriter {
    fn drop(&mut self) {
        // Give the file and hash state back to the session. If a write is
        // still in flight (the stream was dropped without `cancel`) or one
        // failed half way, the session reloads its state from disk instead.
        if self.task.is_none()
            && self.error.is_none()
            && let Some(active) = self.active.take()
        {
            self.slot.put_back(active);
        }
    }
}
