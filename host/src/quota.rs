//! A tenant's storage limits, enforced around its store: `storage_bytes`
//! (bytes of blobs and manifests held) and `concurrent_uploads` (upload
//! sessions open at once).
//!
//! [`Quota`] wraps a store and implements the same two traits, so the
//! capability layer and the backend know nothing of limits. It keeps two
//! counters, taken from disk when the tenant opens: the bytes of its
//! content store and its open upload sessions. They are updated as this
//! process stores blobs and manifests and starts and ends sessions, and
//! counted again from disk before anything is refused, so space given back
//! behind the process's back (garbage collection, purged sessions) is seen
//! when it matters.
//!
//! What is refused stores nothing: an upload that would take the tenant
//! past `storage_bytes` is cancelled at `finish` (its bytes freed), and a
//! session already past it is refused another `writer`. The bytes of
//! unfinished sessions are not counted; `concurrent_uploads` bounds how
//! many such sessions there are.

use crate::storage::layout::Layout;
use crate::storage::{
    BlobStore, Manifest, MetadataStore, Page, Result, StorageError, UploadSession,
};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};
use wharf_guest::{Algorithm, Digest};

/// A store held to its tenant's `storage_bytes` and `concurrent_uploads`.
pub struct Quota<S> {
    inner: Arc<S>,
    shared: Arc<Shared>,
}

struct Shared {
    tenant: String,
    /// The content store (`.../v2/blobs`) and the repositories directory.
    blobs: PathBuf,
    repositories: PathBuf,
    storage_bytes: Option<u64>,
    concurrent_uploads: Option<u32>,
    /// Bytes of blobs and manifests held.
    used: Mutex<u64>,
    /// Upload sessions open.
    open: Mutex<u32>,
}

impl<S: BlobStore + MetadataStore> Quota<S> {
    /// Hold `inner`, whose data lives under `rootdirectory`, to the limits;
    /// counts what the tenant already holds.
    pub fn new(
        inner: Arc<S>,
        rootdirectory: &Path,
        tenant: &str,
        storage_bytes: Option<u64>,
        concurrent_uploads: Option<u32>,
    ) -> io::Result<Quota<S>> {
        let layout = Layout::new(rootdirectory);
        let repositories = layout.repositories();
        let blobs = layout.blobs();
        let used = content_bytes(&blobs)?;
        let open = open_sessions(&repositories)?;
        tracing::info!(
            tenant,
            used_bytes = used,
            storage_bytes,
            open_uploads = open,
            concurrent_uploads,
            "tenant storage counted"
        );
        Ok(Quota {
            inner,
            shared: Arc::new(Shared {
                tenant: tenant.to_string(),
                blobs,
                repositories,
                storage_bytes,
                concurrent_uploads,
                used: Mutex::new(used),
                open: Mutex::new(open),
            }),
        })
    }
}

impl Shared {
    fn over_quota(&self, limit: u64) -> StorageError {
        StorageError::LimitExceeded(format!(
            "storage quota exceeded: this registry may hold {limit} bytes ({}); delete images and \
             run garbage collection, or ask the operator for a larger quota",
            human(limit)
        ))
    }

    /// Count `bytes` more as held, if they fit the quota.
    fn reserve(&self, bytes: u64) -> Result<()> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limit) = self.storage_bytes {
            if used.saturating_add(bytes) > limit {
                // Space may have been given back behind our back.
                *used = content_bytes(&self.blobs)?;
            }
            if used.saturating_add(bytes) > limit {
                tracing::info!(
                    tenant = self.tenant,
                    used = *used,
                    bytes,
                    limit,
                    "storage quota refused a push"
                );
                return Err(self.over_quota(limit));
            }
        }
        *used = used.saturating_add(bytes);
        Ok(())
    }

    fn release(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(bytes);
    }

    /// Whether a session holding `offset` bytes may still grow.
    fn check_room(&self, offset: u64) -> Result<()> {
        let Some(limit) = self.storage_bytes else {
            return Ok(());
        };
        let used = *self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.saturating_add(offset) > limit {
            return self.reserve(offset).map(|()| self.release(offset));
        }
        Ok(())
    }

    fn session_ended(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        *open = open.saturating_sub(1);
    }
}

impl<S: BlobStore + MetadataStore> BlobStore for Quota<S> {
    fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.inner.stat(digest)
    }

    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<DynInputStream> {
        self.inner.read(digest, offset, length)
    }

    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>> {
        let shared = &self.shared;
        let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limit) = shared.concurrent_uploads {
            if *open >= limit {
                // Sessions may have been purged behind our back.
                *open = open_sessions(&shared.repositories)?;
            }
            if *open >= limit {
                tracing::info!(
                    tenant = shared.tenant,
                    limit,
                    "concurrent_uploads refused an upload"
                );
                return Err(StorageError::LimitExceeded(format!(
                    "too many uploads in progress: this registry allows {limit} open upload \
                     sessions at once; finish or cancel one, or retry later"
                )));
            }
        }
        let session = self.inner.start_upload(repository, algorithm)?;
        *open += 1;
        Ok(Box::new(QuotaUpload {
            inner: session,
            blobs: self.inner.clone(),
            shared: self.shared.clone(),
        }))
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>> {
        let session = self.inner.open_upload(repository, id)?;
        Ok(Box::new(QuotaUpload {
            inner: session,
            blobs: self.inner.clone(),
            shared: self.shared.clone(),
        }))
    }
}

