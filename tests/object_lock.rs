//! Object Lock for real (issue 9, acceptance 7), against moto with versioning and Object
//! Lock: objects are locked in the request that writes them (a bucket default retention is
//! required), every object version is recorded (data in the signed manifest, manifest in
//! the catalog), restore and verify read those versions whatever an attacker wrote over the
//! keys since, and a crash between a write and its explicit retention is healed by settle.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::s3::S3;
use common::*;
use lifeboat::model::snapshot;

const BUCKET: &str = "vault";

/// A TMPDIR for the verification sandboxes (traversable by `postgres`).
fn sandbox_tmp(env: &mut Env) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-ol-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.extra_env
        .push(("TMPDIR".into(), dir.path().display().to_string()));
    dir
}

/// A PostgreSQL source backed up to `s3://BUCKET/lb` with `object_lock: compliance 1 day`,
/// signed manifests.
fn setup(moto: &MotoServer, bucket: &str) -> (PgServer, Env) {
    let src = PgServer::start();
    load_dataset(&src, "orders", 1);
    let env = Env::new();
    let stores = format!(
        "  vault: {{ url: \"s3://{bucket}/lb\", region: us-east-1, endpoint: \"{}\", part_size: 5MiB, object_lock: {{ mode: compliance, days: 1 }} }}",
        moto.endpoint()
    );
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("orders"),
        "vault",
        &stores,
    );
    env.ok(&["keys", "generate", "--signing", "--output", "signing.key"]);
    let yaml = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        yaml.replace(
            "  identity_file: ./age.key\n",
            "  identity_file: ./age.key\n  signing_key_file: ./signing.key\n",
        ),
    )
    .unwrap();
    (src, env)
}

fn keys_of(id: &str) -> [String; 2] {
    [
        format!("lb/db/{id}/{}", snapshot::DATA_OBJECT),
        format!("lb/db/{id}/{}", snapshot::MANIFEST),
    ]
}

fn restores_byte_for_byte(src: &PgServer, env: &Env, id: &str, db: &str) {
    src.create_db(db);
    env.ok(&["restore", id, "--target", &src.url(db)]);
    assert_eq!(
        dataset_checksums(src, "orders"),
        dataset_checksums(src, db),
        "restore of {id} into {db}"
    );
}

#[test]
fn a_bucket_that_does_not_lock_on_write_is_refused() {
    let moto = MotoServer::start();
    let s3 = S3::new(&moto);
    s3.create_locked_bucket(BUCKET);
    let (_src, env) = setup(&moto, BUCKET);

    // Object Lock enabled, but no default retention: every write would be unlocked until
    // a second request locks it. `config check` and `backup` both refuse, saying what to set.
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("no default Object Lock retention"), "{err}");
    assert!(err.contains("put-object-lock-configuration"), "{err}");
    assert!(err.contains("store `vault`"), "{err}");
    assert!(!err.contains("testing-secret-key"), "{err}");
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("no default Object Lock retention"), "{err}");
    assert!(
        moto.list_keys(BUCKET, "lb/").is_empty(),
        "nothing is written before the bucket is proven to lock it"
    );

    // A default weaker than the config (governance for compliance, or fewer days) neither.
    s3.set_default_retention(BUCKET, "GOVERNANCE", 30);
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("governance"), "{err}");
    s3.set_default_retention(BUCKET, "COMPLIANCE", 1);
    env.ok(&["config", "check"]);
}

