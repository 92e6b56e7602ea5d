//! Redis: the whole server (every database) as one RDB file.
//!
//! Backup, in the mode the config chooses:
//! - `mode: replication` (default): lifeboat connects as a replica would (`REPLCONF rdb-only 1`,
//!   `SYNC`, as `redis-cli --rdb` does) and streams the RDB the server produces for it, in
//!   either of its two framings (`$<len>` after a disk save, or `$EOF:<marker>` when the
//!   server streams it disklessly). No access to the Redis volume is needed.
//! - `mode: file`: `BGSAVE`, wait until `INFO persistence` says it finished (within
//!   `save_timeout`; a failed save is an error pointing at the Redis log and its `dir`), then
//!   stream the file at `rdb_path`. Redis renames its temporary file over the RDB atomically,
//!   so the file we open is complete and stays stable while we read it.
//!
//! Key and expiring-key counts per database (`INFO keyspace`, taken just before the RDB is
//! produced) and the server version are recorded as facts, for later restore checks. On a
//! server that is written to meanwhile the counts are approximate.
//!
//! Restore into a live server (`--target redis://...`): the RDB is written to a private
//! temporary directory, a throwaway `redis-server` is started on it there (Unix socket only,
//! no TCP port, persistence off), and every key of every database is copied into the target
//! with `DUMP`/`PTTL` → `RESTORE` (pipelined), keeping database numbers and TTLs; Redis
//! functions are copied too. The target must be empty (checked before any data moves); the
//! temporary server and directory are removed on every path, success or error. The restore is
//! not one transaction: if it fails half-way, the target holds part of the keys.
//!
//! The password in the URL never appears in logs or errors: URLs are shown without it and
//! server replies are scrubbed of it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::{Dump, Facts, RestoreOptions, Sink, Source, SourceError, Target};
use crate::model::{SecretString, Timeout};
use serde::Deserialize;

/// Default for `save_timeout`.
pub const DEFAULT_SAVE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A command, or a read of the RDB stream, that gets no answer for this long fails.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Length of the end marker of a diskless RDB transfer (`$EOF:<marker>`).
const EOF_MARK_LEN: usize = 40;
/// Keys fetched per `SCAN` during a restore; their payloads are held in memory at once.
const SCAN_COUNT: &str = "200";
/// Databases of the temporary restore server: more than any source is likely to use, so an
/// RDB from a server with extra databases loads.
const RESTORE_DATABASES: &str = "1024";
/// How long the temporary restore server may take to load the RDB.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis {url}: `{command}` failed: {reason}")]
    Command {
        url: String,
        command: String,
        reason: String,
    },
    #[error(
        "redis {url}: the background save (BGSAVE) failed; check the Redis log, and that its `dir` ({dir}) exists, is writable by Redis and has free space"
    )]
    SaveFailed { url: String, dir: String },
    #[error(
        "redis {url}: the background save did not finish within {timeout}; raise save_timeout, or see INFO persistence and the Redis log"
    )]
    SaveTimeout { url: String, timeout: String },
    #[error(
        "reading the RDB file {path}: {reason}; rdb_path must be the file Redis saves to (its `dir` and `dbfilename`, see CONFIG GET dir), readable by lifeboat"
    )]
    RdbFile { path: String, reason: String },
    #[error("redis {url}: streaming the RDB as a replica: {reason}")]
    Replication { url: String, reason: String },
}

// ---------------------------------------------------------------------------
// Configuration and URLs
// ---------------------------------------------------------------------------

