//! `lifeboat status`: every configured source against its recovery objectives. [`gather`]
//! reads the facts from the catalog and evaluates them with [`crate::policy::objectives`]; the
//! [`Report`] is what `--output json` prints (and what the daemon will serve at
//! `/api/v1/status`), [`Report::prometheus`] the text exposition format for the
//! node-exporter textfile collector.
//!
//! Drills are evidence too: the newest finished drill of each scenario (in the last
//! [`DRILL_EVIDENCE_DAYS`] days) with its measured RTO/RPO, objectives and age, shown beside
//! the sources; they do not change the sources' verdicts.
//!
//! Only the catalog is read (never a store), so `status` is cheap enough for a CronJob or
//! a scrape. The catalog is a cache of the stores: after losing it, run
//! `lifeboat catalog rebuild` first, or every source looks breached.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{CatalogError, Status};
use crate::ops::Ctx;
use crate::policy::objectives::{self, Facts, Verdict, Verified};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "the catalog holds an unreadable time `{value}` ({what}); run `lifeboat catalog rebuild` to rewrite it from the stores"
    )]
    BadTime { what: &'static str, value: String },
}

/// Every configured source, in config order, and the overall verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    /// The worst verdict of any source (`ok` when there are no sources).
    pub verdict: Verdict,
    pub sources: Vec<SourceStatus>,
    /// The newest finished drill of each scenario: measured RTO/RPO evidence, with its age.
    pub drills: Vec<DrillEvidence>,
}

/// How far back `status` looks for drills.
pub const DRILL_EVIDENCE_DAYS: i64 = 400;

/// One scenario's newest finished drill (see `lifeboat drill history`).
#[derive(Debug, Clone, Serialize)]
pub struct DrillEvidence {
    pub scenario: String,
    pub id: String,
    /// pass | at-risk | breached | inconclusive | aborted | failed
    pub verdict: String,
    pub finished_at: DateTime<Utc>,
    pub age_seconds: f64,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
}

/// The newest finished drill of each scenario, by scenario name.
pub fn drill_evidence(
    journals: &[crate::model::journal::DrillJournal],
    now: DateTime<Utc>,
) -> Vec<DrillEvidence> {
    let mut newest: std::collections::BTreeMap<&str, &crate::model::journal::DrillJournal> =
        Default::default();
    for j in journals
        .iter()
        .filter(|j| j.finished_at.is_some() && !j.dry_run)
    {
        let e = newest.entry(j.scenario.as_str()).or_insert(j);
        if (j.finished_at, &j.id) > (e.finished_at, &e.id) {
            *e = j;
        }
    }
    newest
        .into_values()
        .filter_map(|j| {
            let finished_at = j.finished_at?;
            // The worst service measured (the first when all are alike).
            let rto = j
                .services
                .iter()
                .filter_map(|s| s.rto_seconds)
                .reduce(f64::max);
            let rpo = j
                .services
                .iter()
                .filter_map(|s| s.rpo_seconds)
                .reduce(f64::max);
            Some(DrillEvidence {
                scenario: j.scenario.clone(),
                id: j.id.clone(),
                verdict: j.verdict.clone(),
                finished_at,
                age_seconds: (now - finished_at).num_milliseconds().max(0) as f64 / 1000.0,
                rto_seconds: rto,
                rpo_seconds: rpo,
                rto_objective_seconds: j.objectives.rto_seconds,
                rpo_objective_seconds: j.objectives.rpo_seconds,
            })
        })
        .collect()
}

/// One source: what it promises, what the catalog shows, the verdict and why. Durations are
/// in seconds; `None` (JSON `null`) when there is nothing to measure.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub kind: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub last_snapshot_id: Option<String>,
    pub last_snapshot_at: Option<DateTime<Utc>>,
    /// The newest snapshot a passed verification proved good.
    pub last_verified_snapshot_id: Option<String>,
    pub last_verified_snapshot_at: Option<DateTime<Utc>>,
    /// When that verification finished.
    pub last_verification_at: Option<DateTime<Utc>>,
    pub rpo_objective_seconds: Option<f64>,
    pub rpo_exposure_seconds: Option<f64>,
    pub verified_rpo_exposure_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    /// The restore time that verification measured.
    pub restore_seconds: Option<f64>,
    pub rto_overhead_seconds: f64,
    /// `restore_seconds + rto_overhead_seconds`.
    pub rto_evidence_seconds: Option<f64>,
    pub verify_max_age_seconds: f64,
}

