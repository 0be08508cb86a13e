//! What makes a page of a listing cost what the page costs, not what the
//! registry holds, on the filesystem backend.
//!
//! - [`RepositoryIndex`]: every repository's name, sorted. Filled by the
//!   walk the backend makes at start anyway (to recover upload sessions),
//!   beside serving, and kept by the writes that make a repository (a
//!   manifest, a linked blob), during the walk too. Nothing of it is
//!   stored, so it cannot be left stale by a crash: the next start walks
//!   again.
//! - [`Listings`]: sorted listings of directories (a repository's tags, a
//!   subject's referrers), read once and kept while the directories'
//!   inode numbers and modification times stay the same, so a change made
//!   by this process or another writing the same root is seen. A listing
//!   whose directories changed within [`SETTLED`] is read again on every
//!   request rather than trusted, and this process's own writes drop the
//!   listing they change. At most [`MAX_NAMES`] names are kept in all; the
//!   least recently used listings go first.
//!
//! Neither ever lists what is not there: each name a page offers is
//! checked against the layout first (a repository's directory, a tag's
//! manifest), and a name that fails the check is passed over.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Names the kept listings hold in all (about 100 bytes each at most).
pub const MAX_NAMES: usize = 1 << 20;

/// A directory modified this recently is read again rather than trusted:
/// a filesystem's clock may be coarse, and a change in the same tick as the
/// one seen would leave the modification time as it was.
const SETTLED: Duration = Duration::from_secs(1);

/// The up to `n` names sorting after `after` in `names`.
pub fn names_after(names: &BTreeSet<String>, after: Option<&str>, n: usize) -> Vec<String> {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    names
        .range::<str, _>((start, Bound::Unbounded))
        .take(n)
        .cloned()
        .collect()
}

/// Every repository of a filesystem root, by name.
#[derive(Default)]
pub struct RepositoryIndex(RwLock<BTreeSet<String>>);

impl RepositoryIndex {
    /// Add every name of `names` (those a walk found).
    pub fn extend(&self, names: impl IntoIterator<Item = String>) {
        crate::sync::write(&self.0).extend(names);
    }

    /// `repository` holds something now.
    pub fn add(&self, repository: &str) {
        let known = crate::sync::read(&self.0).contains(repository);
        if !known {
            crate::sync::write(&self.0).insert(repository.to_string());
        }
    }

    /// The up to `n` repositories sorting after `after`.
    pub fn after(&self, after: Option<&str>, n: usize) -> Vec<String> {
        names_after(&crate::sync::read(&self.0), after, n)
    }
}

/// How a listing is laid out on disk, which decides what shows a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One name per entry of the directory (tags).
    Flat,
    /// One name per entry of each of its subdirectories (referrers, as
    /// `<algorithm>/<hex>`): the directory and each subdirectory count.
    Nested,
}

/// What the directories of a listing looked like: inode and modification
/// time of each, in order. Equal stamps mean no entry came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<(u64, i64, i64)>);

impl Stamp {
    /// `None` when the directory does not exist.
    pub fn of(dir: &Path, shape: Shape) -> io::Result<Option<Stamp>> {
        let mark = |m: &fs::Metadata| (m.ino(), m.mtime(), m.mtime_nsec());
        let meta = match fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut marks = vec![mark(&meta)];
        if shape == Shape::Nested {
            let mut subdirs = Vec::new();
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    subdirs.push((entry.file_name(), mark(&entry.metadata()?)));
                }
            }
            subdirs.sort();
            marks.extend(subdirs.into_iter().map(|(_, m)| m));
        }
        Ok(Some(Stamp(marks)))
    }

    /// Whether the last change was long enough ago to trust the stamp.
    fn settled(&self) -> bool {
        let Some(latest) = self.0.iter().map(|&(_, s, ns)| (s, ns)).max() else {
            return true;
        };
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(
                latest.0.max(0) as u64,
                latest.1.clamp(0, 999_999_999) as u32,
            );
        changed + SETTLED < SystemTime::now()
    }
}

struct Listing {
    stamp: Stamp,
    names: Arc<BTreeSet<String>>,
    used: u64,
}

#[derive(Default)]
struct Kept {
    dirs: HashMap<PathBuf, Listing>,
    names: usize,
    clock: u64,
}

impl Kept {
    fn insert(&mut self, dir: PathBuf, listing: Listing) {
        if let Some(old) = self.dirs.remove(&dir) {
            self.names -= old.names.len();
        }
        while self.names + listing.names.len() > MAX_NAMES {
            let Some(oldest) = self
                .dirs
                .iter()
                .min_by_key(|(_, l)| l.used)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            let evicted = self.dirs.remove(&oldest).expect("just found");
            self.names -= evicted.names.len();
        }
        self.names += listing.names.len();
        self.dirs.insert(dir, listing);
    }
}

/// Sorted listings of directories, kept between requests.
#[derive(Default)]
pub struct Listings(Mutex<Kept>);

