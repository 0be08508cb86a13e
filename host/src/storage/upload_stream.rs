//! The [`Sink`] an upload session on the filesystem is written through.
//!
//! Bytes go through a pipeline of two threads that own the session's state
//! while the stream is open: one hashes, one writes to the session's file.
//! Every chunk the guest hands over (a `Bytes` shared by both, never copied)
//! goes to both at once, so receiving, hashing and writing all run at the
//! same time and none waits for a batch of the others to finish. Each thread
//! has [`MAX_PENDING`] bytes of room; the stream reports the smaller room to
//! the guest, so an upload holds at most that much memory however large the
//! blob. Written bytes start their writeback at once (`sync_file_range`) so
//! that the one fsync when the upload is committed finds little left to do.
//!
//! The threads are the stream's own rather than tokio's blocking pool: an
//! upload whose client sends slowly keeps them waiting for as long as it
//! lasts, and that must not starve the pool the rest of the host reads and
//! writes files on.

use super::Sink;
use super::uploads::{Active, Slot};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::Semaphore;
use wharf_spec::Hasher;

/// Bytes each thread of an upload may have waiting.
pub const MAX_PENDING: usize = 4 << 20;

/// Room below which the stream asks the guest to wait, so it is not handed
/// room for a sliver at a time.
const LOW_WATER: usize = 1 << 20;

/// Written bytes between writeback hints.
const WRITEBACK: u64 = 1 << 20;

/// Stack for the pipeline's threads: they hash and call `write`, no more.
const STACK: usize = 256 << 10;

/// One thread of the pipeline: where to send it chunks, how much room it
/// has, and what it hands back when its channel closes.
struct Stage<T> {
    chunks: mpsc::Sender<Bytes>,
    room: Arc<Semaphore>,
    thread: JoinHandle<T>,
}

impl<T: Send + 'static> Stage<T> {
    /// Run `work` on each chunk in order on a new thread named `name`, then
    /// hand back what `finish` makes of the state.
    fn spawn<S: Send + 'static>(
        name: &str,
        mut state: S,
        mut work: impl FnMut(&mut S, &Bytes) + Send + 'static,
        finish: impl FnOnce(S) -> T + Send + 'static,
    ) -> io::Result<Stage<T>> {
        let (chunks, incoming) = mpsc::channel::<Bytes>();
        let room = Arc::new(Semaphore::new(MAX_PENDING));
        let freed = room.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .stack_size(STACK)
            .spawn(move || {
                for chunk in incoming {
                    work(&mut state, &chunk);
                    freed.add_permits(chunk.len());
                }
                finish(state)
            })?;
        Ok(Stage {
            chunks,
            room,
            thread,
        })
    }

    fn room(&self) -> usize {
        self.room.available_permits()
    }

    /// Queue `chunk`, which must fit in the room the stage reported.
    fn send(&self, chunk: Bytes) -> bool {
        let Ok(len) = u32::try_from(chunk.len()) else {
            return false;
        };
        match self.room.try_acquire_many(len) {
            Ok(permit) => permit.forget(),
            Err(_) => return false,
        }
        // A closed channel means the thread is gone; `close` reports it.
        let _ = self.chunks.send(chunk);
        true
    }

    /// Wait until at least `bytes` of room are free.
    async fn wait_for_room(&self, bytes: usize) {
        let bytes = u32::try_from(bytes.min(MAX_PENDING)).unwrap_or(u32::MAX);
        // Acquired only to learn that the room is there; dropping the permit
        // gives it straight back.
        let _ = self.room.acquire_many(bytes).await;
    }

    /// Close the channel and wait for the thread's result: at most
    /// [`MAX_PENDING`] bytes still to hash or write. `None` if it panicked.
    fn close(self) -> Option<T> {
        drop(self.chunks);
        self.thread.join().ok()
    }
}

/// The writing thread's state: the file, how much it holds, and the first
/// error, after which later chunks are dropped unwritten.
struct Writing {
    file: File,
    written: u64,
    unsynced_from: u64,
    error: Arc<Mutex<Option<io::Error>>>,
    slot: Arc<Slot>,
}

impl Writing {
    fn write(&mut self, chunk: &Bytes) {
        if crate::sync::lock(&self.error).is_some() {
            return;
        }
        if let Err(e) = self.file.write_all(chunk) {
            *crate::sync::lock(&self.error) = Some(e);
            return;
        }
        self.written += chunk.len() as u64;
        if self.written - self.unsynced_from >= WRITEBACK {
            start_writeback(&self.file, self.unsynced_from, self.written);
            self.unsynced_from = self.written;
        }
        self.slot.set_written(self.written);
    }
}

struct Pipeline {
    hashing: Stage<Hasher>,
    writing: Stage<(File, u64)>,
}

impl Pipeline {
    fn room(&self) -> usize {
        self.hashing.room().min(self.writing.room())
    }

    /// Wait for both threads and put the session's state back together.
    fn close(self) -> Option<Active> {
        let hasher = self.hashing.close();
        let (file, written) = self.writing.close()?;
        Some(Active {
            file,
            hasher: hasher?,
            written,
        })
    }
}

