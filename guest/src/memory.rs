//! An in-memory registry that plays the host's part: [`Host`] opens
//! [`Repository`] and [`Catalog`] handles on a [`Store`] for what its
//! [`Auth`] grants, and every handle refuses what it was not opened for,
//! as the host does. The unit tests run the whole protocol on it, and
//! embedders can use it as a scratch registry.
//!
//! State sits behind an `Arc<Mutex<…>>`, so handles outlive the borrow of
//! the store. An opened session is held until its handle is dropped,
//! finished or cancelled; opening it again meanwhile is
//! [`StoreError::Busy`].

use crate::capabilities::{
    self, Access, BlobRead, BodyError, Manifest, Page, Readable, Refusal, StoreError,
    StoredManifest, Upload as UploadTrait,
};
use crate::digest::{Algorithm, Digest};
use crate::names::{Reference, is_valid_name, is_valid_tag};
use crate::ranges::{self, Portion, RangeRequest};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A request body held in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body(pub Vec<u8>);

impl Readable for Body {
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        self.0.read_to_end(limit)
    }
}

impl Readable for Vec<u8> {
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        if self.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        Ok(std::mem::take(self))
    }
}

#[derive(Debug, Default)]
struct Repo {
    manifests: HashMap<Digest, Manifest>,
    tags: BTreeMap<String, Digest>,
    blobs: BTreeSet<String>,
}

#[derive(Debug)]
struct Session {
    repository: String,
    bytes: Vec<u8>,
    held: bool,
}

#[derive(Debug, Default)]
struct State {
    blobs: HashMap<Digest, Vec<u8>>,
    repositories: BTreeMap<String, Repo>,
    sessions: HashMap<String, Session>,
    next_session: u64,
    deletes_disabled: bool,
    /// Blob GETs are redirected to `<base>/<digest>`, as object storage
    /// hands out signed URLs.
    redirect_base: Option<String>,
}

impl State {
    fn check_deletes(&self) -> Result<(), StoreError> {
        if self.deletes_disabled {
            return Err(StoreError::Unsupported("deletion is disabled".into()));
        }
        Ok(())
    }

    fn linked(&self, repository: &str, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
            && self
                .repositories
                .get(repository)
                .is_some_and(|r| r.blobs.contains(&digest.to_string()))
    }

    fn link(&mut self, repository: &str, digest: &Digest) {
        self.repositories
            .entry(repository.to_string())
            .or_default()
            .blobs
            .insert(digest.to_string());
    }
}

/// Blobs, manifests, tags and upload sessions, all in memory.
#[derive(Debug, Clone, Default)]
pub struct Store {
    state: Arc<Mutex<State>>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// A store whose deletions (manifests, tags, blob links) are all
    /// [`StoreError::Unsupported`], as with deletion switched off.
    pub fn without_deletes() -> Store {
        let store = Store::default();
        store.lock().deletes_disabled = true;
        store
    }

    /// A store whose blob GETs are redirected to `<base>/<digest>`, as a
    /// host on object storage offers.
    pub fn with_redirects(base: &str) -> Store {
        let store = Store::default();
        store.lock().redirect_base = Some(base.to_string());
        store
    }

