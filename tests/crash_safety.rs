//! kill -9 at each step of a backup: the catalog never shows a complete snapshot that is not
//! restorable, the next backup succeeds, and orphan objects are removed.

mod common;

use common::*;

fn setup(stores: &str, store: &str) -> (PgServer, Env) {
    let src = PgServer::start();
    load_dataset(&src, "orders", 1);
    let env = Env::new();
    env.pg_config("sqlite://./catalog.db", &src.url("orders"), store, stores);
    (src, env)
}

const LOCAL: &str = "  local: { url: \"file://./store\", part_size: 5MiB }";

/// Every complete snapshot in the catalog restores and matches the source.
fn assert_complete_ones_restore(src: &PgServer, env: &Env) {
    for (i, s) in env.snapshots().iter().enumerate() {
        if s["status"] != "complete" {
            continue;
        }
        let db = format!("check{i}");
        src.create_db(&db);
        env.ok(&[
            "restore",
            s["id"].as_str().unwrap(),
            "--target",
            &src.url(&db),
        ]);
        assert_eq!(
            dataset_checksums(src, "orders"),
            dataset_checksums(src, &db)
        );
    }
}

#[test]
fn kill_at_each_step_local_store() {
    let (src, env) = setup(LOCAL, "local");
    for point in ["mid-dump", "mid-upload", "before-manifest"] {
        let child = env.backup_stalled_at(point);
        // While stalled, the snapshot is `running`, never complete.
        let snaps = env.snapshots();
        assert_eq!(snaps.last().unwrap()["status"], "running", "{point}");
        assert!(!files_under(&env.path("store")).is_empty() || point == "mid-dump");
        kill9(child);

        // The next backup settles the crashed run and succeeds.
        let id = env.backup();
        let snaps = env.snapshots();
        let crashed = &snaps[snaps.len() - 2];
        assert_eq!(crashed["status"], "failed", "{point}: {crashed}");
        assert!(
            crashed["error"].as_str().unwrap().contains("died"),
            "{crashed}"
        );
        // Only complete snapshots remain in the store: orphans (and staging files) are gone.
        let files = files_under(&env.path("store"));
        let complete: Vec<String> = snaps
            .iter()
            .filter(|s| s["status"] == "complete")
            .flat_map(|s| {
                let id = s["id"].as_str().unwrap();
                [
                    format!("db/{id}/data.zst.age"),
                    format!("db/{id}/manifest.json"),
                ]
            })
            .collect();
        let mut complete = complete;
        complete.sort();
        assert_eq!(files, complete, "after crash at {point}");
        assert!(files.iter().any(|f| f.contains(&id)));
    }
    assert_complete_ones_restore(&src, &env);
}

#[test]
fn kill_after_manifest_is_recovered_as_complete() {
    let (src, env) = setup(LOCAL, "local");
    let child = env.backup_stalled_at("after-manifest");
    let id = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    kill9(child);
    let out = env.ok(&["catalog", "settle"]);
    assert!(out.contains("1 recorded complete"), "{out}");
    let snaps = env.snapshots();
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["status"], "complete");
    assert_complete_ones_restore(&src, &env);
}

#[test]
fn kill_mid_upload_and_before_manifest_s3() {
    let moto = MotoServer::start();
    moto.create_bucket("crash-test");
    let stores = format!(
        "  s3: {{ url: \"s3://crash-test/lb\", region: us-east-1, endpoint: \"{}\", part_size: 5MiB }}",
        moto.endpoint()
    );
    let (src, env) = setup(&stores, "s3");
    for point in ["mid-upload", "before-manifest"] {
        let child = env.backup_stalled_at(point);
        kill9(child);
        let id = env.backup();
        let keys = moto.list_keys("crash-test", "lb/");
        assert_eq!(
            keys.iter().filter(|k| k.ends_with("manifest.json")).count(),
            keys.len() / 2,
            "{point}: only committed snapshots remain: {keys:?}"
        );
        assert!(keys.iter().any(|k| k.contains(&id)));
        let snaps = env.snapshots();
        assert_eq!(snaps[snaps.len() - 2]["status"], "failed");
    }
    assert_complete_ones_restore(&src, &env);
}
