//! Backup: the RDB of the whole server, in the mode the config chooses (see the kind's doc),
//! with the key counts and versions recorded as facts.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::client::{Client, Conn, IO_TIMEOUT, Reply, field, keyspace, read_line};
use super::rdb::{self, Checked, Outcome};
use super::{RedisError, RedisMode, RedisSpec};
use crate::kinds::{Dump, Facts, Source, SourceError};

/// Default for `save_timeout`.
pub const DEFAULT_SAVE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

fn keyspace_facts(dbs: &[(u32, u64, u64)]) -> Facts {
    let mut keys = serde_json::Map::new();
    let mut expires = serde_json::Map::new();
    for (db, k, e) in dbs {
        keys.insert(format!("db{db}"), (*k).into());
        expires.insert(format!("db{db}"), (*e).into());
    }
    let mut facts = Facts::new();
    facts.insert("keys".into(), keys.into());
    facts.insert("expires".into(), expires.into());
    facts
}

// ---------------------------------------------------------------------------
// Backup
// ---------------------------------------------------------------------------

/// Makes the error for a failure while the RDB is read.
type StreamError = Box<dyn Fn(String) -> RedisError + Send>;

#[derive(Clone)]
pub struct Redis {
    name: String,
    conn: Result<Conn, String>,
    mode: RedisMode,
    rdb_path: Option<PathBuf>,
    save_timeout: Duration,
}

impl Redis {
    pub fn new(name: &str, spec: &RedisSpec) -> Self {
        Redis {
            name: name.to_string(),
            conn: Conn::parse(spec.url.expose()),
            mode: spec.mode,
            rdb_path: spec.rdb_path.clone(),
            save_timeout: spec.save_timeout.map_or(DEFAULT_SAVE_TIMEOUT, |t| t.0),
        }
    }

    fn unreachable(&self, reason: String) -> SourceError {
        SourceError::Unreachable {
            source_name: self.name.clone(),
            reason,
        }
    }

    /// Connects, or says the source cannot be reached.
    fn connect(&self) -> Result<(Conn, Client), SourceError> {
        let conn = self
            .conn
            .as_ref()
            .map_err(|r| self.unreachable(r.clone()))?;
        let client = conn
            .connect()
            .map_err(|r| self.unreachable(format!("{} ({r})", conn.public)))?;
        Ok((conn.clone(), client))
    }

    fn start_dump(&self) -> Result<Dump, SourceError> {
        let (conn, mut client) = self.connect()?;
        let command_failed = |reason: String| RedisError::Command {
            url: conn.public.clone(),
            command: "INFO keyspace".into(),
            reason: conn.scrub(&reason),
        };
        // Counted just before the RDB is produced: the closest we get to its contents.
        let dbs = keyspace(&client.info("keyspace").map_err(command_failed)?);
        let mut facts = keyspace_facts(&dbs);
        facts.insert(
            "mode".into(),
            match self.mode {
                RedisMode::File => "file",
                RedisMode::Replication => "replication",
            }
            .into(),
        );
        let (reader, stream_error): (Box<dyn Read + Send>, StreamError) = match self.mode {
            RedisMode::File => {
                let path = self.rdb_path.clone().ok_or_else(|| RedisError::RdbFile {
                    path: "(none)".into(),
                    reason: "no rdb_path is configured".into(),
                })?;
                bgsave(&conn, &mut client, self.save_timeout)?;
                let file = open_saved_rdb(&path, &conn, &mut client)?;
                let shown = path.display().to_string();
                (
                    Box::new(file),
                    Box::new(move |reason| RedisError::RdbFile {
                        path: shown.clone(),
                        reason,
                    }),
                )
            }
            RedisMode::Replication => {
                drop(client);
                let (reader, transfer) = replicate(&conn, self.save_timeout)?;
                facts.insert("rdb_transfer".into(), transfer.into());
                let url = conn.public.clone();
                (
                    reader,
                    Box::new(move |reason| RedisError::Replication {
                        url: url.clone(),
                        reason,
                    }),
                )
            }
        };
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let reader = Checked::new(reader, outcome.clone());
        Ok(Dump {
            reader: Box::new(reader),
            finish: Box::new(move || {
                let outcome = outcome
                    .lock()
                    .map_err(|_| stream_error("the reading thread panicked".into()))?;
                if let Some(e) = &outcome.error {
                    return Err(stream_error(e.clone()).into());
                }
                if !outcome.complete {
                    return Err(stream_error("the RDB was not read to its end".into()).into());
                }
                if let Some(v) = outcome.rdb_version {
                    facts.insert("rdb_version".into(), v.into());
                }
                Ok(facts)
            }),
            stop: None,
        })
    }
}

