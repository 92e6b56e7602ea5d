//! The snapshot stream's framing: etcd's bbolt database followed by its SHA-256 (32 bytes),
//! checked while the stream passes through ([`TrailerCheck`]).

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// Length of the SHA-256 trailer etcd appends to a snapshot.
const TRAILER: usize = 32;

/// Passes an etcd snapshot through unchanged while checking its trailer: the last 32 bytes
/// must be the SHA-256 of everything before them. Bytes are only released once they are known
/// not to be the trailer; at the end the trailer is released only if it matches, otherwise
/// reading fails (so the pipeline fails and nothing is committed).
pub struct TrailerCheck<R> {
    inner: R,
    /// Bytes read but not yet released; everything past `ready` may still be the trailer.
    buf: Vec<u8>,
    ready: usize,
    hasher: Sha256,
    total: u64,
    verified: bool,
    scratch: Vec<u8>,
}

impl<R: Read> TrailerCheck<R> {
    pub fn new(inner: R) -> Self {
        TrailerCheck {
            inner,
            buf: Vec::new(),
            ready: 0,
            hasher: Sha256::new(),
            total: 0,
            verified: false,
            scratch: vec![0u8; 64 * 1024],
        }
    }
}

impl<R: Read> Read for TrailerCheck<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.ready > 0 {
                let n = out.len().min(self.ready);
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                self.ready -= n;
                return Ok(n);
            }
            if self.verified {
                return Ok(0);
            }
            let n = match self.inner.read(&mut self.scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n > 0 {
                self.total += n as u64;
                self.buf.extend_from_slice(&self.scratch[..n]);
                if self.buf.len() > TRAILER {
                    let release = self.buf.len() - TRAILER;
                    self.hasher.update(&self.buf[..release]);
                    self.ready = release;
                }
                continue;
            }
            // End of the stream: `buf` holds the last (at most) 32 bytes.
            if self.buf.len() < TRAILER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the etcd snapshot ended after {} bytes, too short to hold its SHA-256 trailer; it is truncated",
                        self.total
                    ),
                ));
            }
            let digest = std::mem::take(&mut self.hasher).finalize();
            if digest.as_slice() != self.buf.as_slice() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the etcd snapshot's SHA-256 trailer does not match its {} bytes of data (computed {}, trailer says {}); the snapshot is corrupt, nothing was stored — take it again",
                        self.total - TRAILER as u64,
                        hex::encode(digest),
                        hex::encode(&self.buf)
                    ),
                ));
            }
            self.verified = true;
            self.ready = TRAILER;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_with_trailer(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.extend_from_slice(&Sha256::digest(data));
        v
    }

    /// Reads in small, odd-sized pieces to cross every buffer boundary.
    fn read_all(r: &mut impl Read, piece: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; piece];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Yields its data in fixed-size chunks, like the gRPC stream.
    struct Chunked(Vec<u8>, usize);
    impl Read for Chunked {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.1).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn good_trailer_passes_everything_through() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let snap = snapshot_with_trailer(&data);
        for (chunk, piece) in [(32 * 1024, 256 * 1024), (7, 13), (33, 1), (100_000, 31)] {
            let mut r = TrailerCheck::new(Chunked(snap.clone(), chunk));
            assert_eq!(read_all(&mut r, piece).unwrap(), snap, "chunk {chunk}");
        }
        // An empty database with its trailer is still well formed.
        let empty = snapshot_with_trailer(b"");
        let mut r = TrailerCheck::new(Chunked(empty.clone(), 5));
        assert_eq!(read_all(&mut r, 3).unwrap(), empty);
    }

    #[test]
    fn bad_trailer_fails_at_the_end() {
        let data = vec![42u8; 100_000];
        let mut snap = snapshot_with_trailer(&data);
        let last = snap.len() - 1;
        snap[last] ^= 1;
        let mut r = TrailerCheck::new(Chunked(snap.clone(), 32 * 1024));
        let err = read_all(&mut r, 64 * 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("does not match"), "{err}");

        // A flipped data bit, too.
        let mut snap = snapshot_with_trailer(&data);
        snap[10] ^= 0x80;
        let err = read_all(&mut TrailerCheck::new(Chunked(snap, 1000)), 4096).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn truncated_stream_fails() {
        let snap = snapshot_with_trailer(&[1u8; 5000]);
        let err = read_all(
            &mut TrailerCheck::new(Chunked(snap[..4000].to_vec(), 512)),
            777,
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        let err = read_all(&mut TrailerCheck::new(Chunked(vec![0; 20], 8)), 8).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
