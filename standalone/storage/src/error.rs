//! What a storage operation can fail with, before the component's shell
//! turns it into a WIT `store-error` (`access.rs`). Every I/O failure carries the
//! path it happened at: the text ends up in the core's log, where a bare
//! "No such file or directory" would say nothing.

use std::io;
use std::path::Path;
use wharf_spec::Digest;

#[derive(Debug)]
pub enum StoreError {
    /// The blob, manifest, tag or upload session is not there.
    NotFound,
    /// The bytes hash to this digest, not to the one expected.
    DigestMismatch(Digest),
    /// An argument or a stored file is not acceptable; the text says why.
    Invalid(String),
    /// Switched off by the operator (deletes).
    Unsupported(String),
    /// The filesystem failed, at the path in the text.
    Io(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An I/O error at `path`, as the storage error the WIT layer reports.
pub fn io_at(path: &Path, e: &io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

/// Attach the path an `io::Result` is about.
pub trait At<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| io_at(path, &e))
    }
}
