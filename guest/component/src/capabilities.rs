//! The core's capability traits, implemented by calling the WIT imports of
//! `wharf:registry/repositories`. Every handle here is a host resource: the
//! host decided what it may do when it opened it, and checks each call.

use crate::bindings::wasi::http::types::IncomingBody;
use crate::bindings::wharf::registry::{repositories, types};
use crate::streams::{self, InputStream, ReadFailure, StreamFailure};
use wharf_guest::names::Reference;
use wharf_guest::ranges::RangeRequest;
use wharf_guest::{
    Access, Algorithm, BlobRead, BodyError, Digest, Manifest, Page, Readable, Refusal, StoreError,
    StoredManifest, Upload,
};

fn store_error(e: types::StoreError) -> StoreError {
    match e {
        types::StoreError::NotFound => StoreError::NotFound,
        types::StoreError::DigestMismatch(d) => StoreError::DigestMismatch(d),
        types::StoreError::Invalid(m) => StoreError::Invalid(m),
        types::StoreError::Denied(m) => StoreError::Denied(m),
        types::StoreError::LimitExceeded(m) => StoreError::LimitExceeded(m),
        types::StoreError::Busy => StoreError::Busy,
        types::StoreError::Unsupported(m) => StoreError::Unsupported(m),
        types::StoreError::Storage(m) => StoreError::Storage(m),
    }
}

fn refusal(r: types::Refusal) -> Refusal {
    match r {
        types::Refusal::Challenge(c) => Refusal::Challenge(c),
        types::Refusal::Deny(why) => Refusal::Deny(why),
        types::Refusal::Invalid(why) => Refusal::Invalid(why),
    }
}

fn access(a: Access) -> types::Access {
    let mut flags = types::Access::empty();
    if a.pull {
        flags |= types::Access::PULL;
    }
    if a.push {
        flags |= types::Access::PUSH;
    }
    if a.delete {
        flags |= types::Access::DELETE;
    }
    flags
}

/// A digest the host returned; the host only ever returns canonical ones.
fn host_digest(d: String) -> Result<Digest, StoreError> {
    Digest::parse(&d).map_err(|e| StoreError::Storage(format!("host returned {e}")))
}

fn page(p: types::Page) -> Page {
    Page {
        entries: p.entries,
        more: p.more,
    }
}

impl Readable for InputStream {
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        streams::read_to_end(self, limit).map_err(|e| match e {
            ReadFailure::TooLarge => BodyError::TooLarge(limit),
            ReadFailure::Failed(m) => BodyError::Io(m),
        })
    }
}

/// The request body: the `wasi:http` incoming body and, once opened, its stream.
pub struct HostBody {
    // Declared first: the stream must be dropped before the body it belongs to.
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
}

impl HostBody {
    pub fn new(body: Option<IncomingBody>) -> Self {
        HostBody { stream: None, body }
    }

    fn stream(&mut self) -> Result<&mut InputStream, String> {
        if self.stream.is_none() {
            let body = self.body.as_ref().ok_or("request body already consumed")?;
            let stream = body
                .stream()
                .map_err(|()| "request body already consumed")?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_mut().expect("set above"))
    }
}

impl Readable for HostBody {
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        self.stream().map_err(BodyError::Io)?.read_to_end(limit)
    }
}

pub struct HostUpload(repositories::Upload);

impl Upload for HostUpload {
    type Body = HostBody;

    fn id(&self) -> String {
        self.0.id()
    }

    fn offset(&self) -> u64 {
        self.0.offset()
    }

    fn append(&mut self, body: &mut HostBody) -> Result<u64, StoreError> {
        let source = body
            .stream()
            .map_err(|m| StoreError::Invalid(format!("request body: {m}")))?;
        let writer = self.0.writer().map_err(store_error)?;
        let moved = streams::copy(source, &writer, None);
        drop(writer);
        moved.map_err(|e| match e {
            StreamFailure::Source(m) => StoreError::Invalid(format!("request body: {m}")),
            // A session that refused bytes for a limit says so when asked
            // for a writer again; any other failure is the storage's.
            StreamFailure::Destination(m) => match self.0.writer() {
                Err(e @ types::StoreError::LimitExceeded(_)) => store_error(e),
                _ => StoreError::Storage(m),
            },
        })
    }

    fn finish(self, expected: &Digest) -> Result<u64, StoreError> {
        repositories::Upload::finish(self.0, &expected.to_string()).map_err(store_error)
    }

