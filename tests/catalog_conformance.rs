//! The catalog conformance suite: one set of cases, run against every engine the catalog
//! supports (a fresh SQLite file, and a fresh database on one throwaway PostgreSQL server),
//! so that both engines are held to the same behaviour through the library API.
//!
//! Each engine is one `#[test]` that runs every case in turn and reports each one; a case
//! that panics does not stop the others. `CONFORMANCE_CASES=a,b` runs only the cases named.

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::PgServer;
use lifeboat::catalog::{Catalog, NewRun, NewVerification, Status, VerificationStatus, ts};
use lifeboat::config::SecretString;
use lifeboat::snapshot::{self, Manifest};

/// Lists the cases once: `CASES` (their names) and `run_case` (name → case).
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        const CASES: &[&str] = &[$(stringify!($case)),*];

        async fn run_case(name: &str, db: &Db) {
            match name {
                $(stringify!($case) => $case(db).await,)*
                other => panic!("no case named {other}"),
            }
        }
    };
}

suite!(
    run_insert_heartbeat_finish,
    runs_listing_order_and_limit,
    snapshot_lifecycle,
    fail_snapshot_never_touches_a_complete_one,
    record_complete_replaces_the_row,
    copies_start_and_finish,
    verifications_and_newest_passed,
    timestamps_round_trip_and_order,
    last_runs_per_source_and_job,
    concurrent_opens,
);

#[test]
fn sqlite() {
    run_suite("sqlite", |name| {
        let dir = tempfile::tempdir().expect("create a temp dir for the SQLite catalog");
        let url = format!(
            "sqlite://{}",
            dir.path().join(name).join("catalog.db").display()
        );
        Db {
            engine: "sqlite",
            url,
            _dir: Some(dir),
        }
    });
}

#[test]
fn postgres() {
    let pg = PgServer::start();
    run_suite("postgres", |name| {
        pg.create_db(name);
        Db {
            engine: "postgres",
            url: pg.url(name),
            _dir: None,
        }
    });
}

/// Runs every case (or those in `$CONFORMANCE_CASES`) against fresh databases from `fresh`.
fn run_suite(engine: &str, fresh: impl Fn(&str) -> Db) {
    let only = std::env::var("CONFORMANCE_CASES").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|c| c == name))
    };
    let mut failed = Vec::new();
    for name in CASES.iter().copied().filter(|n| wanted(n)) {
        let started = Instant::now();
        let db = fresh(name);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("build a tokio runtime")
                .block_on(run_case(name, &db))
        }));
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => eprintln!("{engine}: {name} ... ok ({ms} ms)"),
            Err(_) => {
                eprintln!("{engine}: {name} ... FAILED ({ms} ms)");
                failed.push(name);
            }
        }
    }
    assert!(failed.is_empty(), "{engine}: failed cases: {failed:?}");
}

/// One fresh, empty catalog database.
struct Db {
    engine: &'static str,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn secret_url(&self) -> SecretString {
        SecretString::new(self.url.clone())
    }

    async fn open(&self) -> Catalog {
        Catalog::open(&self.secret_url())
            .await
            .unwrap_or_else(|e| panic!("{}: open {}: {e}", self.engine, self.url))
    }

    /// The single integer `sql` selects, read from the database directly (not through the
    /// library).
    async fn count(&self, sql: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("{}: connect {}: {e}", self.engine, self.url));
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.engine));
        pool.close().await;
        n
    }
}

/// 2026-03-01 10:00:00 UTC plus `ms` milliseconds.
fn at(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0)
        .single()
        .expect("a valid time")
        + Duration::milliseconds(ms)
}

fn run<'a>(id: &'a str, job: &'a str, source: &'a str, now: DateTime<Utc>) -> NewRun<'a> {
    NewRun {
        id,
        job,
        source,
        snapshot_id: None,
        store: None,
        now,
    }
}

