//! One conformance suite for every kind a local sandbox verifies (postgres, redis, etcd,
//! files, command), each against a real server: the same three cases for each.
//! - round trip: a backup verifies (restored into the sandbox, checked against its facts);
//! - tampered facts fail: a manifest whose recorded facts were changed does not verify;
//! - cancellation commits nothing: a backup interrupted mid-dump leaves no snapshot and no
//!   object in the store, and the next backup works.
//!
//! `volume-snapshot` needs the Kubernetes API: its cases run against the contract fake in
//! tests/volume_snapshot.rs.

mod common;

use std::any::Any;
use std::path::Path;
use std::time::Duration;

use common::etcd::EtcdServer;
use common::redis::{RedisServer, load_every_type};
use common::{Env, PgServer, files_under, text};
use serde_json::Value;

/// A kind's live source for one case: the servers it needs (kept alive) and its config keys.
struct Fixture {
    _servers: Box<dyn Any>,
    /// The source's keys after `name: db`, each line indented four spaces.
    source: String,
    /// Whether verification compares recorded facts (a command snapshot has none to compare:
    /// its checks are the user's `verify.checks`).
    facts_checked: bool,
}

fn postgres(_env: &Env) -> Fixture {
    let pg = PgServer::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;",
    );
    let source = format!("    kind: postgres\n    url: \"{}\"\n", pg.url("app"));
    Fixture {
        _servers: Box::new(pg),
        source,
        facts_checked: true,
    }
}

fn redis(_env: &Env) -> Fixture {
    let server = RedisServer::start(&[]);
    load_every_type(&server, 0, 20);
    let source = format!("    kind: redis\n    url: \"{}\"\n", server.url());
    Fixture {
        _servers: Box::new(server),
        source,
        facts_checked: true,
    }
}

fn etcd(_env: &Env) -> Fixture {
    let server = EtcdServer::start();
    // Over a MiB, so a backup passes the `mid-dump` failpoint.
    for i in 0..24 {
        let value: String = (0..100_000)
            .map(|j| char::from(b'a' + ((i * 7 + j) % 26) as u8))
            .collect();
        server.etcdctl(&["put", &format!("/app/key{i}"), &value]);
    }
    let source = format!(
        "    kind: etcd\n    endpoints: [\"{}\"]\n",
        server.endpoint()
    );
    Fixture {
        _servers: Box::new(server),
        source,
        facts_checked: true,
    }
}

fn files(env: &Env) -> Fixture {
    let dir = env.path("data");
    std::fs::create_dir_all(dir.join("sub")).expect("create data dir");
    for i in 0..20 {
        std::fs::write(
            dir.join(format!("sub/f{i}")),
            format!("file {i}\n").repeat(100),
        )
        .expect("write data file");
    }
    Fixture {
        _servers: Box::new(()),
        source: format!("    kind: files\n    path: \"{}\"\n", dir.display()),
        facts_checked: true,
    }
}

fn command(_env: &Env) -> Fixture {
    Fixture {
        _servers: Box::new(()),
        source: "    kind: command\n    argv: [\"sh\", \"-c\", \"seq 1 200000\"]\n    \
                 restore_argv: [\"sh\", \"-c\", \"cat > \\\"$LIFEBOAT_TARGET/restored\\\"\"]\n"
            .into(),
        facts_checked: false,
    }
}

fn setup(kind: fn(&Env) -> Fixture) -> (Env, Fixture) {
    let env = Env::new();
    let fixture = kind(&env);
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: db\n    store: local\n{}",
        fixture.source
    ));
    (env, fixture)
}

/// `lifeboat verify ARGS --output json`: whether it passed, and its report.
fn verify(env: &Env, what: &str) -> (bool, Value) {
    let out = env.run(&["verify", what, "--output", "json"]);
    let stdout = text(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}):\nstdout: {stdout}\nstderr: {}",
            text(&out.stderr)
        )
    });
    (out.status.success(), report)
}

fn round_trip(kind: fn(&Env) -> Fixture) {
    let (env, _fixture) = setup(kind);
    let id = env.backup();
    let (ok, report) = verify(&env, &id);
    assert!(ok, "a fresh snapshot verifies: {report:#}");
    assert_eq!(report["status"], "passed", "{report:#}");
}

/// Adds one to every integer in `v` (counts, sizes, revisions): facts that no longer match.
fn bump_integers(v: &mut Value) -> usize {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                *v = Value::from(i + 1);
                1
            }
            None => 0,
        },
        Value::Array(a) => a.iter_mut().map(bump_integers).sum(),
        Value::Object(o) => o.values_mut().map(bump_integers).sum(),
        _ => 0,
    }
}

fn manifest_path(env: &Env, id: &str) -> std::path::PathBuf {
    env.path(&format!("store/db/{id}/manifest.json"))
}

fn tampered_facts_fail(kind: fn(&Env) -> Fixture) {
    let (env, fixture) = setup(kind);
    if !fixture.facts_checked {
        return;
    }
    let id = env.backup();
    let path = manifest_path(&env, &id);
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read manifest"))
            .expect("manifest json");
    let changed = bump_integers(&mut manifest["facts"]);
    assert!(changed > 0, "the kind records numeric facts: {manifest:#}");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("json"))
        .expect("write manifest");
    // The catalog keeps its own copy: tamper both, as an attacker with both would.
    let catalog = env.path("catalog.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&catalog)
        .arg(format!(
            "UPDATE snapshots SET manifest = '{}' WHERE id = '{id}'",
            serde_json::to_string(&manifest)
                .expect("json")
                .replace('\'', "''")
        ))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        // Without the sqlite3 CLI the catalog keeps the true facts; the store's copy is
        // what the restore reads, so the case still holds.
        eprintln!("sqlite3 not available: only the store's manifest was tampered");
    }
    let (ok, report) = verify(&env, &id);
    assert!(!ok, "tampered facts must not verify: {report:#}");
    assert_eq!(report["status"], "failed", "{report:#}");
}

fn cancellation_commits_nothing(kind: fn(&Env) -> Fixture) {
    let (env, _fixture) = setup(kind);
    let child = env.backup_stalled_at("mid-dump");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait for lifeboat");
    assert!(
        !out.status.success(),
        "an interrupted backup reports failure"
    );
    let snaps = env.snapshots();
    assert!(
        snaps.iter().all(|s| s["status"] != "complete"),
        "nothing committed: {snaps:?}"
    );
    let store = env.path("store");
    let left = if Path::new(&store).exists() {
        files_under(&store)
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "no object left in the store: {left:?}");
    // And the next backup works.
    std::thread::sleep(Duration::from_millis(10));
    env.backup();
}

macro_rules! suite {
    ($($kind:ident),* $(,)?) => {
        $(mod $kind {
            #[test]
            fn round_trip() {
                super::round_trip(super::$kind)
            }
            #[test]
            fn tampered_facts_fail() {
                super::tampered_facts_fail(super::$kind)
            }
            /// Found by this case: with stderr closed by the caller (as here, once the
            /// failpoint line is read), the signal handler's log line panicked before it
            /// cancelled the run, and the backup never ended.
            #[test]
            fn cancellation_commits_nothing() {
                super::cancellation_commits_nothing(super::$kind)
            }
        })*
    };
}

suite!(postgres, redis, etcd, files, command);
