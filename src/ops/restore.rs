//! `lifeboat restore SNAPSHOT_ID --target URL`: stream a snapshot out of its store into a
//! target service.
//!
//! The manifest is read from the store, not trusted from the catalog (the catalog may be
//! gone: a snapshot not in the catalog is looked up in every configured store). Before any
//! data moves: the identity loads, the target accepts a restore (PostgreSQL: reachable and
//! empty), and the data object exists with its recorded size. While data moves: age
//! authenticates every chunk and the SHA-256 is checked at the end, before the target may
//! commit.
//!
//! On a versioned store, the manifest is read at the version the catalog recorded and the
//! data object at the version the manifest records: overwriting the snapshot's keys or
//! adding delete markers (what an attacker with write access can do to an Object Lock
//! bucket) does not change what is restored.

use std::path::PathBuf;

use indicatif::ProgressBar;
use tracing::Instrument;

use crate::catalog::CatalogError;
use crate::catalog::Status;
use crate::kinds::{RestoreOptions, RestoreTo, SourceError};
use crate::model::ErrorKind;
use crate::model::snapshot::{self, Manifest};
use crate::ops::Ctx;
use crate::ops::manifest::{read_manifest, read_manifest_at};
use crate::ops::{RunGuard, RunSpec};
use crate::pipeline::crypto;
use crate::pipeline::{self, Expected, PipelineError, RestoreStats};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "snapshot {id} is not in the catalog nor in any configured store; list snapshots with `lifeboat snapshots list` (after a disaster, `lifeboat catalog rebuild` first)"
    )]
    NotFound { id: String },
    #[error(
        "snapshot {id} is {status}, not complete{}; restore a complete snapshot (see `lifeboat snapshots list`)",
        .error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
    )]
    NotComplete {
        id: String,
        status: &'static str,
        error: Option<String>,
    },
    #[error(
        "snapshot {id}: the catalog records it complete in store `{store}`, but its manifest or data objects are missing there; restore a copy or another snapshot, and run `lifeboat catalog rebuild`"
    )]
    Missing { id: String, store: String },
    #[error("snapshot {id}: {cause}")]
    Failed {
        id: String,
        kind: ErrorKind,
        cause: String,
    },
    #[error(
        "no age identity to decrypt with; set encryption.identity_file in the config (and mount the identity there: on Kubernetes the Secret `lifeboat-age-identity`, in the verify/restore workload only) or pass --identity FILE"
    )]
    NoIdentity,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl RestoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RestoreError::NotFound { .. } | RestoreError::NoIdentity => ErrorKind::Config,
            RestoreError::NotComplete { .. } => ErrorKind::Config,
            RestoreError::Missing { .. } => ErrorKind::Corrupt,
            RestoreError::Failed { kind, .. } => *kind,
            RestoreError::Catalog(e) => e.kind(),
        }
    }
}

pub struct Request {
    pub snapshot_id: String,
    pub to: RestoreTo,
    pub identity: Option<PathBuf>,
    /// Restore from this store (a copy) instead of the snapshot's own store.
    pub store: Option<String>,
    pub options: RestoreOptions,
}

pub async fn run(
    app: &Ctx,
    req: &Request,
    progress: &ProgressBar,
) -> Result<(Manifest, RestoreStats), RestoreError> {
    let id = req.snapshot_id.as_str();
    let span = tracing::info_span!("restore", snapshot_id = %id);
    let run_id = format!(
        "restore-{}-{}",
        id,
        crate::model::snapshot::new_id(app.now())
    );
    let source = app
        .catalog
        .snapshot(id)
        .await?
        .map(|r| r.source)
        .unwrap_or_default();
    let run = RunGuard::start(
        app,
        RunSpec {
            id: &run_id,
            job: "restore",
            source: &source,
            snapshot_id: Some(id),
            store: None,
        },
    )
    .await?;
    let result = restore(app, req, progress).instrument(span).await;
    match &result {
        Ok(_) => run.complete().await?,
        Err(e) => run.fail(&e.to_string()).await?,
    }
    result
}

