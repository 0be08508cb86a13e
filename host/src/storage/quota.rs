//! A tenant's storage limits, enforced around its store: `storage_bytes`
//! (bytes of blobs, manifests and unfinished uploads held) and
//! `concurrent_uploads` (upload sessions open at once).
//!
//! [`Quota`] wraps a store and implements the same two traits, so the
//! capability layer and the backend know nothing of limits. It keeps two
//! counters, taken from storage when the tenant opens (through the
//! backend's listings, so on every backend): the bytes held (the content
//! store's blobs and the upload sessions' data) and the open upload
//! sessions. They are updated as this process stores
//! manifests, receives upload bytes and starts and ends sessions, and
//! counted again from storage before anything is refused, so space given
//! back behind the process's back (garbage collection, purged sessions)
//! is seen when it matters.
//!
//! Upload bytes count as they arrive: a session's writer is wrapped in a
//! `QuotaWriter` that reserves every chunk before it passes it on, and
//! reports no more room than the quota has left (with none left, room for
//! one byte: the splice offered it learns whether the body has ended, so a
//! blob that fills the quota exactly is stored, or holds more, and that
//! byte is refused). A chunk that does not fit is refused and never
//! reaches the session's file, so no request, however large its body,
//! takes the tenant past `storage_bytes`. The session remembers the
//! refusal and answers its next `writer` with `limit-exceeded`, which is
//! how the guest tells the client 403 `DENIED` rather than a storage
//! failure. A session's bytes stay counted until it is finished (they
//! become content, or are released when the content was already held),
//! cancelled, or purged; so uploading content the store already holds
//! needs room for it while it arrives.
//!
//! What is refused stores nothing beyond the quota: the bytes a refused
//! session already holds stay in it (a client may resume it once space is
//! freed) until it is cancelled or purged. This module must never let a
//! byte reach a session's file before it is counted.

use crate::storage::{
    Backend, BlobStore, Manifest, MetadataStore, Page, Result, Sink, Source, StoreError,
    UploadSession,
};
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use wharf_spec::{Algorithm, Digest};

/// A store held to its tenant's `storage_bytes` and `concurrent_uploads`.
pub struct Quota<S: ?Sized> {
    inner: Arc<S>,
    shared: Arc<Shared>,
}

/// An upload session by repository and id.
type SessionKey = (String, String);

struct Shared {
    tenant: String,
    storage_bytes: Option<u64>,
    concurrent_uploads: Option<u32>,
    held: Mutex<Held>,
    /// Upload sessions open; `None` until first needed (counting lists
    /// every session, which on a large registry is a walk of it: not
    /// something to make every start wait for).
    open: Mutex<Option<u32>>,
    /// Bytes held as last counted from disk for [`Quota::usage`], and when.
    usage: Mutex<Option<(std::time::Instant, u64)>>,
}

/// What the tenant holds, as far as this process knows.
#[derive(Default)]
struct Held {
    /// Bytes of blobs, manifests and upload sessions.
    bytes: u64,
    /// Sessions with a writer open: the bytes counted for each, some of
    /// which may not have reached storage yet.
    writing: HashMap<SessionKey, u64>,
    /// When the store was last counted from storage.
    counted: Option<std::time::Instant>,
}

/// How often at most a refusal counts the store again from disk: a tenant
/// at its quota must not make every write walk the whole store.
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often at most [`Quota::usage`] counts the store from disk.
pub const USAGE_RECOUNT: std::time::Duration = std::time::Duration::from_secs(60);

impl<S: Backend + ?Sized> Quota<S> {
    /// Hold `inner` to the limits; counts what the tenant already holds.
    pub fn new(
        inner: Arc<S>,
        tenant: &str,
        storage_bytes: Option<u64>,
        concurrent_uploads: Option<u32>,
    ) -> Result<Quota<S>> {
        // Listing the whole store is only worth it when there is a quota.
        let used = match storage_bytes {
            Some(_) => held_bytes(&*inner, &HashMap::new())?,
            None => 0,
        };
        tracing::info!(
            tenant,
            used_bytes = used,
            storage_bytes,
            concurrent_uploads,
            "tenant storage counted"
        );
        Ok(Quota {
            inner,
            shared: Arc::new(Shared {
                tenant: tenant.to_string(),
                storage_bytes,
                concurrent_uploads,
                held: Mutex::new(Held {
                    bytes: used,
                    writing: HashMap::new(),
                    counted: None,
                }),
                open: Mutex::new(None),
                usage: Mutex::new(None),
            }),
        })
    }