/// Checks a Redis source at config load time; the error names the key to fix.
pub fn check_spec(spec: &RedisSpec) -> Result<(), (&'static str, String)> {
    check_url(spec.url.expose()).map_err(|m| ("url", m))?;
    match (spec.mode, &spec.rdb_path) {
        (RedisMode::File, None) => {
            return Err((
                "rdb_path",
                "`mode: file` needs `rdb_path`, the RDB file as lifeboat sees it (Redis' `dir` and `dbfilename`, e.g. /data/dump.rdb); or use `mode: replication`, which needs no access to the volume".into(),
            ));
        }
        (RedisMode::Replication, Some(_)) => {
            return Err((
                "rdb_path",
                "`rdb_path` is only used with `mode: file`; add `mode: file`, or remove rdb_path to stream the RDB over the network".into(),
            ));
        }
        _ => {}
    }
    if spec.save_timeout.is_some_and(|t| t.0.is_zero()) {
        return Err((
            "save_timeout",
            "must be longer than 0s; write e.g. \"10m\"".into(),
        ));
    }
    Ok(())
}

/// Checks the form of a Redis URL.
pub fn check_url(url: &str) -> Result<(), String> {
    Conn::parse(url).map(|_| ())
}

/// A connection URL split into what may be shown and the credentials.
#[derive(Clone)]
struct Conn {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    /// The URL without its password: for messages.
    public: String,
}

impl Conn {
    fn parse(url: &str) -> Result<Conn, String> {
        let shown = crate::model::redact::url(url);
        const FORM: &str = "write redis://[:PASSWORD@]HOST[:PORT]";
        let mut parsed =
            url::Url::parse(url).map_err(|e| format!("`{shown}` is not a URL ({e}); {FORM}"))?;
        match parsed.scheme() {
            "redis" => {}
            "rediss" => {
                return Err(format!(
                    "`{shown}`: TLS (rediss://) is not supported yet; reach the server over a trusted network or a TLS tunnel and {FORM}"
                ));
            }
            _ => return Err(format!("`{shown}` is not a Redis URL; {FORM}")),
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(format!("`{shown}` names no host; {FORM}")),
        };
        let db = parsed.path().trim_start_matches('/');
        if !(db.is_empty() || db == "0") {
            return Err(format!(
                "`{shown}` selects database `{db}`, but lifeboat backs up and restores every database of a server, each under its own number; drop the `/{db}`"
            ));
        }
        let username = Some(percent_decode(parsed.username())).filter(|u| !u.is_empty());
        let password = parsed.password().map(percent_decode);
        let _ = parsed.set_password(None);
        Ok(Conn {
            port: parsed.port().unwrap_or(6379),
            host,
            username,
            password,
            public: parsed.to_string(),
        })
    }

    fn secrets(&self) -> Vec<&str> {
        self.password.iter().map(String::as_str).collect()
    }

    fn scrub(&self, text: &str) -> String {
        crate::model::redact::scrub(text, &self.secrets())
    }