    fn cancel(self) -> Result<(), StoreError> {
        repositories::Upload::cancel(self.0).map_err(store_error)
    }
}

/// Opens handles from the host.
pub struct HostRegistry;

impl wharf_guest::Registry for HostRegistry {
    type Body = HostBody;
    type Reader = InputStream;
    type Upload = HostUpload;
    type Repository = HostRepository;
    type Catalog = HostCatalog;

    fn open_catalog(&self) -> Result<HostCatalog, Refusal> {
        repositories::Catalog::open()
            .map(HostCatalog)
            .map_err(refusal)
    }

    fn open_repository(&self, name: &str, wanted: Access) -> Result<HostRepository, Refusal> {
        repositories::Repository::open(name, access(wanted))
            .map(HostRepository)
            .map_err(refusal)
    }
}

pub struct HostCatalog(repositories::Catalog);

impl wharf_guest::Catalog for HostCatalog {
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        self.0
            .list_repositories(after, limit)
            .map(page)
            .map_err(store_error)
    }
}

pub struct HostRepository(repositories::Repository);

impl wharf_guest::Repository for HostRepository {
    type Reader = InputStream;
    type Upload = HostUpload;

    fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<StoredManifest<InputStream>>, StoreError> {
        let reference = match reference {
            Reference::Tag(tag) => repositories::Reference::Tag(tag.clone()),
            Reference::Digest(digest) => repositories::Reference::Digest(digest.to_string()),
        };
        match self.0.manifest(&reference).map_err(store_error)? {
            None => Ok(None),
            Some(m) => Ok(Some(StoredManifest {
                digest: host_digest(m.digest)?,
                media_type: m.media_type,
                size: m.size,
                content: m.content,
            })),
        }
    }

    fn list_tags(&self, after: Option<&str>, limit: u32) -> Result<Option<Page>, StoreError> {
        Ok(self
            .0
            .list_tags(after, limit)
            .map_err(store_error)?
            .map(page))
    }

    fn list_referrers(
        &self,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        self.0
            .list_referrers(&subject.to_string(), after, limit)
            .map(page)
            .map_err(store_error)
    }

    fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.0.stat_blob(&digest.to_string()).map_err(store_error)
    }

    fn read_blob(
        &self,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<Option<BlobRead<InputStream>>, StoreError> {
        let range = range.map(|r| match r {
            RangeRequest::Starting(first) => types::ByteRange::Starting(first),
            RangeRequest::Span(first, last) => types::ByteRange::Span((first, last)),
            RangeRequest::Suffix(n) => types::ByteRange::Suffix(n),
        });
        let read = self
            .0
            .read_blob(&digest.to_string(), range)
            .map_err(store_error)?;
        Ok(read.map(|r| BlobRead {
            size: r.size,
            offset: r.offset,
            length: r.length,
            partial: r.partial,
            content: r.content,
            redirect: r.redirect,
        }))
    }

    fn put_manifest(&self, manifest: &Manifest, tags: &[&str]) -> Result<(), StoreError> {
        let m = repositories::Manifest {
            digest: manifest.digest.to_string(),
            media_type: manifest.media_type.clone(),
            content: manifest.content.clone(),
            subject: manifest.subject.as_ref().map(Digest::to_string),
        };
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.0.put_manifest(&m, &tags).map_err(store_error)
    }

    fn mount_blob(&self, digest: &Digest, source: Option<&Self>) -> Result<bool, StoreError> {
        self.0
            .mount_blob(&digest.to_string(), source.map(|s| &s.0))
            .map_err(store_error)
    }

    fn start_upload(&self, algorithm: Algorithm) -> Result<HostUpload, StoreError> {
        let algorithm = match algorithm {
            Algorithm::Sha256 => types::Algorithm::Sha256,
            Algorithm::Sha512 => types::Algorithm::Sha512,
        };
        self.0
            .start_upload(algorithm)
            .map(HostUpload)
            .map_err(store_error)
    }

    fn open_upload(&self, id: &str) -> Result<HostUpload, StoreError> {
        self.0.open_upload(id).map(HostUpload).map_err(store_error)
    }

    fn delete_manifest(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.0
            .delete_manifest(&digest.to_string())
            .map_err(store_error)
    }

    fn delete_tag(&self, tag: &str) -> Result<bool, StoreError> {
        self.0.delete_tag(tag).map_err(store_error)
    }

    fn unlink_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.0.unlink_blob(&digest.to_string()).map_err(store_error)
    }
}
