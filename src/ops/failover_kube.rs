//! Kubernetes workloads in a failover, through [`KubeApi`]: the `kube_scale` fence/promote
//! actions of a site (scale a Deployment or StatefulSet to the replicas the action states)
//! and the probe of a `kind: kubernetes` service (up when the workload has at least
//! `min_ready` ready replicas, 1 by default).
//!
//! # Guarantees
//! - Only objects labelled `lifeboat.dev/failover: allowed` ([`FAILOVER_LABEL`]) are scaled;
//!   any other is refused with what to label, and left untouched.
//! - Idempotent and stateless: the action states its target replicas, so repeating it after a
//!   crash finds the object already there and patches nothing.
//! - A scale is confirmed by re-reading the object: `spec.replicas` must be the target.
//!
//! # Caveats
//! Confirmation is of the desired replicas (`spec.replicas`), not of pods having stopped or
//! started: a fenced workload's pods may still be terminating for their grace period, and
//! readiness after a promote is what a `kind: kubernetes` service probes.

use crate::config::failover::KubeScale;
use crate::kinds::probe::Probe;
use crate::kube::{DEPLOYMENT, FAILOVER_LABEL, KubeApi, KubeError, Resource, STATEFUL_SET};
use crate::model::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum KubeScaleError {
    #[error(
        "`{0}` is not a workload lifeboat scales; write `kind: Deployment` or `kind: StatefulSet`"
    )]
    UnknownKind(String),
    #[error("{kind} {namespace}/{name} does not exist; check the namespace and name")]
    NotFound {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error(
        "{kind} {namespace}/{name} is not labelled {}: {}, so lifeboat does not scale it; label it (kubectl label -n {namespace} {} {name} {}={}) or use a `command:` action",
        FAILOVER_LABEL.0, FAILOVER_LABEL.1, kind.to_lowercase(), FAILOVER_LABEL.0, FAILOVER_LABEL.1
    )]
    NotAllowed {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error(
        "{kind} {namespace}/{name}: asked for {want} replicas, re-read shows {seen}; someone else is scaling it (an HPA?), check and run again"
    )]
    NotConfirmed {
        kind: String,
        namespace: String,
        name: String,
        want: u32,
        seen: String,
    },
    #[error(
        "{0} (deploy/overlays/failover-kube grants lifeboat get/list/patch on deployments and statefulsets in the namespace)"
    )]
    Api(#[from] KubeError),
}

impl KubeScaleError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            KubeScaleError::UnknownKind(_)
            | KubeScaleError::NotFound { .. }
            | KubeScaleError::NotAllowed { .. } => ErrorKind::Config,
            KubeScaleError::NotConfirmed { .. } => ErrorKind::Conflict,
            KubeScaleError::Api(e) => e.kind(),
        }
    }
}

/// The resource of a workload kind (`Deployment`, `StatefulSet`; case-insensitive).
pub fn workload(kind: &str) -> Result<&'static Resource, KubeScaleError> {
    match kind.to_ascii_lowercase().as_str() {
        "deployment" => Ok(&DEPLOYMENT),
        "statefulset" => Ok(&STATEFUL_SET),
        _ => Err(KubeScaleError::UnknownKind(kind.to_string())),
    }
}

/// Scales the workload of `action` to its replicas; returns what was done. Refuses an
/// unlabelled object; does nothing when it is already at the target.
#[tracing::instrument(skip_all, fields(kind = %action.kind, namespace = %action.namespace, name = %action.name, replicas = action.replicas))]
pub async fn scale(kube: &dyn KubeApi, action: &KubeScale) -> Result<String, KubeScaleError> {
    let res = workload(&action.kind)?;
    let (ns, name, want) = (&action.namespace, &action.name, action.replicas);
    let shown = format!("{} {ns}/{name}", res.kind);
    let obj = allowed(kube, res, action).await?;
    let replicas = |o: &serde_json::Value| o["spec"]["replicas"].as_u64();
    if replicas(&obj) == Some(u64::from(want)) {
        return Ok(format!("{shown}: already at {want} replicas"));
    }
    let before = replicas(&obj).map_or("unset".to_string(), |r| r.to_string());
    kube.merge_patch(
        res,
        ns,
        name,
        serde_json::json!({ "spec": { "replicas": want } }),
    )
    .await?;
    let seen = kube.get(res, ns, name).await?.and_then(|o| replicas(&o));
    if seen != Some(u64::from(want)) {
        return Err(KubeScaleError::NotConfirmed {
            kind: res.kind.into(),
            namespace: ns.clone(),
            name: name.clone(),
            want,
            seen: seen.map_or("no replicas".to_string(), |r| r.to_string()),
        });
    }
    tracing::info!(from = %before, "workload scaled");
    Ok(format!(
        "{shown}: scaled {before} → {want} replicas, confirmed"
    ))
}