    /// The storage held to the limits.
    pub fn storage(&self) -> &Arc<S> {
        &self.inner
    }

    /// Upload sessions open and bytes held, for metrics. The bytes are
    /// counted from storage, at most every [`USAGE_RECOUNT`]: without a quota
    /// nothing else counts them, and deletes and garbage collection give
    /// space back behind the running count's back.
    pub fn usage(&self) -> Result<(u32, u64)> {
        let shared = &self.shared;
        let open = *self.counted(&mut crate::sync::lock(&shared.open))?.0;
        let mut usage = crate::sync::lock(&shared.usage);
        let bytes = match *usage {
            Some((at, bytes)) if at.elapsed() < USAGE_RECOUNT => bytes,
            _ => {
                let writing = shared.held().writing.clone();
                let bytes = held_bytes(&*self.inner, &writing)?;
                *usage = Some((std::time::Instant::now(), bytes));
                bytes
            }
        };
        Ok((open, bytes))
    }

    /// The open-session count, counted from storage now if it never was;
    /// whether it was counted just now.
    fn counted<'a>(&self, open: &'a mut Option<u32>) -> Result<(&'a mut u32, bool)> {
        let just_counted = open.is_none();
        if just_counted {
            *open = Some(open_sessions(&*self.inner)?);
        }
        Ok((open.as_mut().expect("counted above"), just_counted))
    }

    fn session(&self, inner: Box<dyn UploadSession>, repository: &str) -> Box<dyn UploadSession> {
        let key = (repository.to_string(), inner.id().to_string());
        Box::new(QuotaUpload {
            inner,
            blobs: self.inner.clone(),
            shared: self.shared.clone(),
            key,
            refused: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Shared {
    fn over_quota(&self, limit: u64) -> StoreError {
        StoreError::LimitExceeded(format!(
            "storage quota exceeded: this registry may hold {limit} bytes ({}); delete images and \
             run garbage collection, or ask the operator for a larger quota",
            human(limit)
        ))
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        crate::sync::lock(&self.held)
    }

    /// Count `bytes` more as held, if they fit the quota; `store` is
    /// counted again when they do not.
    fn reserve<S: Backend + ?Sized>(&self, store: &S, bytes: u64) -> Result<()> {
        self.reserve_in(store, &mut self.held(), bytes)
    }

    fn reserve_in<S: Backend + ?Sized>(
        &self,
        store: &S,
        held: &mut Held,
        bytes: u64,
    ) -> Result<()> {
        if let Some(limit) = self.storage_bytes {
            if held.bytes.saturating_add(bytes) > limit
                && held.counted.is_none_or(|at| at.elapsed() >= RECOUNT_EVERY)
            {
                // Space may have been given back behind our back.
                held.bytes = held_bytes(store, &held.writing)?;
                held.counted = Some(std::time::Instant::now());
            }
            if held.bytes.saturating_add(bytes) > limit {
                tracing::info!(
                    tenant = self.tenant,
                    used = held.bytes,
                    bytes,
                    limit,
                    "storage quota refused a push"
                );
                return Err(self.over_quota(limit));
            }
        }
        held.bytes = held.bytes.saturating_add(bytes);
        Ok(())
    }

    fn release(&self, bytes: u64) {
        let mut held = self.held();
        held.bytes = held.bytes.saturating_sub(bytes);
    }

    fn session_ended(&self) {
        // Uncounted yet: the count, when made, will not hold this one.
        if let Some(open) = crate::sync::lock(&self.open).as_mut() {
            *open = open.saturating_sub(1);
        }
    }
}

impl<S: Backend + ?Sized> BlobStore for Quota<S> {
    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.inner.stat(digest)
    }

    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<Box<dyn Source>> {
        self.inner.read(digest, offset, length)
    }

    fn redirect(&self, digest: &Digest) -> Result<Option<String>> {
        self.inner.redirect(digest)
    }

    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>> {
        let shared = &self.shared;
        let mut guard = crate::sync::lock(&shared.open);
        let (open, just_counted) = self.counted(&mut guard)?;
        if let Some(limit) = shared.concurrent_uploads {
            if *open >= limit && !just_counted {
                // Sessions may have been purged behind our back.
                *open = open_sessions(&*self.inner)?;
            }
            if *open >= limit {
                tracing::info!(
                    tenant = shared.tenant,
                    limit,
                    "concurrent_uploads refused an upload"
                );
                return Err(StoreError::LimitExceeded(format!(
                    "too many uploads in progress: this registry allows {limit} open upload \
                     sessions at once; finish or cancel one, or retry later"
                )));
            }
        }
        let session = self.inner.start_upload(repository, algorithm)?;
        *open += 1;
        Ok(self.session(session, repository))
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>> {
        let session = self.inner.open_upload(repository, id)?;
        Ok(self.session(session, repository))
    }
}

/// An upload session whose bytes count against the quota as they arrive.
struct QuotaUpload<S: ?Sized> {
    inner: Box<dyn UploadSession>,
    blobs: Arc<S>,
    shared: Arc<Shared>,
    /// The session, as the recount from storage finds it.
    key: SessionKey,
    /// Set once a writer of this session refused bytes for the quota.
    refused: Arc<AtomicBool>,
}

impl<S: Backend + ?Sized> UploadSession for QuotaUpload<S> {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn offset(&self) -> u64 {
        self.inner.offset()
    }

    fn writer(&mut self) -> Result<Box<dyn Sink>> {
        let Some(limit) = self.shared.storage_bytes else {
            return self.inner.writer();
        };
        if self.refused.load(Ordering::Acquire) {
            return Err(self.shared.over_quota(limit));
        }
        let sink = self.inner.writer()?;
        self.shared
            .held()
            .writing
            .insert(self.key.clone(), self.inner.offset());
        Ok(Box::new(QuotaWriter {
            inner: Some(sink),
            store: self.blobs.clone(),
            shared: self.shared.clone(),
            limit,
            key: self.key.clone(),
            refused: self.refused.clone(),
        }))
    }

    fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        let QuotaUpload {
            inner,
            blobs,
            shared,
            ..
        } = *self;
        // The session's bytes are counted already: they become content, or
        // are released when the content was held before.
        let already_held = blobs.stat(expected)?.is_some();
        let bytes = inner.offset();
        let finished = inner.finish(expected);
        match &finished {
            Ok(_) => {
                if already_held {
                    shared.release(bytes);
                }
                shared.session_ended();
            }
            Err(StoreError::DigestMismatch(_)) => {
                // The session is gone with its bytes.
                shared.release(bytes);
                shared.session_ended();
            }
            // The session is still there, holding its bytes.
            Err(_) => {}
        }
        finished
    }

    fn cancel(self: Box<Self>) -> Result<()> {
        let shared = self.shared.clone();
        let bytes = self.inner.offset();
        self.inner.cancel()?;
        shared.release(bytes);
        shared.session_ended();
        Ok(())
    }
}

/// A session's writer that reserves every chunk against `storage_bytes`
/// before passing it on, and refuses the first chunk that does not fit.
struct QuotaWriter<S: ?Sized> {
    /// Taken when dropped, so its bytes are stored before the session's
    /// entry in [`Held::writing`] goes.
    inner: Option<Box<dyn Sink>>,
    /// Counted again when a chunk does not fit.
    store: Arc<S>,
    shared: Arc<Shared>,
    limit: u64,
    key: SessionKey,
    refused: Arc<AtomicBool>,
}

impl<S: Backend + ?Sized> QuotaWriter<S> {
    fn inner(&mut self) -> io::Result<&mut Box<dyn Sink>> {
        if self.refused.load(Ordering::Acquire) {
            return Err(self.refusal());
        }
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("the upload's writer is closed"))
    }

    fn refusal(&self) -> io::Error {
        let message = self.shared.over_quota(self.limit);
        io::Error::new(io::ErrorKind::QuotaExceeded, message.to_string())
    }

    /// Count `bytes` for this session, or remember that they did not fit.
    fn reserve(&mut self, bytes: u64) -> io::Result<()> {
        let mut held = self.shared.held();
        match self.shared.reserve_in(&*self.store, &mut held, bytes) {
            Ok(()) => {
                *held.writing.entry(self.key.clone()).or_default() += bytes;
                Ok(())
            }
            Err(StoreError::LimitExceeded(_)) => {
                self.refused.store(true, Ordering::Release);
                Err(self.refusal())
            }
            Err(e) => Err(io::Error::other(format!(
                "counting the tenant's storage: {e}"
            ))),
        }
    }

    fn unreserve(&self, bytes: u64) {
        let mut held = self.shared.held();
        held.bytes = held.bytes.saturating_sub(bytes);
        if let Some(counted) = held.writing.get_mut(&self.key) {
            *counted = counted.saturating_sub(bytes);
        }
    }
}

#[async_trait::async_trait]
impl<S: Backend + ?Sized> Sink for QuotaWriter<S> {
    fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        self.inner()?;
        let len = bytes.len() as u64;
        self.reserve(len)?;
        let written = self.inner()?.write(bytes);
        if written.is_err() {
            self.unreserve(len);
        }
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner()?.flush()
    }

    fn room(&mut self) -> io::Result<usize> {
        let room = self.inner()?.room()?;
        if room == 0 {
            return Ok(0);
        }
        let left = self.limit.saturating_sub(self.shared.held().bytes);
        // With nothing left, still room for one byte: the splice that
        // offers it finds out whether the body has ended (a blob that fills
        // the quota exactly is stored) or has more (that byte is refused).
        let left = usize::try_from(left).unwrap_or(usize::MAX).max(1);
        Ok(room.min(left))
    }

    async fn ready(&mut self) {
        if self.refused.load(Ordering::Acquire) {
            return;
        }
        if let Some(inner) = &mut self.inner {
            inner.ready().await;
        }
    }

    async fn close(&mut self) {
        if let Some(inner) = &mut self.inner {
            inner.close().await;
        }
    }
}

