//! Kubernetes drill faults through [`KubeApi`]: delete pods, scale Deployments/StatefulSets
//! to 0, a deny-all NetworkPolicy, cordon + evict nodes chosen by label (node-loss,
//! zone-loss). Split into [`plan`] (reads only: which objects, their state before the fault,
//! everything the revert needs — the intent to persist before anything is touched), [`apply`]
//! and [`revert`] (which re-reads every object it restored and fails unless the probe
//! confirms it).
//!
//! # Guarantees
//! - Only objects labelled `lifeboat.dev/chaos: allowed` ([`crate::kube::CHAOS_LABEL`]) or
//!   listed by name in the scenario's `allowed` are touched; an action matching none of them
//!   is [`KubeFaultError::NoTargets`] (the drill is then inconclusive), with nothing touched.
//! - [`revert`] is safe to repeat and works from the [`KubeIntent`] alone (after a crash, from
//!   the persisted intent): it uncordons only nodes that were schedulable before, restores the
//!   replicas recorded before the fault, deletes the NetworkPolicy; a node, workload or policy
//!   deleted meanwhile by someone else counts as reverted.
//!
//! # Caveats
//! - Deleted or evicted pods are not "reverted": their controllers start new ones; the revert
//!   covers what lifeboat changed (cordons, replicas, the policy).
//! - Evictions honour PodDisruptionBudgets: a 429 refusal fails [`apply`] (the caller reverts).
//! - Pods evicted from a node are looked up in the action's `namespace` only (the chaos Role
//!   is namespaced), and must be allowed themselves.
//! - `drill plan` and `--dry-run` do not query the API: the objects are resolved when the
//!   drill runs. An unreachable API at that point also leaves the fault without targets
//!   (inconclusive), with the API's error in the journal.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::kube::{
    CHAOS_LABEL, DEPLOYMENT, KubeApi, KubeError, NETWORK_POLICY, NODE, POD, Resource, STATEFUL_SET,
};

/// The name of the deny-all NetworkPolicy a drill creates.
pub const DENY_ALL_POLICY: &str = "lifeboat-drill-deny-all";

/// A Kubernetes fault, as a scenario states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KubeAction {
    /// Delete the matching pods.
    DeletePods { namespace: String, selector: String },
    /// Scale the matching workloads to 0 replicas.
    ScaleToZero {
        namespace: String,
        workload: Workload,
        selector: String,
    },
    /// A NetworkPolicy denying all ingress and egress of the matching (labelled) pods.
    DenyAll { namespace: String, selector: String },
    /// Cordon the matching nodes (at most `limit`, by name order) and evict their pods in
    /// `namespace`.
    CordonEvict {
        selector: String,
        namespace: String,
        #[serde(default)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Deployment,
    StatefulSet,
}

impl Workload {
    fn resource(self) -> &'static Resource {
        match self {
            Workload::Deployment => &DEPLOYMENT,
            Workload::StatefulSet => &STATEFUL_SET,
        }
    }
}

/// What a fault will touch and what its revert restores: persisted before [`apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KubeIntent {
    /// Pods to delete or evict: (namespace, name).
    #[serde(default)]
    pub pods: Vec<(String, String)>,
    /// Whether the pods are evicted (cordon-evict) rather than deleted.
    #[serde(default)]
    pub evict: bool,
    /// Nodes to cordon; those already unschedulable are not listed (never uncordoned).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Workloads to scale to 0, with the replicas the revert restores.
    #[serde(default)]
    pub scaled: Vec<Scaled>,
    /// The namespace of the deny-all NetworkPolicy, if any, and its pod selector labels.
    #[serde(default)]
    pub policy: Option<(String, serde_json::Map<String, Value>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scaled {
    pub workload: Workload,
    pub namespace: String,
    pub name: String,
    pub replicas: i64,
}

impl KubeIntent {
    /// What the fault touches, one line per object (for `drill plan` and the journal).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.nodes {
            out.push(format!("cordon node {n}"));
        }
        let verb = if self.evict { "evict" } else { "delete" };
        for (ns, p) in &self.pods {
            out.push(format!("{verb} pod {ns}/{p}"));
        }
        for s in &self.scaled {
            out.push(format!(
                "scale {:?} {}/{} from {} to 0",
                s.workload, s.namespace, s.name, s.replicas
            ));
        }
        if let Some((ns, _)) = &self.policy {
            out.push(format!("create NetworkPolicy {ns}/{DENY_ALL_POLICY}"));
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeFaultError {
    #[error(
        "the Kubernetes fault matches no allowed target ({0}): label the objects `lifeboat.dev/chaos: allowed` or list them in the scenario's `allowed`; the drill is inconclusive, nothing was touched"
    )]
    NoTargets(String),
    #[error("{0}")]
    Kube(#[from] KubeError),
    #[error(
        "the revert of the Kubernetes fault is not confirmed: {0}; it is retried until a re-read shows it (or run `lifeboat drill run` again, whose startup sweep reverts it)"
    )]
    NotConfirmed(String),
}

