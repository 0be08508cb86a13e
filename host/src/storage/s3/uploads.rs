//! Upload sessions in the bucket, so that any host can continue one.
//!
//! A session is the objects under its repository's `_uploads/<id>/`:
//!
//! ```text
//! wharf-session      its state (JSON): the hash algorithm and the hash state
//!                    of every byte received, the bytes received, the S3
//!                    multipart upload and the parts in it so far, the tail
//! wharf-tail-<n>     the bytes after the last whole part (fewer than a
//!                    part), which begin at byte n
//! data               the multipart upload, completed when the session ends
//! ```
//!
//! Bytes are hashed as they arrive and cut into parts of `chunksize`
//! bytes, each uploaded as soon as it is whole (two at a time at most, so a
//! session holds at most about three parts in memory whatever the blob's
//! size). When a request's writer closes, the tail and then the state are
//! written: the state is the commit point, naming the tail by where it
//! starts, so a request cut off between the two leaves the previous state
//! whole. A part uploaded but not yet named by a state is uploaded again by
//! whoever continues (S3 replaces a part of the same number).
//!
//! Finishing verifies the hash before anything is visible; a blob of one
//! part or less is written to its place at once, a larger one completes
//! the multipart upload and is copied into place on the server.
//!
//! Within one process a session is held by one request at a time; hosts do
//! not lock each other (a client continues its own upload, one request at
//! a time, as the protocol has it).

use super::{Inner, S3Storage, key, run_on};
use crate::storage::{Purged, Result, Sink, StoreError, StoredUpload, UploadSession};
use bytes::{Bytes, BytesMut};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{MultipartId, ObjectStore as _};
use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use wharf_spec::{Algorithm, Digest, Hasher};

/// Parts a writer uploads at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Bytes a write may bring at most.
const ROOM: usize = 4 << 20;

const STATE: &str = "wharf-session";
const TAIL: &str = "wharf-tail-";
const DATA: &str = "data";

/// A session's state as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    algorithm: String,
    /// Unix seconds.
    started: u64,
    /// Bytes received.
    offset: u64,
    /// The hash state of those bytes, hex.
    hash: String,
    /// The S3 multipart upload, once a part was cut.
    multipart: Option<String>,
    /// Its parts so far: their ETags and sizes.
    parts: Vec<(String, u64)>,
}

impl State {
    /// Where the tail starts: after the parts.
    fn tail_start(&self) -> u64 {
        self.parts.iter().map(|(_, size)| size).sum()
    }
}

/// A session as its holder has it.
struct Live {
    state: State,
    hasher: Hasher,
    tail: BytesMut,
}

/// Sessions a request of this process holds.
#[derive(Default)]
pub struct Sessions {
    held: Mutex<HashSet<(String, String)>>,
    /// Sessions whose last writer was dropped unclosed, while their state
    /// is saved: set to true once it is, and the session released.
    saving: Mutex<std::collections::HashMap<(String, String), Arc<Saved>>>,
}

#[derive(Default)]
struct Saved {
    done: Mutex<bool>,
    cond: std::sync::Condvar,
}

/// How long an open waits for a save a dropped writer left running.
const SAVE_WAIT: Duration = Duration::from_secs(60);

impl Sessions {
    /// Hold the session for a request; if a dropped writer's save is
    /// under way, once it is done. False if another request holds it.
    fn hold_when_saved(&self, repository: &str, id: &str) -> bool {
        let key = (repository.to_string(), id.to_string());
        loop {
            if self.hold(repository, id) {
                return true;
            }
            let saving = crate::sync::lock(&self.saving).get(&key).cloned();
            let Some(saved) = saving else {
                return false;
            };
            let done = crate::sync::lock(&saved.done);
            let (done, timeout) = saved
                .cond
                .wait_timeout_while(done, SAVE_WAIT, |done| !*done)
                .unwrap_or_else(|e| e.into_inner());
            if timeout.timed_out() && !*done {
                return false;
            }
        }
    }

    fn hold(&self, repository: &str, id: &str) -> bool {
        crate::sync::lock(&self.held).insert((repository.to_string(), id.to_string()))
    }