/// The workload `action` names, read now; refused unless labelled
/// `lifeboat.dev/failover: allowed`.
async fn allowed(
    kube: &dyn KubeApi,
    res: &Resource,
    action: &KubeScale,
) -> Result<serde_json::Value, KubeScaleError> {
    let (ns, name) = (&action.namespace, &action.name);
    let obj = kube
        .get(res, ns, name)
        .await?
        .ok_or_else(|| KubeScaleError::NotFound {
            kind: res.kind.into(),
            namespace: ns.clone(),
            name: name.clone(),
        })?;
    if obj["metadata"]["labels"][FAILOVER_LABEL.0].as_str() != Some(FAILOVER_LABEL.1) {
        return Err(KubeScaleError::NotAllowed {
            kind: res.kind.into(),
            namespace: ns.clone(),
            name: name.clone(),
        });
    }
    Ok(obj)
}

/// What [`scale`] would do, read-only (for `failover plan`): `Deployment shop/web: 3 → 0
/// replicas`, `... already at 0`, or why it would be refused.
pub async fn preview(kube: &dyn KubeApi, action: &KubeScale) -> Result<String, KubeScaleError> {
    let res = workload(&action.kind)?;
    let (ns, name, want) = (&action.namespace, &action.name, action.replicas);
    let obj = allowed(kube, res, action).await?;
    Ok(match obj["spec"]["replicas"].as_u64() {
        Some(r) if r == u64::from(want) => {
            format!("{} {ns}/{name}: already at {want} replicas", res.kind)
        }
        r => format!(
            "{} {ns}/{name}: {} → {want} replicas",
            res.kind,
            r.map_or("unset".to_string(), |r| r.to_string())
        ),
    })
}