impl KubeFaultError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        match self {
            KubeFaultError::NoTargets(_) => crate::model::ErrorKind::Config,
            KubeFaultError::Kube(e) => e.kind(),
            KubeFaultError::NotConfirmed(_) => crate::model::ErrorKind::Interrupted,
        }
    }
}

/// Whether `obj` may be touched: labelled allowed, or named in `allowed`.
pub fn is_allowed(obj: &Value, allowed: &[String]) -> bool {
    obj["metadata"]["labels"][CHAOS_LABEL.0].as_str() == Some(CHAOS_LABEL.1)
        || obj["metadata"]["name"]
            .as_str()
            .is_some_and(|n| allowed.iter().any(|a| a == n))
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or_default().into()
}

/// `k=v,k2=v2` as matchLabels; a term without `=` is refused.
fn match_labels(selector: &str) -> Result<serde_json::Map<String, Value>, KubeFaultError> {
    let mut out = serde_json::Map::new();
    for term in selector.split(',').filter(|t| !t.is_empty()) {
        let Some((k, v)) = term.split_once('=') else {
            return Err(KubeFaultError::NoTargets(format!(
                "selector term {term:?} of a deny-all policy must be key=value"
            )));
        };
        out.insert(k.trim().into(), json!(v.trim()));
    }
    Ok(out)
}

/// Reads what `action` would touch (only objects that are allowed) and what the revert
/// needs. Touches nothing.
pub async fn plan(
    kube: &dyn KubeApi,
    action: &KubeAction,
    allowed: &[String],
) -> Result<KubeIntent, KubeFaultError> {
    let mut intent = KubeIntent::default();
    let allowed_pods = |pods: Vec<Value>, node: Option<&str>| -> Vec<String> {
        pods.into_iter()
            .filter(|p| is_allowed(p, allowed))
            .filter(|p| node.is_none_or(|n| p["spec"]["nodeName"].as_str() == Some(n)))
            .map(|p| name_of(&p))
            .collect()
    };
    match action {
        KubeAction::DeletePods {
            namespace,
            selector,
        } => {
            let pods = kube.list(&POD, namespace, selector).await?;
            for p in allowed_pods(pods, None) {
                intent.pods.push((namespace.clone(), p));
            }
            if intent.pods.is_empty() {
                return Err(KubeFaultError::NoTargets(format!(
                    "pods {selector:?} in {namespace}"
                )));
            }
        }
        KubeAction::ScaleToZero {
            namespace,
            workload,
            selector,
        } => {
            for w in kube.list(workload.resource(), namespace, selector).await? {
                if !is_allowed(&w, allowed) {
                    continue;
                }
                intent.scaled.push(Scaled {
                    workload: *workload,
                    namespace: namespace.clone(),
                    name: name_of(&w),
                    replicas: w["spec"]["replicas"].as_i64().unwrap_or(1),
                });
            }
            if intent.scaled.is_empty() {
                return Err(KubeFaultError::NoTargets(format!(
                    "{workload:?} {selector:?} in {namespace}"
                )));
            }
        }
        KubeAction::DenyAll {
            namespace,
            selector,
        } => {
            let mut labels = match_labels(selector)?;
            labels.insert(CHAOS_LABEL.0.into(), json!(CHAOS_LABEL.1));
            // Only labelled pods: the policy selects by label, so a name in `allowed` cannot
            // widen it.
            let pods = kube.list(&POD, namespace, selector).await?;
            if !pods.iter().any(|p| is_allowed(p, &[])) {
                return Err(KubeFaultError::NoTargets(format!(
                    "labelled pods {selector:?} in {namespace}"
                )));
            }
            intent.policy = Some((namespace.clone(), labels));
        }
        KubeAction::CordonEvict {
            selector,
            namespace,
            limit,
        } => {
            let mut nodes: Vec<Value> = kube
                .list(&NODE, "", selector)
                .await?
                .into_iter()
                .filter(|n| is_allowed(n, allowed))
                .collect();
            nodes.sort_by_key(name_of);
            nodes.truncate(limit.unwrap_or(usize::MAX));
            if nodes.is_empty() {
                return Err(KubeFaultError::NoTargets(format!("nodes {selector:?}")));
            }
            let pods = kube.list(&POD, namespace, "").await?;
            for n in &nodes {
                let name = name_of(n);
                if n["spec"]["unschedulable"].as_bool() != Some(true) {
                    intent.nodes.push(name.clone());
                }
                for p in allowed_pods(pods.clone(), Some(&name)) {
                    intent.pods.push((namespace.clone(), p));
                }
            }
            intent.evict = true;
        }
    }
    Ok(intent)
}

