//! Upload sessions on disk, without locks or memory between requests.
//!
//! A session is the directory `_uploads/<id>/` of its repository, holding
//! `wharf-algorithm` and `startedat` as the native host writes them, and
//! its bytes as committed parts (`wharf_layout_fs::parts`). A request appends by
//! writing a staging file of its own in the session
//! (`wharf-writing-<random>`) and then [`Session::commit`]ting it at the
//! offset it started from: fsync, then a hard link to the part's name,
//! which fails if another request got there first (its bytes win, ours
//! are dropped, and our client learns the real offset).
//!
//! [`Session::finish`] hashes the parts in order, in wasm, before anything
//! is visible; only when they hash to the digest expected do they become
//! the blob: one part is renamed into place, several are concatenated
//! into a staging file while hashing, fsynced and renamed.

use crate::error::{At, Result, StoreError};
use crate::files::{self, read_optional, remove_file_if_present, sync_dir, write_atomic};
use crate::metadata::Store;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use wharf_layout_fs::parts::{self, Part, WRITING_PREFIX};
use wharf_spec::{Algorithm, Digest, Hasher};

const STARTED_AT: &str = "startedat";
const ALGORITHM: &str = "wharf-algorithm";

/// How much of a part is read at a time when hashing it.
const CHUNK: usize = 256 * 1024;

/// An upload session of a repository.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub repository: String,
    pub dir: PathBuf,
}

/// What committing a staging file did.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// Its bytes are the session's from the offset it started at.
    Appended(u64),
    /// It held nothing.
    Empty,
    /// Another request appended at that offset first; its bytes stand.
    Lost,
}

impl Store {
    /// A new session of `repository`, hashing with `algorithm`.
    pub fn start_upload(&self, repository: &str, algorithm: Algorithm) -> Result<Session> {
        let id = crate::ids::new_uuid();
        let dir = self.layout.upload_dir(repository, &id);
        files::create_dirs_durably(&dir)?;
        let algorithm_file = dir.join(ALGORITHM);
        fs::write(&algorithm_file, algorithm.name()).at(&algorithm_file)?;
        let started = dir.join(STARTED_AT);
        fs::write(&started, unix_seconds_now()).at(&started)?;
        sync_dir(&dir)?;
        Ok(Session {
            id,
            repository: repository.to_string(),
            dir,
        })
    }

    /// The session `id` of `repository`; `NotFound` if it is not one of
    /// its sessions (or not an id at all).
    pub fn open_upload(&self, repository: &str, id: &str) -> Result<Session> {
        if !crate::ids::is_session_id(id) {
            return Err(StoreError::NotFound);
        }
        let dir = self.layout.upload_dir(repository, id);
        if read_optional(&dir.join(ALGORITHM))?.is_none() {
            return Err(StoreError::NotFound);
        }
        Ok(Session {
            id: id.to_string(),
            repository: repository.to_string(),
            dir,
        })
    }
}

fn unix_seconds_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs().to_string()
}

impl Session {
    /// The session's bytes as its chain of parts.
    pub fn parts(&self) -> Result<Vec<Part>> {
        parts::session_parts(&self.dir).at(&self.dir)
    }

    /// How many bytes the session holds.
    pub fn offset(&self) -> Result<u64> {
        Ok(parts::end(&self.parts()?))
    }

    /// A fresh name for a staging file of this session.
    pub fn staging_path(&self) -> PathBuf {
        let random = crate::ids::hex(&crate::random::bytes16());
        self.dir.join(format!("{WRITING_PREFIX}{random}"))
    }

