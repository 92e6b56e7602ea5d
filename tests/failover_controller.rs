//! The failover controller in `lifeboat run` (issue 11), with real processes: three lifeboat
//! daemons (one per site, each with its own SQLite catalog), a PostgreSQL primary and two
//! streaming standbys, DNS on a real BIND.
//!
//! - the peer endpoint refuses requests without `failover.peer_token`;
//! - a SIGSTOP of the primary PostgreSQL shorter than `unhealthy_after × probe_interval`
//!   causes no failover;
//! - kill -9 of the primary PostgreSQL and of its site's lifeboat: the secondary is promoted,
//!   DNS switched on the nameserver, writes accepted there; the DR site learns the new term;
//!   the old primary, restarted, is fenced read-only (and its restarted lifeboat, whose
//!   catalog says it is primary, learns the new term from its peers and fences it too);
//! - the controller killed after its promote step resumes when restarted, promoting once;
//! - a planned switchover repoints DR; `failover rejoin` (pg_rewind) makes the old primary a
//!   standby; failing back loses no acknowledged write;
//! - `failover execute` while the controllers run: it takes a term above every controller's
//!   term and promise, wins their votes, and every controller adopts the new term and primary;
//!   none acts on its own for that term;
//! - Redis sites (a primary, two replicas): the controllers fail over after kill -9, DR
//!   follows, and a planned switchover with a writer going loses no acknowledged key;
//! - the shipped failover runbooks run as written: `planned-switchover`, `rejoin-failback`,
//!   and `unplanned-failover` with the primary PostgreSQL killed;
//! - the etcd probe against a real etcd.

mod common;

use std::time::{Duration, Instant};

use common::dns::dig;
use common::failover::{
    Daemon, SITE_NAMES, SITES_TOKEN, Sites, log_tails, observations_at, site_configs,
    start_daemons, three_sites, wait_all_up, writer,
};
use common::servers::{PgServer, http_get, http_post_json};
use common::{Env, wait_until};

const TOKEN: &str = SITES_TOKEN;
const SITES: [&str; 3] = SITE_NAMES;

type Cluster = Sites;

fn setup(mode: &str) -> Cluster {
    three_sites(
        mode,
        "api.example.test.",
        ["192.0.2.10", "192.0.2.20", "192.0.2.30"],
    )
}

fn observations(port: u16) -> Option<serde_json::Value> {
    observations_at(port)
}

