//! Every manifest under deploy/ parses strictly into its `k8s-openapi` type (a key the type
//! does not know fails the test, as `kubectl apply --validate=strict` would), meets the
//! restricted pod security settings, and each Role grants exactly what the code calls at its
//! scope (`lifeboat::kube::USED_*`): nothing cluster-wide runs code, reads Secrets or logs.
//! The CRDs (PrometheusRule, ServiceMonitor) are checked as YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::{admissionregistration, apps, batch, core, networking, policy, rbac};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read deploy dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// (file, document) for every YAML document under deploy/.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", f.display()));
            if v.is_null() {
                continue;
            }
            let v: Value = serde_json::to_value(v).expect("yaml to json");
            docs.push((f.clone(), v));
        }
    }
    assert!(docs.len() >= 15, "found only {} manifests", docs.len());
    docs
}

/// Keys of `orig` that are missing from `back` (the object after a typed round trip).
fn dropped(orig: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => dropped(v, w, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in a.iter().enumerate() {
                match b.get(i) {
                    Some(w) => dropped(v, w, &format!("{path}[{i}]"), out),
                    None => out.push(format!("{path}[{i}]")),
                }
            }
        }
        _ => {}
    }
}

/// Parses `doc` as `T`, failing on type errors and on any key `T` does not have.
fn strict<T: serde::de::DeserializeOwned + serde::Serialize>(file: &Path, doc: &Value) -> T {
    let typed: T = serde_path_to_error::deserialize(doc.clone())
        .unwrap_or_else(|e| panic!("{}: {}: {}", file.display(), e.path(), e.inner()));
    let back = serde_json::to_value(&typed).expect("serialize");
    let mut missing = Vec::new();
    dropped(doc, &back, "", &mut missing);
    assert!(
        missing.is_empty(),
        "{}: unknown fields {missing:?}",
        file.display()
    );
    typed
}

fn check_pod(file: &Path, spec: &core::v1::PodSpec) {
    let f = file.display();
    let psc = spec
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{f}: no pod securityContext"));
    assert_eq!(psc.run_as_non_root, Some(true), "{f}: runAsNonRoot");
    assert!(
        psc.run_as_user.is_some_and(|u| u != 0),
        "{f}: runAsUser must be non-root"
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault"),
        "{f}: pod seccomp"
    );
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("lifeboat"),
        "{f}"
    );
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        let sc = c
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{f}: {}: no securityContext", c.name));
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{f}: {}: readOnlyRootFilesystem",
            c.name
        );
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{f}: {}: allowPrivilegeEscalation",
            c.name
        );
        assert_ne!(sc.privileged, Some(true), "{f}: {}: privileged", c.name);
        let drop = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        assert_eq!(drop, ["ALL"], "{f}: {}: capabilities.drop", c.name);
        let add = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.clone())
            .unwrap_or_default();
        assert!(add.is_empty(), "{f}: {}: capabilities.add {add:?}", c.name);
        // Secrets come by reference, never inline.
        for e in c.env.iter().flatten() {
            let secretish = ["PASSWORD", "TOKEN", "SECRET", "KEY"]
                .iter()
                .any(|s| e.name.contains(s));
            if secretish {
                assert!(
                    e.value.is_none(),
                    "{f}: {}: {} is inline; use secretKeyRef",
                    c.name,
                    e.name
                );
            }
        }
    }
}

/// Verbs granted per (API group, resource).
type Grants = BTreeMap<(String, String), BTreeSet<String>>;

fn rules_of(
    file: &Path,
    rules: &[rbac::v1::PolicyRule],
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in rules {
        // The one named rule: `bind` of the sandbox ClusterRole (so lifeboat can bind it in
        // the namespaces it creates, and bind nothing else).
        let bind_sandbox = r.resources.as_deref() == Some(&["clusterroles".to_string()][..])
            && r.verbs == ["bind"]
            && r.resource_names.as_deref() == Some(&[lifeboat::kube::SANDBOX_ROLE.to_string()][..]);
        assert!(
            (r.resource_names.is_none() || bind_sandbox) && r.non_resource_urls.is_none(),
            "{}",
            file.display()
        );
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                assert!(
                    !g.contains('*') && !res.contains('*'),
                    "{}: wildcard",
                    file.display()
                );
                let e = got.entry((g.clone(), res.clone())).or_default();
                for v in &r.verbs {
                    assert!(!v.contains('*'), "{}: wildcard verb", file.display());
                    e.insert(v.clone());
                }
            }
        }
    }
    got
}