/// An upload session whose writer and finish respect the quota.
struct QuotaUpload<S> {
    inner: Box<dyn UploadSession>,
    blobs: Arc<S>,
    shared: Arc<Shared>,
}

impl<S: BlobStore> UploadSession for QuotaUpload<S> {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn offset(&self) -> u64 {
        self.inner.offset()
    }

    fn writer(&mut self) -> Result<DynOutputStream> {
        self.shared.check_room(self.inner.offset())?;
        self.inner.writer()
    }

    fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        let QuotaUpload {
            inner,
            blobs,
            shared,
        } = *self;
        // Content already held costs nothing more.
        let added = match blobs.stat(expected)? {
            Some(_) => 0,
            None => inner.offset(),
        };
        if let Err(e) = shared.reserve(added) {
            inner.cancel()?;
            shared.session_ended();
            return Err(e);
        }
        let finished = inner.finish(expected);
        match &finished {
            Ok(_) => shared.session_ended(),
            Err(e) => {
                shared.release(added);
                if matches!(e, StorageError::DigestMismatch(_)) {
                    shared.session_ended();
                }
            }
        }
        finished
    }

    fn cancel(self: Box<Self>) -> Result<()> {
        let shared = self.shared.clone();
        self.inner.cancel()?;
        shared.session_ended();
        Ok(())
    }
}

impl<S: BlobStore + MetadataStore> MetadataStore for Quota<S> {
    fn get_manifest(&self, repository: &str, digest: &Digest) -> Result<Option<Manifest>> {
        self.inner.get_manifest(repository, digest)
    }

    fn put_manifest(&self, repository: &str, manifest: &Manifest) -> Result<()> {
        let added = match self.inner.stat(&manifest.digest)? {
            Some(_) => 0,
            None => manifest.content.len() as u64,
        };
        self.shared.reserve(added)?;
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

/// Bytes of every file under `dir` (the content store); 0 if it is absent.
fn content_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += content_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Upload sessions under every repository below `dir` (entries of their
/// `_uploads` directories).
fn open_sessions(dir: &Path) -> io::Result<u32> {
    let mut total = 0u32;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if name == "_uploads" {
            total = total.saturating_add(fs::read_dir(entry.path())?.count() as u32);
        } else if name != "_layers" && name != "_manifests" {
            total = total.saturating_add(open_sessions(&entry.path())?);
        }
    }
    Ok(total)
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
    use crate::storage::FsStorage;

    fn digest(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::parse(&format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(data))
        ))
        .unwrap()
    }

    /// Stores `data` through an upload session, as the guest does: write,
    /// flush, wait until the stream has taken it, finish.
    async fn upload(store: &Quota<FsStorage>, data: &[u8]) -> Result<u64> {
        use wasmtime_wasi::p2::Pollable as _;
        let mut session = store.start_upload("team/app", Algorithm::Sha256)?;
        let mut writer = session.writer()?;
        let failed = |e: wasmtime_wasi::p2::StreamError| StorageError::Invalid(e.to_string());
        writer
            .write(bytes::Bytes::copy_from_slice(data))
            .map_err(failed)?;
        writer.flush().map_err(failed)?;
        writer.ready().await;
        writer.check_write().map_err(failed)?;
        drop(writer);
        session.finish(&digest(data))
    }

    fn quota(dir: &Path, bytes: Option<u64>, uploads: Option<u32>) -> Quota<FsStorage> {
        let fs = Arc::new(FsStorage::open(dir, true).unwrap());
        Quota::new(fs, dir, "test", bytes, uploads).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_blob_past_the_quota_is_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = quota(dir.path(), Some(100), None);
        assert_eq!(upload(&store, &[1u8; 60]).await.unwrap(), 60);
        let big = [2u8; 50];
        let e = upload(&store, &big).await.unwrap_err();
        assert!(
            matches!(&e, StorageError::LimitExceeded(m) if m.contains("100 bytes")),
            "{e}"
        );
        assert_eq!(store.stat(&digest(&big)).unwrap(), None);
        assert_eq!(
            open_sessions(&store.shared.repositories).unwrap(),
            0,
            "session freed"
        );
        // The same content again costs nothing; a fitting blob is stored.
        assert_eq!(upload(&store, &[1u8; 60]).await.unwrap(), 60);
        assert_eq!(upload(&store, &[3u8; 40]).await.unwrap(), 40);
        // Counted again from disk on a fresh start.
        let again = quota(dir.path(), Some(100), None);
        assert_eq!(*again.shared.used.lock().unwrap(), 100);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn open_sessions_are_bounded_and_ending_one_frees_a_slot() {
        let dir = tempfile::tempdir().unwrap();
        tokio::task::spawn_blocking(move || {
            let store = quota(dir.path(), None, Some(2));
            let a = store.start_upload("a", Algorithm::Sha256).unwrap();
            let b = store.start_upload("b/c", Algorithm::Sha256).unwrap();
            let e = store.start_upload("a", Algorithm::Sha256).err().unwrap();
            assert!(matches!(e, StorageError::LimitExceeded(_)), "{e}");
            drop(b);
            a.cancel().unwrap();
            store.start_upload("a", Algorithm::Sha256).unwrap();
            // Sessions on disk count after a restart.
            let again = quota(dir.path(), None, Some(2));
            assert_eq!(*again.shared.open.lock().unwrap(), 2);
        })
        .await
        .unwrap();
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(100), "100 bytes");
        assert_eq!(human(10737418240), "10 GiB");
        assert_eq!(human(1536), "1.500 KiB");
    }
}