    fn release(&self, key: &(String, String)) {
        crate::sync::lock(&self.held).remove(key);
    }
}

/// Upload ids are UUIDs, which keeps them from naming anything but a session.
fn valid_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The keys of one session.
#[derive(Clone)]
struct Keys {
    dir: Key,
    state: Key,
    data: Key,
}

impl Keys {
    fn new(s3: &Inner, repository: &str, id: &str) -> Keys {
        let dir = key(s3.layout.upload_dir(repository, id));
        Keys {
            state: dir.child(STATE),
            data: dir.child(DATA),
            dir,
        }
    }

    fn tail(&self, start: u64) -> Key {
        self.dir.child(format!("{TAIL}{start}").as_str())
    }
}

impl Inner {
    async fn save(&self, keys: &Keys, live: &Live, old_tail: Option<u64>) -> Result<()> {
        let start = live.state.tail_start();
        if !live.tail.is_empty() {
            self.put(&keys.tail(start), Bytes::copy_from_slice(&live.tail))
                .await?;
        }
        let mut state = live.state.clone();
        state.hash = hex::encode(live.hasher.state());
        let json = serde_json::to_vec(&state).expect("a state serializes");
        self.put(&keys.state, Bytes::from(json)).await?;
        if let Some(old) = old_tail
            && (old != start || live.tail.is_empty())
        {
            self.delete(&keys.tail(old)).await?;
        }
        Ok(())
    }

    async fn load(&self, keys: &Keys) -> Result<Option<Live>> {
        let Some(bytes) = self.get(&keys.state).await? else {
            return Ok(None);
        };
        let corrupt = |why: String| {
            StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: upload state {}: {why}", self.name, keys.state),
            ))
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let algorithm = Algorithm::from_name(&state.algorithm)
            .ok_or_else(|| corrupt(format!("unknown algorithm {:?}", state.algorithm)))?;
        let hasher = hex::decode(&state.hash)
            .ok()
            .and_then(|h| Hasher::resume(algorithm, &h))
            .ok_or_else(|| corrupt("unreadable hash state".into()))?;
        let start = state.tail_start();
        let tail = if state.offset > start {
            let bytes = self
                .get(&keys.tail(start))
                .await?
                .ok_or_else(|| corrupt(format!("its tail at byte {start} is missing")))?;
            if bytes.len() as u64 != state.offset - start {
                return Err(corrupt("its tail is not the length recorded".into()));
            }
            BytesMut::from(&bytes[..])
        } else {
            BytesMut::new()
        };
        Ok(Some(Live {
            state,
            hasher,
            tail,
        }))
    }

    /// The digest of an object's bytes, read back.
    async fn hash_object(&self, key: &Key, algorithm: Algorithm) -> Result<Digest> {
        use futures::StreamExt as _;
        let mut stream = self
            .store
            .get(key)
            .await
            .map_err(|e| self.failed("reading an upload back", e))?
            .into_stream();
        let mut hasher = Hasher::new(algorithm);
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(|e| self.failed("reading an upload back", e))?);
        }
        Ok(hasher.finish())
    }

    /// Remove the session: its multipart upload and its objects.
    async fn end(&self, keys: &Keys, multipart: Option<&str>) -> Result<()> {
        if let Some(id) = multipart {
            let id: MultipartId = id.to_string();
            if let Err(e) = self.store.abort_multipart(&keys.data, &id).await {
                // Completed already, or gone: nothing to free.
                tracing::debug!(error = %e, "aborting a multipart upload");
            }
        }
        self.delete_tree(&keys.dir).await.map(drop)
    }
}

