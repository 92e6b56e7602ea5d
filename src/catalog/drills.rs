//! The `drill_runs`, `drill_events` and `drill_faults` tables: every chaos drill's journal
//! (see [`crate::model::journal`]), its hash-chained events, and each fault's persisted
//! intent (what was touched, how to revert it, until when) so that a fault outlives neither
//! its drill nor a crash of it.
//!
//! # Guarantees
//! - [`Catalog::put_drill_journal`] upserts the run and appends only the events not stored
//!   yet: a stored event is never rewritten (append-only), so the catalog's chain is the
//!   witness the store's `drills/<id>/journal.json` is compared with.
//! - A fault's row is inserted (`intent`) before the fault is applied, and is `reverted`
//!   only once a probe confirmed the revert ([`Catalog::drill_fault_reverted`] is a
//!   compare-and-set: the first confirmation wins, a later one changes nothing).
//! - Texts are scrubbed of the config's secrets before they are stored.
//!
//! # Caveats
//! - The run's `host`/`pid` are those of the process that first stored it (the drill).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Catalog, CatalogError, parse_ts, q, scrubbed, ts};
use crate::model::journal::DrillJournal;

/// A drill run's bookkeeping row (its journal is read with [`Catalog::drill_journal`]).
#[derive(Debug, Clone, Serialize)]
pub struct DrillRunRow {
    pub id: String,
    pub scenario: String,
    pub host: String,
    pub pid: i64,
    /// running | finished | aborted
    pub status: String,
    pub verdict: String,
    pub started_at: DateTime<Utc>,
}

/// A fault's persisted intent and state.
#[derive(Debug, Clone, Serialize)]
pub struct DrillFaultRow {
    pub run_id: String,
    pub fault: String,
    pub action: String,
    pub spec: serde_json::Value,
    /// intent | applied | reverted
    pub status: String,
    pub ttl_at: DateTime<Utc>,
    pub applied_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
    pub reverted_by: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
}

impl DrillFaultRow {
    pub fn reverted(&self) -> bool {
        self.status == "reverted"
    }
}

fn run_status(j: &DrillJournal) -> &'static str {
    match (j.finished_at, j.verdict.as_str()) {
        (None, _) => "running",
        (Some(_), "aborted") => "aborted",
        (Some(_), _) => "finished",
    }
}

fn bad(what: &'static str, id: &str, reason: impl std::fmt::Display) -> CatalogError {
    CatalogError::Query {
        what,
        reason: format!("drill {id}: {reason}; fix or delete the row"),
    }
}

fn time(what: &'static str, id: &str, value: &str) -> Result<DateTime<Utc>, CatalogError> {
    parse_ts(value).ok_or_else(|| bad(what, id, format!("`{value}` is not an RFC 3339 time")))
}

fn opt_time(
    what: &'static str,
    id: &str,
    value: Option<String>,
) -> Result<Option<DateTime<Utc>>, CatalogError> {
    value.map(|v| time(what, id, &v)).transpose()
}

impl Catalog {
    /// Stores drill journal `j`: inserts or updates its run (status from `finished_at` and
    /// the verdict) and appends the events the catalog does not have yet.
    pub async fn put_drill_journal(&self, j: &DrillJournal) -> Result<(), CatalogError> {
        let text = serde_json::to_string(j).map_err(|e| bad("store drill journal", &j.id, e))?;
        sqlx::query(
            "INSERT INTO drill_runs (id, scenario, tier, host, pid, status, verdict, started_at, \
             finished_at, journal, journal_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET status = $6, verdict = $7, finished_at = $9, \
             journal = $10, journal_sha256 = $11",
        )
        .bind(&j.id)
        .bind(&j.scenario)
        .bind(&j.tier)
        .bind(crate::model::host::hostname())
        .bind(std::process::id() as i64)
        .bind(run_status(j))
        .bind(&j.verdict)
        .bind(ts(j.started_at))
        .bind(j.finished_at.map(ts))
        .bind(scrubbed(&text))
        .bind(&j.journal_sha256)
        .execute(&self.pool)
        .await
        .map_err(q("store drill journal"))?;
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM drill_events WHERE run_id = $1")
                .bind(&j.id)
                .fetch_one(&self.pool)
                .await
                .map_err(q("count drill events"))?;
        let from = stored.map_or(0, |s| s + 1);
        for e in j.events.iter().filter(|e| e.seq as i64 >= from) {
            sqlx::query(
                "INSERT INTO drill_events (run_id, seq, at, kind, detail, prev_sha256, sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, seq) DO NOTHING",
            )
            .bind(&j.id)
            .bind(e.seq as i64)
            .bind(ts(e.at))
            .bind(&e.kind)
            .bind(&e.detail)
            .bind(&e.prev_sha256)
            .bind(&e.sha256)
            .execute(&self.pool)
            .await
            .map_err(q("append drill event"))?;
        }
        Ok(())
    }

