//! Cross-region copies: every committed snapshot copied to each `copies:` store, verified by
//! reading it back, resumable after kill -9, restorable from any location.

mod common;

use common::*;

fn setup(moto: &MotoServer) -> (PgServer, Env) {
    let src = PgServer::start();
    load_dataset(&src, "orders", 1);
    moto.create_bucket("west-backups");
    let env = Env::new();
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n  dr-local: {{ url: \"file://./dr\", part_size: 5MiB }}\n  \
         s3-west: {{ url: \"s3://west-backups/copies\", region: us-west-2, endpoint: \"{}\", part_size: 5MiB }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: postgres\n    url: \"{}\"\n    store: local\n    copies: [s3-west, dr-local]\n",
        moto.endpoint(),
        src.url("orders")
    ));
    (src, env)
}

#[test]
fn copies_commit_verify_and_restore_from_each_location() {
    let moto = MotoServer::start();
    let (src, env) = setup(&moto);
    let id = env.backup();
    let snap = env.snapshots().pop().unwrap();
    assert_eq!(
        snap["locations"],
        serde_json::json!(["local", "dr-local", "s3-west"])
    );
    assert_eq!(
        moto.list_keys("west-backups", "copies/"),
        vec![
            format!("copies/db/{id}/data.zst.age"),
            format!("copies/db/{id}/manifest.json")
        ]
    );
    assert_eq!(
        std::fs::read(env.path(&format!("store/db/{id}/data.zst.age"))).unwrap(),
        std::fs::read(env.path(&format!("dr/db/{id}/data.zst.age"))).unwrap()
    );
    // A rerun has nothing to do.
    let out = env.ok(&["copy"]);
    assert!(!out.contains("committed"), "{out}");

    // The primary is lost: restore from each copy.
    std::fs::remove_dir_all(env.path("store")).unwrap();
    for store in ["s3-west", "dr-local"] {
        let db = format!("from_{}", store.replace('-', "_"));
        src.create_db(&db);
        env.ok(&["restore", &id, "--store", store, "--target", &src.url(&db)]);
        assert_eq!(
            dataset_checksums(&src, "orders"),
            dataset_checksums(&src, &db)
        );
    }

    // Catalog lost too: rebuild finds the copies and records them as such.
    std::fs::remove_file(env.path("catalog.db")).unwrap();
    env.ok(&["catalog", "rebuild"]);
    let snap = env.snapshots().pop().unwrap();
    assert_eq!(snap["locations"].as_array().unwrap().len(), 2, "{snap}");
}

#[test]
fn kill_mid_copy_then_rerun_completes_and_verifies() {
    let moto = MotoServer::start();
    let (src, env) = setup(&moto);
    let child = env.backup_stalled_at("mid-copy");
    let id = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    kill9(child);
    // The snapshot itself is committed; the interrupted copy is not.
    let snap = &env.snapshots()[0];
    assert_eq!(snap["status"], "complete");
    assert_eq!(snap["locations"], serde_json::json!(["local"]));
    env.ok(&["copy", "db"]);
    let snap = &env.snapshots()[0];
    assert_eq!(
        snap["locations"],
        serde_json::json!(["local", "dr-local", "s3-west"])
    );
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["runs", "list", "--output", "json"])).unwrap();
    assert!(
        runs.iter().any(|r| r["job"] == "copy"
            && r["status"] == "failed"
            && r["error"].as_str().unwrap_or("").contains("died")),
        "{runs:?}"
    );
    assert_eq!(
        files_under(&env.path("dr")),
        vec![
            format!("db/{id}/data.zst.age"),
            format!("db/{id}/manifest.json")
        ]
    );
    src.create_db("r");
    env.ok(&[
        "restore",
        &id,
        "--store",
        "s3-west",
        "--target",
        &src.url("r"),
    ]);
    assert_eq!(
        dataset_checksums(&src, "orders"),
        dataset_checksums(&src, "r")
    );
}

#[test]
fn corrupt_primary_is_not_copied() {
    let mut moto = MotoServer::start();
    let (_src, env) = setup(&moto);
    moto.stop(); // copies to s3-west fail: the backup reports it and exits non-zero
    let err = env.fails(&["backup", "db"]);
    assert!(
        err.contains("s3-west") && err.contains("rerun `lifeboat copy`"),
        "{err}"
    );
    let snap = env.snapshots().pop().unwrap();
    assert_eq!(snap["status"], "complete");
    assert_eq!(snap["locations"], serde_json::json!(["local", "dr-local"]));
    let id = snap["id"].as_str().unwrap().to_string();

    // Corrupt the primary, drop the dr copy: copying again must refuse to spread the damage.
    std::fs::remove_dir_all(env.path("dr")).unwrap();
    std::fs::remove_file(env.path("catalog.db")).unwrap();
    let err = env.fails(&["catalog", "rebuild"]);
    assert!(err.contains("1 store(s) could not be read"), "{err}");
    assert_eq!(env.snapshots().len(), 1);
    let path = env.path(&format!("store/db/{id}/data.zst.age"));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = env.fails(&["copy", "db"]);
    assert!(err.contains("does not match its manifest"), "{err}");
    assert!(files_under(&env.path("dr")).is_empty());
}
