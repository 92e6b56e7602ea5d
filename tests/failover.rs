//! `lifeboat failover` against real servers: a PostgreSQL primary and its streaming standby
//! (pg_basebackup -R) on loopback, DNS on a real BIND.
//!
//! - planned switchover with a writer inserting every 50 ms: no acknowledged write lost, the
//!   new primary writable, the old one read-only, DNS switched and agreed;
//! - `execute` killed right after the fence step (failpoint), run again: it completes and
//!   does not fence twice; killed before and after every step in turn: each step is done
//!   exactly once.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dns::dig;
use common::failover::{setup, writer};
use common::servers::PgServer;
use common::{Env, text, wait_until};

fn history(env: &Env) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["failover", "history", "--output", "json"]))
        .expect("history json")
}

/// `failover execute --to TO --yes --output json`, which must succeed: its outcome.
fn execute_json(env: &Env, to: &str) -> serde_json::Value {
    let out = env.ok(&[
        "failover", "execute", "--to", to, "--yes", "--output", "json",
    ]);
    serde_json::from_str(&out).expect("execute json")
}

fn is_read_only(pg: &PgServer) -> bool {
    pg.psql("orders", "SHOW default_transaction_read_only") == "on"
}

fn in_recovery(pg: &PgServer) -> bool {
    pg.psql("orders", "SELECT pg_is_in_recovery()") == "t"
}