pub(crate) async fn restore(
    app: &Ctx,
    req: &Request,
    progress: &ProgressBar,
) -> Result<(Manifest, RestoreStats), RestoreError> {
    let id = req.snapshot_id.as_str();
    {
        let failed = |kind: ErrorKind, cause: String| RestoreError::Failed {
            id: id.to_string(),
            kind,
            cause,
        };
        let identity_path = req
            .identity
            .clone()
            .or_else(|| app.config.encryption.identity_file.clone())
            .ok_or_else(|| failed(ErrorKind::Config, RestoreError::NoIdentity.to_string()))?;
        let identities =
            crypto::load_identities(&identity_path).map_err(|e| failed(e.kind(), e.to_string()))?;
        let (store, manifest) = match &req.store {
            Some(name) => locate_in(app, id, name).await?,
            None => locate(app, id).await?,
        };
        let source_failed = |e: SourceError| failed(e.kind(), e.to_string());
        let store_failed = |e: StoreError| failed(e.kind(), e.to_string());
        let target = crate::kinds::target(
            &manifest.kind,
            &req.to,
            &req.options,
            app.config.source(&manifest.source).map(|s| &s.spec),
            app.kube.clone(),
        )
        .map_err(source_failed)?;
        target.preflight().await.map_err(source_failed)?;

        let data = manifest
            .data_object()
            .ok_or_else(|| {
                failed(
                    ErrorKind::Corrupt,
                    "its manifest lists no data object".into(),
                )
            })?
            .clone();
        let key = format!("{}/{}", snapshot::dir(&manifest.source, id), data.name);
        let version = data.version_in(&store.url);
        match store.size_at(&key, version).await.map_err(store_failed)? {
            None => {
                return Err(failed(
                    ErrorKind::Corrupt,
                    format!(
                        "its data object {key} is missing from store `{}`; restore a copy from another store or an older snapshot",
                        store.name
                    ),
                ));
            }
            Some(n) if n != data.stored_bytes => {
                return Err(failed(
                    ErrorKind::Corrupt,
                    PipelineError::Corrupt(format!(
                        "the data object has {n} bytes, its manifest records {}",
                        data.stored_bytes
                    ))
                    .to_string(),
                ));
            }
            Some(_) => {}
        }
        tracing::info!(store = %store.name, kind = %manifest.kind, "restore started");
        progress.set_length(manifest.raw_bytes);
        let stream = store
            .get_stream_at(&key, version)
            .await
            .map_err(store_failed)?;
        let target: std::sync::Arc<dyn crate::kinds::Target> = target.into();
        let stats = pipeline::restore(
            stream,
            Expected {
                sha256: data.sha256.clone(),
                size: data.stored_bytes,
            },
            identities,
            manifest.encryption.recipients.clone(),
            Box::new(move || target.restore()),
            progress,
        )
        .await
        .map_err(|e| failed(e.kind(), e.to_string()))?;
        tracing::info!(raw_bytes = stats.raw_bytes, "restore finished");
        Ok((manifest, stats))
    }
}

/// Reads snapshot `id`'s manifest from store `name` (a copy, usually).
async fn locate_in<'a>(
    app: &'a Ctx,
    id: &str,
    name: &str,
) -> Result<(&'a Store, Manifest), RestoreError> {
    let failed = |kind: ErrorKind, cause: String| RestoreError::Failed {
        id: id.to_string(),
        kind,
        cause,
    };
    let store = app.stores.get(name).ok_or_else(|| {
        failed(
            ErrorKind::Config,
            format!("no store named `{name}` in the config"),
        )
    })?;
    let row = app.catalog.snapshot(id).await?;
    // The catalog's manifest version, when this is the store it was recorded in.
    let recorded = row
        .as_ref()
        .filter(|r| r.store == store.name)
        .and_then(|r| r.manifest_version.clone().map(|v| (r.source.clone(), v)));
    let known = row.map(|r| r.source);
    let sources = known
        .into_iter()
        .chain(app.config.sources.iter().map(|s| s.name.clone()));
    for source in sources {
        let dir = snapshot::dir(&source, id);
        let version = recorded
            .as_ref()
            .filter(|(s, _)| *s == source)
            .map(|(_, v)| v.as_str());
        match read_manifest_at(store, &dir, &app.trust, version).await {
            Ok(Some((m, _))) => {
                witness(app, id, &m).await?;
                return Ok((store, m));
            }
            Ok(None) => {}
            Err(e) => return Err(failed(e.kind(), e.to_string())),
        }
    }
    Err(failed(
        ErrorKind::Corrupt,
        format!("store `{name}` holds no copy of it"),
    ))
}