impl<S: ?Sized> Drop for QuotaWriter<S> {
    fn drop(&mut self) {
        // The inner writer stores everything it took as it drops; from
        // then on the recount finds the session's bytes in storage.
        drop(self.inner.take());
        self.shared.held().writing.remove(&self.key);
    }
}

impl<S: Backend + ?Sized> MetadataStore for Quota<S> {
    fn local_reads(&self) -> bool {
        self.inner.local_reads()
    }

    fn get_manifest(&self, repository: &str, digest: &Digest) -> Result<Option<Manifest>> {
        self.inner.get_manifest(repository, digest)
    }

    fn put_manifest(&self, repository: &str, manifest: &Manifest) -> Result<()> {
        let added = match self.inner.stat(&manifest.digest)? {
            Some(_) => 0,
            None => manifest.content.len() as u64,
        };
        self.shared.reserve(&*self.inner, added)?;
        let put = self.inner.put_manifest(repository, manifest);
        if put.is_err() {
            self.shared.release(added);
        }
        put
    }

    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.inner.delete_manifest(repository, digest)
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        self.inner.resolve_tag(repository, tag)
    }

    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        self.inner.set_tag(repository, tag, digest)
    }

    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        self.inner.delete_tag(repository, tag)
    }

    fn list_tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Option<Page>> {
        self.inner.list_tags(repository, after, limit)
    }

    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page> {
        self.inner.list_repositories(after, limit)
    }

    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        self.inner.list_referrers(repository, subject, after, limit)
    }

    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.inner.link_blob(repository, digest)
    }

    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.inner.blob_linked(repository, digest)
    }

    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.inner.unlink_blob(repository, digest)
    }
}