/// Applies a planned fault. Persist `intent` first: a crash half-way is reverted from it.
pub async fn apply(kube: &dyn KubeApi, intent: &KubeIntent) -> Result<(), KubeFaultError> {
    for n in &intent.nodes {
        kube.merge_patch(&NODE, "", n, json!({ "spec": { "unschedulable": true } }))
            .await?;
    }
    for (ns, p) in &intent.pods {
        if intent.evict {
            kube.evict(ns, p).await?;
        } else {
            kube.delete(&POD, ns, p).await?;
        }
    }
    for s in &intent.scaled {
        kube.merge_patch(
            s.workload.resource(),
            &s.namespace,
            &s.name,
            json!({ "spec": { "replicas": 0 } }),
        )
        .await?;
    }
    if let Some((ns, labels)) = &intent.policy {
        let policy = json!({
            "apiVersion": NETWORK_POLICY.api_version(),
            "kind": NETWORK_POLICY.kind,
            "metadata": { "name": DENY_ALL_POLICY, "namespace": ns,
                          "labels": { CHAOS_LABEL.0: CHAOS_LABEL.1 } },
            "spec": { "podSelector": { "matchLabels": labels },
                      "policyTypes": ["Ingress", "Egress"] },
        });
        match kube.create(&NETWORK_POLICY, ns, policy).await {
            Err(e) if e.is_conflict() => {} // already there: a repeated apply
            other => drop(other?),
        }
    }
    Ok(())
}

