//! Sources: the services lifeboat snapshots. One module per kind; each implements [`Source`]
//! (a live service → a byte stream) and [`Target`] (a byte stream → a service). Nothing in the
//! pipeline, store or catalog knows which kind it carries.

pub mod command;
pub mod etcd;
mod file;
pub mod files;
pub mod postgres;
pub(crate) mod process;
pub mod redis;
pub mod volume_snapshot;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{SourceConfig, SourceSpec};
use crate::kube::KubeApi;

pub use process::{ProcessError, find_program};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Process(#[from] ProcessError),
    #[error(
        "source `{source_name}` cannot be reached: {reason}; check its URL, credentials and that the server is up"
    )]
    Unreachable { source_name: String, reason: String },
    #[error(
        "source `{source_name}`: the {hook} hook failed: {reason}; check the service, it may still be paused"
    )]
    Hook {
        source_name: String,
        hook: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("restore target {target}: {reason}")]
    Target { target: String, reason: String },
}

/// Facts recorded at backup time and kept in the manifest (tool and server versions, ...).
pub type Facts = serde_json::Map<String, serde_json::Value>;

/// A dump in progress: read `reader` to its end, then call `finish` to learn whether the
/// producer succeeded, and the facts only known at the end (they are merged over the
/// preflight facts). Dropping a `Dump` stops the producer. `finish` runs on a blocking thread.
pub struct Dump {
    pub reader: Box<dyn Read + Send>,
    pub finish: Box<dyn FnOnce() -> Result<Facts, SourceError> + Send>,
    /// Stops the producer at once (e.g. kills the child process), for when the run is
    /// cancelled while the codec thread is blocked reading from it. `None`: the producer
    /// stops by itself once its reader is dropped.
    pub stop: Option<Box<dyn FnOnce() + Send>>,
}

/// A restore in progress: write the snapshot into `writer`, then call `finish`. Dropping a
/// `Sink` without finishing stops the consumer, which must then leave nothing committed.
pub struct Sink {
    pub writer: Box<dyn Write + Send>,
    pub finish: Box<dyn FnOnce() -> Result<(), SourceError> + Send>,
}

#[async_trait]
pub trait Source: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Checks the service answers and its tools are present; returns facts for the manifest.
    async fn preflight(&self) -> Result<Facts, SourceError>;
    /// Starts producing the dump.
    async fn dump(&self) -> Result<Dump, SourceError>;
}

#[async_trait]
pub trait Target: Send + Sync {
    async fn preflight(&self) -> Result<(), SourceError>;
    /// Starts the consumer. Blocking: call from a blocking thread.
    fn restore(&self) -> Result<Sink, SourceError>;
}

/// The source for `cfg`. `kube` serves the kinds that call the Kubernetes API.
pub fn build(cfg: &SourceConfig, kube: Arc<dyn KubeApi>) -> Box<dyn Source> {
    match &cfg.spec {
        SourceSpec::Postgres(spec) => Box::new(postgres::Postgres::new(&cfg.name, spec)),
        SourceSpec::Files(spec) => match (&spec.path, &spec.pvc) {
            (Some(path), _) => Box::new(files::Files::new(&cfg.name, spec, path)),
            // Config validation guarantees exactly one of path / pvc.
            (None, pvc) => Box::new(volume_snapshot::VolumeSnapshotSource::new(
                &cfg.name,
                spec,
                pvc.as_deref().unwrap_or_default(),
                kube,
            )),
        },
        SourceSpec::Command(spec) => Box::new(command::CommandSource::new(&cfg.name, spec)),
        SourceSpec::Redis(spec) => Box::new(redis::Redis::new(&cfg.name, spec)),
        SourceSpec::Etcd(spec) => Box::new(etcd::Etcd::new(&cfg.name, spec)),
    }
}

/// Where `lifeboat restore` puts a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTo {
    /// A live service (`--target URL`).
    Url(String),
    /// A file holding the raw dump (`--to-file PATH`).
    File(PathBuf),
    /// A directory (`--to-dir PATH`): files snapshots, etcd data directories.
    Dir(PathBuf),
}

