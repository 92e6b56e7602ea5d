//! `lifeboat verify`: snapshots made by real servers restore into local sandboxes and pass
//! their checks; tampered facts and corrupt objects fail (and are recorded); sandboxes are
//! torn down after failures, timeouts and SIGINT; the Kubernetes sandbox against the fake.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::etcd::EtcdServer;
use common::redis::RedisServer;
use common::*;
use serde_json::Value;

/// A TMPDIR for the sandboxes of one test (traversable by `postgres`), so leftovers of this
/// test alone can be checked.
fn sandbox_tmp(env: &mut Env) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-vt-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.extra_env
        .push(("TMPDIR".into(), dir.path().display().to_string()));
    dir
}

/// Processes whose command line mentions `path`.
fn processes_under(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .chars()
            .all(|c| c.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

fn assert_torn_down(tmp: &Path) {
    wait_until("sandbox processes to exit", Duration::from_secs(20), || {
        processes_under(tmp).is_empty()
    });
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.is_empty(),
        "sandbox leftovers in {}: {left:?}",
        tmp.display()
    );
}

fn verify_json(env: &Env, args: &[&str]) -> (bool, Value) {
    let mut full = vec!["verify"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--output", "json"]);
    let out = env.run(&full);
    let stdout = text(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}):\nstdout: {stdout}\nstderr: {}",
            text(&out.stderr)
        )
    });
    assert_eq!(
        out.status.success(),
        report["status"] == "passed",
        "exit status must follow the verdict: {report:#}"
    );
    (out.status.success(), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn manifest_path(env: &Env, source: &str, id: &str) -> PathBuf {
    env.path(&format!("store/{source}/{id}/manifest.json"))
}

fn edit_manifest(env: &Env, source: &str, id: &str, f: impl FnOnce(&mut Value)) {
    let path = manifest_path(env, source, id);
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn pg_small_dataset(pg: &PgServer) {
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 500) g;
         CREATE SCHEMA billing;
         CREATE TABLE billing.orders (id int PRIMARY KEY, customer int REFERENCES customers, amount numeric);
         INSERT INTO billing.orders SELECT g, 1 + g % 500, g / 10.0 FROM generate_series(1, 3000) g;
         CREATE TABLE empty_one (x int);",
    );
}

fn pg_config(env: &Env, pg: &PgServer) {
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: postgres\n    url: \"{}\"\n    store: local\n    \
         verify:\n      timeout: 10m\n      checks:\n        \
         - {{ name: orders exist, sql: \"SELECT count(*) FROM billing.orders\", expect: \"> 0\" }}\n        \
         - {{ name: exact customers, sql: \"SELECT count(*) FROM customers\", expect: 500 }}\n        \
         - {{ name: three rows, sql: \"SELECT id FROM customers ORDER BY id LIMIT 3\", expect_rows: 3 }}\n        \
         - {{ name: target in env, command: [\"sh\", \"-c\", \"case $LIFEBOAT_TARGET in postgres://*) exit 0;; esac; exit 1\"] }}\n",
        pg.url("app")
    ));
}

