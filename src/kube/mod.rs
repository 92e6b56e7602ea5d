//! Kubernetes, behind one small trait ([`KubeApi`]): create, get and delete of plain JSON
//! objects of the resources lifeboat uses ([`USED`]). The production implementation
//! ([`Live`]) is `kube`'s dynamic API; tests use the contract fake ([`fake::Fake`]), which
//! checks every request against what the API server would accept and simulates the
//! controllers lifeboat waits for.
//!
//! [`USED`] is the single list of resources and verbs the code needs, by the scope where
//! they are granted; the RBAC in `deploy/` must grant exactly these, each at its scope (a
//! test checks it).

pub mod fake;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "cannot reach the Kubernetes API: {0}; lifeboat needs in-cluster credentials or a kubeconfig for PVC snapshots"
    )]
    Connect(String),
    #[error("Kubernetes API {verb} {kind} {name}: {reason}")]
    Api {
        verb: &'static str,
        kind: &'static str,
        name: String,
        reason: String,
        /// The HTTP status of the answer (409 Conflict, 404, ...); `None` when there was none.
        code: Option<u16>,
    },
}

impl KubeError {
    /// The HTTP status the API server answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Api { code, .. } => *code,
            KubeError::Connect(_) => None,
        }
    }

    /// 409: someone else created or changed the object first.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self.status() {
            Some(409) => ErrorKind::Conflict,
            Some(400 | 401 | 403 | 404 | 422) => ErrorKind::Config,
            _ => ErrorKind::Unreachable,
        }
    }
}

/// A resource type, as the API server knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub const VOLUME_SNAPSHOT: Resource = Resource {
    group: "snapshot.storage.k8s.io",
    version: "v1",
    kind: "VolumeSnapshot",
    plural: "volumesnapshots",
    namespaced: true,
};

pub const PVC: Resource = Resource {
    group: "",
    version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
    namespaced: true,
};

/// The leader-election lock of `lifeboat run` (see `crate::leader`).
pub const LEASE: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    namespaced: true,
};

/// Cluster-scoped: call it with namespace `""`.
pub const NAMESPACE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    namespaced: false,
};

pub const NETWORK_POLICY: Resource = Resource {
    group: "networking.k8s.io",
    version: "v1",
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    namespaced: true,
};

pub const RESOURCE_QUOTA: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ResourceQuota",
    plural: "resourcequotas",
    namespaced: true,
};

pub const JOB: Resource = Resource {
    group: "batch",
    version: "v1",
    kind: "Job",
    plural: "jobs",
    namespaced: true,
};

/// What a verification Job needs (config, identity, credentials), inside its namespace.
pub const SECRET: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    namespaced: true,
};

/// The pods of a verification Job (listed to find the Job's pod).
pub const POD: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    namespaced: true,
};

/// The `log` subresource of a pod (RBAC resource `pods/log`), read through
/// [`KubeApi::logs`].
pub const POD_LOG: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods/log",
    namespaced: true,
};

/// A RoleBinding: lifeboat binds [`SANDBOX_ROLE`] inside each verification namespace it
/// creates, so the sandbox permissions exist there and nowhere else.
pub const ROLE_BINDING: Resource = Resource {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    kind: "RoleBinding",
    plural: "rolebindings",
    namespaced: true,
};

/// The ClusterRole holding [`USED_IN_SANDBOX`]; never bound cluster-wide, only by a
/// RoleBinding inside a verification namespace (lifeboat holds `bind` on it, nothing else).
pub const SANDBOX_ROLE: &str = "lifeboat-sandbox";

/// The Eviction subresource of a pod (RBAC resource `pods/eviction`, verb `create`), used
/// through [`KubeApi::evict`] by the node-loss and zone-loss drill faults. The group is the
/// pod's (RBAC names subresources under their parent); the Eviction body is `policy/v1`.
pub const POD_EVICTION: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Eviction",
    plural: "pods/eviction",
    namespaced: true,
};

/// Cluster-scoped: call it with namespace `""`. Only drill faults touch nodes (cordon).
pub const NODE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    namespaced: false,
};

pub const DEPLOYMENT: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    namespaced: true,
};

pub const STATEFUL_SET: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    namespaced: true,
};

/// The label a Kubernetes object must carry before a drill fault touches it.
pub const CHAOS_LABEL: (&str, &str) = ("lifeboat.dev/chaos", "allowed");

/// Granted cluster-wide (ClusterRole `lifeboat`): snapshots of PVCs in the applications'
/// namespaces, the verification namespaces themselves (an admission policy in `deploy/`
/// limits these to namespaces labelled `lifeboat.dev/role=verify-sandbox`), and the
/// RoleBinding of [`SANDBOX_ROLE`] in them. No pods, Jobs, Secrets or logs.
pub const USED_CLUSTER: &[(Resource, &[&str])] = &[
    (VOLUME_SNAPSHOT, &["create", "get", "delete"]),
    (PVC, &["create", "get"]),
    (NAMESPACE, &["create", "delete", "list"]),
    (ROLE_BINDING, &["create"]),
];

