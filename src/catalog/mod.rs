//! The catalog: what lifeboat knows of runs and snapshots, in SQLite (the default) or
//! PostgreSQL (when the URL says `postgres://`), through sqlx's `Any` driver so one set of
//! queries serves both. The schema is `migrations/`, applied on open.
//!
//! The catalog is a cache of the truth in the stores (the manifests): it can be lost and
//! rebuilt (`lifeboat catalog rebuild`). It never holds a secret: URLs are stored redacted
//! and errors are scrubbed before they are recorded.

mod runbooks;

pub use runbooks::{
    NewRunbookRun, NewStep, RunbookRunRow, RunbookStatus, RunbookStepRow, StepStatus,
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::model::SecretString;

mod drills;
mod failover;
mod reports;
use crate::model::snapshot::Manifest;
pub use drills::{DrillFaultRow, DrillRunRow};
pub use failover::{FailoverRow, StepRow};
pub use reports::PublishedReport;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "cannot open the catalog {url}: {reason}; check the `catalog:` URL and that the database is reachable"
    )]
    Open { url: String, reason: String },
    #[error("cannot apply the catalog schema to {url}: {reason}")]
    Migrate { url: String, reason: String },
    #[error("catalog query failed ({what}): {reason}")]
    Query { what: &'static str, reason: String },
    #[error("the catalog holds a manifest it cannot read for snapshot {id}: {reason}")]
    BadManifest { id: String, reason: String },
    #[error(
        "the catalog's `{table}` row {id} has status `{value}`: fix or delete the row; this lifeboat does not know status `{value}` (a newer version may have written it)"
    )]
    UnknownStatus {
        table: &'static str,
        id: String,
        value: String,
    },
    #[error(
        "the catalog's `{table}` row {id} has {column} `{value}`, which is not an RFC 3339 time: fix or delete the row"
    )]
    BadTimestamp {
        table: &'static str,
        id: String,
        column: &'static str,
        value: String,
    },
    #[error(
        "the catalog's `verifications` row {id} has checks that are not JSON ({reason}): fix or delete the row"
    )]
    BadChecks { id: String, reason: String },
}

impl CatalogError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            CatalogError::Open { .. } | CatalogError::Query { .. } => ErrorKind::Unreachable,
            CatalogError::Migrate { .. } => ErrorKind::Internal,
            CatalogError::BadManifest { .. }
            | CatalogError::UnknownStatus { .. }
            | CatalogError::BadTimestamp { .. }
            | CatalogError::BadChecks { .. } => ErrorKind::Corrupt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Complete,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Complete => "complete",
            Status::Failed => "failed",
        }
    }
    /// The status `s` names; `None` for any other text (never a guess: see [`Cells::status`]).
    fn parse(s: &str) -> Option<Status> {
        match s {
            "complete" => Some(Status::Complete),
            "running" => Some(Status::Running),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Reads one row of `table` strictly: a status this lifeboat does not know or a time that
/// does not parse is an error naming the row, never a default (an unknown status read as
/// `failed` would be deletable; a heartbeat read as the epoch would look dead).
struct Cells<'r> {
    row: &'r sqlx::any::AnyRow,
    table: &'static str,
    /// What failed, for [`CatalogError::Query`] when a column cannot be read at all.
    what: &'static str,
    id: String,
}

impl<'r> Cells<'r> {
    /// A row whose key is its `id` column.
    fn new(
        row: &'r sqlx::any::AnyRow,
        table: &'static str,
        what: &'static str,
    ) -> Result<Self, CatalogError> {
        let id: String = row.try_get("id").map_err(q(what))?;
        Ok(Cells {
            row,
            table,
            what,
            id,
        })
    }

    fn get<T>(&self, column: &str) -> Result<T, CatalogError>
    where
        T: for<'a> sqlx::Decode<'a, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        self.row.try_get(column).map_err(q(self.what))
    }

    fn status<S>(&self, parse: fn(&str) -> Option<S>) -> Result<S, CatalogError> {
        let value: String = self.get("status")?;
        parse(&value).ok_or_else(|| CatalogError::UnknownStatus {
            table: self.table,
            id: self.id.clone(),
            value,
        })
    }

    fn bad_time(&self, column: &'static str, value: String) -> CatalogError {
        CatalogError::BadTimestamp {
            table: self.table,
            id: self.id.clone(),
            column,
            value,
        }
    }

    fn time(&self, column: &'static str) -> Result<DateTime<Utc>, CatalogError> {
        let value: String = self.get(column)?;
        parse_ts(&value).ok_or_else(|| self.bad_time(column, value))
    }

    /// A time column kept as the catalog's text, once checked to be a time.
    fn time_text(&self, column: &'static str) -> Result<String, CatalogError> {
        let value: String = self.get(column)?;
        match parse_ts(&value) {
            Some(_) => Ok(value),
            None => Err(self.bad_time(column, value)),
        }
    }

    fn opt_time_text(&self, column: &'static str) -> Result<Option<String>, CatalogError> {
        let value: Option<String> = self.get(column)?;
        match value {
            Some(v) if parse_ts(&v).is_none() => Err(self.bad_time(column, v)),
            v => Ok(v),
        }
    }
}

