//! Durable small-file writes, links, listings: what every other module
//! touches the disk with, through `std::fs` (which on `wasm32-wasip2`
//! resolves absolute paths against the host's preopened directories).
//!
//! A file becomes visible under its final name only whole: its bytes are
//! written to a staging file in `wharf-tmp/` (a name no other instance
//! picks), fsynced, renamed into place, and the rename is fsynced in its
//! directory, as is every directory created on the way. Nothing is ever
//! edited in place, so instances running at once see each file either
//! before or after a write, never during one.

use crate::error::{At, Result, StoreError};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use wharf_spec::Digest;

/// Write `bytes` to `path` atomically and durably, staging in `tmp`.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(tmp).at(tmp)?;
    let parent = parent(path)?;
    create_dirs_durably(parent)?;
    let staging = tmp.join(crate::ids::new_uuid());
    let written = (|| {
        let mut file = File::create(&staging).at(&staging)?;
        file.write_all(bytes).at(&staging)?;
        file.sync_all().at(&staging)?;
        drop(file);
        fs::rename(&staging, path).at(path)?;
        sync_dir(parent)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&staging);
    }
    written
}

/// The directory `path` is in.
pub fn parent(path: &Path) -> Result<&Path> {
    path.parent()
        .ok_or_else(|| StoreError::Io(format!("{} has no directory", path.display())))
}

/// `fs::create_dir_all`, made durable: each directory it creates is
/// fsynced in its parent, so a file renamed into `dir` cannot vanish with
/// its directory in a power loss.
pub fn create_dirs_durably(dir: &Path) -> Result<()> {
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
    fs::create_dir_all(dir).at(dir)?;
    for created in missing.into_iter().rev() {
        if let Some(up) = created.parent() {
            sync_dir(up)?;
        }
    }
    Ok(())
}

/// Make a directory's entries (renames, links, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A small file's bytes; none if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::io_at(path, &e)),
    }
}

/// A link file's digest (registry:2's `link`: the digest as text); none
/// if it does not exist, a storage error if it is not a digest.
pub fn read_link(path: &Path) -> Result<Option<Digest>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    Digest::parse(text.trim())
        .map(Some)
        .map_err(|e| StoreError::Io(format!("corrupt link {}: {e}", path.display())))
}

/// Write a link to `digest` at `path`.
pub fn write_link(tmp: &Path, path: &Path, digest: &Digest) -> Result<()> {
    write_atomic(tmp, path, digest.to_string().as_bytes())
}

/// Remove a directory tree; false if it was not there.
pub fn remove_tree(path: &Path) -> Result<bool> {
    match fs::remove_dir_all(path) {
        Ok(()) => {
            sync_dir(parent(path)?)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(crate::error::io_at(path, &e)),
    }
}

/// Remove a file if it is there.
pub fn remove_file_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::io_at(path, &e)),
    }
}

/// Set a file's modification time to now: the start of its grace period
/// against garbage collection (`wharf gc`), as the native host does when
/// it stores or links a blob.
pub fn touch(path: &Path) -> Result<()> {
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .at(path)
}

/// The size of a file; none if it does not exist.
pub fn size_of(path: &Path) -> Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::io_at(path, &e)),
    }
}

/// The names of the entries of `dir`, sorted; empty if it does not exist.
/// Names that are not UTF-8 are nobody's and left out.
pub fn sorted_entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                if let Ok(name) = entry.at(dir)?.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::error::io_at(dir, &e)),
    }
    names.sort();
    Ok(names)
}
