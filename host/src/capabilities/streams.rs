//! The `wasi:io` streams the guest reads blobs from and writes uploads to,
//! over the storage layer's [`Source`] and [`Sink`]: the one place storage
//! meets wasmtime's stream types.
//!
//! Besides translating errors, the output adapter enforces the contract a
//! guest must keep: it may write no more than `check-write` granted, and
//! nothing while a flush is pending. Breaking it traps the guest, as a
//! stock host's streams do; a sink never sees such a write.

use crate::storage::{Sink, Source};
use bytes::Bytes;
use std::io;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

/// A storage failure as a stream reports it.
pub fn failed(e: &io::Error) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::format_err!("{e}"))
}

/// `source` as the guest's input-stream.
pub fn input(source: Box<dyn Source>) -> DynInputStream {
    Box::new(SourceStream(source))
}

/// `sink` as the guest's output-stream.
pub fn output(sink: Box<dyn Sink>) -> DynOutputStream {
    Box::new(SinkStream {
        sink: Some(sink),
        granted: 0,
    })
}

struct SourceStream(Box<dyn Source>);

impl InputStream for SourceStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match self.0.read(size) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(StreamError::Closed),
            Err(e) => Err(failed(&e)),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for SourceStream {
    async fn ready(&mut self) {
        self.0.ready().await
    }
}

struct SinkStream {
    /// Taken by `cancel`; a stream whose sink is closed is closed too.
    sink: Option<Box<dyn Sink>>,
    /// What the last `check-write` granted and no write has used yet.
    granted: usize,
}

impl SinkStream {
    fn sink(&mut self) -> StreamResult<&mut Box<dyn Sink>> {
        self.sink.as_mut().ok_or(StreamError::Closed)
    }
}

#[async_trait::async_trait]
impl OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            self.sink()?;
            return Ok(());
        }
        if bytes.len() > self.granted {
            return Err(StreamError::trap("write exceeds the permitted length"));
        }
        self.granted -= bytes.len();
        self.sink()?.write(bytes).map_err(|e| failed(&e))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.granted = 0;
        self.sink()?.flush().map_err(|e| failed(&e))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let room = self.sink()?.room().map_err(|e| failed(&e))?;
        self.granted = room;
        Ok(room)
    }

    async fn cancel(&mut self) {
        if let Some(mut sink) = self.sink.take() {
            sink.close().await;
        }
    }
}

#[async_trait::async_trait]
impl Pollable for SinkStream {
    async fn ready(&mut self) {
        if let Some(sink) = &mut self.sink {
            sink.ready().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::BlobStore;
    use crate::storage::memory::MemoryStorage;
    use wharf_spec::Algorithm;

    #[tokio::test]
    async fn a_guest_writing_more_than_check_write_granted_traps_and_nothing_is_taken() {
        let store = MemoryStorage::new(true);
        let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        let mut stream = output(session.writer().unwrap());
        let granted = stream.check_write().unwrap();
        assert!(granted > 0);
        stream.write(Bytes::from(vec![1u8; granted / 2])).unwrap();
        // Half the grant is used: the other half and one byte is too much.
        let over = Bytes::from(vec![2u8; granted - granted / 2 + 1]);
        assert!(matches!(stream.write(over), Err(StreamError::Trap(_))));
        stream.cancel().await;
        drop(stream);
        assert_eq!(session.offset(), (granted / 2) as u64);
        // Nothing but a flush's wait is allowed after a flush.
        let mut stream = output(session.writer().unwrap());
        stream.check_write().unwrap();
        stream.flush().unwrap();
        assert!(matches!(
            stream.write(Bytes::from_static(b"x")),
            Err(StreamError::Trap(_))
        ));
    }

    #[tokio::test]
    async fn a_source_ends_as_a_closed_stream() {
        let store = MemoryStorage::new(true);
        let mut session = store.start_upload("team/app", Algorithm::Sha256).unwrap();
        let mut sink = session.writer().unwrap();
        crate::storage::conformance::write_all(&mut sink, b"blob", 16).await;
        drop(sink);
        let digest = Algorithm::Sha256.digest(b"blob");
        session.finish(&digest).unwrap();
        let mut stream = input(store.read(&digest, 1, None).unwrap());
        assert_eq!(stream.read(2).unwrap(), Bytes::from_static(b"lo"));
        assert_eq!(stream.read(10).unwrap(), Bytes::from_static(b"b"));
        assert!(matches!(stream.read(10), Err(StreamError::Closed)));
    }
}