    /// The bytes stored under `digest`, linked anywhere or not.
    pub fn blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.lock().blobs.get(digest).cloned()
    }

    /// How many upload sessions are open.
    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// A handle of `name` that may do everything, as with no
    /// authentication: for setting a store up.
    pub fn open(&self, name: &str) -> Repository<AllowAll> {
        Repository {
            host: Host::new(self.clone(), AllowAll),
            name: name.to_string(),
            access: Access::ALL,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Who may do what: the host's authorization, in memory.
pub trait Auth: Clone {
    /// May the caller have `access` on `repository` (none: the registry
    /// itself)?
    fn authorize(&self, repository: Option<&str>, access: Access) -> Result<(), Refusal>;
}

/// Allows everything, anonymously.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Auth for AllowAll {
    fn authorize(&self, _repository: Option<&str>, _access: Access) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Allows what was granted; anything else is challenged (when a challenge
/// is set, as for an anonymous caller) or denied (as for a known caller).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    challenge: Option<String>,
    grants: Vec<(Option<String>, Access)>,
}

impl Rules {
    /// Deny whatever is not granted.
    pub fn deny() -> Rules {
        Rules::default()
    }

    /// Challenge with this `WWW-Authenticate` value whatever is not granted.
    pub fn challenge(www_authenticate: &str) -> Rules {
        Rules {
            challenge: Some(www_authenticate.to_string()),
            grants: Vec::new(),
        }
    }

    /// Grant `access` on `repository`, or on everything (the registry
    /// itself included) when `repository` is `None`.
    pub fn allow(mut self, repository: Option<&str>, access: Access) -> Rules {
        self.grants.push((repository.map(str::to_string), access));
        self
    }
}

impl Auth for Rules {
    fn authorize(&self, repository: Option<&str>, access: Access) -> Result<(), Refusal> {
        let granted = |wanted: Access| {
            self.grants.iter().any(|(repo, granted)| {
                granted.covers(wanted) && (repo.is_none() || repo.as_deref() == repository)
            })
        };
        let all = [Access::PULL, Access::PUSH, Access::DELETE]
            .into_iter()
            .filter(|right| access.covers(*right))
            .all(granted);
        match (&self.challenge, all) {
            (_, true) => Ok(()),
            (Some(challenge), false) => Err(Refusal::Challenge(challenge.clone())),
            (None, false) => Err(Refusal::Deny("not granted".into())),
        }
    }
}

/// A [`Store`] and who may use it: the [`capabilities::Registry`] the
/// core's tests run on.
#[derive(Debug, Clone, Default)]
pub struct Host<A = AllowAll> {
    pub store: Store,
    pub auth: A,
}

impl<A: Auth> Host<A> {
    pub fn new(store: Store, auth: A) -> Host<A> {
        Host { store, auth }
    }
}

impl<A: Auth> capabilities::Registry for Host<A> {
    type Body = Body;
    type Reader = Vec<u8>;
    type Upload = Upload;
    type Repository = Repository<A>;
    type Catalog = Catalog;

    fn open_catalog(&self) -> Result<Catalog, Refusal> {
        self.auth.authorize(None, Access::PULL)?;
        Ok(Catalog {
            store: self.store.clone(),
        })
    }

    fn open_repository(&self, name: &str, access: Access) -> Result<Repository<A>, Refusal> {
        if !is_valid_name(name) {
            return Err(Refusal::Invalid(format!(
                "invalid repository name {name:?}"
            )));
        }
        if access == Access::default() {
            return Err(Refusal::Invalid(
                "a repository is opened for some access: pull, push or delete".into(),
            ));
        }
        self.auth.authorize(Some(name), access)?;
        Ok(Repository {
            host: self.clone(),
            name: name.to_string(),
            access,
        })
    }
}

/// The registry-wide handle of a [`Host`].
#[derive(Debug)]
pub struct Catalog {
    store: Store,
}

impl capabilities::Catalog for Catalog {
    fn list(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        Ok(page(self.store.lock().repositories.keys(), after, limit))
    }
}

/// A repository of a [`Host`], opened for some access.
#[derive(Debug)]
pub struct Repository<A = AllowAll> {
    host: Host<A>,
    name: String,
    access: Access,
}

impl<A> Repository<A> {
    /// The store, if this handle was opened for `needed`.
    fn state(&self, needed: Access) -> Result<MutexGuard<'_, State>, StoreError> {
        if !self.access.covers(needed) {
            return Err(StoreError::Denied(format!(
                "the handle of {} was opened without {} access",
                self.name,
                self.access.lacking(needed)
            )));
        }
        Ok(self.host.store.lock())
    }
}

impl<A: Auth> capabilities::Repository for Repository<A> {
    type Reader = Vec<u8>;
    type Upload = Upload;

    fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<StoredManifest<Vec<u8>>>, StoreError> {
        let state = self.state(Access::PULL)?;
        let Some(repo) = state.repositories.get(&self.name) else {
            return Ok(None);
        };
        let digest = match reference {
            Reference::Digest(digest) => Some(digest),
            Reference::Tag(tag) if !is_valid_tag(tag) => {
                return Err(StoreError::Invalid(format!("invalid tag {tag:?}")));
            }
            Reference::Tag(tag) => repo.tags.get(tag),
        };
        Ok(digest
            .and_then(|d| repo.manifests.get(d))
            .map(|m| StoredManifest {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                size: m.content.len() as u64,
                content: m.content.clone(),
            }))
    }

    fn list_tags(&self, after: Option<&str>, limit: u32) -> Result<Option<Page>, StoreError> {
        let state = self.state(Access::PULL)?;
        Ok(state
            .repositories
            .get(&self.name)
            .map(|r| page(r.tags.keys(), after, limit)))
    }

    fn list_referrers(
        &self,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let state = self.state(Access::PULL)?;
        let mut referrers: Vec<String> = state
            .repositories
            .get(&self.name)
            .map(|r| {
                r.manifests
                    .values()
                    .filter(|m| m.subject.as_ref() == Some(subject))
                    .map(|m| m.digest.to_string())
                    .collect()
            })
            .unwrap_or_default();
        referrers.sort();
        Ok(page(referrers.iter(), after, limit))
    }

    fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let state = self.state(Access::PULL)?;
        if !state.linked(&self.name, digest) {
            return Ok(None);
        }
        Ok(state.blobs.get(digest).map(|b| b.len() as u64))
    }

    fn read_blob(
        &self,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<Option<BlobRead<Vec<u8>>>, StoreError> {
        let state = self.state(Access::PULL)?;
        if !state.linked(&self.name, digest) {
            return Ok(None);
        }
        let Some(blob) = state.blobs.get(digest) else {
            return Ok(None);
        };
        let size = blob.len() as u64;
        if let Some(base) = &state.redirect_base {
            return Ok(Some(BlobRead {
                size,
                offset: 0,
                length: size,
                partial: false,
                content: None,
                redirect: Some(format!("{base}/{digest}")),
            }));
        }
        // The portion lies within the blob, which is in memory.
        Ok(Some(match ranges::portion(range, size) {
            Some(Portion {
                offset,
                length,
                partial,
            }) => BlobRead {
                size,
                offset,
                length,
                partial,
                content: Some(blob[offset as usize..(offset + length) as usize].to_vec()),
                redirect: None,
            },
            None => BlobRead {
                size,
                offset: 0,
                length: size,
                partial: false,
                content: None,
                redirect: None,
            },
        }))
    }

    fn put_manifest(&self, manifest: &Manifest, tags: &[&str]) -> Result<(), StoreError> {
        let mut state = self.state(Access::PUSH)?;
        if let Some(bad) = tags.iter().find(|t| !is_valid_tag(t)) {
            return Err(StoreError::Invalid(format!("invalid tag {bad:?}")));
        }
        let actual = manifest.digest.algorithm().digest(&manifest.content);
        if actual != manifest.digest {
            return Err(StoreError::DigestMismatch(actual.to_string()));
        }
        let repo = state.repositories.entry(self.name.clone()).or_default();
        repo.manifests
            .insert(manifest.digest.clone(), manifest.clone());
        for tag in tags {
            repo.tags.insert(tag.to_string(), manifest.digest.clone());
        }
        Ok(())
    }

    fn mount_blob(&self, digest: &Digest, source: Option<&Self>) -> Result<bool, StoreError> {
        if let Some(source) = source
            && !source.access.covers(Access::PULL)
        {
            return Err(StoreError::Denied(format!(
                "the mount source {} was opened without pull access",
                source.name
            )));
        }
        let mut state = self.state(Access::PUSH)?;
        if state.linked(&self.name, digest) {
            return Ok(true);
        }
        let found = match source {
            Some(source) => state.linked(&source.name, digest),
            None => state.repositories.keys().any(|name| {
                state.linked(name, digest)
                    && self.host.auth.authorize(Some(name), Access::PULL).is_ok()
            }),
        };
        if found {
            state.link(&self.name, digest);
        }
        Ok(found)
    }

    /// Bytes are hashed at `finish`, with the expected digest's algorithm,
    /// so the session's own algorithm does not matter here.
    fn start_upload(&self, _algorithm: Algorithm) -> Result<Upload, StoreError> {
        let mut state = self.state(Access::PUSH)?;
        state.next_session += 1;
        let id = format!("upload-{}", state.next_session);
        let session = Session {
            repository: self.name.clone(),
            bytes: Vec::new(),
            held: true,
        };
        state.sessions.insert(id.clone(), session);
        Ok(Upload {
            state: Arc::clone(&self.host.store.state),
            id,
        })
    }

    fn open_upload(&self, id: &str) -> Result<Upload, StoreError> {
        let mut state = self.state(Access::PUSH)?;
        let session = state
            .sessions
            .get_mut(id)
            .filter(|s| s.repository == self.name)
            .ok_or(StoreError::NotFound)?;
        if session.held {
            return Err(StoreError::Busy);
        }
        session.held = true;
        Ok(Upload {
            state: Arc::clone(&self.host.store.state),
            id: id.to_string(),
        })
    }

    fn delete_manifest(&self, digest: &Digest) -> Result<bool, StoreError> {
        let mut state = self.state(Access::DELETE)?;
        state.check_deletes()?;
        let Some(repo) = state.repositories.get_mut(&self.name) else {
            return Ok(false);
        };
        let removed = repo.manifests.remove(digest).is_some();
        if removed {
            repo.tags.retain(|_, d| d != digest);
        }
        Ok(removed)
    }

    fn delete_tag(&self, tag: &str) -> Result<bool, StoreError> {
        let mut state = self.state(Access::DELETE)?;
        if !is_valid_tag(tag) {
            return Err(StoreError::Invalid(format!("invalid tag {tag:?}")));
        }
        state.check_deletes()?;
        Ok(state
            .repositories
            .get_mut(&self.name)
            .is_some_and(|r| r.tags.remove(tag).is_some()))
    }

    fn unlink_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let mut state = self.state(Access::DELETE)?;
        state.check_deletes()?;
        Ok(state
            .repositories
            .get_mut(&self.name)
            .is_some_and(|r| r.blobs.remove(&digest.to_string())))
    }
}

