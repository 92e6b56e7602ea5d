use std::path::Path;

use super::*;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// The example from the issue, verbatim but for a real recipient.
const EXAMPLE: &str = r#"
catalog: sqlite://./lifeboat-data/catalog.db     # or postgres://user@host/db
stores:
  local:   { url: "file://./lifeboat-data/store" }
  s3-east: { url: "s3://dr-backups/prod", region: us-east-1, endpoint: "${S3_ENDPOINT}" }
encryption:
  recipients: ["RECIPIENT"]            # one or more age X25519 public keys
  identity_file: ./lifeboat-data/age.key   # only needed to restore or verify
sources:
  - name: orders-db
    kind: postgres
    url: "postgres://postgres@127.0.0.1:5432/orders"
    store: local
    schedule: "0 0 */6 * * *"
    objectives: { rpo: 6h, rto: 30m }
"#;

fn example() -> String {
    EXAMPLE.replace("RECIPIENT", RECIPIENT)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("lifeboat.yaml"))
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn issue_example_loads() {
    let env = |name: &str| (name == "S3_ENDPOINT").then(|| "http://127.0.0.1:9000".to_string());
    let c = Config::parse_with_env(&example(), Path::new("lifeboat.yaml"), &env).unwrap();
    assert_eq!(
        c.stores["s3-east"].endpoint.as_deref(),
        Some("http://127.0.0.1:9000")
    );
    let s = &c.sources[0];
    assert_eq!(s.name, "orders-db");
    assert_eq!(s.spec.kind(), "postgres");
    let o = s.objectives.unwrap();
    assert_eq!(o.rpo.0.as_secs(), 6 * 3600);
    assert_eq!(o.rto.0.as_secs(), 30 * 60);
    assert_eq!(c.compression.level, 3);
    // What a verification Job needs to load the same file elsewhere.
    assert_eq!(c.origin.text, example());
    assert_eq!(
        c.origin.vars.iter().collect::<Vec<_>>(),
        [(
            &"S3_ENDPOINT".to_string(),
            &"http://127.0.0.1:9000".to_string()
        )]
    );
    assert!(
        !format!("{:?}", c.origin).contains("9000"),
        "values are not Debug-printed"
    );
}

#[test]
fn objectives_defaults_and_overrides() {
    use std::time::Duration;
    let base = example().replace("${S3_ENDPOINT}", "http://x");
    let text = format!(
        "defaults:\n  objectives: {{ rpo: 1h, rto: 10m }}\n  rto_overhead: 2m\n  verify_max_age: 3d\n{}  - name: other\n    kind: files\n    path: /data\n    store: local\n    rto_overhead: 7m\n    verify_max_age: 1d\n",
        base
    );
    let c = parse(&text).unwrap();
    // orders-db sets its own objectives, takes the rest from `defaults:`.
    let t = c.targets(&c.sources[0]);
    assert_eq!(t.objectives.unwrap().rpo.0, Duration::from_secs(6 * 3600));
    assert_eq!(t.rto_overhead, Duration::from_secs(120));
    assert_eq!(t.verify_max_age, Duration::from_secs(3 * 86_400));
    // other takes the default objectives, overrides the rest.
    let t = c.targets(&c.sources[1]);
    assert_eq!(t.objectives.unwrap().rpo.0, Duration::from_secs(3600));
    assert_eq!(t.rto_overhead, Duration::from_secs(7 * 60));
    assert_eq!(t.verify_max_age, Duration::from_secs(86_400));
    // Without `defaults:`, the built-in ones.
    let c = parse(&base.replace("    objectives: { rpo: 6h, rto: 30m }\n", "")).unwrap();
    let t = c.targets(&c.sources[0]);
    assert_eq!(t.objectives, None);
    assert_eq!(
        t.rto_overhead,
        crate::policy::objectives::DEFAULT_RTO_OVERHEAD
    );
    assert_eq!(
        t.verify_max_age,
        crate::policy::objectives::DEFAULT_VERIFY_MAX_AGE
    );
}

