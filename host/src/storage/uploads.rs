//! Upload sessions on the filesystem.
//!
//! A session is a directory under its repository's `_uploads/` holding the
//! bytes received so far. Its hash state lives in memory while Wharf runs;
//! after a restart (or a failed write) it is rebuilt by hashing the bytes on
//! disk, so a session survives restarts and always hashes what it holds.
//! One request holds a session at a time.

use super::files;
use super::layout::Layout;
use super::pins::Pins;
use super::upload_stream::UploadWriter;
use super::{Purged, Result, Sink, StoreError, StoredUpload, UploadSession};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wharf_spec::{Algorithm, Digest, Hasher};

/// Hash a whole file.
pub fn hash_file(algorithm: Algorithm, file: &mut File) -> io::Result<(Hasher, u64)> {
    let mut hasher = Hasher::new(algorithm);
    let mut buf = vec![0u8; super::streams::BATCH];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher, total));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// The file and hash state of a session, owned by whoever is writing.
pub struct Active {
    pub file: File,
    pub hasher: Hasher,
    pub written: u64,
}

/// A session's shared state: who holds it, and its file when nobody writes.
pub struct Slot {
    algorithm: Algorithm,
    held: AtomicBool,
    written: AtomicU64,
    active: Mutex<Option<Active>>,
}

impl Slot {
    pub fn set_written(&self, n: u64) {
        self.written.store(n, Ordering::Release);
    }

    pub fn put_back(&self, active: Active) {
        *crate::sync::lock(&self.active) = Some(active);
    }

    fn take(&self) -> Option<Active> {
        crate::sync::lock(&self.active).take()
    }
}

/// Sessions in use or recently used, by directory.
pub struct Sessions {
    slots: Mutex<HashMap<PathBuf, Arc<Slot>>>,
    /// Finishing an upload stores a blob: it runs under these.
    pins: Arc<Pins>,
}

const DATA: &str = "data";
const STARTED_AT: &str = "startedat";
const ALGORITHM: &str = "wharf-algorithm";

/// Upload ids are UUIDs, which keeps them from naming anything but a session.
fn valid_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

impl Sessions {
    pub fn new(pins: Arc<Pins>) -> Sessions {
        Sessions {
            slots: Mutex::default(),
            pins,
        }
    }

    pub fn start(
        self: &Arc<Self>,
        layout: &Layout,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>> {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = layout.upload_dir(repository, &id);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(ALGORITHM), algorithm.name())?;
        fs::write(dir.join(STARTED_AT), unix_seconds_now())?;
        // Readable too: `finish` hashes the bytes again when the digest's
        // algorithm is not the session's.
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(dir.join(DATA))?;
        let slot = Arc::new(Slot {
            algorithm,
            held: AtomicBool::new(true),
            written: AtomicU64::new(0),
            active: Mutex::new(Some(Active {
                file,
                hasher: Hasher::new(algorithm),
                written: 0,
            })),
        });
        crate::sync::lock(&self.slots).insert(dir.clone(), slot.clone());
        Ok(Box::new(FsUpload {
            id,
            dir,
            slot,
            sessions: self.clone(),
            layout: layout.clone(),
        }))
    }

    pub fn open(
        self: &Arc<Self>,
        layout: &Layout,
        repository: &str,
        id: &str,
    ) -> Result<Box<dyn UploadSession>> {
        if !valid_id(id) {
            return Err(StoreError::NotFound);
        }
        let dir = layout.upload_dir(repository, id);
        let slot = {
            let mut slots = crate::sync::lock(&self.slots);
            match slots.get(&dir) {
                Some(slot) => slot.clone(),
                None => {
                    let algorithm = match files::read_optional(&dir.join(ALGORITHM))? {
                        None => return Err(StoreError::NotFound),
                        Some(name) => String::from_utf8(name)
                            .ok()
                            .and_then(|n| Algorithm::from_name(n.trim()))
                            .unwrap_or(Algorithm::Sha256),
                    };
                    let slot = Arc::new(Slot {
                        algorithm,
                        held: AtomicBool::new(false),
                        written: AtomicU64::new(0),
                        active: Mutex::new(None),
                    });
                    slots.insert(dir.clone(), slot.clone());
                    slot
                }
            }
        };
        if slot.held.swap(true, Ordering::AcqRel) {
            return Err(StoreError::Busy);
        }
        let upload = FsUpload {
            id: id.to_string(),
            dir,
            slot,
            sessions: self.clone(),
            layout: layout.clone(),
        };
        upload.ensure_loaded()?;
        Ok(Box::new(upload))
    }

