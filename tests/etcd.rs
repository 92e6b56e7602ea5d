//! etcd round trips through real etcd members: snapshot a loaded member into the local store,
//! restore it into a new data directory, start a fresh etcd on that directory and prove every
//! key, value and the revision came back; and the ways a backup or restore must refuse.

mod common;

use common::etcd::EtcdServer;
use common::*;
use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};

const KEYS: usize = 3000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn config(env: &Env, endpoints: &str, extra: &str) {
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: etcd\n    endpoints: {endpoints}\n    store: local\n{extra}"
    ));
}

fn value(i: usize) -> Vec<u8> {
    match i % 4 {
        0 => format!("pod {i} — Zoë 東京 ✓").into_bytes(),
        1 => (0..=255u8).cycle().skip(i % 256).take(300).collect(),
        2 => vec![b'x'; 4096 + i],
        _ => Vec::new(),
    }
}

/// Loads `KEYS` keys (text, binary, large and empty values), then overwrites and deletes
/// some and attaches one to a long lease, so revisions and key count differ.
async fn load(endpoint: &str) {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("/registry/pods/ns-{}/pod-{i:05}", i % 7))
        .collect();
    for batch in keys.chunks(100).enumerate() {
        let (b, batch) = batch;
        let ops: Vec<TxnOp> = batch
            .iter()
            .enumerate()
            .map(|(j, k)| TxnOp::put(k.as_str(), value(b * 100 + j), None))
            .collect();
        client.txn(Txn::new().and_then(ops)).await.expect("txn put");
    }
    for k in keys.iter().step_by(15) {
        client
            .put(k.as_str(), "overwritten", None)
            .await
            .expect("put");
    }
    for k in keys.iter().skip(7).step_by(30) {
        client.delete(k.as_str(), None).await.expect("delete");
    }
    let lease = client.lease_grant(3600, None).await.expect("lease");
    client
        .put(
            "/leases/held",
            "while the lease lives",
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await
        .expect("put with lease");
}

/// Revision and every (key, value), in key order (paged: one answer is limited to 4 MiB).
async fn contents(endpoint: &str) -> (i64, Vec<(Vec<u8>, Vec<u8>)>) {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    let mut kvs = Vec::new();
    let mut revision = 0;
    let mut from = vec![0u8];
    loop {
        let mut options = GetOptions::new().with_from_key().with_limit(500);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = client.get(from.clone(), Some(options)).await.expect("get");
        if revision == 0 {
            revision = resp.header().expect("header").revision();
        }
        kvs.extend(
            resp.kvs()
                .iter()
                .map(|kv| (kv.key().to_vec(), kv.value().to_vec())),
        );
        match kvs.last() {
            Some((last, _)) if resp.more() => {
                from = last.clone();
                from.push(0);
            }
            _ => return (revision, kvs),
        }
    }
}

fn manifest(env: &Env, id: &str) -> serde_json::Value {
    let bytes = std::fs::read(env.path(&format!("store/db/{id}/manifest.json")))
        .expect("read manifest.json");
    serde_json::from_slice(&bytes).expect("manifest json")
}

#[test]
fn round_trip_into_a_new_data_dir() {
    let rt = runtime();
    let src = EtcdServer::start();
    rt.block_on(load(&src.endpoint()));
    let (src_revision, src_kvs) = rt.block_on(contents(&src.endpoint()));
    assert!(src_kvs.len() > KEYS - 200, "{} keys", src_kvs.len());

    let env = Env::new();
    config(&env, &format!("[\"{}\"]", src.endpoint()), "");
    env.ok(&["config", "check"]);
    let id = env.backup();
    let snap = &env.snapshots()[0];
    assert_eq!(snap["kind"], "etcd");

    let files = files_under(&env.path("store"));
    assert_eq!(
        files,
        vec![
            format!("db/{id}/data.zst.age"),
            format!("db/{id}/manifest.json")
        ]
    );
    let facts = &manifest(&env, &id)["facts"];
    assert_eq!(facts["revision"], src_revision, "{facts}");
    assert_eq!(facts["keys"], src_kvs.len() as i64, "{facts}");
    assert_eq!(facts["revision_exact"], true, "{facts}");
    assert!(
        facts["etcd_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{facts}"
    );
    assert!(facts["db_size"].as_i64().is_some_and(|n| n > 0), "{facts}");

    // Restore under another member name and a free peer port, then start etcd on it.
    let peer = format!("http://127.0.0.1:{}", servers::free_port());
    env.ok(&[
        "restore",
        &id,
        "--to-dir",
        "restored",
        "--etcd-name",
        "restored-member",
        "--etcd-peer-url",
        &peer,
    ]);
    // Only the data directory is left behind: no snapshot file, no unfinished directory.
    let leftovers: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lifeboat-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(env.path("restored/member/snap/db").is_file());

    drop(src); // the restored member must not need the source
    let dst = EtcdServer::start_on(&env.path("restored"), "restored-member", &peer);
    let (dst_revision, dst_kvs) = rt.block_on(contents(&dst.endpoint()));
    assert_eq!(dst_kvs.len(), src_kvs.len());
    assert!(dst_kvs == src_kvs, "restored keys or values differ");
    assert_eq!(dst_revision, src_revision);
    assert_eq!(facts["revision"], dst_revision);
    let members = dst.etcdctl(&["member", "list"]);
    assert!(
        members.contains("restored-member") && members.contains(&peer),
        "{members}"
    );

    // Never into a directory that holds something.
    let err = env.fails(&["restore", &id, "--to-dir", "restored"]);
    assert!(err.contains("not empty"), "{err}");
    // Nor to a URL; the message says what works.
    let err = env.fails(&["restore", &id, "--target", "http://127.0.0.1:2379"]);
    assert!(err.contains("--to-dir"), "{err}");

    // --to-file gives the raw snapshot, which stock etcdctl accepts (it checks the trailer).
    env.ok(&["restore", &id, "--to-file", "snapshot.db"]);
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "--write-out=json"])
        .arg(env.path("snapshot.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("\"revision\":{src_revision}")));
}

#[test]
fn endpoint_down_is_a_clear_error() {
    let port = servers::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = Env::new();
    config(
        &env,
        &format!("[\"{endpoint}\"]"),
        "    user: root\n    password: \"${ETCD_TEST_PASSWORD}\"\n    timeout: 5s\n",
    );
    let mut env = env;
    env.extra_env
        .push(("ETCD_TEST_PASSWORD".into(), "hunter2-very-secret".into()));
    let mut cmd = env.command(&["backup", "db"]);
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let err = text(&out.stderr);
    assert!(err.contains("cannot be reached"), "{err}");
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("hunter2"), "password leaked: {err}");

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["status"], "failed", "{}", snaps[0]);
    assert!(!snaps[0].to_string().contains("hunter2"));
    let runs = env.ok(&["runs", "list", "--output", "json"]);
    assert!(runs.contains("failed"), "{runs}");
    assert!(!runs.contains("hunter2"), "{runs}");
    assert!(files_under(&env.path("store")).is_empty());
}

#[test]
fn bad_etcd_config_is_rejected_at_load() {
    let env = Env::new();
    config(&env, "[\"https://etcd-0:2379\"]", "");
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("sources[0].endpoints[0]"), "{err}");
    assert!(err.contains("ca_file"), "{err}");
    config(&env, "[]", "");
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("sources[0].endpoints"), "{err}");
    config(&env, "[\"etcd-0:2379\"]", "    tlsx: {}\n");
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("tlsx"), "{err}");
}
