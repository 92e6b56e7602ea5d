//! Finding what crashed runs left behind, and rebuilding the catalog from the stores.
//!
//! Guarantees, given the commit protocol in [`crate::model::snapshot`]:
//! - a run whose process is gone and whose snapshot has a manifest is recorded complete (it
//!   died between writing the manifest and updating the catalog);
//! - a run whose process is gone without a manifest is recorded failed, and every object
//!   under its snapshot directory (including staging files of a local store) is removed;
//! - a run whose process may still be alive is never touched.
//!
//! A process is known dead when it ran on this host and its pid is gone (or is now some
//! other program, or is ourselves), or when its heartbeat is older than [`STALE_AFTER`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::catalog::{CatalogError, RunRow, Status};
use crate::model::host::hostname;
use crate::model::snapshot::{self, Manifest};
use crate::ops::Ctx;
use crate::store::{Store, StoreError};

/// A run's heartbeat is refreshed every [`crate::ops::run::HEARTBEAT`]; one this old means
/// the run is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RecoveryError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        match self {
            RecoveryError::Catalog(e) => e.kind(),
            RecoveryError::Store(e) => e.kind(),
        }
    }
}

/// Is the process that owns `run` certainly gone?
pub fn is_dead(run: &RunRow, now: DateTime<Utc>, host: &str) -> bool {
    if run.host == host {
        if run.pid == std::process::id() as i64 {
            // Our pid, but we have not started this run: a previous process with the same
            // pid (e.g. pid 1 in a restarted container).
            return true;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", run.pid)).unwrap_or_default();
        return !String::from_utf8_lossy(&cmdline).contains("lifeboat");
    }
    now.signed_duration_since(run.heartbeat_at)
        .to_std()
        .is_ok_and(|age| age > STALE_AFTER)
}

#[derive(Debug, Default)]
pub struct Recovered {
    pub completed: Vec<String>,
    pub failed: Vec<String>,
    pub orphans_removed: usize,
}

/// Settles the runs of dead processes. Store errors leave a run for the next start.
pub async fn recover(app: &Ctx) -> Result<Recovered, RecoveryError> {
    let now = app.now();
    let host = hostname();
    let mut out = Recovered::default();
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
        match settle(store, &run, id, now, app).await {
            Ok(Settled::Completed) => out.completed.push(id.clone()),
            Ok(Settled::Failed(removed)) => {
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
pub async fn settle_before_work(app: &Ctx) {
    match recover(app).await {
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

enum Settled {
    Completed,
    Failed(usize),
}

async fn settle(
    store: &Store,
    run: &RunRow,
    id: &str,
    now: DateTime<Utc>,
    app: &Ctx,
) -> Result<Settled, RecoveryError> {
    let dir = snapshot::dir(&run.source, id);
    if let Some(manifest) = read_committed(store, &dir).await? {
        tracing::info!(snapshot_id = %id, "a crashed run had committed its snapshot; recording it complete");
        app.catalog.record_complete(&store.name, &manifest).await?;
        app.catalog
            .finish_run(
                &run.id,
                Status::Complete,
                Some("recovered after a crash: the manifest had been written"),
                now,
            )
            .await?;
        return Ok(Settled::Completed);
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
    Ok(Settled::Failed(removed))
}

/// The manifest of `dir`, if it exists, parses, and its data objects are all present with
/// their recorded sizes. Anything less is not a committed snapshot.
pub async fn read_committed(store: &Store, dir: &str) -> Result<Option<Manifest>, StoreError> {
    let Some(manifest) = read_manifest(store, dir).await? else {
        return Ok(None);
    };
    for obj in &manifest.objects {
        let size = store.size(&format!("{dir}/{}", obj.name)).await?;
        if size != Some(obj.stored_bytes) {
            tracing::warn!(store = %store.name, dir, object = %obj.name, "manifest lists an object that is missing or has the wrong size; not a snapshot");
            return Ok(None);
        }
    }
    Ok(Some(manifest))
}

/// The manifest of `dir`, if it exists and parses (its objects are not checked).
pub async fn read_manifest(store: &Store, dir: &str) -> Result<Option<Manifest>, StoreError> {
    let bytes = match store
        .get_bytes(&format!("{dir}/{}", snapshot::MANIFEST))
        .await
    {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            tracing::warn!(store = %store.name, dir, cause = %e, "unreadable manifest; not a snapshot");
            Ok(None)
        }
    }
}

#[derive(Debug, Default)]
pub struct Rebuilt {
    pub recorded: usize,
    /// Stores that could not be listed (their snapshots are not recorded).
    pub unreachable: Vec<String>,
    /// (store, directory, why it was skipped)
    pub skipped: Vec<(String, String, String)>,
}

/// Records every committed snapshot found in the stores. The catalog may be empty (after a
/// disaster) or not; rows are inserted or brought in line with their manifests. A snapshot
/// found in several stores is recorded in its source's configured store (or the first store
/// holding it) with the others as complete copies.
pub async fn rebuild(app: &Ctx) -> Result<Rebuilt, RecoveryError> {
    let mut out = Rebuilt::default();
    let mut found: BTreeMap<String, Vec<(&Store, Manifest)>> = BTreeMap::new();
    for store in app.stores.values() {
        let listing = match store.list("").await {
            Ok(l) => l,
            Err(e) => {
                out.unreachable.push(e.to_string());
                continue;
            }
        };
        let dirs: Vec<&str> = listing
            .iter()
            .filter_map(|(key, _)| key.strip_suffix(&format!("/{}", snapshot::MANIFEST)))
            .filter(|dir| dir.split('/').count() == 2)
            .collect();
        for dir in dirs {
            let skip = |why: &str| (store.name.clone(), dir.to_string(), why.to_string());
            match read_committed(store, dir).await? {
                Some(m) if snapshot::dir(&m.source, &m.id) == dir => {
                    found.entry(m.id.clone()).or_default().push((store, m));
                }
                Some(_) => out.skipped.push(skip(
                    "manifest names another source or id than its directory",
                )),
                None => out
                    .skipped
                    .push(skip("manifest unreadable or data objects missing")),
            }
        }
    }
    let now = app.now();
    for (_, mut holders) in found {
        let home = app
            .config
            .source(&holders[0].1.source)
            .map(|s| s.store.clone());
        if let Some(pos) = holders
            .iter()
            .position(|(s, _)| Some(&s.name) == home.as_ref())
        {
            holders.swap(0, pos);
        }
        let (primary, manifest) = &holders[0];
        app.catalog.record_complete(&primary.name, manifest).await?;
        for (copy, m) in &holders[1..] {
            app.catalog
                .finish_copy(&m.id, &copy.name, Ok(m.stored_bytes), now)
                .await?;
        }
        out.recorded += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(host: &str, pid: i64, heartbeat_age: i64, now: DateTime<Utc>) -> RunRow {
        RunRow {
            id: "r".into(),
            job: "backup".into(),
            source: "s".into(),
            snapshot_id: None,
            store: None,
            started_at: now,
            heartbeat_at: now - chrono::Duration::seconds(heartbeat_age),
            host: host.into(),
            pid,
        }
    }

    #[test]
    fn liveness_rules() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let me = std::process::id() as i64;
        // Same host, our own pid: a previous incarnation.
        assert!(is_dead(&run("h", me, 0, now), now, "h"));
        // Same host, a pid that does not exist.
        assert!(is_dead(&run("h", i32::MAX as i64, 0, now), now, "h"));
        // Same host, a live pid of another program (pid 1 is never lifeboat in tests).
        assert!(is_dead(&run("h", 1, 0, now), now, "h"));
        // Other host: only the heartbeat tells.
        assert!(!is_dead(&run("other", 1, 10, now), now, "h"));
        assert!(is_dead(&run("other", 1, 600, now), now, "h"));
    }
}
