//! The streaming path between a source and a store, and back.
//!
//! Backup: dump → zstd (multithreaded) → age (all recipients) → SHA-256 → multipart upload.
//! Restore: download → size and SHA-256 check → age → zstd → the target's consumer.
//!
//! The codecs are synchronous and run on one blocking thread; the store is async. They meet
//! in bounded channels of `CHUNK`-sized buffers, so memory stays bounded whatever the dump
//! size: a few chunks in the channel, the parts in flight, and zstd's window.
//!
//! Restore never lets a consumer see the end of its input unless the whole stored object was
//! authenticated (age) and matched its manifest (size, SHA-256): on any error the consumer is
//! killed with its input still open, so a PostgreSQL restore (one transaction) commits nothing.

pub mod crypto;
mod io;
pub mod signing;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use crate::kinds::{Dump, Sink, SourceError};
use crate::model::failpoint;
use crate::store::{StoreError, Upload};

pub use io::Expected;

/// Size of the buffers passed between the codec thread and the store.
const CHUNK: usize = 1024 * 1024;
/// Buffers waiting in each channel.
const QUEUE: usize = 4;
/// Read size from the source.
const READ_BUF: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the dump: {0}")]
    Read(std::io::Error),
    #[error("compressing or encrypting: {0}")]
    Encode(std::io::Error),
    #[error(
        "the age identity cannot decrypt this snapshot: it was encrypted to {recipients}, and the identity file holds {held}; use the identity file that belongs to one of those recipients"
    )]
    WrongIdentity { recipients: String, held: String },
    #[error(
        "the stored data is corrupt: {0}; restore a copy from another store or an older snapshot"
    )]
    Corrupt(String),
    #[error("the restore target stopped reading: {0}")]
    TargetWrite(std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            PipelineError::Source(e) => e.kind(),
            PipelineError::Store(e) => e.kind(),
            PipelineError::Read(_) | PipelineError::TargetWrite(_) => ErrorKind::Unreachable,
            PipelineError::Encode(_) | PipelineError::Internal(_) => ErrorKind::Internal,
            PipelineError::WrongIdentity { .. } => ErrorKind::Config,
            PipelineError::Corrupt(_) => ErrorKind::Corrupt,
        }
    }
}

/// What the backup pipeline measured.
#[derive(Debug, Clone, Default)]
pub struct BackupStats {
    /// Facts the source reported at the end of its dump.
    pub facts: crate::kinds::Facts,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
}

pub struct Encoding {
    pub level: i32,
    /// zstd workers; 0 = one per core.
    pub threads: u32,
    pub recipients: Vec<age::x25519::Recipient>,
}

/// Streams `dump` through zstd and age into `upload`. The caller finishes or aborts the upload.
pub async fn backup(
    dump: Dump,
    enc: Encoding,
    upload: &mut Upload,
    part_size: usize,
    progress: &ProgressBar,
) -> Result<BackupStats, PipelineError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let bar = progress.clone();
    let Dump {
        reader,
        finish,
        stop,
    } = dump;
    // If this future is dropped (the run was cancelled) while the codec thread is blocked
    // reading from the producer, stop the producer so the thread (and the process) can end.
    let mut stop_on_drop = StopOnDrop(stop);
    let dump = Dump {
        reader,
        finish,
        stop: None,
    };
    let worker = tokio::task::spawn_blocking(move || encode(dump, enc, tx, &bar));

    let mut uploaded = 0usize;
    let mut first_part_stored = false;
    let pumped: Result<(), StoreError> = async {
        while let Some(chunk) = rx.recv().await {
            uploaded += chunk.len();
            upload.put(chunk).await?;
            if !first_part_stored && uploaded >= part_size {
                first_part_stored = true;
                if std::env::var_os(failpoint::ENV).is_some() {
                    upload.flush().await?;
                    failpoint::hit("mid-upload");
                }
            }
        }
        Ok(())
    }
    .await;
    // On an upload error, dropping the receiver makes the codec thread stop and kill the dump;
    // a producer that writes nothing for a while is stopped right away.
    drop(rx);
    if pumped.is_err()
        && let Some(stop) = stop_on_drop.0.take()
    {
        stop();
    }
    let encoded = worker
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
    stop_on_drop.0 = None;
    pumped?;
    encoded
}

