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
use common::{Env, PgServer, files_under};
use lifeboat::catalog::{
    Catalog, CatalogError, NewRun, NewVerification, Status, VerificationStatus, ts,
};
use lifeboat::config::SecretString;
use lifeboat::model::snapshot::{self, Manifest};

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
    manifest_versions_are_kept_per_store,
    copies_start_and_finish,
    verifications_and_newest_passed,
    timestamps_round_trip_and_order,
    last_runs_per_source_and_job,
    concurrent_opens,
    unknown_status_in_runs_is_an_error,
    unknown_status_in_snapshots_is_never_deletable,
    unknown_status_in_copies_is_an_error,
    unknown_status_in_verifications_is_an_error,
    unreadable_times_in_runs_are_errors,
    unreadable_times_in_snapshots_are_errors,
    unreadable_times_in_verifications_are_errors,
    prune_deletes_nothing_when_a_row_is_unreadable,
    settlement_deletes_nothing_when_a_heartbeat_is_unreadable,
    published_reports_round_trip,
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

    /// Runs `sql` on the catalog database directly (not through the library), as an operator
    /// or another lifeboat version might have.
    async fn sql(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("{}: connect {}: {e}", self.engine, self.url));
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.engine));
        pool.close().await;
    }

    /// The single integer `sql` selects.
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
            version: None,
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
        signature: None,
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
    assert_eq!(r.host, lifeboat::model::host::hostname());

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
    // One run by id (the verification report's "where it ran").
    let one = c.run("r2").await.expect("run by id").expect("r2 exists");
    assert_eq!((one.id.as_str(), one.status), ("r2", Status::Failed));
    assert_eq!(one.host, lifeboat::model::host::hostname());
    assert!(c.run("nope").await.expect("run by id").is_none());
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

