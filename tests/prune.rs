//! `lifeboat prune`: GFS retention over a simulated year of snapshots (written straight into
//! a local store, so no year has to pass), and S3 Object Lock against moto.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::s3::S3;
use common::*;
use lifeboat::model::snapshot;
use lifeboat::policy::retention::{self, Action, Item, ItemStatus, Policy};

const POLICY: &str = "{ keep_last: 3, hourly: 4, daily: 5, weekly: 4, monthly: 6, yearly: 2 }";

fn policy() -> Policy {
    Policy {
        keep_last: Some(3),
        hourly: Some(4),
        daily: Some(5),
        weekly: Some(4),
        monthly: Some(6),
        yearly: Some(2),
    }
}

/// 60 creation times over 2025: every 8 days from Jan 3rd (45), then 15 in the last three
/// days of the year, a few hours apart.
fn simulated_year() -> Vec<DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2025, 1, 3, 2, 0, 0).unwrap();
    let mut times: Vec<DateTime<Utc>> = (0..45).map(|k| start + Duration::days(8 * k)).collect();
    let end = Utc.with_ymd_and_hms(2025, 12, 29, 1, 30, 0).unwrap();
    times.extend((0..15).map(|k| end + Duration::hours(5 * k)));
    assert_eq!(times.len(), 60);
    times
}

fn ids_with_status(env: &Env, status: &str) -> BTreeSet<String> {
    env.snapshots()
        .iter()
        .filter(|s| s["status"] == status)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Adds catalog rows the stores cannot show: a snapshot another process is writing right
/// now (no run row, so crash recovery leaves it alone) and a failed one.
fn add_running_and_failed(env: &Env, running: &str, failed: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", env.path("catalog.db").display());
        let catalog = lifeboat::catalog::Catalog::open(&lifeboat::config::SecretString::new(url))
            .await
            .unwrap();
        let now = Utc::now();
        catalog
            .insert_snapshot(running, "db", "postgres", "local", now)
            .await
            .unwrap();
        let at = Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap();
        catalog
            .insert_snapshot(failed, "db", "postgres", "local", at)
            .await
            .unwrap();
        catalog
            .fail_snapshot(failed, "pg_dump: connection refused", at)
            .await
            .unwrap();
        catalog.close().await;
    });
}

