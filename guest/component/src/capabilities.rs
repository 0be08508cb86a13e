//! The core's capability traits, implemented by calling the WIT imports.

use crate::bindings::wasi::http::types::IncomingBody;
use crate::bindings::wharf::registry::{auth, blobs, metadata, types};
use crate::streams::{self, InputStream, ReadFailure, StreamFailure};
use wharf_guest::{
    Action, Algorithm, BodyError, Digest, Page, RequestBody, StoreError, StoredManifest, Upload,
    Verdict,
};

fn store_error(e: types::Error) -> StoreError {
    match e {
        types::Error::NotFound => StoreError::NotFound,
        types::Error::DigestMismatch(d) => StoreError::DigestMismatch(d),
        types::Error::Invalid(m) => StoreError::Invalid(m),
        types::Error::LimitExceeded(m) => StoreError::LimitExceeded(m),
        types::Error::Busy => StoreError::Busy,
        types::Error::Unsupported(m) => StoreError::Unsupported(m),
        types::Error::Storage(m) => StoreError::Storage(m),
    }
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

    fn stream(&mut self) -> Result<&InputStream, String> {
        if self.stream.is_none() {
            let body = self.body.as_ref().ok_or("request body already consumed")?;
            let stream = body
                .stream()
                .map_err(|()| "request body already consumed")?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_ref().expect("set above"))
    }
}

impl RequestBody for HostBody {
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        let stream = self.stream().map_err(BodyError::Io)?;
        streams::read_to_end(stream, limit).map_err(|e| match e {
            ReadFailure::TooLarge => BodyError::TooLarge(limit),
            ReadFailure::Failed(m) => BodyError::Io(m),
        })
    }
}

pub struct HostUpload(blobs::Upload);

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
        let moved = streams::copy(source, &writer);
        drop(writer);
        moved.map_err(|e| match e {
            StreamFailure::Source(m) => StoreError::Invalid(format!("request body: {m}")),
            // A session that refused bytes for a limit says so when asked
            // for a writer again; any other failure is the storage's.
            StreamFailure::Destination(m) => match self.0.writer() {
                Err(e @ types::Error::LimitExceeded(_)) => store_error(e),
                _ => StoreError::Storage(m),
            },
        })
    }

    fn finish(self, expected: &Digest) -> Result<u64, StoreError> {
        blobs::Upload::finish(self.0, &expected.to_string()).map_err(store_error)
    }

    fn cancel(self) -> Result<(), StoreError> {
        blobs::Upload::cancel(self.0).map_err(store_error)
    }
}

pub struct HostBlobs;

impl wharf_guest::Blobs for HostBlobs {
    type Body = HostBody;
    type Upload = HostUpload;
    type Reader = InputStream;

    fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        blobs::stat(&digest.to_string()).map_err(store_error)
    }

    fn read(
        &self,
        digest: &Digest,
        offset: u64,
        length: Option<u64>,
    ) -> Result<InputStream, StoreError> {
        blobs::read(&digest.to_string(), offset, length).map_err(store_error)
    }

    fn start_upload(
        &self,
        repository: &str,
        algorithm: Algorithm,
    ) -> Result<HostUpload, StoreError> {
        let algorithm = match algorithm {
            Algorithm::Sha256 => types::Algorithm::Sha256,
            Algorithm::Sha512 => types::Algorithm::Sha512,
        };
        blobs::Upload::start(repository, algorithm)
            .map(HostUpload)
            .map_err(store_error)
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<HostUpload, StoreError> {
        blobs::Upload::open(repository, id)
            .map(HostUpload)
            .map_err(store_error)
    }
}

pub struct HostMetadata;

impl wharf_guest::Metadata for HostMetadata {
    fn get_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, StoreError> {
        match metadata::get_manifest(repository, &digest.to_string()).map_err(store_error)? {
            None => Ok(None),
            Some(m) => Ok(Some(StoredManifest {
                digest: host_digest(m.digest)?,
                media_type: m.media_type,
                content: m.content,
                subject: m.subject.map(host_digest).transpose()?,
            })),
        }
    }

    fn put_manifest(&self, repository: &str, manifest: &StoredManifest) -> Result<(), StoreError> {
        let m = metadata::Manifest {
            digest: manifest.digest.to_string(),
            media_type: manifest.media_type.clone(),
            content: manifest.content.clone(),
            subject: manifest.subject.as_ref().map(Digest::to_string),
        };
        metadata::put_manifest(repository, &m).map_err(store_error)
    }

    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError> {
        metadata::delete_manifest(repository, &digest.to_string()).map_err(store_error)
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>, StoreError> {
        metadata::resolve_tag(repository, tag)
            .map_err(store_error)?
            .map(host_digest)
            .transpose()
    }

    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<(), StoreError> {
        metadata::set_tag(repository, tag, &digest.to_string()).map_err(store_error)
    }

    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, StoreError> {
        metadata::delete_tag(repository, tag).map_err(store_error)
    }

    fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page>, StoreError> {
        Ok(metadata::list_tags(repository, after, limit)
            .map_err(store_error)?
            .map(page))
    }

    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        metadata::list_repositories(after, limit)
            .map(page)
            .map_err(store_error)
    }

    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        metadata::list_referrers(repository, &subject.to_string(), after, limit)
            .map(page)
            .map_err(store_error)
    }

    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<(), StoreError> {
        metadata::link_blob(repository, &digest.to_string()).map_err(store_error)
    }

    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError> {
        metadata::blob_linked(repository, &digest.to_string()).map_err(store_error)
    }

    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError> {
        metadata::unlink_blob(repository, &digest.to_string()).map_err(store_error)
    }
}

pub struct HostAuth;

impl wharf_guest::Auth for HostAuth {
    fn authorize(&self, repository: Option<&str>, action: Action) -> Verdict {
        let action = match action {
            Action::Pull => auth::Action::Pull,
            Action::Push => auth::Action::Push,
            Action::Delete => auth::Action::Delete,
        };
        match auth::authorize(repository, action) {
            auth::Verdict::Allow(who) => Verdict::Allow(who),
            auth::Verdict::Challenge(c) => Verdict::Challenge(c),
            auth::Verdict::Deny(why) => Verdict::Deny(why),
        }
    }
}
