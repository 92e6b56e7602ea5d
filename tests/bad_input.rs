//! Bad input gets a clear error, a non-zero exit, a failed run in the catalog, and loses
//! nothing: wrong identity, corrupt or missing objects, a store that is down, a source that
//! is down. (Bad config files: tests/config_check.rs.)

mod common;

use common::*;

/// A small source, a local store, one committed snapshot, and an empty target database.
struct Fixture {
    src: PgServer,
    env: Env,
    id: String,
}

fn fixture() -> Fixture {
    let src = PgServer::start();
    load_dataset(&src, "orders", 1);
    let env = Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("orders"),
        "local",
        "  local: { url: \"file://./store\" }",
    );
    let id = env.backup();
    src.create_db("target");
    Fixture { src, env, id }
}

impl Fixture {
    fn data_object(&self) -> std::path::PathBuf {
        self.env.path(&format!("store/db/{}/data.zst.age", self.id))
    }

    /// Restores into the (empty) `target` database, expecting failure; returns stderr.
    fn restore_fails(&self, extra: &[&str]) -> String {
        let target = self.src.url("target");
        let mut args = vec!["restore", self.id.as_str(), "--target", target.as_str()];
        args.extend_from_slice(extra);
        let err = self.env.fails(&args);
        assert!(
            err.contains(&self.id),
            "error must name the snapshot: {err}"
        );
        // Nothing was committed into the target.
        assert_eq!(
            self.src.psql(
                "target",
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ),
            "0"
        );
        // The catalog records the failed restore with its cause.
        let runs: Vec<serde_json::Value> =
            serde_json::from_str(&self.env.ok(&["runs", "list", "--output", "json"])).unwrap();
        let last = runs.last().unwrap();
        assert_eq!(last["job"], "restore");
        assert_eq!(last["status"], "failed");
        assert!(!last["error"].as_str().unwrap_or("").is_empty());
        err
    }

    fn flip_byte_at(&self, offset_from_start: Option<u64>, offset_from_end: Option<u64>) {
        let path = self.data_object();
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len() as u64;
        let at = offset_from_start.unwrap_or_else(|| len - offset_from_end.unwrap()) as usize;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    }
}

#[test]
fn wrong_identity_and_corruption_and_missing_object() {
    let f = fixture();

    // Wrong identity: names the recipients it was encrypted to.
    f.env.ok(&["keys", "generate", "--output", "other.key"]);
    let err = f.restore_fails(&["--identity", "other.key"]);
    assert!(err.contains("cannot decrypt"), "{err}");
    assert!(err.contains(&f.env.recipient), "{err}");
    assert!(!err.contains("AGE-SECRET-KEY"), "identity leaked: {err}");

    // Missing identity file.
    let err = f.restore_fails(&["--identity", "nope.key"]);
    assert!(err.contains("nope.key"), "{err}");

    // The good snapshot still restores after all that (nothing was lost).
    let good = std::fs::read(f.data_object()).unwrap();

    // A flipped bit in the middle of the data.
    f.flip_byte_at(Some(good.len() as u64 / 2), None);
    let err = f.restore_fails(&[]);
    assert!(err.contains("corrupt"), "{err}");
    std::fs::write(f.data_object(), &good).unwrap();

    // A flipped bit in the age header.
    f.flip_byte_at(Some(60), None);
    let err = f.restore_fails(&[]);
    assert!(
        err.contains("corrupt") || err.contains("cannot decrypt"),
        "{err}"
    );
    std::fs::write(f.data_object(), &good).unwrap();

    // A flipped bit in the last byte (the final chunk's tag).
    f.flip_byte_at(None, Some(1));
    let err = f.restore_fails(&[]);
    assert!(err.contains("corrupt"), "{err}");
    std::fs::write(f.data_object(), &good).unwrap();

    // Truncated object.
    std::fs::write(f.data_object(), &good[..good.len() - 1000]).unwrap();
    let err = f.restore_fails(&[]);
    assert!(err.contains("bytes"), "{err}");
    std::fs::write(f.data_object(), &good).unwrap();

    // Deleted object.
    std::fs::remove_file(f.data_object()).unwrap();
    let err = f.restore_fails(&[]);
    assert!(err.contains("missing"), "{err}");
    std::fs::write(f.data_object(), &good).unwrap();

    // And with everything put back, the restore works.
    f.env
        .ok(&["restore", &f.id, "--target", &f.src.url("target")]);
    assert_eq!(
        dataset_checksums(&f.src, "orders"),
        dataset_checksums(&f.src, "target")
    );
}

#[test]
fn restore_refuses_non_empty_target_and_unknown_snapshot() {
    let f = fixture();
    f.src.psql(
        "target",
        "CREATE TABLE precious (id int); INSERT INTO precious VALUES (1);",
    );
    let err = f
        .env
        .fails(&["restore", &f.id, "--target", &f.src.url("target")]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(f.src.psql("target", "SELECT count(*) FROM precious"), "1");

    let err = f.env.fails(&[
        "restore",
        "20990101T000000.000Z-beef",
        "--target",
        &f.src.url("target"),
    ]);
    assert!(
        err.contains("not in the catalog nor in any configured store"),
        "{err}"
    );
}

#[test]
fn store_down_fails_cleanly_and_catalog_says_failed() {
    let src = PgServer::start();
    load_dataset(&src, "orders", 1);
    let mut moto = MotoServer::start();
    moto.create_bucket("dr-backups");
    let env = Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("orders"),
        "s3",
        &format!(
            "  s3: {{ url: \"s3://dr-backups/prod\", region: us-east-1, endpoint: \"{}\", retry: {{ max_retries: 1, timeout: 5s }} }}",
            moto.endpoint()
        ),
    );
    moto.stop();
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains("s3://dr-backups/prod"), "{err}");
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["status"], "failed");
    assert!(snaps[0]["error"].as_str().unwrap().contains("unreachable"));

    // A bucket that does not exist.
    let moto = MotoServer::start();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("orders"),
        "s3",
        &format!(
            "  s3: {{ url: \"s3://no-such-bucket/prod\", region: us-east-1, endpoint: \"{}\", retry: {{ max_retries: 1, timeout: 5s }} }}",
            moto.endpoint()
        ),
    );
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("no-such-bucket"), "{err}");
    assert_eq!(env.snapshots()[1]["status"], "failed");
}

#[test]
fn source_down_fails_cleanly_and_leaves_no_objects() {
    let mut src = PgServer::start();
    src.create_db("orders");
    let env = Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("orders"),
        "local",
        "  local: { url: \"file://./store\" }",
    );
    src.stop();
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("cannot be reached"), "{err}");
    let snaps = env.snapshots();
    assert_eq!(snaps[0]["status"], "failed");
    assert!(files_under(&env.path("store")).is_empty());
}

#[test]
fn pg_dump_failure_mid_stream_is_reported_with_its_stderr() {
    // A database that does not exist: preflight catches it before anything is written.
    let src = PgServer::start();
    let env = Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        &src.url("missing_db"),
        "local",
        "  local: { url: \"file://./store\" }",
    );
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("missing_db"), "{err}");
    assert_eq!(env.snapshots()[0]["status"], "failed");
    assert!(files_under(&env.path("store")).is_empty());
}