#[test]
fn every_manifest_parses_strictly_and_is_locked_down() {
    let grants = |used: &[(lifeboat::kube::Resource, &[&str])]| -> Grants {
        used.iter()
            .map(|(r, verbs)| {
                (
                    (r.group.to_string(), r.plural.to_string()),
                    verbs.iter().map(|v| v.to_string()).collect(),
                )
            })
            .collect()
    };
    let mut cluster = grants(lifeboat::kube::USED_CLUSTER);
    cluster.insert(
        ("rbac.authorization.k8s.io".into(), "clusterroles".into()),
        ["bind".to_string()].into(),
    );
    // Scope, not just verbs: nothing granted cluster-wide creates pods, Jobs or Secrets or
    // reads pod logs.
    for ((_, res), verbs) in &cluster {
        assert!(
            !["pods", "pods/log", "jobs", "secrets"].contains(&res.as_str()),
            "{res} {verbs:?} must not be granted cluster-wide"
        );
    }
    // The chaos overlay's ClusterRole is nodes only.
    for (r, _) in lifeboat::kube::USED_CHAOS_CLUSTER {
        assert_eq!(
            r.plural, "nodes",
            "only nodes are granted cluster-wide for drills"
        );
    }
    let expected_roles: BTreeMap<(&str, &str), Grants> = [
        (("ClusterRole", "lifeboat"), cluster),
        (
            ("Role", "lifeboat-leader"),
            grants(lifeboat::kube::USED_OWN_NAMESPACE),
        ),
        (
            ("ClusterRole", lifeboat::kube::SANDBOX_ROLE),
            grants(lifeboat::kube::USED_IN_SANDBOX),
        ),
        // Opt-in (deploy/overlays/chaos/, never base): the Kubernetes drill faults.
        (
            ("Role", "lifeboat-chaos"),
            grants(lifeboat::kube::USED_CHAOS_NAMESPACE),
        ),
        (
            ("ClusterRole", "lifeboat-chaos-nodes"),
            grants(lifeboat::kube::USED_CHAOS_CLUSTER),
        ),
        // Opt-in (deploy/overlays/failover-kube/, never base): failover `kube_scale`
        // actions and `kind: kubernetes` probes.
        (
            ("Role", "lifeboat-failover"),
            grants(lifeboat::kube::USED_FAILOVER_NAMESPACE),
        ),
    ]
    .into();
    let mut roles_seen = BTreeSet::new();
    let mut policies = 0;
    let mut kinds = BTreeMap::<String, usize>::new();
    let mut alerts = BTreeSet::new();
    let mut pods = 0;
    for (file, doc) in documents() {
        let f = file.display().to_string();
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{f}: no kind"))
            .to_string();
        *kinds.entry(kind.clone()).or_default() += 1;
        match kind.as_str() {
            "Kustomization" => {
                let dir = file.parent().expect("dir");
                for r in doc["resources"].as_array().expect("resources") {
                    let p = dir.join(r.as_str().expect("resource path"));
                    assert!(p.exists(), "{f}: resource {} does not exist", p.display());
                }
            }
            "Namespace" => {
                let ns: core::v1::Namespace = strict(&file, &doc);
                let labels = ns.metadata.labels.unwrap_or_default();
                assert_eq!(
                    labels
                        .get("pod-security.kubernetes.io/enforce")
                        .map(String::as_str),
                    Some("restricted"),
                    "{f}"
                );
            }
            "ServiceAccount" => drop(strict::<core::v1::ServiceAccount>(&file, &doc)),
            "ConfigMap" => {
                let cm: core::v1::ConfigMap = strict(&file, &doc);
                let text = cm
                    .data
                    .unwrap_or_default()
                    .remove("lifeboat.yaml")
                    .expect("lifeboat.yaml");
                lifeboat::config::Config::parse_with_env(&text, Path::new("configmap"), &|_| {
                    Some("x".into())
                })
                .unwrap_or_else(|e| panic!("{f}: the example config does not load: {e}"));
            }
            "Service" => drop(strict::<core::v1::Service>(&file, &doc)),
            "NetworkPolicy" => {
                let np: networking::v1::NetworkPolicy = strict(&file, &doc);
                let types = np.spec.and_then(|s| s.policy_types).unwrap_or_default();
                assert!(
                    types.contains(&"Ingress".into()) && types.contains(&"Egress".into()),
                    "{f}"
                );
            }
            "PodDisruptionBudget" => drop(strict::<policy::v1::PodDisruptionBudget>(&file, &doc)),
            "Role" | "ClusterRole" => {
                let (name, rules) = if kind == "Role" {
                    let r = strict::<rbac::v1::Role>(&file, &doc);
                    (r.metadata.name, r.rules.unwrap_or_default())
                } else {
                    let r = strict::<rbac::v1::ClusterRole>(&file, &doc);
                    (r.metadata.name, r.rules.unwrap_or_default())
                };
                let name = name.unwrap_or_default();
                assert!(
                    !name.starts_with("lifeboat-chaos")
                        || file.starts_with(deploy_dir().join("overlays").join("chaos")),
                    "{f}: the drill-fault permissions ship only in the opt-in overlays/chaos"
                );
                assert!(
                    name != "lifeboat-failover"
                        || file.starts_with(deploy_dir().join("overlays").join("failover-kube")),
                    "{f}: the failover scale permissions ship only in the opt-in overlays/failover-kube"
                );
                let expected = expected_roles
                    .get(&(kind.as_str(), name.as_str()))
                    .unwrap_or_else(|| panic!("{f}: unexpected {kind} {name}"));
                assert_eq!(
                    &rules_of(&file, &rules),
                    expected,
                    "{f}: {kind} {name} must grant exactly its kube::USED_* list"
                );
                roles_seen.insert((kind.clone(), name));
            }
            "RoleBinding" => {
                let b = strict::<rbac::v1::RoleBinding>(&file, &doc);
                let role = (b.role_ref.kind.as_str(), b.role_ref.name.as_str());
                assert!(
                    role == ("Role", "lifeboat-leader")
                        || (role == ("Role", "lifeboat-chaos")
                            && file.starts_with(deploy_dir().join("overlays").join("chaos")))
                        || (role == ("Role", "lifeboat-failover")
                            && file
                                .starts_with(deploy_dir().join("overlays").join("failover-kube"))),
                    "{f}: the only shipped RoleBindings are the leader's, in lifeboat's namespace, and the opt-in chaos and failover-kube overlays': {role:?}"
                );
            }
            "ClusterRoleBinding" => {
                let b = strict::<rbac::v1::ClusterRoleBinding>(&file, &doc);
                if b.role_ref.name == "lifeboat-chaos-nodes" {
                    assert!(
                        file.starts_with(deploy_dir().join("overlays").join("chaos")),
                        "{f}: node permissions for drills only in the opt-in overlays/chaos"
                    );
                    continue;
                }
                assert_eq!(
                    b.role_ref.name,
                    "lifeboat",
                    "{f}: only ClusterRole lifeboat is bound cluster-wide ({} is bound per verification namespace by lifeboat)",
                    lifeboat::kube::SANDBOX_ROLE
                );
            }
            "ValidatingAdmissionPolicy" => {
                let p = strict::<admissionregistration::v1::ValidatingAdmissionPolicy>(&file, &doc);
                let spec = p.spec.expect("spec");
                let who = serde_json::to_string(&spec.match_conditions).expect("json");
                assert!(
                    who.contains("system:serviceaccount:lifeboat:lifeboat"),
                    "{f}: applies to lifeboat's service account"
                );
                let rules = serde_json::to_string(&spec.validations).expect("json");
                for needle in [
                    "verify-sandbox",
                    lifeboat::kube::SANDBOX_ROLE,
                    "namespaceObject",
                ] {
                    assert!(rules.contains(needle), "{f}: validations name {needle}");
                }
                assert_eq!(spec.failure_policy.as_deref(), Some("Fail"), "{f}");
                policies += 1;
            }
            "ValidatingAdmissionPolicyBinding" => {
                let b = strict::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(
                    &file, &doc,
                );
                let spec = b.spec;
                assert_eq!(spec.policy_name.as_str(), "lifeboat-sandbox-only", "{f}");
                assert_eq!(spec.validation_actions, vec!["Deny".to_string()], "{f}");
            }
            "Deployment" => {
                let d: apps::v1::Deployment = strict(&file, &doc);
                let spec = d.spec;
                assert_eq!(spec.replicas, Some(2), "{f}: two replicas, one leader");
                let pod = spec.template.spec.expect("pod spec");
                let args = pod.containers[0].args.clone().unwrap_or_default();
                assert!(
                    args.first().is_some_and(|a| a == "run") && !args.contains(&"--once".into()),
                    "{f}: {args:?}"
                );
                // /readyz answers within READY_CHECK_TIMEOUT (its checks run at once): the
                // probe must wait longer, or a slow store would unready every replica.
                let probe = pod.containers[0]
                    .readiness_probe
                    .clone()
                    .unwrap_or_else(|| panic!("{f}: no readinessProbe"));
                assert_eq!(
                    probe.http_get.as_ref().map(|h| h.path.as_deref()),
                    Some(Some("/readyz")),
                    "{f}"
                );
                let budget = lifeboat::daemon::http::READY_CHECK_TIMEOUT.as_secs() as i32;
                assert!(
                    probe.timeout_seconds.unwrap_or(1) > budget,
                    "{f}: readinessProbe.timeoutSeconds must be above the {budget}s /readyz takes at most"
                );
                check_pod(&file, &pod);
                pods += 1;
            }
            "CronJob" => {
                let cj: batch::v1::CronJob = strict(&file, &doc);
                let spec = cj.spec;
                assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"), "{f}");
                let pod = spec
                    .job_template
                    .spec
                    .expect("job")
                    .template
                    .spec
                    .expect("pod");
                let args = pod.containers[0].args.clone().unwrap_or_default();
                assert!(args.contains(&"--once".into()), "{f}: {args:?}");
                check_pod(&file, &pod);
                pods += 1;
            }
            "PrometheusRule" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1", "{f}");
                for g in doc["spec"]["groups"].as_array().expect("groups") {
                    assert!(g["name"].is_string(), "{f}");
                    for r in g["rules"].as_array().expect("rules") {
                        let name = r["alert"].as_str().expect("alert name");
                        assert!(
                            r["expr"].as_str().is_some_and(|e| e.contains("lifeboat_")),
                            "{f}: {name}"
                        );
                        assert!(r["labels"]["severity"].is_string(), "{f}: {name}: severity");
                        assert!(
                            r["annotations"]["summary"].is_string(),
                            "{f}: {name}: summary"
                        );
                        let keys: BTreeSet<&str> = r
                            .as_object()
                            .expect("rule")
                            .keys()
                            .map(String::as_str)
                            .collect();
                        assert!(
                            keys.is_subset(
                                &["alert", "expr", "for", "labels", "annotations"].into()
                            ),
                            "{f}: {keys:?}"
                        );
                        alerts.insert(name.to_string());
                    }
                }
            }
            "ServiceMonitor" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1", "{f}");
                let eps = doc["spec"]["endpoints"].as_array().expect("endpoints");
                assert!(
                    eps.iter()
                        .all(|e| e["port"] == "http" && e["path"] == "/metrics"),
                    "{f}"
                );
                assert!(doc["spec"]["selector"]["matchLabels"].is_object(), "{f}");
            }
            other => panic!("{f}: no check for kind {other}; add one to tests/deploy.rs"),
        }
    }
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ConfigMap",
        "NetworkPolicy",
        "Deployment",
        "CronJob",
        "PrometheusRule",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains_key(k), "deploy/ has no {k}: {kinds:?}");
    }
    assert_eq!(pods, 4, "each overlay: a backup and a verify workload");
    assert_eq!(
        roles_seen.len(),
        expected_roles.len(),
        "every role of kube::USED_* is shipped: {roles_seen:?}"
    );
    assert_eq!(policies, 1, "the admission policy is shipped");
    for a in [
        "LifeboatRPOBreached",
        "LifeboatRPOAtRisk",
        "LifeboatBackupFailing",
        "LifeboatVerificationFailing",
        "LifeboatNoLeader",
    ] {
        assert!(alerts.contains(a), "missing alert {a}");
    }
}