/// Granted in lifeboat's own namespace only (Role `lifeboat-leader`): leader election.
pub const USED_OWN_NAMESPACE: &[(Resource, &[&str])] = &[(LEASE, &["create", "get", "update"])];

/// Granted inside a verification namespace only ([`SANDBOX_ROLE`], bound there by lifeboat
/// right after it creates the namespace).
pub const USED_IN_SANDBOX: &[(Resource, &[&str])] = &[
    (NETWORK_POLICY, &["create"]),
    (RESOURCE_QUOTA, &["create"]),
    (SECRET, &["create"]),
    (JOB, &["create", "get"]),
    (POD, &["list"]),
    (POD_LOG, &["get"]),
];

/// Drill faults, granted only by the opt-in overlay `deploy/overlays/chaos/` (Role
/// `lifeboat-chaos`, bound in each namespace a drill may target; never in `deploy/base`):
/// delete pods, scale Deployments/StatefulSets (merge patch of `spec.replicas`), a deny-all
/// NetworkPolicy, evictions of the pods of a cordoned node.
pub const USED_CHAOS_NAMESPACE: &[(Resource, &[&str])] = &[
    (POD, &["list", "delete"]),
    (POD_EVICTION, &["create"]),
    (DEPLOYMENT, &["get", "list", "patch"]),
    (STATEFUL_SET, &["get", "list", "patch"]),
    (NETWORK_POLICY, &["create", "get", "delete"]),
];

/// Drill faults on nodes (ClusterRole `lifeboat-chaos-nodes` of the opt-in overlay
/// `deploy/overlays/chaos/`): list nodes by label, cordon/uncordon (merge patch of
/// `spec.unschedulable`), and re-read them to confirm a revert.
pub const USED_CHAOS_CLUSTER: &[(Resource, &[&str])] = &[(NODE, &["get", "list", "patch"])];

/// The label a Deployment/StatefulSet must carry before a failover `kube_scale` action
/// scales it.
pub const FAILOVER_LABEL: (&str, &str) = ("lifeboat.dev/failover", "allowed");

/// Failover `kube_scale` fence/promote actions, granted only by the opt-in overlay
/// `deploy/overlays/failover-kube/` (Role `lifeboat-failover`, bound in each namespace whose
/// workloads a site's `fence:`/`promote:` scale; never in `deploy/base`): read a workload
/// (and its ready replicas, for `kind: kubernetes` services), scale it (merge patch of
/// `spec.replicas`) and re-read it to confirm.
pub const USED_FAILOVER_NAMESPACE: &[(Resource, &[&str])] = &[
    (DEPLOYMENT, &["get", "list", "patch"]),
    (STATEFUL_SET, &["get", "list", "patch"]),
];

/// Whether `verb` on `res` is granted by the chaos overlay.
pub fn is_chaos(res: &Resource, verb: &str) -> bool {
    USED_CHAOS_NAMESPACE
        .iter()
        .chain(USED_CHAOS_CLUSTER)
        .any(|(r, verbs)| r == res && verbs.contains(&verb))
}

/// Every resource lifeboat calls, with the verbs it uses on it (`replace` is RBAC's
/// `update`, [`KubeApi::merge_patch`] its `patch`, [`KubeApi::evict`] a `create` of
/// `pods/eviction`), by where the permission is granted.
pub const USED: &[&[(Resource, &[&str])]] = &[
    USED_CLUSTER,
    USED_OWN_NAMESPACE,
    USED_IN_SANDBOX,
    USED_CHAOS_NAMESPACE,
    USED_CHAOS_CLUSTER,
    USED_FAILOVER_NAMESPACE,
];

/// Whether `verb` on `res` is in [`USED`].
pub fn is_used(res: &Resource, verb: &str) -> bool {
    USED.iter()
        .flat_map(|scope| scope.iter())
        .any(|(r, verbs)| r == res && verbs.contains(&verb))
}

/// Whether `res` is granted only inside verification namespaces.
pub fn in_sandbox_only(res: &Resource) -> bool {
    USED_IN_SANDBOX.iter().any(|(r, _)| r == res)
}

