//! etcd: a snapshot through the maintenance API (`Maintenance.Snapshot`, streamed), restored
//! into a new data directory the way `etcdutl snapshot restore` does.
//!
//! # The snapshot stream
//! etcd sends its bbolt database followed by 32 bytes: the SHA-256 of the database. The dump
//! keeps that trailer in the stored bytes (so stock `etcdctl snapshot restore` checks it too)
//! and checks it while streaming ([`TrailerCheck`]): on a mismatch the reader fails at the end
//! of the stream, so the pipeline fails and no manifest is written.
//!
//! # Facts
//! `etcd_version` and `db_size` come from `Status`. `revision` and `keys` (live keys) come from
//! a count over the whole keyspace taken just before the snapshot request and again once its
//! first chunk arrived (the server has taken its point-in-time copy by then). If both counts
//! saw the same revision, the snapshot holds exactly that revision and key count; otherwise
//! etcd was written meanwhile and the facts say `revision_exact: false`, with `revision` and
//! `keys` from the first count and `revision_max` from the second.
//!
//! # Restore
//! `--to-dir DIR` (must not exist or be empty): the snapshot is written to a temporary file
//! beside DIR, `etcdutl snapshot restore` (or, where only etcd 3.4 is installed,
//! `ETCDCTL_API=3 etcdctl snapshot restore`) builds a data directory beside DIR, and that is
//! renamed to DIR at the end. The temporaries are removed whatever happens, so DIR either
//! holds a complete data directory or is left as it was.
//!
//! The password never reaches a log, an error or a command line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{Client, ConnectOptions, GetOptions};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::process::Process;
use super::{Dump, Facts, RestoreOptions, Sink, Source, SourceError, Target};
use crate::model::{SecretString, Timeout};
use serde::Deserialize;

/// etcd's client port, used when an endpoint names none.
const DEFAULT_PORT: u16 = 2379;
/// Default for `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Length of the SHA-256 trailer etcd appends to a snapshot.
const TRAILER: usize = 32;
/// Snapshot chunks (etcd sends 32 KiB each) waiting between the gRPC task and the reader.
const QUEUE: usize = 32;
/// Default member name and peer URL of a restored data directory (as `etcdutl`'s defaults).
pub const DEFAULT_NAME: &str = "default";
pub const DEFAULT_PEER_URL: &str = "http://localhost:2380";

/// Checks an etcd source at config load time; errors are (key, message).
pub fn check_spec(spec: &EtcdSpec) -> Result<(), (String, String)> {
    if spec.endpoints.is_empty() {
        return Err((
            "endpoints".into(),
            "no endpoints; list the client URLs of the etcd members, e.g. [\"http://etcd-0:2379\"]"
                .into(),
        ));
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        let endpoint =
            Endpoint::parse(e, spec.tls.is_some()).map_err(|m| (format!("endpoints[{i}]"), m))?;
        if endpoint.tls && spec.tls.is_none() {
            return Err((
                format!("endpoints[{i}]"),
                format!(
                    "`{e}` is an https endpoint; add `tls: {{ ca_file: /path/to/ca.pem }}` (and cert_file/key_file if etcd requires client certificates)"
                ),
            ));
        }
        if !endpoint.tls && spec.tls.is_some() {
            return Err((
                format!("endpoints[{i}]"),
                format!(
                    "`{e}` is a plain http endpoint but `tls` is set; write https://... (or HOST:PORT) or remove `tls`"
                ),
            ));
        }
    }
    if let Some(tls) = &spec.tls
        && tls.cert_file.is_some() != tls.key_file.is_some()
    {
        return Err((
            "tls".into(),
            "set both cert_file and key_file (a client certificate needs its key), or neither"
                .into(),
        ));
    }
    match (&spec.user, &spec.password) {
        (Some(u), _) if u.is_empty() => Err(("user".into(), "is empty".into())),
        (None, Some(_)) => Err((
            "password".into(),
            "a password needs a `user`; add `user: NAME` or remove the password".into(),
        )),
        _ => Ok(()),
    }
}

/// One etcd client URL, normalised to `scheme://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    url: String,
    host: String,
    port: u16,
    tls: bool,
}

