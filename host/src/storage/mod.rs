//! Storage backends behind the repository capabilities.
//!
//! [`BlobStore`] and [`MetadataStore`] are what a backend implements; the WIT
//! layer (`crate::repositories`) checks access and translates to them. The
//! filesystem backend ([`fs::FsStorage`]) is the one that exists today; an
//! object-storage backend implements the same two traits.
//!
//! Every method may block on I/O: callers run them on tokio's blocking pool.

pub mod files;
pub mod fs;
pub mod layout;
mod mapped;
pub mod pins;
mod streams;
mod upload_stream;
mod uploads;

use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};
use wharf_spec::{Algorithm, Digest};

pub use fs::FsStorage;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
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

pub type Result<T> = std::result::Result<T, StorageError>;

/// One page of a sorted listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<String>,
    pub more: bool,
}

/// Take up to `limit` names sorting after `after` from a sorted list.
pub fn page(sorted: Vec<String>, after: Option<&str>, limit: u32) -> Page {
    page_kept(sorted, after, limit, |_| true)
}

/// The same, of the names `keep` accepts. `keep` is asked only as far as
/// the page reaches (one name past it, to tell whether there are more), so
/// it may cost a look at storage.
pub fn page_kept(
    sorted: Vec<String>,
    after: Option<&str>,
    limit: u32,
    mut keep: impl FnMut(&str) -> bool,
) -> Page {
    let mut page = Page::default();
    let after_start = sorted
        .into_iter()
        .filter(|n| after.is_none_or(|after| n.as_str() > after));
    for name in after_start {
        if !keep(&name) {
            continue;
        }
        if page.entries.len() >= limit as usize {
            page.more = true;
            break;
        }
        page.entries.push(name);
    }
    page
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
    fn read(&self, digest: &Digest, offset: u64, length: Option<u64>) -> Result<DynInputStream>;
    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Box<dyn UploadSession>>;
    fn open_upload(&self, repository: &str, id: &str) -> Result<Box<dyn UploadSession>>;
}

/// An upload session held by one request at a time; dropping it releases it.
pub trait UploadSession: Send + 'static {
    fn id(&self) -> &str;
    /// Bytes stored so far (those flushed through writers).
    fn offset(&self) -> u64;
    /// A stream appending to the session. Only one at a time.
    fn writer(&mut self) -> Result<DynOutputStream>;
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
}
