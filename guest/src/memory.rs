//! An in-memory registry: [`Store`] implements [`Blobs`] and [`Metadata`],
//! [`AllowAll`] and [`Rules`] implement [`Auth`]. The unit tests run the
//! whole protocol on it, and embedders can use it as a scratch registry.
//!
//! State sits behind an `Arc<Mutex<…>>`, so upload handles outlive the
//! borrow of the store as the traits require. An opened session is held
//! until its handle is dropped, finished or cancelled; opening it again
//! meanwhile is [`StoreError::Busy`].

use crate::capabilities::{
    Action, Auth, Blobs, BodyError, Metadata, Page, RequestBody, StoreError, StoredManifest,
    Upload as UploadTrait, Verdict,
};
use crate::digest::{Algorithm, Digest};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A request body held in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body(pub Vec<u8>);

impl RequestBody for Body {
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        if self.0.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        Ok(std::mem::take(&mut self.0))
    }
}

#[derive(Debug, Default)]
struct Repository {
    manifests: HashMap<Digest, StoredManifest>,
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
    repositories: BTreeMap<String, Repository>,
    sessions: HashMap<String, Session>,
    next_session: u64,
    deletes_disabled: bool,
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

    /// The bytes stored under `digest`, linked anywhere or not.
    pub fn blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.lock().blobs.get(digest).cloned()
    }

    /// How many upload sessions are open.
    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
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

impl State {
    fn check_deletes(&self) -> Result<(), StoreError> {
        if self.deletes_disabled {
            return Err(StoreError::Unsupported("deletion is disabled".into()));
        }
        Ok(())
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
        lock(&self.state).blobs.insert(actual, session.bytes);
        Ok(size)
    }

    fn cancel(self) -> Result<(), StoreError> {
        self.take().map(drop)
    }
}

impl Blobs for Store {
    type Body = Body;
    type Upload = Upload;
    type Reader = Vec<u8>;

    fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().blobs.get(digest).map(|b| b.len() as u64))
    }

    fn read(
        &self,
        digest: &Digest,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Vec<u8>, StoreError> {
        let state = self.lock();
        let blob = state.blobs.get(digest).ok_or(StoreError::NotFound)?;
        let start = usize::try_from(offset).map_err(|_| StoreError::Invalid("offset".into()))?;
        let end = match length {
            None => blob.len(),
            Some(len) => usize::try_from(len)
                .ok()
                .and_then(|len| start.checked_add(len))
                .unwrap_or(usize::MAX),
        };
        blob.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| StoreError::Invalid("range past the end".into()))
    }

    /// Bytes are hashed at `finish`, with the expected digest's algorithm,
    /// so the session's own algorithm does not matter here.
    fn start_upload(&self, repository: &str, _algorithm: Algorithm) -> Result<Upload, StoreError> {
        let mut state = self.lock();
        state.next_session += 1;
        let id = format!("upload-{}", state.next_session);
        let session = Session {
            repository: repository.to_string(),
            bytes: Vec::new(),
            held: true,
        };
        state.sessions.insert(id.clone(), session);
        Ok(Upload {
            state: Arc::clone(&self.state),
            id,
        })
    }

    fn open_upload(&self, repository: &str, id: &str) -> Result<Upload, StoreError> {
        let mut state = self.lock();
        let session = state
            .sessions
            .get_mut(id)
            .filter(|s| s.repository == repository)
            .ok_or(StoreError::NotFound)?;
        if session.held {
            return Err(StoreError::Busy);
        }
        session.held = true;
        Ok(Upload {
            state: Arc::clone(&self.state),
            id: id.to_string(),
        })
    }
}

impl Metadata for Store {
    fn get_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, StoreError> {
        Ok(self
            .lock()
            .repositories
            .get(repository)
            .and_then(|r| r.manifests.get(digest))
            .cloned())
    }

    fn put_manifest(&self, repository: &str, manifest: &StoredManifest) -> Result<(), StoreError> {
        let actual = manifest.digest.algorithm().digest(&manifest.content);
        if actual != manifest.digest {
            return Err(StoreError::DigestMismatch(actual.to_string()));
        }
        let mut state = self.lock();
        let repo = state
            .repositories
            .entry(repository.to_string())
            .or_default();
        repo.manifests
            .insert(manifest.digest.clone(), manifest.clone());
        Ok(())
    }

    fn delete_manifest(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError> {
        let mut state = self.lock();
        state.check_deletes()?;
        let Some(repo) = state.repositories.get_mut(repository) else {
            return Ok(false);
        };
        let removed = repo.manifests.remove(digest).is_some();
        if removed {
            repo.tags.retain(|_, d| d != digest);
        }
        Ok(removed)
    }

    fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Option<Digest>, StoreError> {
        Ok(self
            .lock()
            .repositories
            .get(repository)
            .and_then(|r| r.tags.get(tag))
            .cloned())
    }

    fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> Result<(), StoreError> {
        let mut state = self.lock();
        let repo = state
            .repositories
            .get_mut(repository)
            .ok_or(StoreError::NotFound)?;
        if !repo.manifests.contains_key(digest) {
            return Err(StoreError::NotFound);
        }
        repo.tags.insert(tag.to_string(), digest.clone());
        Ok(())
    }

    fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        state.check_deletes()?;
        Ok(state
            .repositories
            .get_mut(repository)
            .is_some_and(|r| r.tags.remove(tag).is_some()))
    }

