//! `lifeboat backup SOURCE`: one snapshot, start to commit.
//!
//! Steps: record the run (running) → check the store answers → preflight the source → stream
//! the dump into `<source>/<id>/data.zst.age` → write `manifest.json` (the commit) → record
//! it complete. Any failure or interruption before the manifest removes what was written and
//! records the run failed with the cause; a crash is settled by [`crate::ops::settle`] at the
//! next start.
//!
//! On a store with `object_lock`, the bucket's default retention locks each object in the
//! request that writes it (checked before anything is written, see [`Store::check`]); then,
//! belt and braces, each object version gets an explicit retention after the manifest is
//! written and before the snapshot is recorded complete. If a retention cannot be set the
//! backup fails: an "immutable" snapshot that is not locked would be a lie. A crash between
//! the write and the explicit retentions leaves a committed snapshot that
//! [`crate::ops::settle`] records and locks.
//!
//! On a versioned store, the version id of every object is recorded: the data object's in
//! the (signed) manifest, the manifest's in the catalog; restore and verify read those.
//!
//! [`Store::check`]: crate::store::Store::check

use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::CatalogError;
use crate::kinds::SourceError;
use crate::model::ErrorKind;
use crate::model::failpoint;
use crate::model::snapshot::{self, Manifest};
use crate::ops::Ctx;
use crate::ops::{RunGuard, RunSpec};
use crate::pipeline::crypto;
use crate::pipeline::{self, Encoding, PipelineError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no source named `{0}` in the config; `lifeboat config check` lists the sources")]
    UnknownSource(String),
    #[error("snapshot {id} of `{source_name}` failed: {cause}")]
    Failed {
        id: String,
        source_name: String,
        kind: ErrorKind,
        cause: String,
    },
    #[error(
        "snapshot {id} is committed to store `{store}`, but the catalog could not record it ({cause}); it will be recorded at the next start, or run `lifeboat catalog rebuild`"
    )]
    Unrecorded {
        id: String,
        store: String,
        cause: CatalogError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

impl BackupError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupError::UnknownSource(_) => ErrorKind::Config,
            BackupError::Failed { kind, .. } => *kind,
            BackupError::Unrecorded { cause, .. } | BackupError::Catalog(cause) => cause.kind(),
            BackupError::Crypto(e) => e.kind(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("interrupted (SIGINT/SIGTERM) before the snapshot was committed")]
    Interrupted,
}

impl StepError {
    fn kind(&self) -> ErrorKind {
        match self {
            StepError::Pipeline(e) => e.kind(),
            StepError::Store(e) => e.kind(),
            StepError::Source(e) => e.kind(),
            StepError::Interrupted => ErrorKind::Interrupted,
        }
    }
}