pub fn start(
    storage: &S3Storage,
    repository: &str,
    algorithm: Algorithm,
) -> Result<Box<dyn UploadSession>> {
    let id = uuid::Uuid::new_v4().to_string();
    let keys = Keys::new(&storage.inner, repository, &id);
    let live = Live {
        state: State {
            algorithm: algorithm.name().to_string(),
            started: unix_now(),
            offset: 0,
            hash: String::new(),
            multipart: None,
            parts: Vec::new(),
        },
        hasher: Hasher::new(algorithm),
        tail: BytesMut::new(),
    };
    let live = storage.with(|s3| {
        let keys = keys.clone();
        async move {
            s3.save(&keys, &live, None).await?;
            Ok(live)
        }
    })?;
    storage.sessions.hold(repository, &id);
    Ok(Box::new(S3Upload::new(storage, repository, id, keys, live)))
}

pub fn open(storage: &S3Storage, repository: &str, id: &str) -> Result<Box<dyn UploadSession>> {
    if !valid_id(id) {
        return Err(StoreError::NotFound);
    }
    if !storage.sessions.hold_when_saved(repository, id) {
        return Err(StoreError::Busy);
    }
    let keys = Keys::new(&storage.inner, repository, id);
    let loaded = storage.with(|s3| {
        let keys = keys.clone();
        async move { s3.load(&keys).await }
    });
    match loaded {
        Ok(Some(live)) => Ok(Box::new(S3Upload::new(
            storage,
            repository,
            id.to_string(),
            keys,
            live,
        ))),
        Ok(None) => {
            storage
                .sessions
                .release(&(repository.to_string(), id.to_string()));
            Err(StoreError::NotFound)
        }
        Err(e) => {
            storage
                .sessions
                .release(&(repository.to_string(), id.to_string()));
            Err(e)
        }
    }
}

/// Every session with when its state was last written.
pub fn list(storage: &S3Storage) -> Result<Vec<(StoredUpload, SystemTime)>> {
    storage.with(|s3| async move {
        let (_, dirs) = s3.walk().await?;
        let mut sessions = Vec::new();
        for (repository, dir) in dirs {
            for object in s3.list(&dir).await? {
                let parts: Vec<String> = object
                    .location
                    .parts()
                    .map(|p| p.as_ref().to_string())
                    .collect();
                let [.., id, file] = parts.as_slice() else {
                    continue;
                };
                if file != STATE || !valid_id(id) {
                    continue;
                }
                let Some(bytes) = s3.get(&object.location).await? else {
                    continue;
                };
                let Ok(state) = serde_json::from_slice::<State>(&bytes) else {
                    continue;
                };
                let upload = StoredUpload {
                    repository: repository.clone(),
                    id: id.clone(),
                    bytes: state.offset,
                };
                sessions.push((upload, SystemTime::from(object.last_modified)));
            }
        }
        Ok(sessions)
    })
}

pub fn purge(storage: &S3Storage, age: Duration, dry_run: bool) -> Result<Purged> {
    let cutoff = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut purged = Purged::default();
    for (upload, last_active) in list(storage)? {
        if last_active >= cutoff || !storage.sessions.hold(&upload.repository, &upload.id) {
            continue;
        }
        let held = (upload.repository.clone(), upload.id.clone());
        if !dry_run {
            let keys = Keys::new(&storage.inner, &upload.repository, &upload.id);
            let ended = storage.with(|s3| async move {
                let multipart = s3.load(&keys).await.ok().flatten();
                let multipart = multipart.and_then(|l| l.state.multipart);
                s3.end(&keys, multipart.as_deref()).await
            });
            storage.sessions.release(&held);
            ended?;
        } else {
            storage.sessions.release(&held);
        }
        purged.bytes += upload.bytes;
        purged.sessions.push(upload);
    }
    Ok(purged)
}

/// A session a request holds.
struct S3Upload {
    repository: String,
    id: String,
    keys: Keys,
    s3: Arc<Inner>,
    runtime: tokio::runtime::Handle,
    sessions: Arc<Sessions>,
    pins: Arc<crate::storage::Pins>,
    /// The session while no writer has it.
    live: Arc<Mutex<Option<Live>>>,
    /// The save a writer dropped without closing left running.
    saving: Arc<Mutex<Option<JoinHandle<()>>>>,
    written: Arc<AtomicU64>,
    /// Where the stored state's tail starts, if it has one.
    stored_tail: Arc<Mutex<Option<u64>>>,
}

