//! The Kubernetes sandbox: a scratch namespace `lifeboat-verify-<id>` labelled with its
//! expiry, a NetworkPolicy that denies all ingress and all egress (restored production data
//! must not reach anything; only `egress_cidrs`, e.g. the object store, are allowed), a
//! ResourceQuota, and a Job that runs the restore and checks with the configured image
//! (`lifeboat verify SNAPSHOT --sandbox local` inside the isolated namespace). The namespace
//! is deleted afterwards, which removes everything in it.
//!
//! # Guarantees
//! - Every object goes through [`KubeApi`] and is listed in [`crate::kube::USED`]. lifeboat
//!   holds no cluster-wide right to create pods, Jobs or Secrets or to read logs: it binds
//!   the `lifeboat-sandbox` ClusterRole inside the namespace it just created (an admission
//!   policy in `deploy/` lets it bind nothing else, nowhere else), then works there.
//! - The namespace is deleted on every path that returns; if lifeboat dies (or the future is
//!   dropped) the namespace keeps its `lifeboat.dev/expires` label and [`sweep`] (run before
//!   every Kubernetes verification) deletes it once expired.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::KubernetesConfig;
use crate::kinds::checks::Check;
use crate::kube::{
    JOB, KubeApi, KubeError, NAMESPACE, NETWORK_POLICY, POD, RESOURCE_QUOTA, ROLE_BINDING,
    SANDBOX_ROLE, SECRET,
};

pub const ROLE_LABEL: &str = "lifeboat.dev/role";
pub const ROLE: &str = "verify-sandbox";
pub const EXPIRES_LABEL: &str = "lifeboat.dev/expires";
const JOB_NAME: &str = "restore";
/// The catalog of the `lifeboat verify` inside the Job (on its emptyDir).
pub(crate) const INNER_CATALOG: &str = "sqlite:///tmp/lifeboat-catalog.db";

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

/// What the `lifeboat` inside the Job needs and cannot reach from the isolated namespace:
/// put into it as two Secrets (deleted with the namespace).
#[derive(Clone, Default)]
pub struct Bundle {
    /// The config file's text (its `${VAR}` references resolve from `env`).
    pub config_yaml: String,
    /// The age identity, to decrypt the snapshot.
    pub identity: Option<String>,
    /// Environment variables: the config's `${VAR}` values and store credentials.
    pub env: BTreeMap<String, String>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("identity", &self.identity.is_some())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The objects of a sandbox, in creation order.
pub struct Objects {
    pub namespace: Value,
    /// Binds `lifeboat-sandbox` to lifeboat's service account in this namespace only.
    pub binding: Value,
    pub policy: Value,
    pub quota: Value,
    /// `lifeboat.yaml` and `identity`, mounted at /etc/lifeboat.
    pub files: Value,
    /// Environment variables, as `envFrom`.
    pub env: Value,
    pub job: Value,
}

const FILES_SECRET: &str = "lifeboat-files";
const ENV_SECRET: &str = "lifeboat-env";
const MOUNT: &str = "/etc/lifeboat";

/// The objects of a sandbox (pure; tested without an API).
pub fn objects(
    cfg: &KubernetesConfig,
    ns: &str,
    snapshot_id: &str,
    bundle: &Bundle,
    now: DateTime<Utc>,
) -> Objects {
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
    let (sa_namespace, sa_name) = cfg.service_account();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": SANDBOX_ROLE, "namespace": ns, "labels": labels },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": SANDBOX_ROLE },
        "subjects": [{ "kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace }],
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
    let mut files = json!({ "lifeboat.yaml": bundle.config_yaml });
    let mut args: Vec<String> = [
        "--catalog",
        INNER_CATALOG,
        "--log-format",
        "json",
        "verify",
        snapshot_id,
        "--sandbox",
        "local",
        "--output",
        "json",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    if let Some(identity) = &bundle.identity {
        files["identity"] = json!(identity);
        args.extend(["--identity".to_string(), format!("{MOUNT}/identity")]);
    }
    let secret = |name: &str, data: Value| {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": name, "namespace": ns, "labels": labels },
            "stringData": data,
        })
    };
    let files = secret(FILES_SECRET, files);
    let env = secret(ENV_SECRET, json!(bundle.env));
    let pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
        "containers": [{
            "name": "verify", "image": cfg.image,
            // The production catalog is out of reach (all egress denied): a throwaway one,
            // into which `verify` records the snapshot from its manifest in the store.
            "args": args,
            "env": [{ "name": "LIFEBOAT_CONFIG", "value": format!("{MOUNT}/lifeboat.yaml") },
                    { "name": "TMPDIR", "value": "/tmp" }],
            "envFrom": [{ "secretRef": { "name": ENV_SECRET } }],
            "resources": { "requests": { "cpu": cpu, "memory": memory },
                           "limits": { "cpu": cpu, "memory": memory } },
            "securityContext": { "allowPrivilegeEscalation": false,
                                 "capabilities": { "drop": ["ALL"] } },
            "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" },
                             { "name": "files", "mountPath": MOUNT, "readOnly": true }],
        }],
        "volumes": [{ "name": "tmp", "emptyDir": {} },
                    { "name": "files", "secret": { "secretName": FILES_SECRET, "defaultMode": 0o400 } }],
    });
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": JOB_NAME, "namespace": ns, "labels": labels },
        "spec": { "backoffLimit": 0, "activeDeadlineSeconds": cfg.ttl().as_secs(),
                  "template": { "metadata": { "labels": labels }, "spec": pod } },
    });
    Objects {
        namespace,
        binding,
        policy,
        quota,
        files,
        env,
        job,
    }
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

