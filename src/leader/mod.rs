//! Leader election: of the replicas of `lifeboat run` sharing one catalog, only the leader
//! starts jobs; the others stand by and keep trying. One trait ([`Leader`]), three locks:
//! - [`FileLock`]: an exclusive `flock` on a file next to the SQLite catalog (one host);
//! - [`PgAdvisory`]: a session-level PostgreSQL advisory lock on the catalog database, held
//!   by one dedicated connection (lost, and noticed at the next renew, if it drops);
//! - [`KubeLease`]: a `coordination.k8s.io/v1` Lease, renewed every few seconds; a replica
//!   takes it over once it expires.
//!
//! # Guarantees
//! The file and PostgreSQL locks are exclusive for as long as the process (or connection)
//! lives, and released by the OS / server when it dies. A Lease is time-based: the holder
//! renews it every [`RENEW_EVERY`], and stops starting jobs (and cancels running ones) as soon
//! as a renew fails, finds another holder or does not answer within [`CALL_TIMEOUT`], well
//! before the lease expires for the others. Every lock call goes through [`acquire`],
//! [`renew`] and [`release`], which bound it; `run --once` renews like the daemon.
//!
//! [`Leader::kind`] names the lock in logs and `/readyz`.
//!
//! A workload of one job role (`run --jobs`, [`crate::policy::schedule::Role`]) takes that
//! role's own lock (see [`build`]): the backup and verify workloads each have one leader.

mod file;
mod lease;
mod postgres;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

pub use file::FileLock;
pub use lease::{KubeLease, LEASE_SECONDS, LeaseDecision, decide};
pub use postgres::PgAdvisory;

use serde::Deserialize;

use crate::model::SecretString;
use crate::policy::schedule::Role;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "cannot open the leader lock file {path}: {source}; check `daemon.leader.lock_file` and that its directory is writable"
    )]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "PostgreSQL leader lock on the catalog database: {0}; check that the catalog database is reachable"
    )]
    Postgres(String),
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
    #[error("{0}")]
    Config(String),
    #[error(
        "the leader lock did not answer a {0} within 5 s; treating leadership as lost (check the lock's backend: catalog database or Kubernetes API)"
    )]
    Timeout(&'static str),
}

#[async_trait]
pub trait Leader: Send {
    /// `file`, `postgres` or `kubernetes`.
    fn kind(&self) -> &'static str;
    /// Tries once to become leader; true if this process now is.
    async fn try_acquire(&mut self) -> Result<bool, LeaderError>;
    /// Called every [`RENEW_EVERY`] while leader: false (or an error) means leadership is lost.
    async fn renew(&mut self) -> Result<bool, LeaderError>;
    /// Gives leadership up (on shutdown), so a standby takes over at once.
    async fn release(&mut self);
}

/// How often the leader renews, and a standby retries.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// The longest one lock call (acquire, renew) may take before it counts as failed. A leader
/// learns it lost the lock at most `RENEW_EVERY + CALL_TIMEOUT` (7 s) after its last good
/// renew, and then cancels its jobs, well inside a Lease's [`lease::LEASE_SECONDS`] (15 s).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Leader::try_acquire`] bounded by [`CALL_TIMEOUT`].
pub async fn acquire(leader: &mut dyn Leader) -> Result<bool, LeaderError> {
    tokio::time::timeout(CALL_TIMEOUT, leader.try_acquire())
        .await
        .unwrap_or(Err(LeaderError::Timeout("acquire")))
}

/// [`Leader::release`] bounded by [`CALL_TIMEOUT`] (a lock that does not answer expires).
pub async fn release(leader: &mut dyn Leader) {
    if tokio::time::timeout(CALL_TIMEOUT, leader.release())
        .await
        .is_err()
    {
        tracing::warn!(
            lock = leader.kind(),
            "the leader lock did not answer the release; it expires by itself"
        );
    }
}

/// [`Leader::renew`] bounded by [`CALL_TIMEOUT`]: a renew that does not answer in time is a
/// lost lock (the leader fences itself rather than run on a lease it cannot prove).
pub async fn renew(leader: &mut dyn Leader) -> Result<bool, LeaderError> {
    tokio::time::timeout(CALL_TIMEOUT, leader.renew())
        .await
        .unwrap_or(Err(LeaderError::Timeout("renew")))
}

/// This replica's name: the pod name on Kubernetes (`HOSTNAME`), else host and pid.
pub fn identity() -> String {
    format!("{}-{}", crate::model::host::hostname(), std::process::id())
}

