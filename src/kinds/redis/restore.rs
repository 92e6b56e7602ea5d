//! Restore into a live server: the RDB goes to a private temporary directory, a throwaway
//! `redis-server` ([`RedisServer`]) loads it there, and every key of every database is copied
//! into the target with `DUMP`/`PTTL` → `RESTORE` (see the kind's doc).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::client::{Client, Conn, Reply, keyspace};
use super::server::{Listen, RedisServer};
use crate::kinds::process::{Group, ServerError};
use crate::kinds::{RestoreOptions, Sink, SourceError, Target};

/// Keys fetched per `SCAN` during a restore; their payloads are held in memory at once.
const SCAN_COUNT: &str = "200";
/// How long the temporary restore server may take to load the RDB.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------

pub struct RedisTarget {
    conn: Conn,
    bin_dir: Option<PathBuf>,
}

impl RedisTarget {
    pub fn new(target: &str, opts: &RestoreOptions) -> Result<Self, SourceError> {
        let conn = Conn::parse(target).map_err(|reason| SourceError::Target {
            target: crate::model::redact::url(target),
            reason,
        })?;
        Ok(RedisTarget {
            conn,
            bin_dir: opts.bin_dir.clone(),
        })
    }

    fn server_program(&self) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join("redis-server"),
            None => PathBuf::from("redis-server"),
        }
    }
}

fn target_error(conn: &Conn, reason: String) -> SourceError {
    SourceError::Target {
        target: conn.public.clone(),
        reason: conn.scrub(&reason),
    }
}

#[async_trait]
impl Target for RedisTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        let conn = self.conn.clone();
        let program = self.server_program();
        tokio::task::spawn_blocking(move || {
            let fail = |reason: String| target_error(&conn, reason);
            let version = Command::new(&program)
                .arg("--version")
                .stdin(Stdio::null())
                .output();
            if !version.is_ok_and(|o| o.status.success()) {
                return Err(fail(format!(
                    "restoring needs a local redis-server to read the RDB, and `{}` cannot be run; install it (Debian: redis-server) or pass --bin-dir",
                    program.display()
                )));
            }
            let mut client = conn.connect().map_err(|r| fail(format!("cannot connect ({r})")))?;
            let dbs = keyspace(&client.info("keyspace").map_err(&fail)?);
            let used: Vec<String> = dbs
                .iter()
                .filter(|(_, keys, _)| *keys > 0)
                .map(|(db, keys, _)| format!("db{db}: {keys} keys"))
                .collect();
            if !used.is_empty() {
                return Err(fail(format!(
                    "the server is not empty ({}); restore into an empty Redis so nothing is overwritten (FLUSHALL it first only if its data may go)",
                    used.join(", ")
                )));
            }
            Ok(())
        })
        .await
        .map_err(|e| target_error(&self.conn, format!("internal error: {e}")))?
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        let fail = |reason: String| target_error(&self.conn, reason);
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-redis-")
            .tempdir()
            .map_err(|e| fail(format!("cannot create a temporary directory: {e}")))?;
        let rdb = dir.path().join("dump.rdb");
        let file = File::create(&rdb)
            .map_err(|e| fail(format!("cannot create {}: {e}", rdb.display())))?;
        let written = Arc::new(AtomicU64::new(0));
        let writer = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            written: written.clone(),
        };
        let conn = self.conn.clone();
        let program = self.server_program();
        Ok(Sink {
            writer: Box::new(writer),
            // `dir` moves in here: it is removed when this closure is dropped, run or not.
            finish: Box::new(move || {
                let fail = |reason: String| target_error(&conn, reason);
                let expected = written.load(Ordering::SeqCst);
                let size = std::fs::metadata(&rdb).map(|m| m.len()).unwrap_or(0);
                if size != expected {
                    return Err(fail(format!(
                        "the RDB could not be written completely to {} ({size} of {expected} bytes); check free space there (or set TMPDIR)",
                        rdb.display()
                    )));
                }
                let server = RedisServer::start(
                    &program,
                    dir.path(),
                    Listen::Socket,
                    Group::Shared,
                    LOAD_TIMEOUT,
                )
                .map_err(|e| fail(load_failed(&program, e)))?;
                let copied = copy_keys(&server, &conn).map_err(|e| {
                    fail(format!(
                        "{e}; the target may now hold part of the snapshot's keys: FLUSHALL it before retrying"
                    ))
                })?;
                tracing::info!(keys = copied, "redis keys restored");
                drop(server);
                drop(dir);
                Ok(())
            }),
        })
    }
}

