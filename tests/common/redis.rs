// Throwaway Redis servers for the integration tests, and what the tests need to fill and
// compare them: `RedisServer` (redis-server on a free loopback port in a temp dir; Drop
// kills it and removes the dir), `load_every_type` and `contents`. They talk to the servers
// with lifeboat's own RESP client (`lifeboat::kinds::redis::client`), not a copy of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use lifeboat::kinds::redis::client::Conn;
use tempfile::TempDir;

use super::servers::{bin_on_path, free_port};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: u32 = 3;

pub use lifeboat::kinds::redis::client::{Client, Reply};

/// Accessors the tests use on replies; each panics on a reply of another type.
pub trait ReplyExt {
    fn int(&self) -> i64;
    fn items(self) -> Vec<Reply>;
    fn bytes(self) -> Vec<u8>;
}

impl ReplyExt for Reply {
    fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    fn items(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(items)) => items,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            Reply::Bulk(Some(b)) => b,
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }
}

/// A redis-server on 127.0.0.1 with its `dir` in a temp dir. Dropping it kills it.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    password: Option<String>,
}

impl RedisServer {
    /// Starts a server; `extra` are further `--name value` arguments.
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::start_with(extra, None, None)
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub fn start_with_password(extra: &[&str], password: &str) -> RedisServer {
        Self::start_with(extra, Some(password), None)
    }

    /// Starts a server that loads the RDB file `rdb` (copied into its dir).
    pub fn start_on_rdb(rdb: &Path) -> RedisServer {
        Self::start_with(&[], None, Some(rdb))
    }

