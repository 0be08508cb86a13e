//! Moving bytes between `wasi:io` streams.
//!
//! By default bytes are spliced: the host moves them from one host stream to
//! the other and they never enter guest memory. With the
//! `copy-through-guest` feature they are read into and written from guest
//! memory instead, kept only to measure the difference.

pub use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// How much one splice or read may move at a time.
const CHUNK: u64 = 4 << 20;

#[derive(Debug)]
pub enum StreamFailure {
    /// The source failed (for a request body: the client went away).
    Source(String),
    /// The destination failed (storage, or the client went away).
    Destination(String),
}

impl std::fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFailure::Source(e) => write!(f, "reading failed: {e}"),
            StreamFailure::Destination(e) => write!(f, "writing failed: {e}"),
        }
    }
}

fn describe(e: StreamError) -> String {
    match e {
        StreamError::Closed => "stream closed".into(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// Move everything from `source` to `destination` until `source` ends, or
/// `limit` bytes when given, then flush. Returns the bytes moved.
///
/// The limit is for responses: a host may lend a stream that runs past the
/// bytes asked for (a file read from an offset to its end, under a stock
/// wasi-http host), and the response carries `Content-Length` of them.
#[cfg(not(feature = "copy-through-guest"))]
pub fn copy(
    source: &InputStream,
    destination: &OutputStream,
    limit: Option<u64>,
) -> Result<u64, StreamFailure> {
    let mut moved = 0u64;
    loop {
        let want = match limit {
            Some(limit) if moved >= limit => break,
            Some(limit) => CHUNK.min(limit - moved),
            None => CHUNK,
        };
        match destination.splice(source, want) {
            Ok(0) => {
                // Either the destination has no room or the source no bytes yet.
                match destination.check_write() {
                    Ok(0) => destination.subscribe().block(),
                    Ok(_) => source.subscribe().block(),
                    Err(e) => return Err(StreamFailure::Destination(describe(e))),
                }
            }
            Ok(n) => moved += n,
            Err(StreamError::Closed) => break,
            Err(e) => {
                // splice reports either side's failure; tell which one.
                return Err(match destination.check_write() {
                    Ok(_) => StreamFailure::Source(describe(e)),
                    Err(_) => StreamFailure::Destination(describe(e)),
                });
            }
        }
    }
    finish(destination)?;
    Ok(moved)
}

/// Move everything from `source` to `destination` through guest memory.
#[cfg(feature = "copy-through-guest")]
pub fn copy(
    source: &InputStream,
    destination: &OutputStream,
    limit: Option<u64>,
) -> Result<u64, StreamFailure> {
    let mut moved = 0u64;
    loop {
        let want = match limit {
            Some(limit) if moved >= limit => break,
            Some(limit) => CHUNK.min(limit - moved),
            None => CHUNK,
        };
        let bytes = match source.blocking_read(want) {
            Ok(bytes) => bytes,
            Err(StreamError::Closed) => break,
            Err(e) => return Err(StreamFailure::Source(describe(e))),
        };
        moved += bytes.len() as u64;
        write_all(destination, &bytes)?;
    }
    finish(destination)?;
    Ok(moved)
}

/// Write all of `bytes` to `destination`, waiting for room as needed, then flush.
pub fn write_all(destination: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamFailure> {
    let fail = |e| StreamFailure::Destination(describe(e));
    while !bytes.is_empty() {
        let room = destination.check_write().map_err(fail)?;
        if room == 0 {
            destination.subscribe().block();
            continue;
        }
        let n = (room as usize).min(bytes.len());
        destination.write(&bytes[..n]).map_err(fail)?;
        bytes = &bytes[n..];
    }
    finish(destination)
}

/// Flush what was written. A destination that closed once it had everything
/// is done, not failed: a response body whose reader (hyper) stops as soon as
/// it has sent `Content-Length` bytes closes the stream under our last flush.
fn finish(destination: &OutputStream) -> Result<(), StreamFailure> {
    match destination.blocking_flush() {
        Ok(()) | Err(StreamError::Closed) => Ok(()),
        Err(e) => Err(StreamFailure::Destination(describe(e))),
    }
}

/// Read all of `source` into memory, refusing more than `limit` bytes.
pub fn read_to_end(source: &InputStream, limit: usize) -> Result<Vec<u8>, ReadFailure> {
    let mut bytes = Vec::new();
    loop {
        match source.blocking_read(CHUNK) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(ReadFailure::TooLarge);
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(e) => return Err(ReadFailure::Failed(describe(e))),
        }
    }
}

pub enum ReadFailure {
    TooLarge,
    Failed(String),
}