/// Reverts a fault from its intent (safe to repeat, whether or not [`apply`] ran or
/// finished), then re-reads every object: `Ok` only when the probe confirms it.
pub async fn revert(kube: &dyn KubeApi, intent: &KubeIntent) -> Result<(), KubeFaultError> {
    let gone = |r: Result<Value, KubeError>| match r {
        Err(e) if e.status() == Some(404) => Ok(()),
        other => other.map(drop),
    };
    for n in &intent.nodes {
        gone(
            kube.merge_patch(&NODE, "", n, json!({ "spec": { "unschedulable": null } }))
                .await,
        )?;
    }
    for s in &intent.scaled {
        gone(
            kube.merge_patch(
                s.workload.resource(),
                &s.namespace,
                &s.name,
                json!({ "spec": { "replicas": s.replicas } }),
            )
            .await,
        )?;
    }
    if let Some((ns, _)) = &intent.policy {
        kube.delete(&NETWORK_POLICY, ns, DENY_ALL_POLICY).await?;
    }
    // The probe: re-read what was restored.
    let mut left = Vec::new();
    for n in &intent.nodes {
        if let Some(node) = kube.get(&NODE, "", n).await?
            && node["spec"]["unschedulable"].as_bool() == Some(true)
        {
            left.push(format!("node {n} is still cordoned"));
        }
    }
    for s in &intent.scaled {
        if let Some(w) = kube
            .get(s.workload.resource(), &s.namespace, &s.name)
            .await?
            && w["spec"]["replicas"].as_i64() != Some(s.replicas)
        {
            left.push(format!(
                "{:?} {}/{} has {} replicas, not {}",
                s.workload, s.namespace, s.name, w["spec"]["replicas"], s.replicas
            ));
        }
    }
    if let Some((ns, _)) = &intent.policy
        && kube
            .get(&NETWORK_POLICY, ns, DENY_ALL_POLICY)
            .await?
            .is_some()
    {
        left.push(format!("NetworkPolicy {ns}/{DENY_ALL_POLICY} still exists"));
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(KubeFaultError::NotConfirmed(left.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fake::Fake;

    fn node(name: &str, zone: &str, allowed: bool) -> Value {
        let mut labels = json!({ "topology.kubernetes.io/zone": zone });
        if allowed {
            labels[CHAOS_LABEL.0] = json!(CHAOS_LABEL.1);
        }
        json!({ "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": name, "labels": labels, "resourceVersion": "1" },
                "spec": {} })
    }

    fn pod(name: &str, node: &str, allowed: bool) -> Value {
        let mut labels = json!({ "app": "db" });
        if allowed {
            labels[CHAOS_LABEL.0] = json!(CHAOS_LABEL.1);
        }
        json!({ "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": name, "namespace": "shop", "labels": labels },
                "spec": { "nodeName": node } })
    }

    fn cluster(allowed: bool) -> Fake {
        let fake = Fake::default();
        fake.seed(&NODE, "", node("n1", "a", allowed));
        fake.seed(&NODE, "", node("n2", "a", allowed));
        fake.seed(&NODE, "", node("n3", "b", true));
        fake.seed(&POD, "shop", pod("db-0", "n1", true));
        fake.seed(&POD, "shop", pod("db-1", "n2", true));
        fake.seed(&POD, "shop", pod("web-0", "n1", false));
        fake
    }

    fn mutating(fake: &Fake) -> Vec<(String, &'static str, String)> {
        fake.calls()
            .into_iter()
            .filter(|c| !["get", "list"].contains(&c.verb))
            .map(|c| (c.verb.to_string(), c.kind, c.name))
            .collect()
    }

    fn zone(z: &str) -> KubeAction {
        KubeAction::CordonEvict {
            selector: format!("topology.kubernetes.io/zone={z}"),
            namespace: "shop".into(),
            limit: None,
        }
    }

    #[tokio::test]
    async fn zero_allowed_targets_is_no_targets_and_nothing_is_touched() {
        let fake = cluster(false);
        let err = plan(&fake, &zone("a"), &[]).await.unwrap_err();
        assert!(matches!(err, KubeFaultError::NoTargets(_)), "{err}");
        assert!(err.to_string().contains("inconclusive"), "{err}");
        let err = plan(
            &fake,
            &KubeAction::DeletePods {
                namespace: "shop".into(),
                selector: "app=none".into(),
            },
            &[],
        )
        .await
        .unwrap_err();
        assert!(matches!(err, KubeFaultError::NoTargets(_)));
        assert!(mutating(&fake).is_empty(), "{:?}", fake.calls());
    }

    #[tokio::test]
    async fn zone_loss_cordons_and_evicts_only_allowed_then_reverts_confirmed() {
        let fake = cluster(true);
        // n3 (zone b) is already cordoned by an operator: it must stay cordoned.
        fake.merge_patch(&NODE, "", "n3", json!({"spec": {"unschedulable": true}}))
            .await
            .unwrap();
        let intent = plan(&fake, &zone("a"), &[]).await.unwrap();
        assert_eq!(intent.nodes, ["n1", "n2"]);
        assert_eq!(
            intent.pods,
            [
                ("shop".into(), "db-0".into()),
                ("shop".into(), "db-1".into())
            ]
        );
        // The intent round-trips (it is persisted before apply).
        let text = serde_json::to_string(&intent).unwrap();
        assert_eq!(serde_json::from_str::<KubeIntent>(&text).unwrap(), intent);
        let before = fake.calls().len();
        apply(&fake, &intent).await.unwrap();
        for n in ["n1", "n2"] {
            assert_eq!(
                fake.object(&NODE, "", n).unwrap()["spec"]["unschedulable"],
                true
            );
        }
        assert!(fake.object(&POD, "shop", "db-0").is_none());
        assert!(
            fake.object(&POD, "shop", "web-0").is_some(),
            "unlabelled pod kept"
        );
        let applied: Vec<_> = fake.calls()[before..]
            .iter()
            .map(|c| (c.verb, c.kind, c.name.clone()))
            .collect();
        assert_eq!(
            applied,
            [
                ("patch", "Node", "n1".into()),
                ("patch", "Node", "n2".into()),
                ("create", "Eviction", "db-0".into()),
                ("create", "Eviction", "db-1".into()),
            ]
        );
        revert(&fake, &intent).await.unwrap();
        // Repeating it (after a crash) is fine.
        revert(&fake, &intent).await.unwrap();
        for n in ["n1", "n2"] {
            assert!(fake.object(&NODE, "", n).unwrap()["spec"]["unschedulable"].is_null());
        }
        assert_eq!(
            fake.object(&NODE, "", "n3").unwrap()["spec"]["unschedulable"],
            true
        );
        // Nothing but the planned objects was ever changed.
        for (verb, kind, name) in mutating(&fake) {
            assert!(
                ["n1", "n2", "n3", "db-0", "db-1"].contains(&name.as_str()),
                "{verb} {kind} {name}"
            );
        }
    }

    #[tokio::test]
    async fn node_loss_takes_one_node() {
        let fake = cluster(true);
        let action = KubeAction::CordonEvict {
            selector: String::new(),
            namespace: "shop".into(),
            limit: Some(1),
        };
        let intent = plan(&fake, &action, &[]).await.unwrap();
        assert_eq!(intent.nodes, ["n1"]);
        assert_eq!(intent.pods, [("shop".into(), "db-0".into())]);
    }

    #[tokio::test]
    async fn scale_to_zero_restores_the_previous_replicas() {
        let fake = cluster(true);
        let dep = json!({ "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "db", "labels": { CHAOS_LABEL.0: CHAOS_LABEL.1 } },
            "spec": { "replicas": 3 } });
        fake.seed(&DEPLOYMENT, "shop", dep);
        let action = KubeAction::ScaleToZero {
            namespace: "shop".into(),
            workload: Workload::Deployment,
            selector: String::new(),
        };
        let intent = plan(&fake, &action, &[]).await.unwrap();
        apply(&fake, &intent).await.unwrap();
        assert_eq!(
            fake.object(&DEPLOYMENT, "shop", "db").unwrap()["spec"]["replicas"],
            0
        );
        revert(&fake, &intent).await.unwrap();
        assert_eq!(
            fake.object(&DEPLOYMENT, "shop", "db").unwrap()["spec"]["replicas"],
            3
        );
    }

    #[tokio::test]
    async fn deny_all_policy_is_created_and_removed() {
        let fake = cluster(true);
        let action = KubeAction::DenyAll {
            namespace: "shop".into(),
            selector: "app=db".into(),
        };
        let intent = plan(&fake, &action, &[]).await.unwrap();
        apply(&fake, &intent).await.unwrap();
        apply(&fake, &intent).await.unwrap();
        let np = fake
            .object(&NETWORK_POLICY, "shop", DENY_ALL_POLICY)
            .unwrap();
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"][CHAOS_LABEL.0],
            "allowed"
        );
        assert_eq!(np["spec"]["podSelector"]["matchLabels"]["app"], "db");
        revert(&fake, &intent).await.unwrap();
        assert!(
            fake.object(&NETWORK_POLICY, "shop", DENY_ALL_POLICY)
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_name_listed_as_allowed_is_a_target() {
        let fake = cluster(false);
        let intent = plan(&fake, &zone("a"), &["n2".into()]).await.unwrap();
        assert_eq!(intent.nodes, ["n2"]);
    }

    /// A cluster where something re-cordons nodes right away (a node controller, an
    /// operator): the uncordon does not stick.
    struct Recordon(Fake);

    #[async_trait::async_trait]
    impl KubeApi for Recordon {
        async fn create(&self, r: &Resource, ns: &str, o: Value) -> Result<Value, KubeError> {
            self.0.create(r, ns, o).await
        }
        async fn get(&self, r: &Resource, ns: &str, n: &str) -> Result<Option<Value>, KubeError> {
            self.0.get(r, ns, n).await
        }
        async fn delete(&self, r: &Resource, ns: &str, n: &str) -> Result<(), KubeError> {
            self.0.delete(r, ns, n).await
        }
        async fn replace(&self, r: &Resource, ns: &str, o: Value) -> Result<Value, KubeError> {
            self.0.replace(r, ns, o).await
        }
        async fn list(&self, r: &Resource, ns: &str, l: &str) -> Result<Vec<Value>, KubeError> {
            self.0.list(r, ns, l).await
        }
        async fn logs(&self, ns: &str, pod: &str) -> Result<String, KubeError> {
            self.0.logs(ns, pod).await
        }
        async fn merge_patch(
            &self,
            r: &Resource,
            ns: &str,
            n: &str,
            _patch: Value,
        ) -> Result<Value, KubeError> {
            self.0
                .merge_patch(r, ns, n, json!({ "spec": { "unschedulable": true } }))
                .await
        }
        async fn evict(&self, ns: &str, pod: &str) -> Result<(), KubeError> {
            self.0.evict(ns, pod).await
        }
    }

    #[tokio::test]
    async fn an_uncordon_the_probe_does_not_see_is_not_confirmed() {
        let kube = Recordon(cluster(true));
        let intent = plan(&kube, &zone("a"), &[]).await.unwrap();
        apply(&kube, &intent).await.unwrap();
        let err = revert(&kube, &intent).await.unwrap_err();
        assert!(matches!(err, KubeFaultError::NotConfirmed(_)), "{err}");
        assert!(
            err.to_string().contains("node n1 is still cordoned"),
            "{err}"
        );
    }
}
