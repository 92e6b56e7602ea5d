//! `lifeboat run`, as processes: two daemons on one catalog (SQLite with the lock file,
//! PostgreSQL with the advisory lock) run each job exactly once; SIGTERM during a backup exits
//! within the grace period and commits nothing; `--once` exit codes; the HTTP endpoints.
//! The scheduler loop itself (retries, backoff, slots) is tested in process under a manual
//! clock (`src/daemon/tests.rs`), without waiting real time.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::servers::{free_port, http_get};
use common::{Env, PgServer, files_under, text, wait_until};

fn sources_yaml(n: usize, schedule: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "  - name: s{i}\n    kind: files\n    path: ./data\n    store: local\n    schedule: \"{schedule}\"\n"
            )
        })
        .collect()
}

fn config(env: &Env, catalog: &str, sources: &str, daemon: &str) {
    std::fs::create_dir_all(env.path("data")).expect("data dir");
    std::fs::write(env.path("data/hello.txt"), "hello daemon\n").expect("data file");
    env.write_config(&format!(
        "catalog: \"{catalog}\"\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n{sources}\
         daemon:\n{daemon}"
    ));
}

/// Starts lifeboat with stderr to `<name>.log` in the env (read back by [`wait_exit`]).
fn spawn(env: &Env, name: &str, args: &[&str]) -> (Child, std::path::PathBuf) {
    let log = env.path(&format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = env
        .command(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn lifeboat run");
    (child, log)
}

fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(ok.success());
}

/// Waits for exit (at most `limit`); returns the stderr and the time it took.
fn wait_exit(
    (mut child, log): (Child, std::path::PathBuf),
    limit: Duration,
) -> (std::process::ExitStatus, String, Duration) {
    let start = Instant::now();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let took = start.elapsed();
            return (status, read(), took);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lifeboat run did not exit within {limit:?}:\n{}", read());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runs(env: &Env) -> Vec<serde_json::Value> {
    let out = env.ok(&["runs", "list", "--limit", "100000", "--output", "json"]);
    serde_json::from_str(&out).expect("runs json")
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// The `fields` of each JSON log line of `log` whose message is `message`.
fn log_events(log: &std::path::Path, message: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["fields"].clone())
        .filter(|f| f["message"] == message)
        .collect()
}

/// Two daemons, one catalog (schedule: every 2 s): the one that wins the leader lock (told
/// by its log, not assumed) does every job, a source's backups never overlap, and each slot
/// has at most one backup. Stops once every source has had `backups` backups.
fn two_daemons_run_each_job_once(env: &Env, backups: usize) {
    // Both at once, on a catalog that does not exist yet.
    let daemons = [spawn(env, "a", &["run"]), spawn(env, "b", &["run"])];
    let logs = [daemons[0].1.clone(), daemons[1].1.clone()];
    let mut leader = None;
    wait_until(
        "one daemon to lead and the other to stand by",
        Duration::from_secs(60),
        || {
            let led = |i: usize| !log_events(&logs[i], "became leader").is_empty();
            let stood_by = |i: usize| {
                !log_events(&logs[i], "standing by: another replica is leader").is_empty()
            };
            leader = (0..2).find(|&i| led(i) && stood_by(1 - i));
            leader.is_some()
        },
    );
    let leader = leader.expect("a leader");
    let standby = 1 - leader;
    let leader_pid = i64::from(daemons[leader].0.id());
    wait_until(
        &format!("{backups} backups of every source"),
        Duration::from_secs(60),
        || {
            let done = log_events(&logs[leader], "job succeeded");
            (0..3).all(|i| {
                done.iter()
                    .filter(|f| f["job"] == "backup" && f["source"] == format!("s{i}"))
                    .count()
                    >= backups
            })
        },
    );
    // The standby first, and gone before the leader stops, so it cannot take over.
    let [a, b] = daemons;
    let (first, second) = if standby == 0 { (a, b) } else { (b, a) };
    sigterm(&first.0);
    let (s1, e1, _) = wait_exit(first, Duration::from_secs(30));
    sigterm(&second.0);
    let (s2, e2, _) = wait_exit(second, Duration::from_secs(30));
    assert!(s1.success(), "standby: {e1}");
    assert!(s2.success(), "leader: {e2}");
    let both = format!("{e1}\n{e2}");
    assert_eq!(
        both.matches("became leader").count(),
        1,
        "exactly one leader:\n{both}"
    );

    let runs = runs(env);
    let backups_run: Vec<_> = runs.iter().filter(|r| r["job"] == "backup").collect();
    let pids: std::collections::BTreeSet<_> =
        backups_run.iter().map(|r| r["pid"].as_i64()).collect();
    assert_eq!(
        pids,
        [Some(leader_pid)].into(),
        "the leader ran every job: {pids:?}"
    );
    let mut by_source: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &backups_run {
        assert_eq!(r["status"], "complete", "{r}");
        by_source
            .entry(r["source"].as_str().expect("source").into())
            .or_default()
            .push(r);
    }
    assert_eq!(
        by_source.len(),
        3,
        "every source ran: {:?}",
        by_source.keys()
    );
    for (source, list) in &by_source {
        let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = list
            .iter()
            .map(|r| (time(&r["started_at"]), time(&r["finished_at"])))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{source}: overlapping runs {w:?}");
        }
        let slots: std::collections::BTreeSet<i64> =
            spans.iter().map(|(s, _)| s.timestamp() / 2).collect();
        assert_eq!(
            slots.len(),
            spans.len(),
            "{source}: a slot ran twice: {spans:?}"
        );
        assert!(spans.len() >= backups, "{source}: {spans:?}");
    }
}

