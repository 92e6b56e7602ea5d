//! The command line itself: key generation, config checking, exit codes, and secrets that
//! must never reach a log line, an error, the catalog or the store.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn keys_generate_writes_0600_and_never_overwrites() {
    let env = Env::new();
    let key = env.path("age.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let body = std::fs::read_to_string(&key).unwrap();
    assert!(body.contains(&format!("# public key: {}", env.recipient)));
    let before = body.clone();
    let err = env.fails(&["keys", "generate", "--output", "age.key"]);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before);
    // The stock age CLI reads it.
    if let Some(age) = servers::bin_on_path("age") {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo hello | {a} -r {r} | {a} -d -i {k}",
                a = age.display(),
                r = env.recipient,
                k = key.display()
            ))
            .output()
            .unwrap();
        assert_eq!(text(&out.stdout).trim(), "hello", "{}", text(&out.stderr));
    }
}

#[test]
fn config_check_good_and_bad() {
    let env = Env::new();
    env.pg_config(
        "sqlite://./c.db",
        "postgres://u@127.0.0.1:1/db",
        "local",
        "  local: { url: \"file://./store\" }",
    );
    let out = env.ok(&["config", "check"]);
    assert!(out.contains("lifeboat.yaml: ok"), "{out}");
    // config check touches nothing.
    assert!(!env.path("c.db").exists());
    assert!(!env.path("store").exists());

    let cfg = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("bad.yaml"),
        cfg.replace("store: local", "store: elsewhere"),
    )
    .unwrap();
    let err = env.fails(&["-c", "bad.yaml", "config", "check"]);
    assert!(
        err.contains("bad.yaml: sources[0].store: no store named `elsewhere`"),
        "{err}"
    );

    let err = env.fails(&["-c", "missing.yaml", "config", "check"]);
    assert!(err.contains("missing.yaml"), "{err}");
    // Every command validates the config before acting.
    let err = env.fails(&["-c", "bad.yaml", "backup", "db"]);
    assert!(err.contains("no store named"), "{err}");
}

#[test]
fn unknown_source_is_an_error() {
    let env = Env::new();
    env.pg_config(
        "sqlite://./c.db",
        "postgres://u@127.0.0.1:1/db",
        "local",
        "  local: { url: \"file://./store\" }",
    );
    let err = env.fails(&["backup", "nope"]);
    assert!(err.contains("no source named `nope`"), "{err}");
}

#[test]
fn secrets_never_reach_logs_errors_catalog_or_store() {
    const PG_PASSWORD: &str = "pg-Pa55word-XYZZY";
    const AWS_SECRET: &str = "aws-SECRET-key-PLUGH";
    let src = PgServer::start();
    src.create_db("app");
    src.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    let moto = MotoServer::start();
    moto.create_bucket("secrets-test");
    let mut env = Env::new();
    env.extra_env
        .push(("DB_PASSWORD".into(), PG_PASSWORD.into()));
    env.extra_env
        .push(("MY_AWS_SECRET".into(), AWS_SECRET.into()));
    // trust auth ignores the password, but lifeboat still handles it as a secret.
    let url = format!(
        "postgres://postgres:${{DB_PASSWORD}}@127.0.0.1:{}/app",
        src.port()
    );
    let stores = format!(
        "  s3: {{ url: \"s3://secrets-test/p\", region: us-east-1, endpoint: \"{}\", access_key_id: AKIATEST, secret_access_key: \"${{MY_AWS_SECRET}}\" }}",
        moto.endpoint()
    );
    env.pg_config("sqlite://./catalog.db", &url, "s3", &stores);

    let mut seen = String::new();
    let mut run = |args: &[&str]| {
        let out = env.run(args);
        seen.push_str(&text(&out.stdout));
        seen.push_str(&text(&out.stderr));
        out
    };
    assert!(
        run(&["--log-level", "debug", "backup", "db"])
            .status
            .success()
    );
    run(&["--log-level", "debug", "config", "check"]);
    run(&[
        "--log-level",
        "debug",
        "snapshots",
        "list",
        "--output",
        "json",
    ]);
    // Failures that carry the URL: a database that does not exist, a server that is down.
    std::fs::write(
        env.path("lifeboat.yaml"),
        std::fs::read_to_string(env.path("lifeboat.yaml"))
            .unwrap()
            .replace("/app\"", "/nope\""),
    )
    .unwrap();
    assert!(
        !run(&["--log-level", "debug", "backup", "db"])
            .status
            .success()
    );
    src.psql("postgres", "SELECT 1");
    let dst = PgServer::start();
    dst.create_db("r");
    let target = format!(
        "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/r",
        dst.port()
    );
    let id = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    assert!(
        run(&["--log-level", "debug", "restore", &id, "--target", &target])
            .status
            .success()
    );
    let bad_target = format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:1/r");
    assert!(
        !run(&["restore", &id, "--target", &bad_target])
            .status
            .success()
    );
    run(&["--log-level", "debug", "runs", "list", "--output", "json"]);

    for secret in [PG_PASSWORD, AWS_SECRET] {
        assert!(!seen.contains(secret), "secret {secret} in output:\n{seen}");
        let catalog = std::fs::read(env.path("catalog.db")).unwrap();
        let wal = std::fs::read(env.path("catalog.db-wal")).unwrap_or_default();
        for bytes in [&catalog, &wal] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret {secret} in the catalog"
            );
        }
        for key in moto.list_keys("secrets-test", "") {
            if key.ends_with("manifest.json") {
                let m = moto_get(&moto, "secrets-test", &key);
                assert!(!m.contains(secret), "secret in {key}");
            }
        }
    }
    assert!(
        seen.contains("***") || !seen.contains("postgres://postgres:"),
        "{seen}"
    );
}

fn moto_get(moto: &MotoServer, bucket: &str, key: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", moto.port())).unwrap();
    write!(
        s,
        "GET /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}