/// An open session of a [`Store`].
#[derive(Debug)]
pub struct Upload {
    state: Arc<Mutex<State>>,
    id: String,
}

impl Upload {
    fn with_session<T>(&self, f: impl FnOnce(&mut Session) -> T) -> Result<T, StoreError> {
        lock(&self.state)
            .sessions
            .get_mut(&self.id)
            .map(f)
            .ok_or(StoreError::NotFound)
    }

    fn take(&self) -> Result<Session, StoreError> {
        lock(&self.state)
            .sessions
            .remove(&self.id)
            .ok_or(StoreError::NotFound)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(session) = lock(&self.state).sessions.get_mut(&self.id) {
            session.held = false;
        }
    }
}

impl UploadTrait for Upload {
    type Body = Body;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn offset(&self) -> u64 {
        self.with_session(|s| s.bytes.len() as u64).unwrap_or(0)
    }

    fn append(&mut self, body: &mut Body) -> Result<u64, StoreError> {
        let bytes = std::mem::take(&mut body.0);
        self.with_session(|s| s.bytes.extend_from_slice(&bytes))?;
        Ok(bytes.len() as u64)
    }

    fn finish(self, expected: &Digest) -> Result<u64, StoreError> {
        let session = self.take()?;
        // A session started with another algorithm is hashed again with the
        // expected one, as the filesystem store does.
        let actual = expected.algorithm().digest(&session.bytes);
        if &actual != expected {
            return Err(StoreError::DigestMismatch(actual.to_string()));
        }
        let size = session.bytes.len() as u64;
        let mut state = lock(&self.state);
        state.blobs.insert(actual, session.bytes);
        state.link(&session.repository, expected);
        Ok(size)
    }