impl S3Upload {
    fn new(storage: &S3Storage, repository: &str, id: String, keys: Keys, live: Live) -> S3Upload {
        let written = Arc::new(AtomicU64::new(live.state.offset));
        let stored_tail =
            (live.state.offset > live.state.tail_start()).then(|| live.state.tail_start());
        S3Upload {
            repository: repository.to_string(),
            id,
            keys,
            s3: storage.inner.clone(),
            runtime: storage.handle().clone(),
            sessions: storage.sessions.clone(),
            pins: storage.pins.clone(),
            live: Arc::new(Mutex::new(Some(live))),
            saving: Arc::default(),
            written,
            stored_tail: Arc::new(Mutex::new(stored_tail)),
        }
    }

    /// The session, once any save left running is done.
    fn take(&self) -> Result<Live> {
        if let Some(saving) = crate::sync::lock(&self.saving).take() {
            let _ = futures::executor::block_on(saving);
        }
        crate::sync::lock(&self.live).take().ok_or_else(|| {
            StoreError::Invalid("the upload session already has an open writer".into())
        })
    }

    fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        run_on(&self.runtime, future)
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        let held = (self.repository.clone(), self.id.clone());
        let saving = crate::sync::lock(&self.saving).take();
        match saving {
            // Released once the save is in the bucket, so no request of
            // this process loads the state before it.
            Some(saving) => {
                let sessions = self.sessions.clone();
                let saved = Arc::new(Saved::default());
                crate::sync::lock(&sessions.saving).insert(held.clone(), saved.clone());
                self.runtime.spawn(async move {
                    let _ = saving.await;
                    crate::sync::lock(&sessions.saving).remove(&held);
                    sessions.release(&held);
                    *crate::sync::lock(&saved.done) = true;
                    saved.cond.notify_all();
                });
            }
            None => self.sessions.release(&held),
        }
    }
}

impl UploadSession for S3Upload {
    fn id(&self) -> &str {
        &self.id
    }

    fn offset(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    fn writer(&mut self) -> Result<Box<dyn Sink>> {
        let live = self.take()?;
        Ok(Box::new(S3Sink {
            live: Some(live),
            multipart: Arc::default(),
            in_flight: VecDeque::new(),
            flushing: false,
            error: None,
            upload: Handles {
                s3: self.s3.clone(),
                keys: self.keys.clone(),
                runtime: self.runtime.clone(),
                home: self.live.clone(),
                saving: self.saving.clone(),
                written: self.written.clone(),
                stored_tail: self.stored_tail.clone(),
            },
        }))
    }

    fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        let mut live = self.take()?;
        let algorithm = Algorithm::from_name(&live.state.algorithm).unwrap_or(Algorithm::Sha256);
        let size = live.state.offset;
        let keys = self.keys.clone();
        let multipart = live.state.multipart.clone();
        // Hashed as the bytes came, or (finished under another algorithm
        // than the session was started with) once they are assembled.
        let rehash = algorithm != expected.algorithm();
        if !rehash {
            let hasher = std::mem::replace(&mut live.hasher, Hasher::new(algorithm));
            let actual = hasher.finish();
            if &actual != expected {
                self.run({
                    let s3 = self.s3.clone();
                    async move { s3.end(&keys, multipart.as_deref()).await }
                })?;
                return Err(StoreError::DigestMismatch(actual));
            }
        }
        let s3 = self.s3.clone();
        let target = key(s3.layout.blob_data(expected));
        let digest = expected.clone();
        let runtime = self.runtime.clone();
        self.pins.referencing([expected], || {
            run_on(&runtime, async move {
                if rehash && live.state.parts.is_empty() {
                    let actual = digest.algorithm().digest(&live.tail);
                    if actual != digest {
                        s3.end(&keys, multipart.as_deref()).await?;
                        return Err(StoreError::DigestMismatch(actual));
                    }
                }
                if !rehash && s3.head(&target).await?.is_some() {
                    // Held already: stored again now, as far as the
                    // collector's grace period goes.
                    s3.touch(&digest).await?;
                } else if live.state.parts.is_empty() {
                    if s3.head(&target).await?.is_some() {
                        s3.touch(&digest).await?;
                    } else {
                        s3.put(&target, live.tail.freeze()).await?;
                    }
                } else {
                    let id: MultipartId = multipart.clone().expect("parts belong to an upload");
                    let mut parts: Vec<PartId> = live
                        .state
                        .parts
                        .iter()
                        .map(|(etag, _)| PartId {
                            content_id: etag.clone(),
                        })
                        .collect();
                    if !live.tail.is_empty() {
                        let last = s3
                            .store
                            .put_part(&keys.data, &id, parts.len(), live.tail.freeze().into())
                            .await
                            .map_err(|e| s3.failed("uploading the last part", e))?;
                        parts.push(last);
                    }
                    s3.store
                        .complete_multipart(&keys.data, &id, parts)
                        .await
                        .map_err(|e| s3.failed("completing an upload", e))?;
                    if rehash {
                        let actual = s3.hash_object(&keys.data, digest.algorithm()).await?;
                        if actual != digest {
                            s3.end(&keys, None).await?;
                            return Err(StoreError::DigestMismatch(actual));
                        }
                    }
                    s3.store
                        .copy(&keys.data, &target)
                        .await
                        .map_err(|e| s3.failed("moving an upload into place", e))?;
                }
                s3.end(&keys, None).await
            })
        })?;
        Ok(size)
    }

