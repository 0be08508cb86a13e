//! `wharf:registry/repositories`: the handles the guest reaches storage
//! through, and the checks that make them capabilities.
//!
//! A [`RepositoryHandle`] is made only by `repository.open`, for a name the
//! host has checked and for access the caller's identity holds; every
//! method then asks the handle, not the guest, whether it may run. The
//! guest can hold only what it was given: a handle of another repository
//! needs another `open`, which the host may refuse, and an upload is
//! reopened only through a handle of its own repository. Names and digests
//! are checked once, as they enter the host; what the handle holds is
//! already checked.

use crate::access::{Action, Verdict};
use crate::capabilities::bindings::repositories::{
    BlobRead, Host, HostCatalog, HostRepository, HostUpload, Manifest, Reference, StoredManifest,
};
use crate::capabilities::bindings::types::{
    self as wit, Access, Algorithm, ByteRange, Page, Refusal,
};
use crate::capabilities::notifications as events;
use crate::sandbox::state::{Capabilities, RequestState};
use crate::storage::{self, StoreError, UploadSession};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};
use wharf_spec::Digest;
use wharf_spec::ranges::{self, Portion, RangeRequest};

/// The host side of a `repository` resource: a checked name and the
/// access the caller was granted on it.
pub struct RepositoryHandle {
    name: String,
    access: Access,
}

/// The host side of a `catalog` resource: the caller may see the registry.
pub struct CatalogHandle;

/// The host side of an `upload` resource: a session and the repository it
/// belongs to, where `finish` links the blob.
pub struct UploadHandle {
    session: Box<dyn UploadSession>,
    repository: String,
}

type Answer<T> = wasmtime::Result<Result<T, wit::StoreError>>;

pub fn to_wit_error(e: StoreError) -> wit::StoreError {
    match e {
        StoreError::NotFound => wit::StoreError::NotFound,
        StoreError::DigestMismatch(d) => wit::StoreError::DigestMismatch(d.to_string()),
        StoreError::Invalid(m) => wit::StoreError::Invalid(m),
        StoreError::Busy => wit::StoreError::Busy,
        StoreError::LimitExceeded(m) => wit::StoreError::LimitExceeded(m),
        StoreError::Unsupported(m) => wit::StoreError::Unsupported(m),
        StoreError::Io(e) => {
            tracing::error!(error = %e, "storage failure");
            wit::StoreError::Storage(e.to_string())
        }
    }
}

/// A digest as it enters the host: checked once, then a typed value.
fn digest_arg(digest: &str) -> Result<Digest, wit::StoreError> {
    Digest::parse(digest).map_err(|e| wit::StoreError::Invalid(e.to_string()))
}

/// A tag as it enters the host: it becomes a directory name.
fn tag_arg(tag: &str) -> Result<(), wit::StoreError> {
    if wharf_spec::names::is_valid_tag(tag) {
        Ok(())
    } else {
        Err(wit::StoreError::Invalid(format!("invalid tag {tag:?}")))
    }
}

fn page(p: storage::Page) -> Page {
    Page {
        entries: p.entries,
        more: p.more,
    }
}

/// Run a small storage read: on the calling thread when the backend serves
/// it locally ([`storage::MetadataStore::local_reads`]: a few small files
/// from the page cache take microseconds, less than handing them to the
/// blocking pool and waking up again costs), else on the blocking pool.
/// Writes (which fsync), listings (which walk directories) and everything
/// else stay on the pool with [`blocking`].
async fn small_read<T: Send + 'static>(
    caps: &Capabilities,
    work: impl FnOnce() -> storage::Result<T> + Send + 'static,
) -> Answer<T> {
    if caps.metadata.local_reads() {
        Ok(work().map_err(to_wit_error))
    } else {
        blocking(work).await
    }
}

/// Run blocking storage work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> storage::Result<T> + Send + 'static,
) -> Answer<T> {
    Ok(tokio::task::spawn_blocking(work)
        .await?
        .map_err(to_wit_error))
}