impl Listings {
    /// The listing of `dir`: the one kept if the directories are as they
    /// were when it was read, else read with `read` (and kept, if they have
    /// settled). Empty if `dir` does not exist.
    pub fn get(
        &self,
        dir: &Path,
        shape: Shape,
        read: impl FnOnce() -> io::Result<Vec<String>>,
    ) -> io::Result<Arc<BTreeSet<String>>> {
        let Some(stamp) = Stamp::of(dir, shape)? else {
            return Ok(Arc::default());
        };
        {
            let mut kept = self.lock();
            kept.clock += 1;
            let now = kept.clock;
            // Only settled stamps are kept, and a settled time stays so: an
            // equal stamp is one to trust.
            if let Some(listing) = kept.dirs.get_mut(dir)
                && listing.stamp == stamp
            {
                listing.used = now;
                return Ok(listing.names.clone());
            }
        }
        // Read after the stamp: a change in between makes the next stamp
        // differ, and the listing is read again then.
        let names: Arc<BTreeSet<String>> = Arc::new(read()?.into_iter().collect());
        if stamp.settled() && names.len() <= MAX_NAMES {
            let mut kept = self.lock();
            let used = kept.clock;
            kept.insert(
                dir.to_path_buf(),
                Listing {
                    stamp,
                    names: names.clone(),
                    used,
                },
            );
        }
        Ok(names)
    }

    /// This process changed `dir`: drop its listing. (Its stamp would
    /// show the change too; dropping also frees the names at once.)
    pub fn forget(&self, dir: &Path) {
        let mut kept = self.lock();
        if let Some(dropped) = kept.dirs.remove(dir) {
            kept.names -= dropped.names.len();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        crate::sync::lock(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Make `dir`'s modification time old enough to be trusted.
    fn settle(dir: &Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::open(dir).unwrap().set_modified(old).unwrap();
    }

    #[test]
    fn the_index_pages_after_a_name_and_learns_new_repositories() {
        let index = RepositoryIndex::default();
        index.extend(["b".to_string(), "a/x".into(), "a-b".into()]);
        assert_eq!(index.after(None, 2), ["a-b", "a/x"]);
        index.add("a/y");
        index.add("a/y");
        assert_eq!(index.after(Some("a/x"), 10), ["a/y", "b"]);
        assert!(index.after(Some("b"), 10).is_empty());
    }

    #[test]
    fn a_listing_is_read_once_while_its_directory_stays_the_same() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tags");
        let listings = Listings::default();
        let reads = std::cell::Cell::new(0);
        let read = |dir: &Path| {
            reads.set(reads.get() + 1);
            wharf_layout_fs::walk::sorted_entries(dir)
        };
        assert!(
            listings
                .get(&dir, Shape::Flat, || read(&dir))
                .unwrap()
                .is_empty()
        );
        fs::create_dir_all(dir.join("v1")).unwrap();
        fs::create_dir_all(dir.join("v2")).unwrap();
        // Just changed: read, not kept.
        assert_eq!(
            *listings.get(&dir, Shape::Flat, || read(&dir)).unwrap(),
            set(&["v1", "v2"])
        );
        settle(&dir);
        for _ in 0..3 {
            assert_eq!(
                *listings.get(&dir, Shape::Flat, || read(&dir)).unwrap(),
                set(&["v1", "v2"])
            );
        }
        assert_eq!(reads.get(), 2, "read once more when it settled, then kept");
        // Another process adds one: the stamp differs, the listing is read.
        fs::create_dir(dir.join("v3")).unwrap();
        settle(&dir);
        assert_eq!(
            listings
                .get(&dir, Shape::Flat, || read(&dir))
                .unwrap()
                .len(),
            3
        );
        assert_eq!(reads.get(), 3);
    }

    #[test]
    fn nested_listings_see_changes_in_their_subdirectories_and_forget_drops_them() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("referrers");
        fs::create_dir_all(dir.join("sha256/aa")).unwrap();
        settle(&dir.join("sha256"));
        settle(&dir);
        let listings = Listings::default();
        listings
            .get(&dir, Shape::Nested, || Ok(vec!["sha256:aa".into()]))
            .unwrap();
        let unread = || panic!("a kept listing whose directories are unchanged is not read");
        assert_eq!(listings.get(&dir, Shape::Nested, unread).unwrap().len(), 1);
        // Only the subdirectory changes: the listing is read again.
        fs::create_dir(dir.join("sha256/bb")).unwrap();
        settle(&dir.join("sha256"));
        let two = || Ok(vec!["sha256:aa".into(), "sha256:bb".into()]);
        assert_eq!(listings.get(&dir, Shape::Nested, two).unwrap().len(), 2);
        assert_eq!(listings.get(&dir, Shape::Nested, unread).unwrap().len(), 2);
        listings.forget(&dir);
        assert_eq!(listings.lock().names, 0);
        assert_eq!(listings.get(&dir, Shape::Nested, two).unwrap().len(), 2);
    }

    #[test]
    fn the_least_recently_used_listings_go_first() {
        let mut kept = Kept::default();
        let listing = |n: usize, used| Listing {
            stamp: Stamp(vec![]),
            names: Arc::new((0..n).map(|i| i.to_string()).collect()),
            used,
        };
        kept.insert("a".into(), listing(MAX_NAMES / 2, 1));
        kept.insert("b".into(), listing(MAX_NAMES / 2, 2));
        kept.insert("c".into(), listing(10, 3));
        assert!(!kept.dirs.contains_key(Path::new("a")));
        assert!(kept.dirs.contains_key(Path::new("b")));
        assert_eq!(kept.names, MAX_NAMES / 2 + 10);
    }
}