/// How far in the future a snapshot may be dated (clock skew between hosts) and still count.
const FUTURE_SKEW: chrono::Duration = chrono::Duration::minutes(5);

fn parse_time(what: &'static str, value: &str) -> Result<DateTime<Utc>, StatusError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StatusError::BadTime {
            what,
            value: value.to_string(),
        })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Evaluates every configured source at `now`.
pub async fn gather(app: &Ctx, now: DateTime<Utc>) -> Result<Report, StatusError> {
    let mut sources = Vec::with_capacity(app.config.sources.len());
    for source in &app.config.sources {
        let targets = app.config.targets(source);
        let snapshots = app.catalog.snapshots(Some(&source.name)).await?;
        // Oldest first: the last complete one is the newest. One dated in the future (past
        // the clock skew allowed) proves nothing about now: it is left out and flagged.
        let horizon = now + FUTURE_SKEW;
        let mut future = None;
        let last = snapshots.iter().rfind(|s| {
            if s.status != Status::Complete {
                return false;
            }
            match parse_time("snapshot created_at", &s.created_at) {
                Ok(t) if t > horizon => {
                    future.get_or_insert((s.id.clone(), t));
                    false
                }
                _ => true,
            }
        });
        let last_at = last
            .map(|s| parse_time("snapshot created_at", &s.created_at))
            .transpose()?;
        let verification = app.catalog.newest_passed_verification(&source.name).await?;
        let mut verified = None;
        let mut verified_id = None;
        if let Some(v) = &verification {
            let snap = snapshots.iter().find(|s| s.id == v.snapshot_id);
            // The query joins on complete snapshots, so the row is there unless a prune
            // removed it in between; then the verification no longer vouches for anything.
            if let (Some(snap), Some(finished)) = (snap, &v.finished_at) {
                verified = Some(Verified {
                    snapshot_created_at: parse_time("snapshot created_at", &snap.created_at)?,
                    finished_at: parse_time("verification finished_at", finished)?,
                    restore: v
                        .restore_ms
                        .map(|ms| Duration::from_millis(ms.max(0) as u64)),
                });
                verified_id = Some(snap.id.clone());
            }
        }
        let facts = Facts {
            newest_complete: last_at,
            verified,
        };
        let mut e = objectives::evaluate(&targets, &facts, now);
        if let Some((id, t)) = future {
            e.verdict = e.verdict.max(Verdict::AtRisk);
            e.reasons.push(format!(
                "snapshot {id} is dated {} in the future ({}); it is not counted for the RPO: a host's clock is wrong or the snapshot was forged",
                objectives::human((t - now).to_std().unwrap_or_default()),
                t.to_rfc3339()
            ));
        }
        let obj = targets.objectives;
        sources.push(SourceStatus {
            source: source.name.clone(),
            kind: source.spec.kind().to_string(),
            verdict: e.verdict,
            reasons: e.reasons,
            last_snapshot_id: last.map(|s| s.id.clone()),
            last_snapshot_at: last_at,
            last_verified_snapshot_id: verified_id,
            last_verified_snapshot_at: verified.map(|v| v.snapshot_created_at),
            last_verification_at: verified.map(|v| v.finished_at),
            rpo_objective_seconds: obj.map(|o| secs(o.rpo.0)),
            rpo_exposure_seconds: e.rpo_exposure.map(secs),
            verified_rpo_exposure_seconds: e.verified_rpo_exposure.map(secs),
            rto_objective_seconds: obj.map(|o| secs(o.rto.0)),
            restore_seconds: verified.and_then(|v| v.restore).map(secs),
            rto_overhead_seconds: secs(targets.rto_overhead),
            rto_evidence_seconds: e.rto_evidence.map(secs),
            verify_max_age_seconds: secs(targets.verify_max_age),
        });
    }
    let journals = app
        .catalog
        .drill_journals(now - chrono::Duration::days(DRILL_EVIDENCE_DAYS))
        .await?;
    Ok(Report {
        generated_at: now,
        drills: drill_evidence(&journals, now),
        verdict: sources
            .iter()
            .map(|s| s.verdict)
            .max()
            .unwrap_or(Verdict::Ok),
        sources,
    })
}

