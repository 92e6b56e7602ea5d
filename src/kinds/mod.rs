//! Kinds: the services lifeboat snapshots, one folder each behind one [`Kind`] trait.
//!
//! A kind turns a live service into a byte stream ([`Source`], built from its config section,
//! a [`Spec`]) and a byte stream back into a service ([`Target`]); it knows how to verify a
//! restore and what to clean up when a snapshot is pruned ([`Kind::forget`]). Nothing in the
//! pipeline, store or catalog knows which kind it carries.
//!
//! Adding a kind: a folder with its `Spec` and `Kind`, and one line in `registry!` below.

pub mod checks;
pub mod command;
pub mod etcd;
pub mod files;
pub mod postgres;
pub mod probe;
pub(crate) mod process;
pub mod redis;
pub mod scratch;
mod to_file;
pub mod volume_snapshot;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use serde::Deserialize;

use crate::kube::KubeApi;

pub use process::{Group, ProcessError, ServerError, ServerProcess, find_program};

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

impl SourceError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            SourceError::Process(ProcessError::Spawn { .. }) => ErrorKind::Config,
            SourceError::Process(ProcessError::Pipe { .. }) => ErrorKind::Internal,
            SourceError::Process(_)
            | SourceError::Unreachable { .. }
            | SourceError::Hook { .. } => ErrorKind::Unreachable,
            SourceError::Redis(_) => ErrorKind::Unreachable,
            SourceError::Target { .. } => ErrorKind::Config,
        }
    }
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
            RestoreTo::Url(u) => write!(f, "{}", crate::model::redact::url(u)),
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
    /// command: stream the dump into `restore_argv` as it is decrypted, instead of staging
    /// it (0600) until its checksum is known.
    pub stream: bool,
    /// files: keep setuid, setgid and sticky bits (dropped by default: ownership is not
    /// restored).
    pub keep_special_modes: bool,
}

/// A config section of one kind (`kind: postgres` and its keys).
pub trait Spec: Send + Sync {
    /// The kind of the snapshots this source takes.
    fn kind(&self) -> &'static dyn Kind;
    /// Load-time checks of the section; the error names the key.
    fn validate(&self) -> Result<(), SpecError>;
    /// The source for this section, named `name`. `kube` serves the kinds that call the
    /// Kubernetes API.
    fn source(&self, name: &str, kube: Arc<dyn KubeApi>) -> Box<dyn Source>;
}

/// A config key of a source and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub key: String,
    pub message: String,
}

impl SpecError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// What lifeboat knows about one kind of snapshot, by the name its manifests record.
#[async_trait]
pub trait Kind: Send + Sync {
    /// The name manifests and the catalog record (`postgres`, `volume-snapshot`, ...).
    fn name(&self) -> &'static str;