#[test]
fn two_daemons_on_one_sqlite_catalog_run_each_job_once() {
    let env = Env::new();
    config(
        &env,
        "sqlite://./catalog.db",
        &sources_yaml(3, "*/2 * * * * *"),
        "  max_concurrent_jobs: 2\n  shutdown_grace: 20s\n",
    );
    two_daemons_run_each_job_once(&env, 3);
}

#[test]
fn two_daemons_on_one_postgres_catalog_run_each_job_once() {
    let pg = PgServer::start();
    pg.create_db("catalog");
    let env = Env::new();
    config(
        &env,
        &pg.url("catalog"),
        &sources_yaml(3, "*/2 * * * * *"),
        "  max_concurrent_jobs: 2\n  shutdown_grace: 20s\n",
    );
    two_daemons_run_each_job_once(&env, 3);
    let locks = pg.psql(
        "catalog",
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
    );
    assert_eq!(locks, "0", "the advisory lock is released at exit");
}

#[test]
fn once_runs_what_is_due_and_says_whether_it_all_succeeded() {
    let env = Env::new();
    config(
        &env,
        "sqlite://./catalog.db",
        &sources_yaml(2, "0 3 * * *"),
        "  shutdown_grace: 5s\n",
    );
    // Never run: due.
    let out = env.ok(&["run", "--once"]);
    assert!(out.contains("2 job(s) succeeded, 0 failed"), "{out}");
    assert_eq!(env.snapshots().len(), 2);
    // Just ran: nothing due.
    let out = env.ok(&["run", "--once"]);
    assert!(out.contains("0 job(s) succeeded, 0 failed"), "{out}");
    assert_eq!(env.snapshots().len(), 2);
    // A failing source makes the exit status non-zero.
    config(
        &env,
        "sqlite://./catalog.db",
        &format!(
            "{}  - name: broken\n    kind: command\n    argv: [\"sh\", \"-c\", \"exit 3\"]\n    store: local\n    schedule: \"0 3 * * *\"\n",
            sources_yaml(2, "0 3 * * *")
        ),
        "  shutdown_grace: 5s\n",
    );
    let err = env.fails(&["run", "--once"]);
    assert!(err.contains("backup broken"), "{err}");
}