/// A metric family: name, help, and each source's value (absent: no sample).
type Family = (&'static str, &'static str, fn(&SourceStatus) -> Option<f64>);

const FAMILIES: &[Family] = &[
    (
        "lifeboat_rpo_exposure_seconds",
        "Seconds since the newest complete snapshot was created.",
        |s| s.rpo_exposure_seconds,
    ),
    (
        "lifeboat_verified_rpo_exposure_seconds",
        "Seconds since the newest verified snapshot was created.",
        |s| s.verified_rpo_exposure_seconds,
    ),
    (
        "lifeboat_rpo_objective_seconds",
        "The recovery point objective.",
        |s| s.rpo_objective_seconds,
    ),
    (
        "lifeboat_rto_objective_seconds",
        "The recovery time objective.",
        |s| s.rto_objective_seconds,
    ),
    (
        "lifeboat_restore_duration_seconds",
        "Restore duration measured by the newest passed verification.",
        |s| s.restore_seconds,
    ),
    (
        "lifeboat_rto_evidence_seconds",
        "Measured restore duration plus the configured rto_overhead.",
        |s| s.rto_evidence_seconds,
    ),
    (
        "lifeboat_last_snapshot_timestamp_seconds",
        "Creation time of the newest complete snapshot, in unix seconds.",
        |s| s.last_snapshot_at.map(unix),
    ),
    (
        "lifeboat_last_verified_timestamp_seconds",
        "Finish time of the newest passed verification, in unix seconds.",
        |s| s.last_verification_at.map(unix),
    ),
    (
        "lifeboat_source_at_risk",
        "1 when the source is at risk of missing its objectives, else 0.",
        |s| Some(f64::from(u8::from(s.verdict == Verdict::AtRisk))),
    ),
    (
        "lifeboat_source_breached",
        "1 when the source misses its objectives, else 0.",
        |s| Some(f64::from(u8::from(s.verdict == Verdict::Breached))),
    ),
];

/// A drill metric family: name, help, and each scenario's value (absent: no sample).
type DrillFamily = (
    &'static str,
    &'static str,
    fn(&DrillEvidence) -> Option<f64>,
);

