//! `wasi:io` streams over files: a blob range to read, an upload to append to.
//!
//! File I/O runs on tokio's blocking pool in batches of at least [`BATCH`]
//! bytes. A read stream reads one batch ahead; an upload keeps receiving
//! into up to [`MAX_PENDING`] bytes while the previous batch is written, so
//! a stream never holds more than a few MiB however large the blob. Upload
//! bytes are hashed on a second thread while the same batch is written, so
//! hashing overlaps with both writing and receiving, and each written batch
//! starts its writeback at once (`sync_file_range`), so that the one fsync
//! when the upload is committed finds little left to do.

use super::uploads::{Active, Slot};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use tokio::task::JoinHandle;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Bytes per file read or write.
pub const BATCH: usize = 1 << 20;

/// Bytes an upload stream accepts while a batch is being written.
pub const MAX_PENDING: usize = 4 * BATCH;

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
            read_exact_at(&file, offset, len)
        }));
    }
}

/// Read `len` bytes of `file` from `offset` into a new buffer, without
/// zeroing it first: on a download that memset costs as much as a tenth of
/// the server's time.
fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd as _;
    let mut buf = Vec::<u8>::with_capacity(len);
    while buf.len() < len {
        let at = i64::try_from(offset + buf.len() as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
        let spare = buf.spare_capacity_mut();
        // SAFETY: pread writes at most `spare.len()` bytes into the spare
        // capacity, which is allocated and ours, and returns how many.
        let n =
            unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), at) };
        match n {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob file is shorter than its recorded size",
                ));
            }
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // SAFETY: the first `n` bytes of the spare capacity were just
            // written by pread.
            n => unsafe { buf.set_len(buf.len() + n as usize) },
        }
    }
    Ok(Bytes::from(buf))
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
            let start = active.written;
            let Active { file, hasher, .. } = &mut active;
            let result = std::thread::scope(|scope| {
                let hashing = std::thread::Builder::new()
                    .name("wharf-hash".into())
                    .spawn_scoped(scope, || chunks.iter().for_each(|c| hasher.update(c)));
                let written = chunks.iter().try_for_each(|chunk| file.write_all(chunk));
                // Without a hashing thread the batch is unhashed: failing
                // makes the session rehash what is on disk when reopened.
                hashing?
                    .join()
                    .map_err(|_| io::Error::other("hashing an upload batch panicked"))?;
                written
            });
            if result.is_ok() {
                let len: usize = chunks.iter().map(Bytes::len).sum();
                active.written += len as u64;
                start_writeback(&active.file, start, len as u64);
            }
            slot.set_written(active.written);
            (active, result)
        }));
    }

    /// Take the result of a write that has already finished, if any.
    fn poll_write(&mut self) {
        use futures::FutureExt as _;
        if self.task.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(task) = self.task.take()
        {
            self.completed(task.now_or_never());
        }
    }

    fn completed(
        &mut self,
        result: Option<Result<(Active, io::Result<()>), tokio::task::JoinError>>,
    ) {
        match result {
            Some(Ok((active, result))) => {
                self.active = Some(active);
                if let Err(e) = result {
                    self.error = Some(e);
                }
            }
            // The write panicked: the session's state is unknown, so it is
            // reloaded from disk the next time it is opened.
            Some(Err(e)) => self.error = Some(io::Error::other(e)),
            None => self.error = Some(io::Error::other("an upload write was lost")),
        }
    }

    async fn complete_write(&mut self) {
        let Some(task) = self.task.take() else { return };
        let result = task.await;
        self.completed(Some(result));
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for UploadWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if let Some(e) = &self.error {
            return Err(failed(e));
        }
        if bytes.len() > MAX_PENDING.saturating_sub(self.pending_len) {
            return Err(StreamError::trap("write exceeds the permitted length"));
        }
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        if self.pending_len >= BATCH {
            self.poll_write();
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
        Ok(MAX_PENDING.saturating_sub(self.pending_len))
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
        if self.task.is_some() && (self.pending_len >= MAX_PENDING || self.flushing) {
            self.complete_write().await;
        }
        self.poll_write();
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

/// Start writing `len` bytes of `file` from `offset` back to disk without
/// waiting for them: the fsync that commits the upload then has little left
/// to do. Only a hint; the fsync alone decides durability.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: `file` is an open descriptor for the duration of the call, and
    // sync_file_range reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}