    fn list_tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page>, StoreError> {
        let state = self.lock();
        Ok(state
            .repositories
            .get(repository)
            .map(|r| page(r.tags.keys(), after, limit)))
    }

    fn list_repositories(&self, after: Option<&str>, limit: u32) -> Result<Page, StoreError> {
        Ok(page(self.lock().repositories.keys(), after, limit))
    }

    fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let state = self.lock();
        let mut referrers: Vec<String> = state
            .repositories
            .get(repository)
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

    fn link_blob(&self, repository: &str, digest: &Digest) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state.blobs.contains_key(digest) {
            return Err(StoreError::NotFound);
        }
        state
            .repositories
            .entry(repository.to_string())
            .or_default()
            .blobs
            .insert(digest.to_string());
        Ok(())
    }

    fn blob_linked(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .repositories
            .get(repository)
            .is_some_and(|r| r.blobs.contains(&digest.to_string())))
    }

    fn unlink_blob(&self, repository: &str, digest: &Digest) -> Result<bool, StoreError> {
        let mut state = self.lock();
        state.check_deletes()?;
        Ok(state
            .repositories
            .get_mut(repository)
            .is_some_and(|r| r.blobs.remove(&digest.to_string())))
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

/// Allows everything, anonymously.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Auth for AllowAll {
    fn authorize(&self, _repository: Option<&str>, _action: Action) -> Verdict {
        Verdict::Allow(None)
    }
}

/// Allows what was granted; anything else is challenged (when a challenge
/// is set, as for an anonymous caller) or denied (as for a known caller).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    challenge: Option<String>,
    grants: Vec<(Option<String>, Action)>,
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

    /// Grant `action` on `repository`, or on everything (the registry
    /// itself included) when `repository` is `None`.
    pub fn allow(mut self, repository: Option<&str>, action: Action) -> Rules {
        self.grants.push((repository.map(str::to_string), action));
        self
    }
}

impl Auth for Rules {
    fn authorize(&self, repository: Option<&str>, action: Action) -> Verdict {
        let granted = self.grants.iter().any(|(repo, granted)| {
            *granted == action && (repo.is_none() || repo.as_deref() == repository)
        });
        match (&self.challenge, granted) {
            (_, true) => Verdict::Allow(None),
            (Some(challenge), false) => Verdict::Challenge(challenge.clone()),
            (None, false) => Verdict::Deny("not granted".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_verifies_with_the_expected_algorithm_and_always_ends_it() {
        let store = Store::new();
        let mut upload = store.start_upload("a", Algorithm::Sha512).unwrap();
        upload.append(&mut Body(b"abc".to_vec())).unwrap();
        let wrong = Algorithm::Sha512.digest(b"abd");
        let actual = Algorithm::Sha512.digest(b"abc");
        assert_eq!(
            upload.finish(&wrong),
            Err(StoreError::DigestMismatch(actual.to_string()))
        );
        assert_eq!(store.sessions(), 0);
        assert_eq!(store.stat(&wrong), Ok(None));
        // A sha512 session closed with a sha256 digest is hashed again.
        let upload = store.start_upload("a", Algorithm::Sha512).unwrap();
        let empty = Algorithm::Sha256.digest(b"");
        assert_eq!(upload.finish(&empty), Ok(0));
        assert_eq!(store.stat(&empty), Ok(Some(0)));
    }

    #[test]
    fn an_open_session_is_busy_until_its_handle_is_dropped() {
        let store = Store::new();
        let upload = store.start_upload("a", Algorithm::Sha256).unwrap();
        let id = upload.id();
        assert!(matches!(store.open_upload("a", &id), Err(StoreError::Busy)));
        drop(upload);
        let reopened = store.open_upload("a", &id).unwrap();
        assert_eq!(reopened.offset(), 0);
        assert!(matches!(
            store.open_upload("b", &id),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn reads_ranges_and_refuses_past_the_end() {
        let store = Store::new();
        let mut upload = store.start_upload("a", Algorithm::Sha256).unwrap();
        upload.append(&mut Body(b"0123".to_vec())).unwrap();
        let digest = Algorithm::Sha256.digest(b"0123");
        assert_eq!(upload.finish(&digest), Ok(4));
        assert_eq!(store.read(&digest, 1, Some(2)), Ok(b"12".to_vec()));
        assert_eq!(store.read(&digest, 2, None), Ok(b"23".to_vec()));
        assert!(matches!(
            store.read(&digest, 3, Some(2)),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.read(&digest, u64::MAX, Some(u64::MAX)),
            Err(StoreError::Invalid(_))
        ));
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
