//! The `wasi:io` input-stream over a range of a blob's file.
//!
//! The range is mapped into memory a [`WINDOW`] at a time, one window ahead
//! of the reader, on tokio's blocking pool (mapping prefaults the pages,
//! which reads them from disk if they are not cached). The bytes handed on
//! are the page cache's own pages, so the only copy a download makes is the
//! kernel's into the socket; a stream never holds more than two windows
//! however large the blob. Blob files are written once and never truncated
//! (deleting one unlinks it, and a mapping keeps an unlinked file whole), so
//! a mapping never loses its pages under a reader. Where mapping fails the
//! stream reads into buffers instead.

use bytes::Bytes;
use std::fs::File;
use std::io;
use std::sync::Arc;
use tokio::task::JoinHandle;
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

/// Bytes per file read or write.
pub const BATCH: usize = 1 << 20;

/// Bytes of a blob mapped at a time.
const WINDOW: usize = 4 << 20;

/// A stream's report of a failed file operation.
pub(super) fn failed(e: &io::Error) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::format_err!("{e}"))
}

/// A range of a file, read ahead one window at a time.
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
        let len = usize::try_from(self.remaining).map_or(WINDOW, |r| r.min(WINDOW));
        self.task = Some(tokio::task::spawn_blocking(move || {
            match map_range(&file, offset, len) {
                Ok(bytes) => Ok(bytes),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "mapping a blob failed: reading it instead");
                    read_exact_at(&file, offset, len.min(BATCH))
                }
            }
        }));
    }
}

/// `len` bytes of a file, starting at `offset`, mapped read-only.
struct Mapping {
    start: *mut libc::c_void,
    mapped: usize,
    /// Bytes between the page-aligned start and `offset`.
    skip: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; the pages
// may be read from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; nothing ever writes through the mapping.
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start..start + mapped` is mapped readable for as long as
        // `self` lives, and lies within the file (checked before mapping),
        // so reading it cannot fault.
        unsafe {
            std::slice::from_raw_parts(
                self.start.cast::<u8>().add(self.skip),
                self.mapped - self.skip,
            )
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map_range` mapped; no slice of it
        // outlives `self` (Bytes keeps its owner alive).
        unsafe {
            libc::munmap(self.start, self.mapped);
        }
    }
}

/// Map `len` bytes of `file` from `offset` (prefaulted) as `Bytes`.
fn map_range(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd as _;
    if len == 0 {
        return Ok(Bytes::new());
    }
    // Touching a mapped page past the end of the file kills the process:
    // make sure the whole range is there first.
    let size = file.metadata()?.len();
    if offset.saturating_add(len as u64) > size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob file is shorter than its recorded size",
        ));
    }
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let aligned = offset - offset % page;
    let skip = (offset - aligned) as usize;
    let mapped = skip + len;
    let at = libc::off_t::try_from(aligned)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
    // SAFETY: a fresh read-only shared mapping of an open file; the kernel
    // picks the address, and nothing else refers to it yet.
    let start = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            mapped,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            file.as_raw_fd(),
            at,
        )
    };
    if start == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(Bytes::from_owner(Mapping {
        start,
        mapped,
        skip,
    }))
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

#[cfg(test)]
pub(super) mod tests {
    use super::FileRange;
    use std::io::Write as _;
    use wasmtime_wasi::p2::{InputStream, StreamError};

    /// Everything a stream yields, or the error that ended it.
    pub(in crate::storage) async fn drain(stream: &mut dyn InputStream) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            match stream.read(1 << 20) {
                Ok(bytes) if bytes.is_empty() => stream.ready().await,
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(StreamError::Closed) => return Ok(out),
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_range_is_an_error_not_a_crash() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 10_000]).unwrap();
        // Mapping past the end and touching it would kill the process.
        let error = drain(&mut FileRange::new(file.try_clone().unwrap(), 4096, 8192))
            .await
            .unwrap_err();
        assert!(error.contains("shorter than its recorded size"), "{error}");
        let whole = drain(&mut FileRange::new(file, 4097, 5903)).await.unwrap();
        assert_eq!(whole, vec![7u8; 5903]);
    }
}
