//! Durable file primitives (`wharf_layout_fs::durable`, shared with the
//! standalone component's storage): a file becomes visible under its final
//! name only once its bytes are on disk, and the rename itself is made
//! durable.

use std::io;
use std::path::Path;

pub use wharf_layout_fs::durable::{
    create_dirs_durably, read_optional, remove_tree, sync_dir, touch,
};

/// Write `bytes` to `path` atomically, staging under a fresh name in `tmp`.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let staging = tmp.join(uuid::Uuid::new_v4().to_string());
    wharf_layout_fs::durable::write_atomic(&staging, path, bytes)
}