/// Issue 9 (Object Lock for real): the manifest's version id is recorded with the snapshot;
/// recording it again without one (rebuild, settle of an old run) keeps it, and a row moved
/// to another store drops it (a version id means nothing in another bucket).
async fn manifest_versions_are_kept_per_store(db: &Db) {
    let c = db.open().await;
    c.insert_snapshot("v1", "db", "postgres", "vault", at(0))
        .await
        .expect("insert snapshot");
    let m = manifest("v1", "db", at(0));
    assert_eq!(manifest_version(&c).await, None);
    c.record_complete_at("vault", &m, Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"))
        .await
        .expect("record with a version");
    assert_eq!(
        manifest_version(&c).await.as_deref(),
        Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    );
    c.record_complete("vault", &m).await.expect("record again");
    assert_eq!(
        manifest_version(&c).await.as_deref(),
        Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
        "kept"
    );
    c.record_complete("elsewhere", &m).await.expect("moved");
    assert_eq!(manifest_version(&c).await, None, "dropped with the store");
    c.close().await;
}

async fn manifest_version(c: &Catalog) -> Option<String> {
    c.snapshot("v1")
        .await
        .expect("snapshot")
        .expect("row")
        .manifest_version
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
    // One verification by id.
    let v3 = c
        .verification("v3")
        .await
        .expect("verification by id")
        .expect("v3 exists");
    assert_eq!(
        (v3.status, v3.restore_ms),
        (VerificationStatus::Failed, Some(5))
    );
    assert_eq!(v3.error.as_deref(), Some("row count differs"));
    assert!(c.verification("nope").await.expect("by id").is_none());
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

// ---------------------------------------------------------------------------
// Failing closed: rows this lifeboat cannot read are errors, never a state
// ---------------------------------------------------------------------------

/// `r` is the error for a row of `table` whose status this lifeboat does not know.
#[track_caller]
fn assert_unknown_status<T: std::fmt::Debug>(
    r: Result<T, CatalogError>,
    table: &str,
    id: &str,
    value: &str,
) {
    match r {
        Err(e @ CatalogError::UnknownStatus { .. }) => {
            let CatalogError::UnknownStatus {
                table: t,
                id: i,
                value: v,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*t, i.as_str(), v.as_str()), (table, id, value), "{e}");
            let msg = e.to_string();
            for want in [table, id, &format!("`{value}`"), "fix or delete the row"] {
                assert!(msg.contains(want), "{msg:?} should name {want:?}");
            }
        }
        other => panic!("want an unknown-status error for {table} row {id}, got {other:?}"),
    }
}

/// `r` is the error for a row of `table` whose `column` is not a time.
#[track_caller]
fn assert_bad_time<T: std::fmt::Debug>(
    r: Result<T, CatalogError>,
    table: &str,
    id: &str,
    column: &str,
    value: &str,
) {
    match r {
        Err(e @ CatalogError::BadTimestamp { .. }) => {
            let CatalogError::BadTimestamp {
                table: t,
                id: i,
                column: c,
                value: v,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(
                (*t, i.as_str(), *c, v.as_str()),
                (table, id, column, value),
                "{e}"
            );
            let msg = e.to_string();
            for want in [
                table,
                id,
                column,
                &format!("`{value}`"),
                "fix or delete the row",
            ] {
                assert!(msg.contains(want), "{msg:?} should name {want:?}");
            }
        }
        other => panic!("want a bad-time error for {table} row {id} {column}, got {other:?}"),
    }
}

async fn unknown_status_in_runs_is_an_error(db: &Db) {
    let c = db.open().await;
    c.insert_run(&run("r1", "backup", "db", at(0)))
        .await
        .expect("run");
    c.insert_run(&run("r2", "backup", "db", at(1)))
        .await
        .expect("run");
    db.sql("UPDATE runs SET status = 'bogus' WHERE id = 'r2'")
        .await;
    assert_unknown_status(c.runs(10).await, "runs", "r2", "bogus");
    // Crash settlement reads this: it must not settle (or skip) what it cannot read.
    assert_unknown_status(c.running_runs().await, "runs", "r2", "bogus");
    c.close().await;
}

async fn unknown_status_in_snapshots_is_never_deletable(db: &Db) {
    let c = db.open().await;
    complete(&c, "s1", "db", "local", at(0)).await;
    complete(&c, "s2", "db", "local", at(1)).await;
    db.sql("UPDATE snapshots SET status = 'bogus' WHERE id = 's1'")
        .await;
    assert_unknown_status(c.snapshots(None).await, "snapshots", "s1", "bogus");
    assert_unknown_status(c.snapshots(Some("db")).await, "snapshots", "s1", "bogus");
    assert_unknown_status(c.snapshot("s1").await, "snapshots", "s1", "bogus");
    assert_unknown_status(c.delete_snapshot("s1").await, "snapshots", "s1", "bogus");
    // Nor is it turned into a failed (deletable) snapshot.
    c.fail_snapshot("s1", "settled", at(2)).await.expect("fail");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM snapshots WHERE id = 's1' AND status = 'bogus'")
            .await,
        1
    );
    // The other rows stay readable one by one.
    let s2 = c.snapshot("s2").await.expect("snapshot").expect("a row");
    assert_eq!(s2.status, Status::Complete);
    c.close().await;
}

async fn unknown_status_in_copies_is_an_error(db: &Db) {
    let c = db.open().await;
    complete(&c, "s1", "db", "local", at(0)).await;
    c.finish_copy("s1", "dr", Ok(120), at(1))
        .await
        .expect("copy");
    db.sql("UPDATE copies SET status = 'bogus'").await;
    assert_unknown_status(
        c.snapshots(Some("db")).await,
        "copies",
        "s1 (store dr)",
        "bogus",
    );
    assert_unknown_status(c.snapshots(None).await, "copies", "s1 (store dr)", "bogus");
    // Its snapshot is not deleted from under it.
    assert_unknown_status(
        c.delete_snapshot("s1").await,
        "copies",
        "s1 (store dr)",
        "bogus",
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM snapshots").await, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM copies").await, 1);
    c.close().await;
}

async fn unknown_status_in_verifications_is_an_error(db: &Db) {
    let c = db.open().await;
    complete(&c, "s1", "db", "local", at(0)).await;
    complete(&c, "s2", "db", "local", at(1_000)).await;
    for (id, snap, ms) in [("v1", "s1", 10_000), ("v2", "s2", 20_000)] {
        c.insert_verification(&verification(id, snap, at(ms)))
            .await
            .expect("verification");
        c.finish_verification(
            id,
            VerificationStatus::Passed,
            Some(1),
            &serde_json::json!([]),
            None,
            at(ms + 1),
        )
        .await
        .expect("finish");
    }
    db.sql("UPDATE verifications SET status = 'bogus' WHERE id = 'v2'")
        .await;
    assert_unknown_status(
        c.verifications(None, 10).await,
        "verifications",
        "v2",
        "bogus",
    );
    // Which snapshot is the newest verified (and so kept by prune) depends on it.
    assert_unknown_status(
        c.newest_passed_verification("db").await,
        "verifications",
        "v2",
        "bogus",
    );
    assert_unknown_status(
        c.newest_verified("db").await,
        "verifications",
        "v2",
        "bogus",
    );
    c.close().await;
}

