//! The in-memory backend: everything a [`Backend`] holds, in maps, for as
//! long as the value lives.
//!
//! It exists so that what runs on top of the storage seam (the capability
//! layer, quotas, garbage collection, purging) is tested on a second
//! backend besides the filesystem, through the same conformance suite: a
//! maintenance routine that reached past the seam would fail here. It is
//! not a serving option (nothing survives a restart, and a blob is held in
//! memory whole).
//!
//! Its rules are the filesystem backend's: a manifest is visible once its
//! bytes are stored, a tag only names a manifest present, a delete removes
//! the manifest's tags with it, a finished upload is verified before its
//! blob exists, and one request holds a session at a time. One lock covers
//! the whole state, so every operation is atomic.

use super::{
    Backend, BlobStore, Manifest, MetadataStore, Page, Pins, Purged, Result, Sink, Source,
    StoreError, StoredBlob, StoredUpload, UploadSession, page,
};
use crate::sync::lock;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use wharf_spec::references::references;
use wharf_spec::{Algorithm, Digest};

/// Bytes a writer takes at a time.
const ROOM: usize = 4 << 20;

pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
    pins: Arc<Pins>,
    delete_enabled: bool,
}

#[derive(Default)]
struct State {
    /// By digest, as text (sorted the way listings are).
    blobs: BTreeMap<String, Blob>,
    repositories: BTreeMap<String, Repository>,
    /// By repository and id.
    uploads: BTreeMap<(String, String), Upload>,
}

struct Blob {
    bytes: Bytes,
    modified: SystemTime,
}

#[derive(Default)]
struct Repository {
    /// Manifests by digest: their media type and subject.
    manifests: BTreeMap<String, (String, Option<Digest>)>,
    tags: BTreeMap<String, Digest>,
    links: BTreeSet<String>,
}

struct Upload {
    bytes: Vec<u8>,
    /// Whether a request holds the session.
    held: bool,
    /// When it was started or last written to.
    active: SystemTime,
}

impl MemoryStorage {
    pub fn new(delete_enabled: bool) -> MemoryStorage {
        MemoryStorage {
            state: Arc::default(),
            pins: Arc::default(),
            delete_enabled,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn check_delete(&self) -> Result<()> {
        if self.delete_enabled {
            Ok(())
        } else {
            Err(StoreError::Unsupported("deletes are disabled".into()))
        }
    }

    /// Set when `digest` was last stored or linked, as time passing would:
    /// for tests of the collector's grace period.
    #[cfg(test)]
    pub fn set_modified(&self, digest: &Digest, modified: SystemTime) {
        if let Some(blob) = self.state().blobs.get_mut(&digest.to_string()) {
            blob.modified = modified;
        }
    }

    /// Set when the session was last active: for tests of purging.
    #[cfg(test)]
    pub fn set_upload_active(&self, repository: &str, id: &str, active: SystemTime) {
        let key = (repository.to_string(), id.to_string());
        if let Some(upload) = self.state().uploads.get_mut(&key) {
            upload.active = active;
        }
    }
}

impl BlobStore for MemoryStorage {
    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self
            .state()
            .blobs
            .get(&digest.to_string())
            .map(|b| b.bytes.len() as u64))
    }

    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<Box<dyn Source>> {
        let state = self.state();
        let blob = state
            .blobs
            .get(&digest.to_string())
            .ok_or(StoreError::NotFound)?;
        let range = super::range_within(offset, length, blob.bytes.len() as u64)?;
        Ok(Box::new(BytesSource(
            blob.bytes.slice(range.start as usize..range.end as usize),
        )))
    }