#[test]
fn an_unknown_field_is_caught() {
    let doc: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": "x", "nmespace": "typo" }
    });
    let r = std::panic::catch_unwind(|| strict::<core::v1::ServiceAccount>(Path::new("t"), &doc));
    assert!(r.is_err());
}

#[test]
fn dockerfile_runtime_has_the_client_tools_and_runs_as_non_root() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .expect("Dockerfile");
    assert!(
        text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    let stage = |name: &str| {
        text.split("\nFROM ")
            .find(|s| {
                s.lines()
                    .next()
                    .is_some_and(|l| l.ends_with(&format!(" AS {name}")))
            })
            .unwrap_or_else(|| panic!("no stage {name}"))
    };
    let runtime = stage("runtime");
    assert_eq!(
        text.rsplit("\nFROM ").next().map(str::trim),
        Some("runtime"),
        "the default (last) stage is the runtime image"
    );
    let sandbox = stage("sandbox");
    for pkg in ["postgresql ", "redis-server", "etcd-server"] {
        assert!(sandbox.contains(pkg), "sandbox image lacks {pkg}");
    }
    assert_eq!(
        sandbox.lines().rfind(|l| l.starts_with("USER ")),
        Some("USER 65532:65532"),
        "sandbox runs as non-root"
    );
    for pkg in [
        "postgresql-client",
        "redis-tools",
        "etcd-client",
        "ca-certificates",
    ] {
        assert!(runtime.contains(pkg), "runtime image lacks {pkg}");
    }
    assert!(runtime.contains("USER 65532"), "non-root user");
}

