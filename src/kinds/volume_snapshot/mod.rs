//! PVC state on Kubernetes (`kind: files` with `pvc:`): a CSI `VolumeSnapshot` of the PVC,
//! taken through [`crate::kube::KubeApi`] and waited on until the snapshotter reports it
//! ready. The volume's bytes stay in the storage backend; what lifeboat stores (encrypted,
//! like every snapshot) is the descriptor needed to restore it: VolumeSnapshot name,
//! namespace, content, size. Snapshots of this kind are recorded with kind `volume-snapshot`.
//! For copies outside the cluster's storage, archive the mounted volume with `path:` instead.
//!
//! Restore (`--target pvc://NAMESPACE/NAME`) creates a new PVC from the VolumeSnapshot.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Dump, Facts, Sink, Source, SourceError, Target};
use crate::kinds::files::FilesSpec;
use crate::kube::{KubeApi, PVC, VOLUME_SNAPSHOT};

const POLL: Duration = Duration::from_secs(2);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What is stored for a VolumeSnapshot snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    pub namespace: String,
    pub volume_snapshot: String,
    pub volume_snapshot_class: String,
    pub pvc: String,
    pub content: Option<String>,
    pub restore_size: Option<String>,
}

pub struct VolumeSnapshotSource {
    name: String,
    namespace: String,
    pvc: String,
    class: String,
    kube: Arc<dyn KubeApi>,
    timeout: Duration,
    poll: Duration,
}

impl VolumeSnapshotSource {
    pub fn new(name: &str, spec: &FilesSpec, pvc: &str, kube: Arc<dyn KubeApi>) -> Self {
        VolumeSnapshotSource {
            name: name.to_string(),
            namespace: spec.namespace.clone().unwrap_or_else(|| "default".into()),
            pvc: pvc.to_string(),
            class: spec.volume_snapshot_class.clone().unwrap_or_default(),
            kube,
            timeout: DEFAULT_TIMEOUT,
            poll: POLL,
        }
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Unreachable {
            source_name: self.name.clone(),
            reason: format!("PVC {}/{}: {reason}", self.namespace, self.pvc),
        }
    }

