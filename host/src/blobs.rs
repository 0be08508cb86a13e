//! `wharf:registry/blobs`: content-addressed storage for the guest.
//!
//! Translates WIT calls to a [`BlobStore`]; the storage work runs on the
//! blocking pool. Streams handed to the guest are host streams, so bulk
//! bytes move by splice without entering guest memory.

use crate::bindings::blobs::{Host, HostUpload};
use crate::bindings::types::{Algorithm, Error};
use crate::state::RequestState;
use crate::storage::{BlobStore, StorageError, UploadSession};
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};
use wharf_guest::Digest;

/// The host side of an `upload` resource.
pub struct UploadHandle(Box<dyn UploadSession>);

pub fn to_wit_error(e: StorageError) -> Error {
    match e {
        StorageError::NotFound => Error::NotFound,
        StorageError::DigestMismatch(d) => Error::DigestMismatch(d.to_string()),
        StorageError::Invalid(m) => Error::Invalid(m),
        StorageError::Busy => Error::Busy,
        StorageError::LimitExceeded(m) => Error::LimitExceeded(m),
        StorageError::Unsupported(m) => Error::Unsupported(m),
        StorageError::Io(e) => {
            tracing::error!(error = %e, "storage failure");
            Error::Storage(e.to_string())
        }
    }
}

/// A digest the guest sent: it validated it, the host checks again before
/// the digest becomes a path.
pub fn digest_arg(digest: &str) -> Result<Digest, StorageError> {
    Digest::parse(digest).map_err(|e| StorageError::Invalid(e.to_string()))
}

/// A repository name the guest sent, checked again before it becomes a path.
pub fn repository_arg(name: &str) -> Result<&str, StorageError> {
    if wharf_guest::names::is_valid_name(name) {
        Ok(name)
    } else {
        Err(StorageError::Invalid(format!(
            "invalid repository name {name:?}"
        )))
    }
}

/// Run a small storage read on the calling thread. A read of a few small
/// files is served from the page cache in microseconds, less than handing it
/// to the blocking pool and waking up again costs: a manifest GET by tag
/// makes three such calls, and doing them here serves about half as many
/// requests again per second. Writes (which fsync), listings (which walk
/// directories) and everything else stay on the pool with [`blocking`].
pub fn inline<T>(
    work: impl FnOnce() -> Result<T, StorageError>,
) -> wasmtime::Result<Result<T, Error>> {
    Ok(work().map_err(to_wit_error))
}

/// Run blocking storage work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> wasmtime::Result<Result<T, Error>> {
    Ok(tokio::task::spawn_blocking(work)
        .await?
        .map_err(to_wit_error))
}

fn store(state: &RequestState) -> Arc<dyn BlobStore> {
    state.capabilities.blobs.clone()
}

impl Host for RequestState {
    async fn stat(&mut self, digest: String) -> wasmtime::Result<Result<Option<u64>, Error>> {
        let store = store(self);
        inline(move || store.stat(&digest_arg(&digest)?))
    }

    async fn read(
        &mut self,
        digest: String,
        offset: u64,
        length: Option<u64>,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, Error>> {
        let store = store(self);
        // Opens the file and checks the range; the bytes are read later,
        // on the blocking pool, as the stream is polled.
        match inline(move || store.read(&digest_arg(&digest)?, offset, length))? {
            Ok(stream) => Ok(Ok(self.table.push(stream)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl HostUpload for RequestState {
    async fn start(
        &mut self,
        repository: String,
        algorithm: Algorithm,
    ) -> wasmtime::Result<Result<Resource<UploadHandle>, Error>> {
        let algorithm = match algorithm {
            Algorithm::Sha256 => wharf_guest::Algorithm::Sha256,
            Algorithm::Sha512 => wharf_guest::Algorithm::Sha512,
        };
        let store = store(self);
        match blocking(move || store.start_upload(repository_arg(&repository)?, algorithm)).await? {
            Ok(session) => Ok(Ok(self.table.push(UploadHandle(session))?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn open(
        &mut self,
        repository: String,
        id: String,
    ) -> wasmtime::Result<Result<Resource<UploadHandle>, Error>> {
        let store = store(self);
        match blocking(move || store.open_upload(repository_arg(&repository)?, &id)).await? {
            Ok(session) => Ok(Ok(self.table.push(UploadHandle(session))?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn id(&mut self, upload: Resource<UploadHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&upload)?.0.id().to_string())
    }

    async fn offset(&mut self, upload: Resource<UploadHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&upload)?.0.offset())
    }

    async fn writer(
        &mut self,
        upload: Resource<UploadHandle>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, Error>> {
        match self.table.get_mut(&upload)?.0.writer() {
            Ok(stream) => Ok(Ok(self.table.push(stream)?)),
            Err(e) => Ok(Err(to_wit_error(e))),
        }
    }

    async fn finish(
        &mut self,
        upload: Resource<UploadHandle>,
        expected: String,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let session = self.table.delete(upload)?.0;
        blocking(move || session.finish(&digest_arg(&expected)?)).await
    }

    async fn cancel(
        &mut self,
        upload: Resource<UploadHandle>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let session = self.table.delete(upload)?.0;
        blocking(move || session.cancel()).await
    }

    async fn drop(&mut self, upload: Resource<UploadHandle>) -> wasmtime::Result<()> {
        self.table.delete(upload)?;
        Ok(())
    }
}