impl Endpoint {
    /// `tls_default`: the scheme of an endpoint written without one.
    fn parse(s: &str, tls_default: bool) -> Result<Endpoint, String> {
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else if tls_default {
            format!("https://{s}")
        } else {
            format!("http://{s}")
        };
        let bad = |why: String| {
            format!(
                "`{s}` is not an etcd endpoint ({why}); write http://HOST:PORT, https://HOST:PORT or HOST:PORT"
            )
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(bad(format!("scheme `{other}`"))),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials in the URL; use the `user` and `password` keys".into(),
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(bad("it has a path".into()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?
            .to_string();
        // `Url` drops a port equal to the scheme's default (80/443); keep what was written.
        let port = url
            .port()
            .or_else(|| explicit_port(&with_scheme))
            .unwrap_or(DEFAULT_PORT);
        let scheme = if tls { "https" } else { "http" };
        Ok(Endpoint {
            url: format!("{scheme}://{host}:{port}"),
            // Without the brackets of an IPv6 literal, for the TCP probe.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls,
        })
    }
}

/// The port written after the host of `scheme://host:port[/]`, if any (80 and 443 included).
fn explicit_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1.trim_end_matches('/');
    let (_, port) = rest.rsplit_once(':')?;
    port.parse().ok()
}

/// How to reach etcd: endpoints and connect options, built once per source.
struct Conn {
    endpoints: Vec<Endpoint>,
    options: ConnectOptions,
    timeout: Duration,
    /// Scrubbed from anything shown.
    secrets: Vec<String>,
}

pub struct Etcd {
    name: String,
    spec: EtcdSpec,
}

impl Etcd {
    pub fn new(name: &str, spec: &EtcdSpec) -> Self {
        Etcd {
            name: name.to_string(),
            spec: spec.clone(),
        }
    }

    fn unreachable(&self, reason: String) -> SourceError {
        SourceError::Unreachable {
            source_name: self.name.clone(),
            reason,
        }
    }

    fn endpoint_list(&self) -> String {
        self.spec.endpoints.join(", ")
    }

    fn conn(&self) -> Result<Conn, SourceError> {
        check_spec(&self.spec).map_err(|(key, m)| self.unreachable(format!("{key}: {m}")))?;
        let tls_default = self.spec.tls.is_some();
        let endpoints = self
            .spec
            .endpoints
            .iter()
            .map(|e| Endpoint::parse(e, tls_default))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| self.unreachable(m))?;
        let timeout = self.spec.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        let mut secrets = Vec::new();
        if let Some(user) = &self.spec.user {
            let password = self
                .spec
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            if !password.is_empty() {
                secrets.push(password.clone());
            }
            options = options.with_user(user.clone(), password);
        }
        if let Some(tls) = &self.spec.tls {
            let read = |what: &str, path: &Path| {
                std::fs::read(path).map_err(|e| {
                    self.unreachable(format!(
                        "cannot read tls.{what} {}: {e}; check the path and its permissions",
                        path.display()
                    ))
                })
            };
            let mut config = etcd_client::TlsOptions::new().ca_certificate(
                etcd_client::Certificate::from_pem(read("ca_file", &tls.ca_file)?),
            );
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                config = config.identity(etcd_client::Identity::from_pem(
                    read("cert_file", cert)?,
                    read("key_file", key)?,
                ));
            }
            options = options.with_tls(config);
        }
        Ok(Conn {
            endpoints,
            options,
            timeout,
            secrets,
        })
    }