#[test]
fn prune_a_simulated_year() {
    let env = Env::new();
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n\
         sources:\n\
         \x20 - {{ name: db, kind: postgres, url: \"postgres://u@127.0.0.1:1/db\", store: local, retention: {POLICY} }}\n\
         \x20 - {{ name: other, kind: postgres, url: \"postgres://u@127.0.0.1:1/db\", store: local }}\n"
    ));
    let times = simulated_year();
    let ids: Vec<String> = times
        .iter()
        .map(|t| env.write_fake_snapshot("store", "db", *t))
        .collect();
    // A source without retention: never pruned.
    let others: Vec<String> = times[..5]
        .iter()
        .map(|t| env.write_fake_snapshot("store", "other", *t))
        .collect();
    let out = env.ok(&["catalog", "rebuild"]);
    assert!(out.contains("65 snapshot(s)"), "{out}");
    let running = snapshot::new_id(Utc::now());
    let failed = snapshot::new_id(Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap());
    add_running_and_failed(&env, &running, &failed);
    // The running backup has written its data object but no manifest yet.
    let running_dir = env.path("store").join("db").join(&running);
    std::fs::create_dir_all(&running_dir).unwrap();
    std::fs::write(running_dir.join(snapshot::DATA_OBJECT), "in flight").unwrap();

    // What the pure planner says, and GFS by hand for a few periods.
    let items: Vec<Item> = ids
        .iter()
        .zip(&times)
        .map(|(id, t)| Item {
            id: id.clone(),
            created_at: *t,
            status: ItemStatus::Complete,
            verified: false,
            lock: None,
        })
        .collect();
    let decisions = retention::plan(&policy(), &items, Utc::now());
    let expected: BTreeSet<String> = retention::kept_ids(&items, &decisions);
    let newest_in = |from: DateTime<Utc>, to: DateTime<Utc>| -> String {
        ids.iter()
            .zip(&times)
            .filter(|(_, t)| **t >= from && **t < to)
            .max_by_key(|(_, t)| **t)
            .map(|(id, _)| id.clone())
            .unwrap()
    };
    let month = |m: u32| Utc.with_ymd_and_hms(2025, m, 1, 0, 0, 0).unwrap();
    // monthly 6: the newest of Dec, Nov, Oct, Sep, Aug, Jul; nothing of June.
    for m in 7..12 {
        assert!(
            expected.contains(&newest_in(month(m), month(m + 1))),
            "month {m}"
        );
    }
    let june: Vec<&String> = ids
        .iter()
        .zip(&times)
        .filter(|(_, t)| **t >= month(6) && **t < month(7))
        .map(|(id, _)| id)
        .collect();
    assert!(june.iter().all(|id| !expected.contains(*id)), "June pruned");
    // yearly 2 with only one year: the newest snapshot, and the oldest (rule not filled).
    assert!(expected.contains(&ids[0]), "oldest kept by yearly");
    // daily 5: the newest of Dec 31, 30, 29 and of the two snapshot days before.
    let day = |d: u32| Utc.with_ymd_and_hms(2025, 12, d, 0, 0, 0).unwrap();
    for d in 29..31 {
        assert!(expected.contains(&newest_in(day(d), day(d + 1))), "day {d}");
    }
    assert!(expected.contains(ids.last().unwrap()));
    assert!(
        expected.len() < 30 && expected.len() > 10,
        "{}",
        expected.len()
    );

    let files_before = files_under(&env.path("store"));

    // Dry run: the plan with its reasons; nothing touched.
    let out = env.ok(&["prune", "--dry-run"]);
    assert!(out.contains("dry run: nothing is deleted"), "{out}");
    assert!(
        out.contains(
            "source db: retention keep_last 3, hourly 4, daily 5, weekly 4, monthly 6, yearly 2"
        ),
        "{out}"
    );
    assert!(out.contains("monthly 2025-11"), "{out}");
    assert!(out.contains("daily 2025-12-31"), "{out}");
    assert!(
        out.contains("yearly (oldest snapshot, rule not filled)"),
        "{out}"
    );
    assert!(out.contains("newest complete"), "{out}");
    assert!(
        out.contains("running (another process is writing)"),
        "{out}"
    );
    assert!(out.contains("failed run"), "{out}");
    assert!(out.contains("no rule keeps it"), "{out}");
    assert!(
        out.contains("source other: no retention policy; keeping all 5 snapshot(s)"),
        "{out}"
    );
    assert_eq!(
        out.matches(" DELETE ").count(),
        60 - expected.len() + 1,
        "{out}"
    );
    assert_eq!(files_under(&env.path("store")), files_before);
    assert_eq!(env.snapshots().len(), 67);
    let runs_before: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["runs", "list", "--output", "json"])).unwrap();
    assert!(runs_before.is_empty(), "a dry run records nothing");

    // The JSON plan agrees with the planner.
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["prune", "db", "--dry-run", "--output", "json"])).unwrap();
    assert_eq!(json["dry_run"], true);
    let planned_keep: BTreeSet<String> = json["sources"][0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "keep" && s["status"] == "complete")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(planned_keep, expected);

    // A prune that died half-way through two snapshots: one lost only its manifest, the
    // other its whole directory; their catalog rows are still there. The next prune
    // finishes both.
    let doomed: Vec<&String> = ids
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| d.action == Action::Delete)
        .map(|(id, _)| id)
        .take(2)
        .collect();
    std::fs::remove_file(
        env.path("store")
            .join("db")
            .join(doomed[0])
            .join(snapshot::MANIFEST),
    )
    .unwrap();
    std::fs::remove_dir_all(env.path("store").join("db").join(doomed[1])).unwrap();

    // The real thing.
    let out = env.ok(&["prune"]);
    assert!(
        out.contains(&format!(
            "source db: pruned {} snapshot(s)",
            60 - expected.len() + 1
        )),
        "{out}"
    );
    let mut survivors = ids_with_status(&env, "complete");
    for id in &others {
        assert!(survivors.remove(id), "{id} of `other` must stay");
    }
    assert_eq!(survivors, expected);
    assert!(
        ids_with_status(&env, "failed").is_empty(),
        "failed row pruned"
    );
    assert_eq!(
        ids_with_status(&env, "running"),
        BTreeSet::from([running.clone()])
    );
    // The store holds exactly the survivors (and the running backup's object).
    let mut want: Vec<String> = expected
        .iter()
        .chain(&others)
        .flat_map(|id| {
            let source = if others.contains(id) { "other" } else { "db" };
            [
                format!("{source}/{id}/{}", snapshot::DATA_OBJECT),
                format!("{source}/{id}/{}", snapshot::MANIFEST),
            ]
        })
        .collect();
    want.push(format!("db/{running}/{}", snapshot::DATA_OBJECT));
    want.sort();
    assert_eq!(files_under(&env.path("store")), want);
    for (id, d) in ids.iter().zip(&decisions) {
        let exists = env.path("store").join("db").join(id).exists();
        assert_eq!(exists, d.action == Action::Keep, "{id}");
    }

    // Idempotent: a second prune deletes nothing; both runs are recorded.
    let out = env.ok(&["prune", "db"]);
    assert!(out.contains("source db: pruned 0 snapshot(s)"), "{out}");
    assert_eq!(files_under(&env.path("store")), want);
    let runs: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["runs", "list", "--output", "json"])).unwrap();
    let prunes: Vec<&serde_json::Value> = runs.iter().filter(|r| r["job"] == "prune").collect();
    assert_eq!(prunes.len(), 2, "db twice; none for `other`: {runs:?}");
    assert!(prunes.iter().all(|r| r["status"] == "complete"), "{runs:?}");

    // A catalog rebuilt from the store agrees.
    std::fs::remove_file(env.path("catalog.db")).unwrap();
    let _ = std::fs::remove_file(env.path("catalog.db-wal"));
    let _ = std::fs::remove_file(env.path("catalog.db-shm"));
    env.ok(&["catalog", "rebuild"]);
    assert_eq!(ids_with_status(&env, "complete").len(), expected.len() + 5);
}

