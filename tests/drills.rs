//! Drill measurement against a real PostgreSQL: canary writes every 100 ms through an
//! in-process proxy; the test blackholes the proxy (the writer path) for 2 s and the
//! measured RTO is 2 s within the canary resolution, with nothing acknowledged lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::PgServer;
use lifeboat::model::{Clock, SystemClock};
use lifeboat::ops::drill::canary::{PgCanary, write_until};
use lifeboat::ops::drill::proxy::{Mode, Proxy};
use lifeboat::policy::drill::{DrillVerdict, Expected, judge, measure};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_path_stopped_for_two_seconds_measures_rto_two_seconds() {
    let pg = PgServer::start();
    pg.create_db("app");
    let proxy = Proxy::start("127.0.0.1:0", format!("127.0.0.1:{}", pg.port()))
        .await
        .expect("proxy");
    let url = pg.url("app").replacen(
        &format!(":{}/", pg.port()),
        &format!(":{}/", proxy.addr.port()),
        1,
    );
    assert!(url.contains(&proxy.addr.port().to_string()), "{url}");
    let canary = Arc::new(
        PgCanary::connect(&url, "drill-test", Duration::from_secs(5))
            .await
            .expect("canary"),
    );
    let (_, _, m) = write_through_a_2s_fault(
        canary.clone(),
        |clock| {
            let at = clock.now();
            proxy.set(Mode::Blackhole);
            at
        },
        || {
            proxy.set(Mode::Pass);
            assert_eq!(proxy.mode(), Mode::Pass);
        },
        || canary.survivors(),
    )
    .await;
    let rto = m.rto_ms.expect("recovered");
    assert!(
        (1900..=2300).contains(&rto),
        "RTO {rto} ms for a 2000 ms outage (resolution 100 ms): {m:?}"
    );
    assert!(m.gaps.is_empty() && m.lost.is_empty(), "{m:?}");
    assert!(m.rpo_ms.expect("rpo") <= 200, "{m:?}");
    assert!(m.sent >= 45, "{m:?}");
    let j = judge(
        &m,
        &Expected {
            rpo: Some(Duration::from_secs(1)),
            rto: Some(Duration::from_secs(30)),
        },
        &[("blackhole".into(), 1)],
    );
    assert_eq!(j.verdict, DrillVerdict::Pass, "{j:?}");
    // Objectives tighter than what happened: breached.
    let j = judge(
        &m,
        &Expected {
            rpo: None,
            rto: Some(Duration::from_secs(1)),
        },
        &[("blackhole".into(), 1)],
    );
    assert_eq!(j.verdict, DrillVerdict::Breached, "{j:?}");
    canary.close().await;
}

/// Canary writes every 100 ms through `canary`: 1.5 s before `fault` (which says when the
/// fault began), 2 s of it, `heal`, 1.5 s after. Returns the writes, those that survived and
/// their measurement.
async fn write_through_a_2s_fault<C, S>(
    canary: Arc<C>,
    fault: impl FnOnce(&dyn Clock) -> chrono::DateTime<chrono::Utc>,
    heal: impl FnOnce(),
    survivors: impl FnOnce() -> S,
) -> (
    Vec<lifeboat::policy::drill::Canary>,
    std::collections::BTreeSet<u64>,
    lifeboat::policy::drill::Measurement,
)
where
    C: lifeboat::ops::drill::canary::Writer,
    S: std::future::Future<
            Output = Result<
                std::collections::BTreeSet<u64>,
                lifeboat::ops::drill::canary::CanaryError,
            >,
        >,
{
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_until(
        canary,
        clock.clone(),
        Duration::from_millis(100),
        Duration::from_secs(5),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fault_at = fault(&*clock);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    heal();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let canaries = writer.await.expect("writer");
    let survived = survivors().await.expect("survivors");
    let m = measure(&canaries, &survived, fault_at, Duration::from_millis(100));
    (canaries, survived, m)
}

#[test]
fn drill_list_and_plan() {
    let env = common::Env::new();
    let list = env.ok(&["drill", "list"]);
    for name in [
        "pod-kill",
        "store-outage",
        "corrupt-latest-snapshot",
        "complete-disaster",
        "node-loss",
        "zone-loss",
        "region-failover",
    ] {
        assert!(list.contains(name), "{list}");
    }
    assert!(list.contains("--var PIDFILE=..."), "{list}");
    // Kubernetes faults say what they may touch: only labelled (or listed) objects.
    let plan = env.ok(&[
        "drill",
        "plan",
        "zone-loss",
        "--var",
        "ZONE=eu-1a",
        "--var",
        "NAMESPACE=shop",
        "--var",
        "CANARY_URL=postgres://canary@db/app",
    ]);
    assert!(
        plan.contains("topology.kubernetes.io/zone=eu-1a")
            && plan.contains("lifeboat.dev/chaos=allowed")
            && plan.contains("CordonEvict"),
        "{plan}"
    );
    let err = env.fails(&["drill", "plan", "pod-kill"]);
    assert!(err.contains("--var PIDFILE=..."), "{err}");
    let plan = env.ok(&[
        "drill",
        "plan",
        "pod-kill",
        "--var",
        "PIDFILE=/run/app.pid",
        "--var",
        "RESTART=true",
        "--var",
        "CANARY_URL=postgres://canary:hunter2@db/app",
    ]);
    assert!(
        plan.contains("/run/app.pid") && plan.contains("rolled back within 2m"),
        "{plan}"
    );
    assert!(!plan.contains("hunter2"), "{plan}");
    // A scenario that would touch a target not marked allowed is refused.
    std::fs::write(
        env.path("bad.yaml"),
        "tier: pod\ntargets:\n  - { name: t, store: s }\nfaults:\n  - { name: f, target: t, action: unavailable, duration: 1s }\n",
    )
    .unwrap();
    let err = env.fails(&["drill", "plan", "./bad.yaml"]);
    assert!(err.contains("not `allowed: true`"), "{err}");
}

// ---------------------------------------------------------------------------------------
// `lifeboat drill run`: real processes, real PostgreSQL, the real binary.

/// A `sleep` in its own process group, with a pid file; the group is killed on drop.
struct Sleeper {
    child: std::process::Child,
    pidfile: std::path::PathBuf,
}

impl Sleeper {
    fn start(env: &common::Env) -> Sleeper {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .expect("start sleep");
        let pidfile = env.path("sleeper.pid");
        std::fs::write(&pidfile, format!("{}\n", child.id())).expect("pid file");
        Sleeper { child, pidfile }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stopped(&self) -> bool {
        proc_state(self.pid()) == Some('T')
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let pid = self.pid().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &format!("-{pid}")])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

/// An env whose config has a file store (where journals go) and a source that is never
/// contacted.
fn drill_env() -> common::Env {
    let env = common::Env::new();
    env.pg_config(
        "sqlite://./catalog.db",
        "postgres://nobody@127.0.0.1:1/none",
        "local",
        "  local: { url: \"file://./store\" }",
    );
    env
}

fn write_scenario(env: &common::Env, yaml: &str) -> String {
    std::fs::write(env.path("scenario.yaml"), yaml).expect("write scenario");
    "./scenario.yaml".into()
}

fn journal_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drill run --output json printed no journal ({e}):\nstdout: {}\nstderr: {}",
            common::text(&out.stdout),
            common::text(&out.stderr)
        )
    })
}

fn history(env: &common::Env) -> Vec<serde_json::Value> {
    let out = env.ok(&["drill", "history", "--output", "json"]);
    serde_json::from_str(&out).expect("history json")
}

