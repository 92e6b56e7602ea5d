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
        let strays = not_in_a_committed_snapshot(&moto, "crash-test", "lb/");
        assert!(
            strays.is_empty(),
            "{point}: objects of no committed snapshot: {strays:?} (all: {keys:?})"
        );
        assert!(
            keys.iter()
                .any(|k| k.contains(&format!("/{id}/manifest.json")))
        );
        let snaps = env.snapshots();
        assert_eq!(snaps[snaps.len() - 2]["status"], "failed");
    }
    assert_complete_ones_restore(&src, &env);

    // The check sees orphans: a data object with no manifest (which the old count,
    // manifests == objects / 2, let through with an odd total), and an object inside a
    // committed snapshot's directory that its manifest does not list.
    let id = env.snapshots().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let orphans = [
        "lb/db/20260101T000000.000Z-dead/data.zst.age".to_string(),
        format!("lb/db/{id}/data.zst.age.part-1"),
    ];
    for key in &orphans {
        moto.put_object("crash-test", key, b"left behind");
    }
    let mut expected = orphans.to_vec();
    expected.sort();
    assert_eq!(
        not_in_a_committed_snapshot(&moto, "crash-test", "lb/"),
        expected
    );
}

/// Every object under `prefix` that is neither the manifest of a committed snapshot
/// (`<source>/<id>/manifest.json`, naming that id) nor an object its manifest lists.
fn not_in_a_committed_snapshot(moto: &MotoServer, bucket: &str, prefix: &str) -> Vec<String> {
    let s3 = common::s3::S3::new(moto);
    let keys = moto.list_keys(bucket, prefix);
    let mut committed = std::collections::BTreeSet::new();
    for key in keys.iter().filter(|k| k.ends_with("/manifest.json")) {
        let dir = key.trim_end_matches("manifest.json");
        let manifest: serde_json::Value = serde_json::from_str(&s3.get_text(bucket, key))
            .unwrap_or_else(|e| panic!("{key}: not a manifest: {e}"));
        let id = dir
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if manifest["id"] != id {
            continue; // not this directory's manifest: the directory is not committed
        }
        committed.insert(key.clone());
        for o in manifest["objects"].as_array().cloned().unwrap_or_default() {
            committed.insert(format!("{dir}{}", o["name"].as_str().unwrap_or_default()));
        }
    }
    let mut strays: Vec<String> = keys
        .into_iter()
        .filter(|k| !committed.contains(k))
        .collect();
    strays.sort();
    strays
}