/// Takes one snapshot of `source_name`. Cancelling `cancel` aborts it cleanly.
pub async fn run(
    app: &Ctx,
    source_name: &str,
    progress: &ProgressBar,
    cancel: CancellationToken,
) -> Result<Manifest, BackupError> {
    let cfg = app
        .config
        .source(source_name)
        .ok_or_else(|| BackupError::UnknownSource(source_name.to_string()))?;
    let store = app
        .stores
        .get(&cfg.store)
        .ok_or_else(|| BackupError::UnknownSource(source_name.to_string()))?;
    let recipients = crypto::parse_recipients(&app.config.encryption.recipients)?;
    let signer = match &app.config.encryption.signing_key_file {
        Some(path) => Some(crate::pipeline::signing::load_signing_key(path)?),
        None => {
            tracing::warn!(
                "no encryption.signing_key_file: this snapshot is not signed, and nothing will tell it from a forgery; run `lifeboat keys generate --signing`"
            );
            None
        }
    };
    let source = cfg.spec.spec().source(&cfg.name, app.kube.clone());

    let created_at = app.now();
    let id = snapshot::new_id(created_at);
    let run_id = format!("backup-{id}");
    let span = tracing::info_span!("backup", source = %source_name, snapshot_id = %id, store = %store.name);
    async {
    let run = RunGuard::start(
        app,
        RunSpec {
            id: &run_id,
            job: "backup",
            source: source_name,
            snapshot_id: Some(&id),
            store: Some(&store.name),
        },
    )
    .await?;
    app.catalog
        .insert_snapshot(&id, source_name, source.kind(), &store.name, created_at)
        .await?;


    let dir = snapshot::dir(source_name, &id);
    let data_key = format!("{dir}/{}", snapshot::DATA_OBJECT);
    let work = async {
        tracing::info!("backup started");
        store.check().await?;
        let mut facts = source.preflight().await?;
        let dump = source.dump().await?;
        let mut upload = store.upload(&data_key).await?;
        let enc = Encoding {
            level: app.config.compression.level,
            threads: app.config.compression.threads,
            recipients,
        };
        let stats = match pipeline::backup(dump, enc, &mut upload, store.part_size, progress).await
        {
            Ok(stats) => stats,
            Err(e) => {
                upload.abort().await;
                return Err(StepError::from(e));
            }
        };
        let data_version = upload.finish().await?.version;
        facts.extend(stats.facts.clone());
        failpoint::hit("before-manifest");
        let finished_at = app.now();
        let manifest = Manifest {
            format: snapshot::FORMAT.into(),
            id: id.clone(),
            source: source_name.to_string(),
            kind: source.kind().to_string(),
            created_at,
            finished_at,
            duration_ms: (finished_at - created_at).num_milliseconds().max(0) as u64,
            raw_bytes: stats.raw_bytes,
            compressed_bytes: stats.compressed_bytes,
            stored_bytes: stats.stored_bytes,
            sha256: stats.sha256.clone(),
            objects: vec![snapshot::ObjectEntry {
                name: snapshot::DATA_OBJECT.into(),
                stored_bytes: stats.stored_bytes,
                sha256: stats.sha256,
                version: data_version.clone().map(|id| snapshot::ObjectVersion {
                    store: store.url.clone(),
                    id,
                }),
            }],
            compression: snapshot::Compression {
                algorithm: "zstd".into(),
                level: app.config.compression.level,
            },
            encryption: snapshot::Encryption {
                algorithm: "age".into(),
                recipients: app.config.encryption.recipients.clone(),
            },
            facts,
            lifeboat_version: env!("CARGO_PKG_VERSION").into(),
            signature: None,
        };
        let mut manifest = manifest;
        manifest.signature = signer.as_ref().map(|k| k.sign(&manifest));
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| {
            StepError::Pipeline(PipelineError::Internal(format!("manifest: {e}")))
        })?;
        let manifest_key = format!("{dir}/{}", snapshot::MANIFEST);
        let manifest_version = store.put_bytes(&manifest_key, json.into()).await?.version;
        failpoint::hit("before-lock");
        for (key, version) in [(&data_key, &data_version), (&manifest_key, &manifest_version)] {
            if let Some(until) = store.lock_at(key, version.as_deref(), app.now()).await? {
                tracing::info!(key = %key, until = %until, "object lock retention set");
            }
        }
        failpoint::hit("after-manifest");
        Ok::<_, StepError>((manifest, manifest_version))
    };
    let result = tokio::select! {
        r = work => r,
        _ = cancel.cancelled() => Err(StepError::Interrupted),
    };
    let now = app.now();
    match result {
        Ok((manifest, manifest_version)) => {
            if let Err(cause) = app
                .catalog
                .record_complete_at(&store.name, &manifest, manifest_version.as_deref())
                .await
            {
                run.leave_to_settlement();
                return Err(BackupError::Unrecorded {
                    id,
                    store: store.name.clone(),
                    cause,
                });
            }
            run.complete().await?;
            tracing::info!(
                raw_bytes = manifest.raw_bytes,
                stored_bytes = manifest.stored_bytes,
                duration_ms = manifest.duration_ms,
                "snapshot committed"
            );
            Ok(manifest)
        }
        Err(err) => {
            let kind = err.kind();
            let mut cause = err.to_string();
            match store.remove_dir(&dir).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "removed the partial snapshot"),
                Ok(_) => {}
                Err(e) => {
                    cause.push_str(&format!(
                        " (and its partial objects could not be removed yet: {e}; the next run retries)"
                    ));
                }
            }
            tracing::error!(cause = %cause, "backup failed");
            app.catalog.fail_snapshot(&id, &cause, now).await?;
            run.fail(&cause).await?;
            Err(BackupError::Failed {
                id,
                source_name: source_name.to_string(),
                kind,
                cause,
            })
        }
    }
    }
    .instrument(span)
    .await
}