/// Each right in `access`, as the access control's actions.
fn actions(access: Access) -> impl Iterator<Item = Action> {
    [
        (Access::PULL, Action::Pull),
        (Access::PUSH, Action::Push),
        (Access::DELETE, Action::Delete),
    ]
    .into_iter()
    .filter(move |(flag, _)| access.contains(*flag))
    .map(|(_, action)| action)
}

fn names(access: Access) -> String {
    let names: Vec<&str> = actions(access)
        .map(|a| match a {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        })
        .collect();
    names.join(", ")
}

/// What a mount found.
enum Mount {
    /// The blob is not stored, or not where the caller may take it from.
    Absent,
    AlreadyLinked,
    Linked {
        name: String,
        digest: Digest,
        size: u64,
        from: String,
    },
}

/// An event's target for a blob of `repository`.
fn blob_target(repository: String, digest: &Digest, size: Option<u64>) -> events::Target {
    events::Target {
        kind: events::Kind::Blob,
        repository,
        digest: digest.to_string(),
        media_type: BLOB_MEDIA_TYPE.to_string(),
        size,
        ..Default::default()
    }
}

/// The size of `digest` if `repository` may see it: linked there and
/// still stored. What a pull of a blob asks first, whatever it then reads.
fn linked_size(
    caps: &Capabilities,
    repository: &str,
    digest: &Digest,
) -> storage::Result<Option<u64>> {
    if !caps.metadata.blob_linked(repository, digest)? {
        return Ok(None);
    }
    caps.blobs.stat(digest)
}

/// How a blob read is served.
enum Served {
    Bytes(Box<dyn storage::Source>),
    /// At a signed URL of the store.
    Redirect(String),
    /// Not at all: the range cannot be satisfied.
    Nothing,
}

/// What events call a blob's media type, as registry:2 does.
const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

impl RequestState {
    /// Tell the notification endpoints, if any, what this request did.
    fn notify(&self, action: events::Action, target: impl FnOnce() -> events::Target) {
        if let (Some(notifier), Some(request)) = (&self.capabilities.events, &self.request) {
            notifier.emit(action, target(), request);
        }
    }

    /// Tell of a pull: once per request, and only of the manifest or blob
    /// at `path`, the request's own. A component reads manifests for other
    /// reasons too (a referrers listing reads each referrer), and cannot
    /// make pulls up.
    fn notify_pull(&mut self, path: &str, target: impl FnOnce() -> events::Target) {
        let Some(request) = &self.request else {
            return;
        };
        if self.pull_told || request.path != path {
            return;
        }
        self.pull_told = true;
        self.notify(events::Action::Pull, target);
    }

    /// Whether anyone listens for events (to keep what they need).
    fn listened(&self) -> bool {
        self.capabilities.events.is_some()
    }

    /// Whether manifest events list references, and so carry the
    /// manifest's content (copied only then).
    fn wants_references(&self) -> bool {
        self.capabilities
            .events
            .as_ref()
            .is_some_and(|n| n.wants_references())
    }

    /// May the caller have `action` on `repository` (none: the registry)?
    fn verdict(&self, repository: Option<&str>, action: Action) -> Result<(), Refusal> {
        match self
            .capabilities
            .auth
            .authorize(&self.identity, repository, action)
        {
            Verdict::Allow(_) => Ok(()),
            Verdict::Challenge(challenge) => Err(Refusal::Challenge(challenge)),
            Verdict::Deny(why) => Err(Refusal::Deny(why)),
        }
    }

    /// The handle's repository name, if it was opened for `needed`.
    fn granted(
        &self,
        handle: &Resource<RepositoryHandle>,
        needed: Access,
    ) -> wasmtime::Result<Result<String, wit::StoreError>> {
        let handle = self.table.get(handle)?;
        if handle.access.contains(needed) {
            return Ok(Ok(handle.name.clone()));
        }
        Ok(Err(wit::StoreError::Denied(format!(
            "the handle of {} was opened without {} access",
            handle.name,
            names(needed & !handle.access)
        ))))
    }
}