#[test]
fn prune_rejects_unknown_sources_and_bad_config() {
    let env = Env::new();
    let config = |store: &str, extra: &str| {
        format!(
            "stores:\n  local: {{ url: \"{store}\"{extra} }}\n\
             encryption:\n  recipients: [\"{{recipient}}\"]\n\
             sources:\n  - {{ name: db, kind: postgres, url: \"postgres://u@127.0.0.1:1/db\", store: local, retention: {{ daily: 7 }} }}\n"
        )
    };
    env.write_config(&config("file://./store", ""));
    let err = env.fails(&["prune", "nope"]);
    assert!(err.contains("no source named `nope`"), "{err}");

    env.write_config(&config(
        "file://./store",
        ", object_lock: { mode: compliance, days: 30 }",
    ));
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("stores.local.object_lock"), "{err}");
    assert!(err.contains("s3://"), "{err}");

    env.write_config(&config(
        "s3://b/p",
        ", object_lock: { mode: forever, days: 30 }",
    ));
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("object_lock.mode"), "{err}");

    env.write_config(&config(
        "s3://b/p",
        ", object_lock: { mode: governance, days: 0 }",
    ));
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("object_lock.days"), "{err}");

    env.write_config(
        &config("file://./store", "").replace("retention: { daily: 7 }", "retention: { dayly: 7 }"),
    );
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("retention") && err.contains("dayly"), "{err}");

    env.write_config(&config("file://./store", "").replace("daily: 7", "daily: 0"));
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("sources[0].retention"), "{err}");
}

