//! `lifeboat catalog rebuild`: the catalog rebuilt from what the stores hold (after a
//! disaster took the catalog). A snapshot is recorded only if it is committed in a store.

use std::collections::BTreeMap;

use crate::catalog::SnapshotRow;
use crate::model::snapshot::{self, Manifest};
use crate::ops::Ctx;
use crate::ops::manifest::{ManifestError, read_committed};
use crate::ops::settle::SettleError;
use crate::store::Store;

#[derive(Debug, Default)]
pub struct Rebuilt {
    pub recorded: usize,
    /// Stores that could not be listed (their snapshots are not recorded).
    pub unreachable: Vec<String>,
    /// (store, directory, why it was skipped)
    pub skipped: Vec<(String, String, String)>,
    /// (snapshot id, what disagrees): a catalog row whose SHA-256 or size differs from the
    /// store's manifest. The row is kept: the catalog is a witness, and a store that
    /// disagrees with it may have been tampered with.
    pub conflicts: Vec<(String, String)>,
}

/// Records every committed snapshot found in the stores. The catalog may be empty (after a
/// disaster) or not; rows are inserted or brought in line with their manifests. A snapshot
/// found in several stores is recorded in its source's configured store (or the first store
/// holding it) with the others as complete copies.
pub async fn run(app: &Ctx) -> Result<Rebuilt, SettleError> {
    let mut out = Rebuilt::default();
    let mut found: BTreeMap<String, Vec<(&Store, Manifest)>> = BTreeMap::new();
    for store in app.stores.values() {
        // A locked (versioned) store: keys behind a delete marker too (see
        // `read_committed`, which then reads their newest trusted version).
        let listing = match store.list_ever("").await {
            Ok(l) => l,
            Err(e) => {
                out.unreachable.push(e.to_string());
                continue;
            }
        };
        let dirs: Vec<&str> = listing
            .iter()
            .filter_map(|key| key.strip_suffix(&format!("/{}", snapshot::MANIFEST)))
            .filter(|dir| dir.split('/').count() == 2)
            .collect();
        for dir in dirs {
            let skip = |why: &str| (store.name.clone(), dir.to_string(), why.to_string());
            match read_committed(store, dir, &app.trust).await {
                Ok(Some(m)) => {
                    found.entry(m.id.clone()).or_default().push((store, m));
                }
                Ok(None) => out
                    .skipped
                    .push(skip("manifest unreadable or data objects missing")),
                Err(ManifestError::Store(e)) => return Err(e.into()),
                Err(ManifestError::Untrusted { reason, .. }) => out.skipped.push(skip(&reason)),
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
        if let Some(row) = app.catalog.snapshot(&manifest.id).await?
            && let Some(conflict) = disagreement(&row, manifest)
        {
            tracing::warn!(snapshot_id = %manifest.id, store = %primary.name, conflict = %conflict, "the store's manifest disagrees with the catalog; the catalog row is kept");
            out.conflicts.push((manifest.id.clone(), conflict));
            continue;
        }
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

/// How a store's manifest disagrees with the catalog's row of the same snapshot (SHA-256,
/// size), if it does: the catalog is a witness of what was backed up.
pub fn disagreement(row: &SnapshotRow, m: &Manifest) -> Option<String> {
    if let Some(sha) = &row.sha256
        && !sha.is_empty()
        && *sha != m.sha256
    {
        return Some(format!(
            "the catalog records SHA-256 {sha}, the store's manifest {}",
            m.sha256
        ));
    }
    if let Some(n) = row.stored_bytes
        && row.sha256.as_ref().is_some_and(|s| !s.is_empty())
        && n != m.stored_bytes as i64
    {
        return Some(format!(
            "the catalog records {n} stored bytes, the store's manifest {}",
            m.stored_bytes
        ));
    }
    None
}
