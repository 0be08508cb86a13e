//! The `wasi:io` input-stream over a range of a blob's file.
//!
//! File reads run on tokio's blocking pool, [`BATCH`] bytes at a time, one
//! batch ahead of the reader, so a stream never holds more than two batches
//! however large the blob.

use bytes::Bytes;
use std::fs::File;
use std::io;
use std::sync::Arc;
use tokio::task::JoinHandle;
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

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