    fn start_upload(
        &self,
        repository: &str,
        _algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>> {
        // Hashed once, when finished, with the digest's algorithm.
        let id = uuid::Uuid::new_v4().to_string();
        let upload = Upload {
            bytes: Vec::new(),
            held: true,
            active: SystemTime::now(),
        };
        let key = (repository.to_string(), id);
        self.state().uploads.insert(key.clone(), upload);
        Ok(Box::new(MemoryUpload {
            key,
            state: self.state.clone(),
            pins: self.pins.clone(),
        }))
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>> {
        let key = (repository.to_string(), id.to_string());
        let mut state = self.state();
        let upload = state.uploads.get_mut(&key).ok_or(StoreError::NotFound)?;
        if upload.held {
            return Err(StoreError::Busy);
        }
        upload.held = true;
        drop(state);
        Ok(Box::new(MemoryUpload {
            key,
            state: self.state.clone(),
            pins: self.pins.clone(),
        }))
    }
}

/// An upload session held by one request.
struct MemoryUpload {
    key: (String, String),
    state: Arc<Mutex<State>>,
    pins: Arc<Pins>,
}

impl Drop for MemoryUpload {
    fn drop(&mut self) {
        if let Some(upload) = lock(&self.state).uploads.get_mut(&self.key) {
            upload.held = false;
        }
    }
}

impl UploadSession for MemoryUpload {
    fn id(&self) -> &str {
        &self.key.1
    }

    fn offset(&self) -> u64 {
        lock(&self.state)
            .uploads
            .get(&self.key)
            .map_or(0, |u| u.bytes.len() as u64)
    }

    fn writer(&mut self) -> Result<Box<dyn Sink>> {
        Ok(Box::new(MemorySink {
            key: self.key.clone(),
            state: self.state.clone(),
            flushing: false,
        }))
    }

    fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        self.pins.referencing([expected], || {
            let mut state = lock(&self.state);
            let upload = state
                .uploads
                .remove(&self.key)
                .ok_or(StoreError::NotFound)?;
            let actual = expected.algorithm().digest(&upload.bytes);
            if &actual != expected {
                return Err(StoreError::DigestMismatch(actual));
            }
            let size = upload.bytes.len() as u64;
            // Stored now (or again): a grace period against collection
            // starts.
            state
                .blobs
                .entry(expected.to_string())
                .and_modify(|b| b.modified = SystemTime::now())
                .or_insert_with(|| Blob {
                    bytes: Bytes::from(upload.bytes),
                    modified: SystemTime::now(),
                });
            Ok(size)
        })
    }

    fn cancel(self: Box<Self>) -> Result<()> {
        lock(&self.state).uploads.remove(&self.key);
        Ok(())
    }
}

/// Appends to a session's bytes as they come.
struct MemorySink {
    key: (String, String),
    state: Arc<Mutex<State>>,
    flushing: bool,
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    fn room(&mut self) -> io::Result<usize> {
        if !lock(&self.state).uploads.contains_key(&self.key) {
            return Err(io::Error::other("the upload session ended"));
        }
        Ok(if self.flushing { 0 } else { ROOM })
    }

    fn write(&mut self, bytes: Bytes) -> io::Result<()> {
        if bytes.len() > ROOM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write exceeds the room the upload reported",
            ));
        }
        let mut state = lock(&self.state);
        let upload = state
            .uploads
            .get_mut(&self.key)
            .ok_or_else(|| io::Error::other("the upload session ended"))?;
        upload.bytes.extend_from_slice(&bytes);
        upload.active = SystemTime::now();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushing = true;
        Ok(())
    }

    async fn ready(&mut self) {
        // Writes are stored as they are taken: a flush is done at once.
        self.flushing = false;
    }

    async fn close(&mut self) {}
}

/// A blob's bytes, handed on as asked.
struct BytesSource(Bytes);

#[async_trait::async_trait]
impl Source for BytesSource {
    fn read(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.0.split_to(max.min(self.0.len()))))
    }

    async fn ready(&mut self) {}
}

impl MetadataStore for MemoryStorage {
    fn local_reads(&self) -> bool {
        true
    }

    fn get_manifest(&self, repository: &str, digest: &Digest) -> Result<Option<Manifest>> {
        let state = self.state();
        let key = digest.to_string();
        let Some((media_type, subject)) = state
            .repositories
            .get(repository)
            .and_then(|r| r.manifests.get(&key))
        else {
            return Ok(None);
        };
        let Some(blob) = state.blobs.get(&key) else {
            return Ok(None);
        };
        Ok(Some(Manifest {
            digest: digest.clone(),
            media_type: media_type.clone(),
            content: blob.bytes.to_vec(),
            subject: subject.clone(),
        }))
    }