/// Counts what reached the inner writer, so a failed final flush is noticed.
struct Counting<W> {
    inner: W,
    written: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What went wrong starting the local server on the RDB, for the restore's error.
fn load_failed(program: &Path, e: ServerError) -> String {
    match e {
        ServerError::Spawn { source, .. } => format!(
            "cannot start {} to read the RDB: {source}; install redis-server or pass --bin-dir",
            program.display()
        ),
        ServerError::Exited { status, log, .. } => format!(
            "the local redis-server could not load the RDB ({status}): {}; if it names an unknown RDB version, install a redis-server at least as new as the snapshot's server",
            log[log.len().saturating_sub(5)..].join(" | ")
        ),
        ServerError::NotReady { waited, .. } => format!(
            "the local redis-server did not finish loading the RDB within {}",
            humantime::format_duration(waited)
        ),
        other => other.to_string(),
    }
}

/// Copies functions and every key (value and TTL) of every database of `server` into the
/// target; returns the number of keys copied.
fn copy_keys(server: &RedisServer, conn: &Conn) -> Result<u64, String> {
    let mut from = server.connect()?;
    let mut to = conn
        .connect()
        .map_err(|e| format!("cannot connect ({e})"))?;
    copy_functions(&mut from, &mut to)?;
    let dbs = keyspace(&from.info("keyspace")?);
    let mut total = 0u64;
    for (db, _, _) in dbs {
        let db_s = db.to_string();
        from.must(&["SELECT", &db_s])?;
        to.must(&["SELECT", &db_s]).map_err(|e| {
            format!(
                "{e}: the snapshot has keys in db{db}; configure the target with `databases {}` or more",
                db + 1
            )
        })?;
        let mut cursor = "0".to_string();
        loop {
            let reply = from.must(&["SCAN", &cursor, "COUNT", SCAN_COUNT])?;
            let (next, keys) = match reply {
                Reply::Array(Some(mut parts)) if parts.len() == 2 => {
                    let keys = match parts.pop() {
                        Some(Reply::Array(Some(keys))) => keys,
                        _ => Vec::new(),
                    };
                    (parts[0].text(), keys)
                }
                other => return Err(format!("unexpected SCAN reply `{}`", other.text())),
            };
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Reply::Bulk(Some(k)) => Some(k),
                    _ => None,
                })
                .collect();
            total += copy_batch(&mut from, &mut to, &keys)?;
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    Ok(total)
}

/// `DUMP` and `PTTL` each key from the local server, `RESTORE` them into the target.
fn copy_batch(from: &mut Client, to: &mut Client, keys: &[Vec<u8>]) -> Result<u64, String> {
    if keys.is_empty() {
        return Ok(0);
    }
    let io = |e: io::Error| e.to_string();
    let reads: Vec<Vec<&[u8]>> = keys
        .iter()
        .flat_map(|k| [vec![&b"PTTL"[..], k], vec![&b"DUMP"[..], k]])
        .collect();
    let replies = from.pipeline(&reads).map_err(io)?;
    let mut restores: Vec<(&[u8], String, Vec<u8>)> = Vec::with_capacity(keys.len());
    for (key, pair) in keys.iter().zip(replies.chunks(2)) {
        let ttl = match &pair[0] {
            Reply::Int(-2) => continue, // expired meanwhile
            Reply::Int(t) if *t > 0 => t.to_string(),
            Reply::Int(_) => "0".to_string(),
            other => return Err(format!("PTTL: {}", other.text())),
        };
        match &pair[1] {
            Reply::Bulk(Some(payload)) => restores.push((key, ttl, payload.clone())),
            Reply::Bulk(None) => continue, // expired meanwhile
            other => return Err(format!("DUMP: {}", other.text())),
        }
    }
    let writes: Vec<Vec<&[u8]>> = restores
        .iter()
        .map(|(k, ttl, payload)| vec![&b"RESTORE"[..], k, ttl.as_bytes(), payload])
        .collect();
    let results = to.pipeline(&writes).map_err(io)?;
    let mut copied = 0;
    for ((key, _, payload), result) in restores.iter().zip(results) {
        match result {
            Reply::Error(e) if e.starts_with("BUSYKEY") => {
                // SCAN may return a key twice; anything else means someone else wrote it.
                let same = matches!(to.cmd_bytes(&[b"DUMP", key]).map_err(io)?,
                    Reply::Bulk(Some(p)) if p == *payload);
                if !same {
                    return Err(format!(
                        "key `{}` was written on the target by someone else during the restore",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
            Reply::Error(e) => {
                return Err(format!(
                    "RESTORE of key `{}`: {e}{}",
                    String::from_utf8_lossy(key),
                    if e.contains("payload version") {
                        "; the target is older than the snapshot's server: restore into a Redis at least as new"
                    } else {
                        ""
                    }
                ));
            }
            _ => copied += 1,
        }
    }
    Ok(copied)
}

/// Redis 7 functions live in the RDB too; copy them if there are any.
fn copy_functions(from: &mut Client, to: &mut Client) -> Result<(), String> {
    match from.cmd(&["FUNCTION", "LIST"]) {
        Ok(Reply::Array(Some(libs))) if !libs.is_empty() => {}
        _ => return Ok(()), // none, or a server without functions
    }
    let payload = match from.cmd(&["FUNCTION", "DUMP"]) {
        Ok(Reply::Bulk(Some(p))) => p,
        other => return Err(format!("FUNCTION DUMP: {other:?}")),
    };
    match to.cmd_bytes(&[b"FUNCTION", b"RESTORE", &payload]) {
        Ok(Reply::Status(_)) => Ok(()),
        Ok(other) => Err(format!("FUNCTION RESTORE on the target: {}", other.text())),
        Err(e) => Err(format!("FUNCTION RESTORE on the target: {e}")),
    }
}