#[test]
fn a_paused_postgres_measures_rto_two_seconds_and_rpo_zero() {
    let pg = PgServer::start();
    pg.create_db("app");
    // Acknowledged means durable: the canary's writes commit synchronously.
    pg.psql("postgres", "ALTER DATABASE app SET synchronous_commit = on");
    let env = drill_env();
    let pidfile = pg.data_dir().join("postmaster.pid");
    let scenario = write_scenario(
        &env,
        &format!(
            "tier: pod\n\
             targets:\n  - name: pg\n    allowed: true\n    process_group: {{ pidfile: \"{}\" }}\n\
             faults:\n  - {{ name: freeze-pg, target: pg, action: pause, duration: 2s, ttl: 20s }}\n\
             canary: {{ url: \"{}\", interval: 100ms, timeout: 10s }}\n\
             probes:\n  - {{ name: pg-port, tcp: \"127.0.0.1:{}\" }}\n\
             expect: {{ rpo: 1s, rto: 30s }}\n",
            pidfile.display(),
            pg.url("app"),
            pg.port()
        ),
    );
    // A dry run touches and records nothing.
    let dry = env.ok(&["drill", "run", "--file", &scenario, "--dry-run"]);
    assert!(
        dry.contains("nothing is touched") && dry.contains("postmaster.pid"),
        "{dry}"
    );
    assert!(history(&env).is_empty());
    // Without a terminal and without --yes: refused.
    let err = env.fails(&["drill", "run", &scenario]);
    assert!(err.contains("--yes"), "{err}");

    let out = env.run(&[
        "drill", "run", "--file", &scenario, "--yes", "--output", "json",
    ]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    let s = &j["services"][0];
    let rto = s["rto_seconds"].as_f64().expect("rto");
    // 2.0 s outage, 100 ms canary resolution, plus scheduling slack on a busy machine.
    assert!(
        (1.9..=2.5).contains(&rto),
        "RTO {rto} s for a 2.0 s pause: {j:#}"
    );
    assert_eq!(s["rpo_seconds"].as_f64(), Some(0.0), "{j:#}");
    assert_eq!(j["canary"]["lost"], 0, "{j:#}");
    assert_eq!(j["canary"]["resolution_ms"], 100);
    let f = &j["faults"][0];
    assert_eq!(f["action"], "pause");
    assert_eq!(f["reverted"], true, "{j:#}");
    assert!(
        f["applied_at"].is_string() && f["reverted_at"].is_string(),
        "{j:#}"
    );
    let mut phases: Vec<&str> = j["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases[0], "fault", "{j:#}");
    // The first write may be acknowledged before the rollback's confirmation is recorded.
    phases.sort();
    assert_eq!(phases, ["fault", "first-write", "rollback"], "{j:#}");
    // The chain verifies, the store and the catalog hold the same journal.
    let parsed: lifeboat::model::journal::DrillJournal =
        serde_json::from_value(j.clone()).expect("journal schema");
    lifeboat::model::journal::verify_chain(&parsed).expect("chain");
    let id = j["id"].as_str().unwrap();
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path(&format!("store/drills/{id}/journal.json"))).expect("in store"),
    )
    .unwrap();
    assert_eq!(stored["journal_sha256"], j["journal_sha256"]);
    let h = history(&env);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["journal_sha256"], j["journal_sha256"]);
    // PostgreSQL is not left stopped.
    assert_eq!(
        pg.psql("app", "SELECT count(*) > 20 FROM lifeboat_canary"),
        "t"
    );
    // The drill is RTO/RPO evidence in `lifeboat status`, with its age.
    let out = env.run(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let d = &status["drills"][0];
    assert_eq!(d["id"], j["id"], "{status:#}");
    assert_eq!(d["verdict"], "pass");
    assert_eq!(d["rto_seconds"].as_f64(), Some(rto));
    assert_eq!(d["rpo_seconds"].as_f64(), Some(0.0));
    assert!(
        d["age_seconds"]
            .as_f64()
            .is_some_and(|a| (0.0..120.0).contains(&a)),
        "{d}"
    );
    let table = common::text(&env.run(&["status"]).stdout);
    assert!(
        table.contains("DRILL") && table.contains("scenario"),
        "{table}"
    );
    let prom = common::text(&env.run(&["status", "--output", "prometheus"]).stdout);
    assert!(
        prom.contains("lifeboat_drill_rto_seconds{scenario=\"scenario\"}"),
        "{prom}"
    );

    // The drill's report comes from the catalog by id; the posture lists it.
    let id = j["id"].as_str().expect("id");
    let out = env.run(&["report", "drill", id, "--output", "json"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report json");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    let html = common::text(&env.run(&["report", "drill", id, "--output", "html"]).stdout);
    assert!(html.contains(id) && html.contains("pass"), "{html}");
    let out = env.run(&["report", "drill", "no-such-drill"]);
    assert!(!out.status.success());
    assert!(
        common::text(&out.stderr).contains("drill history"),
        "{}",
        common::text(&out.stderr)
    );
    let posture = env.run(&["report", "posture", "--output", "json"]);
    let posture: serde_json::Value = serde_json::from_slice(&posture.stdout).expect("posture");
    assert_eq!(posture["drills"][0]["id"], j["id"], "{posture:#}");

    // The real drill's report in a real browser: verdict, service row, objectives; not blank;
    // prints to PDF.
    let Some(browser) = common::browser::Browser::find() else {
        return;
    };
    let page = env.path("drill.html");
    let out = env.run(&[
        "report",
        "drill",
        id,
        "-o",
        "html",
        "--to-file",
        page.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let dom = browser.dump_dom(&page);
    assert!(
        dom.contains("id=\"verdict\"") && dom.contains("pass"),
        "{dom}"
    );
    let services = report["journal"]["services"].as_array().expect("services");
    assert!(!services.is_empty(), "{report:#}");
    for s in services {
        let name = s["service"].as_str().expect("service name");
        assert!(dom.contains(name), "service {name} missing: {dom}");
    }
    assert!(
        dom.contains("1s") && dom.contains("30s"),
        "objectives shown: {dom}"
    );
    let png = env.path("drill.png");
    browser.screenshot(&page, &png, 1000, 1400);
    let (colours, top) = common::browser::colour_stats(&std::fs::read(&png).expect("png"));
    assert!(
        colours > 8 && top < 0.98,
        "blank: {colours} colours, top {top}"
    );
    browser.print_to_pdf(&page, &env.path("drill.pdf"));
}

#[test]
fn a_fault_matching_nothing_is_inconclusive_and_touches_nothing() {
    let env = drill_env();
    let scenario = write_scenario(
        &env,
        "tier: pod\n\
         targets:\n  - name: gone\n    allowed: true\n    process_group: { pidfile: \"./no-such.pid\" }\n\
         faults:\n  - { name: kill-gone, target: gone, action: kill, duration: 1s }\n\
         expect: { rto: 30s }\n",
    );
    let out = env.run(&["drill", "run", &scenario, "--yes", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out.stderr));
    let j = journal_of(&out);
    assert_eq!(j["verdict"], "inconclusive", "{j:#}");
    assert!(
        j["reasons"][0]
            .as_str()
            .unwrap()
            .contains("matched no target"),
        "{j:#}"
    );
    assert_eq!(j["faults"][0]["applied_at"], serde_json::Value::Null);
    assert_eq!(history(&env)[0]["verdict"], "inconclusive");
}

/// Starts `drill run` of `scenario` in the background and waits until `sleeper` is stopped.
fn start_drill(env: &common::Env, scenario: &str, sleeper: &Sleeper) -> std::process::Child {
    let child = env
        .command(&["drill", "run", scenario, "--yes", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start drill");
    common::wait_until(
        "the fault to stop the target",
        Duration::from_secs(60),
        || sleeper.stopped(),
    );
    child
}

fn pause_scenario(env: &common::Env, sleeper: &Sleeper, extra: &str) -> String {
    write_scenario(
        env,
        &format!(
            "tier: pod\n\
             targets:\n  - name: app\n    allowed: true\n    process_group: {{ pidfile: \"{}\" }}\n\
             faults:\n  - {{ name: freeze, target: app, action: pause, duration: 8s, ttl: 10s }}\n{extra}",
            sleeper.pidfile.display()
        ),
    )
}

#[test]
fn a_killed_drill_is_rolled_back_by_its_watchdog_and_recorded_aborted() {
    let env = drill_env();
    let sleeper = Sleeper::start(&env);
    let scenario = pause_scenario(&env, &sleeper, "");
    let drill = start_drill(&env, &scenario, &sleeper);
    let killed_at = std::time::Instant::now();
    common::kill9(drill);
    // The watchdog resumes the process within the TTL (10 s).
    common::wait_until(
        "the watchdog to resume the target",
        Duration::from_secs(10),
        || !sleeper.stopped(),
    );
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    // The next start records the drill aborted, its fault reverted.
    let h = history(&env);
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["verdict"], "aborted", "{:#}", h[0]);
    assert_eq!(h[0]["faults"][0]["reverted"], true, "{:#}", h[0]);
    let parsed: lifeboat::model::journal::DrillJournal =
        serde_json::from_value(h[0].clone()).expect("schema");
    lifeboat::model::journal::verify_chain(&parsed).expect("chain");
    // Asked again: nothing more to do, still one aborted drill.
    assert_eq!(history(&env)[0]["verdict"], "aborted");
}

/// Waits for a background drill, checks it was aborted for `why` and rolled back.
fn assert_aborted(child: std::process::Child, sleeper: &Sleeper, why: &str) {
    let out = child.wait_with_output().expect("drill ends");
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out.stderr));
    let j = journal_of(&out);
    assert_eq!(j["verdict"], "aborted", "{j:#}");
    let reasons = j["reasons"].to_string();
    assert!(reasons.contains(why), "{why} not in {reasons}");
    assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
    assert!(!sleeper.stopped(), "the target is still stopped");
}

#[test]
fn abort_past_max_elapsed_rolls_back() {
    let env = drill_env();
    let sleeper = Sleeper::start(&env);
    let scenario = pause_scenario(&env, &sleeper, "abort: { max_elapsed: 3s }\n");
    let started = std::time::Instant::now();
    let drill = start_drill(&env, &scenario, &sleeper);
    assert_aborted(drill, &sleeper, "past its limit");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "not aborted early"
    );
}

#[test]
fn abort_on_ctrl_c_rolls_back() {
    let env = drill_env();
    let sleeper = Sleeper::start(&env);
    let scenario = pause_scenario(&env, &sleeper, "");
    let drill = start_drill(&env, &scenario, &sleeper);
    std::process::Command::new("kill")
        .args(["-INT", &drill.id().to_string()])
        .status()
        .expect("kill -INT");
    assert_aborted(drill, &sleeper, "interrupted");
}

#[test]
fn abort_when_the_blast_radius_is_hit_rolls_back() {
    let env = drill_env();
    let sleeper = Sleeper::start(&env);
    let bystander = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = bystander.local_addr().unwrap();
    let scenario = pause_scenario(
        &env,
        &sleeper,
        &format!("probes:\n  - {{ name: bystander, tcp: \"{addr}\", blast_radius: true }}\n"),
    );
    let drill = start_drill(&env, &scenario, &sleeper);
    drop(bystander);
    assert_aborted(drill, &sleeper, "blast radius: probe `bystander`");
}

#[test]
fn abort_when_a_failover_starts_rolls_back() {
    let env = drill_env();
    let sleeper = Sleeper::start(&env);
    let scenario = pause_scenario(&env, &sleeper, "");
    let drill = start_drill(&env, &scenario, &sleeper);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", env.path("catalog.db").display());
        let c = lifeboat::catalog::Catalog::open(&lifeboat::config::SecretString::new(url))
            .await
            .expect("catalog");
        c.failover_begin(
            7,
            "a",
            "b",
            "manual",
            &serde_json::json!({}),
            chrono::Utc::now(),
        )
        .await
        .expect("failover");
    });
    assert_aborted(drill, &sleeper, "failover of term 7");
}

#[test]
fn abort_while_a_prometheus_alert_fires_rolls_back() {
    let Some(prometheus) = common::servers::bin_on_path("prometheus") else {
        assert!(
            std::env::var_os("LIFEBOAT_REQUIRE_PROMETHEUS").is_none(),
            "LIFEBOAT_REQUIRE_PROMETHEUS is set but prometheus is not on PATH"
        );
        eprintln!("SKIPPED: no prometheus on PATH (scripts/setup.sh installs it)");
        return;
    };
    let env = drill_env();
    let port = common::servers::free_port();
    std::fs::write(env.path("rules.yml"), "groups: []\n").unwrap();
    std::fs::write(
        env.path("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\n",
            env.path("rules.yml").display()
        ),
    )
    .unwrap();
    let mut prom = std::process::Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            env.path("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            env.path("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    common::wait_until("prometheus to be ready", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::servers::http_get(port, "/-/ready", None).0 == 200
    });
    let sleeper = Sleeper::start(&env);
    let scenario = pause_scenario(
        &env,
        &sleeper,
        &format!("abort: {{ prometheus: \"http://127.0.0.1:{port}\" }}\n"),
    );
    let drill = start_drill(&env, &scenario, &sleeper);
    // While the fault is active, an alert starts firing (rules reloaded on SIGHUP).
    std::fs::write(
        env.path("rules.yml"),
        "groups:\n  - name: drill\n    rules:\n      - alert: AlwaysFiring\n        expr: vector(1)\n",
    )
    .unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &prom.id().to_string()])
        .status()
        .expect("kill -HUP");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_aborted(drill, &sleeper, "AlwaysFiring")
    }));
    let _ = prom.kill();
    let _ = prom.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The drill tables behave the same on SQLite and PostgreSQL: journals upserted with their