#[test]
fn sigterm_during_a_backup_exits_within_grace_and_commits_nothing() {
    let env = Env::new();
    let port = free_port();
    config(
        &env,
        "sqlite://./catalog.db",
        "  - name: slow\n    kind: command\n    argv: [\"sh\", \"-c\", \"exec sleep 60\"]\n    store: local\n    schedule: \"0 3 * * *\"\n",
        &format!("  shutdown_grace: 2s\n  listen: \"127.0.0.1:{port}\"\n  api_token: s3cret\n"),
    );
    let daemon = spawn(&env, "daemon", &["run"]);
    let log = daemon.1.clone();
    // Not before: two processes creating a fresh SQLite catalog at once race on its schema.
    wait_until("the daemon to start", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("schedule loaded"))
    });
    wait_until("the slow backup to start", Duration::from_secs(60), || {
        runs(&env)
            .iter()
            .any(|r| r["job"] == "backup" && r["status"] == "running")
    });

    // The HTTP endpoints, meanwhile.
    assert_eq!(http_get(port, "/healthz", None).0, 200);
    let (code, body) = http_get(port, "/readyz", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"role\":\"leader\""), "{body}");
    assert_eq!(http_get(port, "/api/v1/snapshots", None).0, 401);
    assert_eq!(http_get(port, "/api/v1/status", Some("wrong")).0, 401);
    let (code, body) = http_get(port, "/api/v1/snapshots", Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"running\""), "{body}");
    let (code, body) = http_get(port, "/api/v1/status", Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"source\":\"slow\""), "{body}");
    let (code, body) = http_get(port, "/metrics", None);
    assert_eq!(code, 200);
    assert!(body.contains("lifeboat_leader 1"), "{body}");
    assert!(body.contains("lifeboat_jobs_running 1"), "{body}");

    sigterm(&daemon.0);
    let (status, stderr, took) = wait_exit(daemon, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(
        took < Duration::from_secs(2 + 5),
        "exited after {took:?}:\n{stderr}"
    );
    assert!(stderr.contains("grace period over"), "{stderr}");

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["status"], "failed", "{}", snaps[0]);
    let left = files_under(&env.path("store"));
    assert!(
        left.iter().all(|f| !f.ends_with("manifest.json")),
        "{left:?}"
    );
    assert!(left.is_empty(), "partial objects removed: {left:?}");
    let backup = runs(&env)
        .into_iter()
        .find(|r| r["job"] == "backup")
        .expect("run");
    assert_eq!(backup["status"], "failed");
    assert!(
        text(backup["error"].to_string().as_bytes()).contains("interrupted"),
        "{backup}"
    );
}

/// Issue 9 (leadership fences itself): the leader's advisory-lock connection killed while a
/// job runs (the catalog database restarted, a failover of the catalog) makes the leader
/// cancel the job at its next renew instead of running on without the lock.
#[test]
fn a_leader_whose_lock_connection_is_killed_cancels_its_running_job() {
    let pg = PgServer::start();
    pg.create_db("catalog");
    let env = Env::new();
    config(
        &env,
        &pg.url("catalog"),
        "  - name: slow\n    kind: command\n    argv: [\"sh\", \"-c\", \"sleep 60; echo done\"]\n    store: local\n    schedule: \"0 3 * * *\"\n",
        "  shutdown_grace: 5s\n  leader: { kind: postgres }\n",
    );
    let daemon = spawn(&env, "leader", &["run"]);
    let started = Instant::now();
    while !runs(&env).iter().any(|r| r["status"] == "running") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backup does not run: {:?}\n{}",
            runs(&env),
            std::fs::read_to_string(&daemon.1).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = pg.psql(
        "catalog",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'",
    );
    assert_eq!(killed, "1", "one connection held the advisory lock");
    let cut = Instant::now();
    wait_until("the backup stops", Duration::from_secs(30), || {
        runs(&env).iter().all(|r| r["status"] != "running")
    });
    let took = cut.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "ran {took:?} without the lock"
    );
    let r = runs(&env);
    assert_eq!(r[0]["status"], "failed", "{r:?}");
    let snaps = env.snapshots();
    assert!(snaps.iter().all(|s| s["status"] != "complete"), "{snaps:?}");
    sigterm(&daemon.0);
    let (_, log, _) = wait_exit(daemon, Duration::from_secs(30));
    assert!(
        log.contains("cannot renew leadership") || log.contains("lost leadership"),
        "{log}"
    );
}

/// `run --jobs`: a backup-role workload (`backup,copy,prune`) runs without the age identity
/// (only the recipients), a verify-role one needs it and says what to mount, and each role
/// elects its own leader: a backup daemon holding its lock blocks another backup run but
/// not a verify run.
#[test]
fn job_roles_run_apart_under_their_own_locks_and_backups_need_no_identity() {
    let env = Env::new();
    job_roles_run_apart(&env, "sqlite://./catalog.db", &|| {
        assert!(
            std::fs::metadata(env.path("catalog.db.leader.lock-backup")).is_ok(),
            "the backup role's lock file"
        );
    });
}

/// The same on a PostgreSQL catalog: the roles' advisory locks are apart.
#[test]
fn job_roles_on_a_postgres_catalog_take_their_own_advisory_locks() {
    let pg = PgServer::start();
    pg.create_db("catalog");
    let env = Env::new();
    job_roles_run_apart(&env, &pg.url("catalog"), &|| {
        // The backup role's key, LOCK_KEY + 1: its low 32 bits are pg_locks' objid.
        let objids = pg.psql(
            "catalog",
            "SELECT string_agg(objid::text, ',') FROM pg_locks WHERE locktype = 'advisory' AND granted",
        );
        assert_eq!(objids, "1651466613", "only the backup role's lock is held");
    });
}