/// Bytes the tenant holds: its upload sessions' data (for those with a
/// writer open, what `writing` counted for them) and its content store.
/// Sessions first: a session finished meanwhile has moved its data into
/// the content store and is counted twice, never missed.
fn held_bytes<S: Backend + ?Sized>(store: &S, writing: &HashMap<SessionKey, u64>) -> Result<u64> {
    let mut total = 0u64;
    for upload in store.list_uploads()? {
        let key = (upload.repository, upload.id);
        total = total.saturating_add(writing.get(&key).copied().unwrap_or(upload.bytes));
    }
    for blob in store.list_blobs()? {
        total = total.saturating_add(blob.size);
    }
    Ok(total)
}

/// Upload sessions the store holds.
fn open_sessions<S: Backend + ?Sized>(store: &S) -> Result<u32> {
    Ok(u32::try_from(store.list_uploads()?.len()).unwrap_or(u32::MAX))
}

/// `10737418240` → `10 GiB`, for messages.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.3} {}", UNITS[unit]).replace(".000 ", " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{Fixture, on_every_backend};

    fn digest(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::parse(&format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(data))
        ))
        .unwrap()
    }

    /// Append `data` to `session` as the guest's splice does: pieces no
    /// larger than the room reported, waiting when there is none, then a
    /// flush and the writer dropped. A failed write is reported as the
    /// guest learns it: by asking the session for a writer again.
    async fn append(session: &mut Box<dyn UploadSession>, data: &[u8]) -> Result<()> {
        let mut writer = session.writer()?;
        let mut rest = data;
        let mut moved = Ok(());
        while !rest.is_empty() {
            let room = match writer.room() {
                Ok(room) => room,
                Err(e) => {
                    moved = Err(e);
                    break;
                }
            };
            if room == 0 {
                writer.ready().await;
                continue;
            }
            let n = room.min(rest.len());
            if let Err(e) = writer.write(Bytes::copy_from_slice(&rest[..n])) {
                moved = Err(e);
                break;
            }
            rest = &rest[n..];
        }
        if moved.is_ok() {
            moved = writer.flush();
            writer.ready().await;
        }
        writer.close().await;
        drop(writer);
        match moved {
            Ok(()) => Ok(()),
            Err(e) => match session.writer().map(drop) {
                Err(refused) => Err(refused),
                Ok(_) => Err(StoreError::Invalid(e.to_string())),
            },
        }
    }

    /// Store `data` through a new upload session.
    async fn upload(store: &Quota<dyn Backend>, data: &[u8]) -> Result<u64> {
        let mut session = store.start_upload("team/app", Algorithm::Sha256)?;
        append(&mut session, data).await?;
        session.finish(&digest(data))
    }

    /// The fixture's backend (opened again) held to the limits.
    fn quota(f: &dyn Fixture, bytes: Option<u64>, uploads: Option<u32>) -> Quota<dyn Backend> {
        Quota::new(f.open(), "test", bytes, uploads).unwrap()
    }

    fn used(store: &Quota<dyn Backend>) -> u64 {
        store.shared.held().bytes
    }

    /// Bytes in the tenant's session data files and content store.
    fn on_disk(store: &Quota<dyn Backend>) -> u64 {
        held_bytes(&*store.inner, &HashMap::new()).unwrap()
    }

    fn over_quota(e: &StoreError) -> bool {
        matches!(e, StoreError::LimitExceeded(m) if m.contains("storage quota exceeded"))
    }

    on_every_backend!(
        a_blob_past_the_quota_is_refused_and_nothing_is_stored,
        a_write_passing_the_quota_is_refused_and_nothing_beyond_it_reaches_the_disk,
        unfinished_sessions_bytes_count_until_cancelled,
        finishing_content_already_held_releases_the_sessions_bytes,
        space_of_purged_sessions_is_found_before_a_write_is_refused,
        open_sessions_are_bounded_and_ending_one_frees_a_slot,
    );

    async fn a_blob_past_the_quota_is_refused_and_nothing_is_stored(f: &dyn Fixture) {
        let store = quota(f, Some(100), None);
        assert_eq!(upload(&store, &[1u8; 60]).await.unwrap(), 60);
        let big = [2u8; 50];
        let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        let e = append(&mut session, &big).await.unwrap_err();
        assert!(over_quota(&e) && e.to_string().contains("100 bytes"), "{e}");
        session.cancel().unwrap();
        assert_eq!(store.stat(&digest(&big)).unwrap(), None);
        assert_eq!(used(&store), 60);
        // A blob that fills the quota exactly is stored.
        assert_eq!(upload(&store, &[3u8; 40]).await.unwrap(), 40);
        assert_eq!(used(&store), 100);
        // Counted again from disk on a fresh start.
        let again = quota(f, Some(100), None);
        assert_eq!(used(&again), 100);
    }

    async fn a_write_passing_the_quota_is_refused_and_nothing_beyond_it_reaches_the_disk(
        f: &dyn Fixture,
    ) {
        let limit = 1 << 20;
        let store = quota(f, Some(limit), None);
        let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        // One write of the whole body, larger than the quota: refused whole.
        let mut writer = session.writer().unwrap();
        let room = writer.room().unwrap();
        assert!(room as u64 <= limit, "room {room} is more than the quota");
        let e = writer.write(Bytes::from(vec![7u8; 3 << 20])).unwrap_err();
        assert!(e.to_string().contains("storage quota exceeded"), "{e}");
        assert!(writer.room().is_err(), "a refused writer stays refused");
        drop(writer);
        assert!(over_quota(&session.writer().err().unwrap()));
        assert_eq!(session.offset(), 0);
        drop(session);

        // Written as the guest splices, in pieces: the quota fills, and the
        // piece that would pass it is refused.
        let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        let e = append(&mut session, &vec![8u8; 5 << 20]).await.unwrap_err();
        assert!(over_quota(&e), "{e}");
        assert!(session.offset() <= limit, "offset {}", session.offset());
        assert!(
            on_disk(&store) <= limit,
            "{} bytes on disk",
            on_disk(&store)
        );
        assert_eq!(used(&store), session.offset());
    }

    async fn unfinished_sessions_bytes_count_until_cancelled(f: &dyn Fixture) {
        let store = quota(f, Some(1000), None);
        let mut first = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        append(&mut first, &[1u8; 700]).await.unwrap();
        assert_eq!(used(&store), 700);
        // Another session cannot have what the first one holds.
        let mut second = store.start_upload("other", Algorithm::Sha256).unwrap();
        let e = append(&mut second, &[2u8; 400]).await.unwrap_err();
        assert!(over_quota(&e), "{e}");
        assert_eq!(used(&store), 700 + second.offset());
        assert!(on_disk(&store) <= 1000);
        // Counted from disk after a restart, too.
        let id = first.id().to_string();
        drop(first);
        let again = quota(f, Some(1000), None);
        assert_eq!(used(&again), 700 + second.offset());
        // Cancelling gives the space back.
        second.cancel().unwrap();
        let first = store.open_upload("team/app", &id).unwrap();
        first.cancel().unwrap();
        assert_eq!(used(&store), 0);
        assert_eq!(upload(&store, &[3u8; 1000]).await.unwrap(), 1000);
    }

    async fn finishing_content_already_held_releases_the_sessions_bytes(f: &dyn Fixture) {
        let store = quota(f, Some(1300), None);
        let blob = [5u8; 600];
        assert_eq!(upload(&store, &blob).await.unwrap(), 600);
        let mut session = store.start_upload("other", Algorithm::Sha256).unwrap();
        append(&mut session, &blob).await.unwrap();
        assert_eq!(used(&store), 1200);
        assert_eq!(session.finish(&digest(&blob)).unwrap(), 600);
        assert_eq!(used(&store), 600, "stored once, counted once");
        assert_eq!(on_disk(&store), 600);
        // A session that does not hash to its digest is gone, and so are
        // its bytes.
        let mut session = store.start_upload("other", Algorithm::Sha256).unwrap();
        append(&mut session, &[6u8; 100]).await.unwrap();
        assert_eq!(used(&store), 700);
        let e = session.finish(&digest(b"not it")).unwrap_err();
        assert!(matches!(e, StoreError::DigestMismatch(_)), "{e}");
        assert_eq!(used(&store), 600);
    }

    async fn space_of_purged_sessions_is_found_before_a_write_is_refused(f: &dyn Fixture) {
        let store = quota(f, Some(1000), None);
        let mut idle = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        append(&mut idle, &[1u8; 900]).await.unwrap();
        drop(idle);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let purged = store
            .inner
            .purge_uploads(std::time::Duration::ZERO, false)
            .unwrap();
        assert_eq!(purged.sessions.len(), 1);
        // Still counted as held, until a write needs the space.
        assert_eq!(used(&store), 900);
        assert_eq!(upload(&store, &[2u8; 1000]).await.unwrap(), 1000);
        assert_eq!(used(&store), 1000);
    }

    async fn open_sessions_are_bounded_and_ending_one_frees_a_slot(f: &dyn Fixture) {
        let store = quota(f, None, Some(2));
        let a = store.start_upload("a", Algorithm::Sha256).unwrap();
        let b = store.start_upload("b/c", Algorithm::Sha256).unwrap();
        let e = store.start_upload("a", Algorithm::Sha256).err().unwrap();
        assert!(matches!(e, StoreError::LimitExceeded(_)), "{e}");
        drop(b);
        a.cancel().unwrap();
        store.start_upload("a", Algorithm::Sha256).unwrap();
        // Sessions stored count after a restart.
        let again = quota(f, None, Some(2));
        assert_eq!(again.usage().unwrap().0, 2);
        let e = again.start_upload("a", Algorithm::Sha256).err().unwrap();
        assert!(matches!(e, StoreError::LimitExceeded(_)), "{e}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(100), "100 bytes");
        assert_eq!(human(10737418240), "10 GiB");
        assert_eq!(human(1536), "1.500 KiB");
    }
}