/// A row of `snapshots`, as `lifeboat snapshots list --output json` prints it.
/// Error text as stored: no secret of the config in it (see [`crate::model::redact`]).
fn scrubbed(text: &str) -> String {
    crate::model::redact::scrub_registered(text)
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub status: Status,
    pub store: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub raw_bytes: Option<i64>,
    pub compressed_bytes: Option<i64>,
    pub stored_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// Every store holding this snapshot: its own store first, then complete copies.
    pub locations: Vec<String>,
    #[serde(skip)]
    pub manifest: Option<String>,
    /// The version id of the manifest object as the backup wrote it (versioned S3 stores),
    /// which restore and verify read instead of whatever the key holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_version: Option<String>,
}

impl SnapshotRow {
    pub fn manifest(&self) -> Result<Option<Manifest>, CatalogError> {
        self.manifest
            .as_deref()
            .map(|m| {
                serde_json::from_str(m).map_err(|e| CatalogError::BadManifest {
                    id: self.id.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
}

/// A run as `lifeboat runs list` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub job: String,
    pub source: String,
    pub snapshot_id: Option<String>,
    pub store: Option<String>,
    pub status: Status,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub host: String,
    pub pid: i64,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: String,
    pub job: String,
    pub source: String,
    pub snapshot_id: Option<String>,
    pub store: Option<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub host: String,
    pub pid: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationStatus {
    Running,
    Passed,
    Failed,
}

impl VerificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::Running => "running",
            VerificationStatus::Passed => "passed",
            VerificationStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "passed" => Some(VerificationStatus::Passed),
            "running" => Some(VerificationStatus::Running),
            "failed" => Some(VerificationStatus::Failed),
            _ => None,
        }
    }
}

/// A row of `verifications`, as `lifeboat verifications list --output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationRow {
    pub id: String,
    pub snapshot_id: String,
    pub source: String,
    pub sandbox: String,
    pub status: VerificationStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Measured restore duration: the RTO evidence.
    pub restore_ms: Option<i64>,
    pub checks: serde_json::Value,
    pub error: Option<String>,
}

pub struct NewVerification<'a> {
    pub id: &'a str,
    pub snapshot_id: &'a str,
    pub source: &'a str,
    pub sandbox: &'a str,
    pub now: DateTime<Utc>,
}

fn verification_row(r: &sqlx::any::AnyRow) -> Result<VerificationRow, CatalogError> {
    let c = Cells::new(r, "verifications", "read verifications")?;
    let checks: Option<String> = c.get("checks")?;
    let checks = match checks {
        None => serde_json::Value::Array(vec![]),
        Some(text) => serde_json::from_str(&text).map_err(|e| CatalogError::BadChecks {
            id: c.id.clone(),
            reason: e.to_string(),
        })?,
    };
    Ok(VerificationRow {
        snapshot_id: c.get("snapshot_id")?,
        source: c.get("source")?,
        sandbox: c.get("sandbox")?,
        status: c.status(VerificationStatus::parse)?,
        started_at: c.time_text("started_at")?,
        finished_at: c.opt_time_text("finished_at")?,
        restore_ms: c.get("restore_ms")?,
        checks,
        error: c.get("error")?,
        id: c.id,
    })
}

/// A new run, as recorded when it starts.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub id: &'a str,
    pub job: &'a str,
    pub source: &'a str,
    pub snapshot_id: Option<&'a str>,
    pub store: Option<&'a str>,
    pub now: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
}