/// Unwrap a capability check, or answer its error to the guest.
macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

impl Host for RequestState {}
impl crate::capabilities::bindings::types::Host for RequestState {}

impl HostCatalog for RequestState {
    async fn open(&mut self) -> wasmtime::Result<Result<Resource<CatalogHandle>, Refusal>> {
        if let Err(refusal) = self.verdict(None, Action::Pull) {
            return Ok(Err(refusal));
        }
        Ok(Ok(self.table.push(CatalogHandle)?))
    }

    async fn list_repositories(
        &mut self,
        catalog: Resource<CatalogHandle>,
        after: Option<String>,
        limit: u32,
    ) -> Answer<Page> {
        self.table.get(&catalog)?;
        let store = self.capabilities.metadata.clone();
        let (auth, identity) = (self.capabilities.auth.clone(), self.identity.clone());
        // Only what the caller may pull (access rules may hide some): the
        // store's pages are read on until this one is full, and one more
        // name the caller may pull says whether there are more.
        let may_pull = move |repository: &str| auth.lists(&identity, repository);
        blocking(move || {
            let batch = limit.saturating_add(1).max(100);
            let mut kept = storage::Page::default();
            let mut after = after;
            loop {
                let read = store.list_repositories(after.as_deref(), batch)?;
                for name in read.entries {
                    after = Some(name.clone());
                    if !may_pull(&name) {
                        continue;
                    }
                    if kept.entries.len() >= limit as usize {
                        kept.more = true;
                        return Ok(page(kept));
                    }
                    kept.entries.push(name);
                }
                if !read.more {
                    return Ok(page(kept));
                }
            }
        })
        .await
    }

    async fn drop(&mut self, catalog: Resource<CatalogHandle>) -> wasmtime::Result<()> {
        self.table.delete(catalog)?;
        Ok(())
    }
}

impl HostRepository for RequestState {
    async fn open(
        &mut self,
        name: String,
        access: Access,
    ) -> wasmtime::Result<Result<Resource<RepositoryHandle>, Refusal>> {
        if !wharf_spec::names::is_valid_name(&name) {
            return Ok(Err(Refusal::Invalid(format!(
                "invalid repository name {name:?}"
            ))));
        }
        if actions(access).next().is_none() {
            return Ok(Err(Refusal::Invalid(
                "a repository is opened for some access: pull, push or delete".into(),
            )));
        }
        for action in actions(access) {
            if let Err(refusal) = self.verdict(Some(&name), action) {
                return Ok(Err(refusal));
            }
        }
        Ok(Ok(self.table.push(RepositoryHandle { name, access })?))
    }

    async fn access(&mut self, repo: Resource<RepositoryHandle>) -> wasmtime::Result<Access> {
        Ok(self.table.get(&repo)?.access)
    }

    async fn manifest(
        &mut self,
        repo: Resource<RepositoryHandle>,
        reference: Reference,
    ) -> Answer<Option<StoredManifest>> {
        let name = check!(self.granted(&repo, Access::PULL)?);
        let store = self.capabilities.metadata.clone();
        let path = match &reference {
            Reference::Digest(r) | Reference::Tag(r) => format!("/v2/{name}/manifests/{r}"),
        };
        let (digest, tag) = match reference {
            Reference::Digest(digest) => (check!(digest_arg(&digest)), None),
            Reference::Tag(tag) => {
                check!(tag_arg(&tag));
                let (store, name, asked) = (store.clone(), name.clone(), tag.clone());
                let resolved =
                    small_read(&self.capabilities, move || store.resolve_tag(&name, &asked));
                match check!(resolved.await?) {
                    Some(digest) => (digest, Some(tag)),
                    None => return Ok(Ok(None)),
                }
            }
        };
        let read = {
            let (name, digest) = (name.clone(), digest.clone());
            small_read(&self.capabilities, move || {
                store.get_manifest(&name, &digest)
            })
        };
        let Some(manifest) = check!(read.await?) else {
            return Ok(Ok(None));
        };
        let size = manifest.content.len() as u64;
        let references = self.wants_references();
        self.notify_pull(&path, || events::Target {
            kind: events::Kind::Manifest,
            repository: name,
            digest: manifest.digest.to_string(),
            media_type: manifest.media_type.clone(),
            size: Some(size),
            tag,
            from_repository: None,
            manifest: references.then(|| manifest.content.clone()),
        });
        let content: DynInputStream = Box::new(MemoryInputPipe::new(manifest.content));
        Ok(Ok(Some(StoredManifest {
            digest: manifest.digest.to_string(),
            media_type: manifest.media_type,
            size,
            content: self.table.push(content)?,
        })))
    }

