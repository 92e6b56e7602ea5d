//! [`ErrorKind`]: what a failure means for whoever decides what to do next (the daemon's
//! retry, a failover's demote/abort, a drill's verdict), whatever module it came from.

use serde::Serialize;

/// The class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The config (or a key, or an argument) is wrong: retrying changes nothing; fix it.
    Config,
    /// A store, catalog, service or API did not answer: retrying may help.
    Unreachable,
    /// Data failed an integrity check (wrong key, forged or damaged object): never retried.
    Corrupt,
    /// Someone else changed the same thing first (a lease, a target that now exists).
    Conflict,
    /// Cancelled (SIGINT/SIGTERM, lost leadership, a timeout).
    Interrupted,
    /// A bug or an environment problem lifeboat cannot classify.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether the daemon retries a job that failed this way.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unreachable
                | ErrorKind::Conflict
                | ErrorKind::Interrupted
                | ErrorKind::Internal
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
