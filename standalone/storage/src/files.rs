//! Durable small-file writes, links, listings: what every other module
//! touches the disk with, through `std::fs` (which on `wasm32-wasip2`
//! resolves absolute paths against the host's preopened directories). The
//! primitives are `wharf_layout_fs`'s, shared with `wharf serve`; this
//! module adds the path to each error, and registry:2's link files.
//!
//! A file becomes visible under its final name only whole: its bytes are
//! written to a staging file in `wharf-tmp/` (a name no other instance
//! picks), fsynced, renamed into place, and the rename is fsynced in its
//! directory, as is every directory created on the way. Nothing is ever
//! edited in place, so instances running at once see each file either
//! before or after a write, never during one.

use crate::error::{At, Result, StoreError};
use std::fs;
use std::io;
use std::path::Path;
use wharf_layout_fs::durable;
use wharf_spec::Digest;

/// Write `bytes` to `path` atomically and durably, staging in `tmp`.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    durable::write_atomic(&tmp.join(crate::ids::new_uuid()), path, bytes).at(path)
}

/// The directory `path` is in.
pub fn parent(path: &Path) -> Result<&Path> {
    durable::parent(path).at(path)
}

/// `fs::create_dir_all`, made durable.
pub fn create_dirs_durably(dir: &Path) -> Result<()> {
    durable::create_dirs_durably(dir).at(dir)
}

/// Make a directory's entries (renames, links, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    durable::sync_dir(dir).at(dir)
}

/// A small file's bytes; none if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    durable::read_optional(path).at(path)
}

/// A link file's digest (registry:2's `link`: the digest as text); none
/// if it does not exist, a storage error if it is not a digest.
pub fn read_link(path: &Path) -> Result<Option<Digest>> {
    wharf_layout_fs::links::read_link(path).map_err(|e| match e.kind() {
        // The text names the file already.
        io::ErrorKind::InvalidData => StoreError::Io(e.to_string()),
        _ => crate::error::io_at(path, &e),
    })
}

/// Write a link to `digest` at `path`.
pub fn write_link(tmp: &Path, path: &Path, digest: &Digest) -> Result<()> {
    write_atomic(tmp, path, digest.to_string().as_bytes())
}

/// Remove a directory tree; false if it was not there.
pub fn remove_tree(path: &Path) -> Result<bool> {
    durable::remove_tree(path).at(path)
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
    durable::touch(path).at(path)
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
pub fn sorted_entries(dir: &Path) -> Result<Vec<String>> {
    wharf_layout_fs::walk::sorted_entries(dir).at(dir)
}
