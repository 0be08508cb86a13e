//! Files as `wasi:io` streams: how blob and manifest bytes reach the
//! response, and upload bytes reach the disk, without passing through
//! this component's memory. The host's own `read-via-stream` and
//! `write-via-stream` of a descriptor are handed to the core, which
//! splices them with the request or response body.
//!
//! Descriptors are opened relative to the preopened directory the path
//! lies under (`wasi:filesystem/preopens`), the one that holds the data
//! directory.

use crate::bindings::wasi::filesystem::preopens;
use crate::bindings::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};
use crate::bindings::wasi::io::streams::InputStream;
use crate::error::{Result, StoreError};
use std::path::Path;

thread_local! {
    /// The host's preopened directories, asked once per instance.
    static PREOPENS: Vec<(Descriptor, String)> = preopens::get_directories();
}

fn failed(path: &Path, code: ErrorCode) -> StoreError {
    StoreError::Io(format!("{}: {code}", path.display()))
}

/// Open `path` through the preopened directory it lies under (the
/// deepest, if several hold it).
fn open(
    path: &Path,
    path_flags: PathFlags,
    open_flags: OpenFlags,
    flags: DescriptorFlags,
) -> Result<std::result::Result<Descriptor, ErrorCode>> {
    PREOPENS.with(|dirs| {
        let (dir, relative) = dirs
            .iter()
            .filter_map(|(dir, at)| {
                let relative = path.strip_prefix(at).ok()?;
                Some((dir, relative, Path::new(at).components().count()))
            })
            .max_by_key(|(_, _, depth)| *depth)
            .map(|(dir, relative, _)| (dir, relative))
            .ok_or_else(|| {
                StoreError::Io(format!(
                    "{} is not under a directory the host preopened",
                    path.display()
                ))
            })?;
        let relative = relative
            .to_str()
            .ok_or_else(|| StoreError::Io(format!("{} is not a UTF-8 path", path.display())))?;
        let relative = if relative.is_empty() { "." } else { relative };
        Ok(dir.open_at(path_flags, relative, open_flags, flags))
    })
}

/// A stream of the file at `path` from `offset` to its end; none if
/// there is no such file.
pub fn read_from(path: &Path, offset: u64) -> Result<Option<InputStream>> {
    let opened = open(
        path,
        PathFlags::SYMLINK_FOLLOW,
        OpenFlags::empty(),
        DescriptorFlags::READ,
    )?;
    let file = match opened {
        Ok(file) => file,
        Err(ErrorCode::NoEntry) => return Ok(None),
        Err(code) => return Err(failed(path, code)),
    };
    // The stream holds the file open: the descriptor may go.
    file.read_via_stream(offset)
        .map(Some)
        .map_err(|code| failed(path, code))
}

/// A new file at `path` (it must not exist), open for writing;
/// `NotFound` if its directory is gone.
pub fn create_new(path: &Path) -> Result<Descriptor> {
    let opened = open(
        path,
        PathFlags::empty(),
        OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
        DescriptorFlags::WRITE,
    )?;
    match opened {
        Ok(file) => Ok(file),
        Err(ErrorCode::NoEntry) => Err(StoreError::NotFound),
        Err(code) => Err(failed(path, code)),
    }
}

/// The error of a failed `write-via-stream` of the file at `path`.
pub fn stream_failed(path: &Path, code: ErrorCode) -> StoreError {
    failed(path, code)
}