/// Probes a workload: up when its `status.readyReplicas` is at least `min_ready`.
pub async fn probe(
    kube: &dyn KubeApi,
    kind: &str,
    namespace: &str,
    name: &str,
    min_ready: u32,
) -> Result<Probe, String> {
    let res = workload(kind).map_err(|e| e.to_string())?;
    let obj = kube
        .get(res, namespace, name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} {namespace}/{name} does not exist", res.kind))?;
    let ready = obj["status"]["readyReplicas"].as_u64().unwrap_or(0);
    if ready >= u64::from(min_ready.max(1)) {
        Ok(Probe::up())
    } else {
        Err(format!(
            "{} {namespace}/{name}: {ready} ready replicas, fewer than {}",
            res.kind,
            min_ready.max(1)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fake::Fake;
    use serde_json::json;

    fn seed(fake: &Fake, res: &Resource, name: &str, replicas: u32, ready: u32, labelled: bool) {
        let labels = if labelled {
            json!({ FAILOVER_LABEL.0: FAILOVER_LABEL.1 })
        } else {
            json!({ "app": name })
        };
        fake.seed(
            res,
            "shop",
            json!({
                "apiVersion": "apps/v1", "kind": res.kind,
                "metadata": { "name": name, "namespace": "shop", "labels": labels, "resourceVersion": "1" },
                "spec": { "replicas": replicas },
                "status": { "readyReplicas": ready },
            }),
        );
    }

    fn action(kind: &str, name: &str, replicas: u32) -> KubeScale {
        KubeScale {
            kind: kind.into(),
            namespace: "shop".into(),
            name: name.into(),
            replicas,
        }
    }

    fn patches(fake: &Fake) -> usize {
        fake.calls().iter().filter(|c| c.verb == "patch").count()
    }

    #[tokio::test]
    async fn fence_scales_to_zero_and_confirms_then_promote_scales_up() {
        let fake = Fake::default();
        seed(&fake, &DEPLOYMENT, "web", 3, 3, true);
        let d = scale(&fake, &action("Deployment", "web", 0))
            .await
            .expect("fence");
        assert!(d.contains("3 → 0") && d.contains("confirmed"), "{d}");
        let obj = fake.object(&DEPLOYMENT, "shop", "web").expect("web");
        assert_eq!(obj["spec"]["replicas"], 0);
        // Confirmed by re-reading: a get after the patch.
        let calls = fake.calls();
        let last_patch = calls
            .iter()
            .rposition(|c| c.verb == "patch")
            .expect("patch");
        assert!(calls[last_patch + 1..].iter().any(|c| c.verb == "get"));

        seed(&fake, &STATEFUL_SET, "queue", 0, 0, true);
        let d = scale(&fake, &action("StatefulSet", "queue", 2))
            .await
            .expect("promote");
        assert!(d.contains("0 → 2"), "{d}");
        assert_eq!(
            fake.object(&STATEFUL_SET, "shop", "queue").expect("queue")["spec"]["replicas"],
            2
        );
    }

    #[tokio::test]
    async fn repeating_an_action_does_nothing_twice() {
        let fake = Fake::default();
        seed(&fake, &DEPLOYMENT, "web", 3, 3, true);
        scale(&fake, &action("Deployment", "web", 0))
            .await
            .expect("first");
        assert_eq!(patches(&fake), 1);
        let d = scale(&fake, &action("Deployment", "web", 0))
            .await
            .expect("again");
        assert!(d.contains("already at 0"), "{d}");
        assert_eq!(patches(&fake), 1, "no second patch");
    }

    #[tokio::test]
    async fn an_unlabelled_object_is_refused_and_untouched() {
        let fake = Fake::default();
        seed(&fake, &DEPLOYMENT, "payments", 3, 3, false);
        let before = fake.object(&DEPLOYMENT, "shop", "payments");
        let e = scale(&fake, &action("Deployment", "payments", 0))
            .await
            .expect_err("unlabelled");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().contains("lifeboat.dev/failover=allowed"),
            "says what to label: {e}"
        );
        assert_eq!(patches(&fake), 0);
        assert_eq!(fake.object(&DEPLOYMENT, "shop", "payments"), before);
        // The plan says so first, and changes nothing either.
        let e = preview(&fake, &action("Deployment", "payments", 0))
            .await
            .expect_err("preview of unlabelled");
        assert!(e.to_string().contains("not labelled"), "{e}");
        seed(&fake, &DEPLOYMENT, "web", 3, 3, true);
        let p = preview(&fake, &action("Deployment", "web", 0))
            .await
            .expect("preview");
        assert_eq!(p, "Deployment shop/web: 3 → 0 replicas");
        assert_eq!(patches(&fake), 0);
        // A missing object and an unknown kind say what to fix.
        let e = scale(&fake, &action("Deployment", "nope", 0))
            .await
            .expect_err("missing");
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = scale(&fake, &action("DaemonSet", "web", 0))
            .await
            .expect_err("kind");
        assert!(e.to_string().contains("kind: Deployment"), "{e}");
    }

    #[tokio::test]
    async fn probe_is_up_with_enough_ready_replicas() {
        let fake = Fake::default();
        seed(&fake, &DEPLOYMENT, "web", 3, 2, false);
        seed(&fake, &STATEFUL_SET, "db", 1, 0, false);
        assert!(probe(&fake, "Deployment", "shop", "web", 1).await.is_ok());
        assert!(probe(&fake, "Deployment", "shop", "web", 2).await.is_ok());
        let e = probe(&fake, "Deployment", "shop", "web", 3)
            .await
            .expect_err("3 needed");
        assert!(e.contains("2 ready replicas"), "{e}");
        let e = probe(&fake, "StatefulSet", "shop", "db", 0)
            .await
            .expect_err("none ready");
        assert!(e.contains("0 ready"), "{e}");
        assert!(probe(&fake, "Deployment", "shop", "gone", 1).await.is_err());
    }

    /// The config keys as acceptance writes them, end to end through the failover ops: a
    /// `kind: kubernetes` service is probed, a site's `kube_scale` fence scales to 0.
    #[tokio::test]
    async fn sites_config_probes_and_fences_through_the_kube_api() {
        let dir = tempfile::tempdir().expect("temp dir");
        let recipient = crate::pipeline::crypto::generate_identity_file(
            &dir.path().join("age.key"),
            crate::model::clock::system().now(),
        )
        .expect("age key");
        let yaml = format!(
            r#"catalog: "sqlite://{d}/catalog.db"
encryption:
  recipients: ["{recipient}"]
  identity_file: "{d}/age.key"
stores:
  local: {{ url: "file://{d}/store" }}
sources:
  - name: s
    kind: files
    path: "{d}"
    store: local
sites:
  - name: east
    services:
      web: {{ kind: kubernetes, namespace: shop, workload: Deployment, name: web, min_ready: 2 }}
    fence: [ {{ kube_scale: {{ namespace: shop, kind: Deployment, name: web, replicas: 0 }} }} ]
    promote: [ {{ kube_scale: {{ namespace: shop, kind: Deployment, name: web, replicas: 3 }} }} ]
  - name: west
    services:
      web: {{ kind: kubernetes, namespace: shop-west, name: web }}
    promote: [ {{ kube_scale: {{ namespace: shop-west, kind: StatefulSet, name: web, replicas: 3 }} }} ]
failover:
  site: east
"#,
            d = dir.path().display()
        );
        let config =
            crate::config::Config::parse(&yaml, &dir.path().join("lifeboat.yaml")).expect("config");
        let mut ctx = crate::ops::Ctx::open(config).await.expect("ctx");
        let fake = std::sync::Arc::new(Fake::default());
        seed(&fake, &DEPLOYMENT, "web", 3, 3, true);
        ctx.kube = fake.clone();
        let east = ctx.config.sites[0].clone();
        let within = std::time::Duration::from_secs(5);
        let seen = crate::ops::failover::probe_site_within(&*ctx.kube, &east, within).await;
        assert!(seen[0].probe.is_some(), "up: {seen:?}");
        assert_eq!(seen[0].kind, "kubernetes");
        let detail = crate::ops::failover::fence_site(&ctx, "east")
            .await
            .expect("fence");
        assert!(detail.contains("3 → 0"), "{detail}");
        assert_eq!(
            fake.object(&DEPLOYMENT, "shop", "web").expect("web")["spec"]["replicas"],
            0
        );
        // Fenced again after a crash: nothing patched twice.
        crate::ops::failover::fence_site(&ctx, "east")
            .await
            .expect("fence again");
        assert_eq!(patches(&fake), 1);
        // The controller's steps: the fence (already at 0: nothing patched), then the
        // promote scales west up; a step taken again is not run twice.
        use crate::policy::failover::Step;
        let fake_west = |fake: &Fake| {
            fake.seed(
                &STATEFUL_SET,
                "shop-west",
                json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": { "name": "web", "namespace": "shop-west",
                        "labels": { FAILOVER_LABEL.0: FAILOVER_LABEL.1 }, "resourceVersion": "1" },
                    "spec": { "replicas": 0 },
                }),
            )
        };
        fake_west(&fake);
        let taken = crate::ops::failover::take_step(&ctx, 1, "east", "west", Step::Fence)
            .await
            .expect("fence step");
        assert!(taken.done && taken.confirmed, "{}", taken.detail);
        assert!(taken.detail.contains("already at 0"), "{}", taken.detail);
        let taken = crate::ops::failover::take_step(&ctx, 1, "east", "west", Step::Promote)
            .await
            .expect("promote step");
        assert!(taken.detail.contains("0 → 3"), "{}", taken.detail);
        assert_eq!(
            fake.object(&STATEFUL_SET, "shop-west", "web")
                .expect("west")["spec"]["replicas"],
            3
        );
        let again = crate::ops::failover::take_step(&ctx, 1, "east", "west", Step::Promote)
            .await
            .expect("promote again");
        assert!(again.detail.contains("already done"), "{}", again.detail);
        assert_eq!(patches(&fake), 2, "one fence patch, one promote patch");
        // The controller's probe sees east down once no replica is ready.
        seed(&fake, &DEPLOYMENT, "web", 0, 0, true);
        let seen = crate::ops::failover::probe_site_within(&*ctx.kube, &east, within).await;
        assert!(
            seen[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("0 ready")),
            "down: {seen:?}"
        );
    }
}