    async fn list_tags(
        &mut self,
        repo: Resource<RepositoryHandle>,
        after: Option<String>,
        limit: u32,
    ) -> Answer<Option<Page>> {
        let name = check!(self.granted(&repo, Access::PULL)?);
        let store = self.capabilities.metadata.clone();
        blocking(move || Ok(store.list_tags(&name, after.as_deref(), limit)?.map(page))).await
    }

    async fn list_referrers(
        &mut self,
        repo: Resource<RepositoryHandle>,
        subject: String,
        after: Option<String>,
        limit: u32,
    ) -> Answer<Page> {
        let name = check!(self.granted(&repo, Access::PULL)?);
        let subject = check!(digest_arg(&subject));
        let store = self.capabilities.metadata.clone();
        blocking(move || {
            Ok(page(store.list_referrers(
                &name,
                &subject,
                after.as_deref(),
                limit,
            )?))
        })
        .await
    }

    async fn stat_blob(
        &mut self,
        repo: Resource<RepositoryHandle>,
        digest: String,
    ) -> Answer<Option<u64>> {
        let name = check!(self.granted(&repo, Access::PULL)?);
        let digest = check!(digest_arg(&digest));
        let caps = self.capabilities.clone();
        small_read(&self.capabilities, move || {
            linked_size(&caps, &name, &digest)
        })
        .await
    }

