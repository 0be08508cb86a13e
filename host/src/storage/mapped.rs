//! Blob files mapped into memory for downloads.
//!
//! A download sends the page cache's own pages: the file is mapped read-only
//! and windows of the mapping go to hyper as `Bytes`, so the only copy is
//! the kernel's into the socket. Mapping and unmapping cost about a fifth
//! of a download's CPU (page tables, reverse maps, and a TLB flush on every
//! core at each unmap), so large blobs stay mapped between downloads
//! in one process-wide [`MapCache`]: many clients pulling the same layer map
//! it once. An entry is dropped when its file is deleted, when it has not
//! been read for [`IDLE`], or when newer entries need its share of
//! [`BUDGET`] or its place among [`MAX_FILES`]; a download in progress keeps
//! its mapping alive either way.
//!
//! The pages stay the page cache's: shared, clean, reclaimable by the kernel
//! at any time. They do show in the process's resident set (`RssFile`, not
//! `RssAnon`) while mapped. Each window is populated on the blocking pool
//! before it is handed on (reading it from disk if it was evicted), so the
//! socket write on a runtime thread finds it in memory.
//!
//! # Why mapping a blob file is sound
//!
//! Blob files are never truncated or rewritten in place: a blob's `data` is
//! written under another name (an upload session's file, or a staging
//! file), fsynced and renamed into place (`uploads.rs`,
//! `wharf_layout_fs::durable`), and leaves only by being
//! unlinked, which keeps an open file's pages whole until its last mapping
//! goes. So the bytes of a mapping never change under a reader, and no page
//! of one lies past the end of its file (each mapping is checked against
//! the file's size first). This is the one place that relies on it: the
//! two `unsafe` blocks below are the mapping itself and `mincore`.

use bytes::Bytes;
use memmap2::{Advice, Mmap, MmapOptions};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Blob files smaller than this are mapped per download, a window at a time.
pub const MIN_CACHED: u64 = 4 << 20;

/// Total size of the files the cache keeps mapped (address space; the
/// resident part is what has been read lately).
pub const BUDGET: u64 = 1 << 30;

/// Files the cache keeps mapped at most: each holds a descriptor open.
pub const MAX_FILES: usize = 128;

/// How long a cached mapping outlives its last read.
pub const IDLE: Duration = Duration::from_secs(30);

/// Set when the kernel cannot populate a range of a mapping (before Linux
/// 5.14): the cache then hands out no more mappings, and downloads map
/// their windows one by one.
static NO_POPULATE: AtomicBool = AtomicBool::new(false);

/// Map `len` bytes of the blob file `file` read-only from `offset`, whole
/// pages read in at once if `populate`. The caller has checked that the
/// file is at least `offset + len` long.
fn map(file: &File, offset: u64, len: usize, populate: bool) -> io::Result<Mmap> {
    let mut options = MmapOptions::new();
    options.offset(offset).len(len);
    if populate {
        options.populate();
    }
    // SAFETY: `file` is a blob file, which is never truncated or written
    // again (the module's invariant), and the range lies within it.
    unsafe { options.map(file) }
}

/// Bring `range` of `mapping` into memory, reading it from disk if it is
/// not in the page cache.
fn populate(mapping: &Mmap, range: Range<usize>) -> io::Result<()> {
    if resident(mapping, range.clone()) {
        return Ok(());
    }
    mapping.advise_range(Advice::PopulateRead, range.start, range.len())
}

/// Whether every page of `range` of `mapping` (which starts on a page, as
/// a mapping of a whole file does) is in memory: far cheaper to ask than
/// populating pages that are already mapped.
fn resident(mapping: &Mmap, range: Range<usize>) -> bool {
    let page = rustix::param::page_size();
    let from = range.start - range.start % page;
    let pages = (range.end - from).div_ceil(page);
    let mut flags = vec![0u8; pages];
    // SAFETY: `from..range.end` lies within the mapping, `from` is on a
    // page, and `flags` has one byte for each page of it, as mincore
    // writes; it reads nothing of the mapping itself.
    let rc = unsafe {
        libc::mincore(
            mapping.as_ptr().add(from).cast_mut().cast(),
            range.end - from,
            flags.as_mut_ptr(),
        )
    };
    rc == 0 && flags.iter().all(|f| f & 1 == 1)
}

/// A part of a mapping handed on as `Bytes`; keeps the mapping alive.
struct Slice {
    mapping: Arc<Mmap>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.mapping[self.range.clone()]
    }
}

/// The error for a blob file that ends before the range asked of it.
pub fn shorter_than_recorded() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "blob file is shorter than its recorded size",
    )
}

/// `len` bytes of `file` from `offset`, mapped (and populated) for this
/// download alone.
pub fn map_range(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // Touching a mapped page past the end of the file kills the process:
    // make sure the whole range is there first.
    if offset.saturating_add(len as u64) > file.metadata()?.len() {
        return Err(shorter_than_recorded());
    }
    Ok(Bytes::from_owner(map(file, offset, len, true)?))
}