#[async_trait]
impl Source for Redis {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn preflight(&self) -> Result<Facts, SourceError> {
        let this = self.conn.clone();
        let name = self.name.clone();
        let rdb_path = self.rdb_path.clone();
        let mode = self.mode;
        let unreachable = move |reason: String| SourceError::Unreachable {
            source_name: name.clone(),
            reason,
        };
        tokio::task::spawn_blocking(move || {
            let conn = this.map_err(&unreachable)?;
            let mut client = conn
                .connect()
                .map_err(|r| unreachable(format!("{} ({r})", conn.public)))?;
            let info = client
                .info("server")
                .map_err(|r| unreachable(format!("{} ({})", conn.public, conn.scrub(&r))))?;
            if let (RedisMode::File, Some(path)) = (mode, &rdb_path) {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                if let Some(dir) = dir
                    && !dir.is_dir()
                {
                    return Err(RedisError::RdbFile {
                        path: path.display().to_string(),
                        reason: format!("its directory {} does not exist here", dir.display()),
                    }
                    .into());
                }
            }
            let mut facts = Facts::new();
            facts.insert(
                "redis_version".into(),
                field(&info, "redis_version").unwrap_or("unknown").into(),
            );
            Ok(facts)
        })
        .await
        .map_err(|e| self.unreachable(format!("internal error: {e}")))?
    }

    async fn dump(&self) -> Result<Dump, SourceError> {
        // Connecting and waiting for the save block; keep them off the async runtime.
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.start_dump())
            .await
            .map_err(|e| self.unreachable(format!("internal error: {e}")))?
    }
}

/// `BGSAVE` and wait until it finished; a failed or slow save is an error.
fn bgsave(conn: &Conn, client: &mut Client, timeout: Duration) -> Result<(), RedisError> {
    let deadline = Instant::now() + timeout;
    let command = |command: &str, reason: String| RedisError::Command {
        url: conn.public.clone(),
        command: command.into(),
        reason: conn.scrub(&reason),
    };
    let timed_out = || RedisError::SaveTimeout {
        url: conn.public.clone(),
        timeout: humantime::format_duration(timeout).to_string(),
    };
    // Waits until no save or AOF rewrite runs; returns `INFO persistence` at that point.
    let wait_idle = |client: &mut Client| -> Result<Vec<(String, String)>, RedisError> {
        let mut pause = Duration::from_millis(50);
        loop {
            let info = client
                .info("persistence")
                .map_err(|r| command("INFO persistence", r))?;
            let busy = |k| field(&info, k).is_some_and(|v| v != "0");
            if !busy("rdb_bgsave_in_progress") && !busy("aof_rewrite_in_progress") {
                return Ok(info);
            }
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    };
    loop {
        match client.cmd(&["BGSAVE"]) {
            Ok(Reply::Status(_)) => break,
            // Another save (or an AOF rewrite) runs: it may predate this backup, so wait for
            // it and save again.
            Ok(Reply::Error(e)) if e.contains("in progress") || e.contains("Another child") => {
                wait_idle(client)?;
            }
            Ok(other) => return Err(command("BGSAVE", other.text())),
            Err(e) => return Err(command("BGSAVE", e.to_string())),
        }
    }
    let info = wait_idle(client)?;
    if field(&info, "rdb_last_bgsave_status") != Some("ok") {
        return Err(save_failed(conn, client));
    }
    Ok(())
}

/// The error for a failed save, naming the server's `dir` if it tells.
fn save_failed(conn: &Conn, client: &mut Client) -> RedisError {
    let dir = match client.cmd(&["CONFIG", "GET", "dir"]) {
        Ok(Reply::Array(Some(items))) if items.len() == 2 => items[1].text(),
        _ => "see CONFIG GET dir".into(),
    };
    RedisError::SaveFailed {
        url: conn.public.clone(),
        dir,
    }
}

/// Whether the server's last background save failed (best effort: `false` if unknown).
fn last_save_failed(client: &mut Client) -> bool {
    client
        .info("persistence")
        .is_ok_and(|info| field(&info, "rdb_last_bgsave_status") == Some("err"))
}

/// Opens the RDB just saved, after checking it is that save's file (not a stale one).
fn open_saved_rdb(path: &Path, conn: &Conn, client: &mut Client) -> Result<File, RedisError> {
    let fail = |reason: String| RedisError::RdbFile {
        path: path.display().to_string(),
        reason,
    };
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let lastsave = match client.cmd(&["LASTSAVE"]) {
        Ok(Reply::Int(t)) => t,
        Ok(other) => {
            return Err(RedisError::Command {
                url: conn.public.clone(),
                command: "LASTSAVE".into(),
                reason: conn.scrub(&other.text()),
            });
        }
        Err(e) => {
            return Err(RedisError::Command {
                url: conn.public.clone(),
                command: "LASTSAVE".into(),
                reason: e.to_string(),
            });
        }
    };
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| fail(e.to_string()))?
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // LASTSAVE has one-second resolution and is taken after the rename; allow for that and
    // a little clock difference between a sidecar and the server.
    if modified + 5 < lastsave {
        return Err(fail(format!(
            "it was last written {}s before the save that just finished, so it is not the file this server saves to",
            lastsave - modified
        )));
    }
    Ok(file)
}

