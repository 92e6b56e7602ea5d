//! Finding what crashed runs left behind, and rebuilding the catalog from the stores.
//!
//! Guarantees, given the commit protocol in [`crate::model::snapshot`]:
//! - a run whose process is gone and whose snapshot has a manifest is recorded complete (it
//!   died between writing the manifest and updating the catalog);
//! - a run whose process is gone without a manifest is recorded failed, and every object
//!   under its snapshot directory (including staging files of a local store) is removed;
//! - a run whose process may still be alive is never touched;
//! - on a store with `object_lock`, a committed snapshot is recorded complete only once
//!   every object of it (at the versions the backup wrote) has a retention: a crash between
//!   a write and its explicit retention is healed here ([`relock`]); the manifest's version
//!   is recorded in the catalog as the backup would have.
//!
//! A process is known dead when it ran on this host and its pid is gone (or is now some
//! other program, or is ourselves), or when its heartbeat is older than [`STALE_AFTER`].

use chrono::{DateTime, Utc};

use crate::catalog::{CatalogError, RunRow, Status};
use crate::model::host::hostname;
use crate::model::snapshot;
use crate::ops::Ctx;
use crate::ops::manifest::{ManifestError, read_committed, read_committed_at};
use crate::policy::liveness;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SettleError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        match self {
            SettleError::Catalog(e) => e.kind(),
            SettleError::Store(e) => e.kind(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Settled {
    pub completed: Vec<String>,
    pub failed: Vec<String>,
    pub orphans_removed: usize,
}

/// Settles the runs of dead processes. Store errors leave a run for the next start.
pub async fn run(app: &Ctx) -> Result<Settled, SettleError> {
    let now = app.now();
    let host = hostname();
    let mut out = Settled::default();
    for run in app.catalog.running_runs().await? {
        if !is_dead(&run, now, &host) {
            continue;
        }
        if run.job == "verify" {
            let msg = "the process died during the verification (its sandbox was swept at the next start); run `lifeboat verify` again";
            app.catalog
                .finish_verification(
                    &run.id,
                    crate::catalog::VerificationStatus::Failed,
                    None,
                    &serde_json::Value::Array(Vec::new()),
                    Some(msg),
                    now,
                )
                .await?;
            app.catalog
                .finish_run(&run.id, Status::Failed, Some(msg), now)
                .await?;
            out.failed.push(run.id.clone());
            continue;
        }
        if run.job == "restore" {
            let msg = "the process died during the restore; a PostgreSQL target committed nothing, a --to-dir target may have a `.NAME.lifeboat-partial-*` staging directory beside it to remove";
            app.catalog
                .finish_run(&run.id, Status::Failed, Some(msg), now)
                .await?;
            out.failed.push(run.id.clone());
            continue;
        }
        let (Some(id), Some(store_name)) = (&run.snapshot_id, &run.store) else {
            let msg = "the process died before its run started any snapshot";
            app.catalog
                .finish_run(&run.id, Status::Failed, Some(msg), now)
                .await?;
            continue;
        };
        let Some(store) = app.stores.get(store_name) else {
            let msg = format!(
                "the process died during the run, and store `{store_name}` is no longer configured: objects under {}/{id}/ may remain there",
                run.source
            );
            if run.job == "backup" {
                app.catalog.fail_snapshot(id, &msg, now).await?;
            } else {
                app.catalog
                    .finish_copy(id, store_name, Err(&msg), now)
                    .await?;
            }
            app.catalog
                .finish_run(&run.id, Status::Failed, Some(&msg), now)
                .await?;
            continue;
        };
        if run.job == "copy" {
            match crate::ops::copy::settle_dead(app, store, &run.source, id, now).await {
                Ok(done) => {
                    let (status, msg) = if done {
                        (
                            Status::Complete,
                            "recovered after a crash: the copy's manifest had been written",
                        )
                    } else {
                        (
                            Status::Failed,
                            "the copy process died before the copy was committed; partial objects removed",
                        )
                    };
                    app.catalog
                        .finish_run(&run.id, status, Some(msg), now)
                        .await?;
                    if done {
                        out.completed.push(id.clone())
                    } else {
                        out.failed.push(id.clone())
                    }
                }
                Err(e) => {
                    tracing::warn!(snapshot_id = %id, cause = %e, "cannot settle a crashed copy now; will retry at the next start")
                }
            }
            continue;
        }
        match settle_snapshot(store, &run, id, now, app).await {
            Ok(Outcome::Completed) => out.completed.push(id.clone()),
            Ok(Outcome::Failed(removed)) => {
                out.failed.push(id.clone());
                out.orphans_removed += removed;
            }
            Err(e) => {
                tracing::warn!(snapshot_id = %id, cause = %e, "cannot settle a crashed run now; will retry at the next start");
            }
        }
    }
    Ok(out)
}

/// Settles crashed runs before new work (a backup, a copy, a prune, the daemon's schedule).
/// A failure here is logged and must not block that work.
pub async fn before_work(app: &Ctx) {
    match run(app).await {
        Ok(r) if !r.completed.is_empty() || !r.failed.is_empty() => tracing::warn!(
            completed = ?r.completed,
            failed = ?r.failed,
            orphans_removed = r.orphans_removed,
            "settled runs left by processes that died"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(cause = %e, "could not check for crashed runs"),
    }
}

enum Outcome {
    Completed,
    Failed(usize),
}

async fn settle_snapshot(
    store: &Store,
    run: &RunRow,
    id: &str,
    now: DateTime<Utc>,
    app: &Ctx,
) -> Result<Outcome, SettleError> {
    let dir = snapshot::dir(&run.source, id);
    if let Some((manifest, version)) = committed_or_untrusted_at(store, &dir, app).await? {
        tracing::info!(snapshot_id = %id, "a crashed run had committed its snapshot; recording it complete");
        relock(store, &dir, &manifest, version.as_deref(), now).await?;
        app.catalog
            .record_complete_at(&store.name, &manifest, version.as_deref())
            .await?;
        app.catalog
            .finish_run(
                &run.id,
                Status::Complete,
                Some("recovered after a crash: the manifest had been written"),
                now,
            )
            .await?;
        return Ok(Outcome::Completed);
    }
    let removed = store.remove_dir(&dir).await?;
    let msg = format!(
        "the backup process (pid {} on {}) died before the snapshot was committed; {removed} orphan object(s) removed",
        run.pid, run.host
    );
    tracing::warn!(snapshot_id = %id, removed, "{msg}");
    app.catalog.fail_snapshot(id, &msg, now).await?;
    app.catalog
        .finish_run(&run.id, Status::Failed, Some(&msg), now)
        .await?;
    Ok(Outcome::Failed(removed))
}

/// The committed manifest of a dead run's directory; an untrusted one (planted in the store)
/// counts as none, so the directory is cleaned up as an interrupted run's.
pub(crate) async fn committed_or_untrusted(
    store: &Store,
    dir: &str,
    app: &Ctx,
) -> Result<Option<crate::model::snapshot::Manifest>, StoreError> {
    match read_committed(store, dir, &app.trust).await {
        Ok(m) => Ok(m),
        Err(ManifestError::Store(e)) => Err(e),
        Err(e @ ManifestError::Untrusted { .. }) => {
            tracing::warn!(cause = %e, "ignoring an untrusted manifest");
            Ok(None)
        }
    }
}

/// [`committed_or_untrusted`], with the version of the manifest read (versioned stores).
async fn committed_or_untrusted_at(
    store: &Store,
    dir: &str,
    app: &Ctx,
) -> Result<Option<(crate::model::snapshot::Manifest, Option<String>)>, StoreError> {
    match read_committed_at(store, dir, &app.trust, None).await {
        Ok(m) => Ok(m),
        Err(ManifestError::Store(e)) => Err(e),
        Err(e @ ManifestError::Untrusted { .. }) => {
            tracing::warn!(cause = %e, "ignoring an untrusted manifest");
            Ok(None)
        }
    }
}

/// On a store with `object_lock`: puts the configured retention back on every object of a
/// committed snapshot (each at its recorded version; the manifest at `manifest_version`)
/// that has none, as a crash between the write and the explicit retention leaves it.
/// Returns how many were re-locked. A store without `object_lock`: nothing to do.
pub async fn relock(
    store: &Store,
    dir: &str,
    manifest: &crate::model::snapshot::Manifest,
    manifest_version: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    if store.object_lock().is_none() {
        return Ok(0);
    }
    let objects = manifest
        .objects
        .iter()
        .map(|o| (o.name.as_str(), o.version_in(&store.url)))
        .chain([(snapshot::MANIFEST, manifest_version)]);
    let mut relocked = 0;
    for (name, version) in objects {
        let key = format!("{dir}/{name}");
        if store.locked_until_at(&key, version).await?.is_none() {
            let until = store.lock_at(&key, version, now).await?;
            tracing::warn!(key = %key, version = ?version, until = ?until, "object had no Object Lock retention (a crash between its write and its lock); retention re-applied");
            relocked += 1;
        }
    }
    Ok(relocked)
}

/// Is the process that owns `run` certainly gone? [`liveness::is_dead`] decides; this
/// looks at `/proc` for a pid on this host.
fn is_dead(run: &RunRow, now: DateTime<Utc>, host: &str) -> bool {
    let owner = liveness::Owner {
        host: &run.host,
        pid: run.pid,
        heartbeat_at: run.heartbeat_at,
    };
    liveness::is_dead(&owner, now, host, |pid| {
        if pid == std::process::id() as i64 {
            return liveness::Pid::Ours;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("lifeboat") {
            liveness::Pid::Lifeboat
        } else {
            liveness::Pid::NotLifeboat
        }
    })
}
