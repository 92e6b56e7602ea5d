//! The Kubernetes sandbox: a scratch namespace `lifeboat-verify-<id>` labelled with its
//! expiry, a NetworkPolicy that denies all ingress and all egress (restored production data
//! must not reach anything; only `egress_cidrs`, e.g. the object store, are allowed), a
//! ResourceQuota, and a Job that runs the restore and checks with the configured image
//! (`lifeboat verify SNAPSHOT --sandbox local` inside the isolated namespace). The namespace
//! is deleted afterwards, which removes everything in it.
//!
//! # Guarantees
//! - Every object goes through [`KubeApi`] and is listed in [`crate::kube::USED`].
//! - The namespace is deleted on every path that returns; if lifeboat dies (or the future is
//!   dropped) the namespace keeps its `lifeboat.dev/expires` label and [`sweep`] (run before
//!   every Kubernetes verification) deletes it once expired.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::checks::Check;
use crate::config::Timeout;
use crate::kube::{JOB, KubeApi, KubeError, NAMESPACE, NETWORK_POLICY, RESOURCE_QUOTA};

pub const ROLE_LABEL: &str = "lifeboat.dev/role";
pub const ROLE: &str = "verify-sandbox";
pub const EXPIRES_LABEL: &str = "lifeboat.dev/expires";
const JOB_NAME: &str = "restore";

/// `sandbox.kubernetes` of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Image holding lifeboat and the kinds' server binaries.
    pub image: String,
    /// Default `lifeboat-verify-`.
    pub namespace_prefix: Option<String>,
    /// How long a scratch namespace may live before the sweeper deletes it (default 6h).
    pub ttl: Option<Timeout>,
    /// ResourceQuota limits of the namespace (default 2 CPUs, 4Gi).
    pub cpu: Option<String>,
    pub memory: Option<String>,
    /// Secret holding `lifeboat.yaml` and the age identity, mounted at /etc/lifeboat.
    pub config_secret: Option<String>,
    /// The only egress allowed from the namespace (the object store's addresses).
    #[serde(default)]
    pub egress_cidrs: Vec<String>,
}

impl KubernetesConfig {
    fn prefix(&self) -> &str {
        self.namespace_prefix
            .as_deref()
            .unwrap_or("lifeboat-verify-")
    }
    fn ttl(&self) -> Duration {
        self.ttl.map_or(Duration::from_secs(6 * 3600), |t| t.0)
    }
}

/// A DNS-1123 label from the prefix and the verification id.
pub fn namespace_name(prefix: &str, verification_id: &str) -> String {
    let id: String = verification_id
        .trim_start_matches("verify-")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("{prefix}{id}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The objects of a sandbox (pure; tested without an API).
pub fn objects(
    cfg: &KubernetesConfig,
    ns: &str,
    snapshot_id: &str,
    now: DateTime<Utc>,
) -> (Value, Value, Value, Value) {
    let expires = now.timestamp() + cfg.ttl().as_secs() as i64;
    let labels = json!({
        "app.kubernetes.io/managed-by": "lifeboat",
        ROLE_LABEL: ROLE,
        EXPIRES_LABEL: expires.to_string(),
    });
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": ns, "labels": labels,
            "annotations": { "lifeboat.dev/snapshot": snapshot_id } },
    });
    let egress: Vec<Value> = cfg
        .egress_cidrs
        .iter()
        .map(|c| json!({ "to": [{ "ipBlock": { "cidr": c } }] }))
        .collect();
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": "deny-all-egress", "namespace": ns, "labels": labels },
        "spec": { "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": [], "egress": egress },
    });
    let cpu = cfg.cpu.clone().unwrap_or_else(|| "2".into());
    let memory = cfg.memory.clone().unwrap_or_else(|| "4Gi".into());
    let quota = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": { "name": "sandbox", "namespace": ns, "labels": labels },
        "spec": { "hard": { "pods": "2", "requests.cpu": cpu, "limits.cpu": cpu,
                            "requests.memory": memory, "limits.memory": memory } },
    });
    let mut pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "containers": [{
            "name": "verify", "image": cfg.image,
            "args": ["verify", snapshot_id, "--sandbox", "local", "--output", "json"],
            "env": [{ "name": "LIFEBOAT_CONFIG", "value": "/etc/lifeboat/lifeboat.yaml" }],
            "resources": { "requests": { "cpu": cpu, "memory": memory },
                           "limits": { "cpu": cpu, "memory": memory } },
        }],
    });
    if let Some(secret) = &cfg.config_secret {
        pod["volumes"] = json!([{ "name": "config", "secret": { "secretName": secret } }]);
        pod["containers"][0]["volumeMounts"] =
            json!([{ "name": "config", "mountPath": "/etc/lifeboat", "readOnly": true }]);
    }
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": JOB_NAME, "namespace": ns, "labels": labels },
        "spec": { "backoffLimit": 0, "activeDeadlineSeconds": cfg.ttl().as_secs(),
                  "template": { "metadata": { "labels": labels }, "spec": pod } },
    });
    (namespace, policy, quota, job)
}

