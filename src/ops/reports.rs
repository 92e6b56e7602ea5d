//! The content of the DR reports (`lifeboat report posture|verification`): what is gathered
//! from the catalog and the config, as data. [`crate::report::dr`] renders it as HTML and
//! Markdown; its JSON is this data serialized, under a versioned schema
//! ([`POSTURE_SCHEMA`], [`VERIFICATION_SCHEMA`]; documented in `docs/reports.md`).
//!
//! # Guarantees
//! - Only the catalog is read (never a store): a report is as cheap as `lifeboat status`.
//! - The posture's verdicts are those of [`crate::ops::status`]; the calendar is
//!   [`crate::policy::calendar`] over the activities found: verifications and failovers
//!   (each recorded term) and drills (a finished drill of tier `region` or `disaster` with
//!   verdict `pass` or `at-risk` is a passed region drill). The newest drill of each
//!   scenario is listed with its measured RTO/RPO.
//! - Text from the catalog (error messages, check details) is already scrubbed of the
//!   config's secrets by the catalog; the renderers escape it.
//!
//! # Caveats
//! A verification made before a snapshot was pruned keeps its row, but its evidence (the
//! snapshot's manifest) is gone: the report says so instead of failing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{CatalogError, Status, VerificationRow, VerificationStatus};
use crate::kinds::checks::Check;
use crate::ops::Ctx;
use crate::ops::status::{SourceStatus, StatusError};
use crate::policy::calendar::{self, Activity, ActivityKind, RequirementState, Standing};
use crate::policy::objectives::{Verdict, human};

pub const POSTURE_SCHEMA: &str = "lifeboat.report.posture/v1";
pub const VERIFICATION_SCHEMA: &str = "lifeboat.report.verification/v1";
/// Points in each source's RPO exposure trend.
pub const TREND_BUCKETS: usize = 30;
/// How many verifications per source a posture report reads at most.
const MAX_VERIFICATIONS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "no verification `{0}` in the catalog; list them with `lifeboat verifications list` (after a disaster, run `lifeboat catalog rebuild` first)"
    )]
    NoVerification(String),
    #[error("the report period must be more than 0s (e.g. --since 30d)")]
    EmptyPeriod,
    #[error(
        "no failover `{0}` in the catalog; give its term as `lifeboat failover history` lists it"
    )]
    NoFailover(String),
}

impl ReportError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            ReportError::Status(StatusError::Catalog(e)) | ReportError::Catalog(e) => e.kind(),
            ReportError::Status(StatusError::BadTime { .. }) => ErrorKind::Corrupt,
            ReportError::NoVerification(_)
            | ReportError::NoFailover(_)
            | ReportError::EmptyPeriod => ErrorKind::Config,
        }
    }
}

/// Who made the report.
#[derive(Debug, Clone, Serialize)]
pub struct Origin {
    pub host: String,
    pub lifeboat_version: String,
}