    /// Connects and authenticates. The error is scrubbed and says what failed.
    fn connect(&self) -> Result<Client, String> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        let mut last = format!("{} resolves to no address", self.host);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                    let mut client = Client::new(Box::new(stream)).map_err(|e| e.to_string())?;
                    self.auth(&mut client)?;
                    return Ok(client);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(self.scrub(&last))
    }

    fn auth(&self, client: &mut Client) -> Result<(), String> {
        let reply = match (&self.username, &self.password) {
            (Some(user), Some(pass)) => client.cmd(&["AUTH", user, pass]),
            (None, Some(pass)) => client.cmd(&["AUTH", pass]),
            // No password: the server's default user, if it needs none. PING proves it.
            _ => client.cmd(&["PING"]),
        };
        match reply {
            Ok(Reply::Error(e)) => Err(format!(
                "authentication failed: {}; check the user and password in the URL",
                self.scrub(&e)
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(self.scrub(&e.to_string())),
        }
    }
}

/// `%XX` sequences decoded (URL user info); anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// A minimal RESP2 client (blocking; run from blocking threads)
// ---------------------------------------------------------------------------

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => String::new(),
            Reply::Array(Some(items)) => {
                items.iter().map(Reply::text).collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// RESP encoding of one command.
fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn bad_data(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad_data("a reply line does not end in CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(b: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_data(format!("`{}` is not a number", String::from_utf8_lossy(b))))
}

fn read_reply(r: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > 16 {
        return Err(bad_data("reply nested too deeply"));
    }
    let line = read_line(r)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| bad_data("an empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    Ok(match kind {
        b'+' => Reply::Status(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Int(parse_int(rest)?),
        b'$' => match parse_int(rest)? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut data = vec![0u8; n as usize + 2];
                r.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(bad_data("a bulk string does not end in CRLF"));
                }
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
        },
        b'*' => match parse_int(rest)? {
            n if n < 0 => Reply::Array(None),
            n => {
                let items = (0..n)
                    .map(|_| read_reply(r, depth + 1))
                    .collect::<io::Result<Vec<_>>>()?;
                Reply::Array(Some(items))
            }
        },
        other => {
            return Err(bad_data(format!(
                "unexpected reply type `{}`",
                char::from(*other)
            )));
        }
    })
}

struct Client {
    conn: BufReader<Box<dyn Stream>>,
}

impl Client {
    fn new(stream: Box<dyn Stream>) -> io::Result<Client> {
        Ok(Client {
            conn: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    fn send_bytes(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::new();
        encode(args, &mut out);
        self.conn.get_mut().write_all(&out)
    }

    fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_bytes(&args)
    }

    fn cmd_bytes(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send_bytes(args)?;
        self.read()
    }

    fn read(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.conn, 0)
    }

    /// Sends all `cmds` at once, then reads their replies in order.
    fn pipeline(&mut self, cmds: &[Vec<&[u8]>]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for c in cmds {
            encode(c, &mut out);
        }
        self.conn.get_mut().write_all(&out)?;
        cmds.iter().map(|_| self.read()).collect()
    }

    /// A command that must not answer with an error; the error says which command failed.
    fn must(&mut self, args: &[&str]) -> Result<Reply, String> {
        match self.cmd(args) {
            Ok(Reply::Error(e)) => Err(format!("`{}`: {e}", args[0])),
            Ok(r) => Ok(r),
            Err(e) => Err(format!("`{}`: {e}", args[0])),
        }
    }

    /// `INFO section` as key → value.
    fn info(&mut self, section: &str) -> Result<Vec<(String, String)>, String> {
        let reply = self.must(&["INFO", section])?;
        Ok(parse_info(&reply.text()))
    }
}

fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(info: &'a [(String, String)], key: &str) -> Option<&'a str> {
    info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Databases of `INFO keyspace` (`db0:keys=1,expires=0,avg_ttl=0`): (index, keys, expires).
fn keyspace(info: &[(String, String)]) -> Vec<(u32, u64, u64)> {
    let mut dbs: Vec<(u32, u64, u64)> = info
        .iter()
        .filter_map(|(k, v)| {
            let db = k.strip_prefix("db")?.parse().ok()?;
            let get = |name: &str| {
                v.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0)
            };
            Some((db, get("keys"), get("expires")))
        })
        .collect();
    dbs.sort();
    dbs
}

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

/// What a verification observes of a running server (blocking; call from a blocking thread).
pub mod observe {
    use super::{Conn, Reply, keyspace};

    /// Key count per database (`{"db0": 12}`), from `INFO keyspace`.
    pub fn keys(url: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let conn = Conn::parse(url)?;
        let mut client = conn.connect()?;
        let info = client.info("keyspace")?;
        Ok(keyspace(&info)
            .into_iter()
            .map(|(db, k, _)| (format!("db{db}"), k.into()))
            .collect())
    }

    /// Reads up to `per_db` random keys of every non-empty database with `DUMP`; returns how
    /// many were read, or which key could not be.
    pub fn sample(url: &str, per_db: usize) -> Result<usize, String> {
        let conn = Conn::parse(url)?;
        let mut client = conn.connect()?;
        let info = client.info("keyspace")?;
        let mut read = 0;
        for (db, keys, _) in keyspace(&info) {
            if keys == 0 {
                continue;
            }
            client.must(&["SELECT", &db.to_string()])?;
            for _ in 0..per_db.min(keys as usize) {
                let key = match client.cmd(&["RANDOMKEY"]).map_err(|e| e.to_string())? {
                    Reply::Bulk(Some(k)) => k,
                    _ => break,
                };
                match client.cmd_bytes(&[b"DUMP", &key]) {
                    Ok(Reply::Bulk(_)) => read += 1,
                    Ok(other) => {
                        return Err(format!(
                            "db{db} key {:?}: DUMP answered {}",
                            String::from_utf8_lossy(&key),
                            other.text()
                        ));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        Ok(read)
    }

    /// Runs one command; its reply as text (an error reply is an `Err`).
    pub fn command(url: &str, args: &[String]) -> Result<String, String> {
        let conn = Conn::parse(url)?;
        let mut client = conn.connect()?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match client.cmd(&args).map_err(|e| e.to_string())? {
            Reply::Error(e) => Err(e),
            reply => Ok(reply.text()),
        }
    }
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
        let reader = Checked {
            inner: reader,
            head: Vec::new(),
            outcome: outcome.clone(),
        };
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
        Some((b'$', rest)) => {
            if let Some(marker) = rest.strip_prefix(b"EOF:") {
                if marker.len() != EOF_MARK_LEN {
                    return Err(fail("the end-of-RDB marker has the wrong length".into()).into());
                }
                let reader = EofMarked {
                    inner: conn_reader,
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
                    .ok_or_else(|| fail("the RDB length is not a number".into()))?;
                let reader = Exactly {
                    inner: conn_reader,
                    left: len,
                };
                Ok((Box::new(reader), "disk"))
            }
        }
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
struct Outcome {
    complete: bool,
    error: Option<String>,
    /// From the RDB header (`REDIS0011` → 11).
    rdb_version: Option<u32>,
}

/// Checks the RDB header and records how reading ended.
struct Checked {
    inner: Box<dyn Read + Send>,
    /// The first bytes, until the 9-byte header is complete.
    head: Vec<u8>,
    outcome: Arc<Mutex<Outcome>>,
}

impl Checked {
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
                let server = LocalServer::start(&program, dir.path()).map_err(&fail)?;
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

/// A throwaway `redis-server` on an RDB, reachable only through a Unix socket in its own
/// directory. Dropping it kills the server (nothing of it is worth saving).
struct LocalServer {
    child: Child,
    socket: PathBuf,
}

/// A throwaway `redis-server` serving `dump.rdb` from its `--dir`, persisting nothing.
pub const SERVE_RDB_ARGS: [&str; 6] = [
    "--dbfilename",
    "dump.rdb",
    "--save",
    "",
    "--appendonly",
    "no",
];

impl LocalServer {
    fn start(program: &Path, dir: &Path) -> Result<LocalServer, String> {
        let socket = dir.join("redis.sock");
        let log = dir.join("redis.log");
        let mut child = Command::new(program)
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(dir)
            .args(SERVE_RDB_ARGS)
            .args(["--databases", RESTORE_DATABASES, "--daemonize", "no"])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {} to read the RDB: {e}; install redis-server or pass --bin-dir",
                    program.display()
                )
            })?;
        let log_tail = || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(5)..].join(" | ")
        };
        let deadline = Instant::now() + LOAD_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the local redis-server could not load the RDB ({status}): {}; if it names an unknown RDB version, install a redis-server at least as new as the snapshot's server",
                    log_tail()
                ));
            }
            if let Ok(stream) = UnixStream::connect(&socket)
                && let Ok(mut client) = Client::new(Box::new(stream))
                && let Ok(Reply::Status(pong)) = client.cmd(&["PING"])
                && pong == "PONG"
            {
                return Ok(LocalServer { child, socket });
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the local redis-server did not finish loading the RDB within {}",
                    humantime::format_duration(LOAD_TIMEOUT)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn connect(&self) -> Result<Client, String> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|e| format!("the local redis-server went away: {e}"))?;
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        Client::new(Box::new(stream)).map_err(|e| e.to_string())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies functions and every key (value and TTL) of every database of `server` into the
/// target; returns the number of keys copied.
fn copy_keys(server: &LocalServer, conn: &Conn) -> Result<u64, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = Conn::parse("redis://:s%2Bcr%40t@cache:6380").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("cache", 6380));
        assert_eq!(c.password.as_deref(), Some("s+cr@t"));
        assert_eq!(c.username, None);
        assert!(!c.public.contains("cr"), "{}", c.public);
        let c = Conn::parse("redis://backup:pw@10.0.0.1/0").unwrap();
        assert_eq!(c.username.as_deref(), Some("backup"));
        assert_eq!(c.port, 6379);
        for (bad, says) in [
            ("rediss://h", "TLS"),
            ("http://h", "not a Redis URL"),
            ("redis://h/3", "every database"),
            ("nonsense", "not a URL"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = check_url("rediss://:hunter22@h").unwrap_err();
        assert!(!e.contains("hunter22"), "{e}");
    }

    #[test]
    fn replies_parse() {
        let raw = b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n*0\r\n*-1\r\n";
        let mut r = &raw[..];
        let got: Vec<Reply> = (0..7).map(|_| read_reply(&mut r, 0).unwrap()).collect();
        assert_eq!(
            got,
            vec![
                Reply::Status("OK".into()),
                Reply::Error("ERR bad".into()),
                Reply::Int(42),
                Reply::Bulk(Some(b"a\r\n".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"x".to_vec())),
                    Reply::Array(Some(vec![]))
                ])),
                Reply::Array(None),
            ]
        );
        assert!(read_reply(&mut &b""[..], 0).is_err());
        assert!(read_reply(&mut &b"$5\r\nab"[..], 0).is_err());
    }

    #[test]
    fn info_and_keyspace() {
        let text = "# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=100\r\ndb10:keys=1,expires=0,avg_ttl=0\r\n";
        let info = parse_info(text);
        assert_eq!(keyspace(&info), vec![(0, 12, 3), (10, 1, 0)]);
        let facts = keyspace_facts(&keyspace(&info));
        assert_eq!(facts["keys"]["db10"], 1);
        assert_eq!(facts["expires"]["db0"], 3);
    }

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

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("p+q"), "p+q");
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `redis://[[user]:password@]host[:port]`; the whole server (every database) is backed up.
    pub url: SecretString,
    /// How the RDB reaches lifeboat.
    #[serde(default)]
    pub mode: RedisMode,
    /// `mode: file`: the RDB file as lifeboat sees it (Redis' `dir`/`dbfilename`).
    pub rdb_path: Option<PathBuf>,
    /// How long the server may take to write its RDB (default 10m).
    pub save_timeout: Option<Timeout>,
}

