//! The capabilities the protocol core runs on, as Rust traits.
//!
//! They mirror `wharf:registry/repositories` (`wit/repositories.wit`) one to
//! one: [`Registry`] opens handles, [`Catalog`], [`Repository`] and
//! [`Upload`] are the WIT resources. A handle is opened for the access the
//! route needs, and the implementation, not the core, refuses anything the
//! handle was not opened for: in the component that is the host, in tests
//! [`crate::memory`]. Nothing in here knows about HTTP.

use crate::digest::{Algorithm, Digest};
use crate::names::Reference;
use crate::ranges::RangeRequest;

/// Why a capability call failed (WIT `types.store-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("content hashes to {0}")]
    DigestMismatch(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("upload session in use by another request")]
    Busy,
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("storage failure: {0}")]
    Storage(String),
}

/// Why a repository or the catalog was not opened (WIT `types.refusal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No valid credentials: 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// Authenticated but not allowed.
    Deny(String),
    /// Not a repository name.
    Invalid(String),
}

/// What a repository handle may be used for (WIT `types.access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub pull: bool,
    pub push: bool,
    pub delete: bool,
}

impl Access {
    pub const PULL: Access = Access {
        pull: true,
        push: false,
        delete: false,
    };
    pub const PUSH: Access = Access {
        pull: false,
        push: true,
        delete: false,
    };
    pub const DELETE: Access = Access {
        pull: false,
        push: false,
        delete: true,
    };

    pub const ALL: Access = Access {
        pull: true,
        push: true,
        delete: true,
    };

    /// Whether this access includes all of `other`.
    pub fn covers(self, other: Access) -> bool {
        (self.pull || !other.pull) && (self.push || !other.push) && (self.delete || !other.delete)
    }

    /// The names of the rights `self` lacks of `needed`, for a refusal.
    pub fn lacking(self, needed: Access) -> String {
        [
            (needed.pull && !self.pull, "pull"),
            (needed.push && !self.push, "push"),
            (needed.delete && !self.delete, "delete"),
        ]
        .iter()
        .filter(|(lacks, _)| *lacks)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// One page of a listing in lexical order (WIT `types.page`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<String>,
    /// Whether entries sort after the last one returned.
    pub more: bool,
}

/// A manifest to store: bytes exactly as pushed (WIT `manifest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    /// The digest of the manifest's `subject` descriptor: the store lists
    /// the manifest among that digest's referrers.
    pub subject: Option<Digest>,
}

/// A stored manifest as read (WIT `stored-manifest`): its bytes are a
/// stream, sent as a response body without passing through the core.
#[derive(Debug)]
pub struct StoredManifest<R> {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub content: R,
}

/// What reading a blob found (WIT `blob-read`).
#[derive(Debug)]
pub struct BlobRead<R> {
    /// The blob's size.
    pub size: u64,
    /// The bytes served: `length` from `offset`.
    pub offset: u64,
    pub length: u64,
    /// Whether a satisfiable range was asked for (206) or the whole blob is
    /// served (200).
    pub partial: bool,
    /// The bytes; none when the range asked for is unsatisfiable (416),
    /// or when `redirect` is given.
    pub content: Option<R>,
    /// Where the client fetches the bytes itself instead (307).
    pub redirect: Option<String>,
}

/// Why reading a body failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body failed: {0}")]
    Io(String),
}

/// A stream the core can read into memory when it must look at the bytes
/// (a manifest pushed, a referrer described), and otherwise hands on
/// without looking: a request body to an upload, a stored blob or manifest
/// to a response.
pub trait Readable {
    /// Read the whole stream, refusing more than `limit` bytes.
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError>;
}

/// An open upload session of a repository (WIT `upload`).
pub trait Upload {
    type Body: Readable;

    fn id(&self) -> String;
    /// Bytes the session holds.
    fn offset(&self) -> u64;
    /// Append the whole request body; returns the bytes appended. Bulk bytes
    /// should not pass through the caller's memory (the component splices).
    fn append(&mut self, body: &mut Self::Body) -> Result<u64, StoreError>;
    /// Verify the bytes hash to `expected`, store them under it and link the
    /// blob into the session's repository; returns the blob size. The
    /// session is gone afterwards, whatever the outcome.
    fn finish(self, expected: &Digest) -> Result<u64, StoreError>;
    /// Abandon the session.
    fn cancel(self) -> Result<(), StoreError>;
}

/// The registry as a whole (WIT `catalog`).
pub trait Catalog {
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError>;
}

/// One repository, opened for some [`Access`] (WIT `repository`). Each
/// method says which access it needs; a handle without it answers
/// [`StoreError::Denied`].
pub trait Repository: Sized {
    /// A stored blob's or manifest's bytes, sent as a response body.
    type Reader: Readable;
    type Upload: Upload;

    /// Pull.
    fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<StoredManifest<Self::Reader>>, StoreError>;
    /// Pull; none if the repository does not exist.
    fn list_tags(&self, after: Option<&str>, limit: u32) -> Result<Option<Page>, StoreError>;
    /// Pull: digests of the manifests whose subject is `subject`.
    fn list_referrers(
        &self,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError>;
    /// Pull: the size of a blob linked here and stored.
    fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;
    /// Pull: a blob linked here and stored, `range` resolved against it.
    fn read_blob(
        &self,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<Option<BlobRead<Self::Reader>>, StoreError>;

    /// Push: store a manifest and point `tags` at it.
    fn put_manifest(&self, manifest: &Manifest, tags: &[&str]) -> Result<(), StoreError>;
    /// Push: link a blob linked in `source` (opened for pull), or without
    /// one, a blob the caller may pull from some repository. True if linked
    /// here now.
    fn mount_blob(&self, digest: &Digest, source: Option<&Self>) -> Result<bool, StoreError>;
    /// Push.
    fn start_upload(&self, algorithm: Algorithm) -> Result<Self::Upload, StoreError>;
    /// Push.
    fn open_upload(&self, id: &str) -> Result<Self::Upload, StoreError>;

    /// Delete.
    fn delete_manifest(&self, digest: &Digest) -> Result<bool, StoreError>;
    /// Delete.
    fn delete_tag(&self, tag: &str) -> Result<bool, StoreError>;
    /// Delete.
    fn unlink_blob(&self, digest: &Digest) -> Result<bool, StoreError>;
}

/// What the core asks for each request: handles for the access its route
/// needs (WIT `catalog.open`, `repository.open`).
pub trait Registry {
    /// A request body.
    type Body: Readable;
    type Reader: Readable;
    type Upload: Upload<Body = Self::Body>;
    type Repository: Repository<Reader = Self::Reader, Upload = Self::Upload>;
    type Catalog: Catalog;

    fn open_catalog(&self) -> Result<Self::Catalog, Refusal>;
    fn open_repository(&self, name: &str, access: Access) -> Result<Self::Repository, Refusal>;
}