fn manifest(id: &str, source: &str, created_at: DateTime<Utc>) -> Manifest {
    Manifest {
        format: snapshot::FORMAT.into(),
        id: id.into(),
        source: source.into(),
        kind: "postgres".into(),
        created_at,
        finished_at: created_at + Duration::seconds(42),
        duration_ms: 42_000,
        raw_bytes: 1000,
        compressed_bytes: 100,
        stored_bytes: 120,
        sha256: "ab".repeat(32),
        objects: vec![snapshot::ObjectEntry {
            name: snapshot::DATA_OBJECT.into(),
            stored_bytes: 120,
            sha256: "ab".repeat(32),
        }],
        compression: snapshot::Compression {
            algorithm: "zstd".into(),
            level: 3,
        },
        encryption: snapshot::Encryption {
            algorithm: "age".into(),
            recipients: vec!["age1test".into()],
        },
        facts: Default::default(),
        lifeboat_version: "0.1.0".into(),
    }
}

/// A snapshot recorded complete in `store`, created at `created_at`.
async fn complete(c: &Catalog, id: &str, source: &str, store: &str, created_at: DateTime<Utc>) {
    c.insert_snapshot(id, source, "postgres", store, created_at)
        .await
        .expect("insert snapshot");
    c.record_complete(store, &manifest(id, source, created_at))
        .await
        .expect("record complete");
}