#[test]
fn zero_objectives_rejected() {
    let base = example().replace("${S3_ENDPOINT}", "http://x");
    let e = err(&base.replace("rpo: 6h", "rpo: 0s"));
    assert!(
        e.contains("sources[0].objectives.rpo") && e.contains("more than 0s"),
        "{e}"
    );
    let e = err(&format!("defaults: {{ verify_max_age: 0s }}\n{base}"));
    assert!(e.contains("defaults.verify_max_age"), "{e}");
    let e = err(&format!(
        "defaults: {{ objectives: {{ rpo: 1h }} }}\n{base}"
    ));
    assert!(
        e.contains("defaults.objectives") && e.contains("rto"),
        "{e}"
    );
}

#[test]
fn five_and_six_field_cron_accepted() {
    for expr in ["0 */6 * * *", "0 0 */6 * * *", "30 2 * * 1-5", "@daily"] {
        let text = example()
            .replace("0 0 */6 * * *", expr)
            .replace("${S3_ENDPOINT}", "x");
        if expr == "@daily" {
            // Nicknames are fine too, but not required; just make sure they don't crash.
            let _ = parse(&text);
            continue;
        }
        parse(&text).unwrap_or_else(|e| panic!("{expr}: {e}"));
    }
}

#[test]
fn rejections_name_file_key_and_fix() {
    let base = example().replace("${S3_ENDPOINT}", "http://x");
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "    store: local\n",
            "    store: local\n    colour: blue\n",
            &["sources[0]", "unknown field `colour`"],
        ),
        (
            "catalog:",
            "catalogue: x\ncatalog:",
            &["unknown field `catalogue`"],
        ),
        (
            "0 0 */6 * * *",
            "0 0 */6 * *  * *",
            &["sources[0]", "schedule", "fields"],
        ),
        (
            "0 0 */6 * * *",
            "0 99 * * *",
            &["sources[0]", "schedule", "not a valid cron"],
        ),
        (
            "rpo: 6h",
            "rpo: 6 hours-ish",
            &["sources[0]", "objectives.rpo", "not a duration", "\"6h\""],
        ),
        (
            "    store: local\n",
            "    store: nowhere\n",
            &[
                "sources[0].store",
                "no store named `nowhere`",
                "local, s3-east",
            ],
        ),
        ("kind: postgres", "kind: oracle", &["sources[0]", "oracle"]),
        (
            "url: \"postgres://",
            "url: \"mysql://",
            &["sources[0].url", "not a PostgreSQL URL"],
        ),
        (
            RECIPIENT,
            "age1nope",
            &["encryption.recipients[0]", "not an age X25519 recipient"],
        ),
        (
            "file://./lifeboat-data/store",
            "ftp://x",
            &["stores.local.url", "s3://BUCKET"],
        ),
    ];
    for (from, to, wants) in cases {
        let text = base.replacen(from, to, 1);
        assert_ne!(text, base, "case {to} did not change the text");
        let e = err(&text);
        assert!(e.starts_with("lifeboat.yaml: "), "{e}");
        for w in *wants {
            assert!(e.contains(w), "case {to}: `{e}` lacks `{w}`");
        }
    }
}

#[test]
fn duplicate_source_names_rejected() {
    let text = example().replace("${S3_ENDPOINT}", "x")
        + "  - { name: orders-db, kind: postgres, url: \"postgres://h/db\", store: local }\n";
    let e = err(&text);
    assert!(
        e.contains("sources[1].name") && e.contains("duplicate source name"),
        "{e}"
    );
}

#[test]
fn unset_env_var_named_with_path() {
    let text = example().replace("${S3_ENDPOINT}", "${LIFEBOAT_TEST_SURELY_UNSET}");
    let e = err(&text);
    assert!(e.contains("stores.s3-east.endpoint"), "{e}");
    assert!(e.contains("LIFEBOAT_TEST_SURELY_UNSET is not set"), "{e}");
    let text = example().replace("${S3_ENDPOINT}", "${LIFEBOAT_TEST_SURELY_UNSET:-http://d}");
    assert_eq!(
        parse(&text).unwrap().stores["s3-east"].endpoint.as_deref(),
        Some("http://d")
    );
}