    /// Connects and proves etcd answers. A TCP probe first: with no member listening, the
    /// gRPC client would wait for the timeout and then only say "timed out".
    async fn connect(&self) -> Result<(Client, Conn), SourceError> {
        let conn = self.conn()?;
        let mut refused = Vec::new();
        for e in &conn.endpoints {
            let probe = tokio::time::timeout(
                conn.timeout,
                tokio::net::TcpStream::connect((e.host.as_str(), e.port)),
            )
            .await;
            match probe {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => refused.push(format!("{}: {err}", e.url)),
                Err(_) => refused.push(format!(
                    "{}: no answer within {}",
                    e.url,
                    humantime::format_duration(conn.timeout)
                )),
            }
        }
        if refused.len() == conn.endpoints.len() {
            return Err(self.unreachable(format!(
                "no etcd endpoint accepts connections ({})",
                refused.join("; ")
            )));
        }
        let urls: Vec<&str> = conn.endpoints.iter().map(|e| e.url.as_str()).collect();
        let connected = tokio::time::timeout(
            conn.timeout,
            Client::connect(&urls, Some(conn.options.clone())),
        )
        .await;
        let client = match connected {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.request_failed(&conn, "connecting", &e.to_string())),
            Err(_) => return Err(self.timed_out(&conn, "connecting")),
        };
        Ok((client, conn))
    }

    fn request_failed(&self, conn: &Conn, what: &str, err: &str) -> SourceError {
        let secrets: Vec<&str> = conn.secrets.iter().map(String::as_str).collect();
        let err = crate::model::redact::scrub(err, &secrets);
        let hint = if err.contains("authenticat") || err.contains("permission denied") {
            "check `user` and `password` (snapshots need the root role)"
        } else if err.to_ascii_lowercase().contains("tls")
            || err.contains("certificate")
            || err.contains("transport error")
        {
            "check the endpoints' scheme and the `tls` files"
        } else {
            "check `endpoints` and that etcd is healthy"
        };
        self.unreachable(format!(
            "etcd at {} failed while {what}: {err}; {hint}",
            self.endpoint_list()
        ))
    }

    fn timed_out(&self, conn: &Conn, what: &str) -> SourceError {
        self.unreachable(format!(
            "etcd at {} did not answer within {} while {what}; check that the endpoints are etcd client URLs (with the right http/https scheme) and that etcd has a leader, or raise `timeout`",
            self.endpoint_list(),
            humantime::format_duration(conn.timeout)
        ))
    }
}

