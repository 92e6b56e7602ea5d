//! A contract fake of the Kubernetes API for tests: an in-memory object store that rejects
//! what the API server would reject (wrong apiVersion/kind, bad or missing names, namespace
//! mismatches, duplicates, objects missing the fields their type requires, resources lifeboat
//! is not meant to use) and plays the controllers lifeboat waits for (the CSI snapshotter
//! marking a VolumeSnapshot ready, or failed). Every call is recorded for assertions.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{KubeApi, KubeError, NAMESPACE, ROLE_BINDING, Resource, SANDBOX_ROLE};

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub verb: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

/// How the simulated CSI snapshotter treats new VolumeSnapshots.
#[derive(Debug, Clone)]
pub enum Snapshotter {
    /// Ready after this many `get`s, with this restoreSize.
    ReadyAfter(u32, String),
    /// Fails with this message.
    Fails(String),
}

/// How the simulated Job controller treats new Jobs.
#[derive(Debug, Clone)]
pub enum JobRunner {
    /// Succeeded after this many `get`s.
    SucceedsAfter(u32),
    /// Failed, with this condition message.
    Fails(String),
}

pub struct Fake {
    objects: Mutex<BTreeMap<(String, String, String), Value>>,
    gets: Mutex<BTreeMap<(String, String), u32>>,
    pub calls: Mutex<Vec<Call>>,
    pub snapshotter: Snapshotter,
    pub jobs: JobRunner,
    /// What the pods of Jobs print (their log).
    pub pod_log: String,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            objects: Mutex::default(),
            gets: Mutex::default(),
            calls: Mutex::default(),
            snapshotter: Snapshotter::ReadyAfter(2, "1Gi".into()),
            jobs: JobRunner::SucceedsAfter(2),
            pod_log: String::new(),
        }
    }
}

/// An answer of the API server with the status code it gives: 422 Invalid by default, the
/// code written in `reason` (`(409)`, `(404)`, `forbidden`) when there is one.
fn invalid(verb: &'static str, res: &Resource, name: &str, reason: impl Into<String>) -> KubeError {
    let reason = reason.into();
    let code = if reason.starts_with("forbidden") {
        403
    } else if reason.contains("(409)") {
        409
    } else if reason.contains("(404)") {
        404
    } else {
        422
    };
    KubeError::Api {
        verb,
        kind: res.kind,
        name: name.to_string(),
        reason,
        code: Some(code),
    }
}