    fn cancel(self: Box<Self>) -> Result<()> {
        let live = self.take()?;
        let (s3, keys) = (self.s3.clone(), self.keys.clone());
        self.run(async move { s3.end(&keys, live.state.multipart.as_deref()).await })
    }
}

/// What a sink shares with its session.
struct Handles {
    s3: Arc<Inner>,
    keys: Keys,
    runtime: tokio::runtime::Handle,
    /// Where the session goes back when the writer is done.
    home: Arc<Mutex<Option<Live>>>,
    saving: Arc<Mutex<Option<JoinHandle<()>>>>,
    written: Arc<AtomicU64>,
    stored_tail: Arc<Mutex<Option<u64>>>,
}

/// Appends to a session: hashes, cuts parts, uploads them.
struct S3Sink {
    live: Option<Live>,
    /// The multipart upload, created by the first part that needs it.
    multipart: Arc<tokio::sync::OnceCell<String>>,
    /// Parts on their way, in order.
    in_flight: VecDeque<JoinHandle<Result<(String, u64)>>>,
    flushing: bool,
    error: Option<io::Error>,
    upload: Handles,
}

impl S3Sink {
    fn live(&mut self) -> io::Result<&mut Live> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        self.live
            .as_mut()
            .ok_or_else(|| io::Error::other("the upload's writer is closed"))
    }

    /// Send `part`, the `index`th, on its way.
    fn upload_part(&mut self, part: Bytes) {
        let live = self.live.as_mut().expect("a live session");
        let index = live.state.parts.len() + self.in_flight.len();
        let s3 = self.upload.s3.clone();
        let data = self.upload.keys.data.clone();
        let multipart = self.multipart.clone();
        let known = live.state.multipart.clone();
        let size = part.len() as u64;
        self.in_flight
            .push_back(self.upload.runtime.spawn(async move {
                let id = multipart
                    .get_or_try_init(|| async {
                        match known {
                            Some(id) => Ok(id),
                            None => s3
                                .store
                                .create_multipart(&data)
                                .await
                                .map_err(|e| s3.failed("starting a multipart upload", e)),
                        }
                    })
                    .await?
                    .clone();
                let part = s3
                    .store
                    .put_part(&data, &id, index, part.into())
                    .await
                    .map_err(|e| s3.failed("uploading a part", e))?;
                Ok((part.content_id, size))
            }));
    }

    /// Record a part that arrived, or the failure.
    fn landed(
        &mut self,
        result: std::result::Result<Result<(String, u64)>, tokio::task::JoinError>,
    ) {
        match result {
            Ok(Ok(part)) => {
                let multipart = self.multipart.get().cloned();
                if let Some(live) = &mut self.live {
                    live.state.multipart = multipart.or(live.state.multipart.take());
                    live.state.parts.push(part);
                }
            }
            Ok(Err(e)) => self.error = Some(io::Error::other(e.to_string())),
            Err(e) => self.error = Some(io::Error::other(format!("a part upload was lost: {e}"))),
        }
    }

    /// Take the parts that have arrived, without waiting.
    fn reap(&mut self) {
        use futures::FutureExt as _;
        while self.in_flight.front().is_some_and(|h| h.is_finished()) {
            let handle = self.in_flight.pop_front().expect("a finished part");
            if let Some(result) = handle.now_or_never() {
                self.landed(result);
            }
        }
    }

    async fn wait_for_all(&mut self) {
        while let Some(handle) = self.in_flight.pop_front() {
            let result = handle.await;
            self.landed(result);
        }
    }
}

