//! [`OpError`]: how an operation failed, as the daemon, failover and drills see it: the
//! operation's own error (its message says what to do) and its [`ErrorKind`].
//!
//! Every operation's error converts into it; the daemon retries only the kinds
//! [`ErrorKind::is_retryable`] allows, never `Config` or `Corrupt`.

use crate::model::ErrorKind;

/// An operation's failure with its kind.
#[derive(Debug)]
pub struct OpError {
    kind: ErrorKind,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl OpError {
    pub fn new(
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> OpError {
        OpError {
            kind,
            source: source.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Cancelled before it finished.
    pub fn interrupted() -> OpError {
        OpError::new(ErrorKind::Interrupted, "interrupted before it finished")
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

macro_rules! from_op_errors {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for OpError {
            fn from(e: $t) -> OpError {
                OpError { kind: e.kind(), source: Box::new(e) }
            }
        })*
    };
}

from_op_errors!(
    crate::ops::backup::BackupError,
    crate::ops::copy::CopyError,
    crate::ops::prune::PruneError,
    crate::ops::restore::RestoreError,
    crate::ops::settle::SettleError,
    crate::ops::verify::VerifyError,
    crate::ops::ctx::CtxError,
    crate::catalog::CatalogError,
    crate::store::StoreError,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_conversion_and_the_message_is_the_operations() {
        let e: OpError = crate::ops::backup::BackupError::UnknownSource("db".into()).into();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.kind().is_retryable());
        assert!(e.to_string().contains("no source named `db`"), "{e}");
        assert!(OpError::interrupted().kind().is_retryable());
        assert!(!ErrorKind::Corrupt.is_retryable());
        assert!(ErrorKind::Unreachable.is_retryable());
    }
}
