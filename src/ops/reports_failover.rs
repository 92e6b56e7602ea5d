//! The content of `lifeboat report failover TERM`: one failover from the catalog's history
//! (its row, its steps, the plan it recorded) as data, judged against the services' RTO and
//! RPO objectives. [`crate::report::failover`] renders it; its JSON is this data serialized
//! under [`FAILOVER_SCHEMA`] (documented in `docs/reports.md`).
//!
//! # Guarantees
//! - Only the catalog and the config are read; nothing is probed or changed.
//! - The verdict is [`failover_outcome`], a pure function of the measures and objectives:
//!   `failed` (the failover failed), `inconclusive` (still running, or not measurable),
//!   `breached` (a measured RTO or the data lost above its objective, or data lost unknown),
//!   `at-risk` (above 80 % of an objective, or a service without objectives), else `pass`.
//! - The measured RTO is the write outage as the catalog timed it: from the start of the
//!   fence step to the end of the last step (verify); every moved service shares it, since
//!   they move together.
//!
//! # Caveats
//! - Objectives are today's config, not those in force at the time of the failover.
//! - `detect` is only timed for automatic failovers (none are recorded yet): a planned or
//!   manual one is detected by the operator, and the report says so.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::FailoverRow;
use crate::ops::Ctx;
use crate::ops::reports::{Finding, Origin, Outcome, ReportError, Severity};
use crate::policy::objectives::human;

pub const FAILOVER_SCHEMA: &str = "lifeboat.report.failover/v1";

/// The phases of a failover timeline, in order (the steps of `ops::failover` after detect
/// and decide).
pub const PHASES: [&str; 7] = [
    "detect", "decide", "fence", "promote", "repoint", "dns", "verify",
];