    async fn take(&self, vs_name: &str) -> Result<Descriptor, SourceError> {
        let obj = json!({
            "apiVersion": VOLUME_SNAPSHOT.api_version(),
            "kind": VOLUME_SNAPSHOT.kind,
            "metadata": {
                "name": vs_name,
                "namespace": self.namespace,
                "labels": { "app.kubernetes.io/managed-by": "lifeboat", "lifeboat.io/source": self.name },
            },
            "spec": {
                "volumeSnapshotClassName": self.class,
                "source": { "persistentVolumeClaimName": self.pvc },
            },
        });
        self.kube
            .create(&VOLUME_SNAPSHOT, &self.namespace, obj)
            .await
            .map_err(|e| self.fail(e.to_string()))?;
        let started = Instant::now();
        loop {
            let vs = self
                .kube
                .get(&VOLUME_SNAPSHOT, &self.namespace, vs_name)
                .await
                .map_err(|e| self.fail(e.to_string()))?
                .ok_or_else(|| self.fail(format!("VolumeSnapshot {vs_name} disappeared")))?;
            let status = &vs["status"];
            if let Some(msg) = status["error"]["message"].as_str() {
                return Err(self.fail(format!("the CSI snapshotter failed: {msg}")));
            }
            if status["readyToUse"] == true {
                return Ok(Descriptor {
                    namespace: self.namespace.clone(),
                    volume_snapshot: vs_name.to_string(),
                    volume_snapshot_class: self.class.clone(),
                    pvc: self.pvc.clone(),
                    content: status["boundVolumeSnapshotContentName"]
                        .as_str()
                        .map(String::from),
                    restore_size: status["restoreSize"].as_str().map(String::from),
                });
            }
            if started.elapsed() > self.timeout {
                return Err(self.fail(format!(
                    "VolumeSnapshot {vs_name} not ready after {:?}; check the CSI driver and the VolumeSnapshotClass `{}`",
                    self.timeout, self.class
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

#[async_trait]
impl Source for VolumeSnapshotSource {
    fn kind(&self) -> &'static str {
        "volume-snapshot"
    }

    async fn preflight(&self) -> Result<Facts, SourceError> {
        let pvc = self
            .kube
            .get(&PVC, &self.namespace, &self.pvc)
            .await
            .map_err(|e| self.fail(e.to_string()))?;
        if pvc.is_none() {
            return Err(self.fail("no such PersistentVolumeClaim".into()));
        }
        Ok(Facts::new())
    }

    async fn dump(&self) -> Result<Dump, SourceError> {
        let stamp: String = (0..4)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let vs_name = format!(
            "lifeboat-{}-{stamp}",
            self.name.to_ascii_lowercase().replace(['_', '.'], "-")
        );
        let descriptor = match self.take(&vs_name).await {
            Ok(d) => d,
            Err(e) => {
                // Nothing half-done left behind in the cluster.
                let _ = self
                    .kube
                    .delete(&VOLUME_SNAPSHOT, &self.namespace, &vs_name)
                    .await;
                return Err(e);
            }
        };
        let bytes = serde_json::to_vec_pretty(&descriptor).map_err(|e| self.fail(e.to_string()))?;
        let mut facts = Facts::new();
        facts.insert(
            "volume_snapshot".into(),
            descriptor.volume_snapshot.clone().into(),
        );
        facts.insert("namespace".into(), descriptor.namespace.clone().into());
        if let Some(size) = &descriptor.restore_size {
            facts.insert("restore_size".into(), size.clone().into());
        }
        Ok(Dump {
            reader: Box::new(std::io::Cursor::new(bytes)),
            finish: Box::new(move || Ok(facts)),
            stop: None,
        })
    }
}

/// `--target pvc://NAMESPACE/NAME`: a new PVC whose data source is the VolumeSnapshot.
pub struct PvcTarget {
    namespace: String,
    name: String,
    storage_class: Option<String>,
    kube: Arc<dyn KubeApi>,
}

impl PvcTarget {
    pub fn new(
        url: &str,
        storage_class: Option<String>,
        kube: Arc<dyn KubeApi>,
    ) -> Result<Self, SourceError> {
        let bad = || SourceError::Target {
            target: url.to_string(),
            reason: "write the target as pvc://NAMESPACE/NAME".into(),
        };
        let rest = url.strip_prefix("pvc://").ok_or_else(bad)?;
        let (namespace, name) = rest.split_once('/').ok_or_else(bad)?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(bad());
        }
        Ok(PvcTarget {
            namespace: namespace.into(),
            name: name.into(),
            storage_class,
            kube,
        })
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Target {
            target: format!("pvc://{}/{}", self.namespace, self.name),
            reason,
        }
    }
}

/// Collects the (small) descriptor written by the restore pipeline.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<u8>>>);

impl Write for Collect {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        if v.len() + buf.len() > 1 << 20 {
            return Err(std::io::Error::other(
                "a VolumeSnapshot descriptor is never this large",
            ));
        }
        v.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Target for PvcTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        let existing = self
            .kube
            .get(&PVC, &self.namespace, &self.name)
            .await
            .map_err(|e| self.fail(e.to_string()))?;
        if existing.is_some() {
            return Err(self.fail(
                "it already exists; restore into a new PVC name (nothing is overwritten)".into(),
            ));
        }
        Ok(())
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        let collected = Collect::default();
        let kube = self.kube.clone();
        let (ns, name, class) = (
            self.namespace.clone(),
            self.name.clone(),
            self.storage_class.clone(),
        );
        let target = format!("pvc://{ns}/{name}");
        let handle = tokio::runtime::Handle::current();
        let buf = collected.clone();
        Ok(Sink {
            writer: Box::new(collected),
            finish: Box::new(move || {
                let fail = |reason: String| SourceError::Target {
                    target: target.clone(),
                    reason,
                };
                let bytes = buf.0.lock().map_err(|_| fail("poisoned".into()))?.clone();
                let d: Descriptor = serde_json::from_slice(&bytes).map_err(|e| {
                    fail(format!(
                        "the snapshot is not a VolumeSnapshot descriptor: {e}"
                    ))
                })?;
                if d.namespace != ns {
                    return Err(fail(format!(
                        "the VolumeSnapshot is in namespace `{}`; a PVC can only be restored from a snapshot in its own namespace",
                        d.namespace
                    )));
                }
                let mut pvc = json!({
                    "apiVersion": PVC.api_version(),
                    "kind": PVC.kind,
                    "metadata": { "name": name, "namespace": ns, "labels": { "app.kubernetes.io/managed-by": "lifeboat" } },
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": { "requests": { "storage": d.restore_size.clone().unwrap_or_else(|| "1Gi".into()) } },
                        "dataSource": { "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": d.volume_snapshot },
                    },
                });
                if let Some(c) = class {
                    pvc["spec"]["storageClassName"] = json!(c);
                }
                handle
                    .block_on(kube.create(&PVC, &ns, pvc))
                    .map(|_| ())
                    .map_err(|e| fail(e.to_string()))
            }),
        })
    }
}

/// A CSI VolumeSnapshot of a PVC; the store holds its descriptor.
pub struct VolumeSnapshotKind;
pub static KIND: VolumeSnapshotKind = VolumeSnapshotKind;

#[async_trait]
impl super::Kind for VolumeSnapshotKind {
    fn name(&self) -> &'static str {
        "volume-snapshot"
    }
    fn target(
        &self,
        to: &super::RestoreTo,
        opts: &super::RestoreOptions,
        _source: Option<&super::SourceSpec>,
        kube: Arc<dyn KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError> {
        match to {
            super::RestoreTo::Url(url) => Ok(Box::new(PvcTarget::new(
                url,
                opts.storage_class.clone(),
                kube,
            )?)),
            _ => Err(super::unsupported(
                to,
                "VolumeSnapshot snapshots restore into a new PVC: --target pvc://NAMESPACE/NAME",
            )),
        }
    }
    fn restores_to_file(&self) -> bool {
        false
    }
    /// Deletes the VolumeSnapshot the manifest names (its facts `namespace` and
    /// `volume_snapshot`); one already gone is fine.
    async fn forget(
        &self,
        manifest: &crate::model::snapshot::Manifest,
        kube: Arc<dyn KubeApi>,
    ) -> Result<(), SourceError> {
        let fact = |k: &str| manifest.facts.get(k).and_then(|v| v.as_str());
        let (Some(ns), Some(name)) = (fact("namespace"), fact("volume_snapshot")) else {
            return Err(SourceError::Target {
                target: format!("snapshot {}", manifest.id),
                reason: "its manifest names no VolumeSnapshot (facts `namespace`, `volume_snapshot`); delete it by hand with kubectl, then prune again".into(),
            });
        };
        kube.delete(&VOLUME_SNAPSHOT, ns, name)
            .await
            .map_err(|e| SourceError::Target {
                target: format!("volumesnapshot {ns}/{name}"),
                reason: format!("{e}; the snapshot is kept until its VolumeSnapshot is deleted"),
            })
    }
}
