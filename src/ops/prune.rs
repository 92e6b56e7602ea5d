//! `lifeboat prune [SOURCE] [--dry-run]`: applies each source's `retention` policy.
//!
//! [`plan`] gathers the facts (catalog rows; for stores with `object_lock`, the retention of
//! the objects of each snapshot the policy would delete) and asks the pure planner in
//! [`crate::policy::retention`]; [`execute`] carries the plan out. Nothing is deleted by `plan`.
//!
//! # Guarantees
//! - Never deleted: the newest complete snapshot, the newest verified one, a `running` one
//!   (its process is alive: the CLI settles crashed runs first), one whose objects are under
//!   an unexpired Object Lock retention (it is skipped and the plan says so).
//! - A snapshot stops existing atomically: its `manifest.json` is deleted **first** (no
//!   manifest ⇒ not a snapshot, per [`crate::model::snapshot`]), then its data objects, then its
//!   catalog row.
//! - Every step is idempotent, so a prune stopped anywhere (store error, crash, Ctrl-C) is
//!   finished by running it again: the catalog row goes last, so the next plan still lists
//!   the snapshot and deletes what is left of it.
//!
//! # Caveats
//! Between the manifest's deletion and the row's, `snapshots list` still shows the snapshot
//! complete; a restore of it then fails with "no manifest". Each source's prune is recorded
//! as a run (`job = prune`, no snapshot id, so crash recovery never touches snapshots for it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::Instrument;

use crate::catalog::{CatalogError, SnapshotRow, Status};
use crate::model::snapshot;
use crate::ops::Ctx;
use crate::ops::{RunGuard, RunSpec};
use crate::policy::retention::{self, Action, Item, ItemStatus, Lock, Policy};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("no source named `{0}` in the config; `lifeboat config check` lists the sources")]
    UnknownSource(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "prune of `{source_name}` stopped at snapshot {id}: {cause}; nothing after it was touched, and running `lifeboat prune` again finishes the job"
    )]
    Store {
        source_name: String,
        id: String,
        cause: Box<StoreError>,
    },
    #[error(
        "prune of `{source_name}` stopped at snapshot {id}: {cause}; the snapshot is kept, and running `lifeboat prune` again retries"
    )]
    Forget {
        source_name: String,
        id: String,
        cause: Box<crate::kinds::SourceError>,
    },
    #[error(
        "the catalog row of snapshot {id} has an unreadable created_at `{value}`; run `lifeboat catalog rebuild`"
    )]
    BadRow { id: String, value: String },
}

impl PruneError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            PruneError::UnknownSource(_) => ErrorKind::Config,
            PruneError::Catalog(e) => e.kind(),
            PruneError::Store { cause, .. } => cause.kind(),
            PruneError::Forget { cause, .. } => cause.kind(),
            PruneError::BadRow { .. } => ErrorKind::Corrupt,
        }
    }
}

/// The plan for one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotPlan {
    pub id: String,
    pub store: String,
    /// Every store holding it (its own store, then copies); pruning removes it from all.
    pub locations: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub status: Status,
    pub stored_bytes: Option<i64>,
    pub action: Action,
    /// Every reason to keep it, or the reason it may go.
    pub reasons: Vec<String>,
}

/// The plan for one source: its policy and one entry per snapshot, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    pub source: String,
    /// `None`: the source has no `retention`, and everything is kept.
    pub policy: Option<Policy>,
    pub snapshots: Vec<SnapshotPlan>,
}

impl SourcePlan {
    pub fn to_delete(&self) -> impl Iterator<Item = &SnapshotPlan> {
        self.snapshots.iter().filter(|s| s.action == Action::Delete)
    }
}

/// What [`execute`] did for one source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub run_id: Option<String>,
    pub deleted: Vec<String>,
    /// Data objects removed (manifests not counted).
    pub objects_removed: usize,
    pub bytes_freed: u64,
    /// (snapshot id, why it was left alone although the plan said delete)
    pub skipped: Vec<(String, String)>,
}

