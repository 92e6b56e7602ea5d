//! Cross-region copies: a committed snapshot copied, byte for byte, into each store listed in
//! its source's `copies:`.
//!
//! The same commit protocol as a backup applies in the target store: data objects first
//! (streamed, never held in memory), each read back and its SHA-256 compared with the
//! manifest, then the manifest last. A copy interrupted at any point leaves no manifest in
//! the target; [`crate::ops::settle`] removes its partial objects, and the next `lifeboat copy`
//! (or backup) starts it again. A copy whose manifest is already in place is recorded
//! complete without moving data again. A target store with `object_lock` locks each copied
//! object as the backup does.

use chrono::Utc;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::catalog::{CatalogError, Status};
use crate::model::ErrorKind;
use crate::model::failpoint;
use crate::model::snapshot::{self, Manifest};
use crate::ops::Ctx;
use crate::ops::{RunGuard, RunSpec};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "copy of snapshot {id} to store `{store}` failed: {cause}; rerun `lifeboat copy` to try again"
    )]
    Failed {
        id: String,
        store: String,
        kind: ErrorKind,
        cause: String,
    },
    #[error("no store named `{0}` in the config")]
    UnknownStore(String),
    #[error("no source named `{0}` in the config")]
    UnknownSource(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl CopyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CopyError::Failed { kind, .. } => *kind,
            CopyError::UnknownStore(_) | CopyError::UnknownSource(_) => ErrorKind::Config,
            CopyError::Catalog(e) => e.kind(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Integrity(String),
}

impl StepError {
    fn kind(&self) -> ErrorKind {
        match self {
            StepError::Store(e) => e.kind(),
            StepError::Integrity(_) => ErrorKind::Corrupt,
        }
    }
}

/// Copies snapshot `m` (committed in `from`) into `to`, recording the run and the copy.
pub async fn copy_snapshot(
    app: &Ctx,
    m: &Manifest,
    from: &Store,
    to: &Store,
) -> Result<u64, CopyError> {
    let dir = snapshot::dir(&m.source, &m.id);
    if let Err(reason) = m.check_place(&dir).and_then(|()| app.trust.check(m)) {
        return Err(CopyError::Failed {
            id: m.id.clone(),
            store: to.name.clone(),
            kind: ErrorKind::Corrupt,
            cause: format!("not copied: its manifest is refused: {reason}"),
        });
    }
    let now = app.now();
    let run_id = format!("copy-{}-{}-{}", m.id, to.name, snapshot::new_id(now));
    let run = RunGuard::start(
        app,
        RunSpec {
            id: &run_id,
            job: "copy",
            source: &m.source,
            snapshot_id: Some(&m.id),
            store: Some(&to.name),
        },
    )
    .await?;
    app.catalog.start_copy(&m.id, &to.name, now).await?;
    let span =
        tracing::info_span!("copy", source = %m.source, snapshot_id = %m.id, store = %to.name);
    async {
        let result = transfer(app, m, from, to).await;
        let now = app.now();
        match result {
            Ok(bytes) => {
                app.catalog
                    .finish_copy(&m.id, &to.name, Ok(bytes), now)
                    .await?;
                run.complete().await?;
                tracing::info!(bytes, "copy committed");
                Ok(bytes)
            }
            Err(err) => {
                let kind = err.kind();
                let mut cause = err.to_string();
                if let Err(e) = to.remove_dir(&snapshot::dir(&m.source, &m.id)).await {
                    cause.push_str(&format!(
                        " (its partial objects could not be removed yet: {e})"
                    ));
                }
                tracing::error!(cause = %cause, "copy failed");
                app.catalog
                    .finish_copy(&m.id, &to.name, Err(&cause), now)
                    .await?;
                run.fail(&cause).await?;
                Err(CopyError::Failed {
                    id: m.id.clone(),
                    store: to.name.clone(),
                    kind,
                    cause,
                })
            }
        }
    }
    .instrument(span)
    .await
}

async fn transfer(app: &Ctx, m: &Manifest, from: &Store, to: &Store) -> Result<u64, StepError> {
    let dir = snapshot::dir(&m.source, &m.id);
    if crate::ops::settle::committed_or_untrusted(to, &dir, app)
        .await?
        .is_some_and(|there| there == *m)
    {
        tracing::info!("the copy is already committed in the target store");
        return Ok(m.stored_bytes);
    }
    // Whatever an earlier attempt left is discarded: copies restart per object.
    to.remove_dir(&dir).await?;
    to.check().await?;
    let mut total = 0;
    for obj in &m.objects {
        let key = format!("{dir}/{}", obj.name);
        let mut upload = to.upload(&key).await?;
        let streamed: Result<(String, u64), StepError> = async {
            // The version the backup wrote, when the manifest records one in `from`.
            let mut stream = from.get_stream_at(&key, obj.version_in(&from.url)).await?;
            let (mut hasher, mut n) = (Sha256::new(), 0u64);
            let mut first_part = true;
            while let Some(chunk) = stream.try_next().await? {
                hasher.update(&chunk);
                n += chunk.len() as u64;
                upload.put(chunk).await?;
                if first_part && n >= to.part_size as u64 {
                    first_part = false;
                    if std::env::var_os(failpoint::ENV).is_some() {
                        upload.flush().await?;
                        failpoint::hit("mid-copy");
                    }
                }
            }
            Ok((hex::encode(hasher.finalize()), n))
        }
        .await;
        let (sha, n) = match streamed {
            Ok(v) => v,
            Err(e) => {
                upload.abort().await;
                return Err(e);
            }
        };
        if sha != obj.sha256 || n != obj.stored_bytes {
            upload.abort().await;
            return Err(StepError::Integrity(format!(
                "the source copy of {} does not match its manifest (sha256 {sha}, {n} bytes); the snapshot in store `{}` may be corrupt",
                obj.name, from.name
            )));
        }
        let version = upload.finish().await?.version;
        // Read the copy back: what the target store holds is what counts.
        let (mut hasher, mut back) = (Sha256::new(), 0u64);
        let mut stream = to.get_stream_at(&key, version.as_deref()).await?;
        while let Some(chunk) = stream.try_next().await? {
            hasher.update(&chunk);
            back += chunk.len() as u64;
        }
        let back_sha = hex::encode(hasher.finalize());
        if back_sha != obj.sha256 || back != obj.stored_bytes {
            return Err(StepError::Integrity(format!(
                "{} read back from store `{}` does not match (sha256 {back_sha}, {back} bytes)",
                obj.name, to.name
            )));
        }
        to.lock_at(&key, version.as_deref(), app.now()).await?;
        total += n;
    }
    let json =
        serde_json::to_vec_pretty(m).map_err(|e| StepError::Integrity(format!("manifest: {e}")))?;
    let manifest_key = format!("{dir}/{}", snapshot::MANIFEST);
    let version = to.put_bytes(&manifest_key, json.into()).await?.version;
    to.lock_at(&manifest_key, version.as_deref(), app.now())
        .await?;
    Ok(total)
}

/// Copies every complete snapshot of `source` (or of every source) that lacks a complete
/// copy in one of its `copies:` stores. Returns (copied, failed) counts; every failure is in
/// the catalog with its cause.
pub async fn pending(
    app: &Ctx,
    source: Option<&str>,
) -> Result<(usize, Vec<CopyError>), CopyError> {
    if let Some(name) = source
        && app.config.source(name).is_none()
    {
        return Err(CopyError::UnknownSource(name.to_string()));
    }
    let (mut copied, mut failures) = (0, Vec::new());
    for cfg in app
        .config
        .sources
        .iter()
        .filter(|s| source.is_none_or(|n| n == s.name))
    {
        if cfg.copies.is_empty() {
            continue;
        }
        for row in app.catalog.snapshots(Some(&cfg.name)).await? {
            if row.status != Status::Complete {
                continue;
            }
            for target in &cfg.copies {
                if row.locations.contains(target) {
                    continue;
                }
                let Some(manifest) = row.manifest()? else {
                    continue;
                };
                let from = app
                    .stores
                    .get(&row.store)
                    .ok_or_else(|| CopyError::UnknownStore(row.store.clone()))?;
                let to = app
                    .stores
                    .get(target)
                    .ok_or_else(|| CopyError::UnknownStore(target.clone()))?;
                match copy_snapshot(app, &manifest, from, to).await {
                    Ok(_) => copied += 1,
                    Err(e @ CopyError::Failed { .. }) => failures.push(e),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok((copied, failures))
}

/// Settles a copy run whose process died: complete if its manifest made it, else its partial
/// objects are removed and the copy is recorded failed (the next `lifeboat copy` redoes it).
pub async fn settle_dead(
    app: &Ctx,
    store: &Store,
    source: &str,
    id: &str,
    now: chrono::DateTime<Utc>,
) -> Result<bool, crate::ops::settle::SettleError> {
    let dir = snapshot::dir(source, id);
    if let Some(m) = crate::ops::settle::committed_or_untrusted(store, &dir, app).await? {
        app.catalog
            .finish_copy(id, &store.name, Ok(m.stored_bytes), now)
            .await?;
        return Ok(true);
    }
    let removed = store.remove_dir(&dir).await?;
    let msg = format!(
        "the copy process died before the copy was committed; {removed} partial object(s) removed"
    );
    app.catalog
        .finish_copy(id, &store.name, Err(&msg), now)
        .await?;
    Ok(false)
}
