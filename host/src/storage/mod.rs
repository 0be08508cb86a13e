//! Storage backends behind the repository capabilities.
//!
//! [`BlobStore`], [`MetadataStore`] and [`Backend`] are what a backend
//! implements; the WIT layer (`crate::capabilities::repositories`) checks access and
//! translates to them, and garbage collection, quota accounting and health
//! checks work through [`Backend`] alone. Nothing here knows wasmtime or
//! WIT: a blob is read through a [`Source`] and an upload written through a
//! [`Sink`], which `crate::capabilities::streams` serves as `wasi:io` streams.
//!
//! Backends: the filesystem ([`fs::FsStorage`], registry:2's layout), and
//! in tests memory (`memory::MemoryStorage`, which proves that what runs on
//! top needs nothing else); the same conformance suite (`conformance`)
//! runs against each.
//!
//! Every method may block on I/O: callers run them on tokio's blocking pool.
//! [`Source`] and [`Sink`] never block: they are polled from the runtime.

pub mod config;
#[cfg(test)]
pub(crate) mod conformance;
pub mod files;
pub mod fs;
mod listings;
pub use wharf_spec::layout;
pub mod locks;
mod mapped;
#[cfg(test)]
pub mod memory;
pub mod pins;
pub mod quota;
pub mod s3;
mod streams;
mod upload_stream;
mod uploads;

use bytes::Bytes;
use std::io;
use std::time::SystemTime;
use wharf_spec::{Algorithm, Digest};

pub use fs::FsStorage;
pub use pins::Pins;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("content hashes to {0}")]
    DigestMismatch(Digest),
    #[error("{0}")]
    Invalid(String),
    #[error("upload session in use by another request")]
    Busy,
    /// An operator's limit (storage quota, open sessions); the text says which.
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub use wharf_spec::pages::{Page, page, page_read};

/// The bytes `offset..end` of a blob of `size` bytes that a read of
/// `length` (or the rest) from `offset` covers; `Invalid` if they are not
/// all within it.
pub fn range_within(offset: u64, length: Option<u64>, size: u64) -> Result<std::ops::Range<u64>> {
    let end = match length {
        Some(len) => offset.checked_add(len),
        None => Some(size),
    };
    match end {
        Some(end) if offset <= size && end <= size => Ok(offset..end),
        _ => Err(StoreError::Invalid(format!(
            "range {offset}+{length:?} is outside the blob's {size} bytes"
        ))),
    }
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    /// The digest of the manifest's `subject`, as the guest read it: the
    /// store lists the manifest among that digest's referrers.
    pub subject: Option<Digest>,
}

/// Content-addressed bytes and upload sessions.
pub trait BlobStore: Send + Sync + 'static {
    fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// A stream of `length` bytes (or the rest) from `offset`.
    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<Box<dyn Source>>;
    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>>;
    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>>;
    /// A short-lived URL where a client may GET the blob from the store
    /// itself (registry:2's redirect on object storage); `None` to serve
    /// it through [`BlobStore::read`].
    fn redirect(&self, digest: &Digest) -> Result<Option<String>> {
        let _ = digest;
        Ok(None)
    }
}

/// An upload session held by one request at a time; dropping it releases it.
pub trait UploadSession: Send + 'static {
    fn id(&self) -> &str;
    /// Bytes stored so far (those flushed through writers).
    fn offset(&self) -> u64;
    /// A sink appending to the session. Only one at a time.
    fn writer(&mut self) -> Result<Box<dyn Sink>>;
    /// Verify and store the bytes under `expected`; the session ends either way.
    fn finish(self: Box<Self>, expected: &Digest) -> Result<u64>;
    fn cancel(self: Box<Self>) -> Result<()>;
}

/// Repositories, manifests, tags and blob links.
pub trait MetadataStore: Send + Sync + 'static {
    fn get_manifest(&self, repository: &str, digest: &Digest) -> Result<Option<Manifest>>;
    fn put_manifest(&self, repository: &str, manifest: &Manifest) -> Result<()>;
    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool>;
    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>>;
    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<()>;
    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool>;
    fn list_tags(&self, repository: &str, after: Option<&str>, limit: u32) -> Result<Option<Page>>;
    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page>;
    /// Digests of the manifests of `repository` whose subject is `subject`,
    /// sorted; empty when there are none (or no such repository).
    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page>;
    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<()>;
    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool>;
    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool>;
    /// Whether a small read (a tag, a manifest, a link and a size) is
    /// served from local memory or page cache in microseconds, so that it
    /// may run on the calling thread rather than the blocking pool. Not on
    /// object storage, where every read is a network call.
    fn local_reads(&self) -> bool {
        false
    }
}

/// A range of a blob on its way out, handed on as the backend has it.
/// Never blocks: the backend fetches ahead on threads of its own or the
/// blocking pool, and [`Source::ready`] waits for it.
#[async_trait::async_trait]
pub trait Source: Send + 'static {
    /// Up to `max` bytes available now: empty when none are yet (wait in
    /// [`Source::ready`]), `None` once the whole range was handed on.
    fn read(&mut self, max: usize) -> io::Result<Option<Bytes>>;
    /// Resolves once [`Source::read`] has bytes, an error or the end.
    async fn ready(&mut self);
}