#[test]
fn object_lock_with_moto() {
    let mut moto = MotoServer::start();
    let s3 = S3::new(&moto);
    s3.create_locked_bucket("locked");
    s3.set_default_retention("locked", "COMPLIANCE", 2);
    moto.create_bucket("plain");
    let src = PgServer::start();
    src.create_db("app");
    src.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);",
    );
    let env = Env::new();
    let stores = format!(
        "  locked: {{ url: \"s3://locked/lb\", region: us-east-1, endpoint: \"{e}\", object_lock: {{ mode: compliance, days: 2 }} }}\n  \
           plain: {{ url: \"s3://plain/lb\", region: us-east-1, endpoint: \"{e}\", object_lock: {{ mode: governance, days: 1 }} }}",
        e = moto.endpoint()
    );
    env.pg_config("sqlite://./catalog.db", &src.url("app"), "locked", &stores);
    let yaml = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        yaml.replace(
            "    store: locked\n",
            "    store: locked\n    retention: { keep_last: 1 }\n",
        ),
    )
    .unwrap();

    let first = env.backup();
    let second = env.backup();
    let started = Utc::now();
    for id in [&first, &second] {
        for name in [snapshot::DATA_OBJECT, snapshot::MANIFEST] {
            let key = format!("lb/db/{id}/{name}");
            let r = s3
                .retention("locked", &key)
                .unwrap_or_else(|| panic!("{key} has no retention"));
            assert_eq!(r.mode, "COMPLIANCE", "{key}");
            let days = (r.until - started).num_minutes() as f64 / (24.0 * 60.0);
            assert!((1.9..=2.01).contains(&days), "{key}: until {}", r.until);
        }
    }
    // With the orchestrator's own keys, a locked version cannot be destroyed.
    let key = format!("lb/db/{first}/{}", snapshot::DATA_OBJECT);
    let version = s3.versions("locked", &key).pop().expect("a version");
    let refused = s3.delete_version("locked", &key, &version);
    assert!(refused.is_err(), "compliance-locked version was deleted");

    // keep_last 1 would delete the first snapshot, but it is locked: prune says so.
    let out = env.ok(&["prune", "--dry-run"]);
    assert!(out.contains("object lock (compliance) until"), "{out}");
    let out = env.ok(&["prune"]);
    assert!(out.contains("object lock (compliance) until"), "{out}");
    assert!(out.contains("pruned 0 snapshot(s)"), "{out}");
    let keys = moto.list_keys("locked", "lb/");
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(ids_with_status(&env, "complete").len(), 2);

    // A store that says object_lock but whose bucket has none: the backup fails, clearly,
    // before writing anything.
    let yaml = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        yaml.replace("    store: locked\n", "    store: plain\n"),
    )
    .unwrap();
    let err = env.fails(&["backup", "db"]);
    assert!(
        err.contains("does not lock objects as they are written"),
        "{err}"
    );
    assert!(
        !err.contains("raw: Response"),
        "no raw responses in errors: {err}"
    );
    assert!(!err.contains("testing-secret-key"), "{err}");
    let snaps = env.snapshots();
    assert_eq!(snaps.last().unwrap()["status"], "failed");
    assert!(
        moto.list_keys("plain", "lb/").is_empty(),
        "the unlocked objects were removed"
    );

    // The store goes away: prune stops, says where and why, and deletes nothing.
    std::fs::write(env.path("lifeboat.yaml"), yaml).unwrap();
    moto.stop();
    let err = env.fails(&["prune", "db"]);
    assert!(err.contains("prune of `db` stopped at snapshot"), "{err}");
    assert!(err.contains("running `lifeboat prune` again"), "{err}");
    assert!(!err.contains("testing-secret-key"), "{err}");
    assert_eq!(ids_with_status(&env, "complete").len(), 2);
}