#[test]
fn postgres_verify_passes_tampered_facts_and_corrupt_objects_fail() {
    let pg = PgServer::start();
    pg_small_dataset(&pg);
    let mut env = Env::new();
    let tmp = sandbox_tmp(&mut env);
    pg_config(&env, &pg);
    let id = env.backup();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest_path(&env, "db", &id)).unwrap()).unwrap();
    assert_eq!(
        manifest["facts"]["tables"]["billing.orders"], 3000,
        "{manifest:#}"
    );
    assert_eq!(manifest["facts"]["tables"]["public.empty_one"], 0);

    let (ok, report) = verify_json(&env, &["db"]);
    assert!(ok, "{report:#}");
    assert_eq!(report["snapshot_id"], id.as_str());
    assert!(report["restore_ms"].as_u64().is_some());
    assert_eq!(check(&report, "rows billing.orders")["passed"], true);
    assert_eq!(check(&report, "tables")["passed"], true);
    assert_eq!(check(&report, "orders exist")["passed"], true);
    assert_eq!(check(&report, "exact customers")["passed"], true);
    assert_eq!(check(&report, "three rows")["passed"], true);
    assert_eq!(check(&report, "target in env")["passed"], true);
    assert_torn_down(tmp.path());

    // A source that "silently lost rows": the recorded facts claim more than the dump holds.
    edit_manifest(&env, "db", &id, |m| {
        m["facts"]["tables"]["billing.orders"] = 3001.into();
        m["facts"]["tables"]["public.dropped_table"] = 7.into();
    });
    let (ok, report) = verify_json(&env, &[&id]);
    assert!(!ok);
    let orders = check(&report, "rows billing.orders");
    assert_eq!(orders["passed"], false);
    assert!(
        orders["detail"]
            .as_str()
            .unwrap()
            .contains("billing.orders: 3000 after restore, 3001 recorded"),
        "{orders}"
    );
    let tables = check(&report, "tables");
    assert!(
        tables["detail"]
            .as_str()
            .unwrap()
            .contains("public.dropped_table"),
        "{tables}"
    );
    assert!(report["error"].as_str().unwrap().contains("billing.orders"));
    assert_torn_down(tmp.path());

    // A corrupt data object (same size, one byte flipped): recorded as a failed verification.
    let data = env.path(&format!("store/db/{id}/data.zst.age"));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let (ok, report) = verify_json(&env, &[&id]);
    assert!(!ok);
    assert!(
        report["error"].as_str().unwrap().contains("corrupt"),
        "{report:#}"
    );
    assert_torn_down(tmp.path());

    let list: Value =
        serde_json::from_str(&env.ok(&["verifications", "list", "db", "--output", "json"]))
            .unwrap();
    let statuses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["passed", "failed", "failed"]);
    assert_eq!(list[0]["sandbox"], "local");
    assert!(list[0]["restore_ms"].as_i64().is_some());
    assert!(list[2]["error"].as_str().unwrap().contains("corrupt"));
    let table = env.ok(&["verifications", "list"]);
    assert!(
        table.contains("passed") && table.contains("failed"),
        "{table}"
    );
}

#[test]
fn sandbox_is_torn_down_after_timeout_and_sigint() {
    let pg = PgServer::start();
    pg_small_dataset(&pg);
    let mut env = Env::new();
    let tmp = sandbox_tmp(&mut env);
    pg_config(&env, &pg);
    let id = env.backup();

    // A check that outlasts the timeout, so it fires with the sandbox server up however
    // fast the restore is.
    let config = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        config.replacen(
            "checks:\n",
            "checks:\n        - { name: slow, command: [\"sleep\", \"60\"] }\n",
            1,
        ),
    )
    .unwrap();
    let (ok, report) = verify_json(&env, &["db", "--timeout", "3s"]);
    std::fs::write(env.path("lifeboat.yaml"), config).unwrap();
    assert!(!ok);
    assert!(
        report["error"].as_str().unwrap().contains("timed out"),
        "{report:#}"
    );
    assert_torn_down(tmp.path());

    // SIGINT once the sandbox PostgreSQL is up.
    let mut child = env
        .command(&["verify", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the sandbox postgres", Duration::from_secs(120), || {
        processes_under(tmp.path())
            .iter()
            .any(|p| p.contains("postgres") && p.contains(" -D "))
    });
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(!exit.success());
    assert_torn_down(tmp.path());
    let list: Value =
        serde_json::from_str(&env.ok(&["verifications", "list", "--output", "json"])).unwrap();
    let last = list.as_array().unwrap().last().unwrap();
    assert_eq!(last["status"], "failed");
    assert!(
        last["error"].as_str().unwrap().contains("interrupted"),
        "{last}"
    );

    // kill -9 leaves the sandbox behind; the next verification sweeps it.
    let mut child = env
        .command(&["verify", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the sandbox postgres", Duration::from_secs(120), || {
        processes_under(tmp.path())
            .iter()
            .any(|p| p.contains("postgres") && p.contains(" -D "))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !processes_under(tmp.path()).is_empty(),
        "postgres outlives a SIGKILLed lifeboat"
    );
    // The killed verification was a run with a heartbeat: settlement records it failed
    // instead of leaving it `running` forever.
    env.ok(&["catalog", "settle"]);
    let list: Value =
        serde_json::from_str(&env.ok(&["verifications", "list", "--output", "json"])).unwrap();
    let killed = list.as_array().unwrap().last().unwrap();
    assert_eq!(killed["status"], "failed", "{killed}");
    assert!(
        killed["error"].as_str().unwrap().contains("process died"),
        "{killed}"
    );
    let (ok, report) = verify_json(&env, &[&id]);
    assert!(ok, "{report:#}");
    assert_torn_down(tmp.path());
}