/// Where a Redis backup reads the RDB from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// `BGSAVE`, then read the file at `rdb_path` (a sidecar or Job mounting the volume).
    File,
    /// Stream the RDB over the network as a replica would (`redis-cli --rdb`).
    #[default]
    Replication,
}

/// Redis, through its RDB.
pub struct RedisKind;
pub static KIND: RedisKind = RedisKind;

impl super::Spec for RedisSpec {
    fn kind(&self) -> &'static dyn super::Kind {
        &KIND
    }
    fn validate(&self) -> Result<(), super::SpecError> {
        check_spec(self).map_err(|(key, m)| super::SpecError::new(key, m))
    }
    fn source(&self, name: &str, _kube: Arc<dyn crate::kube::KubeApi>) -> Box<dyn Source> {
        Box::new(Redis::new(name, self))
    }
}

#[async_trait]
impl super::Kind for RedisKind {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn target(
        &self,
        to: &super::RestoreTo,
        opts: &RestoreOptions,
        _source: Option<&super::SourceSpec>,
        _kube: Arc<dyn crate::kube::KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError> {
        match to {
            super::RestoreTo::Url(url) => Ok(Box::new(RedisTarget::new(url, opts)?)),
            _ => Err(super::unsupported(
                to,
                "redis snapshots restore into --target redis://... (or --to-file for the RDB file)",
            )),
        }
    }
}