fn ids<T>(rows: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    rows.iter().map(|r| id(r).to_string()).collect()
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

async fn run_insert_heartbeat_finish(db: &Db) {
    let c = db.open().await;
    c.insert_run(&NewRun {
        snapshot_id: Some("snap-1"),
        store: Some("local"),
        ..run("r1", "backup", "db", at(0))
    })
    .await
    .expect("insert run");

    let running = c.running_runs().await.expect("running runs");
    assert_eq!(running.len(), 1);
    let r = &running[0];
    assert_eq!(
        (r.id.as_str(), r.job.as_str(), r.source.as_str()),
        ("r1", "backup", "db")
    );
    assert_eq!(r.snapshot_id.as_deref(), Some("snap-1"));
    assert_eq!(r.store.as_deref(), Some("local"));
    assert_eq!((r.started_at, r.heartbeat_at), (at(0), at(0)));
    assert_eq!(r.pid, std::process::id() as i64);
    assert_eq!(r.host, lifeboat::recovery::hostname());

    c.heartbeat("r1", at(15_000)).await.expect("heartbeat");
    let r = &c.running_runs().await.expect("running runs")[0];
    assert_eq!((r.started_at, r.heartbeat_at), (at(0), at(15_000)));

    c.finish_run("r1", Status::Complete, None, at(20_000))
        .await
        .expect("finish run");
    assert!(c.running_runs().await.expect("running runs").is_empty());
    // A heartbeat after the end changes nothing (and is no error).
    c.heartbeat("r1", at(30_000)).await.expect("late heartbeat");
    assert!(c.running_runs().await.expect("running runs").is_empty());

    let runs = c.runs(10).await.expect("runs");
    assert_eq!(runs.len(), 1);
    let s = &runs[0];
    assert_eq!(s.status, Status::Complete);
    assert_eq!(s.started_at, ts(at(0)));
    assert_eq!(s.finished_at.as_deref(), Some(ts(at(20_000)).as_str()));
    assert_eq!(s.error, None);

    c.insert_run(&run("r2", "backup", "db", at(40_000)))
        .await
        .expect("insert run");
    c.finish_run("r2", Status::Failed, Some("pg_dump: refused"), at(41_000))
        .await
        .expect("finish run");
    let runs = c.runs(10).await.expect("runs");
    assert_eq!(runs[1].status, Status::Failed);
    assert_eq!(runs[1].error.as_deref(), Some("pg_dump: refused"));
    c.close().await;
}

async fn runs_listing_order_and_limit(db: &Db) {
    let c = db.open().await;
    // Inserted out of order; listed by start time.
    for (id, ms) in [("b", 2_000), ("c", 3_000), ("a", 1_000), ("d", 4_000)] {
        c.insert_run(&run(id, "backup", "db", at(ms)))
            .await
            .expect("insert run");
    }
    c.finish_run("c", Status::Complete, None, at(3_500))
        .await
        .expect("finish run");
    let all = c.runs(10).await.expect("runs");
    assert_eq!(ids(&all, |r| &r.id), ["a", "b", "c", "d"], "oldest first");
    // The newest `limit`, still oldest first.
    let last2 = c.runs(2).await.expect("runs");
    assert_eq!(ids(&last2, |r| &r.id), ["c", "d"]);
    let running = c.running_runs().await.expect("running runs");
    assert_eq!(ids(&running, |r| &r.id), ["a", "b", "d"]);
    c.close().await;
}

// ---------------------------------------------------------------------------
// Snapshots and copies
// ---------------------------------------------------------------------------

async fn snapshot_lifecycle(db: &Db) {
    let c = db.open().await;
    c.insert_snapshot("s1", "db", "postgres", "local", at(0))
        .await
        .expect("insert snapshot");
    let row = c.snapshot("s1").await.expect("snapshot").expect("a row");
    assert_eq!(row.status, Status::Running);
    assert_eq!(row.created_at, ts(at(0)));
    assert_eq!(row.locations, ["local"]);
    assert!(row.manifest().expect("manifest").is_none());
    // A running snapshot is never deleted.
    assert!(!c.delete_snapshot("s1").await.expect("delete running"));
    assert!(c.snapshot("s1").await.expect("snapshot").is_some());

    let m = manifest("s1", "db", at(0));
    c.record_complete("local", &m).await.expect("record");
    let row = c.snapshot("s1").await.expect("snapshot").expect("a row");
    assert_eq!(row.status, Status::Complete);
    assert_eq!(row.finished_at.as_deref(), Some(ts(at(42_000)).as_str()));
    assert_eq!(
        (row.raw_bytes, row.compressed_bytes, row.stored_bytes),
        (Some(1000), Some(100), Some(120))
    );
    assert_eq!(row.duration_ms, Some(42_000));
    assert_eq!(row.sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(row.manifest().expect("manifest"), Some(m));

    complete(&c, "s2", "other", "local", at(1_000)).await;
    let all = c.snapshots(None).await.expect("snapshots");
    assert_eq!(ids(&all, |r| &r.id), ["s1", "s2"]);
    let of_db = c.snapshots(Some("db")).await.expect("snapshots");
    assert_eq!(ids(&of_db, |r| &r.id), ["s1"]);
    assert!(
        c.snapshots(Some("nope"))
            .await
            .expect("snapshots")
            .is_empty()
    );

    assert!(c.delete_snapshot("s1").await.expect("delete"));
    assert!(c.snapshot("s1").await.expect("snapshot").is_none());
    assert!(!c.delete_snapshot("s1").await.expect("delete again"));
    assert!(!c.delete_snapshot("never").await.expect("delete unknown"));
    c.close().await;
}

async fn fail_snapshot_never_touches_a_complete_one(db: &Db) {
    let c = db.open().await;
    c.insert_snapshot("s1", "db", "postgres", "local", at(0))
        .await
        .expect("insert snapshot");
    c.fail_snapshot("s1", "pg_dump: refused", at(500))
        .await
        .expect("fail");
    let row = c.snapshot("s1").await.expect("snapshot").expect("a row");
    assert_eq!(row.status, Status::Failed);
    assert_eq!(row.error.as_deref(), Some("pg_dump: refused"));
    assert_eq!(row.finished_at.as_deref(), Some(ts(at(500)).as_str()));
    // Failed snapshots are deletable.
    assert!(c.delete_snapshot("s1").await.expect("delete failed"));

    complete(&c, "s2", "db", "local", at(1_000)).await;
    c.fail_snapshot("s2", "late failure", at(2_000))
        .await
        .expect("fail");
    let row = c.snapshot("s2").await.expect("snapshot").expect("a row");
    assert_eq!(row.status, Status::Complete);
    assert_eq!(row.error, None);
    c.close().await;
}

async fn record_complete_replaces_the_row(db: &Db) {
    let c = db.open().await;
    // What `catalog rebuild` does: record a manifest over a stale row, or with none at all.
    c.insert_snapshot("s1", "db", "postgres", "old-store", at(0))
        .await
        .expect("insert snapshot");
    c.fail_snapshot("s1", "thought failed", at(10))
        .await
        .expect("fail");
    c.record_complete("local", &manifest("s1", "db", at(0)))
        .await
        .expect("record over a failed row");
    c.record_complete("local", &manifest("s2", "db", at(5)))
        .await
        .expect("record without a row");
    let rows = c.snapshots(Some("db")).await.expect("snapshots");
    assert_eq!(ids(&rows, |r| &r.id), ["s1", "s2"]);
    for r in &rows {
        assert_eq!(r.status, Status::Complete, "{}", r.id);
        assert_eq!(r.store, "local");
        assert_eq!(r.error, None);
    }
    c.close().await;
}

async fn copies_start_and_finish(db: &Db) {
    let c = db.open().await;
    complete(&c, "s1", "db", "local", at(0)).await;
    // Where s1 is, as one snapshot and in the list: both must say the same.
    let locations = |c: Catalog| async move {
        let one = c.snapshot("s1").await.expect("snapshot").expect("a row");
        let listed = c.snapshots(None).await.expect("snapshots");
        let in_list = listed.iter().find(|s| s.id == "s1").expect("s1 listed");
        assert_eq!(
            one.locations, in_list.locations,
            "snapshot() and snapshots()"
        );
        one.locations
    };
    c.start_copy("s1", "zz-dr", at(1))
        .await
        .expect("start copy");
    assert_eq!(
        locations(c.clone()).await,
        ["local"],
        "a running copy is no location"
    );
    c.finish_copy("s1", "zz-dr", Ok(120), at(2))
        .await
        .expect("finish copy");
    c.finish_copy("s1", "dr", Ok(120), at(3))
        .await
        .expect("finish copy without start");
    assert_eq!(
        locations(c.clone()).await,
        ["local", "dr", "zz-dr"],
        "own store first, then copies by name"
    );
    let listed = c.snapshots(Some("db")).await.expect("snapshots");
    assert_eq!(listed[0].locations, ["local", "dr", "zz-dr"]);

    // Starting again (a re-copy) or failing takes the location away.
    c.start_copy("s1", "zz-dr", at(4))
        .await
        .expect("restart copy");
    c.finish_copy("s1", "dr", Err("access denied"), at(5))
        .await
        .expect("fail copy");
    assert_eq!(locations(c.clone()).await, ["local"]);

    // Copies of a snapshot that is not complete are not locations.
    c.insert_snapshot("s2", "db", "postgres", "local", at(10))
        .await
        .expect("insert snapshot");
    c.finish_copy("s2", "dr", Ok(1), at(11))
        .await
        .expect("finish copy");
    let s2 = c.snapshot("s2").await.expect("snapshot").expect("a row");
    assert_eq!(s2.locations, ["local"]);
    let listed = c.snapshots(Some("db")).await.expect("snapshots");
    assert_eq!(listed[1].locations, ["local"]);

    // Deleting a snapshot forgets its copies.
    c.finish_copy("s1", "dr", Ok(120), at(20))
        .await
        .expect("finish copy");
    assert!(c.delete_snapshot("s1").await.expect("delete"));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM copies WHERE snapshot_id = 's1'")
            .await,
        0
    );
    c.close().await;
}

// ---------------------------------------------------------------------------
// Verifications
// ---------------------------------------------------------------------------

fn verification<'a>(id: &'a str, snapshot_id: &'a str, now: DateTime<Utc>) -> NewVerification<'a> {
    NewVerification {
        id,
        snapshot_id,
        source: "db",
        sandbox: "local",
        now,
    }
}

async fn verifications_and_newest_passed(db: &Db) {
    let c = db.open().await;
    complete(&c, "s1", "db", "local", at(0)).await;
    complete(&c, "s2", "db", "local", at(1_000)).await;
    complete(&c, "s3", "db", "local", at(2_000)).await;
    assert!(
        c.newest_passed_verification("db")
            .await
            .expect("newest")
            .is_none()
    );

    c.insert_verification(&verification("v1", "s1", at(10_000)))
        .await
        .expect("insert verification");
    let v = c.verifications(None, 10).await.expect("verifications");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].status, VerificationStatus::Running);
    assert_eq!(v[0].started_at, ts(at(10_000)));
    assert_eq!(v[0].checks, serde_json::json!([]));
    assert!(
        c.newest_passed_verification("db")
            .await
            .expect("newest")
            .is_none(),
        "running is not passed"
    );

    let checks = serde_json::json!([{ "name": "tables", "passed": true, "detail": "3 tables" }]);
    c.finish_verification(
        "v1",
        VerificationStatus::Passed,
        Some(1234),
        &checks,
        None,
        at(12_000),
    )
    .await
    .expect("finish verification");
    c.insert_verification(&verification("v2", "s2", at(20_000)))
        .await
        .expect("insert verification");
    c.finish_verification(
        "v2",
        VerificationStatus::Passed,
        Some(999),
        &checks,
        None,
        at(22_000),
    )
    .await
    .expect("finish verification");
    // The newest snapshot's verification failed: it vouches for nothing.
    c.insert_verification(&verification("v3", "s3", at(30_000)))
        .await
        .expect("insert verification");
    c.finish_verification(
        "v3",
        VerificationStatus::Failed,
        Some(5),
        &serde_json::json!([]),
        Some("row count differs"),
        at(31_000),
    )
    .await
    .expect("finish verification");

    let all = c
        .verifications(Some("db"), 10)
        .await
        .expect("verifications");
    assert_eq!(ids(&all, |v| &v.id), ["v1", "v2", "v3"], "oldest first");
    assert_eq!(all[0].status, VerificationStatus::Passed);
    assert_eq!(all[0].restore_ms, Some(1234));
    assert_eq!(all[0].checks, checks);
    assert_eq!(all[0].finished_at.as_deref(), Some(ts(at(12_000)).as_str()));
    assert_eq!(all[2].status, VerificationStatus::Failed);
    assert_eq!(all[2].error.as_deref(), Some("row count differs"));
    let last2 = c.verifications(Some("db"), 2).await.expect("verifications");
    assert_eq!(ids(&last2, |v| &v.id), ["v2", "v3"]);
    assert!(
        c.verifications(Some("other"), 10)
            .await
            .expect("verifications")
            .is_empty()
    );

    let newest = c
        .newest_passed_verification("db")
        .await
        .expect("newest")
        .expect("one passed");
    assert_eq!(
        (newest.id.as_str(), newest.snapshot_id.as_str()),
        ("v2", "s2")
    );
    assert_eq!(newest.restore_ms, Some(999));
    assert_eq!(
        c.newest_verified("db").await.expect("newest").as_deref(),
        Some("s2")
    );
    assert_eq!(c.newest_verified("other").await.expect("newest"), None);

    // Once s2 is gone, its verification proves nothing any more: s1's does.
    assert!(c.delete_snapshot("s2").await.expect("delete"));
    assert_eq!(
        c.newest_verified("db").await.expect("newest").as_deref(),
        Some("s1")
    );
    c.close().await;
}

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