#[test]
fn redis_verify_passes_and_a_wrong_key_count_fails() {
    let src = RedisServer::start(&[]);
    for db in ["0", "3"] {
        let mut c = src.client().unwrap();
        c.cmd(&["SELECT", db]).unwrap();
        for i in 0..50 {
            c.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]).unwrap();
        }
    }
    let mut env = Env::new();
    let tmp = sandbox_tmp(&mut env);
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: redis\n    url: \"{}\"\n    store: local\n    \
         verify:\n      checks:\n        - {{ name: dbsize, redis: [DBSIZE], expect: 50 }}\n",
        src.url()
    ));
    let id = env.backup();
    let (ok, report) = verify_json(&env, &["db"]);
    assert!(ok, "{report:#}");
    assert_eq!(check(&report, "keys db3")["passed"], true);
    assert_eq!(check(&report, "sampled keys readable")["passed"], true);
    assert_eq!(check(&report, "dbsize")["passed"], true);
    assert_torn_down(tmp.path());

    edit_manifest(&env, "db", &id, |m| m["facts"]["keys"]["db3"] = 49.into());
    let (ok, report) = verify_json(&env, &[&id]);
    assert!(!ok);
    let keys = check(&report, "keys db3");
    assert!(
        keys["detail"]
            .as_str()
            .unwrap()
            .contains("db3: 50 after restore, 49 recorded"),
        "{keys}"
    );
    assert_torn_down(tmp.path());
}

