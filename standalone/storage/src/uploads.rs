//! The `upload` resource: a session on disk ([`crate::sessions`]) and the
//! one staging file this handle may be appending to.
//!
//! `writer` creates a staging file in the session and lends the core the
//! host's `write-via-stream` of it, so request bytes go from the body to
//! the file without entering this component. The file is committed as the
//! part at the offset it started from when the handle is next asked
//! anything (`offset`, `writer`, `finish`) or dropped: by then the core
//! has flushed and dropped the stream, as the interface asks. A core that
//! kept writing after that would only spoil its own session, which
//! `finish` then refuses: nothing is stored unless it hashes to its digest.
//!
//! A staging file is committed at the offset the handle last knew: the one
//! it reported (which the core checked the client's `Content-Range`
//! against), or the end of its own last part. Of two requests appending at
//! one offset, the later commit then finds the part taken and its bytes
//! are dropped; appending them after the other's would store the chunk
//! twice.

use crate::access::{digest_arg, store, to_wit};
use crate::bindings::exports::wharf::registry::repositories::{GuestUpload, Upload};
use crate::bindings::wasi::filesystem::types::Descriptor;
use crate::bindings::wasi::io::streams::OutputStream;
use crate::bindings::wharf::registry::types::StoreError;
use crate::error::Result;
use crate::sessions::Committed;
use crate::sessions::Session;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;

pub struct UploadHandle {
    session: Session,
    pending: RefCell<Option<Pending>>,
    /// The session's offset as this handle last learnt it, if it still
    /// stands for all it knows.
    known: Cell<Option<u64>>,
}

/// A staging file the core was given a stream of.
struct Pending {
    staged: PathBuf,
    /// Where its bytes go in the session: the offset when it was made.
    offset: u64,
    /// Held until the commit; the stream keeps its own hold on the file.
    _file: Descriptor,
}

impl UploadHandle {
    /// A handle of `session`, whose offset may be known (a new session's
    /// is 0).
    pub fn new(session: Session, known: Option<u64>) -> UploadHandle {
        UploadHandle {
            session,
            pending: RefCell::new(None),
            known: Cell::new(known),
        }
    }

    /// Commit the staging file, if any.
    fn commit(&self) -> Result<()> {
        let Some(pending) = self.pending.borrow_mut().take() else {
            return Ok(());
        };
        let Pending { staged, offset, .. } = pending;
        let committed = self.session.commit(&staged, offset);
        self.known.set(match committed {
            Ok(Committed::Appended(size)) => offset.checked_add(size),
            Ok(Committed::Empty) => Some(offset),
            Ok(Committed::Lost) | Err(_) => None,
        });
        committed.map(drop)
    }
}

impl Drop for UploadHandle {
    fn drop(&mut self) {
        // Nobody to tell of a failure: the bytes are then not the
        // session's, and the client learns the offset it holds.
        let _ = self.commit();
    }
}

impl GuestUpload for UploadHandle {
    fn id(&self) -> String {
        self.session.id.clone()
    }

    fn offset(&self) -> u64 {
        let _ = self.commit();
        let offset = self.session.offset().ok();
        self.known.set(offset);
        offset.unwrap_or(0)
    }

    fn writer(&self) -> std::result::Result<OutputStream, StoreError> {
        self.commit().map_err(to_wit)?;
        let offset = match self.known.take() {
            Some(offset) => offset,
            None => self.session.offset().map_err(to_wit)?,
        };
        let staged = self.session.staging_path();
        let file = crate::streams::create_new(&staged).map_err(to_wit)?;
        let stream = match file.write_via_stream(0) {
            Ok(stream) => stream,
            Err(code) => {
                drop(file);
                let _ = std::fs::remove_file(&staged);
                return Err(to_wit(crate::streams::stream_failed(&staged, code)));
            }
        };
        *self.pending.borrow_mut() = Some(Pending {
            staged,
            offset,
            _file: file,
        });
        Ok(stream)
    }

    fn finish(session: Upload, expected: String) -> std::result::Result<u64, StoreError> {
        let handle = session.into_inner::<UploadHandle>();
        let expected = digest_arg(&expected)?;
        handle.commit().map_err(to_wit)?;
        handle.session.finish(&store(), &expected).map_err(to_wit)
    }

    fn cancel(session: Upload) -> std::result::Result<(), StoreError> {
        let handle = session.into_inner::<UploadHandle>();
        // Its bytes go with the session: no commit.
        if let Some(pending) = handle.pending.borrow_mut().take() {
            let _ = std::fs::remove_file(&pending.staged);
        }
        handle.session.cancel(&store()).map_err(to_wit)
    }
}