    async fn read_blob(
        &mut self,
        repo: Resource<RepositoryHandle>,
        digest: String,
        range: Option<ByteRange>,
    ) -> Answer<Option<BlobRead>> {
        let name = check!(self.granted(&repo, Access::PULL)?);
        let digest = check!(digest_arg(&digest));
        let caps = self.capabilities.clone();
        // Checks the link, finds the size and opens the file (or signs a
        // URL of the store); the bytes are read later, on the blocking
        // pool, as the stream is polled.
        let (name_read, digest_read) = (name.clone(), digest.clone());
        let found = check!(
            small_read(&self.capabilities, move || {
                let (name, digest) = (name_read, digest_read);
                let Some(size) = linked_size(&caps, &name, &digest)? else {
                    return Ok(None);
                };
                if let Some(url) = caps.blobs.redirect(&digest)? {
                    return Ok(Some((size, 0, size, false, Served::Redirect(url))));
                }
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
                    return Ok(Some((size, 0, size, false, Served::Nothing)));
                };
                let source = caps.blobs.read(&digest, offset, Some(length))?;
                Ok(Some((size, offset, length, partial, Served::Bytes(source))))
            })
            .await?
        );
        let Some((size, offset, length, partial, served)) = found else {
            return Ok(Ok(None));
        };
        if !matches!(served, Served::Nothing) {
            let path = format!("/v2/{name}/blobs/{digest}");
            self.notify_pull(&path, || blob_target(name, &digest, Some(size)));
        }
        let (content, redirect) = match served {
            Served::Bytes(source) => (
                Some(
                    self.table
                        .push(crate::capabilities::streams::input(source))?,
                ),
                None,
            ),
            Served::Redirect(url) => (None, Some(url)),
            Served::Nothing => (None, None),
        };
        Ok(Ok(Some(BlobRead {
            size,
            offset,
            length,
            partial,
            content,
            redirect,
        })))
    }

    async fn put_manifest(
        &mut self,
        repo: Resource<RepositoryHandle>,
        manifest: Manifest,
        tags: Vec<String>,
    ) -> Answer<()> {
        let name = check!(self.granted(&repo, Access::PUSH)?);
        for tag in &tags {
            check!(tag_arg(tag));
        }
        let stored = storage::Manifest {
            digest: check!(digest_arg(&manifest.digest)),
            media_type: manifest.media_type,
            content: manifest.content,
            subject: match manifest.subject.as_deref().map(digest_arg) {
                None => None,
                Some(subject) => Some(check!(subject)),
            },
        };
        let store = self.capabilities.metadata.clone();
        let listened = self.listened();
        let pushed = check!(
            blocking(move || {
                store.put_manifest(&name, &stored)?;
                for tag in &tags {
                    store.set_tag(&name, tag, &stored.digest)?;
                }
                Ok(listened.then_some((name, stored, tags)))
            })
            .await?
        );
        if let Some((name, stored, tags)) = pushed {
            let tags: Vec<Option<String>> = if tags.is_empty() {
                vec![None]
            } else {
                tags.into_iter().map(Some).collect()
            };
            for tag in tags {
                self.notify(events::Action::Push, || events::Target {
                    kind: events::Kind::Manifest,
                    repository: name.clone(),
                    digest: stored.digest.to_string(),
                    media_type: stored.media_type.clone(),
                    size: Some(stored.content.len() as u64),
                    tag,
                    from_repository: None,
                    manifest: self.wants_references().then(|| stored.content.clone()),
                });
            }
        }
        Ok(Ok(()))
    }

    async fn mount_blob(
        &mut self,
        repo: Resource<RepositoryHandle>,
        digest: String,
        source: Option<Resource<RepositoryHandle>>,
    ) -> Answer<bool> {
        let name = check!(self.granted(&repo, Access::PUSH)?);
        let digest = check!(digest_arg(&digest));
        let source = match source {
            Some(source) => Some(check!(self.granted(&source, Access::PULL)?)),
            None => None,
        };
        let caps = self.capabilities.clone();
        let identity = self.identity.clone();
        let mounted = check!(
            blocking(move || {
                let metadata = &caps.metadata;
                let linked = |repository: &str| metadata.blob_linked(repository, &digest);
                let Some(size) = caps.blobs.stat(&digest)? else {
                    return Ok(Mount::Absent);
                };
                if linked(&name)? {
                    return Ok(Mount::AlreadyLinked);
                }
                let found = match source {
                    Some(source) => linked(&source)?.then_some(source),
                    // Anywhere the caller may pull it from: the first
                    // repository, in order, that has it linked. One listing
                    // (a walk of the repository tree), then a link look-up per
                    // repository the caller may pull.
                    None => {
                        let may_pull = |repository: &str| {
                            matches!(
                                caps.auth
                                    .authorize(&identity, Some(repository), Action::Pull),
                                Verdict::Allow(_)
                            )
                        };
                        let all = metadata.list_repositories(None, u32::MAX)?;
                        let mut found = None;
                        for repository in all.entries {
                            if repository != name && may_pull(&repository) && linked(&repository)? {
                                found = Some(repository);
                                break;
                            }
                        }
                        found
                    }
                };
                let Some(from) = found else {
                    return Ok(Mount::Absent);
                };
                metadata.link_blob(&name, &digest)?;
                Ok(Mount::Linked {
                    name,
                    digest,
                    size,
                    from,
                })
            })
            .await?
        );
        Ok(Ok(match mounted {
            Mount::Absent => false,
            Mount::AlreadyLinked => true,
            Mount::Linked {
                name,
                digest,
                size,
                from,
            } => {
                self.notify(events::Action::Mount, || events::Target {
                    from_repository: Some(from),
                    ..blob_target(name, &digest, Some(size))
                });
                true
            }
        }))
    }

    async fn start_upload(
        &mut self,
        repo: Resource<RepositoryHandle>,
        algorithm: Algorithm,
    ) -> Answer<Resource<UploadHandle>> {
        let name = check!(self.granted(&repo, Access::PUSH)?);
        let algorithm = match algorithm {
            Algorithm::Sha256 => wharf_spec::Algorithm::Sha256,
            Algorithm::Sha512 => wharf_spec::Algorithm::Sha512,
        };
        let store = self.capabilities.blobs.clone();
        let repository = name.clone();
        let session = check!(blocking(move || store.start_upload(&repository, algorithm)).await?);
        Ok(Ok(self.table.push(UploadHandle {
            session,
            repository: name,
        })?))
    }

    async fn open_upload(
        &mut self,
        repo: Resource<RepositoryHandle>,
        id: String,
    ) -> Answer<Resource<UploadHandle>> {
        let name = check!(self.granted(&repo, Access::PUSH)?);
        let store = self.capabilities.blobs.clone();
        let repository = name.clone();
        let session = check!(blocking(move || store.open_upload(&repository, &id)).await?);
        Ok(Ok(self.table.push(UploadHandle {
            session,
            repository: name,
        })?))
    }

    async fn delete_manifest(
        &mut self,
        repo: Resource<RepositoryHandle>,
        digest: String,
    ) -> Answer<bool> {
        let name = check!(self.granted(&repo, Access::DELETE)?);
        let digest = check!(digest_arg(&digest));
        let store = self.capabilities.metadata.clone();
        let (repository, deleted) = (name.clone(), digest.clone());
        let done = check!(blocking(move || store.delete_manifest(&name, &digest)).await?);
        if done {
            self.notify(events::Action::Delete, || events::Target {
                repository,
                digest: deleted.to_string(),
                ..Default::default()
            });
        }
        Ok(Ok(done))
    }

    async fn delete_tag(&mut self, repo: Resource<RepositoryHandle>, tag: String) -> Answer<bool> {
        let name = check!(self.granted(&repo, Access::DELETE)?);
        check!(tag_arg(&tag));
        let store = self.capabilities.metadata.clone();
        let (repository, deleted) = (name.clone(), tag.clone());
        let done = check!(blocking(move || store.delete_tag(&name, &tag)).await?);
        if done {
            self.notify(events::Action::Delete, || events::Target {
                repository,
                tag: Some(deleted),
                ..Default::default()
            });
        }
        Ok(Ok(done))
    }

    async fn unlink_blob(
        &mut self,
        repo: Resource<RepositoryHandle>,
        digest: String,
    ) -> Answer<bool> {
        let name = check!(self.granted(&repo, Access::DELETE)?);
        let digest = check!(digest_arg(&digest));
        let store = self.capabilities.metadata.clone();
        let (repository, deleted) = (name.clone(), digest.clone());
        let done = check!(blocking(move || store.unlink_blob(&name, &digest)).await?);
        if done {
            self.notify(events::Action::Delete, || {
                blob_target(repository, &deleted, None)
            });
        }
        Ok(Ok(done))
    }

    async fn drop(&mut self, repo: Resource<RepositoryHandle>) -> wasmtime::Result<()> {
        self.table.delete(repo)?;
        Ok(())
    }
}

