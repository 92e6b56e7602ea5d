//! [`DnsError`]: every way moving a record can fail, each message saying what to do, each
//! variant classed by an [`ErrorKind`] (what the daemon or the failover controller does next).
//!
//! # Guarantees
//! No variant carries a secret: TSIG secrets, API keys and tokens stay in the providers.

use std::net::SocketAddr;
use std::time::Duration;

use crate::model::ErrorKind;

/// A nameserver that did not answer the expected RRset before the verification timeout.
#[derive(Debug, Clone)]
pub struct Disagreement {
    pub nameserver: SocketAddr,
    /// What it answered instead (values, AA flag, rcode, serial), or why it did not answer.
    pub answered: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The server refused our TSIG signature (BADSIG, BADKEY, BADTIME, an unsigned NOTAUTH or
    /// REFUSED reply to a signed update).
    #[error(
        "{server} rejected the update's authentication ({detail}); check that tsig.name, tsig.algorithm and tsig.secret of provider `{provider}` match the key the server grants updates to (and that the clocks agree within 5 minutes)"
    )]
    Authentication {
        provider: String,
        server: String,
        detail: String,
    },
    /// An HTTP API refused our credentials (401/403).
    #[error(
        "{api} answered {status} ({detail}); check the credentials of provider `{provider}` (api_key / api_token) and that they may edit this zone"
    )]
    Forbidden {
        provider: String,
        api: String,
        status: u16,
        detail: String,
    },
    #[error(
        "provider `{provider}` serves no zone `{zone}`; create the zone there first, or fix `zone:` of the record"
    )]
    UnknownZone { provider: String, zone: String },
    #[error(
        "`{name}` is not inside zone `{zone}`; write a name ending in `.{zone}` or the zone that holds it"
    )]
    OutsideZone { name: String, zone: String },
    /// The provider understood the request and refused it (HTTP 422, DNS FORMERR/NOTIMP, ...).
    #[error("provider `{provider}` refused the change: {detail}")]
    Rejected { provider: String, detail: String },
    #[error("`{value}` is not a valid {rtype} value: {reason}")]
    InvalidValue {
        value: String,
        rtype: String,
        reason: String,
    },
    #[error("provider `{provider}` throttled the request{}; retry later, or change records less often", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Throttled {
        provider: String,
        retry_after: Option<Duration>,
    },
    /// Compare-and-swap lost: the record does not hold what the caller expected.
    #[error(
        "{name} {rtype} holds {held} at provider `{provider}`, not the expected {expected}: someone else changed it first; nothing was changed. Look with `lifeboat dns show {name}` and retry with --expect-current set to what it holds if that is still what you mean to replace"
    )]
    Conflict {
        provider: String,
        name: String,
        rtype: String,
        expected: String,
        held: String,
    },
    #[error("cannot reach {server}: {detail}; check the address and that the server runs")]
    Unreachable { server: String, detail: String },
    /// A reply that failed its TSIG check or could not be decoded.
    #[error("{server} sent a reply lifeboat cannot trust: {detail}")]
    BadReply { server: String, detail: String },
    #[error(
        "{name} {rtype}: {} of {total} nameserver(s) still disagree after {}s: {}; raise verify_timeout if the secondaries are just slow, otherwise check their zone transfers (NOTIFY, AXFR, TSIG)",
        disagreeing.len(),
        timeout.as_secs_f64(),
        disagreeing.iter().map(|d| format!("{} answers {}", d.nameserver, d.answered)).collect::<Vec<_>>().join("; ")
    )]
    NotAgreed {
        name: String,
        rtype: String,
        timeout: Duration,
        total: usize,
        disagreeing: Vec<Disagreement>,
    },
    /// The config (or an argument) asks for something that cannot work; the message says what to write.
    #[error("{0}")]
    Config(String),
    #[error("{context}: {detail}")]
    Internal { context: String, detail: String },
}

impl DnsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DnsError::Authentication { .. }
            | DnsError::Forbidden { .. }
            | DnsError::UnknownZone { .. }
            | DnsError::OutsideZone { .. }
            | DnsError::Rejected { .. }
            | DnsError::InvalidValue { .. }
            | DnsError::Config(_) => ErrorKind::Config,
            DnsError::Throttled { .. } | DnsError::Unreachable { .. } => ErrorKind::Unreachable,
            DnsError::BadReply { .. } => ErrorKind::Corrupt,
            DnsError::Conflict { .. } => ErrorKind::Conflict,
            DnsError::NotAgreed { .. } => ErrorKind::Interrupted,
            DnsError::Internal { .. } => ErrorKind::Internal,
        }
    }
}