/// Finds the store holding snapshot `id` and reads its manifest there.
pub(crate) async fn locate<'a>(
    app: &'a Ctx,
    id: &str,
) -> Result<(&'a Store, Manifest), RestoreError> {
    if let Some(row) = app.catalog.snapshot(id).await? {
        match row.status {
            Status::Complete => {}
            other => {
                return Err(RestoreError::NotComplete {
                    id: id.to_string(),
                    status: other.as_str(),
                    error: row.error,
                });
            }
        }
        let missing = || RestoreError::Missing {
            id: id.to_string(),
            store: row.store.clone(),
        };
        let store = app.stores.get(&row.store).ok_or_else(missing)?;
        let dir = snapshot::dir(&row.source, id);
        let version = row.manifest_version.as_deref();
        return match read_manifest_at(store, &dir, &app.trust, version).await {
            Ok(Some((m, _))) => {
                witness(app, id, &m).await?;
                Ok((store, m))
            }
            Ok(None) => Err(missing()),
            Err(e) => Err(RestoreError::Failed {
                id: id.to_string(),
                kind: e.kind(),
                cause: e.to_string(),
            }),
        };
    }
    // Not in the catalog: look in every store, for every configured source name first,
    // then by listing (a source may have been renamed or removed from the config). An
    // untrusted manifest found on the way is the answer (an error), not skipped over.
    let refused = |e: crate::ops::manifest::ManifestError| RestoreError::Failed {
        id: id.to_string(),
        kind: e.kind(),
        cause: e.to_string(),
    };
    for store in app.stores.values() {
        for source in &app.config.sources {
            match read_manifest(store, &snapshot::dir(&source.name, id), &app.trust).await {
                Ok(Some(m)) => return Ok((store, m)),
                Err(e @ crate::ops::manifest::ManifestError::Untrusted { .. }) => {
                    return Err(refused(e));
                }
                _ => {}
            }
        }
        let Ok(listing) = store.list("").await else {
            continue;
        };
        let suffix = format!("/{id}/{}", snapshot::MANIFEST);
        for (key, _) in &listing {
            if let Some(dir) = key.strip_suffix(&format!("/{}", snapshot::MANIFEST))
                && key.ends_with(&suffix)
            {
                match read_manifest(store, dir, &app.trust).await {
                    Ok(Some(m)) => return Ok((store, m)),
                    Err(e @ crate::ops::manifest::ManifestError::Untrusted { .. }) => {
                        return Err(refused(e));
                    }
                    _ => {}
                }
            }
        }
    }
    Err(RestoreError::NotFound { id: id.to_string() })
}

/// Where the catalog has a row for snapshot `id`, the store's manifest must agree with it
/// (SHA-256, size): the catalog is a witness of what was backed up.
async fn witness(app: &Ctx, id: &str, m: &Manifest) -> Result<(), RestoreError> {
    let Some(row) = app.catalog.snapshot(id).await? else {
        return Ok(());
    };
    match crate::ops::rebuild::disagreement(&row, m) {
        None => Ok(()),
        Some(why) => Err(RestoreError::Failed {
            id: id.to_string(),
            kind: ErrorKind::Corrupt,
            cause: format!(
                "refused: {why}; the store's copy was replaced after the backup (tampering or a bug): restore another snapshot or a copy, and investigate the store"
            ),
        }),
    }
}
