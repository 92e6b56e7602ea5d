//! The small `Read`/`Write` adapters the pipeline is built from: byte counting, SHA-256, and
//! the bounded channels that join the blocking codec thread to the async store.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Counts bytes written through it.
pub struct Counting<W> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The end of the encoding chain: hashes and counts what will be stored, and hands it to the
/// uploader in `chunk`-sized pieces over a bounded channel (back-pressure, bounded memory).
pub struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    chunk: usize,
    hasher: Sha256,
    pub count: u64,
}

impl ChunkSender {
    pub fn new(tx: mpsc::Sender<Bytes>, chunk: usize) -> Self {
        ChunkSender {
            tx,
            buf: BytesMut::with_capacity(chunk),
            chunk,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, BytesMut::with_capacity(self.chunk));
        self.tx
            .blocking_send(full.freeze())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends what is buffered and returns (sha256 hex, byte count).
    pub fn close(mut self) -> io::Result<(String, u64)> {
        self.send()?;
        Ok((hex::encode(self.hasher.finalize()), self.count))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.buf.len() == self.chunk {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Expected identity of a stored object, checked as it is read.
#[derive(Debug, Clone)]
pub struct Expected {
    pub sha256: String,
    pub size: u64,
}

/// The start of the decoding chain: reads chunks from the downloader, hashes and counts them,
/// and at the end of the object fails unless size and SHA-256 match what the manifest says.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
    hasher: Sha256,
    count: u64,
    expected: Expected,
    verified: Arc<AtomicBool>,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Bytes>, expected: Expected) -> (Self, Arc<AtomicBool>) {
        let verified = Arc::new(AtomicBool::new(false));
        (
            ChannelReader {
                rx,
                current: Bytes::new(),
                hasher: Sha256::new(),
                count: 0,
                expected,
                verified: verified.clone(),
            },
            verified,
        )
    }
}

/// Marker carried inside an `io::Error` when the stored object does not match its manifest.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.hasher.update(&b);
                    self.count += b.len() as u64;
                    if self.count > self.expected.size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            Mismatch(format!(
                                "the stored object is longer than the {} bytes its manifest records",
                                self.expected.size
                            )),
                        ));
                    }
                    self.current = b;
                }
                None => {
                    if self.verified.load(Ordering::SeqCst) {
                        return Ok(0);
                    }
                    let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
                    if self.count != self.expected.size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            Mismatch(format!(
                                "the stored object ended after {} bytes; its manifest records {}",
                                self.count, self.expected.size
                            )),
                        ));
                    }
                    if got != self.expected.sha256 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            Mismatch(format!(
                                "SHA-256 of the stored object is {got}, its manifest records {}",
                                self.expected.sha256
                            )),
                        ));
                    }
                    self.verified.store(true, Ordering::SeqCst);
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