#[test]
fn planned_switchover_loses_no_acknowledged_write() {
    let mut s = setup();
    let plan = s.env.ok(&["failover", "plan", "--to", "secondary"]);
    assert!(plan.contains("primary → secondary"), "{plan}");
    assert!(!plan.contains("BLOCKED"), "{plan}");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = writer(
        vec![s.primary.url("orders"), s.standby.url("orders")],
        stop.clone(),
        acked.clone(),
        0,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = s.env.ok(&[
        "failover",
        "execute",
        "--to",
        "secondary",
        "--yes",
        "--output",
        "json",
    ]);
    let outcome: serde_json::Value = serde_json::from_str(&out).expect("outcome json");
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    w.join().expect("writer");

    assert_eq!(outcome["term"], 1, "{outcome}");
    for step in ["decide", "fence", "promote", "dns", "verify", "total"] {
        assert!(outcome["timeline"][step].is_u64(), "{step} in {outcome}");
    }
    // Every acknowledged write is on the new primary.
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 20,
        "the writer wrote too little: {}",
        acked.len()
    );
    let on_new: Vec<i64> = s
        .standby
        .psql("orders", "SELECT id FROM acked ORDER BY id")
        .lines()
        .map(|l| l.parse().expect("id"))
        .collect();
    let lost: Vec<&i64> = acked.iter().filter(|id| !on_new.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // New primary writable, old primary read-only.
    assert!(!in_recovery(&s.standby));
    s.standby
        .psql("orders", "INSERT INTO acked (id) VALUES (-1)");
    assert!(is_read_only(&s.primary));
    let refused = std::process::Command::new(s.primary.bin("psql"))
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &s.primary.port().to_string(), "-d", "orders"])
        .args(["-c", "INSERT INTO acked (id) VALUES (-2)"])
        .output()
        .expect("psql");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("read-only"),
        "{}",
        text(&refused.stderr)
    );
    // DNS switched, as the nameserver itself answers.
    assert_eq!(dig(s.ns.addr(), "api.example.test.", "A"), ["192.0.2.20"]);
    // The fence lasts across a restart of the old primary.
    s.primary.stop();
    s.primary.restart();
    assert!(is_read_only(&s.primary));
    // Recorded: one failover, every step done.
    let h = history(&s.env);
    let f = &h[0];
    assert_eq!(f["status"], "done", "{h}");
    assert_eq!(f["from_site"], "primary");
    assert_eq!(f["to_site"], "secondary");
    let steps: Vec<&str> = f["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(steps, ["done"; 5], "{h}");
    // Moving to where the primary already is: refused, nothing changed.
    let again = s
        .env
        .run(&["failover", "execute", "--to", "secondary", "--yes"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already the primary"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn execute_killed_after_the_fence_resumes_without_fencing_again() {
    let s = setup();
    let child = s.env.stalled_at(
        &["failover", "execute", "--to", "secondary", "--yes"],
        "failover-after-fence",
    );
    common::kill9(child);

    // Killed after the fence: fenced, not promoted, recorded as running with fence done.
    assert!(is_read_only(&s.primary));
    assert!(in_recovery(&s.standby));
    let h = history(&s.env);
    assert_eq!(h[0]["status"], "running", "{h}");
    assert_eq!(h[0]["steps"][0]["step"], "fence");
    assert_eq!(h[0]["steps"][0]["status"], "done");
    let fenced_at = h[0]["steps"][0]["finished_at"].clone();
    let status = s.env.ok(&["failover", "status"]);
    assert!(status.contains("UNFINISHED"), "{status}");
    // Another target is refused while this one is unfinished.
    let other = s
        .env
        .run(&["failover", "execute", "--to", "primary", "--yes"]);
    assert!(!other.status.success());

    // Resume: completes, the fence is not taken again.
    let outcome = execute_json(&s.env, "secondary");
    assert_eq!(outcome["term"], 1, "{outcome}");
    assert_eq!(outcome["steps"][0]["step"], "fence");
    assert_eq!(outcome["steps"][0]["resumed"], true, "{outcome}");
    for i in 1..5 {
        assert_eq!(outcome["steps"][i]["resumed"], false, "{outcome}");
    }
    assert!(!in_recovery(&s.standby));
    assert_eq!(dig(s.ns.addr(), "api.example.test.", "A"), ["192.0.2.20"]);
    let h = history(&s.env);
    assert_eq!(h.as_array().map(Vec::len), Some(1), "one failover: {h}");
    assert_eq!(h[0]["status"], "done");
    assert_eq!(
        h[0]["steps"][0]["finished_at"], fenced_at,
        "fence recorded once"
    );
    // Running it again does nothing more.
    let again = s
        .env
        .run(&["failover", "execute", "--to", "secondary", "--yes"]);
    assert!(!again.status.success());
    assert_eq!(history(&s.env).as_array().map(Vec::len), Some(1));
}

#[test]
fn manual_failover_with_the_primary_down_needs_force_and_accept_data_loss() {
    let mut s = setup();
    s.primary
        .psql("orders", "INSERT INTO acked (id) VALUES (1)");
    wait_until(
        "the standby replays the row",
        Duration::from_secs(30),
        || s.standby.psql("orders", "SELECT count(*) FROM acked") == "1",
    );
    s.primary.stop();
    let plan = s.env.ok(&["failover", "plan", "--to", "secondary"]);
    assert!(plan.contains("BLOCKED"), "{plan}");
    assert!(
        plan.contains("--force") && plan.contains("--accept-data-loss"),
        "{plan}"
    );
    // Refused without the flags (exit 3), nothing changed.
    let refused = s
        .env
        .run(&["failover", "execute", "--to", "secondary", "--yes"]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(in_recovery(&s.standby));
    assert!(history(&s.env).as_array().is_some_and(Vec::is_empty));
    // --force alone is not enough: the data at risk is unknown.
    let refused = s.env.run(&[
        "failover",
        "execute",
        "--to",
        "secondary",
        "--yes",
        "--force",
    ]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("--accept-data-loss"));
    let out = s.env.ok(&[
        "failover",
        "execute",
        "--to",
        "secondary",
        "--yes",
        "--force",
        "--accept-data-loss",
        "--output",
        "json",
    ]);
    let outcome: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        outcome["steps"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("NOT confirmed")),
        "{outcome}"
    );
    assert!(!in_recovery(&s.standby));
    s.standby
        .psql("orders", "INSERT INTO acked (id) VALUES (2)");
    assert_eq!(s.standby.psql("orders", "SELECT count(*) FROM acked"), "2");
    assert_eq!(dig(s.ns.addr(), "api.example.test.", "A"), ["192.0.2.20"]);
    assert_eq!(history(&s.env)[0]["mode"], "manual");
}

/// The failover tables on both catalog engines: recorded once, steps done once.
#[test]
fn failover_rows_on_sqlite_and_postgres() {
    use lifeboat::catalog::Catalog;
    use lifeboat::config::SecretString;
    let pg = PgServer::start();
    pg.create_db("catalog");
    let dir = tempfile::tempdir().expect("temp dir");
    let urls = [
        format!("sqlite://{}", dir.path().join("catalog.db").display()),
        pg.url("catalog"),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for url in urls {
        rt.block_on(async {
            let c = Catalog::open(&SecretString::new(url.clone()))
                .await
                .expect("open");
            let now = chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
                .expect("time")
                .with_timezone(&chrono::Utc);
            let plan = serde_json::json!({"to": "secondary"});
            for _ in 0..2 {
                c.failover_begin(7, "primary", "secondary", "planned", &plan, now)
                    .await
                    .expect("begin");
                c.failover_step_start(7, "fence", now).await.expect("start");
            }
            c.failover_step_done(7, "fence", "fenced", now)
                .await
                .expect("done");
            let later = now + chrono::Duration::seconds(5);
            c.failover_step_done(7, "fence", "again", later)
                .await
                .expect("done again");
            let rows = c.failovers(10).await.expect("list");
            assert_eq!(rows.len(), 1, "{url}");
            assert_eq!(rows[0].term, 7);
            assert_eq!(rows[0].status, "running");
            assert_eq!(rows[0].steps.len(), 1);
            assert!(rows[0].steps[0].done());
            assert_eq!(rows[0].steps[0].detail.as_deref(), Some("fenced"), "{url}");
            c.failover_finish(7, "done", &serde_json::json!({"total": 12}), None, later)
                .await
                .expect("finish");
            let rows = c.failovers(10).await.expect("list");
            assert_eq!(rows[0].status, "done");
            assert_eq!(rows[0].timeline, Some(serde_json::json!({"total": 12})));
            assert_eq!(rows[0].plan, Some(plan));
            // The controller's state and vote book (migration 0015): saved, replaced, read.
            assert_eq!(c.controller_load("primary").await.expect("load"), None);
            c.controller_save("primary", "{\"term\":1}", "{}", now)
                .await
                .expect("save");
            c.controller_save("primary", "{\"term\":2}", "{\"voted\":null}", later)
                .await
                .expect("save again");
            assert_eq!(
                c.controller_load("primary").await.expect("load"),
                Some(("{\"term\":2}".to_string(), "{\"voted\":null}".to_string())),
                "{url}"
            );
        });
    }
}

#[test]
fn redis_switchover_fences_the_old_primary_and_promotes_the_replica() {
    use common::redis::RedisServer;
    let primary = RedisServer::start(&[]);
    let port = primary.port().to_string();
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port]);
    wait_until("the replica is linked", Duration::from_secs(30), || {
        replica
            .cmd(&["INFO", "replication"])
            .text()
            .contains("master_link_status:up")
    });
    for i in 0..100 {
        primary.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    let env = Env::new();
    env.write_config(&format!(
        r#"
catalog: sqlite://./catalog.db
stores:
  local: {{ url: "file://./store" }}
encryption:
  recipients: ["{{recipient}}"]
sources: []
sites:
  - name: primary
    services:
      sessions: {{ kind: redis, url: "{p}" }}
  - name: secondary
    services:
      sessions: {{ kind: redis, url: "{r}" }}
failover:
  mode: manual
"#,
        p = primary.url(),
        r = replica.url(),
    ));
    let status = env.ok(&["failover", "status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["primary"], "primary", "{status}");
    env.ok(&["failover", "execute", "--to", "secondary", "--yes"]);
    // Every key made it; the new primary takes writes, the old one refuses them.
    assert_eq!(replica.cmd(&["DBSIZE"]).text(), "100");
    assert!(
        replica
            .cmd(&["INFO", "replication"])
            .text()
            .contains("role:master")
    );
    assert_eq!(replica.cmd(&["SET", "after", "1"]).text(), "OK");
    let refused = primary.cmd(&["SET", "after", "2"]).text();
    assert!(refused.contains("NOREPLICAS"), "{refused}");
    let status = env.ok(&["failover", "status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["primary"], "secondary", "{status}");
}

/// `execute` killed (kill -9) after each persisted step in turn, and before each step's
/// action, then run again: it completes, every step recorded done exactly once, the steps
/// done before the crash are not taken again.
#[test]
fn execute_killed_at_every_step_resumes_and_takes_each_step_once() {
    const STEPS: [&str; 5] = ["fence", "promote", "repoint", "dns", "verify"];
    for (i, step) in STEPS.iter().enumerate() {
        for when in ["before", "after"] {
            let s = setup();
            let failpoint = format!("failover-{when}-{step}");
            let child = s.env.stalled_at(
                &["failover", "execute", "--to", "secondary", "--yes"],
                &failpoint,
            );
            common::kill9(child);
            let h = history(&s.env);
            assert_eq!(h[0]["status"], "running", "{failpoint}: {h}");
            let finished_before: Vec<serde_json::Value> = (0..i)
                .map(|k| h[0]["steps"][k]["finished_at"].clone())
                .collect();
            let outcome = execute_json(&s.env, "secondary");
            // Done before the crash: not taken again; the interrupted one and later: taken.
            let done = if when == "after" { i + 1 } else { i };
            for k in 0..5 {
                assert_eq!(
                    outcome["steps"][k]["resumed"],
                    k < done,
                    "{failpoint}: step {k}: {outcome}"
                );
            }
            assert!(!in_recovery(&s.standby), "{failpoint}");
            assert!(is_read_only(&s.primary), "{failpoint}");
            assert_eq!(
                dig(s.ns.addr(), "api.example.test.", "A"),
                ["192.0.2.20"],
                "{failpoint}"
            );
            let h = history(&s.env);
            assert_eq!(h.as_array().map(Vec::len), Some(1), "{failpoint}: {h}");
            assert_eq!(h[0]["status"], "done", "{failpoint}: {h}");
            for (k, at) in finished_before.iter().enumerate() {
                assert_eq!(
                    &h[0]["steps"][k]["finished_at"], at,
                    "{failpoint}: step {k} once"
                );
            }
            let steps = h[0]["steps"].as_array().expect("steps");
            assert_eq!(steps.len(), 5, "{failpoint}: {h}");
            assert!(
                steps.iter().all(|s| s["status"] == "done"),
                "{failpoint}: {h}"
            );
        }
    }
}