#[test]
fn secrets_do_not_show_in_debug_or_errors() {
    let text = example()
        .replace("${S3_ENDPOINT}", "x")
        .replace("postgres://postgres@", "postgres://app:hunter2@");
    let c = parse(&text).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    let e = err(&text.replace("127.0.0.1:5432/orders", "127.0.0.1:5432/"));
    assert!(
        !e.contains("hunter2") && e.contains("names no database"),
        "{e}"
    );
    // A secret key pasted as a recipient is not echoed.
    let e = err(&text.replace(RECIPIENT, "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQ"));
    assert!(!e.contains("QQQQQQQQ"), "{e}");
}

#[test]
fn not_yaml_reports_line() {
    let e = err("stores: [\n");
    assert!(e.contains("not valid YAML") && e.contains("line"), "{e}");
}

#[test]
fn sizes_parse() {
    assert_eq!(ByteSize::parse("8MiB").unwrap().0, 8 << 20);
    assert_eq!(ByteSize::parse("5MB").unwrap().0, 5_000_000);
    assert!(ByteSize::parse("8 parsecs").is_err());
}

#[test]
fn every_example_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let env = |name: &str| {
                Some(if name.ends_with("ENDPOINT") {
                    "http://example.invalid:9000".to_string()
                } else if name.starts_with("TSIG") {
                    // TSIG secrets are base64 (validated at load).
                    "ZXhhbXBsZS10c2lnLXNlY3JldA==".to_string()
                } else {
                    "example-secret".to_string()
                })
            };
            Config::parse_with_env(&text, &path, &env)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen > 0, "no example configs found in {}", dir.display());
}

#[test]
fn daemon_section_and_retention_schedule_load() {
    let text = format!(
        "{}    retention: {{ daily: 7, schedule: \"30 4 * * *\" }}\n\
         daemon:\n  max_concurrent_jobs: 4\n  jitter: 2m\n  shutdown_grace: 30s\n  listen: \"0.0.0.0:8080\"\n  api_token: t\n  retry: {{ max_attempts: 5, backoff: 10s }}\n  leader: {{ kind: postgres }}\n",
        example().replace("${S3_ENDPOINT}", "http://x")
    );
    let c = parse(&text).expect("loads");
    let s = &c.sources[0];
    assert_eq!(s.retention.and_then(|p| p.daily), Some(7));
    assert_eq!(
        s.prune_schedule.as_ref().map(|p| p.expr.as_str()),
        Some("30 4 * * *")
    );
    assert_eq!(c.daemon.max_concurrent_jobs, 4);
    assert_eq!(c.daemon.jitter.0, std::time::Duration::from_secs(120));
    assert_eq!(c.daemon.retry.max_attempts, 5);
    assert_eq!(c.daemon.leader.kind, LeaderKind::Postgres);
    // Defaults when `daemon:` is absent.
    let c = parse(&example().replace("${S3_ENDPOINT}", "http://x")).expect("loads");
    assert_eq!(c.daemon.max_concurrent_jobs, 2);
    assert!(c.sources[0].prune_schedule.is_none());
}

#[test]
fn bad_daemon_settings_are_named() {
    let e = err(&format!(
        "{}    retention: {{ daily: 7, schedule: \"61 * * * *\" }}\n",
        example().replace("${S3_ENDPOINT}", "http://x")
    ));
    assert!(e.contains("retention.schedule"), "{e}");
    let e = err(&format!(
        "{}daemon: {{ max_concurrent_jobs: 0 }}\n",
        example().replace("${S3_ENDPOINT}", "http://x")
    ));
    assert!(e.contains("daemon.max_concurrent_jobs"), "{e}");
    let e = err(&format!(
        "{}daemon: {{ leader: {{ kind: zookeeper }} }}\n",
        example().replace("${S3_ENDPOINT}", "http://x")
    ));
    assert!(e.contains("daemon.leader.kind"), "{e}");
}