/// events appended (never rewritten), fault intents, reverts recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_catalog_on_sqlite_and_postgres() {
    use lifeboat::catalog::Catalog;
    use lifeboat::config::SecretString;
    use lifeboat::model::journal::DrillJournal;
    let pg = PgServer::start();
    pg.create_db("catalog");
    let dir = tempfile::tempdir().expect("dir");
    for url in [
        format!("sqlite://{}", dir.path().join("c.db").display()),
        pg.url("catalog"),
    ] {
        let c = Catalog::open(&SecretString::new(url.clone()))
            .await
            .expect("open");
        let t0 = chrono::Utc::now();
        let mut j = DrillJournal::start("d1", "pod-kill", "pod", t0, "t@h");
        j.push_event(t0, "started", "");
        c.put_drill_journal(&j).await.expect("put");
        assert_eq!(
            c.drill_runs_running().await.expect("running").len(),
            1,
            "{url}"
        );
        c.drill_fault_intent(
            "d1",
            "f",
            "pause",
            &serde_json::json!({"type": "in-process", "target": "x"}),
            t0,
        )
        .await
        .expect("intent");
        c.drill_fault_applied("d1", "f", t0).await.expect("applied");
        c.drill_fault_attempt("d1", "f", "not yet")
            .await
            .expect("attempt");
        assert!(
            c.drill_fault_reverted("d1", "f", "drill", t0)
                .await
                .expect("reverted")
        );
        assert!(
            !c.drill_fault_reverted("d1", "f", "watchdog", t0)
                .await
                .expect("again")
        );
        let faults = c.drill_faults("d1").await.expect("faults");
        assert_eq!(faults.len(), 1);
        assert!(faults[0].reverted(), "{url}");
        assert_eq!(faults[0].reverted_by.as_deref(), Some("drill"));
        assert_eq!(faults[0].attempts, 2);
        j.push_event(t0, "finished", "verdict pass");
        j.verdict = "pass".into();
        j.finished_at = Some(t0);
        c.put_drill_journal(&j).await.expect("put again");
        assert!(c.drill_runs_running().await.expect("running").is_empty());
        let back = c.drill_journal("d1").await.expect("get").expect("some");
        assert_eq!(back, j, "{url}");
        assert!(c.drill_journal("nope").await.expect("get").is_none());
        let events = c.drill_events("d1").await.expect("events");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].2, j.journal_sha256);
        let since = c
            .drill_journals(t0 - chrono::TimeDelta::seconds(1))
            .await
            .expect("since");
        assert_eq!(since.len(), 1);
        assert!(
            c.drill_journals(t0 + chrono::TimeDelta::seconds(1))
                .await
                .expect("later")
                .is_empty()
        );
    }
}