/// A whole blob file's mapping, from the cache.
#[derive(Clone)]
pub struct MappedFile(Arc<Mmap>);

impl MappedFile {
    /// `len` bytes from `offset`, populated: reads them from disk if they
    /// are not in memory, so call it on the blocking pool.
    pub fn window(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let range = self.range(offset, len)?;
        if let Err(e) = populate(&self.0, range.clone()) {
            if e.raw_os_error() == Some(libc::EINVAL) {
                NO_POPULATE.store(true, Ordering::Relaxed);
            }
            return Err(e);
        }
        Ok(self.slice(range))
    }

    /// `len` bytes from `offset` if all of them are in memory already:
    /// costs one system call, never a disk read.
    pub fn resident_window(&self, offset: u64, len: usize) -> Option<Bytes> {
        let range = self.range(offset, len).ok()?;
        resident(&self.0, range.clone()).then(|| self.slice(range))
    }

    fn range(&self, offset: u64, len: usize) -> io::Result<Range<usize>> {
        let from = usize::try_from(offset).map_err(|_| shorter_than_recorded())?;
        match from.checked_add(len) {
            Some(to) if to <= self.0.len() => Ok(from..to),
            _ => Err(shorter_than_recorded()),
        }
    }

    fn slice(&self, range: Range<usize>) -> Bytes {
        Bytes::from_owner(Slice {
            mapping: self.0.clone(),
            range,
        })
    }
}

/// Whole blob files kept mapped between downloads, keyed by device and
/// inode. An entry holds its file open, so the inode cannot be reused by
/// another file while the entry exists.
pub struct MapCache {
    budget: u64,
    max_files: usize,
    idle: Duration,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_inode: HashMap<(u64, u64), Entry>,
    mapped: u64,
}

struct Entry {
    file: Arc<File>,
    mapping: Arc<Mmap>,
    last_read: Instant,
}

impl MapCache {
    pub fn new(budget: u64, max_files: usize, idle: Duration) -> MapCache {
        MapCache {
            budget,
            max_files,
            idle,
            inner: Mutex::new(Entries::default()),
        }
    }

    /// The file's cached mapping, mapping it first if it is not cached.
    /// `None` when the file is not one the cache keeps: smaller than
    /// [`MIN_CACHED`], larger than the budget, or on a kernel that cannot
    /// populate a range.
    pub fn get(&self, file: &Arc<File>) -> io::Result<Option<MappedFile>> {
        let meta = file.metadata()?;
        let size = meta.len();
        if size < MIN_CACHED || size > self.budget || NO_POPULATE.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let Ok(whole) = usize::try_from(size) else {
            return Ok(None);
        };
        let key = (meta.dev(), meta.ino());
        let now = Instant::now();
        // A blob file never changes size; one that did is mapped afresh.
        if let Some(entry) = self.lock().by_inode.get_mut(&key)
            && entry.mapping.len() == whole
        {
            entry.last_read = now;
            return Ok(Some(MappedFile(entry.mapping.clone())));
        }
        // Mapped outside the lock; if two downloads race here, the second
        // one's mapping replaces the first in the cache and the first lives
        // as long as its download.
        let mapping = Arc::new(map(file, 0, whole, false)?);
        self.insert(key, file.clone(), mapping.clone(), now);
        Ok(Some(MappedFile(mapping)))
    }

    fn insert(&self, key: (u64, u64), file: Arc<File>, mapping: Arc<Mmap>, now: Instant) {
        let size = mapping.len() as u64;
        // Unmapped (if no download holds them) after the lock is released.
        let mut released = Vec::new();
        let mut entries = self.lock();
        released.extend(entries.remove(&key));
        while entries.mapped + size > self.budget || entries.by_inode.len() >= self.max_files {
            let Some(oldest) = entries
                .by_inode
                .iter()
                .min_by_key(|(_, entry)| entry.last_read)
                .map(|(key, _)| *key)
            else {
                break;
            };
            released.extend(entries.remove(&oldest));
        }
        entries.mapped += size;
        entries.by_inode.insert(
            key,
            Entry {
                file,
                mapping,
                last_read: now,
            },
        );
    }

    /// Drop the entries not read since `now - idle` and those whose file
    /// has been deleted (so its disk space is freed once no download is
    /// reading it).
    pub fn sweep(&self, now: Instant) {
        let mut entries = self.lock();
        let stale: Vec<(u64, u64)> = entries
            .by_inode
            .iter()
            .filter(|(_, entry)| {
                now.saturating_duration_since(entry.last_read) >= self.idle
                    || entry.file.metadata().map_or(true, |m| m.nlink() == 0)
            })
            .map(|(key, _)| *key)
            .collect();
        let released: Vec<Entry> = stale.iter().filter_map(|key| entries.remove(key)).collect();
        drop(entries);
        drop(released);
    }

    /// Files mapped, and their total size.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, u64) {
        let entries = self.lock();
        (entries.by_inode.len(), entries.mapped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The entries stay consistent whatever panicked while holding them.
        crate::sync::lock(&self.inner)
    }
}