    /// The target for `to`: each kind accepts the forms it supports and refuses the others
    /// with what it accepts instead. `source` is the snapshot's source section in the current
    /// config, if it is still there. `--to-file` is handled before this is called, for the
    /// kinds whose [`Kind::restores_to_file`] is true.
    fn target(
        &self,
        to: &RestoreTo,
        opts: &RestoreOptions,
        source: Option<&SourceSpec>,
        kube: Arc<dyn KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError>;

    /// Whether `--to-file` writes the raw dump (false where the snapshot is not a byte stream).
    fn restores_to_file(&self) -> bool {
        true
    }

    /// A throwaway instance of this kind in `dir` for the local verification sandbox, or
    /// `None` where the kind cannot be verified on this machine (e.g. `volume-snapshot`).
    async fn scratch(
        &self,
        _dir: &std::path::Path,
        _opts: &scratch::ScratchOptions,
    ) -> Result<Option<Box<dyn scratch::Scratch>>, scratch::ScratchError> {
        Ok(None)
    }

    /// What a vantage point sees of a live service at `url`: role, replication position and
    /// lag (failover between sites). Kinds without replication cannot be probed this way.
    async fn probe(&self, _url: &str) -> Result<probe::Probe, probe::ProbeError> {
        Err(probe::ProbeError::Unsupported {
            kind: self.name().to_string(),
            what: "probed",
        })
    }

    /// Makes the primary at `url` refuse writes (and stops its other writers), confirmed
    /// before returning. Safe to repeat; lasts across a restart of the service.
    async fn fence(&self, _url: &str) -> Result<(), probe::ProbeError> {
        Err(probe::ProbeError::Unsupported {
            kind: self.name().to_string(),
            what: "fenced",
        })
    }

    /// Undoes [`Kind::fence`]. Safe to repeat.
    async fn unfence(&self, _url: &str) -> Result<(), probe::ProbeError> {
        Err(probe::ProbeError::Unsupported {
            kind: self.name().to_string(),
            what: "unfenced",
        })
    }

    /// Promotes the replica at `url` and returns once it accepts writes. Safe to repeat (a
    /// primary is left as it is).
    async fn promote(&self, _url: &str, _wait: Duration) -> Result<(), probe::ProbeError> {
        Err(probe::ProbeError::Unsupported {
            kind: self.name().to_string(),
            what: "promoted",
        })
    }

    /// Makes the replica at `url` follow the primary at `primary_url` (PostgreSQL
    /// `primary_conninfo` + reload, Redis `REPLICAOF`) and returns once it streams from it,
    /// within `wait`. Safe to repeat.
    async fn repoint(
        &self,
        _url: &str,
        _primary_url: &str,
        _wait: Duration,
    ) -> Result<(), probe::ProbeError> {
        Err(probe::ProbeError::Unsupported {
            kind: self.name().to_string(),
            what: "repointed",
        })
    }

    /// Turns the old primary at `url` into a replica of the primary at `primary_url`
    /// (`data_dir`: its data directory on this host, where the kind needs one, e.g.
    /// PostgreSQL's `pg_rewind`). Returns what it did. Safe to repeat.
    async fn rejoin(
        &self,
        _url: &str,
        _primary_url: &str,
        _data_dir: Option<&std::path::Path>,
        _wait: Duration,
    ) -> Result<String, probe::ProbeError> {
        Err(probe::ProbeError::Unsupported {
            kind: self.name().to_string(),
            what: "rejoined",
        })
    }

    /// Proves the primary at `url` takes writes: a write and a read back that leave nothing.
    async fn verify_writable(&self, _url: &str) -> Result<(), probe::ProbeError> {
        Err(probe::ProbeError::Unsupported {
            kind: self.name().to_string(),
            what: "write-probed",
        })
    }

    /// Cleans up what a pruned snapshot left outside the store (e.g. a CSI VolumeSnapshot).
    /// Called before the snapshot's objects are deleted; must be safe to repeat.
    async fn forget(
        &self,
        _manifest: &crate::model::snapshot::Manifest,
        _kube: Arc<dyn KubeApi>,
    ) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Declares every kind, one line each: `module(ConfigVariant: SpecType)` for kinds a config
/// can name, `module` alone for kinds only another kind's spec produces (a `files` source
/// with `pvc:` takes `volume-snapshot` snapshots).
macro_rules! registry {
    ($( $module:ident $( ( $variant:ident : $spec:ident ) )? ),* $(,)?) => {
        /// The kind-specific part of a source (its `kind:` and that kind's keys).
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
        pub enum SourceSpec {
            $( $( $variant($module::$spec), )? )*
        }

        impl SourceSpec {
            /// The section as its kind's [`Spec`].
            pub fn spec(&self) -> &dyn Spec {
                match self {
                    $( $( SourceSpec::$variant(s) => s, )? )*
                }
            }
        }

        /// Every kind this lifeboat can restore and verify.
        pub static KINDS: &[&dyn Kind] = &[ $( &$module::KIND ),* ];
    };
}

registry! {
    postgres(Postgres: PostgresSpec),
    redis(Redis: RedisSpec),
    etcd(Etcd: EtcdSpec),
    files(Files: FilesSpec),
    volume_snapshot,
    command(Command: CommandSpec),
}

impl SourceSpec {
    /// The `kind:` written in the config.
    pub fn kind(&self) -> &'static str {
        self.spec().kind().name()
    }
}

/// The kind named `name` (as manifests record it).
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The names of every kind, for messages.
pub fn names() -> String {
    KINDS
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The target for a snapshot of `kind_name` (see [`Kind::target`]).
pub fn target(
    kind_name: &str,
    to: &RestoreTo,
    opts: &RestoreOptions,
    source: Option<&SourceSpec>,
    kube: Arc<dyn KubeApi>,
) -> Result<Box<dyn Target>, SourceError> {
    let Some(k) = kind(kind_name) else {
        return Err(unsupported(
            to,
            &format!(
                "this lifeboat cannot restore `{kind_name}` snapshots (it knows {}); use a lifeboat at least as new as the one that took it",
                names()
            ),
        ));
    };
    match to {
        RestoreTo::File(path) if k.restores_to_file() => {
            Ok(Box::new(to_file::FileTarget::new(path)))
        }
        _ => k.target(to, opts, source, kube),
    }
}

pub(crate) fn unsupported(to: &RestoreTo, what: &str) -> SourceError {
    SourceError::Target {
        target: to.to_string(),
        reason: what.to_string(),
    }
}
