//! Durable file primitives: a file becomes visible under its final name only
//! once its bytes are on disk, and the rename itself is made durable.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Write `bytes` to `path` atomically: temporary file in `tmp`, fsync,
/// rename into place, fsync the directory.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(tmp)?;
    let parent = path.parent().expect("storage paths have a parent");
    create_dirs_durably(parent)?;
    let staging = tmp.join(uuid::Uuid::new_v4().to_string());
    let result = (|| {
        let mut file = File::create(&staging)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&staging, path)?;
        sync_dir(parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staging);
    }
    result
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
            Some(parent) => at = parent,
            None => break,
        }
    }
    fs::create_dir_all(dir)?;
    for created in missing.into_iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Make a directory's entries (renames, creations, removals) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Read a small file; `None` if it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove a directory tree; false if it did not exist.
pub fn remove_tree(path: &Path) -> io::Result<bool> {
    match fs::remove_dir_all(path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Set a file's modification time to now (the start of its grace period
/// against garbage collection).
pub fn touch(path: &Path) -> io::Result<()> {
    File::options()
        .write(true)
        .open(path)?
        .set_modified(std::time::SystemTime::now())
}