#[test]
fn verify_and_sandbox_settings() {
    let text = format!(
        "{}    verify:\n      timeout: 20m\n      schedule: \"0 3 * * *\"\n      checks:\n        \
         - {{ name: orders, sql: \"SELECT count(*) FROM orders\", expect: \"> 0\" }}\n        \
         - {{ name: answer, sql: \"SELECT 42\", expect: 42 }}\n        \
         - {{ name: three, sql: \"SELECT 1 UNION SELECT 2 UNION SELECT 3\", expect_rows: 3 }}\n        \
         - {{ name: script, command: [\"./check.sh\"] }}\n\
         sandbox:\n  postgres_bin_dir: /usr/lib/postgresql/16/bin\n  \
         kubernetes: {{ image: \"ghcr.io/x/lifeboat:1\", ttl: 2h, cpu: \"1\", memory: 2Gi }}\n",
        example().replace("${S3_ENDPOINT}", "http://127.0.0.1:9000")
    );
    let c = parse(&text).unwrap();
    let v = c.sources[0].verify.as_ref().unwrap();
    assert_eq!(v.timeout.unwrap().0, std::time::Duration::from_secs(1200));
    assert!(v.schedule.is_some());
    assert_eq!(v.checks.len(), 4);
    assert_eq!(
        v.checks[0].expect,
        Some(crate::kinds::checks::Expect::parse("> 0"))
    );
    assert_eq!(v.checks[2].expect_rows, Some(3));
    let k8s = c.sandbox.unwrap().kubernetes.unwrap();
    assert_eq!(k8s.image, "ghcr.io/x/lifeboat:1");

    let bad = format!(
        "{}    verify:\n      checks:\n        - {{ name: both, sql: \"SELECT 1\", command: [\"true\"] }}\n",
        example().replace("${S3_ENDPOINT}", "http://127.0.0.1:9000")
    );
    let e = err(&bad);
    assert!(e.contains("exactly one of"), "{e}");
    let bad = format!(
        "{}    verify:\n      timeoutt: 5m\n",
        example().replace("${S3_ENDPOINT}", "http://127.0.0.1:9000")
    );
    assert!(err(&bad).contains("timeoutt"));
}

#[test]
fn daemon_verify_sandbox_defaults_to_local_and_kubernetes_needs_its_section() {
    let base = example().replace("${S3_ENDPOINT}", "http://x");
    assert_eq!(
        parse(&base).expect("loads").daemon.verify_sandbox,
        VerifySandbox::Local
    );
    let e = err(&format!("{base}daemon: {{ verify_sandbox: kubernetes }}\n"));
    assert!(
        e.contains("daemon.verify_sandbox") && e.contains("sandbox.kubernetes"),
        "{e}"
    );
    let c = parse(&format!(
        "{base}daemon: {{ verify_sandbox: kubernetes }}\n\
         sandbox:\n  kubernetes: {{ image: \"ghcr.io/x/lifeboat-sandbox:1\" }}\n"
    ))
    .expect("loads");
    assert_eq!(c.daemon.verify_sandbox, VerifySandbox::Kubernetes);
    let e = err(&format!("{base}daemon: {{ verify_sandbox: docker }}\n"));
    assert!(e.contains("daemon.verify_sandbox"), "{e}");
}

#[test]
fn a_listener_other_hosts_reach_needs_an_api_token_or_an_explicit_none() {
    let with = |daemon: &str| {
        format!(
            "{}daemon: {daemon}\n",
            example().replace("${S3_ENDPOINT}", "http://x")
        )
    };
    for open in [
        "{ listen: \"0.0.0.0:8080\" }",
        "{ listen: \"[::]:8080\" }",
        "{ listen: \"10.1.2.3:8080\", api_token: \"\" }",
        "{ listen: \"backup.example:8080\" }",
    ] {
        let e = err(&with(open));
        assert!(
            e.contains("daemon.api_token") && e.contains("api_token: none"),
            "{open}: {e}"
        );
    }
    for fine in [
        "{ listen: \"127.0.0.1:8080\" }",
        "{ listen: \"[::1]:8080\" }",
        "{ listen: \"localhost:8080\" }",
        "{ listen: \"0.0.0.0:8080\", api_token: t0ken }",
    ] {
        let c = parse(&with(fine)).unwrap_or_else(|e| panic!("{fine}: {e}"));
        assert_eq!(
            c.daemon.api_token(),
            fine.contains("t0ken").then_some("t0ken")
        );
    }
    let c = parse(&with("{ listen: \"0.0.0.0:8080\", api_token: none }")).unwrap();
    assert_eq!(c.daemon.api_token(), None, "`none` is no token, on purpose");
}