struct StopOnDrop(Option<Box<dyn FnOnce() + Send>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop();
        }
    }
}

fn encode(
    dump: Dump,
    enc: Encoding,
    tx: mpsc::Sender<Bytes>,
    progress: &ProgressBar,
) -> Result<BackupStats, PipelineError> {
    let Dump {
        mut reader, finish, ..
    } = dump;
    let result = encode_stream(&mut reader, &enc, tx, progress);
    drop(reader);
    match result {
        // The producer's own exit status explains a failure better than what we saw of it.
        Err(e) => Err(finish().err().map(PipelineError::from).unwrap_or(e)),
        Ok(stats) => {
            let facts = finish()?;
            Ok(BackupStats { facts, ..stats })
        }
    }
}

fn encode_stream(
    reader: &mut dyn Read,
    enc: &Encoding,
    tx: mpsc::Sender<Bytes>,
    progress: &ProgressBar,
) -> Result<BackupStats, PipelineError> {
    let e = PipelineError::Encode;
    let recipients = enc.recipients.iter().map(|r| r as &dyn age::Recipient);
    let encryptor = age::Encryptor::with_recipients(recipients)
        .map_err(|err| PipelineError::Encode(std::io::Error::other(format!("age: {err}"))))?;
    let sender = io::ChunkSender::new(tx, CHUNK);
    let encrypted = encryptor.wrap_output(sender).map_err(e)?;
    let counted = io::Counting {
        inner: encrypted,
        count: 0,
    };
    let mut zstd = zstd::stream::write::Encoder::new(counted, enc.level).map_err(e)?;
    let threads = match enc.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        n => n,
    };
    if threads > 1 {
        zstd.multithread(threads).map_err(e)?;
        // zstd's default job size (8 MiB at level 3) keeps several job buffers per worker:
        // 2 MiB jobs halve peak memory (≈80 → ≈42 MiB) at the same speed and ratio
        // (bench/RESULTS.md).
        zstd.set_parameter(zstd::zstd_safe::CParameter::JobSize(2 * 1024 * 1024))
            .map_err(e)?;
    }
    zstd.include_checksum(true).map_err(e)?;

    let mut buf = vec![0u8; READ_BUF];
    let mut raw = 0u64;
    let mut dump_failpoint_armed = std::env::var_os(failpoint::ENV).is_some();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(PipelineError::Read(err)),
        };
        raw += n as u64;
        progress.inc(n as u64);
        zstd.write_all(&buf[..n]).map_err(e)?;
        // After the first read: the dump has begun and (for any size of source) not ended.
        if dump_failpoint_armed {
            dump_failpoint_armed = false;
            failpoint::hit("mid-dump");
        }
    }
    let counted = zstd.finish().map_err(e)?;
    let compressed = counted.count;
    let sender = counted.inner.finish().map_err(e)?;
    let (sha256, stored) = sender.close().map_err(e)?;
    Ok(BackupStats {
        facts: Default::default(),
        raw_bytes: raw,
        compressed_bytes: compressed,
        stored_bytes: stored,
        sha256,
    })
}

/// What the restore pipeline measured.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    pub stored_bytes: u64,
    pub raw_bytes: u64,
}