/// DNS-1123 subdomain, as most object names must be.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// RFC 7386 JSON merge patch: `null` removes, objects merge, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in fields {
        if v.is_null() {
            if let Some(obj) = target.as_object_mut() {
                obj.remove(k);
            }
        } else {
            merge(&mut target[k], v);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread poisons the lock; the data is still fine for the next one.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fake {
    pub fn new(snapshotter: Snapshotter) -> Self {
        Fake {
            snapshotter,
            ..Fake::default()
        }
    }

    /// A fake whose Job controller behaves as `jobs` says.
    pub fn with_jobs(jobs: JobRunner) -> Self {
        Fake {
            jobs,
            ..Fake::default()
        }
    }

    /// The pods of Jobs print `log`.
    pub fn with_pod_log(mut self, log: impl Into<String>) -> Self {
        self.pod_log = log.into();
        self
    }

    /// Puts an object in place as if someone else had created it (e.g. the PVC to snapshot).
    pub fn seed(&self, res: &Resource, ns: &str, obj: Value) {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        lock(&self.objects).insert((res.plural.into(), ns.into(), name), obj);
    }

    pub fn object(&self, res: &Resource, ns: &str, name: &str) -> Option<Value> {
        lock(&self.objects)
            .get(&(res.plural.into(), ns.into(), name.into()))
            .cloned()
    }

    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// Objects of `res` in `ns`, for assertions.
    pub fn objects_of(&self, res: &Resource, ns: &str) -> Vec<Value> {
        lock(&self.objects)
            .iter()
            .filter(|((p, obj_ns, _), _)| p == res.plural && obj_ns == ns)
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    fn record(
        &self,
        verb: &'static str,
        res: &Resource,
        ns: &str,
        name: &str,
    ) -> Result<(), KubeError> {
        lock(&self.calls).push(Call {
            verb,
            kind: res.kind,
            namespace: ns.into(),
            name: name.into(),
        });
        if !super::is_used(res, verb) {
            return Err(invalid(
                verb,
                res,
                name,
                "forbidden: not in kube::USED (the RBAC Role would deny it)",
            ));
        }
        // RBAC as deploy/ grants it: sandbox permissions only where lifeboat bound them.
        // The chaos overlay's Role is bound in the namespaces a drill targets.
        if super::in_sandbox_only(res) && !self.sandbox_bound(ns) && !super::is_chaos(res, verb) {
            return Err(invalid(
                verb,
                res,
                name,
                "forbidden: no RoleBinding of lifeboat-sandbox in this namespace (deploy/ grants these only inside verification namespaces)",
            ));
        }
        Ok(())
    }

    fn sandbox_bound(&self, ns: &str) -> bool {
        lock(&self.objects)
            .iter()
            .any(|((plural, obj_ns, _), obj)| {
                plural == ROLE_BINDING.plural
                    && obj_ns == ns
                    && obj["roleRef"]["kind"] == "ClusterRole"
                    && obj["roleRef"]["name"] == SANDBOX_ROLE
            })
    }

    /// What the ValidatingAdmissionPolicy in deploy/ lets lifeboat do with namespaces and
    /// RoleBindings: only verification namespaces (labelled), only the sandbox role.
    fn admit(
        &self,
        verb: &str,
        res: &Resource,
        ns: &str,
        name: &str,
        obj: Option<&Value>,
    ) -> Result<(), String> {
        let sandbox = |labels: &Value| labels["lifeboat.dev/role"] == "verify-sandbox";
        match (verb, res.kind) {
            ("create", "Namespace") if !obj.is_some_and(|o| sandbox(&o["metadata"]["labels"])) => {
                return Err("forbidden: denied by the admission policy: lifeboat creates only namespaces labelled lifeboat.dev/role=verify-sandbox".into());
            }
            ("delete", "Namespace")
                if self
                    .object(&NAMESPACE, "", name)
                    .is_some_and(|o| !sandbox(&o["metadata"]["labels"])) =>
            {
                return Err("forbidden: denied by the admission policy: lifeboat deletes only its verification namespaces".into());
            }
            ("create", "RoleBinding") => {
                let labelled = self
                    .object(&NAMESPACE, "", ns)
                    .is_some_and(|o| sandbox(&o["metadata"]["labels"]));
                let role = obj.map(|o| &o["roleRef"]);
                let right_role = role.is_some_and(|r| {
                    r["kind"] == "ClusterRole"
                        && r["name"] == SANDBOX_ROLE
                        && r["apiGroup"] == "rbac.authorization.k8s.io"
                });
                if !labelled || !right_role {
                    return Err("forbidden: denied by the admission policy: lifeboat binds only lifeboat-sandbox, only in its verification namespaces".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_spec(res: &Resource, obj: &Value) -> Result<(), String> {
        let need = |path: &[&str]| -> Result<(), String> {
            let mut v = &obj["spec"];
            for p in path {
                v = &v[*p];
            }
            if v.is_null() {
                Err(format!("spec.{} is required", path.join(".")))
            } else {
                Ok(())
            }
        };
        match res.kind {
            "VolumeSnapshot" => {
                need(&["source", "persistentVolumeClaimName"])?;
                need(&["volumeSnapshotClassName"])
            }
            "PersistentVolumeClaim" => {
                need(&["accessModes"])?;
                need(&["resources", "requests", "storage"])?;
                if let Some(ds) = obj["spec"].get("dataSource") {
                    if ds["kind"] != "VolumeSnapshot" || ds["apiGroup"] != "snapshot.storage.k8s.io"
                    {
                        return Err(
                            "spec.dataSource must be a snapshot.storage.k8s.io VolumeSnapshot"
                                .into(),
                        );
                    }
                    need(&["dataSource", "name"])?;
                }
                Ok(())
            }
            "Lease" => {
                // coordination.k8s.io/v1: durations are integers, times are MicroTime.
                let spec = &obj["spec"];
                if !spec["leaseDurationSeconds"].is_null() && !spec["leaseDurationSeconds"].is_i64()
                {
                    return Err("spec.leaseDurationSeconds must be an integer".into());
                }
                for t in ["acquireTime", "renewTime"] {
                    if let Some(v) = spec.get(t).filter(|v| !v.is_null()) {
                        let ok = v.as_str().is_some_and(|s| {
                            chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.contains('.')
                        });
                        if !ok {
                            return Err(format!("spec.{t} must be an RFC 3339 MicroTime"));
                        }
                    }
                }
                Ok(())
            }
            "NetworkPolicy" => need(&["podSelector"]),
            "ResourceQuota" => need(&["hard"]),
            "Job" => {
                need(&["template", "spec", "containers"])?;
                match obj["spec"]["template"]["spec"]["restartPolicy"].as_str() {
                    Some("Never" | "OnFailure") => Ok(()),
                    _ => Err("spec.template.spec.restartPolicy must be Never or OnFailure".into()),
                }
            }
            _ => Ok(()),
        }
    }

    /// A Secret the Job's pod needs (volume, envFrom, env) that its namespace lacks.
    fn missing_secret(
        objects: &BTreeMap<(String, String, String), Value>,
        ns: &str,
        job: &Value,
    ) -> Option<String> {
        let pod = &job["spec"]["template"]["spec"];
        let mut wanted: Vec<&str> = Vec::new();
        for v in pod["volumes"].as_array().into_iter().flatten() {
            wanted.extend(v["secret"]["secretName"].as_str());
        }
        for c in pod["containers"].as_array().into_iter().flatten() {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                if e["secretRef"]["optional"] != true {
                    wanted.extend(e["secretRef"]["name"].as_str());
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                let r = &e["valueFrom"]["secretKeyRef"];
                if r["optional"] != true {
                    wanted.extend(r["name"].as_str());
                }
            }
        }
        wanted
            .into_iter()
            .find(|name| !objects.contains_key(&("secrets".into(), ns.into(), name.to_string())))
            .map(str::to_string)
    }

    fn labels_match(obj: &Value, selector: &str) -> bool {
        selector
            .split(',')
            .filter(|s| !s.is_empty())
            .all(|term| match term.split_once('=') {
                Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
                None => !obj["metadata"]["labels"][term].is_null(),
            })
    }
}

#[async_trait]
impl KubeApi for Fake {
    async fn create(&self, res: &Resource, ns: &str, obj: Value) -> Result<Value, KubeError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.record("create", res, ns, &name)?;
        self.admit("create", res, ns, &name, Some(&obj))
            .map_err(|why| invalid("create", res, &name, &why))?;
        if obj["apiVersion"] != res.api_version().as_str() || obj["kind"] != res.kind {
            return Err(invalid(
                "create",
                res,
                &name,
                "apiVersion/kind do not match the resource",
            ));
        }
        if !valid_name(&name) {
            return Err(invalid(
                "create",
                res,
                &name,
                "metadata.name must be a lowercase DNS-1123 name",
            ));
        }
        if let Some(obj_ns) = obj["metadata"]["namespace"].as_str()
            && obj_ns != ns
        {
            return Err(invalid(
                "create",
                res,
                &name,
                "metadata.namespace does not match the request",
            ));
        }
        Self::check_spec(res, &obj).map_err(|r| invalid("create", res, &name, r))?;
        if res.namespaced == ns.is_empty() {
            return Err(invalid(
                "create",
                res,
                &name,
                if res.namespaced {
                    "a namespaced object needs a namespace"
                } else {
                    "a cluster-scoped object takes no namespace (use \"\")"
                },
            ));
        }
        let key = (res.plural.to_string(), ns.to_string(), name.clone());
        let mut objects = lock(&self.objects);
        if res.namespaced
            && !ns.is_empty()
            && objects.keys().any(|(p, _, _)| p == "namespaces")
            && !objects.contains_key(&("namespaces".into(), String::new(), ns.to_string()))
        {
            return Err(invalid(
                "create",
                res,
                &name,
                format!("namespace {ns} not found (404)"),
            ));
        }
        if objects.contains_key(&key) {
            return Err(invalid("create", res, &name, "AlreadyExists (409)"));
        }
        let mut stored = obj;
        stored["metadata"]["namespace"] = json!(ns);
        stored["metadata"]["uid"] = json!(format!("uid-{}", objects.len()));
        stored["metadata"]["resourceVersion"] = json!("1");
        if res.kind == "Job" {
            // The Job controller starts one pod, labelled as the real one labels it.
            let pod = format!("{name}-x7k2p");
            objects.insert(
                ("pods".into(), ns.into(), pod.clone()),
                json!({ "apiVersion": "v1", "kind": "Pod",
                        "metadata": { "name": pod, "namespace": ns, "labels": {
                            "job-name": name, "batch.kubernetes.io/job-name": name } } }),
            );
        }
        objects.insert(key, stored.clone());
        Ok(stored)
    }

    async fn replace(&self, res: &Resource, ns: &str, obj: Value) -> Result<Value, KubeError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.record("update", res, ns, &name)?;
        if obj["apiVersion"] != res.api_version().as_str() || obj["kind"] != res.kind {
            return Err(invalid(
                "update",
                res,
                &name,
                "apiVersion/kind do not match the resource",
            ));
        }
        Self::check_spec(res, &obj).map_err(|r| invalid("update", res, &name, r))?;
        let key = (res.plural.to_string(), ns.to_string(), name.clone());
        let mut objects = lock(&self.objects);
        let Some(current) = objects.get(&key) else {
            return Err(invalid("update", res, &name, "NotFound (404)"));
        };
        let version = current["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if obj["metadata"]["resourceVersion"].as_str() != Some(version.to_string().as_str()) {
            return Err(invalid(
                "update",
                res,
                &name,
                "Conflict (409): the object has been modified; read it again",
            ));
        }
        let mut stored = obj;
        stored["metadata"]["namespace"] = json!(ns);
        stored["metadata"]["uid"] = current["metadata"]["uid"].clone();
        stored["metadata"]["resourceVersion"] = json!((version + 1).to_string());
        objects.insert(key, stored.clone());
        Ok(stored)
    }

    async fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Option<Value>, KubeError> {
        self.record("get", res, ns, name)?;
        let key = (res.plural.to_string(), ns.to_string(), name.to_string());
        let mut objects = lock(&self.objects);
        let missing = match objects.get(&key) {
            None => return Ok(None),
            Some(job) if res.kind == "Job" => Self::missing_secret(&objects, ns, job),
            Some(_) => None,
        };
        let Some(obj) = objects.get_mut(&key) else {
            return Ok(None);
        };
        if let Some(missing) = missing {
            // A real pod would sit in CreateContainerConfigError until the Job's deadline.
            obj["status"] = json!({ "failed": 1, "conditions": [
                { "type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                  "message": format!("pod cannot start: secret \"{missing}\" not found in namespace {ns}") }] });
            return Ok(Some(obj.clone()));
        }
        if res.kind == "Job" {
            let mut gets = lock(&self.gets);
            let n = gets.entry((ns.into(), format!("job/{name}"))).or_default();
            *n += 1;
            match &self.jobs {
                JobRunner::SucceedsAfter(after) if *n >= *after => {
                    obj["status"] = json!({ "succeeded": 1, "conditions": [
                        { "type": "Complete", "status": "True" }] });
                }
                JobRunner::SucceedsAfter(_) => obj["status"] = json!({ "active": 1 }),
                JobRunner::Fails(msg) => {
                    obj["status"] = json!({ "failed": 1, "conditions": [
                        { "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": msg }] });
                }
            }
        }
        if res.kind == "VolumeSnapshot" {
            let mut gets = lock(&self.gets);
            let n = gets.entry((ns.into(), name.into())).or_default();
            *n += 1;
            match &self.snapshotter {
                Snapshotter::ReadyAfter(after, size) if *n >= *after => {
                    obj["status"] = json!({
                        "readyToUse": true,
                        "restoreSize": size,
                        "boundVolumeSnapshotContentName": format!("snapcontent-{name}"),
                        "creationTime": "2026-11-25T00:00:00Z",
                    });
                }
                Snapshotter::ReadyAfter(..) => obj["status"] = json!({ "readyToUse": false }),
                Snapshotter::Fails(msg) => {
                    obj["status"] = json!({ "readyToUse": false, "error": { "message": msg } });
                }
            }
        }
        Ok(Some(obj.clone()))
    }

    async fn delete(&self, res: &Resource, ns: &str, name: &str) -> Result<(), KubeError> {
        self.record("delete", res, ns, name)?;
        self.admit("delete", res, ns, name, None)
            .map_err(|why| invalid("delete", res, name, &why))?;
        let mut objects = lock(&self.objects);
        objects.remove(&(res.plural.into(), ns.into(), name.into()));
        if res.kind == "Namespace" {
            // Deleting a namespace deletes everything in it.
            objects.retain(|(_, obj_ns, _), _| obj_ns != name);
        }
        Ok(())
    }

    async fn list(&self, res: &Resource, ns: &str, labels: &str) -> Result<Vec<Value>, KubeError> {
        self.record("list", res, ns, labels)?;
        Ok(lock(&self.objects)
            .iter()
            .filter(|((p, obj_ns, _), obj)| {
                p == res.plural && obj_ns == ns && Self::labels_match(obj, labels)
            })
            .map(|(_, obj)| obj.clone())
            .collect())
    }

    async fn merge_patch(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        patch: Value,
    ) -> Result<Value, KubeError> {
        self.record("patch", res, ns, name)?;
        if !patch.is_object() || !patch["metadata"]["name"].is_null() {
            return Err(invalid(
                "patch",
                res,
                name,
                "a merge patch is an object and does not rename",
            ));
        }
        let key = (res.plural.to_string(), ns.to_string(), name.to_string());
        let mut objects = lock(&self.objects);
        let Some(current) = objects.get_mut(&key) else {
            return Err(invalid("patch", res, name, "NotFound (404)"));
        };
        merge(current, &patch);
        let version = current["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        current["metadata"]["resourceVersion"] = json!((version + 1).to_string());
        Ok(current.clone())
    }

    async fn evict(&self, ns: &str, pod: &str) -> Result<(), KubeError> {
        self.record("create", &super::POD_EVICTION, ns, pod)?;
        // The pod goes (its controller, not simulated here, would start a new one elsewhere).
        lock(&self.objects).remove(&("pods".into(), ns.into(), pod.into()));
        Ok(())
    }

    async fn logs(&self, ns: &str, pod: &str) -> Result<String, KubeError> {
        self.record("get", &super::POD_LOG, ns, pod)?;
        if lock(&self.objects).contains_key(&("pods".into(), ns.into(), pod.into())) {
            Ok(self.pod_log.clone())
        } else {
            Err(invalid(
                "get",
                &super::POD_LOG,
                pod,
                format!("pods \"{pod}\" not found (404)"),
            ))
        }
    }
}