/// Plans every configured source, or just `source`. Reads, never writes.
pub async fn plan(
    app: &Ctx,
    source: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<SourcePlan>, PruneError> {
    let sources: Vec<_> = match source {
        Some(name) => vec![
            app.config
                .source(name)
                .ok_or_else(|| PruneError::UnknownSource(name.to_string()))?,
        ],
        None => app.config.sources.iter().collect(),
    };
    let mut plans = Vec::new();
    for cfg in sources {
        plans.push(plan_source(app, &cfg.name, cfg.retention, now).await?);
    }
    Ok(plans)
}

async fn plan_source(
    app: &Ctx,
    source: &str,
    policy: Option<Policy>,
    now: DateTime<Utc>,
) -> Result<SourcePlan, PruneError> {
    let rows = app.catalog.snapshots(Some(source)).await?;
    let verified = app.catalog.newest_verified(source).await?;
    let mut items = rows
        .iter()
        .map(|r| item(r, verified.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let policy_or_empty = policy.unwrap_or_default();

    // Locks only turn a delete into a keep, so only the would-be deletions are asked about.
    let first = retention::plan(&policy_or_empty, &items, now);
    for (i, d) in first.iter().enumerate() {
        if d.action != Action::Delete {
            continue;
        }
        for location in &rows[i].locations {
            let Some(store) = app
                .stores
                .get(location)
                .filter(|s| s.object_lock().is_some())
            else {
                continue;
            };
            let lock = snapshot_lock(store, source, &rows[i].id)
                .await
                .map_err(|cause| PruneError::Store {
                    source_name: source.to_string(),
                    id: rows[i].id.clone(),
                    cause: Box::new(cause),
                })?;
            if let Some(lock) = lock
                && items[i].lock.is_none_or(|l| lock.until > l.until)
            {
                items[i].lock = Some(lock);
            }
        }
    }
    let decisions = retention::plan(&policy_or_empty, &items, now);

    let mut snapshots: Vec<SnapshotPlan> = rows
        .iter()
        .zip(&items)
        .zip(decisions)
        .map(|((row, item), d)| SnapshotPlan {
            id: row.id.clone(),
            store: row.store.clone(),
            locations: row.locations.clone(),
            created_at: item.created_at,
            status: row.status,
            stored_bytes: row.stored_bytes,
            action: d.action,
            reasons: d.reasons.iter().map(ToString::to_string).collect(),
        })
        .collect();
    snapshots.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(SourcePlan {
        source: source.to_string(),
        policy,
        snapshots,
    })
}

fn item(row: &SnapshotRow, verified: Option<&str>) -> Result<Item, PruneError> {
    let created_at = DateTime::parse_from_rfc3339(&row.created_at)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| snapshot::id_time(&row.id))
        .ok_or_else(|| PruneError::BadRow {
            id: row.id.clone(),
            value: row.created_at.clone(),
        })?;
    Ok(Item {
        id: row.id.clone(),
        created_at,
        status: match row.status {
            Status::Complete => ItemStatus::Complete,
            Status::Running => ItemStatus::Running,
            Status::Failed => ItemStatus::Failed,
        },
        verified: verified == Some(row.id.as_str()),
        lock: None,
    })
}

/// The latest-ending retention over the objects of a snapshot, if any: over every version
/// of every key (a key whose current version is a delete marker or an attacker's overwrite
/// still holds the locked versions the backup wrote).
async fn snapshot_lock(store: &Store, source: &str, id: &str) -> Result<Option<Lock>, StoreError> {
    let dir = snapshot::dir(source, id);
    let mut latest: Option<Lock> = None;
    for key in store.list_ever(&dir).await? {
        let versions = store.versions(&key).await?;
        let versions: Vec<Option<&str>> = if versions.is_empty() {
            vec![None]
        } else {
            versions.iter().map(|v| Some(v.as_str())).collect()
        };
        for version in versions {
            if let Some(lock) = store.locked_until_at(&key, version).await?
                && latest.is_none_or(|l| lock.until > l.until)
            {
                latest = Some(lock);
            }
        }
    }
    Ok(latest)
}

/// Deletes what `plan` marks for deletion, recording the prune as a run. Stops at the
/// first store error (see the module doc for why that is safe).
pub async fn execute(app: &Ctx, plan: &SourcePlan) -> Result<Outcome, PruneError> {
    let mut out = Outcome::default();
    if plan.policy.is_none() {
        return Ok(out);
    }
    let started = app.now();
    let run_id = format!("prune-{}-{}", plan.source, snapshot::new_id(started));
    let run = RunGuard::start(
        app,
        RunSpec {
            id: &run_id,
            job: "prune",
            source: &plan.source,
            snapshot_id: None,
            store: None,
        },
    )
    .await?;
    out.run_id = Some(run_id.clone());
    let result = delete_all(app, plan, &mut out).await;
    match result {
        Ok(()) => {
            run.complete().await?;
            Ok(out)
        }
        Err(e) => {
            let msg = format!("{e} ({} snapshot(s) deleted before)", out.deleted.len());
            run.fail(&msg).await?;
            Err(e)
        }
    }
}

async fn delete_all(app: &Ctx, plan: &SourcePlan, out: &mut Outcome) -> Result<(), PruneError> {
    // Oldest first: if the prune stops half-way, the history lost is the oldest.
    for snap in plan.to_delete().collect::<Vec<_>>().into_iter().rev() {
        let span = tracing::info_span!("prune", source = %plan.source, snapshot_id = %snap.id);
        delete_one(app, &plan.source, snap, out)
            .instrument(span)
            .await?;
    }
    Ok(())
}

/// Lets the snapshot's kind clean up what it keeps outside the store ([`crate::kinds::Kind::forget`]).
/// Only for a trusted manifest: what it names outside the store is deleted.
async fn forget(app: &Ctx, source: &str, id: &str) -> Result<Option<String>, PruneError> {
    let Some(row) = app.catalog.snapshot(id).await? else {
        return Ok(None);
    };
    let (Some(kind), Some(manifest)) = (crate::kinds::kind(&row.kind), row.manifest()?) else {
        return Ok(None);
    };
    if let Err(reason) = manifest
        .check_place(&snapshot::dir(source, id))
        .and_then(|()| app.trust.check(&manifest))
    {
        return Ok(Some(format!("its manifest is refused: {reason}")));
    }
    kind.forget(&manifest, app.kube.clone())
        .await
        .map_err(|cause| PruneError::Forget {
            source_name: source.to_string(),
            id: id.to_string(),
            cause: Box::new(cause),
        })?;
    Ok(None)
}

async fn delete_one(
    app: &Ctx,
    source: &str,
    snap: &SnapshotPlan,
    out: &mut Outcome,
) -> Result<(), PruneError> {
    if snap.status == Status::Running {
        // The planner never says so; this is the last line of defence.
        out.skipped.push((
            snap.id.clone(),
            "running (another process is writing)".into(),
        ));
        return Ok(());
    }
    if !snapshot::valid_id(&snap.id) || !snapshot::valid_name(source) {
        // Only a planted manifest gives a catalog row such an id; its directory is not ours.
        out.skipped.push((
            snap.id.clone(),
            "not a snapshot id: nothing deleted (remove the catalog row by hand)".into(),
        ));
        return Ok(());
    }
    let mut stores = Vec::new();
    for location in &snap.locations {
        let Some(store) = app.stores.get(location) else {
            tracing::warn!(store = %location, "store no longer configured; snapshot kept");
            out.skipped.push((
                snap.id.clone(),
                format!(
                    "store `{location}` is no longer in the config; add it back to prune this snapshot"
                ),
            ));
            return Ok(());
        };
        stores.push(store);
    }
    let fail = |cause| PruneError::Store {
        source_name: source.to_string(),
        id: snap.id.clone(),
        cause: Box::new(cause),
    };
    // What the snapshot holds outside the store (a CSI VolumeSnapshot) goes first: if that
    // fails, the snapshot is kept whole and the next prune tries again.
    if snap.status == Status::Complete
        && let Some(why) = forget(app, source, &snap.id).await?
    {
        tracing::warn!(why = %why, "snapshot kept");
        out.skipped.push((snap.id.clone(), why));
        return Ok(());
    }
    let dir = snapshot::dir(source, &snap.id);
    // The manifests first, everywhere: from here on the snapshot no longer exists.
    for store in &stores {
        store
            .delete(&format!("{dir}/{}", snapshot::MANIFEST))
            .await
            .map_err(fail)?;
    }
    let mut removed = 0;
    for store in &stores {
        removed += store.remove_dir(&dir).await.map_err(fail)?;
    }
    app.catalog.delete_snapshot(&snap.id).await?;
    tracing::info!(data_objects_removed = removed, "snapshot pruned");
    out.objects_removed += removed;
    if snap.status == Status::Complete {
        out.bytes_freed += snap.stored_bytes.unwrap_or(0).max(0) as u64;
    }
    out.deleted.push(snap.id.clone());
    Ok(())
}
