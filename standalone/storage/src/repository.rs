//! The `repository` resource: one repository, opened for the access the
//! gate granted. Every method first asks the handle whether it was opened
//! for what the method needs (`denied` otherwise), then checks its
//! arguments, then goes to storage: the native host's order, so a
//! hostile core learns nothing more here than there.

use crate::access::{authorize, digest_arg, granted, page, store, tag_arg, to_wit};
use crate::bindings::exports::wharf::registry::repositories::{
    BlobRead, GuestRepository, Manifest, Reference, Repository, RepositoryBorrow, StoredManifest,
    Upload,
};
use crate::bindings::wharf::registry::types::{
    Access, Algorithm, ByteRange, Page, Refusal, StoreError,
};
use crate::metadata::NewManifest;
use crate::uploads::UploadHandle;
use wharf_spec::ranges::{self, Portion, RangeRequest};

/// A checked repository name and the access the caller was granted on it.
pub struct RepositoryHandle {
    name: String,
    access: Access,
}

impl RepositoryHandle {
    /// The repository's name, if the handle was opened for `needed`.
    fn granted(&self, needed: Access) -> Result<&str, StoreError> {
        granted(&self.name, self.access, needed)?;
        Ok(&self.name)
    }
}

impl GuestRepository for RepositoryHandle {
    fn open(name: String, access: Access) -> Result<Repository, Refusal> {
        if !wharf_spec::names::is_valid_name(&name) {
            return Err(Refusal::Invalid(format!(
                "invalid repository name {name:?}"
            )));
        }
        if (access & (Access::PULL | Access::PUSH | Access::DELETE)).is_empty() {
            return Err(Refusal::Invalid(
                "a repository is opened for some access: pull, push or delete".into(),
            ));
        }
        authorize(Some(&name), access)?;
        Ok(Repository::new(RepositoryHandle { name, access }))
    }

    fn access(&self) -> Access {
        self.access
    }

    fn manifest(&self, reference: Reference) -> Result<Option<StoredManifest>, StoreError> {
        let name = self.granted(Access::PULL)?;
        let store = store();
        let digest = match reference {
            Reference::Digest(digest) => digest_arg(&digest)?,
            Reference::Tag(tag) => {
                tag_arg(&tag)?;
                match store.resolve_tag(name, &tag).map_err(to_wit)? {
                    Some(digest) => digest,
                    None => return Ok(None),
                }
            }
        };
        let Some(found) = store.manifest(name, &digest).map_err(to_wit)? else {
            return Ok(None);
        };
        let Some(content) = crate::streams::read_from(&found.data, 0).map_err(to_wit)? else {
            return Ok(None);
        };
        Ok(Some(StoredManifest {
            digest: digest.to_string(),
            media_type: found.media_type,
            size: found.size,
            content,
        }))
    }

    fn list_tags(&self, after: Option<String>, limit: u32) -> Result<Option<Page>, StoreError> {
        let name = self.granted(Access::PULL)?;
        Ok(store()
            .list_tags(name, after.as_deref(), limit)
            .map_err(to_wit)?
            .map(page))
    }

    fn list_referrers(
        &self,
        subject: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let name = self.granted(Access::PULL)?;
        let subject = digest_arg(&subject)?;
        store()
            .list_referrers(name, &subject, after.as_deref(), limit)
            .map(page)
            .map_err(to_wit)
    }

    fn stat_blob(&self, digest: String) -> Result<Option<u64>, StoreError> {
        let name = self.granted(Access::PULL)?;
        let digest = digest_arg(&digest)?;
        store().linked_size(name, &digest).map_err(to_wit)
    }

