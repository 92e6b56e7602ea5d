//! Runbooks against real servers: the shipped restore runbooks bring back a files source and
//! a PostgreSQL source (catalog in PostgreSQL); a run killed mid-step resumes without
//! repeating finished steps (catalog in SQLite); dry runs change nothing; a step that needs
//! confirmation is refused without a terminal; a failing step stops the run with its error.

mod common;

use common::*;
use std::process::Stdio;
use std::time::Duration;

/// A config with a files source `docs` (./docs) and, when `pg_url` is given, a PostgreSQL
/// source `db`.
fn config(env: &Env, catalog: &str, pg_url: Option<&str>) {
    let mut yaml = format!(
        "stores:\n  local: {{ url: \"file://./store\" }}\ncatalog: {catalog}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: docs\n    kind: files\n    path: ./docs\n    store: local\n"
    );
    if let Some(url) = pg_url {
        yaml.push_str(&format!(
            "  - name: db\n    kind: postgres\n    url: \"{url}\"\n    store: local\n"
        ));
    }
    env.write_config(&yaml);
    std::fs::create_dir_all(env.path("docs/sub")).unwrap();
    std::fs::write(env.path("docs/a.txt"), "alpha\n").unwrap();
    std::fs::write(env.path("docs/sub/b.txt"), "beta ✓\n").unwrap();
}

const BACKUP_ALL: &str = "# Back up everything\n\nProse is not run.\n\n\
    ```sh\nrm -rf /\n```\n\n\
    ```lifeboat {#backup-docs timeout=5m}\nlifeboat backup docs\n```\n\n\
    ```lifeboat {#backup-db timeout=5m}\nlifeboat backup db\n```\n\n\
    ```lifeboat {#list timeout=1m}\nlifeboat snapshots list\n```\n";

fn newest(env: &Env, source: &str) -> String {
    env.snapshots()
        .iter()
        .rev()
        .find(|s| s["source"] == source && s["status"] == "complete")
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("no complete snapshot of {source}"))
        .to_string()
}

/// The run id a `runbook run` printed (`run rb-...`).
fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in:\n{stdout}"))
        .to_string()
}

fn log(env: &Env, id: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["runbook", "log", id, "--output", "json"])).expect("log json")
}