/// What a Kubernetes verification found.
#[derive(Debug)]
pub struct Outcome {
    pub checks: Vec<Check>,
    /// The restore time measured inside the sandbox (from the Job's report), if it was read.
    pub restore_ms: Option<u64>,
}

/// Runs one verification in a scratch namespace. The namespace is gone when this returns.
pub async fn verify(
    kube: Arc<dyn KubeApi>,
    cfg: &KubernetesConfig,
    verification_id: &str,
    snapshot_id: &str,
    bundle: &Bundle,
    now: DateTime<Utc>,
) -> Result<Outcome, KubeError> {
    if let Err(e) = sweep(kube.as_ref(), cfg, now).await {
        tracing::warn!(cause = %e, "could not sweep expired verification namespaces");
    }
    let ns = namespace_name(cfg.prefix(), verification_id);
    let o = objects(cfg, &ns, snapshot_id, bundle, now);
    kube.create(&NAMESPACE, "", o.namespace).await?;
    let scratch = Scratch {
        kube: kube.clone(),
        ns: Some(ns.clone()),
    };
    let result = async {
        // The sandbox permissions exist in this namespace only, from this binding on.
        kube.create(&ROLE_BINDING, &ns, o.binding).await?;
        kube.create(&NETWORK_POLICY, &ns, o.policy).await?;
        kube.create(&RESOURCE_QUOTA, &ns, o.quota).await?;
        kube.create(&SECRET, &ns, o.files).await?;
        kube.create(&SECRET, &ns, o.env).await?;
        let mut checks = vec![Check::pass(
            "isolated",
            format!("namespace {ns}: all ingress and egress denied, quota set"),
        )];
        kube.create(&JOB, &ns, o.job).await?;
        let job_result = wait_job(kube.as_ref(), &ns, cfg.ttl()).await?;
        let log = job_log(kube.as_ref(), &ns).await;
        let report = log.as_ref().ok().and_then(|l| parse_report(l));
        let restore_ms = report.as_ref().and_then(|r| r.restore_ms);
        let job_check = match (job_result, &report, &log) {
            (Ok(()), Some(_), _) => Check::pass(
                "restore job",
                "the restore and its checks passed in the sandbox",
            ),
            (Ok(()), None, log) => Check::pass(
                "restore job",
                format!(
                    "the restore and its checks passed in the sandbox (their details are not available: {})",
                    log.as_ref().err().map_or("no report in the pod's log", String::as_str)
                ),
            ),
            (Err(why), Some(r), _) => Check::fail(
                "restore job",
                format!(
                    "job {ns}/{JOB_NAME} failed: {}",
                    r.error.as_deref().unwrap_or(&why)
                ),
            ),
            (Err(why), None, Ok(log)) => Check::fail(
                "restore job",
                format!("job {ns}/{JOB_NAME} failed: {why}; log tail: {}", tail(log, 5)),
            ),
            (Err(why), None, Err(_)) => {
                Check::fail("restore job", format!("job {ns}/{JOB_NAME} failed: {why}"))
            }
        };
        if let Some(r) = report {
            checks.extend(r.checks);
        }
        checks.push(job_check);
        Ok(Outcome { checks, restore_ms })
    }
    .await;
    let deleted = scratch.delete().await;
    let outcome = result?;
    deleted?;
    Ok(outcome)
}