/// Where an upload session's bytes go. Never blocks: bytes are taken only
/// as far as [`Sink::room`] reported, and [`Sink::ready`] waits for more.
#[async_trait::async_trait]
pub trait Sink: Send + 'static {
    /// How many bytes [`Sink::write`] takes now; 0 means wait in
    /// [`Sink::ready`]. An error ends the sink.
    fn room(&mut self) -> io::Result<usize>;
    /// Take `bytes`, no more than [`Sink::room`] last reported.
    fn write(&mut self, bytes: Bytes) -> io::Result<()>;
    /// Hand on everything taken so far; [`Sink::room`] reports 0 until
    /// [`Sink::ready`] resolves after it was.
    fn flush(&mut self) -> io::Result<()>;
    /// Resolves once there is room, the flush is done, or an error.
    async fn ready(&mut self);
    /// The writer is done: everything it took reaches the session before
    /// the session can be used again. Dropping a sink without closing it
    /// must do the same, blocking.
    async fn close(&mut self);
}

/// A blob in the content store, as garbage collection and quotas see it.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// When it was last stored or linked into a repository (the grace
    /// period of online collection starts there); `None` if unknown.
    pub modified: Option<SystemTime>,
}

/// An upload session as stored, whoever holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoredUpload {
    pub repository: String,
    pub id: String,
    /// Bytes the session's data holds.
    pub bytes: u64,
}

/// What [`Backend::purge_uploads`] removed (or would remove).
#[derive(Debug, Default)]
pub struct Purged {
    pub sessions: Vec<StoredUpload>,
    pub bytes: u64,
}

/// What maintenance needs of a backend beyond serving requests: listings
/// of everything it holds, the collector's deletes, and its health. Garbage
/// collection, quota accounting, upload purging and `/debug/health` use
/// these alone, so they run unchanged on every backend.
pub trait Backend: BlobStore + MetadataStore {
    /// Whether the storage answers: it can list and write. The error says
    /// what failed, for `/debug/health` and `health.storagedriver`.
    fn check_health(&self) -> io::Result<()>;
    /// Every manifest `repository` holds (tagged or not), sorted.
    fn list_manifests(&self, repository: &str) -> Result<Vec<Digest>>;
    /// Every blob linked into `repository`, sorted.
    fn list_linked_blobs(&self, repository: &str) -> Result<Vec<Digest>>;
    /// Every blob in the content store (manifests' bytes included).
    fn list_blobs(&self) -> Result<Vec<StoredBlob>>;
    /// Every upload session, held or not.
    fn list_uploads(&self) -> Result<Vec<StoredUpload>>;
    /// The collector's delete: remove `digest`'s bytes and its links in
    /// `linked_from`, whether or not deletes are enabled for clients.
    /// Called under [`Pins::sweep`].
    fn sweep_blob(&self, digest: &Digest, linked_from: &[String]) -> Result<()>;
    /// Remove upload sessions idle for longer than `age`, but those a
    /// request holds; with `dry_run`, only report them.
    fn purge_uploads(&self, age: std::time::Duration, dry_run: bool) -> Result<Purged>;
    /// What garbage collection coordinates with this process's pushes
    /// through.
    fn pins(&self) -> &Pins;
}

/// How a registry's storage is opened, whatever the driver.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `storage.delete.enabled`.
    pub delete_enabled: bool,
    /// Blob GETs go to the store's signed URLs where it has them (S3,
    /// unless `storage.redirect.disable`).
    pub redirect: bool,
}

/// Open the backend `driver` names.
pub fn open(
    driver: &crate::storage::config::StorageDriver,
    options: Options,
) -> io::Result<std::sync::Arc<dyn Backend>> {
    Ok(match driver {
        crate::storage::config::StorageDriver::Filesystem(fs) => {
            std::sync::Arc::new(FsStorage::open(&fs.rootdirectory, options.delete_enabled)?)
        }
        crate::storage::config::StorageDriver::S3(config) => std::sync::Arc::new(
            s3::S3Storage::open(config, options.delete_enabled, options.redirect)?,
        ),
    })
}

/// Purge `storage`'s upload sessions idle for longer than `age` now and
/// then every `interval`, on a thread of its own, for as long as the
/// process runs.
pub fn start_upload_purging(
    storage: std::sync::Arc<dyn Backend>,
    tenant: &str,
    age: std::time::Duration,
    interval: std::time::Duration,
    dry_run: bool,
) {
    let tenant = tenant.to_string();
    let spawned = std::thread::Builder::new()
        .name("upload-purger".into())
        .spawn(move || {
            loop {
                match storage.purge_uploads(age, dry_run) {
                    Ok(purged) if !purged.sessions.is_empty() => tracing::info!(
                        tenant,
                        sessions = purged.sessions.len(),
                        bytes = purged.bytes,
                        dry_run,
                        "purged upload sessions idle for longer than {age:?}"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(tenant, error = %e, "purging idle upload sessions failed")
                    }
                }
                std::thread::sleep(interval);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the upload purger; idle upload sessions stay");
    }
}