/// (step, attempt, status) of every attempt of run `id`, in order.
fn attempts(env: &Env, id: &str) -> Vec<(String, i64, String)> {
    log(env, id)["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["attempt"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn shipped_runbooks_list_and_lint() {
    let env = Env::new();
    let list = env.ok(&["runbook", "list"]);
    for name in [
        "restore-postgres",
        "restore-redis",
        "restore-etcd",
        "restore-files",
        "restore-fabric",
        "catalog-lost",
        "key-compromise",
        "planned-switchover",
        "unplanned-failover",
        "rejoin-failback",
        "tier-pod",
        "tier-node",
        "tier-zone",
        "tier-region",
        "tier-complete-disaster",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    let lint = env.ok(&["runbook", "lint"]);
    assert!(!lint.contains("FAIL"), "{lint}");
    let shown = env.ok(&["runbook", "show", "restore-postgres"]);
    assert!(
        shown.contains("```lifeboat {#restore confirm=true"),
        "{shown}"
    );
    // A broken runbook file fails lint, naming the line and the step.
    std::fs::write(
        env.path("bad.md"),
        "```lifeboat {#a}\nrestor x\n```\n```lifeboat {#a}\nstatus\n```\n",
    )
    .unwrap();
    let out = env.run(&["runbook", "lint", "./bad.md"]);
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("line 4") && stdout.contains("used twice"),
        "{stdout}"
    );
}

#[test]
fn runbooks_back_up_and_restore_files_and_postgres_with_a_postgres_catalog() {
    let pg = PgServer::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g;",
    );
    pg.create_db("catalog");
    pg.create_db("restored");
    let env = Env::new();
    config(&env, &pg.url("catalog"), Some(&pg.url("app")));
    std::fs::write(env.path("backup-all.md"), BACKUP_ALL).unwrap();

    let out = env.ok(&["runbook", "run", "./backup-all.md"]);
    let backup_run = run_id(&out);
    assert!(out.contains("complete"), "{out}");
    assert!(
        !out.contains("rm -rf"),
        "prose was run or shown as a step:\n{out}"
    );
    let docs = newest(&env, "docs");
    let db = newest(&env, "db");

    let out = env.ok(&[
        "runbook",
        "run",
        "restore-files",
        "--yes",
        "--var",
        "SOURCE=docs",
        "--var",
        &format!("SNAPSHOT={docs}"),
        "--var",
        "DIR=./restored-docs",
    ]);
    let files_run = run_id(&out);
    assert_eq!(
        std::fs::read_to_string(env.path("restored-docs/sub/b.txt")).unwrap(),
        "beta ✓\n"
    );
    let target = pg.url("restored");
    env.ok(&[
        "runbook",
        "run",
        "restore-postgres",
        "--yes",
        "--var",
        "SOURCE=db",
        "--var",
        &format!("SNAPSHOT={db}"),
        "--var",
        &format!("TARGET={target}"),
    ]);
    assert_eq!(
        pg.psql("restored", "SELECT count(*) || ':' || max(v) FROM t")
            .trim(),
        "500:row 99"
    );

    // The timeline: who ran each step, when, with which outcome.
    let l = log(&env, &files_run);
    assert_eq!(l["run"]["status"], "complete", "{l}");
    assert_eq!(l["run"]["runbook"], "restore-files");
    let steps: Vec<&str> = l["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["check-config", "list-snapshots", "restore", "runs"]);
    for s in l["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "done", "{s}");
        assert!(s["who"].as_str().unwrap().contains('@'), "{s}");
        assert!(s["finished_at"].is_string(), "{s}");
    }
    assert_eq!(
        attempts(&env, &backup_run)
            .iter()
            .map(|(s, a, st)| format!("{s}#{a}:{st}"))
            .collect::<Vec<_>>(),
        ["backup-docs#1:done", "backup-db#1:done", "list#1:done"]
    );
    let table = env.ok(&["runbook", "log"]);
    assert!(
        table.contains(&files_run) && table.contains("restore-postgres"),
        "{table}"
    );
}

#[test]
fn a_killed_run_resumes_without_repeating_finished_steps() {
    let env = Env::new();
    config(&env, "sqlite://./catalog.db", None);
    // A command source whose dump waits for a file: its backup stalls until the test says go.
    let go = env.path("go");
    let yaml = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        format!(
            "{yaml}  - name: slow\n    kind: command\n    argv: [\"sh\", \"-c\", \"while [ ! -e {} ]; do sleep 0.1; done; echo data\"]\n    store: local\n",
            go.display()
        ),
    )
    .unwrap();
    std::fs::write(
        env.path("two-backups.md"),
        "# Two backups\n\n```lifeboat {#backup-docs}\nbackup docs\n```\n\n\
         ```lifeboat {#backup-slow}\nbackup slow\n```\n\n```lifeboat {#list}\nsnapshots list\n```\n",
    )
    .unwrap();

    let runner = env
        .command(&["runbook", "run", "./two-backups.md"])
        // The stalled step inherits stdout/stderr: pipes would not close when the runner dies.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runbook run");
    let running_step = || -> Option<(String, i64)> {
        let runs: serde_json::Value =
            serde_json::from_str(&env.ok(&["runbook", "log", "--output", "json"])).ok()?;
        let id = runs.get(0)?["id"].as_str()?.to_string();
        let l = log(&env, &id);
        let slow = l["steps"]
            .as_array()?
            .iter()
            .find(|s| s["step"] == "backup-slow" && s["status"] == "running")?;
        Some((id, slow["pid"].as_i64()?))
    };
    wait_until("the slow step to run", Duration::from_secs(60), || {
        running_step().is_some()
    });
    let (id, step_pid) = running_step().unwrap();
    kill9(runner);
    assert_eq!(log(&env, &id)["run"]["status"], "running");

    // The stalled step's process lives on in its own group: resuming now is refused.
    let err = env.fails(&["runbook", "resume", &id]);
    assert!(err.contains("still running"), "{err}");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{step_pid}")])
        .status();
    wait_until("the stalled step to die", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{step_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{step_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });

    std::fs::write(&go, "").unwrap();
    let out = env.ok(&["runbook", "resume", &id]);
    assert!(
        out.contains("backup-docs") && out.contains("skipped"),
        "the done step is shown as skipped:\n{out}"
    );
    assert_eq!(
        attempts(&env, &id)
            .iter()
            .map(|(s, a, st)| format!("{s}#{a}:{st}"))
            .collect::<Vec<_>>(),
        [
            "backup-docs#1:done",
            "backup-slow#1:interrupted",
            "backup-slow#2:done",
            "list#1:done"
        ]
    );
    let snaps = env.snapshots();
    let docs_complete = snaps
        .iter()
        .filter(|s| s["source"] == "docs" && s["status"] == "complete")
        .count();
    assert_eq!(docs_complete, 1, "the finished step ran again: {snaps:?}");
    assert!(
        snaps
            .iter()
            .any(|s| s["source"] == "slow" && s["status"] == "complete")
    );
    assert_eq!(log(&env, &id)["run"]["status"], "complete");
    // A complete run has nothing to resume.
    let err = env.fails(&["runbook", "resume", &id]);
    assert!(err.contains("already complete"), "{err}");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn dry_run_confirmation_and_a_failing_step() {
    let env = Env::new();
    config(&env, "sqlite://./catalog.db", None);
    env.ok(&["backup", "docs"]);
    let snap = newest(&env, "docs");
    let vars = [
        "--var".to_string(),
        "SOURCE=docs".into(),
        "--var".into(),
        format!("SNAPSHOT={snap}"),
        "--var".into(),
        "DIR=./out dir".into(),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["runbook", "run", "restore-files"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(vars.iter().cloned());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // Dry run: the steps with their values, nothing run, nothing recorded.
    let a = with(&["--dry-run"]);
    let out = env.ok(&strs(&a));
    assert!(
        out.contains(&format!("$ lifeboat restore {snap} --to-dir './out dir'")),
        "{out}"
    );
    assert!(!env.path("out dir").exists());
    assert_eq!(env.ok(&["runbook", "log", "--output", "json"]).trim(), "[]");
    // A variable left out is named.
    let err = env.fails(&["runbook", "run", "restore-files", "--dry-run"]);
    assert!(err.contains("--var SNAPSHOT="), "{err}");

    // Not a terminal and no --yes: stopped before the confirm=true step.
    let a = with(&[]);
    let out = env
        .command(&strs(&a))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("needs confirmation") && stderr.contains("--yes"),
        "{stderr}"
    );
    let id = run_id(&text(&out.stdout));
    assert!(!env.path("out dir").exists());
    assert_eq!(log(&env, &id)["run"]["status"], "stopped");
    env.ok(&["runbook", "resume", &id, "--yes"]);
    assert_eq!(
        std::fs::read_to_string(env.path("out dir/a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        attempts(&env, &id)
            .iter()
            .map(|(s, _, st)| format!("{s}:{st}"))
            .collect::<Vec<_>>(),
        [
            "check-config:done",
            "list-snapshots:done",
            "restore:done",
            "runs:done"
        ]
    );

    // A failing step stops the run with its error; the steps after it do not run.
    let out = env.run(&[
        "runbook",
        "run",
        "restore-files",
        "--yes",
        "--var",
        "SOURCE=docs",
        "--var",
        "SNAPSHOT=20200101T000000Z-deadbeef",
        "--var",
        "DIR=./never",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("step `restore` failed") && stderr.contains("runbook resume"),
        "{stderr}"
    );
    let id = run_id(&text(&out.stdout));
    let l = log(&env, &id);
    assert_eq!(l["run"]["status"], "failed");
    let steps = attempts(&env, &id);
    assert_eq!(steps.last().unwrap().0, "restore");
    assert_eq!(steps.last().unwrap().2, "failed");
    let error = l["steps"].as_array().unwrap().last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!error.is_empty(), "{l}");
    assert!(!env.path("never").exists());
}

#[test]
fn a_step_past_its_timeout_is_stopped_and_the_run_says_so() {
    let env = Env::new();
    config(&env, "sqlite://./catalog.db", None);
    let yaml = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        format!(
            "{yaml}  - name: slow\n    kind: command\n    argv: [\"sleep\", \"600\"]\n    store: local\n"
        ),
    )
    .unwrap();
    std::fs::write(
        env.path("slow.md"),
        "# Slow\n\n```lifeboat {#slow timeout=2s}\nbackup slow\n```\n\n```lifeboat {#after}\nstatus\n```\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = env.run(&["runbook", "run", "./slow.md"]);
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout was not enforced: {:?}",
        started.elapsed()
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("timed out after 2s"), "{stderr}");
    let id = run_id(&text(&out.stdout));
    assert_eq!(
        attempts(&env, &id)
            .iter()
            .map(|(s, a, st)| format!("{s}#{a}:{st}"))
            .collect::<Vec<_>>(),
        ["slow#1:interrupted"]
    );
    assert_eq!(log(&env, &id)["run"]["status"], "failed");
}