    fn read_blob(
        &self,
        digest: String,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRead>, StoreError> {
        let name = self.granted(Access::PULL)?;
        let digest = digest_arg(&digest)?;
        let store = store();
        let Some(size) = store.linked_size(name, &digest).map_err(to_wit)? else {
            return Ok(None);
        };
        let range = range.map(|r| match r {
            ByteRange::Starting(first) => RangeRequest::Starting(first),
            ByteRange::Span((first, last)) => RangeRequest::Span(first, last),
            ByteRange::Suffix(n) => RangeRequest::Suffix(n),
        });
        let Some(Portion {
            offset,
            length,
            partial,
        }) = ranges::portion(range, size)
        else {
            return Ok(Some(BlobRead {
                size,
                offset: 0,
                length: size,
                partial: false,
                content: None,
                redirect: None,
            }));
        };
        // The stream runs on to the end of the file; the core sends
        // `length` bytes of it.
        let content = crate::streams::read_from(&store.layout.blob_data(&digest), offset)
            .map_err(to_wit)?
            .ok_or(StoreError::NotFound)?;
        Ok(Some(BlobRead {
            size,
            offset,
            length,
            partial,
            content: Some(content),
            redirect: None,
        }))
    }

    fn put_manifest(&self, manifest: Manifest, tags: Vec<String>) -> Result<(), StoreError> {
        let name = self.granted(Access::PUSH)?;
        for tag in &tags {
            tag_arg(tag)?;
        }
        let digest = digest_arg(&manifest.digest)?;
        let subject = manifest.subject.as_deref().map(digest_arg).transpose()?;
        let store = store();
        store
            .put_manifest(
                name,
                &NewManifest {
                    digest: &digest,
                    media_type: &manifest.media_type,
                    content: &manifest.content,
                    subject: subject.as_ref(),
                },
            )
            .map_err(to_wit)?;
        for tag in &tags {
            store.set_tag(name, tag, &digest).map_err(to_wit)?;
        }
        Ok(())
    }

    fn mount_blob(
        &self,
        digest: String,
        source: Option<RepositoryBorrow<'_>>,
    ) -> Result<bool, StoreError> {
        let name = self.granted(Access::PUSH)?;
        let digest = digest_arg(&digest)?;
        let source = match &source {
            Some(source) => Some(source.get::<RepositoryHandle>().granted(Access::PULL)?),
            None => None,
        };
        let store = store();
        let linked = |repository: &str| store.blob_linked(repository, &digest).map_err(to_wit);
        if store.stat_blob(&digest).map_err(to_wit)?.is_none() {
            return Ok(false);
        }
        if linked(name)? {
            return Ok(true);
        }
        let found = match source {
            Some(source) => linked(source)?,
            // Anywhere the caller may pull it from: the first repository,
            // in order, that links it and that the gate lets it pull.
            None => {
                let mut found = false;
                for repository in store.all_repositories().map_err(to_wit)? {
                    if repository != name
                        && authorize(Some(&repository), Access::PULL).is_ok()
                        && linked(&repository)?
                    {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        if !found {
            return Ok(false);
        }
        store.link_blob(name, &digest).map_err(to_wit)?;
        Ok(true)
    }

    fn start_upload(&self, algorithm: Algorithm) -> Result<Upload, StoreError> {
        let name = self.granted(Access::PUSH)?;
        let algorithm = match algorithm {
            Algorithm::Sha256 => wharf_spec::Algorithm::Sha256,
            Algorithm::Sha512 => wharf_spec::Algorithm::Sha512,
        };
        let session = store().start_upload(name, algorithm).map_err(to_wit)?;
        Ok(Upload::new(UploadHandle::new(session, Some(0))))
    }

    fn open_upload(&self, id: String) -> Result<Upload, StoreError> {
        let name = self.granted(Access::PUSH)?;
        let session = store().open_upload(name, &id).map_err(to_wit)?;
        Ok(Upload::new(UploadHandle::new(session, None)))
    }

    fn delete_manifest(&self, digest: String) -> Result<bool, StoreError> {
        let name = self.granted(Access::DELETE)?;
        let digest = digest_arg(&digest)?;
        store().delete_manifest(name, &digest).map_err(to_wit)
    }

    fn delete_tag(&self, tag: String) -> Result<bool, StoreError> {
        let name = self.granted(Access::DELETE)?;
        tag_arg(&tag)?;
        store().delete_tag(name, &tag).map_err(to_wit)
    }

    fn unlink_blob(&self, digest: String) -> Result<bool, StoreError> {
        let name = self.granted(Access::DELETE)?;
        let digest = digest_arg(&digest)?;
        store().unlink_blob(name, &digest).map_err(to_wit)
    }
}
