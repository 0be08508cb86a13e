//! Durable file primitives: a file becomes visible under its final name
//! only once its bytes are on disk, and the rename itself is made durable,
//! as is every directory created on the way. Nothing is edited in place,
//! so readers (other requests, other instances of a component) see a file
//! either before or after a write, never during one.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

/// Write `bytes` to `path` atomically: into `staging` (a fresh name, on
/// the same file system, that no other writer picks), fsync, rename into
/// place, fsync the directory. The staging file is removed if any step
/// fails.
pub fn write_atomic(staging: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(tmp) = staging.parent() {
        fs::create_dir_all(tmp)?;
    }
    let parent = parent(path)?;
    create_dirs_durably(parent)?;
    let written = (|| {
        let mut file = File::create(staging)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(staging, path)?;
        sync_dir(parent)
    })();
    if written.is_err() {
        let _ = fs::remove_file(staging);
    }
    written
}

/// `fs::create_dir_all`, made durable: every directory it creates is
/// fsynced in its parent, so a file renamed into `dir` afterwards cannot
/// vanish with its directory in a power loss.
pub fn create_dirs_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at);
        match at.parent() {
            Some(up) => at = up,
            None => break,
        }
    }
    fs::create_dir_all(dir)?;
    for created in missing.into_iter().rev() {
        if let Some(up) = created.parent() {
            sync_dir(up)?;
        }
    }
    Ok(())
}

/// Make a directory's entries (renames, links, creations, removals)
/// durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A small file's bytes; `None` if it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    read_until(path, |_| false)
}

/// Bytes asked for by a small read's first `read`: more than any link,
/// media type or typical manifest holds, so one call reads them whole.
const FIRST_READ: usize = 8 << 10;

/// A file's bytes, read with no `stat` (the layout's small files are read
/// on every pull, and `fs::read` spends a `statx` and a second `read` on
/// each): `None` if it does not exist. After a `read` that filled less
/// than it was given, `whole` is asked whether the bytes so far are the
/// whole file; if it says no, reading goes on until end of file, so a
/// short read that is not the end (a signal, a network file system) only
/// costs one more call.
pub fn read_until(path: &Path, whole: impl Fn(&[u8]) -> bool) -> io::Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = vec![0; FIRST_READ];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        let read = match file.read(&mut bytes[len..]) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += read;
        if read == 0 || (len < bytes.len() && whole(&bytes[..len])) {
            bytes.truncate(len);
            return Ok(Some(bytes));
        }
    }
}

/// Remove a directory tree and make that durable; false if it was not
/// there.
pub fn remove_tree(path: &Path) -> io::Result<bool> {
    match fs::remove_dir_all(path) {
        Ok(()) => {
            sync_dir(parent(path)?)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Set a file's modification time to now: the start of its grace period
/// against garbage collection.
pub fn touch(path: &Path) -> io::Result<()> {
    File::options()
        .write(true)
        .open(path)?
        .set_modified(std::time::SystemTime::now())
}

/// The directory `path` is in.
pub fn parent(path: &Path) -> io::Result<&Path> {
    path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no directory", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_creates_its_directories_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("wharf-tmp");
        let path = dir.path().join("a/b/c/link");
        write_atomic(&tmp.join("one"), &path, b"first").unwrap();
        write_atomic(&tmp.join("two"), &path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_write_removes_its_staging_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("wharf-tmp");
        let path = dir.path().join("kept");
        write_atomic(&tmp.join("one"), &path, b"old").unwrap();
        // A directory where the file should go: the rename fails.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomic(&tmp.join("two"), &blocked, b"new").is_err());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn small_reads_return_every_byte_whatever_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for size in [
            0,
            1,
            FIRST_READ - 1,
            FIRST_READ,
            FIRST_READ + 1,
            3 * FIRST_READ + 5,
        ] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            fs::write(&path, &bytes).unwrap();
            assert_eq!(read_optional(&path).unwrap().as_deref(), Some(&bytes[..]));
            // `whole` is asked only after a read that did not fill its room:
            // a file that fills it is read on, whatever `whole` says.
            let read = read_until(&path, |_| true).unwrap().unwrap();
            assert_eq!(read, bytes, "size {size}");
        }
    }

    #[test]
    fn missing_files_and_trees_are_none_and_false() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&dir.path().join("none")).unwrap(), None);
        assert!(!remove_tree(&dir.path().join("none")).unwrap());
        create_dirs_durably(&dir.path().join("x/y")).unwrap();
        fs::write(dir.path().join("x/y/f"), b"1").unwrap();
        assert!(remove_tree(&dir.path().join("x")).unwrap());
        assert!(!dir.path().join("x").exists());
    }
}