    /// Remove the sessions in `uploads_dirs` (repositories' `_uploads/`)
    /// idle since before `cutoff`: no byte appended and not started since.
    /// Sessions a request holds are kept. Returns the sessions removed and
    /// their bytes; with `dry_run` only counts them.
    pub fn purge(
        &self,
        sessions: Vec<(StoredUpload, PathBuf)>,
        cutoff: std::time::SystemTime,
        dry_run: bool,
    ) -> io::Result<Purged> {
        let mut purged = Purged::default();
        for (session, dir) in sessions {
            // Under the lock, so no request opens the session meanwhile.
            let mut slots = crate::sync::lock(&self.slots);
            if slots
                .get(&dir)
                .is_some_and(|slot| slot.held.load(Ordering::Acquire))
            {
                continue;
            }
            let last_active = match last_active(&dir) {
                Ok(activity) => activity,
                // Ended meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if last_active >= cutoff {
                continue;
            }
            purged.bytes += session.bytes;
            if !dry_run {
                slots.remove(&dir);
                files::remove_tree(&dir)?;
            }
            purged.sessions.push(session);
        }
        Ok(purged)
    }

    fn forget(&self, dir: &PathBuf) {
        crate::sync::lock(&self.slots).remove(dir);
    }
}

/// When a session last changed: its newest file's modification time, or
/// its `startedat` when that is later.
fn last_active(dir: &std::path::Path) -> io::Result<std::time::SystemTime> {
    let mut last = std::time::UNIX_EPOCH;
    for entry in fs::read_dir(dir)? {
        if let Ok(modified) = entry?.metadata()?.modified() {
            last = last.max(modified);
        }
    }
    if let Some(started) = files::read_optional(&dir.join(STARTED_AT))?
        .and_then(|t| String::from_utf8(t).ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
    {
        last = last.max(std::time::UNIX_EPOCH + std::time::Duration::from_secs(started));
    }
    Ok(last)
}

/// Whether `dir` is a session a crash left before it held any data
/// (created, but its data file never was): nothing can resume it.
pub fn is_stillborn(dir: &std::path::Path) -> bool {
    dir.is_dir() && !dir.join(DATA).exists()
}

/// The bytes a session's data file holds (0 before it has one).
pub fn data_bytes(dir: &std::path::Path) -> io::Result<u64> {
    match fs::metadata(dir.join(DATA)) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn unix_seconds_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}", now.as_secs())
}

pub struct FsUpload {
    id: String,
    dir: PathBuf,
    slot: Arc<Slot>,
    sessions: Arc<Sessions>,
    layout: Layout,
}