async fn unreadable_times_in_runs_are_errors(db: &Db) {
    let c = db.open().await;
    c.insert_run(&run("r1", "backup", "db", at(0)))
        .await
        .expect("run");
    db.sql("UPDATE runs SET heartbeat_at = 'garbage' WHERE id = 'r1'")
        .await;
    // Not the epoch (a run that looks long dead): an error.
    assert_bad_time(
        c.running_runs().await,
        "runs",
        "r1",
        "heartbeat_at",
        "garbage",
    );
    db.sql("UPDATE runs SET heartbeat_at = started_at, started_at = '' WHERE id = 'r1'")
        .await;
    assert_bad_time(c.running_runs().await, "runs", "r1", "started_at", "");
    assert_bad_time(c.runs(10).await, "runs", "r1", "started_at", "");
    db.sql("UPDATE runs SET started_at = '2026-13-45T99:00:00Z' WHERE id = 'r1'")
        .await;
    assert_bad_time(
        c.last_runs().await,
        "runs",
        "r1",
        "started_at",
        "2026-13-45T99:00:00Z",
    );
    db.sql(&format!(
        "UPDATE runs SET started_at = '{}', finished_at = 'yesterday', status = 'failed' WHERE id = 'r1'",
        ts(at(0))
    ))
    .await;
    assert_bad_time(c.runs(10).await, "runs", "r1", "finished_at", "yesterday");
    c.close().await;
}

async fn unreadable_times_in_snapshots_are_errors(db: &Db) {
    let c = db.open().await;
    complete(&c, "s1", "db", "local", at(0)).await;
    db.sql("UPDATE snapshots SET created_at = 'garbage' WHERE id = 's1'")
        .await;
    assert_bad_time(
        c.snapshots(Some("db")).await,
        "snapshots",
        "s1",
        "created_at",
        "garbage",
    );
    assert_bad_time(
        c.snapshot("s1").await,
        "snapshots",
        "s1",
        "created_at",
        "garbage",
    );
    db.sql(&format!(
        "UPDATE snapshots SET created_at = '{}', finished_at = 'soon' WHERE id = 's1'",
        ts(at(0))
    ))
    .await;
    assert_bad_time(
        c.snapshots(None).await,
        "snapshots",
        "s1",
        "finished_at",
        "soon",
    );
    c.close().await;
}

async fn unreadable_times_in_verifications_are_errors(db: &Db) {
    let c = db.open().await;
    complete(&c, "s1", "db", "local", at(0)).await;
    c.insert_verification(&verification("v1", "s1", at(10)))
        .await
        .expect("verification");
    c.finish_verification(
        "v1",
        VerificationStatus::Passed,
        Some(1),
        &serde_json::json!([]),
        None,
        at(20),
    )
    .await
    .expect("finish");
    db.sql("UPDATE verifications SET finished_at = 'garbage'")
        .await;
    assert_bad_time(
        c.verifications(None, 10).await,
        "verifications",
        "v1",
        "finished_at",
        "garbage",
    );
    assert_bad_time(
        c.newest_passed_verification("db").await,
        "verifications",
        "v1",
        "finished_at",
        "garbage",
    );
    db.sql(&format!(
        "UPDATE verifications SET finished_at = '{}', started_at = 'garbage'",
        ts(at(20))
    ))
    .await;
    assert_bad_time(
        c.verifications(Some("db"), 10).await,
        "verifications",
        "v1",
        "started_at",
        "garbage",
    );
    assert_bad_time(
        c.last_runs().await,
        "verifications",
        "v1",
        "started_at",
        "garbage",
    );
    // Nor are checks that are not JSON read as "no checks".
    db.sql(&format!(
        "UPDATE verifications SET started_at = '{}', checks = 'not json'",
        ts(at(10))
    ))
    .await;
    match c.verifications(None, 10).await {
        Err(e @ CatalogError::BadChecks { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("v1") && msg.contains("fix or delete the row"),
                "{msg}"
            );
        }
        other => panic!("want a bad-checks error, got {other:?}"),
    }
    c.close().await;
}

// ---------------------------------------------------------------------------
// Failing closed, end to end: the `lifeboat` binary deletes nothing it cannot account for
// ---------------------------------------------------------------------------

/// A working directory whose config uses this case's catalog, a local store `./store` and
/// one source `db` that keeps only its newest snapshot.
fn env_with_catalog(db: &Db) -> Env {
    let env = Env::new();
    env.write_config(&format!(
        "catalog: \"{}\"\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n\
         sources:\n\
         \x20 - {{ name: db, kind: postgres, url: \"postgres://u@127.0.0.1:1/db\", store: local, retention: {{ keep_last: 1 }} }}\n",
        db.url
    ));
    env
}