#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub generated_by: Origin,
    pub verdict: Outcome,
    pub verdict_reason: String,
    /// The objective the verdict is against (e.g. `RTO 5m of orders-db`), if any.
    pub verdict_objective: Option<String>,
    pub term: i64,
    pub from_site: String,
    pub to_site: String,
    /// planned | manual | automatic
    pub mode: String,
    /// running | done | failed
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// Who ran `failover execute` (`user@host`), when it was recorded.
    pub run_by: Option<String>,
    /// The write outage measured (fence start → last step end).
    pub measured_rto_seconds: Option<f64>,
    pub services: Vec<ServiceResult>,
    pub timeline: Vec<Phase>,
    /// DNS names switched: the old site's values and the new site's.
    pub dns: Vec<DnsChange>,
    pub findings: Vec<Finding>,
    pub evidence: FailoverEvidence,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceResult {
    pub service: String,
    pub kind: Option<String>,
    /// The backup source whose objectives apply.
    pub source: Option<String>,
    pub rto_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    /// Data lost: 0 when the old primary was fenced and the new one caught up; otherwise the
    /// replica lag at decision time (`None`: unknown).
    pub rpo_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    /// Bytes the new primary was behind at decision time.
    pub lag_bytes: Option<u64>,
    pub zero_loss: bool,
    pub verdict: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: String,
    /// done | started | skipped | not-recorded
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsChange {
    pub name: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverEvidence {
    /// The catalog's term (each term moves the primary once).
    pub term: i64,
    /// Milliseconds per phase as `failover execute` measured them.
    pub timeline_ms: Option<serde_json::Value>,
    /// What every site's services answered when the failover was decided.
    pub probes: Vec<ProbeSeen>,
    pub blocked_and_overridden: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSeen {
    pub site: String,
    pub service: String,
    pub kind: String,
    pub role: Option<String>,
    pub fenced: Option<bool>,
    pub error: Option<String>,
}

fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds().max(0) as f64 / 1000.0
}

/// One service's verdict from its measures and objectives. Pure.
pub fn service_outcome(
    rto: Option<f64>,
    rto_objective: Option<f64>,
    rpo: Option<f64>,
    rpo_objective: Option<f64>,
) -> Outcome {
    let ratio = |v: f64, o: f64| if o > 0.0 { v / o } else { f64::INFINITY };
    let Some(rto) = rto else {
        return Outcome::Inconclusive;
    };
    let mut worst = Outcome::Pass;
    let mut bump = |o: Outcome| {
        if rank(o) > rank(worst) {
            worst = o;
        }
    };
    for (v, o) in [(Some(rto), rto_objective), (rpo, rpo_objective)] {
        match (v, o) {
            (_, None) => bump(Outcome::AtRisk),
            (None, Some(_)) => bump(Outcome::Breached),
            (Some(v), Some(o)) if ratio(v, o) > 1.0 => bump(Outcome::Breached),
            (Some(v), Some(o)) if ratio(v, o) > 0.8 => bump(Outcome::AtRisk),
            _ => {}
        }
    }
    worst
}

fn rank(o: Outcome) -> u8 {
    match o {
        Outcome::Pass => 0,
        Outcome::AtRisk => 1,
        Outcome::Inconclusive => 2,
        Outcome::Breached => 3,
        Outcome::Failed => 4,
    }
}

/// The failover's verdict: its status, then the worst service. Pure.
pub fn failover_outcome(status: &str, services: &[ServiceResult]) -> (Outcome, String) {
    match status {
        "failed" => {
            return (
                Outcome::Failed,
                "the failover failed: see the error and the steps not done".into(),
            );
        }
        "running" => {
            return (
                Outcome::Inconclusive,
                "the failover has not finished (run `lifeboat failover execute` again to resume it)"
                    .into(),
            );
        }
        _ => {}
    }
    if services.is_empty() {
        return (
            Outcome::Inconclusive,
            "no replicated service was recorded in the plan: nothing measured".into(),
        );
    }
    let worst = services
        .iter()
        .map(|s| s.verdict)
        .max_by_key(|o| rank(*o))
        .unwrap_or(Outcome::Inconclusive);
    // Tenths of a second under a minute: a 4.6s failover is not "4s".
    let h = |s: Option<f64>| match s {
        None => "unknown".to_string(),
        Some(s) if (1.0..60.0).contains(&s) => {
            format!("{}s", format!("{s:.1}").trim_end_matches(".0"))
        }
        Some(s) => human(dur(s)),
    };
    let why = services
        .iter()
        .map(|s| {
            format!(
                "{}: RTO {} / {}, data lost {} / {}",
                s.service,
                h(s.rto_seconds),
                h(s.rto_objective_seconds),
                h(s.rpo_seconds),
                h(s.rpo_objective_seconds)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    (worst, why)
}

fn dur(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Builds the report of one recorded failover. Pure apart from reading `config`.
pub fn build(
    config: &crate::config::Config,
    f: &FailoverRow,
    now: DateTime<Utc>,
) -> FailoverReport {
    let plan = f.plan.clone().unwrap_or(serde_json::Value::Null);
    let timeline_ms = f.timeline.clone();
    let ms = |k: &str| -> Option<f64> {
        timeline_ms
            .as_ref()
            .and_then(|t| t.get(k))
            .and_then(|v| v.as_f64())
    };
    let started = parse(&f.started_at);

    // The timeline.
    let mut timeline = Vec::new();
    timeline.push(Phase {
        phase: "detect".into(),
        status: "not-recorded".into(),
        started_at: None,
        finished_at: None,
        seconds: None,
        detail: match f.mode.as_str() {
            "automatic" => "detected by the daemon (not timed in this record)".into(),
            m => format!("{m} failover: detected and requested by the operator"),
        },
    });
    let decide_secs = ms("decide").map(|m| m / 1000.0);
    timeline.push(Phase {
        phase: "decide".into(),
        status: "done".into(),
        started_at: match (started, decide_secs) {
            (Some(s), Some(d)) => Some(s - chrono::Duration::milliseconds((d * 1000.0) as i64)),
            _ => None,
        },
        finished_at: started,
        seconds: decide_secs,
        detail: format!(
            "planned {} → {} (term {}), mode {}",
            f.from_site, f.to_site, f.term, f.mode
        ),
    });
    for name in &PHASES[2..] {
        let step = f.steps.iter().find(|s| s.step == *name);
        timeline.push(match step {
            None => Phase {
                phase: name.to_string(),
                status: "not-recorded".into(),
                started_at: None,
                finished_at: None,
                seconds: None,
                detail: "not taken".into(),
            },
            Some(s) => {
                let a = parse(&s.started_at);
                let b = s.finished_at.as_deref().and_then(parse);
                let detail = s.detail.clone().unwrap_or_default();
                Phase {
                    phase: name.to_string(),
                    status: if s.done() && detail.starts_with("skipped") {
                        "skipped".into()
                    } else {
                        s.status.clone()
                    },
                    started_at: a,
                    finished_at: b,
                    seconds: match (a, b) {
                        (Some(a), Some(b)) => Some(secs(a, b)),
                        _ => None,
                    },
                    detail,
                }
            }
        });
    }

    // The write outage: fence start → the end of the last step done.
    let fence_start = timeline
        .iter()
        .find(|p| p.phase == "fence")
        .and_then(|p| p.started_at);
    let all_done = f.status == "done" && f.steps.iter().all(|s| s.done());
    let last_end = timeline.iter().filter_map(|p| p.finished_at).max();
    let measured_rto_seconds = match (all_done, fence_start, last_end) {
        (true, Some(a), Some(b)) => Some(secs(a, b)),
        _ => None,
    };

    // Services: the replicated ones of the plan's data at risk, with their objectives.
    let risks = plan
        .get("data_at_risk")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let target = config.sites.iter().find(|s| s.name == f.to_site);
    let mut services = Vec::new();
    for r in &risks {
        let name = r.get("service").and_then(|v| v.as_str()).unwrap_or("?");
        let svc = target.and_then(|t| t.services.get(name));
        let source = svc.and_then(|s| s.source.clone());
        let objectives = source
            .as_deref()
            .and_then(|s| config.source(s))
            .and_then(|s| config.targets(s).objectives);
        let zero_loss = r.get("zero_loss").and_then(|v| v.as_bool()) == Some(true);
        let lag_seconds = r.get("lag_seconds").and_then(|v| v.as_f64());
        let rpo_seconds = if zero_loss { Some(0.0) } else { lag_seconds };
        let rto_objective_seconds = objectives.map(|o| o.rto.0.as_secs_f64());
        let rpo_objective_seconds = objectives.map(|o| o.rpo.0.as_secs_f64());
        services.push(ServiceResult {
            service: name.to_string(),
            kind: svc.map(|s| s.kind.as_str().to_string()),
            source,
            rto_seconds: measured_rto_seconds,
            rto_objective_seconds,
            rpo_seconds,
            rpo_objective_seconds,
            lag_bytes: r.get("lag_bytes").and_then(|v| v.as_u64()),
            zero_loss,
            verdict: service_outcome(
                measured_rto_seconds,
                rto_objective_seconds,
                rpo_seconds,
                rpo_objective_seconds,
            ),
        });
    }
    let (verdict, verdict_reason) = failover_outcome(&f.status, &services);
    // The objective the verdict is held against: the tightest RTO among the services.
    let verdict_objective = services
        .iter()
        .filter_map(|s| s.rto_objective_seconds.map(|o| (o, &s.service)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(o, s)| format!("RTO {} of {s}", human(dur(o))));

    let dns = plan
        .get("dns")
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .map(|(name, v)| {
                    let list = |i: usize| -> Vec<String> {
                        v.get(i)
                            .and_then(|x| x.as_array())
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    DnsChange {
                        name: name.clone(),
                        from: list(0),
                        to: list(1),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let probes = plan
        .get("services")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|s| {
                    let g = |k: &str| s.get(k).and_then(|v| v.as_str()).map(str::to_string);
                    ProbeSeen {
                        site: g("site").unwrap_or_default(),
                        service: g("service").unwrap_or_default(),
                        kind: g("kind").unwrap_or_default(),
                        role: s
                            .get("probe")
                            .and_then(|p| p.get("role"))
                            .and_then(|v| v.as_str())
                            .map(str::to_string),
                        fenced: s
                            .get("probe")
                            .and_then(|p| p.get("fenced"))
                            .and_then(|v| v.as_bool()),
                        error: g("error"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let blocked: Vec<String> = plan
        .get("blocked")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    // Findings.
    let mut findings = Vec::new();
    if let Some(e) = &f.error {
        findings.push(Finding {
            severity: Severity::Critical,
            source: None,
            title: format!("failover term {} failed", f.term),
            detail: e.clone(),
        });
    }
    for s in &services {
        if !s.zero_loss {
            findings.push(Finding {
                severity: Severity::Critical,
                source: Some(s.service.clone()),
                title: format!("{}: acknowledged writes may have been lost", s.service),
                detail: format!(
                    "the old primary could not be fenced and caught up; replica lag at decision {}",
                    s.rpo_seconds
                        .map_or("unknown".into(), |l| human(dur(l)).to_string())
                ),
            });
        }
        if matches!(s.verdict, Outcome::Breached | Outcome::AtRisk)
            && let (Some(v), Some(o)) = (s.rto_seconds, s.rto_objective_seconds)
            && v * 5.0 > o * 4.0
        {
            findings.push(Finding {
                severity: if v > o {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                source: Some(s.service.clone()),
                title: format!(
                    "{}: the failover took {} against an RTO of {}",
                    s.service,
                    human(dur(v)),
                    human(dur(o))
                ),
                detail: "look at the slowest phase of the timeline".into(),
            });
        }
        if s.rto_objective_seconds.is_none() {
            findings.push(Finding {
                severity: Severity::Warning,
                source: Some(s.service.clone()),
                title: format!("{}: no objectives to judge against", s.service),
                detail: "give the site service a `source:` with `objectives: { rpo, rto }`".into(),
            });
        }
    }
    for p in &timeline {
        if p.status == "skipped" {
            findings.push(Finding {
                severity: Severity::Warning,
                source: None,
                title: format!("step {} was skipped", p.phase),
                detail: p.detail.clone(),
            });
        }
    }
    for b in &blocked {
        findings.push(Finding {
            severity: Severity::Warning,
            source: None,
            title: "a safety check was overridden".into(),
            detail: b.clone(),
        });
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));

    FailoverReport {
        schema: FAILOVER_SCHEMA,
        generated_at: now,
        generated_by: crate::ops::reports::origin(),
        verdict,
        verdict_reason,
        verdict_objective,
        term: f.term,
        from_site: f.from_site.clone(),
        to_site: f.to_site.clone(),
        mode: f.mode.clone(),
        status: f.status.clone(),
        started_at: f.started_at.clone(),
        finished_at: f.finished_at.clone(),
        error: f.error.clone(),
        run_by: plan
            .get("run_by")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        measured_rto_seconds,
        services,
        timeline,
        dns,
        findings,
        evidence: FailoverEvidence {
            term: f.term,
            timeline_ms,
            probes,
            blocked_and_overridden: blocked,
        },
    }
}

/// How many failovers a report looks back through for its term.
const MAX_FAILOVERS: i64 = 100_000;

/// `lifeboat report failover TERM`.
pub async fn failover(app: &Ctx, term: &str) -> Result<FailoverReport, ReportError> {
    let wanted: i64 = term
        .trim()
        .trim_start_matches("term-")
        .parse()
        .map_err(|_| ReportError::NoFailover(term.to_string()))?;
    let rows = app.catalog.failovers(MAX_FAILOVERS).await?;
    let row = rows
        .iter()
        .find(|f| f.term == wanted)
        .ok_or_else(|| ReportError::NoFailover(term.to_string()))?;
    Ok(build(&app.config, row, app.now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_outcomes() {
        let o = service_outcome;
        assert_eq!(
            o(Some(10.0), Some(300.0), Some(0.0), Some(60.0)),
            Outcome::Pass
        );
        assert_eq!(
            o(Some(250.0), Some(300.0), Some(0.0), Some(60.0)),
            Outcome::AtRisk
        );
        assert_eq!(
            o(Some(301.0), Some(300.0), Some(0.0), Some(60.0)),
            Outcome::Breached
        );
        assert_eq!(
            o(Some(1.0), Some(300.0), Some(61.0), Some(60.0)),
            Outcome::Breached
        );
        // Data lost unknown against an RPO: breached (not provably within).
        assert_eq!(
            o(Some(1.0), Some(300.0), None, Some(60.0)),
            Outcome::Breached
        );
        assert_eq!(o(Some(1.0), None, Some(0.0), None), Outcome::AtRisk);
        assert_eq!(
            o(None, Some(300.0), Some(0.0), Some(60.0)),
            Outcome::Inconclusive
        );
    }

    #[test]
    fn failover_outcomes() {
        let svc = |v| ServiceResult {
            service: "db".into(),
            kind: None,
            source: None,
            rto_seconds: Some(1.0),
            rto_objective_seconds: Some(60.0),
            rpo_seconds: Some(0.0),
            rpo_objective_seconds: Some(60.0),
            lag_bytes: None,
            zero_loss: true,
            verdict: v,
        };
        assert_eq!(failover_outcome("failed", &[]).0, Outcome::Failed);
        assert_eq!(failover_outcome("running", &[]).0, Outcome::Inconclusive);
        assert_eq!(failover_outcome("done", &[]).0, Outcome::Inconclusive);
        let (v, why) = failover_outcome("done", &[svc(Outcome::Pass), svc(Outcome::AtRisk)]);
        assert_eq!(v, Outcome::AtRisk);
        assert!(why.contains("db: RTO 1s / 1m"), "{why}");
        assert_eq!(
            failover_outcome("done", &[svc(Outcome::Breached), svc(Outcome::Pass)]).0,
            Outcome::Breached
        );
    }
}