/// Revision and live key count of the etcd at `endpoint` (a verification sandbox).
pub async fn observe(endpoint: &str, timeout: Duration) -> Result<(i64, i64), String> {
    let mut client = tokio::time::timeout(timeout, Client::connect([endpoint], None))
        .await
        .map_err(|_| format!("etcd at {endpoint} did not answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    count(&mut client, timeout).await
}

/// Revision and live key count at one moment (one range request over the whole keyspace).
async fn count(client: &mut Client, timeout: Duration) -> Result<(i64, i64), String> {
    let resp = tokio::time::timeout(
        timeout,
        client.get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        ),
    )
    .await
    .map_err(|_| "no answer to a key count".to_string())?
    .map_err(|e| e.to_string())?;
    let revision = resp.header().map_or(0, |h| h.revision());
    Ok((revision, resp.count()))
}

#[async_trait]
impl Source for Etcd {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    async fn preflight(&self) -> Result<Facts, SourceError> {
        let (mut client, conn) = self.connect().await?;
        let status = tokio::time::timeout(conn.timeout, client.status())
            .await
            .map_err(|_| self.timed_out(&conn, "asking its status"))?
            .map_err(|e| self.request_failed(&conn, "asking its status", &e.to_string()))?;
        let mut facts = Facts::new();
        facts.insert("etcd_version".into(), status.version().into());
        facts.insert("db_size".into(), status.db_size().into());
        Ok(facts)
    }

    async fn dump(&self) -> Result<Dump, SourceError> {
        let (mut client, conn) = self.connect().await?;
        let (rev_before, keys_before) = count(&mut client, conn.timeout)
            .await
            .map_err(|e| self.request_failed(&conn, "counting keys", &e))?;
        let stream = tokio::time::timeout(conn.timeout, client.snapshot())
            .await
            .map_err(|_| self.timed_out(&conn, "starting the snapshot"))?
            .map_err(|e| self.request_failed(&conn, "starting the snapshot", &e.to_string()))?;

        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
        let (facts_tx, facts_rx) = oneshot::channel::<Result<Facts, String>>();
        let pump = Pump {
            client,
            stream,
            tx,
            timeout: conn.timeout,
            secrets: conn.secrets.clone(),
            rev_before,
            keys_before,
        };
        tokio::spawn(async move {
            let _ = facts_tx.send(pump.run().await);
        });
        let name = self.name.clone();
        Ok(Dump {
            reader: Box::new(TrailerCheck::new(ChunkReader { rx, current: None })),
            finish: Box::new(move || {
                let fail = |reason: String| SourceError::Unreachable {
                    source_name: name.clone(),
                    reason,
                };
                match facts_rx.blocking_recv() {
                    Ok(Ok(facts)) => Ok(facts),
                    Ok(Err(reason)) => Err(fail(reason)),
                    Err(_) => Err(fail("the snapshot stream task ended unexpectedly".into())),
                }
            }),
            stop: None,
        })
    }
}

/// Moves snapshot chunks from the gRPC stream into the bounded channel the reader drains,
/// and works out the revision facts (see the module doc).
struct Pump {
    client: Client,
    stream: etcd_client::SnapshotStreaming,
    tx: mpsc::Sender<io::Result<Bytes>>,
    timeout: Duration,
    secrets: Vec<String>,
    rev_before: i64,
    keys_before: i64,
}

impl Pump {
    async fn run(mut self) -> Result<Facts, String> {
        let mut after: Option<(i64, i64)> = None;
        let mut sent = 0u64;
        let result = loop {
            let next = tokio::select! {
                // The reader was dropped (the backup failed or was cancelled): stop; dropping
                // the stream cancels the RPC.
                _ = self.tx.closed() => break Err("the backup stopped reading the snapshot".to_string()),
                next = tokio::time::timeout(self.timeout, self.stream.message()) => next,
            };
            let message = match next {
                Err(_) => {
                    break Err(format!(
                        "etcd sent no snapshot data for {} after {sent} bytes; check the member's health, or raise `timeout`",
                        humantime::format_duration(self.timeout)
                    ));
                }
                Ok(Err(e)) => {
                    let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                    break Err(format!(
                        "the snapshot stream broke after {sent} bytes: {}",
                        crate::model::redact::scrub(&e.to_string(), &secrets)
                    ));
                }
                Ok(Ok(None)) => break Ok(()),
                Ok(Ok(Some(m))) => m,
            };
            if after.is_none() {
                // The server took its point-in-time copy before sending the first chunk.
                match count(&mut self.client, self.timeout).await {
                    Ok(c) => after = Some(c),
                    Err(e) => break Err(format!("counting keys after the snapshot started: {e}")),
                }
            }
            let blob = Bytes::copy_from_slice(message.blob());
            sent += blob.len() as u64;
            if self.tx.send(Ok(blob)).await.is_err() {
                break Err("the backup stopped reading the snapshot".to_string());
            }
        };
        if let Err(reason) = &result {
            // Make the reader fail too (if it is still there), rather than see a clean end.
            let _ = self.tx.send(Err(io::Error::other(reason.clone()))).await;
        }
        drop(self.tx);
        result?;
        let (rev_after, _) = after.ok_or("etcd sent an empty snapshot")?;
        let mut facts = Facts::new();
        facts.insert("revision".into(), self.rev_before.into());
        facts.insert("keys".into(), self.keys_before.into());
        let exact = rev_after == self.rev_before;
        facts.insert("revision_exact".into(), exact.into());
        if !exact {
            tracing::warn!(
                revision_before = self.rev_before,
                revision_after = rev_after,
                "etcd was written while the snapshot started; its revision lies between the two"
            );
            facts.insert("revision_max".into(), rev_after.into());
        }
        Ok(facts)
    }
}

/// The chunks from [`Pump`], as a blocking `Read` (call it from a blocking thread).
struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Option<Bytes>,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(cur) = &mut self.current
                && !cur.is_empty()
            {
                let n = out.len().min(cur.len());
                out[..n].copy_from_slice(&cur.split_to(n));
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = Some(b),
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------------------------

/// Restores an etcd snapshot into a new data directory (`--to-dir`).
pub struct EtcdTarget {
    dir: PathBuf,
    name: String,
    peer_url: String,
    bin_dir: Option<PathBuf>,
}

impl EtcdTarget {
    pub fn new(dir: &Path, opts: &RestoreOptions) -> Result<Self, SourceError> {
        let target = EtcdTarget {
            dir: dir.to_path_buf(),
            name: opts
                .etcd_name
                .clone()
                .unwrap_or_else(|| DEFAULT_NAME.into()),
            peer_url: opts
                .etcd_peer_url
                .clone()
                .unwrap_or_else(|| DEFAULT_PEER_URL.into()),
            bin_dir: opts.bin_dir.clone(),
        };
        let name_ok = !target.name.is_empty()
            && !target
                .name
                .contains(|c: char| c == '=' || c == ',' || c.is_whitespace());
        if !name_ok {
            return Err(target.fail(format!(
                "`{}` is not a usable member name (--etcd-name); use letters, digits, `-` or `.`",
                target.name
            )));
        }
        let peer_ok = url::Url::parse(&target.peer_url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        }) && !target.peer_url.contains(',');
        if !peer_ok {
            return Err(target.fail(format!(
                "`{}` is not a peer URL (--etcd-peer-url); write e.g. http://10.0.0.5:2380",
                target.peer_url
            )));
        }
        Ok(target)
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Target {
            target: format!("directory {}", self.dir.display()),
            reason,
        }
    }

    /// `etcdutl` (etcd 3.5+), else `etcdctl` (etcd 3.4 restores with `ETCDCTL_API=3`).
    fn tool(&self) -> Result<(PathBuf, bool), SourceError> {
        for (program, is_etcdutl) in [("etcdutl", true), ("etcdctl", false)] {
            if let Some(path) = super::find_program(self.bin_dir.as_deref(), program) {
                return Ok((path, is_etcdutl));
            }
        }
        Err(self.fail(format!(
            "neither etcdutl nor etcdctl was found in {}; install etcd's tools (Debian: etcd-client) or pass --bin-dir",
            match &self.bin_dir {
                Some(d) => d.display().to_string(),
                None => "PATH".into(),
            }
        )))
    }

    /// `DIR`'s parent and file name; temporaries go beside `DIR` so the final rename is atomic.
    fn sibling(&self, suffix: &str) -> Result<PathBuf, SourceError> {
        let name = self
            .dir
            .file_name()
            .ok_or_else(|| self.fail("name a directory, not `/` or `..`".into()))?;
        let mut file = std::ffi::OsString::from(".");
        file.push(name);
        file.push(format!(".lifeboat-{}{suffix}", std::process::id()));
        Ok(self.dir.with_file_name(file))
    }

    fn check_dir(&self) -> Result<(), SourceError> {
        super::files::check_empty_dir(&self.dir).map_err(|r| self.fail(r))
    }
}

/// Removes the restore's temporaries (snapshot file, unfinished data directory) when dropped.
struct Temporaries {
    file: PathBuf,
    dir: PathBuf,
}

impl Drop for Temporaries {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The snapshot file being written; flushes and fsyncs when dropped (the end of input) and
/// records a failure there for `finish` to report.
struct SnapshotFile {
    file: BufWriter<File>,
    failed: Arc<AtomicBool>,
}

impl Write for SnapshotFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let synced = self
            .file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all());
        if synced.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Target for EtcdTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        self.check_dir()?;
        self.sibling("")?;
        self.tool()?;
        Ok(())
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        self.check_dir()?;
        let (tool, is_etcdutl) = self.tool()?;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| self.fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let temps = Temporaries {
            file: self.sibling(".snapshot.db")?,
            dir: self.sibling(".data")?,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temps.file)
            .map_err(|e| self.fail(format!("cannot create {}: {e}", temps.file.display())))?;
        let failed = Arc::new(AtomicBool::new(false));
        let writer = SnapshotFile {
            file: BufWriter::with_capacity(1 << 20, file),
            failed: failed.clone(),
        };
        let dir = self.dir.clone();
        let name = self.name.clone();
        let peer_url = self.peer_url.clone();
        Ok(Sink {
            writer: Box::new(writer),
            finish: Box::new(move || {
                let fail = |reason: String| SourceError::Target {
                    target: format!("directory {}", dir.display()),
                    reason,
                };
                // The writer was dropped (flushed and synced) before finish is called.
                if failed.load(Ordering::SeqCst) {
                    return Err(fail(format!(
                        "writing the snapshot to {} failed; check free space there",
                        temps.file.display()
                    )));
                }
                let mut cmd = Command::new(&tool);
                if !is_etcdutl {
                    cmd.env("ETCDCTL_API", "3");
                }
                cmd.args(["snapshot", "restore"])
                    .arg(&temps.file)
                    .arg("--data-dir")
                    .arg(&temps.dir)
                    .arg("--name")
                    .arg(&name)
                    .arg("--initial-cluster")
                    .arg(format!("{name}={peer_url}"))
                    .arg("--initial-advertise-peer-urls")
                    .arg(&peer_url)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null());
                Process::spawn(cmd, Vec::new())?.wait()?;
                super::files::move_into_place(&temps.dir, &dir).map_err(fail)?;
                drop(temps);
                Ok(())
            }),
        })
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

    fn spec(endpoints: &[&str]) -> EtcdSpec {
        EtcdSpec {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            tls: None,
            user: None,
            password: None,
            timeout: None,
        }
    }

    #[test]
    fn endpoints_are_normalised() {
        let e = Endpoint::parse("etcd-0:2379", false).unwrap();
        assert_eq!(e.url, "http://etcd-0:2379");
        let e = Endpoint::parse("10.0.0.1", true).unwrap();
        assert_eq!(e.url, "https://10.0.0.1:2379");
        let e = Endpoint::parse("http://localhost:80/", false).unwrap();
        assert_eq!(e.url, "http://localhost:80");
        assert!(Endpoint::parse("unix:///run/etcd.sock", false).is_err());
        assert!(Endpoint::parse("http://h:2379/v3", false).is_err());
        assert!(Endpoint::parse("http://u:pw@h:2379", false).is_err());
    }

    #[test]
    fn spec_checks() {
        assert!(check_spec(&spec(&["http://127.0.0.1:2379"])).is_ok());
        assert_eq!(check_spec(&spec(&[])).unwrap_err().0, "endpoints");
        let (key, msg) = check_spec(&spec(&["https://e:2379"])).unwrap_err();
        assert_eq!(key, "endpoints[0]");
        assert!(msg.contains("ca_file"), "{msg}");
        let mut s = spec(&["e:2379"]);
        s.password = Some(crate::model::SecretString::new("pw"));
        assert_eq!(check_spec(&s).unwrap_err().0, "password");
        s.tls = Some(EtcdTls {
            ca_file: "ca.pem".into(),
            cert_file: Some("c.pem".into()),
            key_file: None,
        });
        s.user = Some("root".into());
        assert_eq!(check_spec(&s).unwrap_err().0, "tls");
    }

    #[test]
    fn target_options() {
        let dir = Path::new("/tmp/x");
        assert!(EtcdTarget::new(dir, &RestoreOptions::default()).is_ok());
        let bad_name = RestoreOptions {
            etcd_name: Some("a=b".into()),
            ..Default::default()
        };
        assert!(EtcdTarget::new(dir, &bad_name).is_err());
        let bad_peer = RestoreOptions {
            etcd_peer_url: Some("localhost:2380".into()),
            ..Default::default()
        };
        assert!(EtcdTarget::new(dir, &bad_peer).is_err());
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSpec {
    /// Client URLs: `http://host:2379`, `https://host:2379` or `host:2379`.
    pub endpoints: Vec<String>,
    /// Client TLS: required for `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// etcd user, when etcd has authentication enabled.
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// How long to wait for etcd: connecting, each request, and between snapshot chunks.
    pub timeout: Option<Timeout>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// PEM CA certificate that signed the etcd server certificates.
    pub ca_file: PathBuf,
    /// PEM client certificate and key, when etcd requires client certificates.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// etcd, through its maintenance snapshot.
pub struct EtcdKind;
pub static KIND: EtcdKind = EtcdKind;

impl super::Spec for EtcdSpec {
    fn kind(&self) -> &'static dyn super::Kind {
        &KIND
    }
    fn validate(&self) -> Result<(), super::SpecError> {
        check_spec(self).map_err(|(key, m)| super::SpecError::new(key, m))
    }
    fn source(&self, name: &str, _kube: Arc<dyn crate::kube::KubeApi>) -> Box<dyn Source> {
        Box::new(Etcd::new(name, self))
    }
}

#[async_trait]
impl super::Kind for EtcdKind {
    fn name(&self) -> &'static str {
        "etcd"
    }
    fn target(
        &self,
        to: &super::RestoreTo,
        opts: &RestoreOptions,
        _source: Option<&super::SourceSpec>,
        _kube: Arc<dyn crate::kube::KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError> {
        match to {
            super::RestoreTo::Dir(dir) => Ok(Box::new(EtcdTarget::new(dir, opts)?)),
            _ => Err(super::unsupported(
                to,
                "etcd snapshots restore into a new data directory: --to-dir PATH (or --to-file for the raw snapshot file)",
            )),
        }
    }
}
