//! `kind: files` with `pvc:`: CSI VolumeSnapshots through the Kubernetes API, tested against
//! the contract fake (no API server can run here). The production implementation is
//! `lifeboat::kube::Live` on the `kube` crate; both sit behind `lifeboat::kube::KubeApi`.

mod common;

use std::sync::Arc;

use lifeboat::config::Config;
use lifeboat::kinds::{RestoreOptions, RestoreTo};
use lifeboat::kube::fake::{Fake, Snapshotter};
use lifeboat::kube::{KubeApi, PVC, VOLUME_SNAPSHOT};
use lifeboat::ops::ctx::Ctx;
use serde_json::json;

async fn app(env: &common::Env, fake: Arc<Fake>) -> Ctx {
    app_with(env, fake, "").await
}

/// `extra`: more keys of the source (indented as the source's keys).
async fn app_with(env: &common::Env, fake: Arc<Fake>, extra: &str) -> Ctx {
    let yaml = format!(
        "catalog: sqlite://{dir}/catalog.db\nstores:\n  local: {{ url: \"file://{dir}/store\" }}\n\
         encryption:\n  recipients: [\"{r}\"]\n  identity_file: {dir}/age.key\n\
         sources:\n  - name: orderer-ledger\n    kind: files\n    pvc: ledger-orderer0\n    namespace: fabric\n    \
         volume_snapshot_class: csi-snapclass\n    store: local\n{extra}",
        dir = env.dir.path().display(),
        r = env.recipient
    );
    let config = Config::parse(&yaml, std::path::Path::new("test.yaml")).unwrap();
    let mut app = Ctx::open(config).await.unwrap();
    fake.seed(&PVC, "fabric", json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": "ledger-orderer0", "namespace": "fabric" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "10Gi" } } }
    }));
    app.kube = fake;
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn pvc_snapshot_and_restore_into_a_new_pvc() {
    let env = common::Env::new();
    let fake = Arc::new(Fake::new(Snapshotter::ReadyAfter(3, "10Gi".into())));
    let app = app(&env, fake.clone()).await;
    let bar = indicatif::ProgressBar::hidden();
    let m = lifeboat::ops::backup::run(&app, "orderer-ledger", &bar, Default::default())
        .await
        .unwrap();
    assert_eq!(m.kind, "volume-snapshot");
    assert_eq!(m.facts["restore_size"], "10Gi");
    let vs_name = m.facts["volume_snapshot"].as_str().unwrap().to_string();
    let vs = fake.object(&VOLUME_SNAPSHOT, "fabric", &vs_name).unwrap();
    assert_eq!(
        vs["spec"]["source"]["persistentVolumeClaimName"],
        "ledger-orderer0"
    );
    assert_eq!(vs["spec"]["volumeSnapshotClassName"], "csi-snapclass");
    assert_eq!(
        vs["metadata"]["labels"]["lifeboat.io/source"],
        "orderer-ledger"
    );
    let verbs: Vec<_> = fake.calls().iter().map(|c| (c.verb, c.kind)).collect();
    assert_eq!(verbs[0], ("get", "PersistentVolumeClaim"));
    assert_eq!(verbs[1], ("create", "VolumeSnapshot"));
    assert_eq!(
        verbs
            .iter()
            .filter(|v| **v == ("get", "VolumeSnapshot"))
            .count(),
        3
    );

    let req = lifeboat::ops::restore::Request {
        snapshot_id: m.id.clone(),
        to: RestoreTo::Url("pvc://fabric/ledger-orderer0-restored".into()),
        identity: None,
        store: None,
        options: RestoreOptions {
            storage_class: Some("fast-ssd".into()),
            ..Default::default()
        },
    };
    lifeboat::ops::restore::run(&app, &req, &bar).await.unwrap();
    let pvc = fake
        .object(&PVC, "fabric", "ledger-orderer0-restored")
        .unwrap();
    assert_eq!(pvc["spec"]["dataSource"]["name"], vs_name.as_str());
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");
    assert_eq!(pvc["spec"]["storageClassName"], "fast-ssd");
    // Never over an existing PVC.
    let err = lifeboat::ops::restore::run(&app, &req, &bar)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_snapshot_is_cleaned_up_and_recorded() {
    let env = common::Env::new();
    let fake = Arc::new(Fake::new(Snapshotter::Fails(
        "driver does not support snapshots".into(),
    )));
    let app = app(&env, fake.clone()).await;
    let bar = indicatif::ProgressBar::hidden();
    let err = lifeboat::ops::backup::run(&app, "orderer-ledger", &bar, Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("driver does not support snapshots"), "{err}");
    let calls = fake.calls();
    let created = calls
        .iter()
        .find(|c| c.verb == "create")
        .unwrap()
        .name
        .clone();
    assert!(
        calls
            .iter()
            .any(|c| c.verb == "delete" && c.name == created)
    );
    assert!(fake.object(&VOLUME_SNAPSHOT, "fabric", &created).is_none());
    let snaps = app.catalog.snapshots(None).await.unwrap();
    assert_eq!(snaps[0].status.as_str(), "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_fake_rejects_what_the_api_server_would() {
    let fake = Fake::default();
    let bad_name = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "Not_Valid"}, "spec": {"volumeSnapshotClassName": "c", "source": {"persistentVolumeClaimName": "p"}}});
    assert!(fake.create(&VOLUME_SNAPSHOT, "ns", bad_name).await.is_err());
    let no_source = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
        "metadata": {"name": "ok"}, "spec": {"volumeSnapshotClassName": "c"}});
    assert!(
        fake.create(&VOLUME_SNAPSHOT, "ns", no_source)
            .await
            .is_err()
    );
    let wrong_kind =
        json!({"apiVersion": "v1", "kind": "VolumeSnapshot", "metadata": {"name": "ok"}});
    assert!(
        fake.create(&VOLUME_SNAPSHOT, "ns", wrong_kind)
            .await
            .is_err()
    );
    // Deleting a PVC is not something lifeboat does: the RBAC Role would deny it.
    assert!(fake.delete(&PVC, "ns", "x").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_a_snapshot_deletes_its_volume_snapshot() {
    let env = common::Env::new();
    let fake = Arc::new(Fake::new(Snapshotter::ReadyAfter(1, "10Gi".into())));
    let app = app_with(&env, fake.clone(), "    retention: { keep_last: 1 }\n").await;
    let bar = indicatif::ProgressBar::hidden();
    let old = lifeboat::ops::backup::run(&app, "orderer-ledger", &bar, Default::default())
        .await
        .expect("first backup");
    let new = lifeboat::ops::backup::run(&app, "orderer-ledger", &bar, Default::default())
        .await
        .expect("second backup");
    let vs = |m: &lifeboat::model::snapshot::Manifest| {
        m.facts["volume_snapshot"]
            .as_str()
            .expect("fact")
            .to_string()
    };
    assert!(fake.object(&VOLUME_SNAPSHOT, "fabric", &vs(&old)).is_some());

    let plans = lifeboat::ops::prune::plan(&app, Some("orderer-ledger"), app.now())
        .await
        .expect("plan");
    for plan in &plans {
        lifeboat::ops::prune::execute(&app, plan)
            .await
            .expect("prune");
    }
    assert!(
        fake.object(&VOLUME_SNAPSHOT, "fabric", &vs(&old)).is_none(),
        "the pruned snapshot's VolumeSnapshot is deleted, not leaked"
    );
    assert!(
        fake.object(&VOLUME_SNAPSHOT, "fabric", &vs(&new)).is_some(),
        "the kept snapshot's VolumeSnapshot stays"
    );
    assert!(
        app.catalog
            .snapshot(&old.id)
            .await
            .expect("catalog")
            .is_none()
    );
    assert!(
        app.catalog
            .snapshot(&new.id)
            .await
            .expect("catalog")
            .is_some()
    );
}