#[test]
fn etcd_verify_passes() {
    let src = EtcdServer::start();
    for i in 0..20 {
        src.etcdctl(&["put", &format!("/registry/k{i}"), "v"]);
    }
    let mut env = Env::new();
    let tmp = sandbox_tmp(&mut env);
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: etcd\n    endpoints: [\"{}\"]\n    store: local\n",
        src.endpoint()
    ));
    let id = env.backup();
    let (ok, report) = verify_json(&env, &["db"]);
    assert!(ok, "{report:#}");
    assert_eq!(check(&report, "revision")["passed"], true);
    assert_eq!(check(&report, "keys")["passed"], true);
    assert!(
        check(&report, "keys")["detail"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    assert_torn_down(tmp.path());

    edit_manifest(&env, "db", &id, |m| {
        m["facts"]["keys"] = 21.into();
        m["facts"]["revision_exact"] = true.into();
    });
    let (ok, report) = verify_json(&env, &[&id]);
    assert!(!ok);
    assert!(
        check(&report, "keys")["detail"]
            .as_str()
            .unwrap()
            .contains("21 recorded")
    );
}

#[test]
fn files_and_command_verify() {
    let mut env = Env::new();
    let tmp = sandbox_tmp(&mut env);
    std::fs::create_dir_all(env.path("data/sub")).unwrap();
    std::fs::write(env.path("data/a.txt"), "hello").unwrap();
    std::fs::write(env.path("data/sub/b.bin"), vec![7u8; 10_000]).unwrap();
    env.write_config(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: { url: \"file://./store\" }\n\
         encryption:\n  recipients: [\"{recipient}\"]\n  identity_file: ./age.key\n\
         sources:\n\
         \x20 - name: tree\n    kind: files\n    path: ./data\n    store: local\n    \
         verify:\n      checks:\n        - { name: has a.txt, command: [\"sh\", \"-c\", \"cat $LIFEBOAT_TARGET/a.txt\"], expect: hello }\n\
         \x20 - name: cmd\n    kind: command\n    argv: [\"sh\", \"-c\", \"printf 'line1\\nline2\\n'\"]\n    \
         restore_argv: [\"sh\", \"-c\", \"cat > $LIFEBOAT_TARGET/restored.txt\"]\n    store: local\n    \
         verify:\n      checks:\n        - { name: two lines, command: [\"sh\", \"-c\", \"wc -l < $LIFEBOAT_TARGET/restored.txt\"], expect: 2 }\n\
         \x20 - name: lossy\n    kind: command\n    argv: [\"sh\", \"-c\", \"printf 'line1\\nline2\\n'\"]\n    \
         restore_argv: [\"sh\", \"-c\", \"head -n 1 > $LIFEBOAT_TARGET/restored.txt\"]\n    store: local\n    \
         verify:\n      checks:\n        - { name: two lines, command: [\"sh\", \"-c\", \"wc -l < $LIFEBOAT_TARGET/restored.txt\"], expect: 2 }\n",
    );
    env.ok(&["backup", "tree"]);
    env.ok(&["backup", "cmd"]);
    env.ok(&["backup", "lossy"]);
    let tree_id = env.snapshots()[0]["id"].as_str().unwrap().to_string();

    let (ok, report) = verify_json(&env, &["tree"]);
    assert!(ok, "{report:#}");
    for name in ["files", "bytes", "tree hash", "has a.txt"] {
        assert_eq!(check(&report, name)["passed"], true, "{name}: {report:#}");
    }
    let (ok, report) = verify_json(&env, &["cmd"]);
    assert!(ok, "{report:#}");
    let (ok, report) = verify_json(&env, &["lossy"]);
    assert!(!ok);
    assert!(
        check(&report, "two lines")["detail"]
            .as_str()
            .unwrap()
            .contains("expected = 2")
    );
    assert_torn_down(tmp.path());

    edit_manifest(&env, "tree", &tree_id, |m| m["facts"]["files"] = 3.into());
    let (ok, report) = verify_json(&env, &[&tree_id]);
    assert!(!ok);
    assert!(
        check(&report, "files")["detail"]
            .as_str()
            .unwrap()
            .contains("2 after restore, 3 recorded")
    );

    // Fail closed: a current manifest without facts (`facts: {}`) does not verify.
    edit_manifest(&env, "tree", &tree_id, |m| {
        m["facts"] = serde_json::json!({})
    });
    let (ok, report) = verify_json(&env, &[&tree_id]);
    assert!(!ok);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("records no facts"),
        "{report:#}"
    );
    // ... nor one lacking some of them.
    edit_manifest(&env, "tree", &tree_id, |m| {
        m["facts"] = serde_json::json!({"files": 2})
    });
    let (ok, report) = verify_json(&env, &[&tree_id]);
    assert!(!ok);
    assert_eq!(check(&report, "tree hash")["passed"], false, "{report:#}");

    // Old snapshots (format v1) without facts still verify on what can be checked.
    edit_manifest(&env, "tree", &tree_id, |m| {
        m["facts"] = serde_json::json!({});
        m["format"] = "lifeboat.snapshot/v1".into();
    });
    // ... as the catalog knows them too (it would have recorded them so).
    env.ok(&["catalog", "rebuild"]);
    let (ok, report) = verify_json(&env, &[&tree_id]);
    assert!(ok, "{report:#}");
    assert!(
        check(&report, "files")["detail"]
            .as_str()
            .unwrap()
            .starts_with("skipped")
    );

    let err = env.fails(&["verify", "nope"]);
    assert!(err.contains("neither a source"), "{err}");
}

mod kubernetes {
    use std::sync::Arc;

    use lifeboat::config::KubernetesConfig;
    use lifeboat::kube::fake::{Fake, JobRunner};
    use lifeboat::kube::{JOB, KubeApi, NAMESPACE, NETWORK_POLICY, RESOURCE_QUOTA};
    use lifeboat::ops::verify::sandbox::kubernetes::{self, Bundle};
    use serde_json::json;

    fn cfg() -> KubernetesConfig {
        serde_yaml::from_str(
            "{ image: \"ghcr.io/acme/lifeboat:1\", ttl: 1h, cpu: \"1\", memory: 2Gi }",
        )
        .unwrap()
    }

    fn bundle() -> Bundle {
        Bundle {
            config_yaml: "catalog: \"postgres://lifeboat:${CATALOG_PASSWORD}@db/lifeboat\"\n"
                .into(),
            identity: Some("AGE-SECRET-KEY-1TEST\n".into()),
            env: [("CATALOG_PASSWORD".to_string(), "s3cret-pw".to_string())].into(),
        }
    }

    #[tokio::test]
    async fn scratch_namespace_is_isolated_and_deleted() {
        let fake = Arc::new(Fake::default());
        let now = chrono::Utc::now();
        let checks = kubernetes::verify(
            fake.clone(),
            &cfg(),
            "verify-20261125T111622.123Z-9f3a",
            "20261125T101622.123Z-1234",
            &bundle(),
            now,
        )
        .await
        .unwrap()
        .checks;
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        let ns = "lifeboat-verify-20261125t111622-123z-9f3a";
        let created: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.verb == "create")
            .map(|c| (c.kind, c.namespace))
            .collect();
        assert_eq!(
            created,
            [
                ("Namespace", String::new()),
                ("RoleBinding", ns.to_string()),
                ("NetworkPolicy", ns.to_string()),
                ("ResourceQuota", ns.to_string()),
                ("Secret", ns.to_string()),
                ("Secret", ns.to_string()),
                ("Job", ns.to_string()),
            ]
        );
        // Deleted afterwards, with everything in it.
        assert!(fake.object(&NAMESPACE, "", ns).is_none());
        assert!(fake.objects_of(&JOB, ns).is_empty());
        assert!(
            fake.calls()
                .iter()
                .any(|c| c.verb == "delete" && c.kind == "Namespace" && c.name == ns)
        );

        // What was created: labels, deny-all policy, quota, the Job's config, identity and
        // environment as Secrets inside the namespace, a Job without API credentials.
        let kubernetes::Objects {
            namespace,
            binding,
            policy,
            quota,
            files,
            env,
            job,
        } = kubernetes::objects(&cfg(), ns, "20261125T101622.123Z-1234", &bundle(), now);
        let expires = namespace["metadata"]["labels"]["lifeboat.dev/expires"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap();
        assert_eq!(expires, now.timestamp() + 3600);
        assert_eq!(
            namespace["metadata"]["labels"]["lifeboat.dev/role"],
            "verify-sandbox"
        );
        // The sandbox role, bound to lifeboat's service account in this namespace only.
        assert_eq!(binding["metadata"]["namespace"], ns);
        assert_eq!(binding["roleRef"]["name"], "lifeboat-sandbox");
        assert_eq!(
            binding["subjects"],
            json!([{ "kind": "ServiceAccount", "name": "lifeboat", "namespace": "lifeboat" }])
        );
        assert_eq!(policy["spec"]["podSelector"], json!({}));
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(policy["spec"]["egress"], json!([]));
        assert_eq!(quota["spec"]["hard"]["limits.memory"], "2Gi");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], "ghcr.io/acme/lifeboat:1");
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(
            pod["containers"][0]["args"],
            json!([
                "--catalog",
                "sqlite:///tmp/lifeboat-catalog.db",
                "--log-format",
                "json",
                "verify",
                "20261125T101622.123Z-1234",
                "--sandbox",
                "local",
                "--output",
                "json",
                "--identity",
                "/etc/lifeboat/identity"
            ])
        );
        assert_eq!(files["stringData"]["lifeboat.yaml"], bundle().config_yaml);
        assert_eq!(files["stringData"]["identity"], "AGE-SECRET-KEY-1TEST\n");
        assert_eq!(env["stringData"]["CATALOG_PASSWORD"], "s3cret-pw");
        assert_eq!(
            pod["containers"][0]["envFrom"][0]["secretRef"]["name"],
            env["metadata"]["name"]
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["containers"][0]["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(pod["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(
            pod["volumes"][1]["secret"]["secretName"],
            files["metadata"]["name"]
        );
    }

    #[tokio::test]
    async fn a_job_whose_secrets_are_missing_never_passes() {
        // The contract fake fails a Job whose pod needs a Secret its namespace lacks (a real
        // pod would never start): the sandbox must bring its own.
        let fake = Arc::new(Fake::default());
        let now = chrono::Utc::now();
        let mut o = kubernetes::objects(&cfg(), "lifeboat-verify-m1", "s1", &bundle(), now);
        fake.create(&NAMESPACE, "", o.namespace.take())
            .await
            .unwrap();
        fake.create(
            &lifeboat::kube::ROLE_BINDING,
            "lifeboat-verify-m1",
            o.binding.take(),
        )
        .await
        .unwrap();
        fake.create(&JOB, "lifeboat-verify-m1", o.job.take())
            .await
            .unwrap();
        let job = fake
            .get(&JOB, "lifeboat-verify-m1", "restore")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job["status"]["failed"], 1, "{job}");
        assert!(
            job["status"]["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("secret \"lifeboat-files\" not found"),
            "{job}"
        );
    }

    /// Runs, for real, what the sandbox Job's container runs (a fresh throwaway catalog, so
    /// the snapshot must be found in the store); returns its log as the pod would show it.
    /// The bundle `lifeboat verify --sandbox kubernetes` would send for this env's config:
    /// the config cut down to the source (least privilege), which must still verify for real.
    fn env_bundle(env: &super::Env) -> Bundle {
        let origin = lifeboat::config::Origin {
            text: std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap(),
            vars: Default::default(),
        };
        let job = lifeboat::config::job::for_verification(
            &origin,
            "db",
            &[],
            "sqlite:///tmp/lifeboat-catalog.db",
        )
        .unwrap();
        assert!(!job.text.contains("./catalog.db"), "{}", job.text);
        Bundle {
            config_yaml: job.text,
            identity: Some(std::fs::read_to_string(env.path("age.key")).unwrap()),
            env: Default::default(),
        }
    }

    /// Runs, for real, what the sandbox Job's container runs, as the pod would: its Secrets
    /// materialized as the mounted files and environment, a fresh throwaway catalog (so the
    /// snapshot must be found in the store); returns its log as the pod would show it.
    fn run_job_container(env: &super::Env, id: &str) -> String {
        let o = kubernetes::objects(&cfg(), "ns", id, &env_bundle(env), chrono::Utc::now());
        let mount = env.path("etc-lifeboat");
        std::fs::create_dir_all(&mount).unwrap();
        for (name, text) in o.files["stringData"].as_object().unwrap() {
            std::fs::write(mount.join(name), text.as_str().unwrap()).unwrap();
        }
        let container = &o.job["spec"]["template"]["spec"]["containers"][0];
        let mount_at = container["volumeMounts"][1]["mountPath"].as_str().unwrap();
        let local = |a: &str| a.replace(mount_at, &mount.display().to_string());
        let catalog = format!("sqlite://{}", env.path("job-catalog.db").display());
        let mut args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| local(a.as_str().unwrap()))
            .collect();
        let at = args.iter().position(|a| a == "--catalog").unwrap();
        args[at + 1] = catalog;
        // `Env::command` already passes `--log-format json`.
        let at = args.iter().position(|a| a == "--log-format").unwrap();
        args.drain(at..at + 2);
        // The config as mounted; the store's `file://./store` resolves in the env's directory.
        std::fs::remove_file(env.path("age.key")).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.command(&args);
        // (TMPDIR stays the test's sandbox directory, to check the teardown.)
        for e in container["env"].as_array().unwrap() {
            if e["name"] != "TMPDIR" {
                cmd.env(
                    e["name"].as_str().unwrap(),
                    local(e["value"].as_str().unwrap()),
                );
            }
        }
        for (k, v) in o.env["stringData"].as_object().unwrap() {
            cmd.env(k, v.as_str().unwrap());
        }
        let out = cmd.output().unwrap();
        std::fs::write(
            env.path("age.key"),
            o.files["stringData"]["identity"].as_str().unwrap(),
        )
        .unwrap();
        format!(
            "{}{}{{\"level\":\"INFO\",\"fields\":{{\"message\":\"bye\"}}}}\n",
            super::text(&out.stderr),
            super::text(&out.stdout)
        )
    }

    #[test]
    fn the_jobs_report_from_a_real_inner_verify_becomes_the_verification() {
        let pg = super::PgServer::start();
        super::pg_small_dataset(&pg);
        let mut env = super::Env::new();
        let _tmp = super::sandbox_tmp(&mut env);
        super::pg_config(&env, &pg);
        let id = env.backup();
        let rt = tokio::runtime::Runtime::new().unwrap();

        let log = run_job_container(&env, &id);
        let report = kubernetes::parse_report(&log).unwrap_or_else(|| panic!("no report in {log}"));
        let inner_ms = report.restore_ms.expect("restore_ms");
        let fake = Arc::new(Fake::default().with_pod_log(log));
        let outcome = rt
            .block_on(kubernetes::verify(
                fake.clone(),
                &cfg(),
                "verify-k1",
                &id,
                &env_bundle(&env),
                chrono::Utc::now(),
            ))
            .unwrap();
        assert!(outcome.checks.iter().all(|c| c.passed), "{outcome:?}");
        assert_eq!(outcome.restore_ms, Some(inner_ms));
        for name in [
            "isolated",
            "rows billing.orders",
            "tables",
            "exact customers",
            "restore job",
        ] {
            assert!(
                outcome.checks.iter().any(|c| c.name == name),
                "no {name}: {outcome:?}"
            );
        }
        assert!(
            fake.calls()
                .iter()
                .any(|c| c.verb == "get" && c.kind == "Pod" && c.name == "restore-x7k2p")
        );

        // The source silently lost rows: the inner verify fails, its Job fails, and the
        // failed check (not just "the Job failed") reaches the verification.
        super::edit_manifest(&env, "db", &id, |m| {
            m["facts"]["tables"]["billing.orders"] = 3001.into();
        });
        let log = run_job_container(&env, &id);
        let fake = Arc::new(
            Fake::with_jobs(JobRunner::Fails(
                "Job has reached the specified backoff limit".into(),
            ))
            .with_pod_log(log),
        );
        let outcome = rt
            .block_on(kubernetes::verify(
                fake.clone(),
                &cfg(),
                "verify-k2",
                &id,
                &env_bundle(&env),
                chrono::Utc::now(),
            ))
            .unwrap();
        let orders = outcome
            .checks
            .iter()
            .find(|c| c.name == "rows billing.orders")
            .unwrap_or_else(|| panic!("{outcome:?}"));
        assert!(!orders.passed);
        assert!(
            orders.detail.contains("3000 after restore, 3001 recorded"),
            "{orders:?}"
        );
        let job = outcome
            .checks
            .iter()
            .find(|c| c.name == "restore job")
            .unwrap();
        assert!(
            !job.passed && job.detail.contains("billing.orders"),
            "{job:?}"
        );
        assert!(fake.object(&NAMESPACE, "", "lifeboat-verify-k2").is_none());
    }

    #[tokio::test]
    async fn a_failed_job_fails_the_check_and_still_deletes_the_namespace() {
        let fake = Arc::new(Fake::with_jobs(JobRunner::Fails(
            "pg_restore: error: could not read input".into(),
        )));
        let checks = kubernetes::verify(
            fake.clone(),
            &cfg(),
            "verify-x1",
            "s1",
            &bundle(),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .checks;
        let job = checks.iter().find(|c| c.name == "restore job").unwrap();
        assert!(
            !job.passed && job.detail.contains("could not read input"),
            "{job:?}"
        );
        assert!(fake.object(&NAMESPACE, "", "lifeboat-verify-x1").is_none());
    }

    #[tokio::test]
    async fn sweeper_deletes_only_expired_scratch_namespaces() {
        let fake = Arc::new(Fake::default());
        let now = chrono::Utc::now();
        let ns = |name: &str, expires: i64, role: &str| {
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name,
                "labels": { "lifeboat.dev/role": role, "lifeboat.dev/expires": expires.to_string() } } })
        };
        fake.create(
            &NAMESPACE,
            "",
            ns(
                "lifeboat-verify-old",
                now.timestamp() - 10,
                "verify-sandbox",
            ),
        )
        .await
        .unwrap();
        fake.create(
            &NAMESPACE,
            "",
            ns(
                "lifeboat-verify-new",
                now.timestamp() + 600,
                "verify-sandbox",
            ),
        )
        .await
        .unwrap();
        // Not lifeboat's: created by someone else (the admission policy would refuse lifeboat).
        fake.seed(
            &NAMESPACE,
            "",
            ns("production", now.timestamp() - 10, "other"),
        );
        fake.seed(
            &NETWORK_POLICY,
            "lifeboat-verify-old",
            json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": { "name": "p" }, "spec": { "podSelector": {} } }),
        );
        let deleted = kubernetes::sweep(fake.as_ref(), &cfg(), now).await.unwrap();
        assert_eq!(deleted, ["lifeboat-verify-old"]);
        assert!(fake.object(&NAMESPACE, "", "lifeboat-verify-new").is_some());
        assert!(fake.object(&NAMESPACE, "", "production").is_some());
        assert!(
            fake.objects_of(&NETWORK_POLICY, "lifeboat-verify-old")
                .is_empty()
        );
        // The fake enforces kube::USED and scoping: a namespaced call on a namespace fails.
        assert!(fake.create(&RESOURCE_QUOTA, "", json!({})).await.is_err());
    }

    /// Issue 9 (least privilege): lifeboat can create Jobs and Secrets only in a namespace
    /// it created for a verification and bound the sandbox role in; it cannot bind itself
    /// anything elsewhere (the admission policy of deploy/, as the fake enforces it), nor
    /// delete a namespace that is not a verification sandbox.
    #[tokio::test]
    async fn sandbox_rights_exist_only_in_lifeboat_s_own_verification_namespaces() {
        use lifeboat::kube::{ROLE_BINDING, SECRET};
        let fake = Arc::new(Fake::default());
        fake.seed(
            &NAMESPACE,
            "",
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "kube-system" } }),
        );
        let secret = json!({ "apiVersion": "v1", "kind": "Secret",
                             "metadata": { "name": "x" }, "type": "Opaque" });
        let err = fake
            .create(&SECRET, "kube-system", secret.clone())
            .await
            .expect_err("no Secrets outside a bound sandbox");
        assert!(err.to_string().contains("forbidden"), "{err}");
        let binding = |ns: &str, role: &str| {
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": { "name": "b", "namespace": ns },
                    "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
                    "subjects": [{ "kind": "ServiceAccount", "name": "lifeboat", "namespace": "lifeboat" }] })
        };
        assert!(
            fake.create(
                &ROLE_BINDING,
                "kube-system",
                binding("kube-system", "lifeboat-sandbox")
            )
            .await
            .is_err(),
            "bound the sandbox role in kube-system"
        );
        let unlabelled =
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "mine" } });
        assert!(fake.create(&NAMESPACE, "", unlabelled).await.is_err());
        assert!(fake.delete(&NAMESPACE, "", "kube-system").await.is_err());
        // In its own verification namespace: only the sandbox role, then Secrets work.
        let labelled = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "lifeboat-verify-1", "labels": { "lifeboat.dev/role": "verify-sandbox" } } });
        fake.create(&NAMESPACE, "", labelled)
            .await
            .expect("own namespace");
        assert!(
            fake.create(
                &ROLE_BINDING,
                "lifeboat-verify-1",
                binding("lifeboat-verify-1", "cluster-admin")
            )
            .await
            .is_err(),
            "bound cluster-admin"
        );
        fake.create(
            &ROLE_BINDING,
            "lifeboat-verify-1",
            binding("lifeboat-verify-1", "lifeboat-sandbox"),
        )
        .await
        .expect("bind the sandbox role");
        fake.create(&SECRET, "lifeboat-verify-1", secret)
            .await
            .expect("a Secret in the bound sandbox");
        fake.delete(&NAMESPACE, "", "lifeboat-verify-1")
            .await
            .expect("delete own namespace");
    }
}

