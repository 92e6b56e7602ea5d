//! The `runbook_runs` and `runbook_steps` tables: what `lifeboat runbook run` did, step by
//! step, so `runbook resume` continues after the last finished step and `runbook log` shows
//! the timeline.
//!
//! # Guarantees
//! - A step attempt is inserted (`running`) before its process starts and updated after it
//!   ends: a step is `done` only once its process exited 0.
//! - [`Catalog::claim_runbook_run`] is a compare-and-swap on (status, host, pid): of two
//!   processes resuming one run, one wins.
//! - Error texts and argv are scrubbed of the config's secrets before they are stored.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Catalog, CatalogError, Cells, parse_ts, q, scrubbed, ts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunbookStatus {
    Running,
    Complete,
    Failed,
    /// Stopped before the end without a failing step: declined or unconfirmed, interrupted.
    Stopped,
}

impl RunbookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunbookStatus::Running => "running",
            RunbookStatus::Complete => "complete",
            RunbookStatus::Failed => "failed",
            RunbookStatus::Stopped => "stopped",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(RunbookStatus::Running),
            "complete" => Some(RunbookStatus::Complete),
            "failed" => Some(RunbookStatus::Failed),
            "stopped" => Some(RunbookStatus::Stopped),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Running,
    Done,
    Failed,
    /// Its process was stopped (Ctrl-C, timeout) or the runner died while it ran.
    Interrupted,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Interrupted => "interrupted",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(StepStatus::Running),
            "done" => Some(StepStatus::Done),
            "failed" => Some(StepStatus::Failed),
            "interrupted" => Some(StepStatus::Interrupted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunbookRunRow {
    pub id: String,
    pub runbook: String,
    #[serde(skip)]
    pub runbook_text: String,
    /// Values stored as JSON null held a secret and were not kept.
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub who: String,
    pub host: String,
    pub pid: i64,
    pub status: RunbookStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunbookStepRow {
    pub step: String,
    pub attempt: i64,
    pub seq: i64,
    pub who: String,
    pub argv: Vec<String>,
    pub pid: Option<i64>,
    pub status: StepStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
}

impl RunbookStepRow {
    pub fn started(&self) -> Option<DateTime<Utc>> {
        parse_ts(&self.started_at)
    }
}

pub struct NewRunbookRun<'a> {
    pub id: &'a str,
    pub runbook: &'a str,
    pub runbook_text: &'a str,
    pub vars: &'a serde_json::Map<String, serde_json::Value>,
    pub who: &'a str,
    pub host: &'a str,
    pub pid: u32,
    pub now: DateTime<Utc>,
}

pub struct NewStep<'a> {
    pub run_id: &'a str,
    pub step: &'a str,
    pub seq: usize,
    pub who: &'a str,
    pub argv: &'a [String],
    pub now: DateTime<Utc>,
}

const RUN_COLUMNS: &str =
    "id, runbook, runbook_text, vars, who, host, pid, status, started_at, finished_at, error";
const STEP_COLUMNS: &str = "run_id, step, attempt, seq, who, argv, pid, status, started_at, \
     finished_at, exit_code, error";

