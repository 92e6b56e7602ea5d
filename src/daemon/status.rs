//! MERGE SEAM: what `/api/v1/status` and the status part of `/metrics` show.
//!
//! `lifeboat status` (`crate::status::gather(&App, now)`, on another branch) is the real
//! source of these; at merge, implement [`StatusProvider`] with it (JSON: the rows it
//! returns, exactly as `lifeboat status --output json` prints them; metrics: its Prometheus
//! text) and pass that to [`super::http::serve`] instead of [`MinimalStatus`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::App;
use crate::catalog::Status;

#[async_trait]
pub trait StatusProvider: Send + Sync {
    /// The JSON of `/api/v1/status`.
    async fn json(&self, app: &App, now: DateTime<Utc>) -> Result<serde_json::Value, String>;
    /// Prometheus text for `/metrics` (status metrics).
    async fn prometheus(&self, app: &App, now: DateTime<Utc>) -> Result<String, String>;
}

/// A minimal status from the snapshot list: per source, the newest complete snapshot, its
/// age and the RPO. Replaced by `status::gather` at merge.
pub struct MinimalStatus;

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub kind: String,
    pub last_snapshot: Option<String>,
    pub last_snapshot_at: Option<String>,
    pub age_seconds: Option<i64>,
    pub rpo_seconds: Option<u64>,
    pub rpo_met: Option<bool>,
    pub complete_snapshots: usize,
}

pub async fn minimal(app: &App, now: DateTime<Utc>) -> Result<Vec<SourceStatus>, String> {
    let snaps = app
        .catalog
        .snapshots(None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(app
        .config
        .sources
        .iter()
        .map(|s| {
            let complete: Vec<_> = snaps
                .iter()
                .filter(|r| r.source == s.name && r.status == Status::Complete)
                .collect();
            let last = complete.last();
            let at = last.and_then(|r| DateTime::parse_from_rfc3339(&r.created_at).ok());
            let age = at.map(|t| (now - t.with_timezone(&Utc)).num_seconds());
            let rpo = s.objectives.map(|o| o.rpo.0.as_secs());
            SourceStatus {
                source: s.name.clone(),
                kind: s.spec.kind().to_string(),
                last_snapshot: last.map(|r| r.id.clone()),
                last_snapshot_at: last.map(|r| r.created_at.clone()),
                age_seconds: age,
                rpo_seconds: rpo,
                rpo_met: rpo.map(|r| age.is_some_and(|a| a <= r as i64)),
                complete_snapshots: complete.len(),
            }
        })
        .collect())
}

#[async_trait]
impl StatusProvider for MinimalStatus {
    async fn json(&self, app: &App, now: DateTime<Utc>) -> Result<serde_json::Value, String> {
        serde_json::to_value(minimal(app, now).await?).map_err(|e| e.to_string())
    }

    async fn prometheus(&self, app: &App, now: DateTime<Utc>) -> Result<String, String> {
        use std::fmt::Write;
        let rows = minimal(app, now).await?;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP lifeboat_last_snapshot_timestamp_seconds Creation time of the newest complete snapshot.\n# TYPE lifeboat_last_snapshot_timestamp_seconds gauge"
        );
        for r in &rows {
            if let Some(t) = r
                .last_snapshot_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            {
                let _ = writeln!(
                    out,
                    "lifeboat_last_snapshot_timestamp_seconds{{source=\"{}\"}} {}",
                    r.source,
                    t.timestamp()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_rpo_seconds The source's recovery point objective.\n# TYPE lifeboat_rpo_seconds gauge"
        );
        for r in &rows {
            if let Some(rpo) = r.rpo_seconds {
                let _ = writeln!(out, "lifeboat_rpo_seconds{{source=\"{}\"}} {rpo}", r.source);
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_snapshots Complete snapshots in the catalog.\n# TYPE lifeboat_snapshots gauge"
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "lifeboat_snapshots{{source=\"{}\"}} {}",
                r.source, r.complete_snapshots
            );
        }
        Ok(out)
    }
}