/// Every document an overlay deploys: its kustomization's `resources`, recursively.
fn overlay_documents(dir: &Path, out: &mut Vec<(PathBuf, Value)>) {
    let kustomization = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).expect("read kustomization");
    let k: serde_yaml::Value = serde_yaml::from_str(&text).expect("kustomization YAML");
    for r in k["resources"].as_sequence().expect("resources") {
        let p = dir.join(r.as_str().expect("resource path"));
        if p.is_dir() {
            overlay_documents(&p, out);
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read resource");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("YAML");
            if !v.is_null() {
                out.push((p.clone(), serde_json::to_value(v).expect("yaml to json")));
            }
        }
    }
}

/// The daemon image has no database servers (the Dockerfile's `runtime` stage), so what an
/// overlay deploys must run its scheduled verifications in the Kubernetes sandbox, with a
/// sandbox image that is not the workload's own.
#[test]
fn the_shipped_overlays_verify_in_the_kubernetes_sandbox() {
    let overlays = deploy_dir().join("overlays");
    let mut seen = 0;
    for e in std::fs::read_dir(&overlays)
        .expect("read overlays")
        .flatten()
    {
        let dir = e.path();
        if is_addon(&dir) {
            continue;
        }
        let mut docs = Vec::new();
        overlay_documents(&dir, &mut docs);
        let o = dir.display();
        let workload_images: BTreeSet<String> = docs
            .iter()
            .filter(|(_, d)| d["kind"] == "Deployment" || d["kind"] == "CronJob")
            .flat_map(|(_, d)| {
                let pod = if d["kind"] == "CronJob" {
                    &d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                } else {
                    &d["spec"]["template"]["spec"]
                };
                pod["containers"]
                    .as_array()
                    .expect("containers")
                    .iter()
                    .map(|c| c["image"].as_str().expect("image").to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(!workload_images.is_empty(), "{o}: no Deployment or CronJob");
        let configs: Vec<_> = docs
            .iter()
            .filter(|(_, d)| d["kind"] == "ConfigMap")
            .filter_map(|(_, d)| d["data"]["lifeboat.yaml"].as_str())
            .collect();
        assert_eq!(configs.len(), 1, "{o}: one lifeboat.yaml");
        let config =
            lifeboat::config::Config::parse_with_env(configs[0], Path::new("configmap"), &|_| {
                Some("x".into())
            })
            .unwrap_or_else(|e| panic!("{o}: the config does not load: {e}"));
        assert!(
            config
                .sources
                .iter()
                .any(|s| s.verify.as_ref().is_some_and(|v| v.schedule.is_some())),
            "{o}: no source has a verify.schedule, so daemon.verify_sandbox is not exercised"
        );
        assert_eq!(
            config.daemon.verify_sandbox,
            lifeboat::config::VerifySandbox::Kubernetes,
            "{o}: the daemon image has no initdb/redis-server/etcd: set daemon.verify_sandbox: kubernetes"
        );
        let image = config
            .sandbox
            .as_ref()
            .and_then(|s| s.kubernetes.as_ref())
            .map(|k| k.image.clone())
            .unwrap_or_default();
        assert!(
            !image.is_empty() && !workload_images.contains(&image),
            "{o}: sandbox.kubernetes.image must be the sandbox image (`docker build --target sandbox`), not {workload_images:?}: {image:?}"
        );
        seen += 1;
    }
    assert_eq!(seen, 2, "two overlays");
}

/// An opt-in add-on overlay (RBAC of drill faults, of failover scaling): no workloads, not a
/// deployment mode.
fn is_addon(dir: &Path) -> bool {
    dir.file_name()
        .is_some_and(|n| n == "chaos" || n == "failover-kube")
}

/// Issue 9, acceptance 8: in every overlay the workloads are split by job role (`run
/// --jobs`): no backup-role workload mounts or references the age identity Secret (or any
/// volume at the identity's directory), every verify-role one mounts it there and holds no
/// signing key, there is no unfiltered workload beside them, and the roles take different
/// Leases.
#[test]
fn backup_workloads_never_hold_the_age_identity() {
    use lifeboat::policy::schedule::{JobFilter, Role};
    const IDENTITY_SECRET: &str = "lifeboat-age-identity";
    let overlays = deploy_dir().join("overlays");
    let mut seen = 0;
    for e in std::fs::read_dir(&overlays)
        .expect("read overlays")
        .flatten()
    {
        let dir = e.path();
        if is_addon(&dir) {
            continue;
        }
        let mut docs = Vec::new();
        overlay_documents(&dir, &mut docs);
        let o = dir.display();
        let config = docs
            .iter()
            .find_map(|(_, d)| d["data"]["lifeboat.yaml"].as_str())
            .map(|text| {
                lifeboat::config::Config::parse_with_env(text, Path::new("configmap"), &|_| {
                    Some("x".into())
                })
                .unwrap_or_else(|e| panic!("{o}: the config does not load: {e}"))
            })
            .unwrap_or_else(|| panic!("{o}: no lifeboat.yaml"));
        let identity_dir = config
            .encryption
            .identity_file
            .as_ref()
            .and_then(|p| p.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| panic!("{o}: the config sets no encryption.identity_file"));
        let mut leases = BTreeMap::<String, Role>::new();
        for (file, d) in docs
            .iter()
            .filter(|(_, d)| d["kind"] == "Deployment" || d["kind"] == "CronJob")
        {
            let f = format!("{o}: {}", file.display());
            let pod = if d["kind"] == "CronJob" {
                &d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            } else {
                &d["spec"]["template"]["spec"]
            };
            let container = &pod["containers"][0];
            let args: Vec<&str> = container["args"]
                .as_array()
                .expect("args")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let jobs = args
                .iter()
                .position(|a| *a == "--jobs")
                .and_then(|i| args.get(i + 1))
                .unwrap_or_else(|| {
                    panic!("{f}: every workload runs one job role (`run --jobs ...`): {args:?}")
                });
            let role = JobFilter::parse(jobs)
                .unwrap_or_else(|e| panic!("{f}: {e}"))
                .role()
                .unwrap_or_else(|| panic!("{f}: --jobs {jobs} is not one role"));
            let pod_text = serde_json::to_string(pod).expect("json");
            let mounts: Vec<&str> = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["mountPath"].as_str())
                .collect();
            let at_identity = mounts.iter().any(|m| {
                identity_dir == *m
                    || identity_dir.starts_with(&format!("{m}/"))
                    || m.starts_with(&format!("{identity_dir}/"))
            });
            match role {
                Role::Backup => {
                    assert_eq!(
                        jobs, &"backup,copy,prune",
                        "{f}: the backup role does all three"
                    );
                    assert!(
                        !pod_text.contains(IDENTITY_SECRET),
                        "{f}: a backup workload must not mount or reference the Secret {IDENTITY_SECRET}"
                    );
                    assert!(
                        !at_identity,
                        "{f}: a backup workload mounts something at the identity's directory {identity_dir}: {mounts:?}"
                    );
                }
                Role::Verify => {
                    let volume = pod["volumes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|v| v["secret"]["secretName"] == IDENTITY_SECRET)
                        .unwrap_or_else(|| {
                            panic!("{f}: the verify workload needs {IDENTITY_SECRET}")
                        });
                    let name = volume["name"].as_str().expect("volume name");
                    assert!(
                        container["volumeMounts"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|m| m["name"] == name && m["mountPath"] == identity_dir.as_str()),
                        "{f}: the verify workload mounts {IDENTITY_SECRET} at {identity_dir}"
                    );
                    assert!(
                        !pod_text.contains("signing"),
                        "{f}: the verify workload needs no signing key"
                    );
                }
            }
            let lease = lifeboat::leader::lease_name(&config.daemon.leader, Some(role));
            if let Some(other) = leases.insert(lease.clone(), role) {
                assert_eq!(other, role, "{f}: two roles share the Lease {lease}");
            }
        }
        let roles: BTreeSet<&str> = leases.values().map(|r| r.as_str()).collect();
        assert_eq!(
            roles,
            ["backup", "verify"].into(),
            "{o}: one backup and one verify workload: {leases:?}"
        );
        assert_eq!(leases.len(), 2, "{o}: each role its own Lease: {leases:?}");
        seen += 1;
    }
    assert_eq!(seen, 2, "two overlays");
}