impl HostUpload for RequestState {
    async fn id(&mut self, upload: Resource<UploadHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&upload)?.session.id().to_string())
    }

    async fn offset(&mut self, upload: Resource<UploadHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&upload)?.session.offset())
    }

    async fn writer(
        &mut self,
        upload: Resource<UploadHandle>,
    ) -> Answer<Resource<DynOutputStream>> {
        match self.table.get_mut(&upload)?.session.writer() {
            Ok(sink) => Ok(Ok(self
                .table
                .push(crate::capabilities::streams::output(sink))?)),
            Err(e) => Ok(Err(to_wit_error(e))),
        }
    }

    async fn finish(&mut self, upload: Resource<UploadHandle>, expected: String) -> Answer<u64> {
        let UploadHandle {
            session,
            repository,
        } = self.table.delete(upload)?;
        let expected = check!(digest_arg(&expected));
        let metadata = self.capabilities.metadata.clone();
        let (name, digest) = (repository.clone(), expected.clone());
        let size = check!(
            blocking(move || {
                let size = session.finish(&expected)?;
                metadata.link_blob(&repository, &expected)?;
                Ok(size)
            })
            .await?
        );
        self.notify(events::Action::Push, || {
            blob_target(name, &digest, Some(size))
        });
        Ok(Ok(size))
    }

    async fn cancel(&mut self, upload: Resource<UploadHandle>) -> Answer<()> {
        let session = self.table.delete(upload)?.session;
        blocking(move || session.cancel()).await
    }

    async fn drop(&mut self, upload: Resource<UploadHandle>) -> wasmtime::Result<()> {
        self.table.delete(upload)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The host's checks, called as a hostile component would call them:
    //! directly, without asking first, as a caller who may only pull
    //! `team/a`.

    use super::*;
    use crate::access::{AccessControl, Caller, Identity, Refused};
    use crate::sandbox::memory::{InstanceLimiter, MemoryBudget};
    use crate::storage::{FsStorage, MetadataStore};
    use futures::future::BoxFuture;
    use std::sync::Arc;
    use std::time::Duration;
    use wharf_spec::Algorithm as Hash;

    /// Pull on `team/a`, nothing else.
    struct PullTeamA;

    impl AccessControl for PullTeamA {
        fn authenticate<'a>(&'a self, _: &'a Caller) -> BoxFuture<'a, Result<Identity, Refused>> {
            Box::pin(std::future::ready(Ok(Identity::User("reader".into()))))
        }

        fn authorize(&self, _: &Identity, repository: Option<&str>, action: Action) -> Verdict {
            match (repository, action) {
                (Some("team/a"), Action::Pull) => Verdict::Allow(Some("reader".into())),
                _ => Verdict::Deny("reader may only pull team/a".into()),
            }
        }
    }

    fn manifest(content: &[u8]) -> storage::Manifest {
        storage::Manifest {
            digest: Hash::Sha256.digest(content),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: content.to_vec(),
            subject: None,
        }
    }

    /// Every file under `dir` with its bytes.
    fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut files = vec![];
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    #[tokio::test]
    async fn a_pull_only_caller_gets_nothing_else_whatever_it_calls() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsStorage::open(dir.path(), true).unwrap());
        // team/b: a manifest (its bytes double as a linked blob), a tag, a
        // referrer and an upload session.
        let secret = manifest(b"{\"secret\":true}");
        store.put_manifest("team/b", &secret).unwrap();
        store.set_tag("team/b", "v1", &secret.digest).unwrap();
        store.link_blob("team/b", &secret.digest).unwrap();
        let referrer = storage::Manifest {
            subject: Some(secret.digest.clone()),
            ..manifest(b"{\"refers\":true}")
        };
        store.put_manifest("team/b", &referrer).unwrap();
        let session = crate::storage::BlobStore::start_upload(&*store, "team/b", Hash::Sha256)
            .unwrap()
            .id()
            .to_string();
        let public = manifest(b"{\"public\":true}");
        store.put_manifest("team/a", &public).unwrap();
        let before = snapshot(dir.path());

        let caps = Capabilities {
            blobs: store.clone(),
            metadata: store.clone(),
            auth: Arc::new(PullTeamA),
            events: None,
        };
        let limiter = InstanceLimiter::new(MemoryBudget::new(1 << 30), 1 << 30, Duration::ZERO);
        let mut state = RequestState::new(caps, Identity::User("reader".into()), limiter, None);
        let s = &mut state;
        let all = Access::PULL | Access::PUSH | Access::DELETE;

        for access in [Access::PUSH, Access::DELETE, all] {
            let opened = HostRepository::open(s, "team/a".into(), access)
                .await
                .unwrap();
            assert!(matches!(opened, Err(Refusal::Deny(_))), "{access:?}");
        }
        for access in [Access::PULL, Access::PUSH] {
            let opened = HostRepository::open(s, "team/b".into(), access)
                .await
                .unwrap();
            assert!(matches!(opened, Err(Refusal::Deny(_))), "{access:?}");
        }
        let opened = HostRepository::open(s, "team/../team/b".into(), Access::PULL);
        assert!(matches!(opened.await.unwrap(), Err(Refusal::Invalid(_))));
        let opened = HostRepository::open(s, "team/a".into(), Access::PULL & Access::PUSH);
        assert!(matches!(opened.await.unwrap(), Err(Refusal::Invalid(_))));
        assert!(matches!(
            HostCatalog::open(s).await.unwrap(),
            Err(Refusal::Deny(_))
        ));

        let a = HostRepository::open(s, "team/a".into(), Access::PULL)
            .await
            .unwrap()
            .unwrap();
        let handle = || Resource::<RepositoryHandle>::new_borrow(a.rep());
        let d = secret.digest.to_string();
        let denied = |r: Result<(), wit::StoreError>| matches!(r, Err(wit::StoreError::Denied(_)));
        let pushed = Manifest {
            digest: public.digest.to_string(),
            media_type: public.media_type.clone(),
            content: public.content.clone(),
            subject: None,
        };
        let r = HostRepository::put_manifest(s, handle(), pushed, vec!["evil".into()]);
        assert!(denied(r.await.unwrap()));
        let r = HostRepository::start_upload(s, handle(), Algorithm::Sha256).await;
        assert!(denied(r.unwrap().map(drop)));
        let r = HostRepository::open_upload(s, handle(), session.clone()).await;
        assert!(denied(r.unwrap().map(drop)));
        let r = HostRepository::mount_blob(s, handle(), d.clone(), None).await;
        assert!(denied(r.unwrap().map(drop)));
        let r = HostRepository::delete_manifest(s, handle(), d.clone()).await;
        assert!(denied(r.unwrap().map(drop)));
        let r = HostRepository::delete_tag(s, handle(), "v1".into()).await;
        assert!(denied(r.unwrap().map(drop)));
        let r = HostRepository::unlink_blob(s, handle(), d.clone()).await;
        assert!(denied(r.unwrap().map(drop)));
        // Reading team/b's things through team/a's handle finds nothing.
        let r = HostRepository::stat_blob(s, handle(), d.clone()).await;
        assert_eq!(r.unwrap().unwrap(), None);
        let r = HostRepository::read_blob(s, handle(), d.clone(), None).await;
        assert!(r.unwrap().unwrap().is_none());
        let r = HostRepository::manifest(s, handle(), Reference::Digest(d.clone())).await;
        assert!(r.unwrap().unwrap().is_none());
        let r = HostRepository::manifest(s, handle(), Reference::Tag("v1".into())).await;
        assert!(r.unwrap().unwrap().is_none());
        let r = HostRepository::list_referrers(s, handle(), d.clone(), None, 10).await;
        assert!(r.unwrap().unwrap().entries.is_empty());
        // Garbage arguments are refused as they enter.
        let r = HostRepository::stat_blob(s, handle(), "sha256:../../x".into()).await;
        assert!(matches!(r.unwrap(), Err(wit::StoreError::Invalid(_))));
        // What it may do, it can.
        let r = HostRepository::manifest(s, handle(), Reference::Digest(public.digest.to_string()));
        assert!(r.await.unwrap().unwrap().is_some());

        assert_eq!(snapshot(dir.path()), before, "nothing on disk changed");
    }
}