#[test]
fn an_overwritten_and_deleted_snapshot_restores_and_verifies_from_its_recorded_versions() {
    let moto = MotoServer::start();
    let s3 = S3::new(&moto);
    s3.create_locked_bucket(BUCKET);
    s3.set_default_retention(BUCKET, "COMPLIANCE", 1);
    let (src, mut env) = setup(&moto, BUCKET);
    let _tmp = sandbox_tmp(&mut env);
    env.ok(&["config", "check"]);
    let id = env.backup();

    // The versions are recorded: the data object's in the signed manifest, the manifest's in
    // the catalog; each version has its retention.
    let [data_key, manifest_key] = keys_of(&id);
    let manifest: serde_json::Value =
        serde_json::from_str(&s3.get_text(BUCKET, &manifest_key)).unwrap();
    let data_version = manifest["objects"][0]["version"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no data version in {manifest:#}"))
        .to_string();
    assert_eq!(manifest["objects"][0]["version"]["store"], "s3://vault/lb");
    assert!(manifest["signature"].is_object(), "{manifest:#}");
    let row = env.snapshots().pop().unwrap();
    let manifest_version = row["manifest_version"]
        .as_str()
        .unwrap_or_else(|| panic!("no manifest version in the catalog: {row}"))
        .to_string();
    assert_eq!(s3.versions(BUCKET, &data_key), vec![data_version.clone()]);
    assert_eq!(
        s3.versions(BUCKET, &manifest_key),
        vec![manifest_version.clone()]
    );
    for (key, version) in [
        (&data_key, &data_version),
        (&manifest_key, &manifest_version),
    ] {
        let r = s3
            .retention_at(BUCKET, key, version)
            .unwrap_or_else(|| panic!("{key} has no retention"));
        assert_eq!(r.mode, "COMPLIANCE", "{key}");
    }

    // The attacker, with the orchestrator's own S3 keys: overwrites every object of the
    // snapshot (manifest included) with garbage, then "deletes" them (delete markers).
    for key in [&data_key, &manifest_key] {
        s3.overwrite(BUCKET, key, b"encrypted by ransomware, pay up");
        s3.delete_marker(BUCKET, key);
    }
    assert!(
        moto.list_keys(BUCKET, "lb/").is_empty(),
        "the keys read as deleted"
    );
    // Destroying the locked versions themselves is refused by S3.
    assert!(s3.delete_version(BUCKET, &data_key, &data_version).is_err());

    // Restore still succeeds, byte for byte, from the recorded versions; verify passes.
    restores_byte_for_byte(&src, &env, &id, "restored");
    let out = env.run(&["verify", &id, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", text(&out.stderr)));
    assert!(
        out.status.success() && report["status"] == "passed",
        "verify: {report:#}\n{}",
        text(&out.stderr)
    );

    // Without the catalog's version of the manifest (a catalog from before versions), the
    // current key is gone: its versions are searched, newest first, for a trusted manifest.
    let status = std::process::Command::new("sqlite3")
        .arg(env.path("catalog.db"))
        .arg("UPDATE snapshots SET manifest_version = NULL")
        .status()
        .expect("sqlite3 (scripts/setup.sh installs it)");
    assert!(status.success());
    restores_byte_for_byte(&src, &env, &id, "unversioned");

    // The catalog lost too (the disaster): `catalog rebuild` finds the snapshot behind the
    // garbage and the delete markers, and it restores.
    std::fs::remove_file(env.path("catalog.db")).unwrap();
    let out = env.ok(&["catalog", "rebuild"]);
    assert!(out.contains("1 snapshot"), "{out}");
    restores_byte_for_byte(&src, &env, &id, "rebuilt");

    // An attacker's garbage as the newest version (no delete marker) is passed over too.
    s3.overwrite(BUCKET, &manifest_key, b"{\"not\": \"a manifest\"}");
    std::fs::remove_file(env.path("catalog.db")).unwrap();
    env.ok(&["catalog", "rebuild"]);
    restores_byte_for_byte(&src, &env, &id, "rebuilt_again");
}

#[test]
fn a_crash_between_write_and_lock_is_healed_by_settle() {
    let moto = MotoServer::start();
    let s3 = S3::new(&moto);
    s3.create_locked_bucket(BUCKET);
    s3.set_default_retention(BUCKET, "COMPLIANCE", 1);
    let (src, env) = setup(&moto, BUCKET);

    let child = env.backup_stalled_at("before-lock");
    let id = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    kill9(child);
    let [data_key, manifest_key] = keys_of(&id);
    let data_version = s3
        .versions(BUCKET, &data_key)
        .pop()
        .expect("a data version");
    // moto applies the bucket default to single PUTs but not to completed multipart
    // uploads: the data object is committed but unlocked, the state a crash between the
    // write and the explicit retention leaves when the default did not apply.
    assert_eq!(
        s3.retention_at(BUCKET, &data_key, &data_version),
        None,
        "precondition: the data object is not locked yet"
    );
    assert_eq!(env.snapshots()[0]["status"], "running");

    let out = env.ok(&["catalog", "settle"]);
    assert!(out.contains("1 recorded complete"), "{out}");
    let r = s3
        .retention_at(BUCKET, &data_key, &data_version)
        .expect("settle re-applied the retention");
    assert_eq!(r.mode, "COMPLIANCE");
    let manifest_version = s3.versions(BUCKET, &manifest_key).pop().unwrap();
    assert!(
        s3.retention_at(BUCKET, &manifest_key, &manifest_version)
            .is_some()
    );
    let row = env.snapshots().pop().unwrap();
    assert_eq!(row["status"], "complete");
    assert_eq!(row["manifest_version"], manifest_version.as_str());
    // Settling again finds nothing to do; the snapshot restores.
    let out = env.ok(&["catalog", "settle"]);
    assert!(!out.contains("1 recorded complete"), "{out}");
    restores_byte_for_byte(&src, &env, &id, "after_settle");

    // The attacker overwrites and "deletes" it; prune (keep_last 1, a newer snapshot taken)
    // would delete it: its keys read as gone, but the versions the backup wrote are still
    // locked, so prune keeps it and says why.
    for key in [&data_key, &manifest_key] {
        s3.overwrite(BUCKET, key, b"encrypted by ransomware, pay up");
        s3.delete_marker(BUCKET, key);
    }
    let yaml = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        yaml.replace(
            "    store: vault\n",
            "    store: vault\n    retention: { keep_last: 1 }\n",
        ),
    )
    .unwrap();
    env.backup();
    let out = env.ok(&["prune"]);
    assert!(out.contains("object lock (compliance) until"), "{out}");
    assert!(out.contains("pruned 0 snapshot(s)"), "{out}");
    assert_eq!(env.snapshots()[0]["id"], id.as_str());
    restores_byte_for_byte(&src, &env, &id, "after_prune");
}