/// The log of the Job's pod, or why it could not be read.
async fn job_log(kube: &dyn KubeApi, ns: &str) -> Result<String, String> {
    let pods = kube
        .list(&POD, ns, &format!("job-name={JOB_NAME}"))
        .await
        .map_err(|e| e.to_string())?;
    let pod = pods
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .next()
        .ok_or_else(|| format!("no pod of job {ns}/{JOB_NAME}"))?;
    kube.logs(ns, pod).await.map_err(|e| {
        tracing::warn!(cause = %e, "cannot read the verification pod's log");
        e.to_string()
    })
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The part of `lifeboat verify --output json`'s report the outer verification uses.
#[derive(Debug, Deserialize)]
pub struct InnerReport {
    pub restore_ms: Option<u64>,
    pub checks: Vec<Check>,
    pub error: Option<String>,
}

/// Finds the report in a pod's log: the last pretty-printed JSON object (a line that is
/// just `{`); the JSON log lines around it are single-line objects and are skipped.
pub fn parse_report(log: &str) -> Option<InnerReport> {
    let start = log
        .rmatch_indices("{\n")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || log.as_bytes()[i - 1] == b'\n')?;
    serde_json::Deserializer::from_str(&log[start..])
        .into_iter::<InnerReport>()
        .next()?
        .ok()
}

/// Waits for the restore Job to succeed (`Ok(Ok(()))`) or fail (`Ok(Err(why))`).
async fn wait_job(
    kube: &dyn KubeApi,
    ns: &str,
    limit: Duration,
) -> Result<Result<(), String>, KubeError> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let job = kube.get(&JOB, ns, JOB_NAME).await?.unwrap_or(Value::Null);
        let status = &job["status"];
        if status["succeeded"].as_i64().unwrap_or(0) > 0 {
            return Ok(Ok(()));
        }
        let failed_condition = status["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "Failed" && c["status"] == "True")
        });
        if status["failed"].as_i64().unwrap_or(0) > 0 || failed_condition.is_some() {
            let why = failed_condition
                .and_then(|c| c["message"].as_str().or(c["reason"].as_str()))
                .unwrap_or("the pod failed; see its logs");
            return Ok(Err(why.to_string()));
        }
        if started.elapsed() > limit {
            return Ok(Err("it did not finish in time".into()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_last_pretty_object_among_json_log_lines() {
        let log = "{\"level\":\"INFO\",\"fields\":{\"message\":\"verification started\"}}\n\
                   {\n  \"id\": \"verify-1\",\n  \"status\": \"failed\",\n  \"restore_ms\": 1234,\n  \
                   \"checks\": [\n    { \"name\": \"rows t\", \"passed\": false, \"detail\": \"t: 1 after restore, 2 recorded\" }\n  ],\n  \
                   \"error\": \"1 check(s) failed: rows t\"\n}\n\
                   {\"level\":\"INFO\",\"fields\":{\"message\":\"bye\"}}\n";
        let r = parse_report(log).expect("report");
        assert_eq!(r.restore_ms, Some(1234));
        assert_eq!(r.checks.len(), 1);
        assert!(!r.checks[0].passed);
        assert_eq!(r.error.as_deref(), Some("1 check(s) failed: rows t"));
    }

    #[test]
    fn no_report_in_a_log_of_errors_or_nothing() {
        assert!(parse_report("").is_none());
        assert!(parse_report("error: cannot open the catalog\n").is_none());
        assert!(parse_report("{\"level\":\"ERROR\",\"fields\":{}}\n").is_none());
        assert!(parse_report("{\n  \"truncated\": ").is_none());
    }
}