/// Deletes the namespace when dropped without [`Scratch::delete`] (a timeout, Ctrl-C):
/// best effort on the runtime; the sweeper catches what this misses.
struct Scratch {
    kube: Arc<dyn KubeApi>,
    ns: Option<String>,
}

impl Scratch {
    async fn delete(mut self) -> Result<(), KubeError> {
        match self.ns.take() {
            Some(ns) => self.kube.delete(&NAMESPACE, "", &ns).await,
            None => Ok(()),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(ns) = self.ns.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let kube = self.kube.clone();
            rt.spawn(async move {
                let _ = kube.delete(&NAMESPACE, "", &ns).await;
            });
        }
    }
}

/// Runs one verification in a scratch namespace; returns its checks. The namespace is gone
/// when this returns.
pub async fn verify(
    kube: Arc<dyn KubeApi>,
    cfg: &KubernetesConfig,
    verification_id: &str,
    snapshot_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Check>, KubeError> {
    if let Err(e) = sweep(kube.as_ref(), cfg, now).await {
        tracing::warn!(cause = %e, "could not sweep expired verification namespaces");
    }
    let ns = namespace_name(cfg.prefix(), verification_id);
    let (namespace, policy, quota, job) = objects(cfg, &ns, snapshot_id, now);
    kube.create(&NAMESPACE, "", namespace).await?;
    let scratch = Scratch {
        kube: kube.clone(),
        ns: Some(ns.clone()),
    };
    let result = async {
        kube.create(&NETWORK_POLICY, &ns, policy).await?;
        kube.create(&RESOURCE_QUOTA, &ns, quota).await?;
        let mut checks = vec![Check::pass(
            "isolated",
            format!("namespace {ns}: all ingress and egress denied, quota set"),
        )];
        kube.create(&JOB, &ns, job).await?;
        checks.push(wait_job(kube.as_ref(), &ns, cfg.ttl()).await?);
        Ok(checks)
    }
    .await;
    let deleted = scratch.delete().await;
    let checks = result?;
    deleted?;
    Ok(checks)
}

/// Waits for the restore Job to succeed or fail.
async fn wait_job(kube: &dyn KubeApi, ns: &str, limit: Duration) -> Result<Check, KubeError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let job = kube.get(&JOB, ns, JOB_NAME).await?.unwrap_or(Value::Null);
        let status = &job["status"];
        if status["succeeded"].as_i64().unwrap_or(0) > 0 {
            return Ok(Check::pass(
                "restore job",
                "the restore and its checks passed in the sandbox",
            ));
        }
        let failed_condition = status["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "Failed" && c["status"] == "True")
        });
        if status["failed"].as_i64().unwrap_or(0) > 0 || failed_condition.is_some() {
            let why = failed_condition
                .and_then(|c| c["message"].as_str().or(c["reason"].as_str()))
                .unwrap_or("the pod failed; see its logs");
            return Ok(Check::fail(
                "restore job",
                format!("job {ns}/{JOB_NAME} failed: {why}"),
            ));
        }
        if started.elapsed() > limit {
            return Ok(Check::fail(
                "restore job",
                format!("job {ns}/{JOB_NAME} did not finish in time"),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Deletes scratch namespaces whose `lifeboat.dev/expires` has passed (left by crashes);
/// returns their names.
pub async fn sweep(
    kube: &dyn KubeApi,
    cfg: &KubernetesConfig,
    now: DateTime<Utc>,
) -> Result<Vec<String>, KubeError> {
    let mut deleted = Vec::new();
    for ns in kube
        .list(&NAMESPACE, "", &format!("{ROLE_LABEL}={ROLE}"))
        .await?
    {
        let Some(name) = ns["metadata"]["name"].as_str() else {
            continue;
        };
        let expires = ns["metadata"]["labels"][EXPIRES_LABEL]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok());
        if name.starts_with(cfg.prefix()) && expires.is_some_and(|t| t <= now.timestamp()) {
            kube.delete(&NAMESPACE, "", name).await?;
            deleted.push(name.to_string());
        }
    }
    Ok(deleted)
}