async fn timestamps_round_trip_and_order(db: &Db) {
    let c = db.open().await;
    // Millisecond precision survives, and order is by time, not by insertion or id.
    let times = [
        ("late", at(86_400_000 * 40)), // next month
        ("ms-2", at(2)),
        ("ms-1", at(1)),
        ("early", at(-86_400_000 * 400)), // previous year
        ("ms-999", at(999)),
    ];
    for (id, t) in times {
        c.insert_snapshot(id, "db", "postgres", "local", t)
            .await
            .expect("insert snapshot");
        c.insert_run(&run(id, "backup", "db", t))
            .await
            .expect("insert run");
    }
    let snaps = c.snapshots(Some("db")).await.expect("snapshots");
    assert_eq!(
        ids(&snaps, |s| &s.id),
        ["early", "ms-1", "ms-2", "ms-999", "late"]
    );
    for s in &snaps {
        let want = times.iter().find(|(id, _)| *id == s.id).map(|(_, t)| *t);
        assert_eq!(
            DateTime::parse_from_rfc3339(&s.created_at)
                .ok()
                .map(|t| t.to_utc()),
            want,
            "{}",
            s.id
        );
        assert_eq!(Some(s.created_at.clone()), want.map(ts));
    }
    let runs = c.runs(10).await.expect("runs");
    assert_eq!(
        ids(&runs, |r| &r.id),
        ["early", "ms-1", "ms-2", "ms-999", "late"]
    );
    let running = c.running_runs().await.expect("running runs");
    let mut by_time = times.to_vec();
    by_time.sort_by_key(|(_, t)| *t);
    assert_eq!(
        running
            .iter()
            .map(|r| (r.id.as_str(), r.started_at))
            .collect::<Vec<_>>(),
        by_time
    );
    c.close().await;
}