/// Starts a replica-style full sync and returns the RDB payload as a reader.
/// `transfer` is `diskless` (the server streamed it as it wrote it) or `disk` (it saved to
/// its disk first).
fn replicate(
    conn: &Conn,
    timeout: Duration,
) -> Result<(Box<dyn Read + Send>, &'static str), SourceError> {
    let fail = |reason: String| RedisError::Replication {
        url: conn.public.clone(),
        reason: conn.scrub(&reason),
    };
    let mut client = conn
        .connect()
        .map_err(|r| fail(format!("cannot connect: {r}")))?;
    // Asks for the RDB only, no command stream after it (Redis 7+); older servers refuse
    // the option and send the stream anyway, which we never read.
    let _ = client.cmd(&["REPLCONF", "rdb-only", "1"]);
    // Lets a server configured for diskless replication stream the RDB without writing it
    // to its disk (the `$EOF:<marker>` framing).
    let _ = client.cmd(&["REPLCONF", "capa", "eof"]);
    client
        .send_bytes(&[b"SYNC"])
        .map_err(|e| fail(e.to_string()))?;
    let mut conn_reader = client.conn;
    // While the server prepares the RDB it sends a newline about every second, so the
    // connection's read timeout only fires on a server that went silent.
    let deadline = Instant::now() + timeout;
    let header = loop {
        let mut byte = [0u8; 1];
        match conn_reader.read(&mut byte) {
            Ok(0) => {
                // A failed disk save makes the server drop its waiting replicas.
                if let Ok(mut client) = conn.connect()
                    && last_save_failed(&mut client)
                {
                    return Err(save_failed(conn, &mut client).into());
                }
                return Err(fail(
                    "the server closed the connection before sending the RDB; check the Redis log (a failed save, or a user not allowed to run SYNC)".into(),
                )
                .into());
            }
            Ok(_) if byte[0] == b'\n' => {
                if Instant::now() >= deadline {
                    return Err(RedisError::SaveTimeout {
                        url: conn.public.clone(),
                        timeout: humantime::format_duration(timeout).to_string(),
                    }
                    .into());
                }
            }
            Ok(_) => {
                let mut line = vec![byte[0]];
                line.extend(read_line(&mut conn_reader).map_err(|e| fail(e.to_string()))?);
                break line;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(fail(format!(
                    "the server sent nothing for {} while preparing the RDB",
                    humantime::format_duration(IO_TIMEOUT)
                ))
                .into());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e.to_string()).into()),
        }
    };
    match header.split_first() {
        Some((b'$', rest)) => rdb::payload(rest, conn_reader).map_err(|r| fail(r).into()),
        Some((b'-', rest)) => Err(fail(format!(
            "the server refused SYNC: {}",
            String::from_utf8_lossy(rest)
        ))
        .into()),
        _ => Err(fail(format!(
            "unexpected answer to SYNC: `{}`",
            String::from_utf8_lossy(&header)
                .chars()
                .take(80)
                .collect::<String>()
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::redis::client::parse_info;

    #[test]
    fn info_and_keyspace() {
        let text = "# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=100\r\ndb10:keys=1,expires=0,avg_ttl=0\r\n";
        let info = parse_info(text);
        assert_eq!(keyspace(&info), vec![(0, 12, 3), (10, 1, 0)]);
        let facts = keyspace_facts(&keyspace(&info));
        assert_eq!(facts["keys"]["db10"], 1);
        assert_eq!(facts["expires"]["db0"], 3);
    }
}