/// `backup_lock_held` checks the backup role's lock while its daemon leads.
fn job_roles_run_apart(env: &Env, catalog: &str, backup_lock_held: &dyn Fn()) {
    std::fs::create_dir_all(env.path("data")).expect("data dir");
    std::fs::write(env.path("data/hello.txt"), "hello roles\n").expect("data file");
    env.write_config(&format!(
        "catalog: \"{catalog}\"\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n  dr: {{ url: \"file://./dr\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: s0\n    kind: files\n    path: ./data\n    store: local\n    copies: [dr]\n    \
         schedule: \"0 0 1 1 *\"\n    retention: {{ daily: 7, schedule: \"0 0 1 1 *\" }}\n    \
         verify: {{ schedule: \"* * * * * *\" }}\n\
         daemon:\n  shutdown_grace: 5s\n"
    ));
    // The backup pod has no identity: no file, and lifeboat reads it from nowhere else.
    let key = std::fs::read(env.path("age.key")).expect("read age.key");
    std::fs::remove_file(env.path("age.key")).expect("remove age.key");

    let out = env.ok(&["run", "--once", "--jobs", "backup,copy,prune"]);
    assert!(out.contains("3 job(s) succeeded, 0 failed"), "{out}");
    assert_eq!(env.snapshots().len(), 1);
    let jobs: BTreeMap<String, String> = runs(env)
        .iter()
        .map(|r| {
            (
                r["job"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(!jobs.contains_key("verify"), "{jobs:?}");
    assert_eq!(
        jobs.get("backup").map(String::as_str),
        Some("complete"),
        "{jobs:?}"
    );
    let verifications = env.ok(&["verifications", "list", "--output", "json"]);
    assert_eq!(
        verifications.trim(),
        "[]",
        "the backup role verified: {verifications}"
    );

    // A backup daemon holds the backup role's lock...
    let daemon = spawn(
        env,
        "backup-daemon",
        &["run", "--jobs", "backup,copy,prune"],
    );
    let log = daemon.1.clone();
    wait_until("the backup daemon to lead", Duration::from_secs(60), || {
        !log_events(&log, "became leader").is_empty()
    });
    // ...so a second backup-role run finds its lock taken (one leader per role)...
    let err = env.fails(&["run", "--once", "--jobs", "backup"]);
    assert!(
        err.contains("another lifeboat replica holds the leader lock"),
        "{err}"
    );
    backup_lock_held();
    // ...but a verify run is not blocked: without the identity it fails saying what to mount.
    std::thread::sleep(Duration::from_millis(1100));
    let err = env.fails(&["run", "--once", "--jobs", "verify"]);
    assert!(!err.contains("holds the leader lock"), "{err}");
    assert!(err.contains("verify s0"), "{err}");
    assert!(
        err.contains("age identity") && err.contains("mount the age identity"),
        "the error must say to mount the identity: {err}"
    );
    let verifications = env.ok(&["verifications", "list", "--output", "json"]);
    assert_eq!(
        verifications.trim(),
        "[]",
        "a missing identity mount is not a failed verification of the snapshot"
    );
    // With the identity mounted, the verify role verifies (still beside the backup leader).
    std::fs::write(env.path("age.key"), &key).expect("restore age.key");
    std::thread::sleep(Duration::from_millis(1100));
    let out = env.ok(&["run", "--once", "--jobs", "verify"]);
    assert!(out.contains("1 job(s) succeeded, 0 failed"), "{out}");
    assert_eq!(env.snapshots().len(), 1, "the verify role backed up");
    let verifications: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["verifications", "list", "--output", "json"]))
            .expect("verifications json");
    assert!(
        verifications.iter().any(|v| v["status"] == "passed"),
        "{verifications:?}"
    );

    // Mixing the roles in one workload is refused, naming the split.
    let err = env.fails(&["run", "--once", "--jobs", "backup,verify"]);
    assert!(err.contains("two workloads"), "{err}");

    sigterm(&daemon.0);
    let (status, log, _) = wait_exit(daemon, Duration::from_secs(30));
    assert!(status.success(), "{log}");
}
