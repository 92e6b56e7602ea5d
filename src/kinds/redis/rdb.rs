//! The RDB as it travels: the two framings a server sends it in after `SYNC` (`$<len>` after
//! a disk save, `$EOF:<marker>` when streamed disklessly), and the header check every dump
//! passes through ([`Checked`]).

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use super::client::{bad_data, parse_int};

/// Length of the end marker of a diskless RDB transfer (`$EOF:<marker>`).
const EOF_MARK_LEN: usize = 40;

/// The RDB payload announced by the header line `$<rest>` that answers `SYNC`: up to the
/// marker of `$EOF:<marker>` (a diskless transfer), or `$<len>` bytes (the server saved to its
/// disk first). Returns the payload and how it was transferred (`diskless` or `disk`).
pub(super) fn payload<R: Read + Send + 'static>(
    rest: &[u8],
    inner: R,
) -> Result<(Box<dyn Read + Send>, &'static str), String> {
    if let Some(marker) = rest.strip_prefix(b"EOF:") {
        if marker.len() != EOF_MARK_LEN {
            return Err("the end-of-RDB marker has the wrong length".into());
        }
        let reader = EofMarked {
            inner,
            marker: marker.to_vec(),
            buf: Vec::new(),
            scratch: Vec::new(),
            done: false,
        };
        Ok((Box::new(reader), "diskless"))
    } else {
        let len = parse_int(rest)
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| "the RDB length is not a number".to_string())?;
        let reader = Exactly { inner, left: len };
        Ok((Box::new(reader), "disk"))
    }
}

/// Exactly `left` bytes of `inner`; an early end is an error.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        let want = out
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the server closed the connection {} bytes before the end of the RDB",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The payload of a diskless transfer: everything up to the 40-byte marker the server
/// announced. The last 40 bytes seen are held back until we know they are not the marker.
struct EofMarked<R> {
    inner: R,
    marker: Vec<u8>,
    /// Payload read but not yet returned (at most 40 bytes plus one read).
    buf: Vec<u8>,
    /// Read buffer, allocated on first use.
    scratch: Vec<u8>,
    done: bool,
}

impl<R: Read> Read for EofMarked<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let ready = if self.done {
                self.buf.len()
            } else {
                self.buf.len().saturating_sub(EOF_MARK_LEN)
            };
            if ready > 0 {
                let n = ready.min(out.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            if self.scratch.is_empty() {
                self.scratch = vec![0u8; 64 * 1024];
            }
            let n = self.inner.read(&mut self.scratch)?;
            let before = self.buf.len();
            self.buf.extend_from_slice(&self.scratch[..n]);
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before the end of the RDB",
                ));
            }
            // The marker ends the payload; it may straddle reads, so look back 40 bytes.
            let from = before.saturating_sub(EOF_MARK_LEN);
            // memmem (SIMD) rather than a per-byte window compare: this runs over every
            // byte of the dump on the thread that feeds zstd (bench/RESULTS.md).
            if let Some(at) = memchr::memmem::find(&self.buf[from..], &self.marker) {
                self.buf.truncate(from + at);
                self.done = true;
            }
        }
    }
}

/// What the reader of a dump saw, for `finish`.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) complete: bool,
    pub(super) error: Option<String>,
    /// From the RDB header (`REDIS0011` → 11).
    pub(super) rdb_version: Option<u32>,
}

/// Checks the RDB header and records how reading ended.
pub(super) struct Checked {
    inner: Box<dyn Read + Send>,
    /// The first bytes, until the 9-byte header is complete.
    head: Vec<u8>,
    outcome: Arc<Mutex<Outcome>>,
}

impl Checked {
    pub(super) fn new(inner: Box<dyn Read + Send>, outcome: Arc<Mutex<Outcome>>) -> Checked {
        Checked {
            inner,
            head: Vec::new(),
            outcome,
        }
    }

    fn record(&self, f: impl FnOnce(&mut Outcome)) {
        if let Ok(mut o) = self.outcome.lock() {
            f(&mut o);
        }
    }
}

impl Read for Checked {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(out) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let msg = e.to_string();
                self.record(|o| o.error = Some(msg));
                return Err(e);
            }
        };
        if self.head.len() < 9 {
            let take = n.min(9 - self.head.len());
            self.head.extend_from_slice(&out[..take]);
            let bad = !b"REDIS".starts_with(&self.head[..self.head.len().min(5)])
                || (n == 0 && self.head.len() < 9);
            if bad {
                let msg = "this is not an RDB file (it does not start with `REDIS`)".to_string();
                self.record(|o| o.error = Some(msg.clone()));
                return Err(bad_data(msg));
            }
            if self.head.len() == 9 {
                let version = std::str::from_utf8(&self.head[5..])
                    .ok()
                    .and_then(|v| v.parse().ok());
                self.record(|o| o.rdb_version = version);
            }
        }
        if n == 0 {
            self.record(|o| o.complete = true);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds its data in the given pieces, as a socket would.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);
    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(mut p) = self.0.pop_front() else {
                return Ok(0);
            };
            let n = p.len().min(out.len());
            out[..n].copy_from_slice(&p[..n]);
            if n < p.len() {
                self.0.push_front(p.split_off(n));
            }
            Ok(n)
        }
    }

    #[test]
    fn eof_marker_found_across_reads_and_held_back() {
        let marker = b"0123456789abcdef0123456789abcdef01234567".to_vec();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cut in [1, 39, 40, 41, 1000, 65_536] {
            // Byte-sized reads on a shorter payload keep the test quick.
            let payload = &payload[..if cut == 1 { 3000 } else { payload.len() }];
            let mut wire = payload.to_vec();
            wire.extend_from_slice(&marker);
            wire.extend_from_slice(b"\n"); // whatever follows is not ours
            let pieces = wire.chunks(cut).map(<[u8]>::to_vec).collect();
            let mut r = EofMarked {
                inner: Pieces(pieces),
                marker: marker.clone(),
                buf: Vec::new(),
                scratch: Vec::new(),
                done: false,
            };
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(got, payload, "cut {cut}");
        }
        let mut truncated = EofMarked {
            inner: Pieces([payload[..500].to_vec()].into()),
            marker,
            buf: Vec::new(),
            scratch: Vec::new(),
            done: false,
        };
        let mut got = Vec::new();
        assert!(truncated.read_to_end(&mut got).is_err());
    }

    #[test]
    fn exact_length_and_header_checks() {
        let mut r = Exactly {
            inner: &b"REDIS0011abcXYZ"[..],
            left: 12,
        };
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"REDIS0011abc");
        let mut short = Exactly {
            inner: &b"REDIS"[..],
            left: 12,
        };
        assert!(short.read_to_end(&mut Vec::new()).is_err());

        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let mut ok = Checked {
            inner: Box::new(Pieces([b"RED".to_vec(), b"IS0011xyz".to_vec()].into())),
            head: Vec::new(),
            outcome: outcome.clone(),
        };
        ok.read_to_end(&mut Vec::new()).unwrap();
        let o = outcome.lock().unwrap();
        assert!(o.complete && o.error.is_none());
        assert_eq!(o.rdb_version, Some(11));
        drop(o);

        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let mut bad = Checked {
            inner: Box::new(&b"PGDMP..."[..]),
            head: Vec::new(),
            outcome: outcome.clone(),
        };
        assert!(bad.read_to_end(&mut Vec::new()).is_err());
        assert!(outcome.lock().unwrap().error.is_some());
    }
}