    /// Commit the staging file `staged`, written from `offset` on: make its
    /// bytes durable, link them in as the part at `offset` unless another
    /// request did so first, and remove the staging name.
    pub fn commit(&self, staged: &Path, offset: u64) -> Result<Committed> {
        let committed = (|| {
            let file = match File::open(staged) {
                Ok(f) => f,
                // The session ended meanwhile (finished or cancelled).
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound),
                Err(e) => return Err(crate::error::io_at(staged, &e)),
            };
            let size = file.metadata().at(staged)?.len();
            if size == 0 {
                return Ok(Committed::Empty);
            }
            file.sync_all().at(staged)?;
            drop(file);
            let part = self.dir.join(parts::part_name(offset));
            match fs::hard_link(staged, &part) {
                Ok(()) => {
                    sync_dir(&self.dir)?;
                    Ok(Committed::Appended(size))
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Committed::Lost),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound),
                Err(e) => Err(crate::error::io_at(&part, &e)),
            }
        })();
        remove_file_if_present(staged)?;
        committed
    }

    /// Store the session's bytes as the blob `expected` if they hash to it
    /// (under `expected`'s algorithm, whatever the session was started
    /// with), link it into the session's repository and end the session;
    /// returns the blob's size. On a mismatch nothing is stored and the
    /// session ends too.
    pub fn finish(&self, store: &Store, expected: &Digest) -> Result<u64> {
        if !self.dir.is_dir() {
            return Err(StoreError::NotFound);
        }
        let parts = self.parts()?;
        let target = store.layout.blob_data(expected);
        let stored = target.exists();
        // Several parts become one file as they are hashed, unless the
        // store holds these bytes already.
        let staged = (!stored && parts.len() > 1).then(|| store.tmp().join(crate::ids::new_uuid()));
        let hashed = self.hash_parts(&parts, expected.algorithm(), staged.as_deref());
        let (actual, size) = match hashed {
            Ok(hashed) => hashed,
            Err(e) => {
                if let Some(staged) = &staged {
                    let _ = fs::remove_file(staged);
                }
                return Err(e);
            }
        };
        if &actual != expected {
            if let Some(staged) = &staged {
                remove_file_if_present(staged)?;
            }
            self.end(store)?;
            return Err(StoreError::DigestMismatch(actual));
        }
        self.store_blob(store, &parts, staged.as_deref(), &target)?;
        store.link_blob(&self.repository, expected)?;
        self.end(store)?;
        Ok(size)
    }

    /// Hash `parts` in order under `algorithm`, copying them to `staged`
    /// (synced) if given; the digest and the byte count.
    fn hash_parts(
        &self,
        parts: &[Part],
        algorithm: Algorithm,
        staged: Option<&Path>,
    ) -> Result<(Digest, u64)> {
        let mut out = match staged {
            Some(path) => {
                let tmp = files::parent(path)?;
                fs::create_dir_all(tmp).at(tmp)?;
                Some(File::create(path).at(path)?)
            }
            None => None,
        };
        let mut hasher = Hasher::new(algorithm);
        let mut total = 0u64;
        let mut buf = vec![0u8; CHUNK];
        for part in parts {
            let path = self.dir.join(&part.name);
            let mut file = File::open(&path).at(&path)?;
            // Only the part's own bytes: the chain was computed from them.
            let mut left = part.size;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = file.read(&mut buf[..want]).at(&path)?;
                if n == 0 {
                    return Err(StoreError::Io(format!(
                        "{}: shorter than its {} bytes",
                        path.display(),
                        part.size
                    )));
                }
                hasher.update(&buf[..n]);
                if let (Some(out), Some(staged)) = (out.as_mut(), staged) {
                    out.write_all(&buf[..n]).at(staged)?;
                }
                left -= n as u64;
                total += n as u64;
            }
        }
        if let (Some(out), Some(staged)) = (out, staged) {
            out.sync_all().at(staged)?;
        }
        Ok((hasher.finish(), total))
    }

    /// Move verified bytes to `target`: the staging file made of several
    /// parts, the one part, or an empty file for an empty upload. Bytes the
    /// store already holds stay as they are.
    fn store_blob(
        &self,
        store: &Store,
        parts: &[Part],
        staged: Option<&Path>,
        target: &Path,
    ) -> Result<()> {
        if target.exists() {
            if let Some(staged) = staged {
                remove_file_if_present(staged)?;
            }
            return Ok(());
        }
        let blob_dir = files::parent(target)?;
        let source = match (staged, parts.first()) {
            (Some(staged), _) => staged.to_path_buf(),
            // The part was synced when it was committed.
            (None, Some(part)) => self.dir.join(&part.name),
            (None, None) => return write_atomic(&store.tmp(), target, b""),
        };
        files::create_dirs_durably(blob_dir)?;
        match fs::rename(&source, target) {
            Ok(()) => {}
            // A finish of the same session, in another request, moved it:
            // fine if the blob is there now.
            Err(e) if e.kind() == io::ErrorKind::NotFound && target.exists() => return Ok(()),
            Err(e) => return Err(crate::error::io_at(target, &e)),
        }
        sync_dir(blob_dir)
    }

    /// Abandon the session and free its bytes.
    pub fn cancel(&self, store: &Store) -> Result<()> {
        self.end(store)
    }

    /// Remove the session: its directory leaves `_uploads/` at once by a
    /// rename into `wharf-tmp/` (so no other request reopens it), and is
    /// deleted there. A crash before the delete leaves it in `wharf-tmp/`,
    /// which `wharf serve` empties when it starts.
    fn end(&self, store: &Store) -> Result<()> {
        let tmp = store.tmp();
        fs::create_dir_all(&tmp).at(&tmp)?;
        let doomed = tmp.join(format!("ended-upload-{}", crate::ids::new_uuid()));
        match fs::rename(&self.dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(crate::error::io_at(&self.dir, &e)),
        }
        sync_dir(files::parent(&self.dir)?)?;
        // Left for a later cleanup if it fails: it is no session any more.
        let _ = fs::remove_dir_all(&doomed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::testdir::TestDir;

    fn store(dir: &TestDir) -> Store {
        Store::new(&Settings {
            root: dir.path().to_path_buf(),
            delete_enabled: false,
        })
    }

    /// Append `bytes` as a request would: a staging file, committed at
    /// the offset it started from.
    fn append(session: &Session, bytes: &[u8]) -> Committed {
        let offset = session.offset().unwrap();
        let staged = session.staging_path();
        fs::write(&staged, bytes).unwrap();
        session.commit(&staged, offset).unwrap()
    }

    #[test]
    fn a_session_is_written_as_the_host_writes_it_and_reopened() {
        let dir = TestDir::new();
        let s = store(&dir);
        let session = s.start_upload("team/app", Algorithm::Sha512).unwrap();
        assert!(crate::ids::is_session_id(&session.id));
        let read = |name: &str| fs::read_to_string(session.dir.join(name)).unwrap();
        assert_eq!(read("wharf-algorithm"), "sha512");
        assert!(read("startedat").parse::<u64>().unwrap() > 1_600_000_000);
        assert_eq!(
            session.dir,
            dir.path()
                .join("docker/registry/v2/repositories/team/app/_uploads")
                .join(&session.id)
        );
        let again = s.open_upload("team/app", &session.id).unwrap();
        assert_eq!(again.offset().unwrap(), 0);
        assert!(matches!(
            s.open_upload("team/other", &session.id),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.open_upload("team/app", "../../../x"),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn appends_commit_parts_and_a_race_at_one_offset_has_one_winner() {
        let dir = TestDir::new();
        let s = store(&dir);
        let session = s.start_upload("r", Algorithm::Sha256).unwrap();
        assert_eq!(append(&session, b"hello "), Committed::Appended(6));
        assert_eq!(append(&session, b""), Committed::Empty);
        // Two requests that both saw offset 6.
        let (first, second) = (session.staging_path(), session.staging_path());
        fs::write(&first, b"world").unwrap();
        fs::write(&second, b"WORLD!").unwrap();
        assert_eq!(session.commit(&first, 6).unwrap(), Committed::Appended(5));
        assert_eq!(session.commit(&second, 6).unwrap(), Committed::Lost);
        assert_eq!(session.offset().unwrap(), 11);
        let names = files::sorted_entries(&session.dir).unwrap();
        assert!(
            names.iter().all(|n| !n.starts_with(WRITING_PREFIX)),
            "{names:?}"
        );
        let digest = Algorithm::Sha256.digest(b"hello world");
        assert_eq!(session.finish(&s, &digest).unwrap(), 11);
        assert_eq!(
            fs::read(s.layout.blob_data(&digest)).unwrap(),
            b"hello world"
        );
        assert!(s.blob_linked("r", &digest).unwrap());
        assert!(
            files::sorted_entries(&s.layout.uploads("r"))
                .unwrap()
                .is_empty()
        );
        assert!(files::sorted_entries(&s.tmp()).unwrap().is_empty());
    }

    #[test]
    fn one_part_is_renamed_into_place_and_empty_uploads_work() {
        let dir = TestDir::new();
        let s = store(&dir);
        let session = s.start_upload("r", Algorithm::Sha256).unwrap();
        append(&session, b"one");
        let digest = Algorithm::Sha256.digest(b"one");
        assert_eq!(session.finish(&s, &digest).unwrap(), 3);
        assert_eq!(fs::read(s.layout.blob_data(&digest)).unwrap(), b"one");

        let session = s.start_upload("r", Algorithm::Sha256).unwrap();
        let empty = Algorithm::Sha256.digest(b"");
        assert_eq!(
            empty.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(session.finish(&s, &empty).unwrap(), 0);
        assert_eq!(s.stat_blob(&empty).unwrap(), Some(0));
        assert!(s.blob_linked("r", &empty).unwrap());
    }

    #[test]
    fn a_digest_of_another_algorithm_is_checked_under_its_own() {
        let dir = TestDir::new();
        let s = store(&dir);
        let session = s.start_upload("r", Algorithm::Sha256).unwrap();
        append(&session, b"ab");
        append(&session, b"c");
        let digest = Algorithm::Sha512.digest(b"abc");
        assert_eq!(session.finish(&s, &digest).unwrap(), 3);
        assert_eq!(fs::read(s.layout.blob_data(&digest)).unwrap(), b"abc");
    }

    #[test]
    fn a_mismatch_stores_nothing_and_ends_the_session() {
        let dir = TestDir::new();
        let s = store(&dir);
        let session = s.start_upload("r", Algorithm::Sha256).unwrap();
        let id = session.id.clone();
        append(&session, b"ab");
        append(&session, b"c");
        let wrong = Algorithm::Sha256.digest(b"abd");
        match session.finish(&s, &wrong) {
            Err(StoreError::DigestMismatch(actual)) => {
                assert_eq!(actual, Algorithm::Sha256.digest(b"abc"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.stat_blob(&wrong).unwrap(), None);
        assert!(matches!(s.open_upload("r", &id), Err(StoreError::NotFound)));
        assert!(files::sorted_entries(&s.tmp()).unwrap().is_empty());
    }

    #[test]
    fn content_already_stored_is_linked_without_a_second_copy() {
        let dir = TestDir::new();
        let s = store(&dir);
        let digest = Algorithm::Sha256.digest(b"xy");
        for repo in ["a", "b"] {
            let session = s.start_upload(repo, Algorithm::Sha256).unwrap();
            append(&session, b"x");
            append(&session, b"y");
            assert_eq!(session.finish(&s, &digest).unwrap(), 2);
            assert!(s.blob_linked(repo, &digest).unwrap());
        }
        assert!(files::sorted_entries(&s.tmp()).unwrap().is_empty());
    }

    #[test]
    fn a_native_hosts_session_resumes_here() {
        let dir = TestDir::new();
        let s = store(&dir);
        let session = s.start_upload("r", Algorithm::Sha256).unwrap();
        fs::write(session.dir.join("data"), b"from the host, ").unwrap();
        assert_eq!(session.offset().unwrap(), 15);
        append(&session, b"then here");
        let digest = Algorithm::Sha256.digest(b"from the host, then here");
        assert_eq!(session.finish(&s, &digest).unwrap(), 24);
    }

    #[test]
    fn cancel_removes_the_session_and_a_late_commit_finds_it_gone() {
        let dir = TestDir::new();
        let s = store(&dir);
        let session = s.start_upload("r", Algorithm::Sha256).unwrap();
        let staged = session.staging_path();
        fs::write(&staged, b"late").unwrap();
        let late = Session {
            id: session.id.clone(),
            repository: "r".into(),
            dir: session.dir.clone(),
        };
        session.cancel(&s).unwrap();
        assert!(matches!(late.commit(&staged, 0), Err(StoreError::NotFound)));
        assert!(matches!(
            late.finish(&s, &Algorithm::Sha256.digest(b"late")),
            Err(StoreError::NotFound)
        ));
    }
}