#[async_trait::async_trait]
impl Sink for S3Sink {
    fn room(&mut self) -> io::Result<usize> {
        self.reap();
        self.live()?;
        if self.flushing || self.in_flight.len() >= PARTS_IN_FLIGHT {
            return Ok(0);
        }
        Ok(ROOM.min(self.upload.s3.chunk_size))
    }

    fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        let chunk = self.upload.s3.chunk_size;
        if bytes.len() > ROOM.min(chunk) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write exceeds the room the upload reported",
            ));
        }
        let live = self.live()?;
        live.hasher.update(&bytes);
        live.tail.extend_from_slice(&bytes);
        live.state.offset += bytes.len() as u64;
        let offset = live.state.offset;
        let whole = live.tail.len() >= chunk;
        self.upload.written.store(offset, Ordering::Release);
        if whole {
            let live = self.live.as_mut().expect("a live session");
            let part = live.tail.split_to(chunk).freeze();
            self.upload_part(part);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.live()?;
        self.flushing = true;
        Ok(())
    }

    async fn ready(&mut self) {
        if self.error.is_some() {
            return;
        }
        if self.flushing {
            self.wait_for_all().await;
            self.flushing = false;
        } else if self.in_flight.len() >= PARTS_IN_FLIGHT
            && let Some(handle) = self.in_flight.pop_front()
        {
            let result = handle.await;
            self.landed(result);
        }
    }

    async fn close(&mut self) {
        self.wait_for_all().await;
        let Some(live) = self.live.take() else {
            return;
        };
        if self.error.is_none() {
            let old = *crate::sync::lock(&self.upload.stored_tail);
            match self.upload.s3.save(&self.upload.keys, &live, old).await {
                Ok(()) => {
                    let start = live.state.tail_start();
                    *crate::sync::lock(&self.upload.stored_tail) =
                        (!live.tail.is_empty()).then_some(start);
                }
                Err(e) => self.error = Some(io::Error::other(e.to_string())),
            }
        }
        // Back to the session even if the save failed: this request may
        // still use it; the next one starts from the last state saved.
        *crate::sync::lock(&self.upload.home) = Some(live);
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        // Dropped without `close` (the instance trapped or ran out of
        // time): save on the backend's runtime; the session waits for it
        // before anyone uses it again.
        let Some(live) = self.live.take() else {
            return;
        };
        let in_flight = std::mem::take(&mut self.in_flight);
        let multipart = self.multipart.clone();
        let upload = Handles {
            s3: self.upload.s3.clone(),
            keys: self.upload.keys.clone(),
            runtime: self.upload.runtime.clone(),
            home: self.upload.home.clone(),
            saving: self.upload.saving.clone(),
            written: self.upload.written.clone(),
            stored_tail: self.upload.stored_tail.clone(),
        };
        let failed = self.error.is_some();
        let saving = self.upload.runtime.spawn(async move {
            let mut sink = S3Sink {
                live: Some(live),
                multipart,
                in_flight,
                flushing: false,
                error: failed.then(|| io::Error::other("failed before")),
                upload,
            };
            sink.close().await;
        });
        *crate::sync::lock(&self.upload.saving) = Some(saving);
    }
}
