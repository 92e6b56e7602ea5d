//! Redis through real servers: back up thousands of keys of every type in both modes (and
//! both replication framings), restore into a fresh live server and into a file, and prove
//! the data, the TTLs and the recorded key counts; plus the ways a Redis backup or restore
//! must fail clearly.

mod common;

use common::redis::{RedisServer, Reply, assert_same, contents, load_every_type};
use common::*;

/// Keys of each type in db0 and db1.
const DB0_PER_TYPE: usize = 1000;
const DB1_PER_TYPE: usize = 300;

/// A config with one Redis source `db` (`extra` are further indented source keys).
fn redis_config(env: &Env, url: &str, extra: &str) {
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: redis\n    url: \"{url}\"\n    store: local\n{extra}"
    ));
}

fn file_mode(src: &RedisServer) -> String {
    format!(
        "    mode: file\n    rdb_path: \"{}\"\n    save_timeout: 2m\n",
        src.rdb_path().display()
    )
}

fn manifest(env: &Env, id: &str) -> serde_json::Value {
    let path = env.path(&format!("store/db/{id}/manifest.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("read manifest")).expect("manifest json")
}

/// The restore's scratch directory (and its server) are gone.
fn assert_nothing_in(dir: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn last_run(env: &Env) -> serde_json::Value {
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["runs", "list", "--output", "json"])).unwrap();
    runs.last().expect("a run").clone()
}

/// Fills `src`, backs it up with `extra` config, restores into a live server and a file,
/// and compares everything.
fn round_trip(src: &RedisServer, extra: &str, mode: &str, transfer: Option<&str>) {
    let n0 = load_every_type(src, 0, DB0_PER_TYPE);
    let n1 = load_every_type(src, 1, DB1_PER_TYPE);
    let env = Env::new();
    // The restore's scratch directory goes here, so we can see it is cleaned up.
    std::fs::create_dir(env.path("tmp")).unwrap();
    let tmp = env.path("tmp").display().to_string();
    let mut env = env;
    env.extra_env.push(("TMPDIR".into(), tmp));
    redis_config(&env, &src.url(), extra);
    let id = env.backup();

    let m = manifest(&env, &id);
    assert_eq!(m["kind"], "redis");
    let facts = &m["facts"];
    assert_eq!(facts["keys"]["db0"], n0 as u64, "{facts}");
    assert_eq!(facts["keys"]["db1"], n1 as u64, "{facts}");
    // Every 10th key of each of 6 types, plus the big hash.
    assert_eq!(facts["expires"]["db0"], (DB0_PER_TYPE / 10 * 6 + 1) as u64);
    assert_eq!(facts["expires"]["db1"], (DB1_PER_TYPE / 10 * 6 + 1) as u64);
    assert_eq!(facts["mode"], mode);
    if let Some(t) = transfer {
        assert_eq!(facts["rdb_transfer"], t, "{facts}");
    }
    assert!(
        facts["redis_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric),
        "{facts}"
    );
    assert!(facts["rdb_version"].as_u64().unwrap() >= 9, "{facts}");
    assert!(m["raw_bytes"].as_u64().unwrap() > 6 << 20, "{m}");

    // Into a fresh live server.
    let dst = RedisServer::start(&[]);
    env.ok(&["restore", &id, "--target", &dst.url()]);
    for db in 0..2 {
        assert_same(&contents(src, db), &contents(&dst, db), 5);
    }
    assert_nothing_in(&env.path("tmp"));
    // A second restore into the now non-empty server is refused, and changes nothing.
    let err = env.fails(&["restore", &id, "--target", &dst.url()]);
    assert!(err.contains("not empty"), "{err}");
    assert_same(&contents(src, 0), &contents(&dst, 0), 5);

    // Into a file: an RDB that a stock redis-server loads.
    env.ok(&["restore", &id, "--to-file", "dump.rdb"]);
    let rdb = std::fs::read(env.path("dump.rdb")).unwrap();
    assert!(rdb.starts_with(b"REDIS"), "not an RDB file");
    let from_file = RedisServer::start_on_rdb(&env.path("dump.rdb"));
    for db in 0..2 {
        assert_same(&contents(src, db), &contents(&from_file, db), 5);
    }
    // Not into a directory.
    let err = env.fails(&["restore", &id, "--to-dir", "somewhere"]);
    assert!(err.contains("--target redis://"), "{err}");
}

#[test]
fn round_trip_replication_mode_diskless() {
    // The server streams the RDB as it writes it: `$EOF:<marker>` framing.
    let src = RedisServer::start(&[
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]);
    round_trip(&src, "", "replication", Some("diskless"));
}

#[test]
fn round_trip_replication_mode_disk_based() {
    // The server saves to disk first, then sends `$<length>` and the file.
    let src = RedisServer::start(&["--repl-diskless-sync", "no"]);
    round_trip(&src, "    mode: replication\n", "replication", Some("disk"));
}

#[test]
fn round_trip_file_mode() {
    let src = RedisServer::start(&[]);
    round_trip(&src, &file_mode(&src), "file", None);
}

#[test]
fn failing_bgsave_is_a_clear_error() {
    // Redis 7 only lets `dir` change at run time with protected configs enabled.
    let src = RedisServer::start(&["--enable-protected-configs", "yes"]);
    src.cmd(&["SET", "k", "v"]);
    let env = Env::new();
    redis_config(&env, &src.url(), &file_mode(&src));
    // Redis cannot create its temporary RDB in /proc, not even as root.
    assert_eq!(
        src.cmd(&["CONFIG", "SET", "dir", "/proc"]),
        Reply::Status("OK".into())
    );
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("background save (BGSAVE) failed"), "{err}");
    assert!(err.contains("/proc"), "the error names the dir: {err}");
    assert!(err.contains("writable"), "{err}");
    let snaps = env.snapshots();
    assert_eq!(snaps.last().unwrap()["status"], "failed", "{snaps:?}");
    let run = last_run(&env);
    assert_eq!(run["status"], "failed");
    assert!(run["error"].as_str().unwrap().contains("BGSAVE"), "{run}");
    assert_eq!(files_under(&env.path("store")), Vec::<String>::new());
}

#[test]
fn failing_save_in_replication_mode_is_a_clear_error() {
    let src = RedisServer::start(&[
        "--repl-diskless-sync",
        "no",
        "--enable-protected-configs",
        "yes",
    ]);
    src.cmd(&["SET", "k", "v"]);
    assert_eq!(
        src.cmd(&["CONFIG", "SET", "dir", "/proc"]),
        Reply::Status("OK".into())
    );
    let env = Env::new();
    redis_config(&env, &src.url(), "");
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("background save (BGSAVE) failed"), "{err}");
    assert!(err.contains("/proc"), "{err}");
    assert_eq!(last_run(&env)["status"], "failed");
}

