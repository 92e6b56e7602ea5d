//! The `failovers` and `failover_steps` tables: each failover between sites (one per term)
//! and its steps, recorded before they are taken (see `ops::failover`).
//!
//! # Guarantees
//! - [`Catalog::failover_begin`] and [`Catalog::failover_step_start`] insert only once
//!   (repeating them is harmless); a step marked `done` stays done.
//! - Details and errors are scrubbed of secrets before they are stored.
//! - The controller's state and vote book ([`Catalog::controller_save`]) are written in one
//!   statement: a vote is never granted without being recorded.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Catalog, CatalogError, parse_ts, q, scrubbed, ts};

/// A failover as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverRow {
    pub term: i64,
    pub from_site: String,
    pub to_site: String,
    pub mode: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub plan: Option<serde_json::Value>,
    pub timeline: Option<serde_json::Value>,
    pub error: Option<String>,
    pub steps: Vec<StepRow>,
}

/// One step of a failover.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub step: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub detail: Option<String>,
}

impl StepRow {
    pub fn done(&self) -> bool {
        self.status == "done"
    }
}

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl Catalog {
    /// Records a failover of `term` as running (nothing if `term` is already recorded).
    pub async fn failover_begin(
        &self,
        term: i64,
        from: &str,
        to: &str,
        mode: &str,
        plan: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO failovers (term, from_site, to_site, mode, status, started_at, plan) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6) ON CONFLICT (term) DO NOTHING",
        )
        .bind(term)
        .bind(from)
        .bind(to)
        .bind(mode)
        .bind(ts(now))
        .bind(scrubbed(&plan.to_string()))
        .execute(&self.pool)
        .await
        .map_err(q("begin failover"))?;
        Ok(())
    }

    /// Records that `step` of `term` is about to be taken (nothing if already recorded).
    pub async fn failover_step_start(
        &self,
        term: i64,
        step: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO failover_steps (term, step, status, started_at) \
             VALUES ($1, $2, 'started', $3) ON CONFLICT (term, step) DO NOTHING",
        )
        .bind(term)
        .bind(step)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(q("start failover step"))?;
        Ok(())
    }

    /// Records that `step` of `term` was taken.
    pub async fn failover_step_done(
        &self,
        term: i64,
        step: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE failover_steps SET status = 'done', finished_at = $1, detail = $2 \
             WHERE term = $3 AND step = $4 AND status <> 'done'",
        )
        .bind(ts(now))
        .bind(scrubbed(detail))
        .bind(term)
        .bind(step)
        .execute(&self.pool)
        .await
        .map_err(q("finish failover step"))?;
        Ok(())
    }

    /// Records the outcome of the failover of `term`.
    pub async fn failover_finish(
        &self,
        term: i64,
        status: &str,
        timeline: &serde_json::Value,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE failovers SET status = $1, timeline = $2, error = $3, finished_at = $4 \
             WHERE term = $5",
        )
        .bind(status)
        .bind(timeline.to_string())
        .bind(error.map(scrubbed))
        .bind(ts(now))
        .bind(term)
        .execute(&self.pool)
        .await
        .map_err(q("finish failover"))?;
        Ok(())
    }

    /// The newest `limit` failovers with their steps, newest last.
    pub async fn failovers(&self, limit: i64) -> Result<Vec<FailoverRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT term, from_site, to_site, mode, status, started_at, finished_at, plan, \
             timeline, error FROM failovers ORDER BY term DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list failovers"))?;
        let mut out = Vec::new();
        for r in &rows {
            let get_s = |c: &str| -> Result<String, CatalogError> {
                r.try_get::<String, _>(c).map_err(q("read failovers"))
            };
            let get_o = |c: &str| -> Result<Option<String>, CatalogError> {
                r.try_get::<Option<String>, _>(c)
                    .map_err(q("read failovers"))
            };
            let term: i64 = r.try_get("term").map_err(q("read failovers"))?;
            let started_at = get_s("started_at")?;
            if parse_ts(&started_at).is_none() {
                return Err(CatalogError::BadTimestamp {
                    table: "failovers",
                    id: term.to_string(),
                    column: "started_at",
                    value: started_at,
                });
            }
            out.push(FailoverRow {
                term,
                from_site: get_s("from_site")?,
                to_site: get_s("to_site")?,
                mode: get_s("mode")?,
                status: get_s("status")?,
                started_at,
                finished_at: get_o("finished_at")?,
                plan: json(get_o("plan")?),
                timeline: json(get_o("timeline")?),
                error: get_o("error")?,
                steps: self.failover_steps(term).await?,
            });
        }
        out.reverse();
        Ok(out)
    }

    /// The steps of `term` recorded so far, in the order they were started.
    pub async fn failover_steps(&self, term: i64) -> Result<Vec<StepRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT step, status, started_at, finished_at, detail FROM failover_steps \
             WHERE term = $1 ORDER BY started_at, step",
        )
        .bind(term)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list failover steps"))?;
        rows.iter()
            .map(|r| {
                let g = |c: &str| r.try_get::<String, _>(c).map_err(q("read failover steps"));
                let o = |c: &str| {
                    r.try_get::<Option<String>, _>(c)
                        .map_err(q("read failover steps"))
                };
                Ok(StepRow {
                    step: g("step")?,
                    status: g("status")?,
                    started_at: g("started_at")?,
                    finished_at: o("finished_at")?,
                    detail: o("detail")?,
                })
            })
            .collect()
    }

    /// The failover controller's persisted `(state, ballot)` JSON at `site`, if any.
    pub async fn controller_load(
        &self,
        site: &str,
    ) -> Result<Option<(String, String)>, CatalogError> {
        let row = sqlx::query("SELECT state, ballot FROM failover_controller WHERE site = $1")
            .bind(site)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read failover controller"))?;
        row.map(|r| {
            Ok((
                r.try_get::<String, _>("state")
                    .map_err(q("read failover controller"))?,
                r.try_get::<String, _>("ballot")
                    .map_err(q("read failover controller"))?,
            ))
        })
        .transpose()
    }

    /// Stores the failover controller's `state` and `ballot` JSON at `site`.
    pub async fn controller_save(
        &self,
        site: &str,
        state: &str,
        ballot: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO failover_controller (site, state, ballot, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (site) DO UPDATE SET \
             state = excluded.state, ballot = excluded.ballot, updated_at = excluded.updated_at",
        )
        .bind(site)
        .bind(state)
        .bind(ballot)
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .map_err(q("save failover controller"))?;
        Ok(())
    }
}