    fn cancel(self) -> Result<(), StoreError> {
        self.take().map(drop)
    }
}

fn page<'a>(keys: impl Iterator<Item = &'a String>, after: Option<&str>, limit: u32) -> Page {
    let mut rest = keys.filter(|k| after.is_none_or(|a| k.as_str() > a));
    let entries: Vec<String> = rest.by_ref().take(limit as usize).cloned().collect();
    Page {
        entries,
        more: rest.next().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Registry as _, Repository as _};

    fn open(host: &Host<Rules>, name: &str, access: Access) -> Repository<Rules> {
        host.open_repository(name, access).expect("granted")
    }

    #[test]
    fn finish_verifies_with_the_expected_algorithm_and_always_ends_it() {
        let host = Host::new(Store::new(), AllowAll);
        let a = host.open_repository("a", Access::ALL).unwrap();
        let mut upload = a.start_upload(Algorithm::Sha512).unwrap();
        upload.append(&mut Body(b"abc".to_vec())).unwrap();
        let wrong = Algorithm::Sha512.digest(b"abd");
        let actual = Algorithm::Sha512.digest(b"abc");
        assert_eq!(
            upload.finish(&wrong),
            Err(StoreError::DigestMismatch(actual.to_string()))
        );
        assert_eq!(host.store.sessions(), 0);
        assert_eq!(a.stat_blob(&wrong), Ok(None));
        // A sha512 session closed with a sha256 digest is hashed again, and
        // the blob is linked into the session's repository.
        let upload = a.start_upload(Algorithm::Sha512).unwrap();
        let empty = Algorithm::Sha256.digest(b"");
        assert_eq!(upload.finish(&empty), Ok(0));
        assert_eq!(a.stat_blob(&empty), Ok(Some(0)));
    }

    #[test]
    fn an_open_session_is_busy_until_its_handle_is_dropped() {
        let host = Host::new(Store::new(), AllowAll);
        let a = host.open_repository("a", Access::PUSH).unwrap();
        let upload = a.start_upload(Algorithm::Sha256).unwrap();
        let id = upload.id();
        assert!(matches!(a.open_upload(&id), Err(StoreError::Busy)));
        drop(upload);
        let reopened = a.open_upload(&id).unwrap();
        assert_eq!(reopened.offset(), 0);
        let b = host.open_repository("b", Access::PUSH).unwrap();
        assert!(matches!(b.open_upload(&id), Err(StoreError::NotFound)));
    }

    #[test]
    fn reads_resolve_ranges_against_the_blob() {
        let host = Host::new(Store::new(), AllowAll);
        let a = host.open_repository("a", Access::ALL).unwrap();
        let mut upload = a.start_upload(Algorithm::Sha256).unwrap();
        upload.append(&mut Body(b"0123".to_vec())).unwrap();
        let digest = Algorithm::Sha256.digest(b"0123");
        assert_eq!(upload.finish(&digest), Ok(4));
        let read = |range| a.read_blob(&digest, range).unwrap().unwrap();
        let part = read(Some(RangeRequest::Span(1, 2)));
        assert_eq!((part.offset, part.length, part.partial), (1, 2, true));
        assert_eq!(part.content.as_deref(), Some(&b"12"[..]));
        let whole = read(None);
        assert_eq!((whole.size, whole.partial), (4, false));
        assert_eq!(whole.content.as_deref(), Some(&b"0123"[..]));
        let past = read(Some(RangeRequest::Starting(4)));
        assert!(past.content.is_none());
        assert_eq!(past.size, 4);
    }

    #[test]
    fn handles_refuse_what_they_were_not_opened_for() {
        let rules = Rules::deny()
            .allow(Some("team/a"), Access::PULL)
            .allow(Some("team/b"), Access::ALL);
        let host = Host::new(Store::new(), rules);
        let b = open(&host, "team/b", Access::ALL);
        let mut upload = b.start_upload(Algorithm::Sha256).unwrap();
        upload.append(&mut Body(b"x".to_vec())).unwrap();
        let digest = Algorithm::Sha256.digest(b"x");
        upload.finish(&digest).unwrap();
        let upload_of_b = b.start_upload(Algorithm::Sha256).unwrap().id();

        assert!(matches!(
            host.open_repository("team/a", Access::PUSH),
            Err(Refusal::Deny(_))
        ));
        assert!(matches!(
            host.open_repository("../b", Access::PULL),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(host.open_catalog(), Err(Refusal::Deny(_))));
        assert!(matches!(
            host.open_repository("team/a", Access::default()),
            Err(Refusal::Invalid(_))
        ));
        let a = open(&host, "team/a", Access::PULL);
        assert!(matches!(
            a.start_upload(Algorithm::Sha256),
            Err(StoreError::Denied(_))
        ));
        assert!(matches!(
            a.open_upload(&upload_of_b),
            Err(StoreError::Denied(_))
        ));
        assert!(matches!(a.unlink_blob(&digest), Err(StoreError::Denied(_))));
        assert_eq!(a.stat_blob(&digest), Ok(None));
        // A pull-only handle of b cannot push into b, nor mount from a
        // handle opened without pull.
        let b_pull = open(&host, "team/b", Access::PULL);
        assert!(matches!(
            b_pull.mount_blob(&digest, None),
            Err(StoreError::Denied(_))
        ));
        let b_push = open(&host, "team/b", Access::PUSH);
        let c_host = Host::new(
            host.store.clone(),
            Rules::deny().allow(Some("team/c"), Access::PUSH),
        );
        let c = c_host.open_repository("team/c", Access::PUSH).unwrap();
        assert!(matches!(c.mount_blob(&digest, None), Ok(false)));
        assert_eq!(b_push.mount_blob(&digest, None), Ok(true));
    }

    #[test]
    fn pages_report_whether_more_follow() {
        let keys: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(
            page(keys.iter(), None, 2),
            Page {
                entries: vec!["a".into(), "b".into()],
                more: true
            }
        );
        assert_eq!(
            page(keys.iter(), Some("b"), 2),
            Page {
                entries: vec!["c".into()],
                more: false
            }
        );
        assert_eq!(
            page(keys.iter(), None, 0),
            Page {
                entries: vec![],
                more: true
            }
        );
    }

    #[test]
    fn body_refuses_more_than_the_limit() {
        assert_eq!(Body(vec![0; 5]).read_to_end(4), Err(BodyError::TooLarge(4)));
        assert_eq!(Body(vec![0; 4]).read_to_end(4), Ok(vec![0; 4]));
    }
}
