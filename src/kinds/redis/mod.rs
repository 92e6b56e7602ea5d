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
//!
//! # Layout
//! - [`client`]: connection URLs, authentication and the RESP2 client (public: the
//!   integration tests use it too);
//! - [`rdb`]: the RDB stream's framings and its header check;
//! - [`backup`]: the [`Redis`] source (replication and file modes);
//! - [`restore`]: the [`RedisTarget`];
//! - [`server`]: the throwaway `redis-server` on a restored RDB, shared by the restore and the
//!   verification sandbox;
//! - [`checks`]: what a verification observes of a restored server.

mod backup;
pub mod checks;
pub mod client;
mod failover;
mod rdb;
mod restore;
pub mod scratch;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{RestoreOptions, Source, SourceError, Target};
use crate::model::{SecretString, Span};

pub use backup::{DEFAULT_SAVE_TIMEOUT, Redis};
pub use client::check_url;
pub use restore::RedisTarget;
pub use server::SERVE_RDB_ARGS;

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
    pub save_timeout: Option<Span>,
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
    async fn scratch(
        &self,
        dir: &std::path::Path,
        _opts: &super::scratch::ScratchOptions,
    ) -> Result<Option<Box<dyn super::scratch::Scratch>>, super::scratch::ScratchError> {
        Ok(Some(Box::new(scratch::RedisScratch::new(dir))))
    }
    fn name(&self) -> &'static str {
        "redis"
    }
    async fn probe(&self, url: &str) -> Result<super::probe::Probe, super::probe::ProbeError> {
        failover::probe(url).await
    }
    async fn fence(&self, url: &str) -> Result<(), super::probe::ProbeError> {
        failover::fence(url).await
    }
    async fn unfence(&self, url: &str) -> Result<(), super::probe::ProbeError> {
        failover::unfence(url).await
    }
    async fn promote(
        &self,
        url: &str,
        wait: std::time::Duration,
    ) -> Result<(), super::probe::ProbeError> {
        failover::promote(url, wait).await
    }
    async fn repoint(
        &self,
        url: &str,
        primary_url: &str,
        wait: std::time::Duration,
    ) -> Result<(), super::probe::ProbeError> {
        failover::repoint(url, primary_url, wait).await
    }

    async fn rejoin(
        &self,
        url: &str,
        primary_url: &str,
        _data_dir: Option<&std::path::Path>,
        wait: std::time::Duration,
    ) -> Result<String, super::probe::ProbeError> {
        failover::repoint(url, primary_url, wait).await?;
        Ok("REPLICAOF the primary: linked".into())
    }

    async fn verify_writable(&self, url: &str) -> Result<(), super::probe::ProbeError> {
        failover::verify_writable(url).await
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