impl Catalog {
    pub async fn insert_runbook_run(&self, r: &NewRunbookRun<'_>) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO runbook_runs (id, runbook, runbook_text, vars, who, host, pid, status, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8)",
        )
        .bind(r.id)
        .bind(r.runbook)
        .bind(r.runbook_text)
        .bind(serde_json::Value::Object(r.vars.clone()).to_string())
        .bind(r.who)
        .bind(r.host)
        .bind(i64::from(r.pid))
        .bind(ts(r.now))
        .execute(&self.pool)
        .await
        .map_err(q("insert runbook run"))?;
        Ok(())
    }

    /// Takes over run `id` for process `pid` on `host` if it is still as `seen` (status,
    /// host, pid): false when another process changed it first.
    pub async fn claim_runbook_run(
        &self,
        seen: &RunbookRunRow,
        host: &str,
        pid: u32,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE runbook_runs SET status = 'running', host = $1, pid = $2, finished_at = NULL, error = NULL \
             WHERE id = $3 AND status = $4 AND host = $5 AND pid = $6",
        )
        .bind(host)
        .bind(i64::from(pid))
        .bind(&seen.id)
        .bind(seen.status.as_str())
        .bind(&seen.host)
        .bind(seen.pid)
        .execute(&self.pool)
        .await
        .map_err(q("claim runbook run"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn finish_runbook_run(
        &self,
        id: &str,
        status: RunbookStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE runbook_runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(error.map(scrubbed))
        .bind(ts(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("finish runbook run"))?;
        Ok(())
    }

    pub async fn runbook_run(&self, id: &str) -> Result<Option<RunbookRunRow>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runbook_runs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read runbook run"))?;
        row.as_ref().map(run_row).transpose()
    }

    /// The newest `limit` runbook runs, oldest of them first.
    pub async fn runbook_runs(&self, limit: i64) -> Result<Vec<RunbookRunRow>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runbook_runs ORDER BY started_at DESC, id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list runbook runs"))?;
        let mut out = rows.iter().map(run_row).collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Records that a step is about to start; returns its attempt number (1 for the first).
    pub async fn start_runbook_step(&self, s: &NewStep<'_>) -> Result<i64, CatalogError> {
        let previous: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(attempt) FROM runbook_steps WHERE run_id = $1 AND step = $2",
        )
        .bind(s.run_id)
        .bind(s.step)
        .fetch_one(&self.pool)
        .await
        .map_err(q("count runbook step attempts"))?;
        let attempt = previous.unwrap_or(0) + 1;
        let argv = serde_json::to_string(s.argv).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO runbook_steps (run_id, step, attempt, seq, who, argv, status, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'running', $7)",
        )
        .bind(s.run_id)
        .bind(s.step)
        .bind(attempt)
        .bind(s.seq as i64)
        .bind(s.who)
        .bind(scrubbed(&argv))
        .bind(ts(s.now))
        .execute(&self.pool)
        .await
        .map_err(q("start runbook step"))?;
        Ok(attempt)
    }

    /// The process running a step, once it is started.
    pub async fn set_runbook_step_pid(
        &self,
        run_id: &str,
        step: &str,
        attempt: i64,
        pid: u32,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE runbook_steps SET pid = $1 WHERE run_id = $2 AND step = $3 AND attempt = $4",
        )
        .bind(i64::from(pid))
        .bind(run_id)
        .bind(step)
        .bind(attempt)
        .execute(&self.pool)
        .await
        .map_err(q("record runbook step pid"))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn finish_runbook_step(
        &self,
        run_id: &str,
        step: &str,
        attempt: i64,
        status: StepStatus,
        exit_code: Option<i32>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE runbook_steps SET status = $1, exit_code = $2, error = $3, finished_at = $4 \
             WHERE run_id = $5 AND step = $6 AND attempt = $7",
        )
        .bind(status.as_str())
        .bind(exit_code.map(i64::from))
        .bind(error.map(scrubbed))
        .bind(ts(now))
        .bind(run_id)
        .bind(step)
        .bind(attempt)
        .execute(&self.pool)
        .await
        .map_err(q("finish runbook step"))?;
        Ok(())
    }

    /// Every step attempt of a run, in the order they started.
    pub async fn runbook_steps(&self, run_id: &str) -> Result<Vec<RunbookStepRow>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM runbook_steps WHERE run_id = $1 ORDER BY started_at, seq, attempt"
        )))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list runbook steps"))?;
        rows.iter().map(step_row).collect()
    }
}

fn run_row(r: &sqlx::any::AnyRow) -> Result<RunbookRunRow, CatalogError> {
    let c = Cells::new(r, "runbook_runs", "read runbook runs")?;
    let vars: String = c.get("vars")?;
    let vars = match serde_json::from_str::<serde_json::Value>(&vars) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => {
            return Err(CatalogError::Query {
                what: "read runbook runs",
                reason: format!(
                    "runbook run {}: `vars` is not a JSON object; fix or delete the row",
                    c.id
                ),
            });
        }
    };
    Ok(RunbookRunRow {
        runbook: c.get("runbook")?,
        runbook_text: c.get("runbook_text")?,
        vars,
        who: c.get("who")?,
        host: c.get("host")?,
        pid: c.get("pid")?,
        status: c.status(RunbookStatus::parse)?,
        started_at: c.time_text("started_at")?,
        finished_at: c.opt_time_text("finished_at")?,
        error: c.get("error")?,
        id: c.id,
    })
}

fn step_row(r: &sqlx::any::AnyRow) -> Result<RunbookStepRow, CatalogError> {
    use sqlx::Row;
    let run_id: String = r.try_get("run_id").map_err(q("read runbook steps"))?;
    let step: String = r.try_get("step").map_err(q("read runbook steps"))?;
    let attempt: i64 = r.try_get("attempt").map_err(q("read runbook steps"))?;
    let c = Cells {
        row: r,
        table: "runbook_steps",
        what: "read runbook steps",
        id: format!("{run_id}/{step}#{attempt}"),
    };
    let argv: String = c.get("argv")?;
    Ok(RunbookStepRow {
        argv: serde_json::from_str(&argv).unwrap_or_else(|_| vec![argv]),
        seq: c.get("seq")?,
        who: c.get("who")?,
        pid: c.get("pid")?,
        status: c.status(StepStatus::parse)?,
        started_at: c.time_text("started_at")?,
        finished_at: c.opt_time_text("finished_at")?,
        exit_code: c.get("exit_code")?,
        error: c.get("error")?,
        step,
        attempt,
    })
}
