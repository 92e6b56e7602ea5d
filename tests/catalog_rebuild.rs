//! After a disaster the catalog database may be gone and the bucket is all that is left:
//! `lifeboat catalog rebuild` reproduces the snapshot list from the manifests alone.

mod common;

use common::*;

fn comparable(snaps: &[serde_json::Value]) -> Vec<serde_json::Value> {
    snaps
        .iter()
        .filter(|s| s["status"] == "complete")
        .cloned()
        .collect()
}

#[test]
fn rebuild_from_local_and_s3_stores() {
    let src = PgServer::start();
    src.create_db("app");
    src.psql("app", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;");
    let moto = MotoServer::start();
    moto.create_bucket("rebuild-test");
    let env = Env::new();
    let stores = format!(
        "  local: {{ url: \"file://./store\" }}\n  s3: {{ url: \"s3://rebuild-test/x/y\", region: us-east-1, endpoint: \"{}\" }}",
        moto.endpoint()
    );
    // Two sources, one per store.
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\nstores:\n{stores}\nencryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - {{ name: db, kind: postgres, url: \"{u}\", store: local }}\n  - {{ name: db2, kind: postgres, url: \"{u}\", store: s3 }}\n",
        u = src.url("app")
    ));
    for _ in 0..3 {
        env.ok(&["backup", "db"]);
        env.ok(&["backup", "db2"]);
    }
    // A failed run is in the catalog but not in any store.
    src.psql("postgres", "ALTER DATABASE app ALLOW_CONNECTIONS false");
    env.fails(&["backup", "db"]);
    src.psql("postgres", "ALTER DATABASE app ALLOW_CONNECTIONS true");
    let before = env.snapshots();
    assert_eq!(before.len(), 7);

    // Disaster: the catalog is gone.
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.path(f));
    }
    assert!(env.snapshots().is_empty());
    let out = env.ok(&["catalog", "rebuild"]);
    assert!(out.contains("6 snapshot(s)"), "{out}");
    let after = env.snapshots();
    assert_eq!(comparable(&before), after);

    // Rebuilding again is idempotent, and restore works from the rebuilt catalog.
    env.ok(&["catalog", "rebuild"]);
    assert_eq!(env.snapshots(), after);
    let id = after.last().unwrap()["id"].as_str().unwrap().to_string();
    src.create_db("restored");
    env.ok(&["restore", &id, "--target", &src.url("restored")]);
    assert_eq!(src.psql("restored", "SELECT count(*) FROM t"), "1000");
}

#[test]
fn restore_without_any_catalog_finds_the_snapshot_in_the_store() {
    let src = PgServer::start();
    src.create_db("app");
    src.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (42);");
    let env = Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("app"),
        "local",
        "  local: { url: \"file://./store\" }",
    );
    let id = env.backup();
    std::fs::remove_file(env.path("catalog.db")).unwrap();
    src.create_db("restored");
    env.ok(&["restore", &id, "--target", &src.url("restored")]);
    assert_eq!(src.psql("restored", "SELECT id FROM t"), "42");
}