pub fn origin() -> Origin {
    Origin {
        host: crate::model::host::hostname(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub seconds: f64,
}

/// `lifeboat report posture`: every source against its objectives over a period.
#[derive(Debug, Clone, Serialize)]
pub struct Posture {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub generated_by: Origin,
    pub period: Period,
    /// The worst verdict of any source.
    pub verdict: Verdict,
    pub sources: Vec<SourcePosture>,
    /// The required tests: what was done and what is overdue.
    pub calendar: Vec<Standing>,
    /// What is wrong now, worst first.
    pub findings: Vec<Finding>,
    /// The kinds of test this lifeboat records; the others count as never done.
    pub recorded_activity_kinds: Vec<ActivityKind>,
    /// The newest finished drill of each scenario, by scenario name.
    #[serde(default)]
    pub drills: Vec<DrillSummary>,
}

/// One drill, as the posture shows it (the full story is `lifeboat report drill ID`).
#[derive(Debug, Clone, Serialize)]
pub struct DrillSummary {
    pub id: String,
    pub scenario: String,
    pub tier: String,
    pub finished_at: DateTime<Utc>,
    pub verdict: String,
    /// The worst measured RTO / RPO over the drill's services (`None`: not measured).
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
}

/// A drill counts as a region drill when its tier is `region` or `disaster`.
fn is_region_drill(tier: &str) -> bool {
    matches!(tier, "region" | "disaster")
}

#[derive(Debug, Clone, Serialize)]
pub struct SourcePosture {
    /// Now, as `lifeboat status` says.
    pub status: SourceStatus,
    /// The newest verification of any outcome.
    pub last_verification: Option<VerificationSummary>,
    pub rpo_trend: Trend,
    /// Verifications finished in the period, oldest first: the restore times measured.
    pub restores: Vec<VerificationSummary>,
    pub backups_complete: usize,
    pub backups_failed: usize,
}

/// The worst RPO exposure of each of [`TREND_BUCKETS`] equal parts of the period
/// (`null` while no snapshot existed).
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub bucket_seconds: f64,
    pub values: Vec<Option<f64>>,
    pub worst_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerificationSummary {
    pub id: String,
    pub snapshot_id: String,
    pub status: VerificationStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub restore_seconds: Option<f64>,
    pub error: Option<String>,
}

impl From<&VerificationRow> for VerificationSummary {
    fn from(v: &VerificationRow) -> Self {
        VerificationSummary {
            id: v.id.clone(),
            snapshot_id: v.snapshot_id.clone(),
            status: v.status,
            started_at: v.started_at.clone(),
            finished_at: v.finished_at.clone(),
            restore_seconds: v.restore_ms.map(|ms| ms.max(0) as f64 / 1000.0),
            error: v.error.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The source it is about; `None`: the whole deployment.
    pub source: Option<String>,
    pub title: String,
    pub detail: String,
}

fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Gathers the posture over the `period` before now.
pub async fn posture(app: &Ctx, period: Duration) -> Result<Posture, ReportError> {
    if period.is_zero() {
        return Err(ReportError::EmptyPeriod);
    }
    let now = app.now();
    let since =
        now - chrono::Duration::from_std(period).unwrap_or_else(|_| chrono::Duration::days(36_500));
    let status = crate::ops::status::gather(app, now).await?;
    let mut sources = Vec::new();
    let mut activities = Vec::new();
    let mut findings = Vec::new();
    for s in status.sources {
        let snaps = app.catalog.snapshots(Some(&s.source)).await?;
        let created: Vec<(Status, DateTime<Utc>)> = snaps
            .iter()
            .filter_map(|r| parse(&r.created_at).map(|t| (r.status, t)))
            .collect();
        let complete: Vec<DateTime<Utc>> = created
            .iter()
            .filter(|(st, t)| *st == Status::Complete && *t <= now)
            .map(|(_, t)| *t)
            .collect();
        let in_period = |t: &DateTime<Utc>| *t >= since && *t <= now;
        let backups_complete = complete.iter().filter(|t| in_period(t)).count();
        let backups_failed = created
            .iter()
            .filter(|(st, t)| *st == Status::Failed && in_period(t))
            .count();
        let values = calendar::exposure_trend(&complete, since, now, TREND_BUCKETS);
        let worst = values.iter().flatten().copied().reduce(f64::max);
        let verifications = app
            .catalog
            .verifications(Some(&s.source), MAX_VERIFICATIONS)
            .await?;
        let mut restores = Vec::new();
        for v in &verifications {
            let Some(finished) = v.finished_at.as_deref().and_then(parse) else {
                continue;
            };
            activities.push(Activity {
                kind: ActivityKind::RestoreVerification,
                scope: s.source.clone(),
                id: v.id.clone(),
                at: finished,
                passed: v.status == VerificationStatus::Passed,
            });
            if in_period(&finished) {
                restores.push(VerificationSummary::from(v));
            }
        }
        let last_verification = verifications.last().map(VerificationSummary::from);

        if s.verdict != Verdict::Ok {
            findings.push(Finding {
                severity: if s.verdict == Verdict::Breached {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                source: Some(s.source.clone()),
                title: format!("{} is {}", s.source, s.verdict),
                detail: s.reasons.join("; "),
            });
        }
        if let (Some(w), Some(obj)) = (worst, s.rpo_objective_seconds)
            && w > obj
        {
            findings.push(Finding {
                severity: Severity::Warning,
                source: Some(s.source.clone()),
                title: format!("{}: RPO objective exceeded during the period", s.source),
                detail: format!(
                    "the RPO exposure peaked at {} against an objective of {}",
                    human(Duration::from_secs_f64(w)),
                    human(Duration::from_secs_f64(obj))
                ),
            });
        }
        if let Some(v) = &last_verification
            && v.status == VerificationStatus::Failed
        {
            findings.push(Finding {
                severity: Severity::Critical,
                source: Some(s.source.clone()),
                title: format!("{}: the last verification failed", s.source),
                detail: format!(
                    "verification {} of snapshot {}: {}",
                    v.id,
                    v.snapshot_id,
                    v.error.as_deref().unwrap_or("no error recorded")
                ),
            });
        }
        if backups_failed > 0 {
            findings.push(Finding {
                severity: Severity::Warning,
                source: Some(s.source.clone()),
                title: format!("{}: {backups_failed} backup(s) failed", s.source),
                detail: "see `lifeboat snapshots list` for each error".into(),
            });
        }
        sources.push(SourcePosture {
            status: s,
            last_verification,
            rpo_trend: Trend {
                bucket_seconds: period.as_secs_f64() / TREND_BUCKETS as f64,
                values,
                worst_seconds: worst,
            },
            restores,
            backups_complete,
            backups_failed,
        });
    }
    // Failovers (every term the catalog recorded): a finished one passed, a failed one did
    // not; one still running is not a test yet.
    for f in app.catalog.failovers(MAX_VERIFICATIONS).await? {
        let Some(at) = f.finished_at.as_deref().and_then(parse) else {
            continue;
        };
        activities.push(Activity {
            kind: ActivityKind::Failover,
            scope: format!("{} → {}", f.from_site, f.to_site),
            id: format!("failover-term-{}", f.term),
            at,
            passed: f.status == "done",
        });
    }
    // Drills: the newest of each scenario is shown; region/disaster ones are calendar
    // activities (passed when the verdict is pass or at-risk).
    let mut drills: BTreeMap<String, DrillSummary> = BTreeMap::new();
    for j in app.catalog.drill_journals(since).await? {
        let Some(at) = j.finished_at else { continue };
        if j.dry_run || j.verdict == "running" {
            continue;
        }
        if is_region_drill(&j.tier) {
            activities.push(Activity {
                kind: ActivityKind::RegionDrill,
                scope: j.scenario.clone(),
                id: j.id.clone(),
                at,
                passed: matches!(j.verdict.as_str(), "pass" | "at-risk"),
            });
        }
        let worst = |f: fn(&crate::model::journal::ServiceMeasure) -> Option<f64>| {
            j.services.iter().filter_map(f).reduce(f64::max)
        };
        let summary = DrillSummary {
            id: j.id.clone(),
            scenario: j.scenario.clone(),
            tier: j.tier.clone(),
            finished_at: at,
            verdict: j.verdict.clone(),
            rto_seconds: worst(|m| m.rto_seconds),
            rpo_seconds: worst(|m| m.rpo_seconds),
            rto_objective_seconds: j.objectives.rto_seconds,
            rpo_objective_seconds: j.objectives.rpo_seconds,
        };
        match drills.get(&j.scenario) {
            Some(d) if d.finished_at >= at => {}
            _ => {
                drills.insert(j.scenario.clone(), summary);
            }
        }
    }
    let recorded = vec![
        ActivityKind::RestoreVerification,
        ActivityKind::Failover,
        ActivityKind::RegionDrill,
    ];
    let requirements =
        calendar::default_requirements(app.config.sources.iter().map(|s| s.name.as_str()));
    let standings: Vec<Standing> = requirements
        .iter()
        .map(|r| calendar::standing(r, &activities, since, now))
        .collect();
    for st in &standings {
        let what = st.requirement.kind.title();
        let scope = st.requirement.scope.clone();
        let whose = scope
            .as_deref()
            .map_or(String::new(), |s| format!(" of {s}"));
        let not_recorded = !recorded.contains(&st.requirement.kind);
        match st.state {
            RequirementState::Overdue | RequirementState::NeverDone => findings.push(Finding {
                severity: Severity::Warning,
                source: scope,
                title: format!(
                    "{:?} {what}{whose} is {}",
                    st.requirement.cadence,
                    st.state.as_str()
                )
                .to_lowercase(),
                detail: if not_recorded {
                    format!(
                        "this lifeboat does not record {what}s yet: none counts as done; keep the evidence elsewhere until it does"
                    )
                } else {
                    match &st.last_passed {
                        Some(a) => format!("last passed {} ({})", a.at.to_rfc3339(), a.id),
                        None => "never passed".into(),
                    }
                },
            }),
            RequirementState::Done | RequirementState::Due => {}
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(Posture {
        schema: POSTURE_SCHEMA,
        generated_at: now,
        generated_by: origin(),
        period: Period {
            since,
            until: now,
            seconds: period.as_secs_f64(),
        },
        verdict: status.verdict,
        sources,
        calendar: standings,
        findings,
        recorded_activity_kinds: recorded,
        drills: drills.into_values().collect(),
    })
}

/// The headline of a verification report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every check passed and the restore is within 80 % of the RTO.
    Pass,
    /// Passed, but the restore took more than 80 % of the RTO (or no RTO is set).
    AtRisk,
    /// Passed its checks, but the restore took longer than the RTO.
    Breached,
    /// A check or the restore failed.
    Failed,
    /// Still running, or no restore time recorded.
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::AtRisk => "at-risk",
            Outcome::Breached => "breached",
            Outcome::Failed => "failed",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// The verdict of a verification, and why. Pure.
pub fn verification_outcome(
    status: VerificationStatus,
    rto_evidence: Option<f64>,
    rto_objective: Option<f64>,
) -> (Outcome, String) {
    let h = |s: f64| human(Duration::from_secs_f64(s.max(0.0)));
    match (status, rto_evidence, rto_objective) {
        (VerificationStatus::Running, _, _) => (
            Outcome::Inconclusive,
            "the verification has not finished (or its process died: run `lifeboat catalog settle`)"
                .into(),
        ),
        (VerificationStatus::Failed, _, _) => (
            Outcome::Failed,
            "the restore or a check failed: the snapshot is not proven restorable".into(),
        ),
        (VerificationStatus::Passed, None, _) => (
            Outcome::Inconclusive,
            "every check passed, but no restore time was recorded: the RTO is unproven".into(),
        ),
        (VerificationStatus::Passed, Some(e), None) => (
            Outcome::AtRisk,
            format!(
                "every check passed; restore evidence {} but the source sets no RTO objective",
                h(e)
            ),
        ),
        (VerificationStatus::Passed, Some(e), Some(o)) => {
            let pct = if o > 0.0 { e / o * 100.0 } else { f64::INFINITY };
            let outcome = if e > o {
                Outcome::Breached
            } else if e * 5.0 > o * 4.0 {
                Outcome::AtRisk
            } else {
                Outcome::Pass
            };
            (
                outcome,
                format!(
                    "every check passed; restore evidence {} against the RTO objective {} ({pct:.0} %)",
                    h(e),
                    h(o)
                ),
            )
        }
    }
}

/// `lifeboat report verification ID`.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationReport {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub generated_by: Origin,
    pub verdict: Outcome,
    pub verdict_reason: String,
    pub id: String,
    pub source: String,
    pub kind: Option<String>,
    pub sandbox: String,
    pub status: VerificationStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub restore_seconds: Option<f64>,
    pub rto_overhead_seconds: f64,
    pub rto_evidence_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    pub checks: Vec<Check>,
    pub evidence: Evidence,
}

/// What the verification restored, and who ran it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub snapshot_id: String,
    /// `false` when the snapshot's catalog row is gone (pruned since).
    pub snapshot_in_catalog: bool,
    pub snapshot_created_at: Option<String>,
    pub sha256: Option<String>,
    pub stored_bytes: Option<i64>,
    pub raw_bytes: Option<i64>,
    pub store: Option<String>,
    pub locations: Vec<String>,
    /// The manifest's signer (`lifeboat-ed25519:…`), if it is signed.
    pub signer: Option<String>,
    pub signature_algorithm: Option<String>,
    /// The lifeboat that made the backup.
    pub backup_lifeboat_version: Option<String>,
    /// Facts recorded at backup time (tool and server versions, counts, hashes).
    pub facts: BTreeMap<String, serde_json::Value>,
    /// Where the verification ran (its run row), if recorded.
    pub ran_on_host: Option<String>,
    pub ran_as_pid: Option<i64>,
}

pub async fn verification(app: &Ctx, id: &str) -> Result<VerificationReport, ReportError> {
    let v = app
        .catalog
        .verification(id)
        .await?
        .ok_or_else(|| ReportError::NoVerification(id.to_string()))?;
    let checks: Vec<Check> =
        serde_json::from_value(v.checks.clone()).map_err(|e| CatalogError::BadChecks {
            id: v.id.clone(),
            reason: e.to_string(),
        })?;
    let snap = app.catalog.snapshot(&v.snapshot_id).await?;
    let manifest = snap.as_ref().and_then(|s| s.manifest().ok().flatten());
    let run = app.catalog.run(&v.id).await?;
    let source_cfg = app.config.source(&v.source);
    let targets = source_cfg.map(|s| app.config.targets(s));
    let objectives = targets.and_then(|t| t.objectives);
    let overhead = targets.map_or(0.0, |t| t.rto_overhead.as_secs_f64());
    let restore_seconds = v.restore_ms.map(|ms| ms.max(0) as f64 / 1000.0);
    let rto_evidence_seconds = restore_seconds.map(|r| r + overhead);
    let rto_objective_seconds = objectives.map(|o| o.rto.0.as_secs_f64());
    let (verdict, verdict_reason) =
        verification_outcome(v.status, rto_evidence_seconds, rto_objective_seconds);
    let evidence = Evidence {
        snapshot_id: v.snapshot_id.clone(),
        snapshot_in_catalog: snap.is_some(),
        snapshot_created_at: snap.as_ref().map(|s| s.created_at.clone()),
        sha256: snap.as_ref().and_then(|s| s.sha256.clone()),
        stored_bytes: snap.as_ref().and_then(|s| s.stored_bytes),
        raw_bytes: snap.as_ref().and_then(|s| s.raw_bytes),
        store: snap.as_ref().map(|s| s.store.clone()),
        locations: snap
            .as_ref()
            .map(|s| s.locations.clone())
            .unwrap_or_default(),
        signer: manifest
            .as_ref()
            .and_then(|m| m.signature.as_ref().map(|s| s.signer.clone())),
        signature_algorithm: manifest
            .as_ref()
            .and_then(|m| m.signature.as_ref().map(|s| s.algorithm.clone())),
        backup_lifeboat_version: manifest.as_ref().map(|m| m.lifeboat_version.clone()),
        facts: manifest
            .as_ref()
            .map(|m| m.facts.clone().into_iter().collect())
            .unwrap_or_default(),
        ran_on_host: run.as_ref().map(|r| r.host.clone()),
        ran_as_pid: run.as_ref().map(|r| r.pid),
    };
    Ok(VerificationReport {
        schema: VERIFICATION_SCHEMA,
        generated_at: app.now(),
        generated_by: origin(),
        verdict,
        verdict_reason,
        kind: snap
            .as_ref()
            .map(|s| s.kind.clone())
            .or_else(|| source_cfg.map(|s| s.spec.kind().to_string())),
        id: v.id,
        source: v.source,
        sandbox: v.sandbox,
        status: v.status,
        started_at: v.started_at,
        finished_at: v.finished_at,
        error: v.error,
        restore_seconds,
        rto_overhead_seconds: overhead,
        rto_evidence_seconds,
        rto_objective_seconds,
        rpo_objective_seconds: objectives.map(|o| o.rpo.0.as_secs_f64()),
        checks,
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_outcomes() {
        use VerificationStatus::*;
        let o = |s, e, obj| verification_outcome(s, e, obj).0;
        assert_eq!(o(Passed, Some(10.0), Some(100.0)), Outcome::Pass);
        assert_eq!(o(Passed, Some(80.0), Some(100.0)), Outcome::Pass);
        assert_eq!(o(Passed, Some(81.0), Some(100.0)), Outcome::AtRisk);
        assert_eq!(o(Passed, Some(100.0), Some(100.0)), Outcome::AtRisk);
        assert_eq!(o(Passed, Some(101.0), Some(100.0)), Outcome::Breached);
        assert_eq!(o(Passed, Some(1.0), None), Outcome::AtRisk);
        assert_eq!(o(Passed, None, Some(100.0)), Outcome::Inconclusive);
        assert_eq!(o(Failed, Some(1.0), Some(100.0)), Outcome::Failed);
        assert_eq!(o(Running, None, None), Outcome::Inconclusive);
        let (_, why) = verification_outcome(Passed, Some(90.0), Some(100.0));
        assert!(why.contains("1m30s") && why.contains("90 %"), "{why}");
    }
}