async fn last_runs_per_source_and_job(db: &Db) {
    let c = db.open().await;
    assert!(c.last_runs().await.expect("last runs").is_empty());
    c.insert_run(&run("b1", "backup", "db", at(0)))
        .await
        .expect("run");
    c.insert_run(&run("b2", "backup", "db", at(5_000)))
        .await
        .expect("run");
    c.finish_run("b2", Status::Failed, Some("refused"), at(6_000))
        .await
        .expect("finish");
    c.insert_run(&run("p1", "prune", "db", at(1_000)))
        .await
        .expect("run");
    c.insert_run(&run("b3", "backup", "other", at(2_000)))
        .await
        .expect("run");
    complete(&c, "s1", "db", "local", at(0)).await;
    c.insert_verification(&verification("v1", "s1", at(7_000)))
        .await
        .expect("verification");
    let mut last = c.last_runs().await.expect("last runs");
    last.sort();
    assert_eq!(
        last,
        [
            ("db".to_string(), "backup".to_string(), at(5_000)),
            ("db".to_string(), "prune".to_string(), at(1_000)),
            ("db".to_string(), "verify".to_string(), at(7_000)),
            ("other".to_string(), "backup".to_string(), at(2_000)),
        ]
    );
    c.close().await;
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

async fn concurrent_opens(db: &Db) {
    // Two processes' worth of opens of a fresh database at once: both migrate or wait.
    let url = db.secret_url();
    let (a, b) = tokio::join!(Catalog::open(&url), Catalog::open(&url));
    let a = a.unwrap_or_else(|e| panic!("first open: {e}"));
    let b = b.unwrap_or_else(|e| panic!("second open: {e}"));
    a.ping().await.expect("ping a");
    b.ping().await.expect("ping b");
    // What one writes, the other reads.
    a.insert_run(&run("r1", "backup", "db", at(0)))
        .await
        .expect("insert run");
    complete(&a, "s1", "db", "local", at(0)).await;
    assert_eq!(
        ids(&b.running_runs().await.expect("running"), |r| &r.id),
        ["r1"]
    );
    b.finish_run("r1", Status::Complete, None, at(1))
        .await
        .expect("finish");
    assert!(a.running_runs().await.expect("running").is_empty());
    assert!(b.delete_snapshot("s1").await.expect("delete"));
    assert!(a.snapshot("s1").await.expect("snapshot").is_none());
    // Writers at the same time on both handles all land.
    let writes = (0..10).map(|i| {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let id = format!("w{i}");
            c.insert_run(&run(&id, "backup", "db", at(i))).await
        }
    });
    for r in futures::future::join_all(writes).await {
        r.expect("concurrent insert");
    }
    assert_eq!(a.runs(100).await.expect("runs").len(), 11);
    // And a third open of the now-migrated database.
    let c = db.open().await;
    assert_eq!(c.runs(100).await.expect("runs").len(), 11);
    a.close().await;
    b.close().await;
    c.close().await;
}
