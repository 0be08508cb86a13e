//! The three capabilities the protocol core runs on, as Rust traits.
//!
//! They mirror the WIT interfaces in `wit/` one to one: `Blobs` is
//! `wharf:registry/blobs`, `Metadata` is `wharf:registry/metadata`, `Auth` is
//! `wharf:registry/auth`. The component binds them to the WIT imports; tests
//! bind them to the in-memory store in [`crate::memory`]. Nothing in here
//! knows about HTTP.

use crate::digest::{Algorithm, Digest};

/// Why a capability call failed (WIT `types.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("content hashes to {0}")]
    DigestMismatch(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("upload session in use by another request")]
    Busy,
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("storage failure: {0}")]
    Storage(String),
}

/// One page of a listing in lexical order (WIT `types.page`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<String>,
    /// Whether entries sort after the last one returned.
    pub more: bool,
}

/// A manifest as stored: bytes exactly as pushed (WIT `metadata.manifest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    /// The digest of the manifest's `subject` descriptor: the store lists
    /// the manifest among that digest's referrers.
    pub subject: Option<Digest>,
}

/// What a request may do (WIT `auth.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

/// The host's answer to an authorization question (WIT `auth.verdict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; the caller's name when they authenticated.
    Allow(Option<String>),
    /// No valid credentials: 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// Authenticated but not allowed.
    Deny(String),
}

/// Why reading a request body failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the request body failed: {0}")]
    Io(String),
}

/// A request body the core can read into memory (manifests) or hand to an
/// upload (blobs) without looking at it.
pub trait RequestBody {
    /// Read the whole body, refusing more than `limit` bytes.
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError>;
}

/// An open upload session (WIT `blobs.upload`).
pub trait Upload {
    type Body: RequestBody;

    fn id(&self) -> String;
    /// Bytes the session holds.
    fn offset(&self) -> u64;
    /// Append the whole request body; returns the bytes appended. Bulk bytes
    /// should not pass through the caller's memory (the component splices).
    fn append(&mut self, body: &mut Self::Body) -> Result<u64, StoreError>;
    /// Verify the bytes hash to `expected` and store them under it; returns
    /// the blob size. The session is gone afterwards, whatever the outcome.
    fn finish(self, expected: &Digest) -> Result<u64, StoreError>;
    /// Abandon the session.
    fn cancel(self) -> Result<(), StoreError>;
}

/// Content-addressed blob storage (WIT `wharf:registry/blobs`).
pub trait Blobs {
    type Body: RequestBody;
    type Upload: Upload<Body = Self::Body>;
    /// A readable range of a blob, sent as a response body by the shell.
    type Reader;

    fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;
    fn read(
        &self,
        digest: &Digest,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Self::Reader, StoreError>;
    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<Self::Upload, StoreError>;
    fn open_upload(&self, repository: &str, id: &str) -> Result<Self::Upload, StoreError>;
}

/// Repositories, manifests, tags and blob links (WIT `wharf:registry/metadata`).
pub trait Metadata {
    fn get_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, StoreError>;
    fn put_manifest(&self, repository: &str, manifest: &StoredManifest) -> Result<(), StoreError>;
    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError>;
    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>, StoreError>;
    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<(), StoreError>;
    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, StoreError>;
    fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page>, StoreError>;
    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError>;
    /// Digests of the manifests of `repository` whose subject is `subject`,
    /// in lexical order (WIT `list-referrers`).
    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError>;
    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<(), StoreError>;
    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError>;
    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError>;
}

/// Authorization of the current request (WIT `wharf:registry/auth`).
pub trait Auth {
    fn authorize(&self, repository: Option<&str>, action: Action) -> Verdict;
}