/// SIGKILL of PostgreSQL's whole family (the postmaster's group and its backends), restarted
/// after 2 s by the scenario's `restart:`: no acknowledged write is lost with synchronous
/// commit (RPO 0), and the RTO is the 2 s outage plus the restart (crash recovery).
#[test]
fn a_killed_and_restarted_postgres_loses_no_acknowledged_write() {
    let pg = PgServer::start();
    pg.create_db("app");
    pg.psql("postgres", "ALTER DATABASE app SET synchronous_commit = on");
    let env = drill_env();
    let restart = serde_json::to_string(&pg.start_argv()).unwrap();
    let scenario = write_scenario(
        &env,
        &format!(
            "tier: pod\n\
             targets:\n  - name: pg\n    allowed: true\n    process_group: {{ pidfile: \"{}\", restart: {restart} }}\n\
             faults:\n  - {{ name: kill-pg, target: pg, action: kill, duration: 2s, ttl: 60s }}\n\
             canary: {{ url: \"{}\", interval: 100ms, timeout: 1s }}\n\
             expect: {{ rpo: 1s, rto: 30s }}\n",
            pg.data_dir().join("postmaster.pid").display(),
            pg.url("app"),
        ),
    );
    let out = env.run(&["drill", "run", &scenario, "--yes", "--output", "json"]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    let s = &j["services"][0];
    assert_eq!(s["rpo_seconds"].as_f64(), Some(0.0), "{j:#}");
    assert_eq!(j["canary"]["lost"], 0, "{j:#}");
    let rto = s["rto_seconds"].as_f64().expect("rto");
    assert!(
        (1.9..=8.0).contains(&rto),
        "RTO {rto} s for a 2 s kill + restart: {j:#}"
    );
    assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
    // Every acknowledged write is in the table after the restart.
    let acked = j["canary"]["writes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["outcome"] == "acknowledged")
        .count();
    let id = j["id"].as_str().unwrap();
    let rows: usize = pg
        .psql(
            "app",
            &format!("SELECT count(*) FROM lifeboat_canary WHERE run = '{id}'"),
        )
        .parse()
        .unwrap();
    assert!(rows >= acked, "{rows} rows for {acked} acknowledged writes");
}

/// complete-disaster on a config with two sources: the catalog rebuilt from the store alone
/// into a throwaway catalog, both restored (verified) in parallel from it; the real catalog
/// is not written, the throwaway one is removed.
#[test]
fn complete_disaster_restores_every_source_from_the_store_alone() {
    let env = common::Env::new();
    for name in ["alpha", "beta"] {
        std::fs::create_dir_all(env.path(&format!("data-{name}"))).unwrap();
        std::fs::write(
            env.path(&format!("data-{name}/file.txt")),
            format!("{name}\n"),
        )
        .unwrap();
    }
    env.write_config(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: { url: \"file://./store\" }\n\
         encryption:\n  recipients: [\"{recipient}\"]\n  identity_file: ./age.key\n\
         sources:\n\
         \x20 - { name: alpha, kind: files, path: ./data-alpha, store: local, schedule: \"0 * * * *\", objectives: { rpo: 1h, rto: 30m } }\n\
         \x20 - { name: beta, kind: files, path: ./data-beta, store: local, schedule: \"0 * * * *\", objectives: { rpo: 1h, rto: 30m } }\n",
    );
    env.ok(&["backup", "alpha"]);
    env.ok(&["backup", "beta"]);
    let snapshots = env.snapshots().len();
    let plan = env.ok(&["drill", "run", "complete-disaster", "--dry-run"]);
    assert!(plan.contains("every configured source"), "{plan}");
    let out = env.run(&[
        "drill",
        "run",
        "complete-disaster",
        "--yes",
        "--output",
        "json",
    ]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    assert_eq!(
        j["faults"][0]["targets"],
        serde_json::json!(["source alpha", "source beta"])
    );
    assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
    let services = j["services"].as_array().unwrap();
    assert_eq!(services.len(), 2, "{j:#}");
    for s in services {
        let rto = s["rto_seconds"].as_f64().expect("rto");
        let rpo = s["rpo_seconds"].as_f64().expect("rpo");
        assert!(rto > 0.0 && rto < 600.0, "{s}");
        assert!((0.0..600.0).contains(&rpo), "{s}");
        assert_eq!(s["verdict"], "pass", "{s}");
    }
    // The real catalog was only read; the throwaway one is gone.
    assert_eq!(env.snapshots().len(), snapshots);
    let id = j["id"].as_str().unwrap();
    assert!(!std::env::temp_dir().join(format!("lifeboat-{id}")).exists());
    assert!(
        j["evidence"].to_string().contains("(alpha)"),
        "{:#}",
        j["evidence"]
    );
}

/// A config with one files source `alpha` on store `local`, backed up `n` times.
fn files_env(n: usize) -> common::Env {
    let env = common::Env::new();
    std::fs::create_dir_all(env.path("data")).unwrap();
    env.write_config(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: { url: \"file://./store\" }\n\
         encryption:\n  recipients: [\"{recipient}\"]\n  identity_file: ./age.key\n\
         sources:\n\
         \x20 - { name: alpha, kind: files, path: ./data, store: local, schedule: \"0 * * * *\", objectives: { rpo: 1h, rto: 30m } }\n",
    );
    for i in 0..n {
        std::fs::write(env.path("data/file.txt"), format!("version {i}\n")).unwrap();
        env.ok(&["backup", "alpha"]);
    }
    env
}

/// Every object under the store, with its bytes: the drill must not change any.
fn store_objects(env: &common::Env) -> Vec<(String, Vec<u8>)> {
    common::files_under(&env.path("store"))
        .into_iter()
        .filter(|f| !f.starts_with("drills/"))
        .map(|f| {
            let bytes = std::fs::read(env.path(&format!("store/{f}"))).unwrap();
            (f, bytes)
        })
        .collect()
}

#[test]
fn corrupt_latest_snapshot_is_refused_and_the_previous_one_restores() {
    let env = files_env(2);
    let before = store_objects(&env);
    let snaps = env.snapshots();
    let out = env.run(&[
        "drill",
        "run",
        "corrupt-latest-snapshot",
        "--var",
        "STORE=local",
        "--yes",
        "--output",
        "json",
    ]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    let events = j["events"].to_string();
    assert!(events.contains("was refused"), "{events}");
    let s = &j["services"][0];
    assert_eq!(s["service"], "alpha");
    assert!(
        s["rto_seconds"].as_f64().is_some() && s["rpo_seconds"].as_f64().is_some(),
        "{s}"
    );
    let previous = snaps[snaps.len() - 2]["id"].as_str().unwrap();
    assert!(
        j["evidence"].to_string().contains(previous),
        "{:#}",
        j["evidence"]
    );
    // The real objects were never touched.
    assert_eq!(store_objects(&env), before);
}

#[test]
fn hide_latest_snapshot_restores_the_previous_one() {
    let env = files_env(2);
    let before = store_objects(&env);
    let scenario = write_scenario(
        &env,
        "tier: data\n\
         targets:\n  - { name: store, allowed: true, store: local }\n\
         faults:\n  - { name: hide, target: store, action: hide-latest, duration: 1m }\n\
         expect: { rto: 10m, rpo: 1h }\n",
    );
    let out = env.run(&["drill", "run", &scenario, "--yes", "--output", "json"]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    assert!(j["services"][0]["rpo_seconds"].as_f64().is_some(), "{j:#}");
    assert_eq!(store_objects(&env), before);
}

#[test]
fn store_outage_fails_backups_loudly_then_they_recover() {
    let env = files_env(1);
    let scenario = write_scenario(
        &env,
        "tier: data\n\
         targets:\n  - { name: store, allowed: true, store: local }\n\
         faults:\n  - { name: down, target: store, action: unavailable, duration: 1s, ttl: 5m }\n\
         expect: { rto: 5m }\n",
    );
    let out = env.run(&["drill", "run", &scenario, "--yes", "--output", "json"]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    let events = j["events"].to_string();
    assert!(
        events.contains("the backup failed loudly") && events.contains("unavailable"),
        "{events}"
    );
    assert!(events.contains("backed up again"), "{events}");
    // A store named nowhere in the config: the fault matches nothing.
    let scenario = write_scenario(
        &env,
        "tier: data\n\
         targets:\n  - { name: store, allowed: true, store: nope }\n\
         faults:\n  - { name: down, target: store, action: unavailable, duration: 1s }\n",
    );
    let out = env.run(&["drill", "run", &scenario, "--yes", "--output", "json"]);
    assert_eq!(journal_of(&out)["verdict"], "inconclusive");
}

/// A canary URL's password never reaches the output, the journal, the catalog or the store,
/// and a canary that cannot connect fails the drill before any fault is applied.
#[test]
fn canary_secrets_stay_out_and_an_unreachable_canary_touches_nothing() {
    let env = drill_env();
    let sleeper = Sleeper::start(&env);
    let port = common::servers::free_port();
    let scenario = pause_scenario(&env, &sleeper, "canary: { url: \"${URL}\", timeout: 2s }\n");
    let out = env.run(&[
        "drill",
        "run",
        &scenario,
        "--var",
        &format!("URL=postgres://canary:hunter2@127.0.0.1:{port}/app"),
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out.stderr));
    let j = journal_of(&out);
    assert_eq!(j["verdict"], "failed", "{j:#}");
    assert!(j["reasons"].to_string().contains("canary"), "{j:#}");
    assert!(!sleeper.stopped());
    assert_eq!(j["faults"][0]["applied_at"], serde_json::Value::Null);
    let mut everything = common::text(&out.stdout) + &common::text(&out.stderr);
    for f in ["catalog.db", "catalog.db-wal"] {
        everything += &String::from_utf8_lossy(&std::fs::read(env.path(f)).unwrap_or_default());
    }
    for f in common::files_under(&env.path("store")) {
        everything +=
            &String::from_utf8_lossy(&std::fs::read(env.path(&format!("store/{f}"))).unwrap());
    }
    assert!(
        !everything.contains("hunter2"),
        "the canary password leaked"
    );
}

/// The daemon runs a scheduled drill on its cron (in a time zone), one at a time, and
/// suspends the schedule after `suspend_after` consecutive failures (here: inconclusive
/// drills, no canary).
#[test]
fn the_daemon_runs_scheduled_drills_and_suspends_failing_ones() {
    let env = common::Env::new();
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/f"), "x\n").unwrap();
    let sleeper = Sleeper::start(&env);
    std::fs::write(
        env.path("freeze.yaml"),
        format!(
            "tier: pod\n\
             targets:\n  - name: app\n    allowed: true\n    process_group: {{ pidfile: \"{}\" }}\n\
             faults:\n  - {{ name: freeze, target: app, action: pause, duration: 1s, ttl: 10s }}\n",
            sleeper.pidfile.display()
        ),
    )
    .unwrap();
    env.write_config(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: { url: \"file://./store\" }\n\
         encryption:\n  recipients: [\"{recipient}\"]\n  identity_file: ./age.key\n\
         sources:\n\
         \x20 - { name: alpha, kind: files, path: ./data, store: local, schedule: \"0 3 * * *\", objectives: { rpo: 1d, rto: 30m } }\n\
         drills:\n  schedules:\n\
         \x20   - { scenario: ./freeze.yaml, schedule: \"*/2 * * * * *\", timezone: Europe/Paris, suspend_after: 2 }\n",
    );
    env.ok(&["config", "check"]);
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let mut daemon = env
        .command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let done = |env: &common::Env| -> Vec<serde_json::Value> {
        let out = env.run(&["drill", "history", "--output", "json"]);
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j["finished_at"].is_string())
            .collect()
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::wait_until("two scheduled drills", Duration::from_secs(90), || {
            done(&env).len() >= 2
        });
        // Suspended: no third drill.
        std::thread::sleep(Duration::from_secs(6));
        let h = done(&env);
        assert_eq!(h.len(), 2, "{h:#?}");
        for j in &h {
            assert!(
                j["run_by"].as_str().unwrap().starts_with("daemon@"),
                "{j:#}"
            );
            assert_eq!(j["verdict"], "inconclusive", "{j:#}");
            assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
        }
        // One at a time: the second started after the first finished.
        assert!(
            h[1]["started_at"].as_str() >= h[0]["finished_at"].as_str(),
            "{h:#?}"
        );
        assert!(!sleeper.stopped());
        let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
        assert!(log.contains("SUSPENDED"), "{log}");
    }));
    let _ = daemon.kill();
    let _ = daemon.wait();
    if let Err(e) = result {
        let log = std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default();
        eprintln!("daemon log:\n{log}");
        std::panic::resume_unwind(e);
    }
}

/// Runs a drill whose canary (`url`) writes through the drill's proxy on `port` to
/// `upstream`, blackholed for 2 s; asserts it passes with RTO 2 s (within the resolution) and
/// returns its journal and everything it printed.
fn blackholed_drill(
    env: &common::Env,
    port: u16,
    upstream: u16,
    url: &str,
) -> (serde_json::Value, String) {
    let scenario = write_scenario(
        env,
        &format!(
            "tier: zone\n\
             targets:\n  - name: path\n    allowed: true\n    proxy: {{ listen: \"127.0.0.1:{port}\", upstream: \"127.0.0.1:{}\" }}\n\
             faults:\n  - {{ name: cut, target: path, action: blackhole, duration: 2s }}\n\
             canary: {{ url: \"{url}\", timeout: 10s }}\n\
             expect: {{ rto: 30s, rpo: 1s }}\n",
            upstream
        ),
    );
    let out = env.run(&["drill", "run", &scenario, "--yes", "--output", "json"]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    let rto = j["services"][0]["rto_seconds"].as_f64().expect("rto");
    assert!(
        (1.9..=2.5).contains(&rto),
        "RTO {rto} s for a 2 s blackhole: {j:#}"
    );
    let printed = common::text(&out.stdout) + &common::text(&out.stderr);
    (j, printed)
}

/// A network fault through the drill's in-process proxy: the canary writes through it, the
/// proxy blackholes for 2 s, the measured RTO is 2 s within the resolution.
#[test]
fn a_blackholed_proxy_measures_rto_two_seconds() {
    let pg = PgServer::start();
    pg.create_db("app");
    let env = drill_env();
    let port = common::servers::free_port();
    let url = pg
        .url("app")
        .replacen(&format!(":{}/", pg.port()), &format!(":{port}/"), 1);
    let (j, _) = blackholed_drill(&env, port, pg.port(), &url);
    assert_eq!(j["faults"][0]["action"], "blackhole");
    assert_eq!(j["faults"][0]["reverted"], true);
}

// ---------------------------------------------------------------------------------------
// region-failover: the primary site down, the failover of issue 11, measured.

fn read_only(pg: &PgServer, db: &str) -> bool {
    pg.psql(db, "SHOW default_transaction_read_only") == "on"
}

/// A passed region-failover journal: RPO 0, nothing lost; the timeline's failover segments
/// (detect, decide, fence, promote, dns) in order; the RTO (first write acknowledged through
/// the DNS name) after the promotion and within the canary resolution (100 ms, plus a
/// connection) of the failover's own DNS step; the term (1, primary → secondary, `mode`) in
/// the evidence; the fault reverted and `failover rejoin` named.
fn check_failover_journal(j: &serde_json::Value, mode: &str) {
    assert_eq!(j["verdict"], "pass", "{j:#}");
    assert_eq!(j["tier"], "region");
    let s = &j["services"][0];
    assert_eq!(s["rpo_seconds"].as_f64(), Some(0.0), "{j:#}");
    assert_eq!(j["canary"]["lost"], 0, "{j:#}");
    let rto = s["rto_seconds"].as_f64().expect("rto");
    let at = |phase: &str| {
        let e = j["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["phase"] == phase)
            .unwrap_or_else(|| panic!("no {phase} in {j:#}"));
        chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap()
    };
    let fault = at("fault");
    let secs = |p: &str| (at(p) - fault).num_milliseconds() as f64 / 1000.0;
    let mut last = 0.0;
    for p in ["detect", "decide", "fence", "promote", "dns"] {
        assert!(secs(p) >= last, "{p} before the previous phase: {j:#}");
        last = secs(p);
    }
    eprintln!(
        "region-failover ({mode}): RTO {rto} s; detect {} decide {} fence {} promote {} dns {} s",
        secs("detect"),
        secs("decide"),
        secs("fence"),
        secs("promote"),
        secs("dns")
    );
    assert!(
        (rto - secs("first-write")).abs() < 0.01,
        "{rto} vs {}",
        secs("first-write")
    );
    assert!(
        rto > secs("promote"),
        "RTO {rto} before the promotion: {j:#}"
    );
    assert!(
        (rto - secs("dns")).abs() <= 0.6,
        "RTO {rto} s, the failover's DNS step done at {} s: {j:#}",
        secs("dns")
    );
    assert!(
        j["evidence"]
            .to_string()
            .contains(&format!("failover term 1: primary → secondary ({mode})")),
        "{j:#}"
    );
    assert!(
        j["findings"]
            .to_string()
            .contains("lifeboat failover rejoin primary"),
        "{j:#}"
    );
    assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
    let parsed: lifeboat::model::journal::DrillJournal =
        serde_json::from_value(j.clone()).expect("journal schema");
    lifeboat::model::journal::verify_chain(&parsed).expect("chain");
}

/// The shipped `region-failover` with the text changes a test needs: held `held` instead of
/// 1 m, restarting the server with `restart` (its argv).
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The arguments of `drill run SCENARIO` for a region-failover file with the primary's
/// `pidfile` var, `TO_SITE=secondary`, the `canary` URL var, `--yes` (and `--output json`).
fn region_failover_run(scenario: &str, pidfile: String, canary: String, json: bool) -> Vec<String> {
    let mut args: Vec<String> = ["drill", "run", scenario, "--var"]
        .map(String::from)
        .to_vec();
    args.push(pidfile);
    args.extend(["--var", "TO_SITE=secondary", "--var"].map(String::from));
    args.push(canary);
    args.push("--yes".into());
    if json {
        args.extend(["--output", "json"].map(String::from));
    }
    args
}

fn region_failover_file(env: &common::Env, restart: &[String], held: &str) -> String {
    let (_, shipped) = lifeboat::ops::drill::SHIPPED
        .iter()
        .find(|(n, _)| *n == "region-failover")
        .expect("shipped region-failover");
    let restart = serde_json::to_string(restart).unwrap();
    let text = shipped
        .replace("duration: 1m", &format!("duration: {held}"))
        .replace("[\"sh\", \"-c\", \"${RESTART}\"]", &restart);
    assert!(text.contains(&restart), "the shipped restart line moved");
    std::fs::write(env.path("region-failover.yaml"), text).unwrap();
    "./region-failover.yaml".into()
}

/// The shipped `region-failover` with the daemons' controllers in `automatic` mode at three
/// sites (PostgreSQL primary + two standbys, BIND): the drill, run at the site that takes
/// over, kills the primary's process group and waits for the controllers' failover, which
/// its timeline and term come from; the canary follows the DNS name; the restarted old
/// primary is fenced by the revert.
#[test]
fn region_failover_measures_the_controllers_failover() {
    let c = common::failover::three_sites(
        "automatic",
        "db.example.test.",
        ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
    );
    // DR applies what it receives 5 s late: secondary, always the more up-to-date replica,
    // is where the controllers move the primary (the drill runs there).
    c.pgs[2].psql(
        "postgres",
        "ALTER SYSTEM SET recovery_min_apply_delay = '5s'",
    );
    c.pgs[2].psql("postgres", "SELECT pg_reload_conf()");
    // Synchronous on both standbys: an acknowledged write is wherever the primary moves.
    c.pgs[0].psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'ANY 2 (*)'",
    );
    c.pgs[0].psql("postgres", "SELECT pg_reload_conf()");
    c.pgs[0].psql(
        "postgres",
        "ALTER DATABASE orders SET synchronous_commit = on",
    );
    let port = c.pgs[0].port();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _forwarders: Vec<Proxy> = [1, 2]
        .iter()
        .map(|&i| {
            rt.block_on(Proxy::start(
                &format!("127.0.0.{}:{port}", i + 1),
                format!("127.0.0.1:{}", c.pgs[i].port()),
            ))
            .expect("forwarder")
        })
        .collect();
    let _daemons = c.start_daemons();
    let pidfile = c.pgs[0].data_dir().join("postmaster.pid");
    // At a site that does not take over, its catalog would not see the failover: refused
    // before anything is touched.
    let dr = &c.envs[2];
    let scenario = region_failover_file(dr, &c.pgs[0].start_argv(), "3s");
    let out = dr.run(&strs(&region_failover_run(
        &scenario,
        format!("PIDFILE={}", pidfile.display()),
        format!("CANARY_URL=postgres://postgres@db.example.test:{port}/orders"),
        true,
    )));
    let j = journal_of(&out);
    assert_eq!(j["verdict"], "failed", "{j:#}");
    assert!(
        j["reasons"]
            .to_string()
            .contains("run the drill at secondary"),
        "{j:#}"
    );
    assert_eq!(
        j["faults"][0]["applied_at"],
        serde_json::Value::Null,
        "{j:#}"
    );
    assert!(!read_only(&c.pgs[0], "orders"));
    let env = &c.envs[1];
    let scenario = region_failover_file(env, &c.pgs[0].start_argv(), "3s");
    let out = env.run(&strs(&region_failover_run(
        &scenario,
        format!("PIDFILE={}", pidfile.display()),
        format!("CANARY_URL=postgres://postgres@db.example.test:{port}/orders"),
        true,
    )));
    let j = journal_of(&out);
    assert!(
        out.status.success(),
        "{j:#}\n{}\n{}",
        common::text(&out.stderr),
        c.log_tails()
    );
    check_failover_journal(&j, "automatic");
    assert!(
        j["events"].to_string().contains("failover-wait"),
        "the drill waited for the controllers: {j:#}"
    );
    assert_eq!(c.pgs[1].psql("orders", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        common::dns::dig(c.ns.addr(), "db.example.test.", "A"),
        ["127.0.0.2"]
    );
    assert!(
        read_only(&c.pgs[0], "orders"),
        "the old primary is writable"
    );
}

/// The shipped `region-failover`, against a PostgreSQL primary and its synchronous standby
/// at two sites and a real BIND: the drill kills the primary's process group, runs the
/// manual failover itself (`failover.mode: manual`), and its canary writes through the DNS
/// name `db.example.test.` (127.0.0.1 at the primary site, 127.0.0.2 at the secondary, where a
/// forwarder stands for the secondary's address), asking BIND at every write. Measured: RTO
/// within the canary resolution of the failover's own DNS step, RPO 0 (synchronous commit),
/// the failover's term and segments in the journal; the old primary restarted is fenced, not
/// writable; the new primary takes writes.
/// Two sites for the region-failover tests: a PostgreSQL primary (`primary`, 127.0.0.1) and its
/// streaming standby (`secondary`, reached at 127.0.0.2 on the primary's port through a
/// forwarder), `db.example.test.` on a real BIND pointing at the primary, `failover.mode:
/// manual`, the drill running at `secondary`. `synchronous`: commits wait for the standby.
struct TwoSites {
    primary: PgServer,
    standby: PgServer,
    ns: common::dns::DnsServer,
    env: common::Env,
    _forwarder: Proxy,
    _rt: tokio::runtime::Runtime,
}

fn two_sites(synchronous: bool) -> TwoSites {
    let common::failover::Setup {
        env,
        primary,
        standby,
        ns,
    } = common::failover::setup_with(
        "db.example.test.",
        ["127.0.0.1", "127.0.0.2"],
        "secondary",
        1,
    );
    if synchronous {
        primary.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        );
        primary.psql("postgres", "SELECT pg_reload_conf()");
    }
    primary.psql(
        "postgres",
        "ALTER DATABASE orders SET synchronous_commit = on",
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let forwarder = rt
        .block_on(Proxy::start(
            &format!("127.0.0.2:{}", primary.port()),
            format!("127.0.0.1:{}", standby.port()),
        ))
        .expect("forwarder on 127.0.0.2");
    TwoSites {
        primary,
        standby,
        ns,
        env,
        _forwarder: forwarder,
        _rt: rt,
    }
}

/// The shipped `region-failover`, against a PostgreSQL primary and its synchronous standby
/// at two sites and a real BIND ([`two_sites`]): the drill kills the primary's process group,
/// runs the manual failover itself (`failover.mode: manual`), and its canary writes through
/// the DNS name `db.example.test.`, asking BIND at every write. Measured: RTO within the
/// canary resolution of the failover's own DNS step, RPO 0 (synchronous commit), the
/// failover's term and segments in the journal; the old primary restarted is fenced, not
/// writable; the new primary takes writes.
#[test]
fn region_failover_measures_the_failover_through_the_dns_name() {
    use common::dns::dig;
    let TwoSites {
        primary,
        standby,
        ns,
        env,
        ..
    } = &two_sites(true);
    let scenario = region_failover_file(env, &primary.start_argv(), "3s");
    let canary_url = format!(
        "postgres://postgres@db.example.test:{}/orders",
        primary.port()
    );
    let plan = env.ok(&[
        "drill",
        "plan",
        "region-failover",
        "--var",
        "PIDFILE=/x.pid",
        "--var",
        "RESTART=true",
        "--var",
        "TO_SITE=secondary",
        "--var",
        &format!("CANARY_URL={canary_url}"),
    ]);
    assert!(plan.contains("failover: to site secondary"), "{plan}");
    let pidfile = primary.data_dir().join("postmaster.pid");
    let out = env.run(&strs(&region_failover_run(
        &scenario,
        format!("PIDFILE={}", pidfile.display()),
        format!("CANARY_URL={canary_url}"),
        true,
    )));
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    check_failover_journal(&j, "manual");
    let h: serde_json::Value =
        serde_json::from_str(&env.ok(&["failover", "history", "--output", "json"])).unwrap();
    assert_eq!(h[0]["term"], 1, "{h}");
    assert_eq!(h[0]["status"], "done", "{h}");
    // Reverted: the old primary runs again, fenced (read-only), not writable.
    assert!(read_only(primary, "orders"), "the old primary is writable");
    assert_eq!(standby.psql("orders", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(dig(ns.addr(), "db.example.test.", "A"), ["127.0.0.2"]);
    // Every acknowledged canary is on the new primary.
    let acked = j["canary"]["acknowledged"].as_u64().unwrap();
    let id = j["id"].as_str().unwrap();
    let rows: u64 = standby
        .psql(
            "orders",
            &format!("SELECT count(*) FROM lifeboat_canary WHERE run = '{id}'"),
        )
        .parse()
        .unwrap();
    assert!(rows >= acked, "{rows} rows for {acked} acknowledged writes");
}

// ---------------------------------------------------------------------------------------
// Drills that execute a runbook (issue 12 point 7).

/// The pause of [`pause_scenario`] held 1 s instead of 8 s.
fn held_for_one_second(env: &common::Env) {
    let path = env.path("scenario.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("duration: 8s"));
    std::fs::write(&path, text.replace("duration: 8s", "duration: 1s")).unwrap();
}

/// A drill pausing a process while the shipped `restore-files` runbook restores the newest
/// snapshot: the runbook runs through the runbook runner (its run id in the journal, its
/// output off the JSON on stdout), the drill passes with the runbook's time as its RTO, and
/// the fault is rolled back.
#[test]
fn a_drill_runs_a_shipped_runbook_and_passes() {
    let env = files_env(1);
    let snapshot = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    let sleeper = Sleeper::start(&env);
    let restored = env.path("restored");
    let scenario = pause_scenario(
        &env,
        &sleeper,
        &format!(
            "runbook: {{ name: restore-files, vars: {{ SOURCE: alpha, SNAPSHOT: \"${{SNAP}}\", DIR: \"{}\" }} }}\n\
             expect: {{ rto: 5m }}\n",
            restored.display()
        ),
    );
    held_for_one_second(&env);
    let plan = env.ok(&[
        "drill",
        "plan",
        &scenario,
        "--var",
        &format!("SNAP={snapshot}"),
    ]);
    assert!(
        plan.contains("runbook: restore-files run while the fault is active")
            && plan.contains(&format!("SNAPSHOT={snapshot}")),
        "{plan}"
    );
    let out = env.run(&[
        "drill",
        "run",
        &scenario,
        "--var",
        &format!("SNAP={snapshot}"),
        "--yes",
        "--output",
        "json",
    ]);
    let j = journal_of(&out);
    assert!(out.status.success(), "{j:#}\n{}", common::text(&out.stderr));
    assert_eq!(j["verdict"], "pass", "{j:#}");
    assert_eq!(
        j["services"][0]["service"], "runbook restore-files",
        "{j:#}"
    );
    assert!(
        j["services"][0]["rto_seconds"].as_f64().unwrap() > 0.0,
        "{j:#}"
    );
    assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
    assert!(!sleeper.stopped());
    let evidence = j["evidence"].to_string();
    let id = evidence
        .split("run ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .filter(|id| id.starts_with("rb-"))
        .unwrap_or_else(|| panic!("no runbook run id in {evidence}"))
        .to_string();
    let log: serde_json::Value =
        serde_json::from_str(&env.ok(&["runbook", "log", &id, "--output", "json"])).unwrap();
    assert_eq!(log["run"]["status"], "complete", "{log:#}");
    assert_eq!(
        std::fs::read_to_string(restored.join("file.txt")).expect("restored"),
        "version 0\n"
    );
}

/// A runbook whose second step no longer works fails its drill: the verdict is `failed`, the
/// reason names the step and what to do, the later steps do not run, and the fault is
/// rolled back all the same.
#[test]
fn a_drill_whose_runbook_step_fails_fails_and_still_rolls_back() {
    let env = files_env(1);
    std::fs::write(
        env.path("broken.md"),
        "# Broken\n\n```lifeboat {#check timeout=1m}\nlifeboat config check\n```\n\n\
         ```lifeboat {#restore confirm=true timeout=1m}\nlifeboat restore no-such-snapshot --to-dir ./out\n```\n\n\
         ```lifeboat {#after timeout=1m}\nlifeboat runs list\n```\n",
    )
    .unwrap();
    let sleeper = Sleeper::start(&env);
    let scenario = pause_scenario(
        &env,
        &sleeper,
        "runbook: { name: ./broken.md }\nexpect: { rto: 5m }\n",
    );
    held_for_one_second(&env);
    let out = env.run(&["drill", "run", &scenario, "--yes", "--output", "json"]);
    let j = journal_of(&out);
    assert!(!out.status.success(), "{j:#}");
    assert_eq!(j["verdict"], "failed", "{j:#}");
    let reasons = j["reasons"].to_string();
    assert!(
        reasons.contains("runbook broken") && reasons.contains("failed at step `restore`"),
        "{reasons}"
    );
    assert!(reasons.contains("runbook resume rb-"), "{reasons}");
    assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
    assert!(!sleeper.stopped(), "the fault was not rolled back");
    let runs: serde_json::Value =
        serde_json::from_str(&env.ok(&["runbook", "log", "--output", "json"])).unwrap();
    let run = &runs[0];
    assert_eq!(run["status"], "failed", "{runs:#}");
    // A runbook or a variable that is not there refuses the drill before anything is touched.
    let scenario = pause_scenario(
        &env,
        &sleeper,
        "runbook: { name: restore-files, vars: { SOURCE: alpha } }\n",
    );
    let err = env.fails(&["drill", "run", &scenario, "--yes"]);
    assert!(
        err.contains("SNAPSHOT") && err.contains("nothing was touched"),
        "{err}"
    );
    assert!(!sleeper.stopped());
}

// ---------------------------------------------------------------------------------------
// The Redis canary.

/// Canary keys `lifeboat:canary:<run>:<seq>` every 100 ms on a real redis-server that is
/// SIGSTOPped for 2 s: the measured RTO is 2 s within the canary resolution, nothing
/// acknowledged is lost, the writes held by the stop are indeterminate or acknowledged late,
/// never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_redis_measures_rto_of_the_pause() {
    use lifeboat::ops::drill::canary::RedisCanary;
    let redis = common::redis::RedisServer::start(&[]);
    let canary = Arc::new(
        RedisCanary::connect(&redis.url(), None, "drill-redis", Duration::from_secs(5))
            .await
            .expect("canary"),
    );
    let (canaries, survived, m) = write_through_a_2s_fault(
        canary.clone(),
        |clock| {
            // The fault time once the stop is in effect (a write sent just before is answered).
            redis.signal("STOP");
            clock.now()
        },
        || redis.signal("CONT"),
        || canary.survivors(),
    )
    .await;
    let rto = m.rto_ms.expect("recovered");
    // Writes sent during the stop are answered when it ends: the first one acknowledged
    // after the fault is acknowledged ~2 s after it.
    assert!(
        (1900..=2400).contains(&rto),
        "RTO {rto} ms for a 2000 ms SIGSTOP (resolution 100 ms): {m:?}"
    );
    assert!(m.gaps.is_empty() && m.lost.is_empty(), "{m:?}");
    assert_eq!(m.rpo_ms, Some(0), "{m:?}");
    assert!(m.sent >= 45, "{m:?}");
    // Every acknowledged key is on the server, keyed by the run.
    let acked: Vec<u64> = canaries
        .iter()
        .filter(|c| matches!(c.ack, lifeboat::policy::drill::Ack::Acknowledged { .. }))
        .map(|c| c.seq)
        .collect();
    assert!(acked.iter().all(|s| survived.contains(s)), "{m:?}");
    let key = format!("lifeboat:canary:drill-redis:{}", acked[0]);
    assert!(matches!(
        redis.cmd(&["EXISTS", &key]),
        lifeboat::kinds::redis::client::Reply::Int(1)
    ));
    let j = judge(
        &m,
        &Expected {
            rpo: Some(Duration::from_secs(1)),
            rto: Some(Duration::from_secs(30)),
        },
        &[("pause".into(), 1)],
    );
    assert_eq!(j.verdict, DrillVerdict::Pass, "{j:?}");
}

/// `drill run` with a `redis://` canary (through a blackholed proxy for 2 s): measured,
/// judged, the keys' place in the journal's evidence, the password nowhere.
#[test]
fn a_drill_with_a_redis_canary_measures_rto_two_seconds() {
    let redis = common::redis::RedisServer::start_with_password(&[], "red1s-s3cret");
    let env = drill_env();
    let port = common::servers::free_port();
    let url = format!("redis://:red1s-s3cret@127.0.0.1:{port}");
    let (j, everything) = blackholed_drill(&env, port, redis.port(), &url);
    assert_eq!(j["services"][0]["rpo_seconds"].as_f64(), Some(0.0), "{j:#}");
    assert_eq!(j["canary"]["lost"], 0, "{j:#}");
    assert!(
        j["evidence"]
            .to_string()
            .contains("canary keys lifeboat:canary:"),
        "{j:#}"
    );
    assert!(!everything.contains("red1s-s3cret"), "the password leaked");
}

/// Whether `pg` answers (it may still be recovering: then false, no panic) and is read-only.
fn answers_read_only(pg: &PgServer) -> bool {
    std::process::Command::new(pg.bin("psql"))
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "orders",
        ])
        .args(["-p", &pg.port().to_string()])
        .args(["-c", "SHOW default_transaction_read_only"])
        .output()
        .is_ok_and(|o| o.status.success() && common::text(&o.stdout).trim() == "on")
}

/// A child process killed (SIGKILL) on drop unless taken: a failing test leaves no drill.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            common::kill9(c);
        }
    }
}

/// The drill process killed (SIGKILL) while the primary site is down, after the failover it
/// ran: its watchdog restarts the old primary and fences it (the standby is the writable
/// primary now), from the persisted intent alone; the next start records the drill aborted.
#[test]
fn a_killed_failover_drill_s_watchdog_brings_the_old_primary_back_fenced() {
    let sites = two_sites(false);
    let (primary, standby, env) = (&sites.primary, &sites.standby, &sites.env);
    let scenario = region_failover_file(env, &primary.start_argv(), "60s");
    let pidfile = primary.data_dir().join("postmaster.pid");
    let mut drill = KillOnDrop(Some(
        env.command(&strs(&region_failover_run(
            &scenario,
            format!("PIDFILE={}", pidfile.display()),
            format!(
                "CANARY_URL=postgres://postgres@db.example.test:{}/orders",
                primary.port()
            ),
            false,
        )))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start drill"),
    ));
    common::wait_until(
        "the drill's failover to be done",
        Duration::from_secs(60),
        || standby.psql("orders", "SELECT pg_is_in_recovery()") == "f",
    );
    common::wait_until(
        "the failover recorded done",
        Duration::from_secs(30),
        || {
            serde_json::from_str::<serde_json::Value>(
                &env.ok(&["failover", "history", "--output", "json"]),
            )
            .is_ok_and(|h| h[0]["status"] == "done")
        },
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", primary.port())).is_err(),
        "the old primary is not down"
    );
    common::kill9(drill.0.take().expect("drill"));
    // The watchdog: the old primary runs again, read-only.
    common::wait_until(
        "the watchdog to bring the old primary back fenced",
        Duration::from_secs(60),
        || answers_read_only(primary),
    );
    let h = history(env);
    assert_eq!(h[0]["verdict"], "aborted", "{:#}", h[0]);
    assert_eq!(h[0]["faults"][0]["reverted"], true, "{:#}", h[0]);
    assert!(read_only(primary, "orders"));
}

/// A failover that cannot happen (the standby is down) fails the drill, and the revert does
/// not fence the old primary, which is still the only primary: the service is back writable.
#[test]
fn a_failed_failover_fails_the_drill_and_leaves_the_old_primary_writable() {
    let mut sites = two_sites(false);
    sites.standby.stop();
    let (primary, env) = (&sites.primary, &sites.env);
    let scenario = region_failover_file(env, &primary.start_argv(), "1s");
    let pidfile = primary.data_dir().join("postmaster.pid");
    let out = env.run(&strs(&region_failover_run(
        &scenario,
        format!("PIDFILE={}", pidfile.display()),
        format!(
            "CANARY_URL=postgres://postgres@db.example.test:{}/orders",
            primary.port()
        ),
        true,
    )));
    let j = journal_of(&out);
    assert_eq!(out.status.code(), Some(2), "{j:#}");
    assert_eq!(j["verdict"], "failed", "{j:#}");
    let reasons = j["reasons"].to_string();
    assert!(
        reasons.contains("the failover to secondary failed") && reasons.contains("failover status"),
        "{reasons}"
    );
    assert_eq!(j["faults"][0]["reverted"], true, "{j:#}");
    assert!(j["timeline"].to_string().contains("left as it is"), "{j:#}");
    assert!(!read_only(primary, "orders"), "the only primary was fenced");
    assert!(
        !j["findings"].to_string().contains("failover rejoin"),
        "{j:#}"
    );
    // A primary site whose pid file names nothing: inconclusive, no failover attempted.
    let out = env.run(&strs(&region_failover_run(
        &scenario,
        "PIDFILE=/nonexistent/postmaster.pid".to_string(),
        format!(
            "CANARY_URL=postgres://postgres@db.example.test:{}/orders",
            primary.port()
        ),
        true,
    )));
    let j = journal_of(&out);
    assert_eq!(j["verdict"], "inconclusive", "{j:#}");
    assert!(
        !j["events"].to_string().contains("failover-execute"),
        "{j:#}"
    );
}
