//! PostgreSQL round trips through real servers: back up a dataset to the local store and to
//! S3 (moto), restore each into a fresh server, and prove the data is equal.

mod common;

use common::*;

#[test]
fn round_trip_local_store_sqlite_catalog() {
    let src = PgServer::start();
    load_dataset(&src, "orders", 1);
    let env = Env::new();
    env.pg_config(
        "sqlite://./data/catalog.db",
        &src.url("orders"),
        "local",
        "  local: { url: \"file://./data/store\" }",
    );
    let id = env.backup();

    let snap = &env.snapshots()[0];
    for field in [
        "id",
        "source",
        "kind",
        "status",
        "created_at",
        "finished_at",
        "raw_bytes",
        "stored_bytes",
        "sha256",
        "store",
    ] {
        assert!(!snap[field].is_null(), "field {field} missing in {snap}");
    }
    assert_eq!(snap["kind"], "postgres");
    assert!(snap["raw_bytes"].as_i64().unwrap() > snap["stored_bytes"].as_i64().unwrap() / 2);

    // The commit protocol: data object and manifest, nothing else.
    let files = files_under(&env.path("data/store"));
    assert_eq!(
        files,
        vec![
            format!("db/{id}/data.zst.age"),
            format!("db/{id}/manifest.json")
        ]
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path(&format!("data/store/db/{id}/manifest.json"))).unwrap(),
    )
    .unwrap();
    assert!(
        manifest["facts"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );
    assert!(
        manifest["facts"]["pg_dump_version"]
            .as_str()
            .unwrap()
            .contains("pg_dump")
    );

    let dst = PgServer::start();
    dst.create_db("restored");
    env.ok(&["restore", &id, "--target", &dst.url("restored")]);
    assert_eq!(
        dataset_checksums(&src, "orders"),
        dataset_checksums(&dst, "restored")
    );
}

#[test]
fn stored_object_is_plain_age_and_zstd() {
    // Anyone with the identity can recover a snapshot with stock tools, lifeboat or not.
    let Some(age) = servers::bin_on_path("age") else {
        eprintln!("age CLI not installed; skipping the stock-tools comparison");
        return;
    };
    let src = PgServer::start();
    src.create_db("small");
    src.psql(
        "small",
        "CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, 'ünïcødé');",
    );
    let env = Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("small"),
        "local",
        "  local: { url: \"file://./store\" }",
    );
    let id = env.backup();
    let script = format!(
        "{} -d -i age.key store/db/{id}/data.zst.age | zstd -dc | {} -f - ",
        age.display(),
        src.bin("pg_restore").display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ünïcødé"));
}

#[test]
fn round_trip_s3_store_postgres_catalog() {
    let src = PgServer::start();
    load_dataset(&src, "orders", 1);
    let catalog = PgServer::start();
    catalog.create_db("lifeboat");
    let moto = MotoServer::start();
    moto.create_bucket("dr-backups");
    let env = Env::new();
    env.pg_config(
        &catalog.url("lifeboat"),
        &src.url("orders"),
        "s3-east",
        &format!(
            "  s3-east: {{ url: \"s3://dr-backups/prod\", region: us-east-1, endpoint: \"{}\", part_size: 5MiB }}",
            moto.endpoint()
        ),
    );
    let id = env.backup();
    let keys = moto.list_keys("dr-backups", "prod/");
    assert_eq!(
        keys,
        vec![
            format!("prod/db/{id}/data.zst.age"),
            format!("prod/db/{id}/manifest.json")
        ]
    );
    let rows = catalog.psql("lifeboat", "SELECT id || ' ' || status FROM snapshots");
    assert_eq!(rows, format!("{id} complete"));

    let dst = PgServer::start();
    dst.create_db("restored");
    env.ok(&["restore", &id, "--target", &dst.url("restored")]);
    assert_eq!(
        dataset_checksums(&src, "orders"),
        dataset_checksums(&dst, "restored")
    );
}

#[test]
fn restore_to_file_gives_the_pg_dump_archive() {
    let src = PgServer::start();
    src.create_db("small");
    src.psql(
        "small",
        "CREATE TABLE t (id int, v text); INSERT INTO t VALUES (7, 'sieben');",
    );
    let env = Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("small"),
        "local",
        "  local: { url: \"file://./store\" }",
    );
    let id = env.backup();
    env.ok(&["restore", &id, "--to-file", "dump.pgcustom"]);
    let out = std::process::Command::new(src.bin("pg_restore"))
        .args(["-f", "-"])
        .arg(env.path("dump.pgcustom"))
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("sieben"),
        "{}",
        text(&out.stderr)
    );
    assert!(!env.path("dump.pgcustom.partial").exists());
    // Never overwrites.
    let err = env.fails(&["restore", &id, "--to-file", "dump.pgcustom"]);
    assert!(err.contains("already exists"), "{err}");
    // A postgres snapshot cannot go to a directory.
    let err = env.fails(&["restore", &id, "--to-dir", "somewhere"]);
    assert!(err.contains("--target postgres://"), "{err}");
}

/// The harness's `PgServer` stops its server in `Drop` (`pg_ctl stop -w`). Dropped by a task
/// of a runtime with one worker, that wait must not hold the worker: a ticker task on the same
/// runtime keeps running meanwhile. And the server is gone when the drop returns.
#[test]
fn dropping_a_pg_server_on_a_runtime_worker_does_not_stall_the_runtime() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let pg = PgServer::start();
    let pid_file = pg.data_dir().join("postmaster.pid");
    assert!(pid_file.exists());
    let dropping = Arc::new(AtomicBool::new(false));
    let ran_meanwhile = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let ticker = {
            let (dropping, ran) = (dropping.clone(), ran_meanwhile.clone());
            tokio::spawn(async move {
                loop {
                    if dropping.load(Ordering::SeqCst) {
                        ran.store(true, Ordering::SeqCst);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            })
        };
        let flag = dropping.clone();
        tokio::spawn(async move {
            flag.store(true, Ordering::SeqCst);
            drop(pg);
            flag.store(false, Ordering::SeqCst);
        })
        .await
        .expect("drop task");
        ticker.abort();
    });
    assert!(!pid_file.exists(), "the server is gone once drop returns");
    assert!(
        !pid_file.parent().is_some_and(|d| d.exists()),
        "its files are gone too"
    );
    assert!(
        ran_meanwhile.load(Ordering::SeqCst),
        "the runtime's other tasks ran while PostgreSQL stopped"
    );
}