    fn put_manifest(&self, repository: &str, manifest: &Manifest) -> Result<()> {
        let actual = manifest.digest.algorithm().digest(&manifest.content);
        if actual != manifest.digest {
            return Err(StoreError::DigestMismatch(actual));
        }
        let mut named: Vec<Digest> = references(&manifest.content).all().cloned().collect();
        named.push(manifest.digest.clone());
        self.pins.referencing(&named, || {
            let mut state = self.state();
            let needed =
                |d: &&Digest| *d != &manifest.digest && Some(*d) != manifest.subject.as_ref();
            if let Some(gone) = named
                .iter()
                .filter(needed)
                .find(|d| self.pins.swept(d) && !state.blobs.contains_key(&d.to_string()))
            {
                return Err(StoreError::Invalid(format!(
                    "blob {gone} was garbage-collected while this push was in flight; push it again"
                )));
            }
            let key = manifest.digest.to_string();
            state.blobs.entry(key.clone()).or_insert_with(|| Blob {
                bytes: Bytes::from(manifest.content.clone()),
                modified: SystemTime::now(),
            });
            state
                .repositories
                .entry(repository.to_string())
                .or_default()
                .manifests
                .insert(key, (manifest.media_type.clone(), manifest.subject.clone()));
            Ok(())
        })
    }

    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        let mut state = self.state();
        let Some(repo) = state.repositories.get_mut(repository) else {
            return Ok(false);
        };
        if repo.manifests.remove(&digest.to_string()).is_none() {
            return Ok(false);
        }
        repo.tags.retain(|_, named| named != digest);
        Ok(true)
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        Ok(self
            .state()
            .repositories
            .get(repository)
            .and_then(|r| r.tags.get(tag).cloned()))
    }

    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        let mut state = self.state();
        let repo = state
            .repositories
            .get_mut(repository)
            .filter(|r| r.manifests.contains_key(&digest.to_string()))
            .ok_or(StoreError::NotFound)?;
        repo.tags.insert(tag.to_string(), digest.clone());
        Ok(())
    }

    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        self.check_delete()?;
        Ok(self
            .state()
            .repositories
            .get_mut(repository)
            .is_some_and(|r| r.tags.remove(tag).is_some()))
    }

    fn list_tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Option<Page>> {
        let state = self.state();
        let Some(repo) = state.repositories.get(repository) else {
            return Ok(None);
        };
        Ok(Some(page(
            repo.tags.keys().cloned().collect(),
            after,
            limit,
        )))
    }

    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page> {
        let names = self.state().repositories.keys().cloned().collect();
        Ok(page(names, after, limit))
    }

    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        let state = self.state();
        let referrers = state
            .repositories
            .get(repository)
            .map(|r| {
                r.manifests
                    .iter()
                    .filter(|(_, (_, s))| s.as_ref() == Some(subject))
                    .map(|(digest, _)| digest.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(page(referrers, after, limit))
    }

    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<()> {
        self.pins.referencing([digest], || {
            let mut state = self.state();
            let key = digest.to_string();
            let blob = state.blobs.get_mut(&key).ok_or(StoreError::NotFound)?;
            // Linked now: a grace period against collection starts anew.
            blob.modified = SystemTime::now();
            state
                .repositories
                .entry(repository.to_string())
                .or_default()
                .links
                .insert(key);
            Ok(())
        })
    }

    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool> {
        Ok(self
            .state()
            .repositories
            .get(repository)
            .is_some_and(|r| r.links.contains(&digest.to_string())))
    }

    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.check_delete()?;
        Ok(self
            .state()
            .repositories
            .get_mut(repository)
            .is_some_and(|r| r.links.remove(&digest.to_string())))
    }
}

/// Digests kept as text in this backend's maps, parsed back.
fn digests<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<Digest> {
    keys.filter_map(|k| Digest::parse(k).ok()).collect()
}

impl Backend for MemoryStorage {
    fn check_health(&self) -> io::Result<()> {
        Ok(())
    }

    fn list_manifests(&self, repository: &str) -> Result<Vec<Digest>> {
        let state = self.state();
        Ok(state
            .repositories
            .get(repository)
            .map(|r| digests(r.manifests.keys()))
            .unwrap_or_default())
    }

    fn list_linked_blobs(&self, repository: &str) -> Result<Vec<Digest>> {
        let state = self.state();
        Ok(state
            .repositories
            .get(repository)
            .map(|r| digests(r.links.iter()))
            .unwrap_or_default())
    }

    fn list_blobs(&self) -> Result<Vec<StoredBlob>> {
        let state = self.state();
        Ok(state
            .blobs
            .iter()
            .filter_map(|(key, blob)| {
                Some(StoredBlob {
                    digest: Digest::parse(key).ok()?,
                    size: blob.bytes.len() as u64,
                    modified: Some(blob.modified),
                })
            })
            .collect())
    }

    fn list_uploads(&self) -> Result<Vec<StoredUpload>> {
        let state = self.state();
        Ok(state
            .uploads
            .iter()
            .map(|((repository, id), upload)| StoredUpload {
                repository: repository.clone(),
                id: id.clone(),
                bytes: upload.bytes.len() as u64,
            })
            .collect())
    }

    fn sweep_blob(&self, digest: &Digest, linked_from: &[String]) -> Result<()> {
        let mut state = self.state();
        let key = digest.to_string();
        state.blobs.remove(&key);
        for repository in linked_from {
            if let Some(repo) = state.repositories.get_mut(repository) {
                repo.links.remove(&key);
            }
        }
        Ok(())
    }

    fn purge_uploads(&self, age: std::time::Duration, dry_run: bool) -> Result<Purged> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut state = self.state();
        let mut purged = Purged::default();
        for ((repository, id), upload) in &state.uploads {
            if upload.held || upload.active >= cutoff {
                continue;
            }
            purged.bytes += upload.bytes.len() as u64;
            purged.sessions.push(StoredUpload {
                repository: repository.clone(),
                id: id.clone(),
                bytes: upload.bytes.len() as u64,
            });
        }
        if !dry_run {
            for session in &purged.sessions {
                state
                    .uploads
                    .remove(&(session.repository.clone(), session.id.clone()));
            }
        }
        Ok(purged)
    }

    fn pins(&self) -> &Pins {
        &self.pins
    }
}
