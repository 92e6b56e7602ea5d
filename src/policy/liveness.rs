//! Liveness of a run: is the process that owns a `running` row certainly gone? Pure: the
//! caller says what it sees of the pid on this host.
//!
//! A process is known dead when it ran on this host and its pid is gone (or is now some other
//! program, or is ourselves), or when its heartbeat is older than [`STALE_AFTER`]. A run
//! whose process may still be alive is never called dead.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A run's heartbeat is refreshed every `ops::run::HEARTBEAT`; one this old means
/// the run is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// Who owns a run, as its row records it.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    pub host: &'a str,
    pub pid: i64,
    pub heartbeat_at: DateTime<Utc>,
}

/// What this host sees of a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// Our own pid: we have not started that run, so a previous process with the same pid
    /// (e.g. pid 1 in a restarted container) did.
    Ours,
    /// Gone, or some other program now.
    NotLifeboat,
    /// A lifeboat process.
    Lifeboat,
}

/// Is the process that owns the run certainly gone? `here` is this host's name; `pid` tells
/// what this host sees of a pid (asked only for runs of this host).
pub fn is_dead(
    owner: &Owner<'_>,
    now: DateTime<Utc>,
    here: &str,
    pid: impl FnOnce(i64) -> Pid,
) -> bool {
    if owner.host == here {
        return pid(owner.pid) != Pid::Lifeboat;
    }
    now.signed_duration_since(owner.heartbeat_at)
        .to_std()
        .is_ok_and(|age| age > STALE_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str, heartbeat_age: i64, now: DateTime<Utc>) -> Owner<'_> {
        Owner {
            host,
            pid: 42,
            heartbeat_at: now - chrono::Duration::seconds(heartbeat_age),
        }
    }

    #[test]
    fn liveness_rules() {
        let now = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        // Same host: what the pid is now decides, whatever the heartbeat says.
        assert!(is_dead(&owner("h", 0, now), now, "h", |_| Pid::Ours));
        assert!(is_dead(&owner("h", 0, now), now, "h", |_| Pid::NotLifeboat));
        assert!(!is_dead(&owner("h", 9999, now), now, "h", |_| {
            Pid::Lifeboat
        }));
        // Other host: only the heartbeat tells; a long run that heartbeats is alive.
        let never = |_| -> Pid { panic!("a pid of another host is never looked up") };
        assert!(!is_dead(&owner("other", 10, now), now, "h", never));
        assert!(!is_dead(&owner("other", 119, now), now, "h", never));
        assert!(is_dead(&owner("other", 600, now), now, "h", never));
        // A heartbeat in the future (clock skew) is not a dead run.
        assert!(!is_dead(&owner("other", -600, now), now, "h", never));
    }
}