/// Appends to an upload session's file, hashing as it goes.
pub struct UploadWriter {
    slot: Arc<Slot>,
    pipeline: Option<Pipeline>,
    /// The session's state once the pipeline has been closed cleanly.
    closed: Option<Active>,
    flushing: bool,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl UploadWriter {
    pub fn new(slot: Arc<Slot>, active: Active) -> io::Result<UploadWriter> {
        let Active {
            file,
            hasher,
            written,
        } = active;
        let error = Arc::new(Mutex::new(None));
        let hashing = Stage::spawn(
            "wharf-hash",
            hasher,
            |hasher, chunk| hasher.update(chunk),
            |hasher| hasher,
        )?;
        let writing = Stage::spawn(
            "wharf-write",
            Writing {
                file,
                written,
                unsynced_from: written,
                error: error.clone(),
                slot: slot.clone(),
            },
            Writing::write,
            |w| (w.file, w.written),
        )?;
        Ok(UploadWriter {
            slot,
            pipeline: Some(Pipeline { hashing, writing }),
            closed: None,
            flushing: false,
            error,
        })
    }

    fn check_error(&self) -> io::Result<()> {
        match &*crate::sync::lock(&self.error) {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }

    fn pipeline(&self) -> io::Result<&Pipeline> {
        self.pipeline
            .as_ref()
            .ok_or_else(|| io::Error::other("the upload's writer is closed"))
    }
}

/// A write the sink had not granted room for: the caller's bug.
fn overrun() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "write exceeds the room the upload reported",
    )
}

#[async_trait::async_trait]
impl Sink for UploadWriter {
    fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.check_error()?;
        if bytes.is_empty() {
            return Ok(());
        }
        let pipeline = self.pipeline()?;
        if bytes.len() > pipeline.room() {
            return Err(overrun());
        }
        if !(pipeline.hashing.send(bytes.clone()) && pipeline.writing.send(bytes)) {
            return Err(overrun());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check_error()?;
        self.pipeline()?;
        self.flushing = true;
        Ok(())
    }

    fn room(&mut self) -> io::Result<usize> {
        self.check_error()?;
        let room = self.pipeline()?.room();
        if self.flushing || room < LOW_WATER {
            return Ok(0);
        }
        Ok(room)
    }

    async fn close(&mut self) {
        // Dropped by the guest: everything it wrote must reach the file, and
        // the hash state come back, before the session can be used again.
        let Some(pipeline) = self.pipeline.take() else {
            return;
        };
        match tokio::task::spawn_blocking(move || pipeline.close()).await {
            Ok(Some(active)) => self.closed = Some(active),
            _ => {
                let mut error = crate::sync::lock(&self.error);
                error.get_or_insert_with(|| io::Error::other("an upload thread panicked"));
            }
        }
    }

    async fn ready(&mut self) {
        if self.check_error().is_err() {
            return;
        }
        let Some(pipeline) = &self.pipeline else {
            return;
        };
        if self.flushing {
            // Flushed once both threads have handled everything queued.
            pipeline.hashing.wait_for_room(MAX_PENDING).await;
            pipeline.writing.wait_for_room(MAX_PENDING).await;
            self.flushing = false;
        } else {
            pipeline.hashing.wait_for_room(LOW_WATER).await;
            pipeline.writing.wait_for_room(LOW_WATER).await;
        }
    }
}

impl Drop for UploadWriter {
    fn drop(&mut self) {
        // Dropped without `cancel` (the instance trapped or ran out of
        // time): wait for the threads here, a few milliseconds at most, so
        // that nothing still writes to the file once the session can be
        // opened again.
        if let Some(pipeline) = self.pipeline.take() {
            self.closed = pipeline.close();
        }
        // Give the file and hash state back to the session. If a write
        // failed, the session reloads its state from disk instead.
        if crate::sync::lock(&self.error).is_none()
            && let Some(active) = self.closed.take()
        {
            self.slot.put_back(active);
        }
    }
}

/// Start writing `from..to` of `file` back to disk without waiting for it:
/// the fsync that commits the upload then has little left to do. Only a
/// hint; the fsync alone decides durability.
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return;
    };
    // SAFETY: `file` is an open descriptor for the duration of the call, and
    // sync_file_range reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::fs::FsStorage;
    use crate::storage::{BlobStore, StoreError};
    use bytes::Bytes;
    use wharf_spec::Algorithm;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_larger_than_the_room_reported_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path(), true).unwrap();
        let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        let mut writer = session.writer().unwrap();
        let room = writer.room().unwrap();
        assert!(room >= 1 << 20, "an idle upload has room: {room}");
        let too_much = Bytes::from(vec![0u8; super::MAX_PENDING + 1]);
        let refused = writer.write(too_much).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        writer.close().await;
        drop(writer);
        // Nothing was accepted, so nothing is stored.
        assert_eq!(session.offset(), 0);
        let wrong = Algorithm::Sha256.digest(b"something else");
        assert!(matches!(
            session.finish(&wrong),
            Err(StoreError::DigestMismatch(_))
        ));
    }
}