async fn prune_deletes_nothing_when_a_row_is_unreadable(db: &Db) {
    let env = env_with_catalog(db);
    let times: Vec<DateTime<Utc>> = (0..3).map(|d| at(0) - Duration::days(10 - d)).collect();
    let ids: Vec<String> = times
        .iter()
        .map(|t| env.write_fake_snapshot("store", "db", *t))
        .collect();
    let out = env.ok(&["catalog", "rebuild"]);
    assert!(out.contains("3 snapshot(s)"), "{out}");
    let before = files_under(&env.path("store"));
    assert_eq!(before.len(), 6, "{before:?}");

    for (column, bad, good) in [
        ("status", "bogus".to_string(), "complete".to_string()),
        ("created_at", "garbage".to_string(), ts(times[0])),
    ] {
        let set = |v: &str| {
            format!(
                "UPDATE snapshots SET {column} = '{v}' WHERE id = '{}'",
                ids[0]
            )
        };
        db.sql(&set(&bad)).await;
        let err = env.fails(&["prune"]);
        for want in [
            "snapshots",
            ids[0].as_str(),
            bad.as_str(),
            "fix or delete the row",
        ] {
            assert!(
                err.contains(want),
                "{column} = {bad}: want {want:?} in {err}"
            );
        }
        assert_eq!(files_under(&env.path("store")), before, "{column} = {bad}");
        db.sql(&set(&good)).await;
    }
    // With the rows readable again, the same prune does delete: the set-up was a real one.
    env.ok(&["prune"]);
    let after = files_under(&env.path("store"));
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|f| f.contains(&ids[2])), "{after:?}");
}

async fn settlement_deletes_nothing_when_a_heartbeat_is_unreadable(db: &Db) {
    let env = env_with_catalog(db);
    db.open().await.close().await;
    // A backup on another host, in flight: its data object is written, its manifest not yet.
    let id = snapshot::new_id(at(0));
    let dir = env.path("store").join("db").join(&id);
    std::fs::create_dir_all(&dir).expect("create the snapshot directory");
    std::fs::write(dir.join(snapshot::DATA_OBJECT), "in flight").expect("write the data object");
    db.sql(&format!(
        "INSERT INTO snapshots (id, source, kind, store, status, created_at) \
         VALUES ('{id}', 'db', 'postgres', 'local', 'running', '{t}')",
        t = ts(at(0))
    ))
    .await;
    db.sql(&format!(
        "INSERT INTO runs (id, job, source, snapshot_id, store, status, started_at, heartbeat_at, host, pid) \
         VALUES ('r1', 'backup', 'db', '{id}', 'local', 'running', '{t}', 'garbage', 'elsewhere', 1)",
        t = ts(at(0))
    ))
    .await;
    let before = files_under(&env.path("store"));
    assert_eq!(before.len(), 1, "{before:?}");

    let err = env.fails(&["catalog", "recover"]);
    assert!(
        err.contains("heartbeat_at")
            && err.contains("garbage")
            && err.contains("fix or delete the row"),
        "{err}"
    );
    assert_eq!(files_under(&env.path("store")), before);
    // Commands that settle first carry on without settling, and delete nothing either.
    env.ok(&["prune"]);
    assert_eq!(files_under(&env.path("store")), before);

    // Once the heartbeat reads as long stale, settlement does remove the orphan.
    db.sql(&format!(
        "UPDATE runs SET heartbeat_at = '{}' WHERE id = 'r1'",
        ts(at(0))
    ))
    .await;
    let out = env.ok(&["catalog", "recover"]);
    assert!(out.contains("1 orphan object(s) removed"), "{out}");
    assert!(files_under(&env.path("store")).is_empty());
}

// ---------------------------------------------------------------------------
// Published reports (migration 0016)
// ---------------------------------------------------------------------------

async fn published_reports_round_trip(db: &Db) {
    use lifeboat::catalog::PublishedReport;
    let c = db.open().await;
    let row = |id: &str, format: &str, ms: i64, sha: &str| PublishedReport {
        id: id.into(),
        format: format.into(),
        kind: "posture".into(),
        subject: None,
        store: "local".into(),
        object_key: format!("reports/posture/{id}.{format}"),
        sha256: sha.into(),
        bytes: 1234,
        locked_until: None,
        created_at: ts(at(ms)),
    };
    c.report_published(&row("p1", "html", 0, "aa"))
        .await
        .expect("insert");
    c.report_published(&row("p1", "json", 0, "bb"))
        .await
        .expect("insert");
    let mut later = row("f1", "html", 5_000, "cc");
    later.kind = "failover".into();
    later.subject = Some("3".into());
    later.locked_until = Some(ts(at(86_400_000)));
    c.report_published(&later).await.expect("insert");
    // Recording the same (id, format) again keeps the first row.
    c.report_published(&row("p1", "html", 9_000, "zz"))
        .await
        .expect("idempotent");
    let all = c.published_reports(10).await.expect("list");
    assert_eq!(ids(&all, |r| &r.id), ["f1", "p1", "p1"], "newest first");
    assert_eq!(all[0], later);
    let p1 = c
        .published_report("p1", "html")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(p1.sha256, "aa");
    assert_eq!(p1.bytes, 1234);
    assert!(
        c.published_report("p1", "md")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(c.published_reports(1).await.expect("list").len(), 1);
    c.close().await;
}