    /// The journal of drill `id`, if there is one.
    pub async fn drill_journal(&self, id: &str) -> Result<Option<DrillJournal>, CatalogError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT journal FROM drill_runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("read drill journal"))?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| bad("read drill journal", id, e)))
            .transpose()
    }

    /// Every drill journal started at or after `since`, oldest first.
    pub async fn drill_journals(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<DrillJournal>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, journal FROM drill_runs WHERE started_at >= $1 ORDER BY started_at, id",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list drill journals"))?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id").map_err(q("list drill journals"))?;
                let text: String = r.try_get("journal").map_err(q("list drill journals"))?;
                serde_json::from_str(&text).map_err(|e| bad("list drill journals", &id, e))
            })
            .collect()
    }

    /// The events of drill `id` as the catalog holds them (append-only), in order:
    /// (seq, kind, sha256).
    pub async fn drill_events(&self, id: &str) -> Result<Vec<(i64, String, String)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT seq, kind, sha256 FROM drill_events WHERE run_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read drill events"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("seq").map_err(q("read drill events"))?,
                    r.try_get("kind").map_err(q("read drill events"))?,
                    r.try_get("sha256").map_err(q("read drill events"))?,
                ))
            })
            .collect()
    }

    /// The drill runs still marked running (by any host).
    pub async fn drill_runs_running(&self) -> Result<Vec<DrillRunRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, scenario, host, pid, status, verdict, started_at FROM drill_runs \
             WHERE status = 'running' ORDER BY started_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list running drills"))?;
        rows.iter().map(drill_run_row).collect()
    }

    pub async fn drill_run(&self, id: &str) -> Result<Option<DrillRunRow>, CatalogError> {
        let row = sqlx::query(
            "SELECT id, scenario, host, pid, status, verdict, started_at FROM drill_runs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read drill run"))?;
        row.as_ref().map(drill_run_row).transpose()
    }

    /// Persists a fault's intent before it is applied (repeating it changes nothing).
    pub async fn drill_fault_intent(
        &self,
        run_id: &str,
        fault: &str,
        action: &str,
        spec: &serde_json::Value,
        ttl_at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO drill_faults (run_id, fault, action, spec, status, ttl_at) \
             VALUES ($1, $2, $3, $4, 'intent', $5) ON CONFLICT (run_id, fault) DO NOTHING",
        )
        .bind(run_id)
        .bind(fault)
        .bind(action)
        .bind(scrubbed(&spec.to_string()))
        .bind(ts(ttl_at))
        .execute(&self.pool)
        .await
        .map_err(q("record fault intent"))?;
        Ok(())
    }

    pub async fn drill_fault_applied(
        &self,
        run_id: &str,
        fault: &str,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE drill_faults SET status = 'applied', applied_at = $1 \
             WHERE run_id = $2 AND fault = $3 AND status = 'intent'",
        )
        .bind(ts(at))
        .bind(run_id)
        .bind(fault)
        .execute(&self.pool)
        .await
        .map_err(q("record fault applied"))?;
        Ok(())
    }

    /// A revert attempt that a probe did not (yet) confirm.
    pub async fn drill_fault_attempt(
        &self,
        run_id: &str,
        fault: &str,
        error: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE drill_faults SET attempts = attempts + 1, error = $1 \
             WHERE run_id = $2 AND fault = $3 AND status <> 'reverted'",
        )
        .bind(scrubbed(error))
        .bind(run_id)
        .bind(fault)
        .execute(&self.pool)
        .await
        .map_err(q("record revert attempt"))?;
        Ok(())
    }

    /// Records a revert confirmed by a probe; false when it was already recorded.
    pub async fn drill_fault_reverted(
        &self,
        run_id: &str,
        fault: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE drill_faults SET status = 'reverted', reverted_at = $1, reverted_by = $2, \
             attempts = attempts + 1, error = NULL \
             WHERE run_id = $3 AND fault = $4 AND status <> 'reverted'",
        )
        .bind(ts(at))
        .bind(by)
        .bind(run_id)
        .bind(fault)
        .execute(&self.pool)
        .await
        .map_err(q("record fault reverted"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Tests: makes drill `id` look like it was run by process `pid` (one that died).
    #[cfg(test)]
    pub(crate) async fn set_drill_pid(&self, id: &str, pid: i64) -> Result<(), CatalogError> {
        sqlx::query("UPDATE drill_runs SET pid = $1 WHERE id = $2")
            .bind(pid)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("set drill pid"))?;
        Ok(())
    }

    /// Every fault of drill `run_id`, in the order they were intended.
    pub async fn drill_faults(&self, run_id: &str) -> Result<Vec<DrillFaultRow>, CatalogError> {
        const WHAT: &str = "read drill faults";
        let rows = sqlx::query(
            "SELECT run_id, fault, action, spec, status, ttl_at, applied_at, reverted_at, \
             reverted_by, attempts, error FROM drill_faults WHERE run_id = $1 ORDER BY ttl_at, fault",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q(WHAT))?;
        rows.iter()
            .map(|r| {
                let get_s = |c: &str| r.try_get::<String, _>(c).map_err(q(WHAT));
                let get_o = |c: &str| r.try_get::<Option<String>, _>(c).map_err(q(WHAT));
                let spec = get_s("spec")?;
                let status = get_s("status")?;
                if !["intent", "applied", "reverted"].contains(&status.as_str()) {
                    return Err(CatalogError::UnknownStatus {
                        table: "drill_faults",
                        id: format!("{run_id}/{}", get_s("fault")?),
                        value: status,
                    });
                }
                Ok(DrillFaultRow {
                    spec: serde_json::from_str(&spec).map_err(|e| bad(WHAT, run_id, e))?,
                    status,
                    ttl_at: time(WHAT, run_id, &get_s("ttl_at")?)?,
                    applied_at: opt_time(WHAT, run_id, get_o("applied_at")?)?,
                    reverted_at: opt_time(WHAT, run_id, get_o("reverted_at")?)?,
                    reverted_by: get_o("reverted_by")?,
                    attempts: r.try_get("attempts").map_err(q(WHAT))?,
                    error: get_o("error")?,
                    run_id: get_s("run_id")?,
                    fault: get_s("fault")?,
                    action: get_s("action")?,
                })
            })
            .collect()
    }
}

fn drill_run_row(r: &sqlx::any::AnyRow) -> Result<DrillRunRow, CatalogError> {
    const WHAT: &str = "read drill runs";
    let id: String = r.try_get("id").map_err(q(WHAT))?;
    let started: String = r.try_get("started_at").map_err(q(WHAT))?;
    Ok(DrillRunRow {
        started_at: time(WHAT, &id, &started)?,
        scenario: r.try_get("scenario").map_err(q(WHAT))?,
        host: r.try_get("host").map_err(q(WHAT))?,
        pid: r.try_get("pid").map_err(q(WHAT))?,
        status: r.try_get("status").map_err(q(WHAT))?,
        verdict: r.try_get("verdict").map_err(q(WHAT))?,
        id,
    })
}