fn history(env: &Env) -> Vec<serde_json::Value> {
    let out = env.ok(&["failover", "history", "--output", "json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("history json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn read_only(pg: &PgServer) -> bool {
    pg.psql("orders", "SHOW default_transaction_read_only") == "on"
}

fn in_recovery(pg: &PgServer) -> bool {
    pg.psql("orders", "SELECT pg_is_in_recovery()") == "t"
}

/// Whether an INSERT on `pg` is accepted (through psql, which reports errors).
fn insert(pg: &PgServer, id: i64) -> bool {
    std::process::Command::new(pg.bin("psql"))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-U",
            "postgres",
            "-p",
            &pg.port().to_string(),
            "-d",
            "orders",
        ])
        .args(["-c", &format!("INSERT INTO acked (id) VALUES ({id})")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn logs_of(envs: &[Env]) -> String {
    log_tails(envs)
}

#[test]
fn controller_fails_over_on_a_quorum_and_never_on_a_short_stall() {
    let mut c = setup("automatic");
    let mut daemons = start_daemons(&c.envs, &c.ports);
    // The peer endpoint needs the token.
    assert_eq!(
        http_get(c.ports[1], "/api/v1/failover/observations", None).0,
        401
    );
    assert_eq!(
        http_get(c.ports[1], "/api/v1/failover/observations", Some("wrong")).0,
        401
    );
    wait_until("the primary is writable", Duration::from_secs(20), || {
        !read_only(&c.pgs[0])
    });

    // A stall shorter than unhealthy_after × probe_interval (3 × 1 s): no failover.
    c.pgs[0].signal("STOP");
    std::thread::sleep(Duration::from_millis(1500));
    c.pgs[0].signal("CONT");
    std::thread::sleep(Duration::from_secs(8));
    for env in &c.envs {
        assert!(history(env).is_empty(), "{}", c.log_tails());
    }
    assert!(!in_recovery(&c.pgs[0]) && !read_only(&c.pgs[0]));
    assert!(in_recovery(&c.pgs[1]) && in_recovery(&c.pgs[2]));
    assert!(insert(&c.pgs[0], 1), "{}", c.log_tails());

    // kill -9 of the primary PostgreSQL and of its site's lifeboat.
    let start = Instant::now();
    c.pgs[0].kill9();
    daemons[0].kill9();
    wait_until(
        "the secondary is promoted and DNS switched",
        Duration::from_secs(90),
        || !in_recovery(&c.pgs[1]) && dig(c.ns.addr(), "api.example.test.", "A") == ["192.0.2.20"],
    );
    let took = start.elapsed();
    eprintln!("failover with DNS: {took:?}");
    assert!(insert(&c.pgs[1], 2), "{}", c.log_tails());
    wait_until(
        "the failover is recorded done",
        Duration::from_secs(30),
        || {
            history(&c.envs[1])
                .first()
                .is_some_and(|f| f["status"] == "done")
        },
    );
    let h = history(&c.envs[1]);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["term"], 1);
    assert_eq!(h[0]["from_site"], "primary");
    assert_eq!(h[0]["to_site"], "secondary");
    assert_eq!(h[0]["mode"], "automatic");
    let steps: Vec<&str> = h[0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(steps, ["done"; 5], "{h:?}");
    // Only the secondary acted; DR learned the new term from it.
    assert!(history(&c.envs[2]).is_empty());
    wait_until("DR knows term 1", Duration::from_secs(10), || {
        observations(c.ports[2]).is_some_and(|o| o["term"] == 1 && o["primary"] == "secondary")
    });
    // `failover status` at DR (which took no step) shows the term its controller learned.
    let status: serde_json::Value =
        serde_json::from_str(&c.envs[2].ok(&["failover", "status", "--output", "json"]))
            .expect("status json");
    assert_eq!(status["primary"], "secondary", "{status}");
    assert_eq!(status["term"], 1, "{status}");

    // The metrics say it too.
    let (code, metrics) = http_get(c.ports[1], "/metrics", None);
    assert_eq!(code, 200);
    for line in [
        "lifeboat_failover_term 1",
        "lifeboat_primary_site{site=\"secondary\"} 1",
        "lifeboat_site_up{site=\"primary\",vantage=\"secondary\"} 0",
        "lifeboat_site_up{site=\"secondary\",vantage=\"dr\"} 1",
        "lifeboat_failovers_total{outcome=\"done\"} 1",
        "lifeboat_failover_duration_seconds_count 1",
        "lifeboat_failover_rpo_seconds{service=\"orders-db\"} 60",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("lifeboat_replication_lag_seconds{service=\"orders-db\",site=\"dr\"}"),
        "{metrics}"
    );

    // DR was repointed at the new primary.
    wait_until(
        "DR streams from the secondary",
        Duration::from_secs(30),
        || streams_from(&c.pgs[2]) == Some(c.pgs[1].port()),
    );

    // The old primary restarted (it crashed before it could fence itself): fenced by the
    // new primary's controller.
    c.pgs[0].restart();
    wait_until(
        "the restarted old primary is fenced",
        Duration::from_secs(30),
        || read_only(&c.pgs[0]),
    );
    assert!(!insert(&c.pgs[0], 3));
    // Its lifeboat restarted (its catalog still says it is primary, term 0): it learns term
    // 1 from its peers and keeps its site fenced.
    daemons[0] = Daemon::start(&c.envs[0], SITES[0]);
    wait_until(
        "the old primary's lifeboat learns term 1",
        Duration::from_secs(30),
        || observations(c.ports[0]).is_some_and(|o| o["term"] == 1 && o["primary"] == "secondary"),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(read_only(&c.pgs[0]), "{}", c.log_tails());
    assert!(!insert(&c.pgs[0], 4));
    // The new primary still takes writes; no second failover happened.
    assert!(insert(&c.pgs[1], 5), "{}", c.log_tails());
    assert_eq!(history(&c.envs[1]).len(), 1);
    assert_eq!(dig(c.ns.addr(), "api.example.test.", "A"), ["192.0.2.20"]);
}

/// The port `pg` streams its WAL from, if it streams.
fn streams_from(pg: &PgServer) -> Option<u16> {
    pg.psql(
        "orders",
        "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'",
    )
    .parse()
    .ok()
}

/// Stops a writer and returns the ids it got acknowledged (it must have written a fair few).
fn stop_writer(
    stop: &std::sync::atomic::AtomicBool,
    w: std::thread::JoinHandle<()>,
    acked: &std::sync::Mutex<Vec<i64>>,
) -> Vec<i64> {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    w.join().expect("writer");
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 20,
        "the writer wrote too little: {}",
        acked.len()
    );
    acked
}

/// Runs `execute --to` with a writer going throughout; returns the acknowledged ids that
/// are not on the new primary (must be none).
fn switch_with_writer(c: &Cluster, to: usize, from: usize, first_id: i64) -> Vec<i64> {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = writer(
        vec![c.pgs[from].url("orders"), c.pgs[to].url("orders")],
        stop.clone(),
        acked.clone(),
        first_id,
    );
    std::thread::sleep(Duration::from_millis(1000));
    c.envs[0].ok(&["failover", "execute", "--to", SITES[to], "--yes"]);
    std::thread::sleep(Duration::from_millis(1000));
    let acked = stop_writer(&stop, w, &acked);
    let on_new: std::collections::BTreeSet<i64> = c.pgs[to]
        .psql("orders", "SELECT id FROM acked")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    acked
        .into_iter()
        .filter(|id| !on_new.contains(id))
        .collect()
}

#[test]
fn switchover_repoints_dr_then_rejoin_and_failback_lose_nothing() {
    let c = setup("manual");
    // Planned switchover primary → secondary: nothing lost, DR now streams from secondary.
    let lost = switch_with_writer(&c, 1, 0, 0);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let h = history(&c.envs[0]);
    let repoint = h[0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "repoint")
        .cloned()
        .expect("repoint step");
    assert_eq!(repoint["status"], "done", "{h:?}");
    assert!(
        repoint["detail"]
            .as_str()
            .is_some_and(|d| d.contains("orders-db at dr: streams from secondary")),
        "{repoint}"
    );
    assert_eq!(streams_from(&c.pgs[2]), Some(c.pgs[1].port()));
    assert!(insert(&c.pgs[1], -10));
    wait_until(
        "DR replays the new primary's writes",
        Duration::from_secs(30),
        || c.pgs[2].psql("orders", "SELECT count(*) FROM acked WHERE id = -10") == "1",
    );
    // Rejoining the primary (the primary site itself): refused.
    let refused = c.envs[0].run(&["failover", "rejoin", "secondary"]);
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        common::text(&refused.stderr)
    );
    // The old primary rejoins as a standby of secondary (pg_rewind), twice: idempotent.
    let out = c.envs[0].ok(&["failover", "rejoin", "primary"]);
    assert!(out.contains("pg_rewind"), "{out}");
    assert!(in_recovery(&c.pgs[0]));
    assert_eq!(streams_from(&c.pgs[0]), Some(c.pgs[1].port()));
    let again = c.envs[0].ok(&["failover", "rejoin", "primary"]);
    assert!(again.contains("already a standby"), "{again}");
    wait_until(
        "the rejoined primary replays",
        Duration::from_secs(30),
        || c.pgs[0].psql("orders", "SELECT count(*) FROM acked WHERE id = -10") == "1",
    );
    // Failback: a planned switchover secondary → primary, nothing lost.
    let lost = switch_with_writer(&c, 0, 1, 1_000_000);
    assert!(
        lost.is_empty(),
        "acknowledged writes lost on failback: {lost:?}"
    );
    assert!(!in_recovery(&c.pgs[0]) && !read_only(&c.pgs[0]));
    assert!(read_only(&c.pgs[1]) || in_recovery(&c.pgs[1]));
    assert_eq!(streams_from(&c.pgs[2]), Some(c.pgs[0].port()));
    assert_eq!(dig(c.ns.addr(), "api.example.test.", "A"), ["192.0.2.10"]);
    let h = history(&c.envs[0]);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[1]["term"], 2);
    assert_eq!(h[1]["status"], "done");
}

/// The etcd probe (`GET /health`) against a real etcd: healthy while it runs, unreachable
/// once it is stopped.
#[test]
fn etcd_probe_sees_a_healthy_member_and_a_dead_one() {
    let mut etcd = common::etcd::EtcdServer::start();
    let url = etcd.endpoint();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let up = rt.block_on(lifeboat::kinds::probe::probe("etcd", &url));
    assert!(up.is_ok(), "{up:?}");
    etcd.stop();
    let down = rt.block_on(lifeboat::kinds::probe::probe("etcd", &url));
    assert!(
        matches!(
            down,
            Err(lifeboat::kinds::probe::ProbeError::Unreachable { .. })
        ),
        "{down:?}"
    );
}

/// The secondary's controller killed right after it promoted (failpoint), then restarted: it
/// resumes the persisted failover at the next step (DNS switched, verified), the promotion
/// recorded once and not taken again.
#[test]
fn controller_killed_after_promote_resumes_without_promoting_again() {
    let mut c = setup("automatic");
    let mut primary = Daemon::start(&c.envs[0], SITES[0]);
    let _dr = Daemon::start(&c.envs[2], SITES[2]);
    let ports = c.ports.clone();
    let pg0_dir = c.pgs[0].data_dir().to_path_buf();
    // Once every vantage point sees every site, crash the primary site (PostgreSQL + its
    // lifeboat); meanwhile the secondary's daemon runs with the failpoint armed.
    let killer = std::thread::spawn(move || {
        wait_all_up(&ports);
        let pid: u32 = std::fs::read_to_string(pg0_dir.join("postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid");
        primary.kill9();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    });
    let stalled = c.envs[1].stalled_at(&["run"], "failover-after-promote");
    killer.join().expect("killer");
    common::kill9(stalled);
    // Promoted, recorded, but DNS not switched yet.
    assert!(!in_recovery(&c.pgs[1]));
    assert_eq!(dig(c.ns.addr(), "api.example.test.", "A"), ["192.0.2.10"]);
    let h = history(&c.envs[1]);
    assert_eq!(h[0]["status"], "running", "{h:?}");
    let detail = |h: &[serde_json::Value], step: &str| {
        h[0]["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["step"] == step)
            .map(|s| (s["status"].clone(), s["detail"].clone()))
    };
    let promoted = detail(&h, "promote").expect("promote recorded");
    assert_eq!(promoted.0, "done");
    // Restarted: it finishes the failover of term 1.
    let _secondary = Daemon::start(&c.envs[1], SITES[1]);
    wait_until(
        "DNS switched by the resumed controller",
        Duration::from_secs(60),
        || dig(c.ns.addr(), "api.example.test.", "A") == ["192.0.2.20"],
    );
    wait_until(
        "the failover recorded done",
        Duration::from_secs(30),
        || {
            history(&c.envs[1])
                .first()
                .is_some_and(|f| f["status"] == "done")
        },
    );
    let h = history(&c.envs[1]);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["term"], 1);
    // The promotion's record is the first one: it was not taken again.
    assert_eq!(detail(&h, "promote"), Some(promoted));
    assert!(insert(&c.pgs[1], 7), "{}", c.log_tails());
    c.pgs[0].kill9();
}

/// `failover execute` with the three controllers running (automatic): it wins their votes,
/// every controller adopts the new term and primary, and none moves anything on its own
/// afterwards; a controller that promised a newer term to another move refuses (exit 3, it
/// says why) unless `--force`.
#[test]
fn execute_beside_running_controllers_takes_a_fresh_term_they_all_adopt() {
    let c = setup("automatic");
    let _daemons = start_daemons(&c.envs, &c.ports);
    // The vote endpoint needs the token too.
    assert_eq!(
        http_post_json(c.ports[2], "/api/v1/failover/vote", None, "{}").0,
        401
    );
    let adopted = |term: i64, primary: &str| {
        c.ports
            .iter()
            .all(|p| observations(*p).is_some_and(|o| o["term"] == term && o["primary"] == primary))
    };

    // A planned switchover to secondary: term 1, every controller told.
    let out = c.envs[0].ok(&["failover", "execute", "--to", "secondary", "--yes"]);
    assert!(out.contains("failover term 1"), "{out}");
    for s in SITES {
        assert!(
            out.contains(&format!(
                "controller {s}: vote granted; told: term 1, primary secondary"
            )),
            "{out}"
        );
    }
    assert!(!in_recovery(&c.pgs[1]) && !read_only(&c.pgs[1]));
    assert!(insert(&c.pgs[1], 42));
    assert!(read_only(&c.pgs[0]) || in_recovery(&c.pgs[0]));
    wait_until(
        "every controller adopts term 1",
        Duration::from_secs(10),
        || adopted(1, "secondary"),
    );
    // None of them acts on its own: a few rounds later no failover in their catalogs, the
    // new primary still writable and the old one fenced.
    std::thread::sleep(Duration::from_secs(6));
    for env in &c.envs[1..] {
        assert!(history(env).is_empty(), "{}", c.log_tails());
    }
    let h = history(&c.envs[0]);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0]["term"].as_i64(), h[0]["status"].as_str()),
        (Some(1), Some("done"))
    );
    assert_eq!(h[0]["plan"]["votes"]["dr"], "vote granted", "{h:?}");
    // `failover status` shows every vantage point's view, from any site.
    let st = c.envs[2].ok(&["failover", "status", "--output", "json"]);
    let st: serde_json::Value = serde_json::from_str(&st).expect("status json");
    assert_eq!(st["term"], 1, "{st}");
    for s in SITES {
        assert_eq!(st["vantage_points"][s]["term"], 1, "{st}");
        assert_eq!(
            st["vantage_points"][s]["sites"]["secondary"]["failures_in_a_row"], 0,
            "{st}"
        );
    }
    let table = c.envs[2].ok(&["failover", "status"]);
    assert!(
        table.contains("health per vantage point") && table.contains("1/secondary"),
        "{table}"
    );
    assert!(!read_only(&c.pgs[1]), "{}", c.log_tails());
    assert!(adopted(1, "secondary"));
    // Run again: already the primary, nothing moves.
    let again = c.envs[0].run(&["failover", "execute", "--to", "secondary", "--yes"]);
    assert_eq!(
        again.status.code(),
        Some(3),
        "{}",
        common::text(&again.stderr)
    );

    // DR's controller promises term 2 to another move (an election in flight).
    let (code, body) = http_post_json(
        c.ports[2],
        "/api/v1/failover/vote",
        Some(TOKEN),
        r#"{"term":2,"to":"dr","by":"another election"}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""granted":true"#), "{body}");
    wait_until("DR publishes its promise", Duration::from_secs(10), || {
        observations(c.ports[2]).is_some_and(|o| o["promised"] == 2)
    });
    // The plan takes the term after the promise; execute is refused and says why.
    let plan = c.envs[0].ok(&["failover", "plan", "--to", "dr", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("plan json");
    assert_eq!(plan["term"], 3, "{plan}");
    let refused = c.envs[0].run(&["failover", "execute", "--to", "dr", "--yes"]);
    let err = common::text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{err}");
    assert!(
        err.contains("controller at dr refused term 3")
            && err.contains("promised term 2 to dr (another election)")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        history(&c.envs[0]).len(),
        1,
        "a refused execute records nothing"
    );
    // The operator knows that election is dead: --force goes ahead. Term 3 was promised by
    // the controllers that granted it before DR refused, so it is never used: term 4.
    let out = c.envs[0].ok(&["failover", "execute", "--to", "dr", "--yes", "--force"]);
    assert!(out.contains("failover term 4"), "{out}");
    assert!(
        out.contains("controller dr: vote refused (it promised term 2"),
        "{out}"
    );
    assert!(!in_recovery(&c.pgs[2]) && insert(&c.pgs[2], 43));
    wait_until(
        "every controller adopts term 4",
        Duration::from_secs(10),
        || adopted(4, "dr"),
    );
}

/// The shipped runbooks `planned-switchover`, `rejoin-failback` and `unplanned-failover`, run
/// as written (`runbook run NAME --var ... --yes`) against the three real PostgreSQL servers.
#[test]
fn the_shipped_failover_runbooks_run_against_real_servers() {
    let mut c = setup("manual");
    let run = |args: &[&str]| {
        let mut a = vec!["runbook", "run"];
        a.extend_from_slice(args);
        a.push("--yes");
        let out = c.envs[0].run(&a);
        let (o, e) = (common::text(&out.stdout), common::text(&out.stderr));
        assert!(out.status.success(), "runbook {args:?} failed:\n{o}\n{e}");
        o
    };
    // Planned switchover to secondary.
    let out = run(&["planned-switchover", "--var", "TO=secondary"]);
    assert!(
        out.contains("failover term 1: primary → secondary done"),
        "{out}"
    );
    assert!(!in_recovery(&c.pgs[1]) && insert(&c.pgs[1], 1));
    assert!(read_only(&c.pgs[0]));
    assert_eq!(dig(c.ns.addr(), "api.example.test.", "A"), ["192.0.2.20"]);
    // Rejoin the old primary (pg_rewind) and fail back to it.
    let out = run(&["rejoin-failback", "--var", "SITE=primary"]);
    assert!(out.contains("pg_rewind"), "{out}");
    assert!(
        out.contains("failover term 2: secondary → primary done"),
        "{out}"
    );
    assert!(!in_recovery(&c.pgs[0]) && insert(&c.pgs[0], 2));
    assert_eq!(
        c.pgs[0].psql("orders", "SELECT count(*) FROM acked WHERE id = 1"),
        "1",
        "the row written on secondary survived the failback"
    );
    assert_eq!(dig(c.ns.addr(), "api.example.test.", "A"), ["192.0.2.10"]);
    // The site left behind rejoins too; then the primary dies: unplanned failover.
    c.envs[0].ok(&["failover", "rejoin", "secondary"]);
    wait_until("secondary replays", Duration::from_secs(30), || {
        c.pgs[1].psql("orders", "SELECT count(*) FROM acked WHERE id = 2") == "1"
    });
    c.pgs[0].kill9();
    let out = run(&["unplanned-failover", "--var", "TO=secondary"]);
    assert!(
        out.contains("failover term 3: primary → secondary done"),
        "{out}"
    );
    assert!(!in_recovery(&c.pgs[1]) && insert(&c.pgs[1], 3));
    assert_eq!(dig(c.ns.addr(), "api.example.test.", "A"), ["192.0.2.20"]);
}

/// Sets `w:ID` every 50 ms on the first of `urls` that takes it, recording the ids whose SET
/// was acknowledged (`+OK`; a replica's READONLY or a fenced primary's NOREPLICAS is not).
fn redis_writer(
    urls: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
) -> std::thread::JoinHandle<()> {
    use common::redis::{Client, Reply};
    use lifeboat::kinds::redis::client::Conn;
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut conns: Vec<Option<Client>> = urls.iter().map(|_| None).collect();
        let mut id = 0;
        while !stop.load(Ordering::SeqCst) {
            id += 1;
            for (i, url) in urls.iter().enumerate() {
                if conns[i].is_none() {
                    conns[i] = Conn::parse(url).and_then(|c| c.connect()).ok();
                }
                let Some(c) = conns[i].as_mut() else { continue };
                match c.cmd(&["SET", &format!("w:{id}"), "1"]) {
                    Ok(Reply::Status(s)) if s == "OK" => {
                        acked.lock().expect("lock").push(id);
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => conns[i] = None,
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

fn redis_master_port(r: &common::redis::RedisServer) -> Option<u16> {
    let info = r.client().ok()?.cmd(&["INFO", "replication"]).ok()?.text();
    if !info.contains("master_link_status:up") {
        return None;
    }
    info.lines()
        .find_map(|l| l.strip_prefix("master_port:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Redis sites (a primary and two replicas) under the three controllers: kill -9 of the
/// primary's Redis and its lifeboat → the controllers promote secondary (nothing written
/// before the crash lost), DR follows it, DNS switched; then a planned switchover to DR with
/// a writer going loses no acknowledged key, and the old primary refuses writes (NOREPLICAS).
#[test]
fn redis_sites_switch_over_and_fail_over_under_the_controllers() {
    use common::redis::RedisServer;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    let r0 = RedisServer::start(&[]);
    let port = r0.port().to_string();
    let mut rs = [
        r0,
        RedisServer::start(&["--replicaof", "127.0.0.1", &port]),
        RedisServer::start(&["--replicaof", "127.0.0.1", &port]),
    ];
    for r in &rs[1..] {
        wait_until("the replica is linked", Duration::from_secs(30), || {
            redis_master_port(r).is_some()
        });
    }
    let services: Vec<String> = rs
        .iter()
        .map(|r| {
            format!(
                "sessions: {{ kind: redis, url: \"{}\", source: sessions }}",
                r.url()
            )
        })
        .collect();
    let source = format!(
        "{{ name: sessions, kind: redis, url: \"{}\", store: local, objectives: {{ rpo: 1m, rto: 5m }} }}",
        rs[0].url()
    );
    let (envs, ports, ns) = site_configs(
        "automatic",
        &services,
        &source,
        "api.example.test.",
        ["192.0.2.10", "192.0.2.20", "192.0.2.30"],
    );
    let mut daemons = start_daemons(&envs, &ports);

    // Unplanned: kill -9 of the primary's Redis and of its site's lifeboat.
    rs[0].cmd(&["SET", "before-crash", "1"]);
    for r in &rs[1..] {
        wait_until(
            "the replicas have the last write",
            Duration::from_secs(10),
            || r.cmd(&["EXISTS", "before-crash"]).text() == "1",
        );
    }
    daemons[0].kill9();
    rs[0].stop();
    let t = Instant::now();
    while rs[1]
        .client()
        .ok()
        .and_then(|mut c| c.cmd(&["SET", "after", "1"]).ok())
        .is_none_or(|r| r.text() != "OK")
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "secondary not promoted:\n{}",
            logs_of(&envs)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("secondary writable {:?} after the kill", t.elapsed());
    wait_until("DNS follows", Duration::from_secs(30), || {
        dig(ns.addr(), "api.example.test.", "A") == ["192.0.2.20"]
    });
    assert_eq!(rs[1].cmd(&["EXISTS", "before-crash"]).text(), "1");
    wait_until("DR follows secondary", Duration::from_secs(30), || {
        redis_master_port(&rs[2]) == Some(rs[1].port())
    });
    let h = history(&envs[1]);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0]["term"].as_i64(), h[0]["status"].as_str()),
        (Some(1), Some("done"))
    );

    // Planned switchover secondary → dr with a writer going (the primary site's lifeboat is
    // still dead: two of three votes are a quorum): nothing acknowledged is lost. Until the
    // live controllers have seen the failover finish they refuse (tested above).
    wait_until("no controller is moving", Duration::from_secs(10), || {
        ports[1..]
            .iter()
            .all(|p| observations(*p).is_some_and(|o| o["moving"] == false && o["term"] == 1))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = redis_writer(vec![rs[1].url(), rs[2].url()], stop.clone(), acked.clone());
    std::thread::sleep(Duration::from_secs(1));
    let out = envs[1].ok(&["failover", "execute", "--to", "dr", "--yes"]);
    assert!(
        out.contains("failover term 2: secondary → dr done"),
        "{out}"
    );
    assert!(
        out.contains("controller primary: no vote: unreachable"),
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let acked = stop_writer(&stop, w, &acked);
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| rs[2].cmd(&["EXISTS", &format!("w:{id}")]).text() != "1")
        .collect();
    assert!(lost.is_empty(), "acknowledged keys lost: {lost:?}");
    assert!(
        rs[2]
            .cmd(&["INFO", "replication"])
            .text()
            .contains("role:master")
    );
    assert!(rs[1].cmd(&["SET", "x", "1"]).text().contains("NOREPLICAS"));
    assert_eq!(dig(ns.addr(), "api.example.test.", "A"), ["192.0.2.30"]);
    wait_until(
        "the live controllers adopt term 2",
        Duration::from_secs(10),
        || {
            ports[1..]
                .iter()
                .all(|p| observations(*p).is_some_and(|o| o["term"] == 2 && o["primary"] == "dr"))
        },
    );
}