impl Entries {
    fn remove(&mut self, key: &(u64, u64)) -> Option<Entry> {
        let entry = self.by_inode.remove(key)?;
        self.mapped -= entry.mapping.len() as u64;
        Some(entry)
    }
}

/// The process's cache, swept every few seconds by a thread of its own
/// (started with the first download that uses it).
pub fn shared() -> &'static MapCache {
    static SHARED: OnceLock<MapCache> = OnceLock::new();
    SHARED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("wharf-mapped".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(IDLE / 6);
                    shared().sweep(Instant::now());
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the thread that releases idle blob mappings");
        }
        MapCache::new(BUDGET, MAX_FILES, IDLE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// `len` bytes from `offset` through the cache.
    fn window(cache: &MapCache, file: &Arc<File>, offset: usize, len: usize) -> io::Result<Bytes> {
        let mapped = cache.get(file)?.expect("a file the cache keeps");
        mapped.window(offset as u64, len)
    }

    fn blob(dir: &std::path::Path, name: &str, size: usize) -> (Arc<File>, Vec<u8>) {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(&data).unwrap();
        (Arc::new(File::open(&path).unwrap()), data)
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn windows_of_a_cached_file_read_back_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (file, data) = blob(dir.path(), "a", 6 * MIB + 123);
        let cache = MapCache::new(BUDGET, MAX_FILES, IDLE);
        for (offset, len) in [(0, 4 * MIB), (4 * MIB, 2 * MIB + 123), (4097, 5 * MIB)] {
            let window = window(&cache, &file, offset, len).unwrap();
            assert_eq!(&window[..], &data[offset..offset + len]);
            let again = cache.get(&file).unwrap().unwrap();
            let resident = again.resident_window(offset as u64, len).unwrap();
            assert_eq!(&resident[..], &data[offset..offset + len]);
        }
        assert_eq!(cache.usage(), (1, data.len() as u64));
        let past_the_end = window(&cache, &file, 6 * MIB, MIB);
        assert_eq!(
            past_the_end.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mapped = cache.get(&file).unwrap().unwrap();
        assert!(mapped.resident_window(6 * MIB as u64, MIB).is_none());
    }

    #[test]
    fn small_files_and_files_over_the_budget_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (small, _) = blob(dir.path(), "small", MIN_CACHED as usize - 1);
        let (large, _) = blob(dir.path(), "large", 9 * MIB);
        let cache = MapCache::new(8 * MIB as u64, MAX_FILES, IDLE);
        assert!(cache.get(&small).unwrap().is_none());
        assert!(cache.get(&large).unwrap().is_none());
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn the_least_recently_read_file_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = blob(dir.path(), "a", 5 * MIB);
        let (b, _) = blob(dir.path(), "b", 5 * MIB);
        let (c, c_data) = blob(dir.path(), "c", 5 * MIB);
        let cache = MapCache::new(12 * MIB as u64, MAX_FILES, IDLE);
        window(&cache, &a, 0, MIB).unwrap();
        window(&cache, &b, 0, MIB).unwrap();
        // Reading a again makes b the oldest.
        window(&cache, &a, MIB, MIB).unwrap();
        let held = window(&cache, &b, 0, 5 * MIB).unwrap();
        window(&cache, &a, 0, MIB).unwrap();
        let window = window(&cache, &c, 0, 5 * MIB).unwrap();
        assert_eq!(&window[..], &c_data[..]);
        assert_eq!(cache.usage(), (2, 10 * MIB as u64));
        // b left the cache while a slice of it was still held: the slice
        // still reads the file.
        assert_eq!(held.len(), 5 * MIB);
        assert_eq!(held[5 * MIB - 1], ((5 * MIB - 1) * 7 + 5 * MIB) as u8);
    }

    #[test]
    fn no_more_than_max_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MapCache::new(BUDGET, 2, IDLE);
        for name in ["a", "b", "c"] {
            let (file, data) = blob(dir.path(), name, 4 * MIB);
            assert_eq!(&window(&cache, &file, 0, 4 * MIB).unwrap()[..], &data[..]);
        }
        assert_eq!(cache.usage(), (2, 8 * MIB as u64));
    }

    #[test]
    fn deleted_and_idle_files_are_released_by_a_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, _) = blob(dir.path(), "kept", 5 * MIB);
        let (deleted, _) = blob(dir.path(), "deleted", 5 * MIB);
        let cache = MapCache::new(BUDGET, MAX_FILES, Duration::from_secs(60));
        let start = Instant::now();
        window(&cache, &kept, 0, MIB).unwrap();
        window(&cache, &deleted, 0, MIB).unwrap();
        std::fs::remove_file(dir.path().join("deleted")).unwrap();
        cache.sweep(start);
        assert_eq!(cache.usage(), (1, 5 * MIB as u64));
        cache.sweep(start + Duration::from_secs(61));
        assert_eq!(cache.usage(), (0, 0));
    }
}
