//! The [`Source`] over a range of a blob's file.
//!
//! The range is handed on a [`WINDOW`] at a time, one window ahead of the
//! reader: windows of the file's mapping ([`mapped`]), populated on tokio's
//! blocking pool, which reads them from disk if they are not cached. The
//! bytes handed on are the page cache's own pages, so the only copy a
//! download makes is the kernel's into the socket; a stream never holds
//! more than two windows however large the blob (why mapping a blob file is
//! sound: [`mapped`]). Where mapping fails the stream reads into buffers
//! instead.

use super::Source;
use super::mapped::{self, MappedFile};
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bytes per file read or write.
pub const BATCH: usize = 1 << 20;

/// Bytes of a blob mapped at a time.
const WINDOW: usize = 4 << 20;

/// A range of a file, read ahead one window at a time.
pub struct FileRange {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    /// The file's cached mapping, found by the first window's read.
    mapping: Lookup,
    buffered: Bytes,
    task: Option<JoinHandle<io::Result<(Lookup, Bytes)>>>,
    error: Option<io::Error>,
}

/// Whether the file is in the mapping cache.
#[derive(Clone)]
enum Lookup {
    NotYet,
    Cached(MappedFile),
    NotCached,
}

impl FileRange {
    pub fn new(file: File, offset: u64, length: u64) -> FileRange {
        FileRange {
            file: Arc::new(file),
            offset,
            remaining: length,
            mapping: Lookup::NotYet,
            buffered: Bytes::new(),
            task: None,
            error: None,
        }
    }

    /// Start reading the next window. A window of a cached mapping whose
    /// pages are all in memory is taken at once; any other goes to the
    /// blocking pool, where it may wait for the disk.
    fn start_read(&mut self) {
        if self.task.is_some() || self.remaining == 0 || self.error.is_some() {
            return;
        }
        let offset = self.offset;
        let len = usize::try_from(self.remaining).map_or(WINDOW, |r| r.min(WINDOW));
        if let Lookup::Cached(mapped) = &self.mapping
            && let Some(window) = mapped.resident_window(offset, len)
        {
            self.take(window);
            return;
        }
        let file = self.file.clone();
        let lookup = self.mapping.clone();
        self.task = Some(tokio::task::spawn_blocking(move || {
            let lookup = match lookup {
                Lookup::NotYet => match mapped::shared().get(&file) {
                    Ok(Some(mapped)) => Lookup::Cached(mapped),
                    Ok(None) => Lookup::NotCached,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot keep a blob mapped: mapping it per window");
                        Lookup::NotCached
                    }
                },
                known => known,
            };
            let window = match &lookup {
                Lookup::Cached(mapped) => mapped.window(offset, len),
                _ => mapped::map_range(&file, offset, len),
            };
            match window {
                Ok(bytes) => Ok((lookup, bytes)),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "mapping a blob failed: reading it instead");
                    let bytes = read_exact_at(&file, offset, len.min(BATCH))?;
                    Ok((Lookup::NotCached, bytes))
                }
            }
        }));
    }

    fn take(&mut self, window: Bytes) {
        self.offset += window.len() as u64;
        self.remaining -= window.len() as u64;
        self.buffered = window;
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
            0 => return Err(mapped::shorter_than_recorded()),
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

#[async_trait::async_trait]
impl Source for FileRange {
    fn read(&mut self, size: usize) -> io::Result<Option<Bytes>> {
        if self.buffered.is_empty() {
            if let Some(e) = &self.error {
                return Err(io::Error::new(e.kind(), e.to_string()));
            }
            if self.remaining == 0 && self.task.is_none() {
                return Ok(None);
            }
            self.start_read();
            if self.buffered.is_empty() {
                return Ok(Some(Bytes::new()));
            }
        }
        let out = self.buffered.split_to(size.min(self.buffered.len()));
        if self.buffered.is_empty() {
            self.start_read();
        }
        Ok(Some(out))
    }

    async fn ready(&mut self) {
        if !self.buffered.is_empty() || self.error.is_some() {
            return;
        }
        self.start_read();
        let Some(task) = self.task.take() else { return };
        match task.await {
            Ok(Ok((lookup, window))) => {
                self.mapping = lookup;
                self.take(window);
            }
            Ok(Err(e)) => self.error = Some(e),
            Err(e) => self.error = Some(io::Error::other(e)),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::FileRange;
    use crate::storage::Source;
    use std::io::Write as _;

    /// Everything a source yields, or the error that ended it.
    pub(crate) async fn drain(source: &mut dyn Source) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            match source.read(1 << 20) {
                Ok(Some(bytes)) if bytes.is_empty() => source.ready().await,
                Ok(Some(bytes)) => out.extend_from_slice(&bytes),
                Ok(None) => return Ok(out),
                Err(e) => return Err(e.to_string()),
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