impl FsUpload {
    /// Rebuild the hash state from disk if it is not in memory.
    fn ensure_loaded(&self) -> Result<()> {
        let mut active = crate::sync::lock(&self.slot.active);
        if active.is_none() {
            let mut file = match OpenOptions::new()
                .read(true)
                .append(true)
                .open(self.dir.join(DATA))
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::NotFound);
                }
                Err(e) => return Err(e.into()),
            };
            let (hasher, written) = hash_file(self.slot.algorithm, &mut file)?;
            self.slot.set_written(written);
            *active = Some(Active {
                file,
                hasher,
                written,
            });
        }
        Ok(())
    }

    /// Remove the session. Its directory leaves the uploads at once (a
    /// rename into `wharf-tmp/`), and is deleted there on a thread of its
    /// own: freeing the pages of a large data file takes tens of
    /// milliseconds the client need not wait for. A crash before the delete
    /// leaves it in `wharf-tmp/`, which startup empties.
    fn end(&self) -> Result<()> {
        self.sessions.forget(&self.dir);
        let doomed = self
            .layout
            .tmp()
            .join(format!("ended-upload-{}", uuid::Uuid::new_v4()));
        let moved = match fs::rename(&self.dir, &doomed) {
            // Either the session is gone already, or `wharf-tmp/` is (the
            // store makes it at start; an operator may have removed it).
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.dir.exists() => {
                fs::create_dir_all(self.layout.tmp())?;
                fs::rename(&self.dir, &doomed)
            }
            moved => moved,
        };
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(parent) = self.dir.parent() {
            files::sync_dir(parent)?;
        }
        let remove = move || {
            if let Err(e) = fs::remove_dir_all(&doomed) {
                tracing::warn!(path = %doomed.display(), error = %e, "could not remove an ended upload session; startup will");
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("wharf-remove".into())
            .spawn(remove.clone())
        {
            tracing::debug!(error = %e, "no thread to remove an ended session: removing it inline");
            remove();
        }
        Ok(())
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        self.slot.held.store(false, Ordering::Release);
    }
}

impl UploadSession for FsUpload {
    fn id(&self) -> &str {
        &self.id
    }

    fn offset(&self) -> u64 {
        self.slot.written.load(Ordering::Acquire)
    }

    fn writer(&mut self) -> Result<Box<dyn Sink>> {
        let active = self.slot.take().ok_or_else(|| {
            StoreError::Invalid("the upload session already has an open writer".into())
        })?;
        Ok(Box::new(UploadWriter::new(self.slot.clone(), active)?))
    }

    fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        let Active {
            mut file,
            hasher,
            written,
        } = match self.slot.take() {
            Some(active) => active,
            None => {
                self.ensure_loaded()?;
                self.slot.take().ok_or(StoreError::Busy)?
            }
        };
        let actual = if expected.algorithm() == self.slot.algorithm {
            hasher.finish()
        } else {
            // Started with another algorithm: hash what is on disk.
            use std::io::Seek;
            file.seek(io::SeekFrom::Start(0))?;
            hash_file(expected.algorithm(), &mut file)?.0.finish()
        };
        if &actual != expected {
            self.end()?;
            return Err(StoreError::DigestMismatch(actual));
        }
        let target_dir = self.layout.blob_dir(expected);
        let target = self.layout.blob_data(expected);
        // Stored now (or again): a grace period against collection starts.
        let touch_stored = || -> Result<bool> {
            if target.exists() {
                files::touch(&target)?;
                return Ok(true);
            }
            Ok(false)
        };
        // Content the store already holds (durably, since it was first
        // stored) needs no second copy on disk: the session is dropped
        // without waiting for its bytes to be written back.
        if !self.sessions.pins.referencing([expected], touch_stored)? {
            file.set_modified(std::time::SystemTime::now())?;
            file.sync_all()?;
            drop(file);
            self.sessions
                .pins
                .referencing([expected], || -> Result<()> {
                    // Another upload may have stored it meanwhile.
                    if !touch_stored()? {
                        files::create_dirs_durably(&target_dir)?;
                        fs::rename(self.dir.join(DATA), &target)?;
                        files::sync_dir(&target_dir)?;
                    }
                    Ok(())
                })?;
        }
        self.end()?;
        Ok(written)
    }

    fn cancel(self: Box<Self>) -> Result<()> {
        self.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> (tempfile::TempDir, Layout, Arc<Sessions>) {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path());
        (
            root,
            layout,
            Arc::new(Sessions::new(Arc::new(Pins::default()))),
        )
    }

    /// Append `bytes` through the session's writer, as a request does.
    async fn append(session: &mut Box<dyn UploadSession>, bytes: &[u8]) {
        let mut writer = session.writer().unwrap();
        for chunk in bytes.chunks(64 << 10) {
            while writer.room().unwrap() < chunk.len() {
                writer.ready().await;
            }
            writer.write(bytes::Bytes::copy_from_slice(chunk)).unwrap();
        }
        writer.close().await;
    }

    /// The id of a sha256 session of `team/app` holding `bytes`, left as a
    /// request leaves it: writer closed, handle dropped.
    async fn left_holding(sessions: &Arc<Sessions>, layout: &Layout, bytes: &[u8]) -> String {
        let mut session = sessions
            .start(layout, "team/app", Algorithm::Sha256)
            .unwrap();
        append(&mut session, bytes).await;
        session.id().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_is_registry_2s_directory_and_resumes_where_it_stopped() {
        let (_root, layout, sessions) = sessions();
        let id = left_holding(&sessions, &layout, b"first half, ").await;
        let dir = layout.upload_dir("team/app", &id);
        assert!(dir.join(STARTED_AT).is_file());
        assert_eq!(fs::read(dir.join(DATA)).unwrap(), b"first half, ");

        let mut resumed = sessions.open(&layout, "team/app", &id).unwrap();
        assert_eq!(resumed.offset(), 12);
        append(&mut resumed, b"second half").await;
        let blob = b"first half, second half";
        let digest = Algorithm::Sha256.digest(blob);
        assert_eq!(resumed.finish(&digest).unwrap(), blob.len() as u64);
        assert_eq!(fs::read(layout.blob_data(&digest)).unwrap(), blob);
        assert!(!dir.exists(), "a finished session leaves its directory");
        assert!(sessions.open(&layout, "team/app", &id).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_digest_of_another_algorithm_is_checked_against_the_bytes_on_disk() {
        let (_root, layout, sessions) = sessions();
        let id = left_holding(&sessions, &layout, b"hashed twice").await;
        let wrong = Algorithm::Sha512.digest(b"something else");
        let session = sessions.open(&layout, "team/app", &id).unwrap();
        assert!(matches!(
            session.finish(&wrong),
            Err(StoreError::DigestMismatch(actual))
                if actual == Algorithm::Sha512.digest(b"hashed twice")
        ));
        assert!(!layout.blob_data(&wrong).exists());
        assert!(
            !layout.upload_dir("team/app", &id).exists(),
            "a refused finish ends the session"
        );
    }

    #[test]
    fn a_session_id_that_is_not_a_uuid_names_no_directory() {
        let (_root, layout, sessions) = sessions();
        for id in ["../../etc", "x", "", "00000000-0000-0000-0000-00000000000/"] {
            assert!(
                matches!(
                    sessions.open(&layout, "team/app", id),
                    Err(StoreError::NotFound)
                ),
                "{id:?}"
            );
        }
    }

    #[test]
    fn a_panic_holding_the_sessions_lock_breaks_no_later_upload() {
        let (_root, layout, sessions) = sessions();
        let id = sessions
            .start(&layout, "team/app", Algorithm::Sha256)
            .unwrap()
            .id()
            .to_string();
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = crate::sync::lock(&sessions.slots);
                    panic!("a request panics holding the sessions lock");
                })
                .join();
        });
        assert!(sessions.slots.is_poisoned());
        // The session started before resumes and finishes; a new one starts.
        let resumed = sessions.open(&layout, "team/app", &id).unwrap();
        let empty = Algorithm::Sha256.digest(b"");
        assert_eq!(resumed.finish(&empty).unwrap(), 0);
        assert!(layout.blob_data(&empty).exists());
        let started = sessions.start(&layout, "team/app", Algorithm::Sha256);
        started.unwrap().cancel().unwrap();
    }
}