#[async_trait]
pub trait KubeApi: Send + Sync {
    /// Creates `obj` (which carries apiVersion, kind and metadata) and returns it as stored.
    async fn create(&self, res: &Resource, ns: &str, obj: Value) -> Result<Value, KubeError>;
    /// The object, or `None` if it does not exist.
    async fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Option<Value>, KubeError>;
    /// Deletes the object; deleting one that does not exist is not an error.
    async fn delete(&self, res: &Resource, ns: &str, name: &str) -> Result<(), KubeError>;
    /// Replaces the object (RBAC verb `update`). `obj.metadata.resourceVersion` must be the
    /// one last read: if someone wrote it since, the API server refuses (409 Conflict), which
    /// is what makes a Lease a lock.
    async fn replace(&self, res: &Resource, ns: &str, obj: Value) -> Result<Value, KubeError>;
    /// Objects of `res` in `ns` (`""` for cluster-scoped resources) matching a label selector.
    async fn list(&self, res: &Resource, ns: &str, labels: &str) -> Result<Vec<Value>, KubeError>;
    /// The log of `pod`'s (only) container: stdout and stderr, as text.
    async fn logs(&self, ns: &str, pod: &str) -> Result<String, KubeError>;
    /// Applies a JSON merge patch (RFC 7386; RBAC verb `patch`) and returns the object.
    async fn merge_patch(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, KubeError>;
    /// Evicts `pod` through the Eviction API (honours PodDisruptionBudgets: a refusal is
    /// 429). Evicting a pod that is gone is not an error.
    async fn evict(&self, ns: &str, pod: &str) -> Result<(), KubeError>;
}

/// The real API server, through `kube`; connects on first use (in-cluster config or
/// kubeconfig), so commands that never touch Kubernetes never need it.
#[derive(Default)]
pub struct Live {
    client: OnceCell<kube::Client>,
}

impl Live {
    async fn client(&self) -> Result<kube::Client, KubeError> {
        Ok(self
            .client
            .get_or_try_init(|| async {
                kube::Client::try_default()
                    .await
                    .map_err(|e| KubeError::Connect(e.to_string()))
            })
            .await?
            .clone())
    }

    async fn api(
        &self,
        res: &Resource,
        ns: &str,
    ) -> Result<kube::Api<kube::api::DynamicObject>, KubeError> {
        let client = self.client().await?;
        let gvk = kube::api::GroupVersionKind::gvk(res.group, res.version, res.kind);
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, res.plural);
        if res.namespaced {
            Ok(kube::Api::namespaced_with(client, ns, &ar))
        } else {
            Ok(kube::Api::all_with(client, &ar))
        }
    }
}

fn api_err(verb: &'static str, res: &Resource, name: &str, e: impl ApiFailure) -> KubeError {
    KubeError::Api {
        verb,
        kind: res.kind,
        name: name.to_string(),
        reason: e.to_string(),
        code: e.code(),
    }
}

/// An error of the live client, with the HTTP status when the API server answered.
trait ApiFailure: std::fmt::Display {
    fn code(&self) -> Option<u16> {
        None
    }
}

impl ApiFailure for kube::Error {
    fn code(&self) -> Option<u16> {
        match self {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

impl ApiFailure for serde_json::Error {}

#[async_trait]
impl KubeApi for Live {
    async fn create(&self, res: &Resource, ns: &str, obj: Value) -> Result<Value, KubeError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let dynamic: kube::api::DynamicObject =
            serde_json::from_value(obj).map_err(|e| api_err("create", res, &name, e))?;
        let created = self
            .api(res, ns)
            .await?
            .create(&kube::api::PostParams::default(), &dynamic)
            .await
            .map_err(|e| api_err("create", res, &name, e))?;
        serde_json::to_value(created).map_err(|e| api_err("create", res, &name, e))
    }

    async fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Option<Value>, KubeError> {
        let got = self
            .api(res, ns)
            .await?
            .get_opt(name)
            .await
            .map_err(|e| api_err("get", res, name, e))?;
        got.map(serde_json::to_value)
            .transpose()
            .map_err(|e| api_err("get", res, name, e))
    }

    async fn replace(&self, res: &Resource, ns: &str, obj: Value) -> Result<Value, KubeError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let dynamic: kube::api::DynamicObject =
            serde_json::from_value(obj).map_err(|e| api_err("update", res, &name, e))?;
        let replaced = self
            .api(res, ns)
            .await?
            .replace(&name, &kube::api::PostParams::default(), &dynamic)
            .await
            .map_err(|e| api_err("update", res, &name, e))?;
        serde_json::to_value(replaced).map_err(|e| api_err("update", res, &name, e))
    }

    async fn delete(&self, res: &Resource, ns: &str, name: &str) -> Result<(), KubeError> {
        match self
            .api(res, ns)
            .await?
            .delete(name, &kube::api::DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_err("delete", res, name, e)),
        }
    }

    async fn list(&self, res: &Resource, ns: &str, labels: &str) -> Result<Vec<Value>, KubeError> {
        let list = self
            .api(res, ns)
            .await?
            .list(&kube::api::ListParams::default().labels(labels))
            .await
            .map_err(|e| api_err("list", res, labels, e))?;
        list.items
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(|e| api_err("list", res, labels, e))
    }

    async fn logs(&self, ns: &str, pod: &str) -> Result<String, KubeError> {
        kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.client().await?, ns)
            .logs(pod, &kube::api::LogParams::default())
            .await
            .map_err(|e| api_err("get", &POD_LOG, pod, e))
    }

    async fn merge_patch(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, KubeError> {
        let patched = self
            .api(res, ns)
            .await?
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| api_err("patch", res, name, e))?;
        serde_json::to_value(patched).map_err(|e| api_err("patch", res, name, e))
    }

    async fn evict(&self, ns: &str, pod: &str) -> Result<(), KubeError> {
        match kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(self.client().await?, ns)
            .evict(pod, &kube::api::EvictParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_err("create", &POD_EVICTION, pod, e)),
        }
    }
}