/// Rows written while the backup runs: the recorded counts are those of the dump's own
/// snapshot, so verification still passes with exact counts.
#[test]
fn row_counts_are_exact_under_concurrent_writes() {
    let pg = PgServer::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE events (id bigserial PRIMARY KEY, payload text);
         INSERT INTO events (payload) SELECT md5(g::text) FROM generate_series(1, 300000) g;",
    );
    let mut env = Env::new();
    let _tmp = sandbox_tmp(&mut env);
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: postgres\n    url: \"{}\"\n    store: local\n",
        pg.url("app")
    ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let psql = pg.bin("psql");
        let port = pg.port().to_string();
        std::thread::spawn(move || {
            let mut batches = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let ok = std::process::Command::new(&psql)
                    .args([
                        "-X",
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port,
                        "-U",
                        "postgres",
                        "-d",
                        "app",
                    ])
                    .args([
                        "-c",
                        "INSERT INTO events (payload) SELECT 'late' FROM generate_series(1, 100)",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "concurrent insert failed");
                batches += 1;
            }
            batches
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let id = env.backup();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let batches = writer.join().unwrap();
    assert!(batches > 1, "the writer ran during the backup");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest_path(&env, "db", &id)).unwrap()).unwrap();
    let recorded = manifest["facts"]["tables"]["public.events"]
        .as_i64()
        .unwrap();
    let now: i64 = pg
        .psql("app", "SELECT count(*) FROM events")
        .parse()
        .unwrap();
    assert!(
        recorded >= 300_000 && recorded < now,
        "recorded {recorded}, now {now}"
    );
    let (ok, report) = verify_json(&env, &[&id]);
    assert!(ok, "{report:#}");
    assert_eq!(check(&report, "rows public.events")["passed"], true);
}