const DRILL_FAMILIES: &[DrillFamily] = &[
    (
        "lifeboat_drill_rto_seconds",
        "The RTO measured by the newest finished drill of the scenario.",
        |d| d.rto_seconds,
    ),
    (
        "lifeboat_drill_rpo_seconds",
        "The RPO measured by the newest finished drill of the scenario.",
        |d| d.rpo_seconds,
    ),
    (
        "lifeboat_drill_rto_objective_seconds",
        "The RTO the newest finished drill of the scenario was judged against.",
        |d| d.rto_objective_seconds,
    ),
    (
        "lifeboat_drill_rpo_objective_seconds",
        "The RPO the newest finished drill of the scenario was judged against.",
        |d| d.rpo_objective_seconds,
    ),
    (
        "lifeboat_drill_age_seconds",
        "Seconds since the newest drill of the scenario finished.",
        |d| Some(d.age_seconds),
    ),
    (
        "lifeboat_drill_passed",
        "1 when the newest drill of the scenario passed (or was at risk), else 0.",
        |d| {
            Some(f64::from(u8::from(matches!(
                d.verdict.as_str(),
                "pass" | "at-risk"
            ))))
        },
    ),
];

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// A label value as the exposition format wants it: `\`, `"` and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Report {
    /// The Prometheus text exposition format: every family is a gauge with a `source`
    /// label; a value that cannot be measured (no snapshot yet) has no sample.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in FAMILIES {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for s in &self.sources {
                if let Some(v) = value(s) {
                    let _ = writeln!(out, "{name}{{source=\"{}\"}} {v}", label_value(&s.source));
                }
            }
        }
        for (name, help, value) in DRILL_FAMILIES {
            if self.drills.is_empty() {
                break;
            }
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for d in &self.drills {
                if let Some(v) = value(d) {
                    let _ = writeln!(
                        out,
                        "{name}{{scenario=\"{}\"}} {v}",
                        label_value(&d.scenario)
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: &str, verdict: Verdict) -> SourceStatus {
        SourceStatus {
            source: source.into(),
            kind: "postgres".into(),
            verdict,
            reasons: vec![],
            last_snapshot_id: None,
            last_snapshot_at: None,
            last_verified_snapshot_id: None,
            last_verified_snapshot_at: None,
            last_verification_at: None,
            rpo_objective_seconds: Some(21600.0),
            rpo_exposure_seconds: Some(1.5),
            verified_rpo_exposure_seconds: None,
            rto_objective_seconds: Some(1800.0),
            restore_seconds: None,
            rto_overhead_seconds: 0.0,
            rto_evidence_seconds: None,
            verify_max_age_seconds: 604800.0,
        }
    }

    #[test]
    fn prometheus_text() {
        let report = Report {
            generated_at: chrono::DateTime::UNIX_EPOCH,
            verdict: Verdict::Breached,
            sources: vec![row("a", Verdict::Ok), row("we\"ird\\", Verdict::Breached)],
            drills: vec![],
        };
        let text = report.prometheus();
        assert!(text.contains("# TYPE lifeboat_rpo_exposure_seconds gauge\n"));
        assert!(text.contains("lifeboat_rpo_objective_seconds{source=\"a\"} 21600\n"));
        assert!(text.contains("lifeboat_rpo_exposure_seconds{source=\"a\"} 1.5\n"));
        assert!(text.contains("lifeboat_source_breached{source=\"we\\\"ird\\\\\"} 1\n"));
        assert!(text.contains("lifeboat_source_breached{source=\"a\"} 0\n"));
        assert!(
            !text.contains("lifeboat_restore_duration_seconds{"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
        assert!(!text.contains("lifeboat_drill_"), "{text}");
    }

    fn journal(
        id: &str,
        scenario: &str,
        finished_s: Option<i64>,
        rto: f64,
    ) -> crate::model::journal::DrillJournal {
        use crate::model::journal::*;
        let t = |s: i64| DateTime::UNIX_EPOCH + chrono::Duration::seconds(s);
        DrillJournal {
            schema: DRILL_JOURNAL_SCHEMA.into(),
            id: id.into(),
            scenario: scenario.into(),
            tier: "pod".into(),
            started_at: t(0),
            finished_at: finished_s.map(t),
            run_by: "t@h".into(),
            dry_run: false,
            verdict: "pass".into(),
            reasons: vec![],
            objectives: JournalObjectives {
                rto_seconds: Some(30.0),
                rpo_seconds: None,
            },
            services: vec![ServiceMeasure {
                service: "db".into(),
                rto_seconds: Some(rto),
                rpo_seconds: Some(0.0),
                rto_objective_seconds: Some(30.0),
                rpo_objective_seconds: None,
                verdict: "pass".into(),
            }],
            timeline: vec![],
            canary: None,
            faults: vec![],
            findings: vec![],
            evidence: vec![],
            events: vec![],
            journal_sha256: GENESIS.into(),
        }
    }

    #[test]
    fn newest_finished_drill_per_scenario_is_the_evidence() {
        let now = DateTime::UNIX_EPOCH + chrono::Duration::seconds(1000);
        let all = [
            journal("a1", "pod-kill", Some(100), 2.0),
            journal("a2", "pod-kill", Some(300), 3.0),
            journal("a3", "pod-kill", None, 9.0), // still running: not evidence
            journal("b1", "store-outage", Some(200), 1.0),
        ];
        let e = drill_evidence(&all, now);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].id.as_str(), e[0].rto_seconds), ("a2", Some(3.0)));
        assert_eq!(e[0].age_seconds, 700.0);
        assert_eq!(e[1].scenario, "store-outage");
        let report = Report {
            generated_at: now,
            verdict: Verdict::Ok,
            sources: vec![],
            drills: e,
        };
        let text = report.prometheus();
        assert!(
            text.contains("lifeboat_drill_rto_seconds{scenario=\"pod-kill\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lifeboat_drill_age_seconds{scenario=\"store-outage\"} 800\n"),
            "{text}"
        );
        assert!(
            text.contains("lifeboat_drill_passed{scenario=\"pod-kill\"} 1\n"),
            "{text}"
        );
        // Measured against the objective the drill was judged by; no objective, no sample.
        assert!(
            text.contains("lifeboat_drill_rto_objective_seconds{scenario=\"pod-kill\"} 30\n"),
            "{text}"
        );
        assert!(
            !text.contains("lifeboat_drill_rpo_objective_seconds{"),
            "{text}"
        );
    }
}
