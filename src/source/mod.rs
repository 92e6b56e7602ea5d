//! Sources: the services lifeboat snapshots. One module per kind; each implements [`Source`]
//! (a live service → a byte stream) and [`Target`] (a byte stream → a service). Nothing in the
//! pipeline, store or catalog knows which kind it carries.

pub mod postgres;
mod process;

use std::io::{Read, Write};

use async_trait::async_trait;

use crate::config::{SourceConfig, SourceSpec};

pub use process::ProcessError;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Process(#[from] ProcessError),
    #[error(
        "source `{source_name}` cannot be reached: {reason}; check its URL, credentials and that the server is up"
    )]
    Unreachable { source_name: String, reason: String },
    #[error("restore target {target}: {reason}")]
    Target { target: String, reason: String },
}

/// Facts recorded at backup time and kept in the manifest (tool and server versions, ...).
pub type Facts = serde_json::Map<String, serde_json::Value>;

/// A dump in progress: read `reader` to its end, then call `finish` to learn whether the
/// producer succeeded. Dropping a `Dump` stops the producer.
pub struct Dump {
    pub reader: Box<dyn Read + Send>,
    pub finish: Box<dyn FnOnce() -> Result<(), SourceError> + Send>,
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
    /// Starts producing the dump. Blocking: call from a blocking thread.
    fn dump(&self) -> Result<Dump, SourceError>;
}

#[async_trait]
pub trait Target: Send + Sync {
    async fn preflight(&self) -> Result<(), SourceError>;
    /// Starts the consumer. Blocking: call from a blocking thread.
    fn restore(&self) -> Result<Sink, SourceError>;
}

pub fn build(cfg: &SourceConfig) -> Box<dyn Source> {
    match &cfg.spec {
        SourceSpec::Postgres(spec) => Box::new(postgres::Postgres::new(&cfg.name, spec)),
    }
}

/// Options of `lifeboat restore` that some kinds understand.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// PostgreSQL: do not restore object ownership (`pg_restore --no-owner`).
    pub no_owner: bool,
    /// Directory holding the kind's client tools, if not on PATH.
    pub bin_dir: Option<std::path::PathBuf>,
}

pub fn target(
    kind: &str,
    target: &str,
    opts: &RestoreOptions,
) -> Result<Box<dyn Target>, SourceError> {
    match kind {
        "postgres" => Ok(Box::new(postgres::PostgresTarget::new(target, opts)?)),
        other => Err(SourceError::Target {
            target: crate::redact::url(target),
            reason: format!("this lifeboat cannot restore `{other}` snapshots"),
        }),
    }
}