/// Streams a stored object through age and zstd into the sink made by `open_sink`.
pub async fn restore(
    stream: BoxStream<'static, Result<Bytes, StoreError>>,
    expected: Expected,
    identities: crate::pipeline::crypto::Identities,
    recipients: Vec<String>,
    open_sink: Box<dyn FnOnce() -> Result<Sink, SourceError> + Send>,
    progress: &ProgressBar,
) -> Result<RestoreStats, PipelineError> {
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let stored_bytes = expected.size;
    let (reader, verified) = io::ChannelReader::new(rx, expected);
    let bar = progress.clone();
    let worker = tokio::task::spawn_blocking(move || {
        decode(reader, &identities, &recipients, open_sink, &bar)
    });
    let mut stream = stream;
    let mut pumped: Result<(), StoreError> = Ok(());
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => {
                if tx.send(bytes).await.is_err() {
                    break; // the decoder stopped; its own error says why
                }
            }
            Err(err) => {
                pumped = Err(err);
                break;
            }
        }
    }
    // An early end fails the decoder's size check, so the consumer is killed, not committed.
    drop(tx);
    let decoder_result = worker
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
    pumped?;
    let raw_bytes = decoder_result?;
    if !verified.load(Ordering::SeqCst) {
        return Err(PipelineError::Corrupt(
            "the snapshot's data ended before the end of the stored object".into(),
        ));
    }
    Ok(RestoreStats {
        stored_bytes,
        raw_bytes,
    })
}

fn decode(
    reader: io::ChannelReader,
    identities: &crate::pipeline::crypto::Identities,
    recipients: &[String],
    open_sink: Box<dyn FnOnce() -> Result<Sink, SourceError> + Send>,
    progress: &ProgressBar,
) -> Result<u64, PipelineError> {
    let corrupt =
        |what: &str, err: &dyn std::fmt::Display| PipelineError::Corrupt(format!("{what}: {err}"));
    let decryptor =
        age::Decryptor::new_buffered(std::io::BufReader::with_capacity(64 * 1024, reader))
            .map_err(|err| classify_age(err, identities, recipients))?;
    let plain = decryptor
        .decrypt(identities.iter())
        .map_err(|err| classify_age(err, identities, recipients))?;
    let mut zstd = zstd::stream::read::Decoder::new(plain).map_err(|err| corrupt("zstd", &err))?;

    let sink = open_sink()?;
    let Sink { mut writer, finish } = sink;
    let mut buf = vec![0u8; READ_BUF];
    let mut raw = 0u64;
    let copied: Result<(), PipelineError> = loop {
        let n = match zstd.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => break Err(classify_read(err)),
        };
        raw += n as u64;
        progress.inc(n as u64);
        if let Err(err) = writer.write_all(&buf[..n]) {
            break Err(PipelineError::TargetWrite(err));
        }
    };
    match copied {
        Ok(()) => {
            let flushed = writer.flush();
            drop(writer); // end of input: the consumer may now commit
            finish()?;
            flushed.map_err(PipelineError::TargetWrite)?;
            Ok(raw)
        }
        Err(err) => {
            // Kill the consumer while its input is still open, so it cannot commit.
            drop(finish);
            drop(writer);
            Err(err)
        }
    }
}

fn classify_read(err: std::io::Error) -> PipelineError {
    if let Some(m) = err.get_ref().and_then(|e| e.downcast_ref::<io::Mismatch>()) {
        return PipelineError::Corrupt(m.0.clone());
    }
    PipelineError::Corrupt(format!("decryption or decompression failed: {err}"))
}

fn classify_age(
    err: age::DecryptError,
    identities: &crate::pipeline::crypto::Identities,
    recipients: &[String],
) -> PipelineError {
    match err {
        age::DecryptError::NoMatchingKeys => {
            let held = identities.recipients();
            if held.iter().any(|h| recipients.contains(h)) {
                PipelineError::Corrupt(
                    "the age header is damaged (the identity matches a recipient but cannot unwrap the key)".into(),
                )
            } else {
                PipelineError::WrongIdentity {
                    recipients: recipients.join(", "),
                    held: if held.is_empty() {
                        "no X25519 identity".into()
                    } else {
                        held.join(", ")
                    },
                }
            }
        }
        age::DecryptError::Io(e) => classify_read(e),
        other => PipelineError::Corrupt(format!("age header: {other}")),
    }
}