fn q(what: &'static str) -> impl Fn(sqlx::Error) -> CatalogError {
    move |e| CatalogError::Query {
        what,
        reason: e.to_string(),
    }
}

/// The database file of a `sqlite:` catalog URL; `None` for other URLs and in-memory ones.
pub fn sqlite_file(url: &str) -> Option<&str> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Holds an exclusive `flock` on `<database>.open.lock` while this process opens the catalog.
async fn sqlite_open_lock(path: &str) -> Result<std::fs::File, String> {
    let lock_path = format!("{path}.open.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {lock_path}: {e}; check the directory is writable"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another process has held {lock_path} for 60 s while opening the catalog; \
                     check for a hung lifeboat process"
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {lock_path}: {e}"));
            }
        }
    }
}

const SNAPSHOT_COLUMNS: &str = "id, source, kind, status, store, created_at, finished_at, \
     raw_bytes, compressed_bytes, stored_bytes, sha256, duration_ms, error, manifest, \
     manifest_version";

impl Catalog {
    pub async fn open(url: &SecretString) -> Result<Catalog, CatalogError> {
        install_default_drivers();
        let shown = url.to_string();
        let open_err = |reason: String| CatalogError::Open {
            url: shown.clone(),
            reason,
        };
        let mut connect_url = url.expose().to_string();
        let is_sqlite = connect_url.starts_with("sqlite:");
        let file = sqlite_file(&connect_url).map(str::to_string);
        if is_sqlite {
            if let Some(parent) = file
                .as_deref()
                .and_then(|f| std::path::Path::new(f).parent())
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| open_err(format!("cannot create {}: {e}", parent.display())))?;
            }
            if !connect_url.contains('?') {
                connect_url.push_str("?mode=rwc");
            }
        } else if !(connect_url.starts_with("postgres://")
            || connect_url.starts_with("postgresql://"))
        {
            return Err(open_err(
                "unsupported catalog URL; write sqlite://PATH or postgres://USER@HOST/DB".into(),
            ));
        }
        // Processes sharing one SQLite file (two daemon replicas, a CronJob and a shell) open it
        // one at a time: switching to WAL and migrating take locks that SQLite may refuse
        // without waiting ("database is locked") when another opener holds a read lock.
        let _opening = match &file {
            Some(f) => Some(sqlite_open_lock(f).await.map_err(open_err)?),
            None => None,
        };
        let mut attempt = 0u32;
        loop {
            match Self::connect_and_migrate(&connect_url, is_sqlite, url).await {
                Ok(pool) => return Ok(Catalog { pool }),
                Err(e) if is_sqlite && attempt < 8 && e.to_string().contains("locked") => {
                    attempt += 1;
                    tracing::debug!(attempt, "catalog busy while opening; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(250 * attempt as u64))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect_and_migrate(
        connect_url: &str,
        is_sqlite: bool,
        url: &SecretString,
    ) -> Result<AnyPool, CatalogError> {
        let shown = url.to_string();
        let open_err = |reason: String| CatalogError::Open {
            url: shown.clone(),
            reason,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 1 } else { 4 })
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(connect_url)
            .await
            .map_err(|e| {
                open_err(crate::model::redact::scrub(
                    &e.to_string(),
                    &[url_password(url.expose()).as_deref().unwrap_or("")],
                ))
            })?;
        if is_sqlite {
            for pragma in ["PRAGMA busy_timeout = 10000", "PRAGMA journal_mode = WAL"] {
                sqlx::query(pragma)
                    .execute(&pool)
                    .await
                    .map_err(|e| open_err(e.to_string()))?;
            }
        }
        // PostgreSQL serializes concurrent migrations with an advisory lock.
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| CatalogError::Migrate {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        Ok(pool)
    }

    pub async fn insert_run(&self, run: &NewRun<'_>) -> Result<(), CatalogError> {
        let now = ts(run.now);
        sqlx::query(
            "INSERT INTO runs (id, job, source, snapshot_id, store, status, started_at, heartbeat_at, host, pid) \
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $6, $7, $8)",
        )
        .bind(run.id)
        .bind(run.job)
        .bind(run.source)
        .bind(run.snapshot_id)
        .bind(run.store)
        .bind(&now)
        .bind(crate::model::host::hostname())
        .bind(std::process::id() as i64)
        .execute(&self.pool)
        .await
        .map_err(q("insert run"))?;
        Ok(())
    }

    pub async fn heartbeat(&self, run_id: &str, now: DateTime<Utc>) -> Result<(), CatalogError> {
        sqlx::query("UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running'")
            .bind(ts(now))
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(q("heartbeat"))?;
        Ok(())
    }

    pub async fn finish_run(
        &self,
        run_id: &str,
        status: Status,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let error = error.map(scrubbed);
        sqlx::query("UPDATE runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(error)
            .bind(ts(now))
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(q("finish run"))?;
        Ok(())
    }

    /// The runs recorded `running`, oldest first. A run whose status this lifeboat does not
    /// know, or whose times do not parse, is an error: crash settlement (which deletes the
    /// objects of dead runs) must not guess whether such a run is alive.
    pub async fn running_runs(&self) -> Result<Vec<RunRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, job, source, snapshot_id, store, status, started_at, heartbeat_at, host, pid \
             FROM runs WHERE status <> 'complete' AND status <> 'failed' ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list running runs"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let c = Cells::new(r, "runs", "read running runs")?;
            // Only `running` is left once `complete` and `failed` are filtered out.
            c.status(|s| (s == "running").then_some(()))?;
            out.push(RunRow {
                job: c.get("job")?,
                source: c.get("source")?,
                snapshot_id: c.get("snapshot_id")?,
                store: c.get("store")?,
                started_at: c.time("started_at")?,
                heartbeat_at: c.time("heartbeat_at")?,
                host: c.get("host")?,
                pid: c.get("pid")?,
                id: c.id,
            });
        }
        Ok(out)
    }

    /// The newest `limit` runs, newest last.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunSummary>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, job, source, snapshot_id, store, status, started_at, finished_at, host, pid, error \
             FROM runs ORDER BY started_at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list runs"))?;
        let mut out = rows
            .iter()
            .map(run_summary)
            .collect::<Result<Vec<_>, CatalogError>>()?;
        out.reverse();
        Ok(out)
    }

    /// One run by id (a verification is also a run, under the same id).
    pub async fn run(&self, id: &str) -> Result<Option<RunSummary>, CatalogError> {
        let row = sqlx::query(
            "SELECT id, job, source, snapshot_id, store, status, started_at, finished_at, host, pid, error \
             FROM runs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read run"))?;
        row.as_ref().map(run_summary).transpose()
    }

    pub async fn insert_snapshot(
        &self,
        id: &str,
        source: &str,
        kind: &str,
        store: &str,
        created_at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO snapshots (id, source, kind, store, status, created_at) \
             VALUES ($1, $2, $3, $4, 'running', $5)",
        )
        .bind(id)
        .bind(source)
        .bind(kind)
        .bind(store)
        .bind(ts(created_at))
        .execute(&self.pool)
        .await
        .map_err(q("insert snapshot"))?;
        Ok(())
    }

    /// Records a committed snapshot (its manifest is in `store`), inserting or replacing.
    pub async fn record_complete(&self, store: &str, m: &Manifest) -> Result<(), CatalogError> {
        self.record_complete_at(store, m, None).await
    }

    /// [`Catalog::record_complete`], with the version id the store gave the manifest object
    /// (`None` keeps the one already recorded, if any).
    pub async fn record_complete_at(
        &self,
        store: &str,
        m: &Manifest,
        manifest_version: Option<&str>,
    ) -> Result<(), CatalogError> {
        let manifest = serde_json::to_string(m).map_err(|e| CatalogError::BadManifest {
            id: m.id.clone(),
            reason: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO snapshots (id, source, kind, store, status, created_at, finished_at, \
               raw_bytes, compressed_bytes, stored_bytes, sha256, duration_ms, manifest, error, \
               manifest_version) \
             VALUES ($1, $2, $3, $4, 'complete', $5, $6, $7, $8, $9, $10, $11, $12, NULL, $13) \
             ON CONFLICT (id) DO UPDATE SET source = $2, kind = $3, store = $4, \
               status = 'complete', created_at = $5, finished_at = $6, raw_bytes = $7, \
               compressed_bytes = $8, stored_bytes = $9, sha256 = $10, duration_ms = $11, \
               manifest = $12, error = NULL, \
               manifest_version = CASE WHEN snapshots.store = $4 \
                 THEN COALESCE(CAST($13 AS TEXT), snapshots.manifest_version) \
                 ELSE CAST($13 AS TEXT) END",
        )
        .bind(&m.id)
        .bind(&m.source)
        .bind(&m.kind)
        .bind(store)
        .bind(ts(m.created_at))
        .bind(ts(m.finished_at))
        .bind(m.raw_bytes as i64)
        .bind(m.compressed_bytes as i64)
        .bind(m.stored_bytes as i64)
        .bind(&m.sha256)
        .bind(m.duration_ms as i64)
        .bind(manifest)
        .bind(manifest_version)
        .execute(&self.pool)
        .await
        .map_err(q("record snapshot"))?;
        Ok(())
    }

    pub async fn fail_snapshot(
        &self,
        id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE snapshots SET status = 'failed', error = $1, finished_at = $2 \
             WHERE id = $3 AND status IN ('running', 'failed')",
        )
        .bind(scrubbed(error))
        .bind(ts(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("fail snapshot"))?;
        Ok(())
    }

    /// Snapshots, oldest first, optionally of one source.
    pub async fn snapshots(&self, source: Option<&str>) -> Result<Vec<SnapshotRow>, CatalogError> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE (CAST($1 AS TEXT) IS NULL OR source = CAST($1 AS TEXT)) \
             ORDER BY created_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(source)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list snapshots"))?;
        let mut snaps: Vec<SnapshotRow> =
            rows.iter().map(snapshot_row).collect::<Result<_, _>>()?;
        let copies = sqlx::query(
            "SELECT c.snapshot_id, c.store, c.status FROM copies c JOIN snapshots s ON s.id = c.snapshot_id \
             WHERE (CAST($1 AS TEXT) IS NULL OR s.source = CAST($1 AS TEXT)) ORDER BY c.store",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list copies"))?;
        let mut by_id: std::collections::HashMap<String, Vec<String>> = Default::default();
        for r in &copies {
            let (id, store, status) = copy_row(r)?;
            if status == Status::Complete {
                by_id.entry(id).or_default().push(store);
            }
        }
        for s in &mut snaps {
            if s.status == Status::Complete {
                s.locations.extend(by_id.remove(&s.id).unwrap_or_default());
            }
        }
        Ok(snaps)
    }

    /// Marks a copy of `snapshot_id` into `store` as started (again).
    pub async fn start_copy(
        &self,
        snapshot_id: &str,
        store: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO copies (snapshot_id, store, status, started_at) VALUES ($1, $2, 'running', $3) \
             ON CONFLICT (snapshot_id, store) DO UPDATE SET status = 'running', started_at = $3, \
               finished_at = NULL, error = NULL",
        )
        .bind(snapshot_id)
        .bind(store)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(q("start copy"))?;
        Ok(())
    }

    pub async fn finish_copy(
        &self,
        snapshot_id: &str,
        store: &str,
        outcome: Result<u64, &str>,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let (status, bytes, error) = match outcome {
            Ok(b) => (Status::Complete, Some(b as i64), None),
            Err(e) => (Status::Failed, None, Some(scrubbed(e))),
        };
        sqlx::query(
            "INSERT INTO copies (snapshot_id, store, status, started_at, finished_at, stored_bytes, error) \
             VALUES ($1, $2, $3, $4, $4, $5, $6) \
             ON CONFLICT (snapshot_id, store) DO UPDATE SET status = $3, finished_at = $4, \
               stored_bytes = $5, error = $6",
        )
        .bind(snapshot_id)
        .bind(store)
        .bind(status.as_str())
        .bind(ts(now))
        .bind(bytes)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(q("finish copy"))?;
        Ok(())
    }

    /// One snapshot, with its locations as [`Catalog::snapshots`] lists them.
    pub async fn snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, CatalogError> {
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get snapshot"))?;
        let Some(mut snap) = row.as_ref().map(snapshot_row).transpose()? else {
            return Ok(None);
        };
        let copies = sqlx::query(
            "SELECT snapshot_id, store, status FROM copies WHERE snapshot_id = $1 ORDER BY store",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list copies"))?;
        for r in &copies {
            let (_, store, status) = copy_row(r)?;
            if snap.status == Status::Complete && status == Status::Complete {
                snap.locations.push(store);
            }
        }
        Ok(Some(snap))
    }

    /// Forgets a pruned snapshot (its objects are already gone). A running snapshot is never
    /// removed, whatever the caller thinks. Returns whether a row went.
    ///
    /// A row (or a copy's row) whose status this lifeboat does not know is an error, and
    /// stays: it may stand for work in progress.
    pub async fn delete_snapshot(&self, id: &str) -> Result<bool, CatalogError> {
        match self.snapshot(id).await? {
            None => return Ok(false),
            Some(s) if s.status == Status::Running => return Ok(false),
            Some(_) => {}
        }
        let done =
            sqlx::query("DELETE FROM snapshots WHERE id = $1 AND status IN ('complete', 'failed')")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(q("delete snapshot"))?;
        if done.rows_affected() > 0 {
            sqlx::query("DELETE FROM copies WHERE snapshot_id = $1")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(q("delete copies"))?;
        }
        Ok(done.rows_affected() > 0)
    }

    /// The newest snapshot of `source` that a verification (test restore) proved good.
    pub async fn newest_verified(&self, source: &str) -> Result<Option<String>, CatalogError> {
        Ok(self
            .newest_passed_verification(source)
            .await?
            .map(|v| v.snapshot_id))
    }

    pub async fn insert_verification(&self, v: &NewVerification<'_>) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO verifications (id, snapshot_id, source, sandbox, status, started_at) \
             VALUES ($1, $2, $3, $4, 'running', $5)",
        )
        .bind(v.id)
        .bind(v.snapshot_id)
        .bind(v.source)
        .bind(v.sandbox)
        .bind(ts(v.now))
        .execute(&self.pool)
        .await
        .map_err(q("insert verification"))?;
        Ok(())
    }

    /// Records the outcome; `checks` is the JSON array of check results.
    pub async fn finish_verification(
        &self,
        id: &str,
        status: VerificationStatus,
        restore_ms: Option<i64>,
        checks: &serde_json::Value,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE verifications SET status = $1, restore_ms = $2, checks = $3, error = $4, \
             finished_at = $5 WHERE id = $6",
        )
        .bind(status.as_str())
        .bind(restore_ms)
        .bind(scrubbed(&checks.to_string()))
        .bind(error.map(scrubbed))
        .bind(ts(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("finish verification"))?;
        Ok(())
    }

    /// Verifications, oldest first, optionally of one source (`limit` newest).
    pub async fn verifications(
        &self,
        source: Option<&str>,
        limit: i64,
    ) -> Result<Vec<VerificationRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, snapshot_id, source, sandbox, status, started_at, finished_at, restore_ms, checks, error \
             FROM verifications WHERE (CAST($1 AS TEXT) IS NULL OR source = CAST($1 AS TEXT)) \
             ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(source)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list verifications"))?;
        let mut out = rows
            .iter()
            .map(verification_row)
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// One verification by id.
    pub async fn verification(&self, id: &str) -> Result<Option<VerificationRow>, CatalogError> {
        let row = sqlx::query(
            "SELECT id, snapshot_id, source, sandbox, status, started_at, finished_at, restore_ms, checks, error \
             FROM verifications WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read verification"))?;
        row.as_ref().map(verification_row).transpose()
    }

    /// The newest passed verification of `source`. A verification whose status this lifeboat
    /// does not know is an error when it could be the answer (its snapshot is at least as new).
    pub async fn newest_passed_verification(
        &self,
        source: &str,
    ) -> Result<Option<VerificationRow>, CatalogError> {
        let row = sqlx::query(
            "SELECT v.id, v.snapshot_id, v.source, v.sandbox, v.status, v.started_at, v.finished_at, \
               v.restore_ms, v.checks, v.error \
             FROM verifications v JOIN snapshots s ON s.id = v.snapshot_id \
             WHERE v.source = $1 AND v.status NOT IN ('running', 'failed') AND s.status = 'complete' \
             ORDER BY s.created_at DESC, CASE WHEN v.status = 'passed' THEN 1 ELSE 0 END, \
               v.finished_at DESC LIMIT 1",
        )
        .bind(source)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("newest verification"))?;
        row.as_ref().map(verification_row).transpose()
    }

    /// Answers if the database does (for `/readyz`).
    pub async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(q("ping"))?;
        Ok(())
    }

    /// The newest `started_at` of each (source, job), whatever its outcome: what the
    /// scheduler compares with the latest slot to find missed runs. Verifications count from
    /// their own table too, so a `lifeboat verify` run by hand is seen.
    pub async fn last_runs(&self) -> Result<Vec<(String, String, DateTime<Utc>)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT 'runs' AS tbl, source, job, MAX(started_at) AS last FROM runs GROUP BY source, job \
             UNION ALL SELECT 'verifications' AS tbl, source, 'verify' AS job, MAX(started_at) AS last \
               FROM verifications GROUP BY source",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("last runs"))?;
        let mut out = Vec::new();
        for r in &rows {
            let tbl: String = r.try_get("tbl").map_err(q("read last runs"))?;
            let source: String = r.try_get("source").map_err(q("read last runs"))?;
            let job: String = r.try_get("job").map_err(q("read last runs"))?;
            let last: String = r.try_get("last").map_err(q("read last runs"))?;
            match parse_ts(&last) {
                Some(t) => out.push((source, job, t)),
                None => return Err(self.bad_started_at(&tbl, &source, &job, last).await),
            }
        }
        Ok(out)
    }

    /// The error for a `started_at` of (`source`, `job`) in `tbl` that is not a time, naming
    /// a row that holds it.
    async fn bad_started_at(
        &self,
        tbl: &str,
        source: &str,
        job: &str,
        value: String,
    ) -> CatalogError {
        let (table, sql) = if tbl == "verifications" {
            (
                "verifications",
                "SELECT id FROM verifications WHERE source = $1 AND started_at = $3 AND $2 = 'verify'",
            )
        } else {
            (
                "runs",
                "SELECT id FROM runs WHERE source = $1 AND job = $2 AND started_at = $3",
            )
        };
        let id = sqlx::query_scalar::<_, String>(sql)
            .bind(source)
            .bind(job)
            .bind(&value)
            .fetch_optional(&self.pool)
            .await;
        let id = match id {
            Ok(Some(id)) => id,
            Ok(None) | Err(_) => format!("of source `{source}`, job `{job}`"),
        };
        CatalogError::BadTimestamp {
            table,
            id,
            column: "started_at",
            value,
        }
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

fn run_summary(r: &sqlx::any::AnyRow) -> Result<RunSummary, CatalogError> {
    let c = Cells::new(r, "runs", "read runs")?;
    Ok(RunSummary {
        job: c.get("job")?,
        source: c.get("source")?,
        snapshot_id: c.get("snapshot_id")?,
        store: c.get("store")?,
        status: c.status(Status::parse)?,
        started_at: c.time_text("started_at")?,
        finished_at: c.opt_time_text("finished_at")?,
        host: c.get("host")?,
        pid: c.get("pid")?,
        error: c.get("error")?,
        id: c.id,
    })
}

fn snapshot_row(r: &sqlx::any::AnyRow) -> Result<SnapshotRow, CatalogError> {
    let c = Cells::new(r, "snapshots", "read snapshots")?;
    let store: String = c.get("store")?;
    Ok(SnapshotRow {
        source: c.get("source")?,
        kind: c.get("kind")?,
        status: c.status(Status::parse)?,
        created_at: c.time_text("created_at")?,
        finished_at: c.opt_time_text("finished_at")?,
        raw_bytes: c.get("raw_bytes")?,
        compressed_bytes: c.get("compressed_bytes")?,
        stored_bytes: c.get("stored_bytes")?,
        sha256: c.get("sha256")?,
        duration_ms: c.get("duration_ms")?,
        error: c.get("error")?,
        locations: vec![store.clone()],
        store,
        manifest: c.get("manifest")?,
        manifest_version: c.get("manifest_version")?,
        id: c.id,
    })
}

/// (snapshot id, store, status) of a row of `copies`, whose key is the pair.
fn copy_row(r: &sqlx::any::AnyRow) -> Result<(String, String, Status), CatalogError> {
    let snapshot_id: String = r.try_get("snapshot_id").map_err(q("read copies"))?;
    let store: String = r.try_get("store").map_err(q("read copies"))?;
    let c = Cells {
        row: r,
        table: "copies",
        what: "read copies",
        id: format!("{snapshot_id} (store {store})"),
    };
    let status = c.status(Status::parse)?;
    Ok((snapshot_id, store, status))
}

fn url_password(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_openers_of_a_fresh_sqlite_file_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = SecretString::new(format!(
            "sqlite://{}",
            dir.path().join("sub/catalog.db").display()
        ));
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Catalog::open(&url).await.map(|_| ()) })
            })
            .collect();
        for o in openers {
            o.await.expect("join").expect("open");
        }
    }
}