/// The lock `daemon.leader` asks for (`auto`: a Lease inside a cluster, an advisory lock with
/// a PostgreSQL catalog, else a lock file). With a `role` (`run --jobs`), that role's own
/// lock: the Lease `<lease_name>-<role>`, the lock file `<lock_file>-<role>`, the advisory
/// key [`postgres::role_key`]; so a backup workload and a verify workload each elect one
/// leader without waiting for each other.
pub async fn build(
    cfg: &LeaderConfig,
    catalog: &SecretString,
    kube: std::sync::Arc<dyn crate::kube::KubeApi>,
    role: Option<Role>,
) -> Result<Box<dyn Leader>, LeaderError> {
    let url = catalog.expose();
    let is_pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let kind = match cfg.kind {
        LeaderKind::Auto if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            LeaderKind::Kubernetes
        }
        LeaderKind::Auto if is_pg => LeaderKind::Postgres,
        LeaderKind::Auto => LeaderKind::File,
        k => k,
    };
    Ok(match kind {
        LeaderKind::Postgres => {
            if !is_pg {
                return Err(LeaderError::Config(
                    "daemon.leader.kind is postgres but the catalog is not PostgreSQL; use `file` or `kubernetes`".into(),
                ));
            }
            Box::new(PgAdvisory::with_key(
                catalog.clone(),
                postgres::role_key(role),
            ))
        }
        LeaderKind::Kubernetes => {
            let ns = match &cfg.namespace {
                Some(ns) => ns.clone(),
                None => std::fs::read_to_string(
                    "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                )
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    LeaderError::Config(format!(
                        "no daemon.leader.namespace and the pod's namespace cannot be read ({e}); set daemon.leader.namespace"
                    ))
                })?,
            };
            Box::new(KubeLease::new(kube, ns, lease_name(cfg, role), identity()))
        }
        LeaderKind::File | LeaderKind::Auto => {
            let path = match &cfg.lock_file {
                Some(p) => p.clone(),
                None => default_lock_file(url).ok_or_else(|| {
                    LeaderError::Config(
                        "the catalog is not a SQLite file; set daemon.leader.lock_file or use `postgres`/`kubernetes`".into(),
                    )
                })?,
            };
            Box::new(FileLock::new(role_path(path, role)))
        }
    })
}

/// The Lease a workload of `role` takes: `daemon.leader.lease_name` (default `lifeboat`),
/// suffixed `-backup` / `-verify` for a role.
pub fn lease_name(cfg: &LeaderConfig, role: Option<Role>) -> String {
    let base = cfg.lease_name.as_deref().unwrap_or("lifeboat");
    match role {
        Some(r) => r.lock_name(base),
        None => base.to_string(),
    }
}

/// The lock file of `role`: the role's suffix appended to `path`.
fn role_path(path: PathBuf, role: Option<Role>) -> PathBuf {
    match role {
        Some(r) => {
            let mut s = path.into_os_string();
            s.push(format!("-{}", r.as_str()));
            PathBuf::from(s)
        }
        None => path,
    }
}

/// `<sqlite path>.leader.lock` for a `sqlite://PATH` catalog.
fn default_lock_file(url: &str) -> Option<PathBuf> {
    crate::catalog::sqlite_file(url).map(|path| PathBuf::from(format!("{path}.leader.lock")))
}

/// How replicas agree on which one runs jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderKind {
    /// A Kubernetes Lease inside a cluster, else a PostgreSQL advisory lock with a
    /// PostgreSQL catalog, else a lock file next to the SQLite catalog.
    #[default]
    Auto,
    File,
    Postgres,
    Kubernetes,
}

/// `daemon.leader`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderConfig {
    #[serde(default)]
    pub kind: LeaderKind,
    /// Kubernetes: the Lease's name (default `lifeboat`).
    pub lease_name: Option<String>,
    /// Kubernetes: its namespace (default: the pod's own, from the service account).
    pub namespace: Option<String>,
    /// File: the lock file (default: the SQLite catalog's path + `.leader.lock`).
    pub lock_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fake::Fake;
    use std::sync::Arc;

    /// Each role (`run --jobs`) locks apart: one leader per role, and neither role waits for
    /// the other or for the unfiltered lock.
    #[tokio::test]
    async fn each_role_has_its_own_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = SecretString::new(format!("sqlite://{}/c.db", dir.path().display()));
        let kube: Arc<dyn crate::kube::KubeApi> = Arc::new(Fake::default());
        let file = LeaderConfig {
            kind: LeaderKind::File,
            ..LeaderConfig::default()
        };
        let lease = LeaderConfig {
            kind: LeaderKind::Kubernetes,
            namespace: Some("lifeboat".into()),
            lease_name: Some("lb".into()),
            ..LeaderConfig::default()
        };
        for cfg in [&file, &lease] {
            let mut held = Vec::new();
            for role in [Some(Role::Backup), Some(Role::Verify), None] {
                let mut l = build(cfg, &catalog, kube.clone(), role)
                    .await
                    .expect("build");
                assert!(acquire(l.as_mut()).await.expect("acquire"), "{role:?}");
                held.push(l);
            }
            if cfg.kind == LeaderKind::File {
                let mut again = build(cfg, &catalog, kube.clone(), Some(Role::Backup))
                    .await
                    .expect("build");
                assert!(
                    !acquire(again.as_mut()).await.expect("acquire"),
                    "one backup leader"
                );
                assert!(dir.path().join("c.db.leader.lock-verify").exists());
            } else {
                let mut other = KubeLease::new(
                    kube.clone(),
                    "lifeboat".into(),
                    lease_name(cfg, Some(Role::Verify)),
                    "another-pod".into(),
                );
                assert!(
                    !other.try_acquire().await.expect("acquire"),
                    "one verify leader"
                );
                assert_eq!(lease_name(cfg, Some(Role::Backup)), "lb-backup");
            }
        }
        assert_ne!(
            postgres::role_key(Some(Role::Backup)),
            postgres::role_key(None)
        );
        assert_ne!(
            postgres::role_key(Some(Role::Backup)),
            postgres::role_key(Some(Role::Verify))
        );
    }
}