#[test]
fn redis_down_is_a_clear_error() {
    let mut src = RedisServer::start(&[]);
    let url = src.url();
    src.stop();
    let env = Env::new();
    redis_config(&env, &url, "");
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("cannot be reached"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert_eq!(last_run(&env)["status"], "failed");
}

#[test]
fn passwords_are_used_and_never_shown() {
    let password = "s3cr3t-Pa55word";
    let src = RedisServer::start_with_password(&[], password);
    load_every_type(&src, 0, 50);
    let env = Env::new();
    redis_config(&env, &src.url(), "");
    let out = env.run(&["backup", "db"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(password));
    let id = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    let dst = RedisServer::start_with_password(&[], password);
    let out = env.run(&["restore", &id, "--target", &dst.url()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(password));
    assert_same(&contents(&src, 0), &contents(&dst, 0), 5);

    // Wrong password: a clear error without the password in it.
    let wrong = src.url().replace(password, "wrong-pa55word");
    redis_config(&env, &wrong, "");
    let err = env.fails(&["backup", "db"]);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("wrong-pa55word"), "{err}");
    let run = last_run(&env).to_string();
    assert!(
        !run.contains("wrong-pa55word") && !run.contains(password),
        "{run}"
    );
    // Nor in what lifeboat stored.
    for f in files_under(&env.path("store")) {
        let bytes = std::fs::read(env.path("store").join(&f)).unwrap();
        assert!(!text(&bytes).contains(password), "{f}");
    }
    let target_wrong = dst.url().replace(password, "nope-nope");
    let err = env.fails(&["restore", &id, "--target", &target_wrong]);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("nope-nope"), "{err}");
}

#[test]
fn config_mistakes_are_rejected_at_load_time() {
    let env = Env::new();
    let cases = [
        ("    mode: file\n", "needs `rdb_path`"),
        (
            "    mode: replication\n    rdb_path: /data/dump.rdb\n",
            "only used with `mode: file`",
        ),
        ("    mode: snapshot\n", "unknown variant `snapshot`"),
        ("    save_timeout: soon\n", "not a duration"),
        ("    colour: red\n", "unknown field `colour`"),
    ];
    for (extra, says) in cases {
        redis_config(&env, "redis://127.0.0.1:6379", extra);
        let err = env.fails(&["config", "check"]);
        assert!(err.contains("sources[0]"), "{extra}: {err}");
        assert!(err.contains(says), "{extra}: {err}");
    }
    redis_config(&env, "rediss://127.0.0.1:6379", "");
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("TLS"), "{err}");
    redis_config(&env, "redis://127.0.0.1:6379/2", "");
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("every database"), "{err}");
    redis_config(
        &env,
        "redis://127.0.0.1:6379",
        "    mode: file\n    rdb_path: /x.rdb\n",
    );
    env.ok(&["config", "check"]);
}