    fn start_with(extra: &[&str], password: Option<&str>, rdb: Option<&Path>) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-redis-test-")
            .tempdir()
            .expect("create a temp dir for redis");
        let mut server = RedisServer {
            port: 0,
            child: None,
            dir,
            password: password.map(str::to_string),
        };
        if let Some(rdb) = rdb {
            std::fs::copy(rdb, server.rdb_path()).expect("copy the RDB into the server's dir");
        }
        let mut attempt = 1;
        loop {
            server.port = free_port();
            match server.spawn_and_wait(extra) {
                Ok(()) => return server,
                Err(why) => {
                    server.stop();
                    let log = server.log_tail();
                    if attempt < START_ATTEMPTS && log.contains("in use") {
                        attempt += 1;
                        continue;
                    }
                    panic!("redis-server failed to start: {why}\n--- log ---\n{log}");
                }
            }
        }
    }

    fn spawn_and_wait(&mut self, extra: &[&str]) -> Result<(), String> {
        let program = bin_on_path("redis-server").unwrap_or_else(|| PathBuf::from("redis-server"));
        let mut cmd = Command::new(program);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(lifeboat::kinds::redis::SERVE_RDB_ARGS)
            .arg("--logfile")
            .arg(self.log_file())
            .args(["--daemonize", "no"]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("just stored");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited early: {status}"));
            }
            if let Ok(mut c) = self.client()
                && matches!(c.cmd(&["PING"]), Ok(Reply::Status(s)) if s == "PONG")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("no PONG in time".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{signal} {}", self.pid());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (with `:password@` if the server has one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The server's `dir`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the server saves its RDB.
    pub fn rdb_path(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A new authenticated connection.
    pub fn client(&self) -> Result<Client, String> {
        Conn::parse(&self.url())?.connect()
    }

    /// Runs one command; panics on an I/O error (not on an error reply).
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.client()
            .and_then(|mut c| c.cmd(args).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Kills the server. Idempotent; the dir stays until drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs commands (as bytes) in one pipeline and panics on any error reply.
pub fn run_all(c: &mut Client, cmds: &[Vec<Vec<u8>>]) {
    let refs: Vec<Vec<&[u8]>> = cmds
        .iter()
        .map(|c| c.iter().map(Vec::as_slice).collect())
        .collect();
    for (c, r) in cmds.iter().zip(c.pipeline(&refs).expect("pipeline")) {
        if let Reply::Error(e) = r {
            panic!("{:?}: {e}", String::from_utf8_lossy(&c[0]));
        }
    }
}

fn b(s: impl AsRef<[u8]>) -> Vec<u8> {
    s.as_ref().to_vec()
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough for RDB LZF.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Fills database `db` with `per_type` keys of each type (string, hash, list, set, zset,
/// stream), every 10th with a one-hour TTL, binary and non-ASCII keys and values, and a few
/// big values (multi-MiB string, large collections) so all encodings and a multi-chunk RDB
/// are covered. Returns the number of keys written.
pub fn load_every_type(server: &RedisServer, db: u32, per_type: usize) -> usize {
    let mut c = server.client().expect("connect");
    run_all(&mut c, &[vec![b("SELECT"), b(db.to_string())]]);
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..per_type {
        let tag = format!("{db}:{i}");
        cmds.push(vec![
            b("SET"),
            b(format!("str:{tag}")),
            b(format!("wert-{i}-Zoë-東京")),
        ]);
        cmds.push(vec![
            b("HSET"),
            b(format!("hash:{tag}")),
            b("f1"),
            b(i.to_string()),
            b("f2"),
            noise(i as u64, 16),
        ]);
        cmds.push(vec![
            b("RPUSH"),
            b(format!("list:{tag}")),
            b("a"),
            b(i.to_string()),
            b("c"),
        ]);
        cmds.push(vec![
            b("SADD"),
            b(format!("set:{tag}")),
            b("x"),
            b("y"),
            b(i.to_string()),
        ]);
        cmds.push(vec![
            b("ZADD"),
            b(format!("zset:{tag}")),
            b("1.5"),
            b("m1"),
            b(format!("{}", i as f64 / 3.0)),
            b("m2"),
        ]);
        cmds.push(vec![
            b("XADD"),
            b(format!("stream:{tag}")),
            b(format!("{}-1", i + 1)),
            b("temp"),
            b(i.to_string()),
        ]);
        if i % 10 == 0 {
            for kind in ["str", "hash", "list", "set", "zset", "stream"] {
                cmds.push(vec![b("EXPIRE"), b(format!("{kind}:{tag}")), b("3600")]);
            }
        }
    }
    // Binary key and value.
    let mut bin_key = b"bin:\x00\xff\xfe".to_vec();
    bin_key.extend_from_slice(db.to_string().as_bytes());
    cmds.push(vec![b("SET"), bin_key, noise(7, 300)]);
    // Big values: a 3 MiB string and collections past the listpack limits.
    cmds.push(vec![
        b("SET"),
        b(format!("big:str:{db}")),
        noise(99, 3 << 20),
    ]);
    let mut hset = vec![b("HSET"), b(format!("big:hash:{db}"))];
    let mut rpush = vec![b("RPUSH"), b(format!("big:list:{db}"))];
    let mut sadd = vec![b("SADD"), b(format!("big:set:{db}"))];
    let mut zadd = vec![b("ZADD"), b(format!("big:zset:{db}"))];
    for j in 0..2000 {
        hset.extend([b(format!("field{j}")), noise(j, 40)]);
        rpush.push(noise(j + 5000, 30));
        sadd.push(b(format!("member-{j}")));
        zadd.extend([b(j.to_string()), b(format!("z{j}"))]);
    }
    cmds.extend([hset, rpush, sadd, zadd]);
    let extra = 6; // binary key, big string, 4 big collections
    cmds.push(vec![
        b("PEXPIRE"),
        b(format!("big:hash:{db}")),
        b("7200000"),
    ]);
    for chunk in cmds.chunks(2000) {
        run_all(&mut c, chunk);
    }
    per_type * 6 + extra
}

/// One key's type, canonical value, and TTL in seconds (-1 = none).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub kind: String,
    pub value: String,
    pub ttl: i64,
}

/// Every key of database `db`: type, value (collections sorted where unordered), TTL.
pub fn contents(server: &RedisServer, db: u32) -> BTreeMap<Vec<u8>, KeyState> {
    let mut c = server.client().expect("connect");
    c.cmd(&["SELECT", &db.to_string()]).expect("select");
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let mut parts = c
            .cmd(&["SCAN", &cursor, "COUNT", "1000"])
            .expect("scan")
            .items();
        let batch = parts.pop().expect("keys").items();
        cursor = parts.pop().expect("cursor").text();
        keys.extend(batch.into_iter().map(Reply::bytes));
        if cursor == "0" {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let meta: Vec<Vec<&[u8]>> = chunk
            .iter()
            .flat_map(|k| [vec![&b"TYPE"[..], k], vec![&b"TTL"[..], k]])
            .collect();
        let replies = c.pipeline(&meta).expect("type/ttl");
        let mut reads: Vec<Vec<&[u8]>> = Vec::new();
        let mut kinds = Vec::new();
        for (k, pair) in chunk.iter().zip(replies.chunks(2)) {
            let kind = pair[0].text();
            let read: Vec<&[u8]> = match kind.as_str() {
                "string" => vec![b"GET", k],
                "hash" => vec![b"HGETALL", k],
                "list" => vec![b"LRANGE", k, b"0", b"-1"],
                "set" => vec![b"SMEMBERS", k],
                "zset" => vec![b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"],
                "stream" => vec![b"XRANGE", k, b"-", b"+"],
                other => panic!("unexpected type {other}"),
            };
            reads.push(read);
            kinds.push((kind, pair[1].int()));
        }
        let values = c.pipeline(&reads).expect("values");
        for ((k, (kind, ttl)), v) in chunk.iter().zip(kinds).zip(values) {
            let value = match (kind.as_str(), v) {
                ("hash", r) => {
                    let items: Vec<String> = r.items().iter().map(digest).collect();
                    let mut pairs: Vec<String> = items.chunks(2).map(|p| p.join("=")).collect();
                    pairs.sort();
                    pairs.join(",")
                }
                ("set", r) => {
                    let mut items: Vec<String> = r.items().iter().map(digest).collect();
                    items.sort();
                    items.join(",")
                }
                (_, r) => digest(&r),
            };
            out.insert(k.clone(), KeyState { kind, value, ttl });
        }
    }
    out
}

/// A reply as comparable text; long bulk strings by length and a checksum.
fn digest(r: &Reply) -> String {
    match r {
        Reply::Bulk(Some(b)) if b.len() > 256 => {
            let sum = b
                .iter()
                .fold(0u64, |h, &x| h.wrapping_mul(1_099_511_628_211) ^ x as u64);
            format!("<{} bytes {sum:x}>", b.len())
        }
        Reply::Bulk(Some(b)) => format!("{b:?}"),
        Reply::Array(Some(items)) => format!(
            "[{}]",
            items.iter().map(digest).collect::<Vec<_>>().join(";")
        ),
        other => other.text(),
    }
}

/// Asserts two databases hold the same keys, values and types; TTLs present on the same
/// keys and within `slack` seconds of each other.
pub fn assert_same(a: &BTreeMap<Vec<u8>, KeyState>, b: &BTreeMap<Vec<u8>, KeyState>, slack: i64) {
    assert_eq!(a.len(), b.len(), "key counts differ");
    for (k, x) in a {
        let y = b
            .get(k)
            .unwrap_or_else(|| panic!("key {:?} missing", String::from_utf8_lossy(k)));
        let name = String::from_utf8_lossy(k);
        assert_eq!(x.kind, y.kind, "type of {name}");
        assert_eq!(x.value, y.value, "value of {name}");
        assert_eq!(
            x.ttl < 0,
            y.ttl < 0,
            "TTL presence of {name}: {} vs {}",
            x.ttl,
            y.ttl
        );
        assert!(
            (x.ttl - y.ttl).abs() <= slack,
            "TTL of {name}: {} vs {}",
            x.ttl,
            y.ttl
        );
    }
}