impl std::fmt::Display for RestoreTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreTo::Url(u) => write!(f, "{}", crate::redact::url(u)),
            RestoreTo::File(p) => write!(f, "file {}", p.display()),
            RestoreTo::Dir(p) => write!(f, "directory {}", p.display()),
        }
    }
}

/// Options of `lifeboat restore` that some kinds understand.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// PostgreSQL: do not restore object ownership (`pg_restore --no-owner`).
    pub no_owner: bool,
    /// PostgreSQL: do not restore grants (`pg_restore --no-privileges`); the roles they
    /// name may not exist in a verification sandbox.
    pub no_privileges: bool,
    /// Directory holding the kind's client tools, if not on PATH.
    pub bin_dir: Option<PathBuf>,
    /// etcd: member name of the restored data directory (default `default`).
    pub etcd_name: Option<String>,
    /// etcd: peer URL of the restored member (default `http://localhost:2380`).
    pub etcd_peer_url: Option<String>,
    /// Kubernetes: storage class of a PVC restored from a VolumeSnapshot.
    pub storage_class: Option<String>,
}

/// The target for a snapshot of `kind`. Each kind accepts the `RestoreTo` forms it supports
/// and refuses the others with what it accepts instead. `source` is the snapshot's source in
/// the current config, if it is still there (command sources need its `restore_argv`).
pub fn target(
    kind: &str,
    to: &RestoreTo,
    opts: &RestoreOptions,
    source: Option<&SourceConfig>,
    kube: Arc<dyn KubeApi>,
) -> Result<Box<dyn Target>, SourceError> {
    match (kind, to) {
        ("volume-snapshot", RestoreTo::Url(url)) => Ok(Box::new(volume_snapshot::PvcTarget::new(
            url,
            opts.storage_class.clone(),
            kube,
        )?)),
        ("volume-snapshot", _) => Err(unsupported(
            to,
            "VolumeSnapshot snapshots restore into a new PVC: --target pvc://NAMESPACE/NAME",
        )),
        (_, RestoreTo::File(path)) => Ok(Box::new(file::FileTarget::new(path))),
        ("postgres", RestoreTo::Url(url)) => {
            Ok(Box::new(postgres::PostgresTarget::new(url, opts)?))
        }
        ("files", RestoreTo::Dir(dir)) => Ok(Box::new(files::DirTarget::new(dir))),
        ("files", _) => Err(unsupported(to, "files snapshots restore into --to-dir DIR")),
        ("command", RestoreTo::Url(target)) => match source.map(|s| &s.spec) {
            Some(SourceSpec::Command(spec)) => {
                Ok(Box::new(command::CommandTarget::new(spec, Some(target))?))
            }
            _ => Err(unsupported(
                to,
                "command snapshots restore through their source's `restore_argv`, and this source is no longer a command source in the config; use --to-file",
            )),
        },
        ("command", _) => Err(unsupported(
            to,
            "command snapshots restore with --target X (passed to restore_argv as $LIFEBOAT_TARGET) or --to-file",
        )),
        ("redis", RestoreTo::Url(url)) => Ok(Box::new(redis::RedisTarget::new(url, opts)?)),
        ("etcd", RestoreTo::Dir(dir)) => Ok(Box::new(etcd::EtcdTarget::new(dir, opts)?)),
        ("postgres", _) => Err(unsupported(
            to,
            "postgres snapshots restore into --target postgres://... (or --to-file for the raw pg_dump archive)",
        )),
        ("redis", _) => Err(unsupported(
            to,
            "redis snapshots restore into --target redis://... (or --to-file for the RDB file)",
        )),
        ("etcd", _) => Err(unsupported(
            to,
            "etcd snapshots restore into a new data directory: --to-dir PATH (or --to-file for the raw snapshot file)",
        )),
        (other, _) => Err(unsupported(
            to,
            &format!("this lifeboat cannot restore `{other}` snapshots there"),
        )),
    }
}

fn unsupported(to: &RestoreTo, what: &str) -> SourceError {
    SourceError::Target {
        target: to.to_string(),
        reason: what.to_string(),
    }
}