#[test]
fn failed_restore_explains_and_cleans_up() {
    let src = RedisServer::start(&[]);
    src.cmd(&["SET", "a", "1"]);
    let mut c = src.client().unwrap();
    c.cmd(&["SELECT", "3"]).unwrap();
    c.cmd(&["SET", "b", "2"]).unwrap();
    let mut env = Env::new();
    std::fs::create_dir(env.path("tmp")).unwrap();
    let tmp = env.path("tmp").display().to_string();
    env.extra_env.push(("TMPDIR".into(), tmp));
    redis_config(&env, &src.url(), "");
    let id = env.backup();
    assert_eq!(manifest(&env, &id)["facts"]["keys"]["db3"], 1);

    // The target has too few databases for db3.
    let dst = RedisServer::start(&["--databases", "2"]);
    let err = env.fails(&["restore", &id, "--target", &dst.url()]);
    assert!(err.contains("`databases 4`"), "{err}");
    assert!(err.contains("FLUSHALL"), "{err}");
    assert_eq!(last_run(&env)["status"], "failed");
    // The scratch directory goes on failure too.
    assert_nothing_in(&env.path("tmp"));
}

#[test]
fn round_trip_through_s3() {
    // Nothing past the source is kind-specific: the same snapshot through an S3 store.
    let src = RedisServer::start(&[]);
    load_every_type(&src, 0, 200);
    let moto = MotoServer::start();
    moto.create_bucket("dr-backups");
    let env = Env::new();
    env.write_config(&format!(
        "stores:\n  s3: {{ url: \"s3://dr-backups/prod\", region: us-east-1, endpoint: \"{}\", part_size: 5MiB }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    kind: redis\n    url: \"{}\"\n    store: s3\n",
        moto.endpoint(),
        src.url()
    ));
    let id = env.backup();
    assert_eq!(
        moto.list_keys("dr-backups", "prod/"),
        vec![
            format!("prod/db/{id}/data.zst.age"),
            format!("prod/db/{id}/manifest.json")
        ]
    );
    let dst = RedisServer::start(&[]);
    env.ok(&["restore", &id, "--target", &dst.url()]);
    assert_same(&contents(&src, 0), &contents(&dst, 0), 5);
}
