//! Recovery objectives: is each source within its RPO and RTO? Pure: no I/O, no clock; the
//! caller ([`crate::ops::status`]) gathers the facts from the catalog, passes `now`, and reports.
//!
//! # Measures
//! - **RPO exposure**: `now` − creation time of the newest *complete* snapshot: the data a
//!   disaster right now would lose. The **verified RPO exposure** is the same for the newest
//!   snapshot a verification (test restore) proved good: what is lost if only proven
//!   snapshots are trusted. It is reported, not judged.
//! - **RTO evidence**: the restore duration measured by the newest passed verification, plus
//!   `rto_overhead` (provisioning, switching traffic: what a test restore does not measure).
//! - The verification judged is the catalog's newest *passed* one of the newest verified
//!   snapshot ([`crate::catalog::Catalog::newest_passed_verification`]): re-verifying an
//!   older snapshot does not refresh it, because it proves less about what a restore today
//!   would bring back. Failed verifications are not judged (yet); they only stop counting
//!   as evidence, so the verification age grows until `verify_max_age` flags it.
//!
//! # Verdicts (all comparisons strict: exactly 80 % is still ok, exactly 100 % is at-risk)
//! - `breached`: no complete snapshot at all; or RPO exposure > RPO; or RTO evidence > RTO.
//! - `at-risk`: RPO exposure > 80 % of RPO; or RTO evidence > 80 % of RTO; or the newest
//!   passed verification finished more than `verify_max_age` ago, or there is none (never
//!   verified); or it measured no restore time (the RTO is unproven).
//! - `ok`: none of the above. A source with no objectives (its own or `defaults:`) is `ok`
//!   with the reason "no objectives set": nothing is promised, so nothing is judged.
//!
//! The verdict is the worst of every rule that fires; `reasons` lists each of them (or, when
//! all is well, the measures that were checked), so the verdict always says why.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::Objectives;

/// Used when neither the source nor `defaults:` sets `verify_max_age`.
pub const DEFAULT_VERIFY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Used when neither the source nor `defaults:` sets `rto_overhead`: the measured restore
/// time alone is the RTO evidence.
pub const DEFAULT_RTO_OVERHEAD: Duration = Duration::ZERO;

/// Worst last, so `max` of several verdicts is the overall one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ok,
    AtRisk,
    Breached,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::AtRisk => "at-risk",
            Verdict::Breached => "breached",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a source promises, with the defaults already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub objectives: Option<Objectives>,
    pub rto_overhead: Duration,
    pub verify_max_age: Duration,
}

/// The newest passed verification of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Creation time of the snapshot it restored.
    pub snapshot_created_at: DateTime<Utc>,
    /// When the verification finished.
    pub finished_at: DateTime<Utc>,
    /// The measured restore duration, if it recorded one.
    pub restore: Option<Duration>,
}

/// What the catalog knows of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// Creation time of the newest complete snapshot.
    pub newest_complete: Option<DateTime<Utc>>,
    pub verified: Option<Verified>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub rpo_exposure: Option<Duration>,
    pub verified_rpo_exposure: Option<Duration>,
    /// Measured restore time + `rto_overhead`.
    pub rto_evidence: Option<Duration>,
    pub reasons: Vec<String>,
}

/// `now - t`, zero when `t` is in the future (clock skew between hosts).
fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or(Duration::ZERO)
}

/// `value > 80 % of limit`, exactly (in milliseconds, no floating point).
fn over_80_percent(value: Duration, limit: Duration) -> bool {
    value.as_millis() * 5 > limit.as_millis() * 4
}

pub fn evaluate(targets: &Targets, facts: &Facts, now: DateTime<Utc>) -> Evaluation {
    let rpo_exposure = facts.newest_complete.map(|t| age(now, t));
    let verified_rpo_exposure = facts.verified.map(|v| age(now, v.snapshot_created_at));
    let rto_evidence = facts
        .verified
        .and_then(|v| v.restore)
        .map(|r| r + targets.rto_overhead);
    let mut verdict = Verdict::Ok;
    let mut reasons = Vec::new();
    let mut flag = |v: Verdict, reason: String| {
        verdict = verdict.max(v);
        reasons.push(reason);
    };

    let Some(obj) = targets.objectives else {
        flag(
            Verdict::Ok,
            "no objectives set (add `objectives: { rpo, rto }` to the source or to `defaults:`)"
                .into(),
        );
        return Evaluation {
            verdict,
            rpo_exposure,
            verified_rpo_exposure,
            rto_evidence,
            reasons,
        };
    };
    let (rpo, rto) = (obj.rpo.0, obj.rto.0);

    match rpo_exposure {
        None => flag(
            Verdict::Breached,
            format!("no complete snapshot, RPO is {}", human(rpo)),
        ),
        Some(e) => {
            let v = if e > rpo {
                Verdict::Breached
            } else if over_80_percent(e, rpo) {
                Verdict::AtRisk
            } else {
                Verdict::Ok
            };
            flag(
                v,
                format!(
                    "last complete snapshot {} ago, RPO is {}",
                    human(e),
                    human(rpo)
                ),
            );
        }
    }

    match facts.verified {
        None => flag(
            Verdict::AtRisk,
            "never verified: no passed test restore, so the RTO is unproven".into(),
        ),
        Some(v) => {
            let since = age(now, v.finished_at);
            if since > targets.verify_max_age {
                flag(
                    Verdict::AtRisk,
                    format!(
                        "last passed verification {} ago, older than verify_max_age {}",
                        human(since),
                        human(targets.verify_max_age)
                    ),
                );
            }
            match (v.restore, rto_evidence) {
                (Some(restore), Some(evidence)) => {
                    let verdict = if evidence > rto {
                        Verdict::Breached
                    } else if over_80_percent(evidence, rto) {
                        Verdict::AtRisk
                    } else {
                        Verdict::Ok
                    };
                    let measured = if targets.rto_overhead.is_zero() {
                        human(restore)
                    } else {
                        format!(
                            "{} + {} overhead = {}",
                            human(restore),
                            human(targets.rto_overhead),
                            human(evidence)
                        )
                    };
                    flag(
                        verdict,
                        format!("last measured restore {measured}, RTO is {}", human(rto)),
                    );
                }
                _ => flag(
                    Verdict::AtRisk,
                    "the newest passed verification recorded no restore time, so the RTO is unproven"
                        .into(),
                ),
            }
        }
    }

    Evaluation {
        verdict,
        rpo_exposure,
        verified_rpo_exposure,
        rto_evidence,
        reasons,
    }
}

/// A duration for people: its two largest units, e.g. `7h12m`, `3d4h`, `45s`, `850ms`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = s;
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !parts.is_empty() {
            parts.push((n, name));
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n}{name}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::Span;

    const H: u64 = 3600;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn ago(d: Duration) -> DateTime<Utc> {
        now() - chrono::Duration::from_std(d).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// RPO 6h, RTO 30m, 5m overhead, verify within 7d.
    fn targets() -> Targets {
        Targets {
            objectives: Some(Objectives {
                rpo: Span(secs(6 * H)),
                rto: Span(secs(30 * 60)),
            }),
            rto_overhead: secs(5 * 60),
            verify_max_age: DEFAULT_VERIFY_MAX_AGE,
        }
    }

    /// Snapshot `snap` ago; verified 1h ago, restore taking `restore`.
    fn facts(snap: Duration, restore: Duration) -> Facts {
        Facts {
            newest_complete: Some(ago(snap)),
            verified: Some(Verified {
                snapshot_created_at: ago(secs(2 * H)),
                finished_at: ago(secs(H)),
                restore: Some(restore),
            }),
        }
    }

    fn eval(f: &Facts) -> Evaluation {
        evaluate(&targets(), f, now())
    }

    #[test]
    fn all_well_is_ok_and_says_what_was_checked() {
        let e = eval(&facts(secs(H), secs(10 * 60)));
        assert_eq!(e.verdict, Verdict::Ok, "{:?}", e.reasons);
        assert_eq!(e.rpo_exposure, Some(secs(H)));
        assert_eq!(e.verified_rpo_exposure, Some(secs(2 * H)));
        assert_eq!(e.rto_evidence, Some(secs(15 * 60)));
        assert_eq!(
            e.reasons,
            [
                "last complete snapshot 1h ago, RPO is 6h",
                "last measured restore 10m + 5m overhead = 15m, RTO is 30m",
            ]
        );
    }

    #[test]
    fn rpo_boundaries() {
        let restore = secs(60);
        // 80 % of 6h is 4h48m: exactly that is ok, a millisecond more is at risk.
        let at_80 = secs(4 * H + 48 * 60);
        assert_eq!(eval(&facts(at_80, restore)).verdict, Verdict::Ok);
        let over_80 = at_80 + Duration::from_millis(1);
        assert_eq!(eval(&facts(over_80, restore)).verdict, Verdict::AtRisk);
        // Exactly the RPO is at risk, not breached; beyond it is breached.
        assert_eq!(eval(&facts(secs(6 * H), restore)).verdict, Verdict::AtRisk);
        let e = eval(&facts(secs(7 * H + 12 * 60), restore));
        assert_eq!(e.verdict, Verdict::Breached);
        assert!(
            e.reasons
                .contains(&"last complete snapshot 7h12m ago, RPO is 6h".to_string()),
            "{:?}",
            e.reasons
        );
    }

    #[test]
    fn rto_boundaries_include_the_overhead() {
        let snap = secs(H);
        // RTO 30m, overhead 5m: 80 % is 24m, i.e. a 19m restore.
        assert_eq!(eval(&facts(snap, secs(19 * 60))).verdict, Verdict::Ok);
        let e = eval(&facts(snap, secs(19 * 60 + 1)));
        assert_eq!(e.verdict, Verdict::AtRisk);
        assert_eq!(e.rto_evidence, Some(secs(24 * 60 + 1)));
        // Exactly the RTO: at risk; beyond: breached.
        assert_eq!(eval(&facts(snap, secs(25 * 60))).verdict, Verdict::AtRisk);
        let e = eval(&facts(snap, secs(26 * 60)));
        assert_eq!(e.verdict, Verdict::Breached);
        assert!(
            e.reasons
                .contains(&"last measured restore 26m + 5m overhead = 31m, RTO is 30m".to_string()),
            "{:?}",
            e.reasons
        );
    }

    #[test]
    fn no_snapshot_at_all_is_breached() {
        let e = eval(&Facts::default());
        assert_eq!(e.verdict, Verdict::Breached);
        assert_eq!(e.rpo_exposure, None);
        assert_eq!(e.rto_evidence, None);
        assert_eq!(
            e.reasons,
            [
                "no complete snapshot, RPO is 6h",
                "never verified: no passed test restore, so the RTO is unproven",
            ]
        );
    }

    #[test]
    fn never_verified_is_at_risk() {
        let f = Facts {
            newest_complete: Some(ago(secs(H))),
            verified: None,
        };
        let e = eval(&f);
        assert_eq!(e.verdict, Verdict::AtRisk);
        assert_eq!(e.verified_rpo_exposure, None);
        assert!(e.reasons.iter().any(|r| r.starts_with("never verified")));
    }

    #[test]
    fn verification_age_boundary() {
        let mut f = facts(secs(H), secs(60));
        let v = f.verified.as_mut().unwrap();
        v.finished_at = ago(DEFAULT_VERIFY_MAX_AGE);
        assert_eq!(eval(&f).verdict, Verdict::Ok, "exactly verify_max_age");
        f.verified.as_mut().unwrap().finished_at = ago(DEFAULT_VERIFY_MAX_AGE + secs(1));
        let e = eval(&f);
        assert_eq!(e.verdict, Verdict::AtRisk);
        assert!(
            e.reasons.contains(
                &"last passed verification 7d ago, older than verify_max_age 7d".to_string()
            ),
            "{:?}",
            e.reasons
        );
    }

    #[test]
    fn a_verification_without_restore_time_leaves_the_rto_unproven() {
        let mut f = facts(secs(H), secs(60));
        f.verified.as_mut().unwrap().restore = None;
        let e = eval(&f);
        assert_eq!(e.verdict, Verdict::AtRisk);
        assert_eq!(e.rto_evidence, None);
    }

    #[test]
    fn the_worst_rule_wins_and_every_reason_is_kept() {
        let mut f = facts(secs(5 * H), secs(H));
        f.verified.as_mut().unwrap().finished_at = ago(secs(30 * 24 * H));
        let e = eval(&f);
        assert_eq!(e.verdict, Verdict::Breached);
        assert_eq!(e.reasons.len(), 3, "{:?}", e.reasons);
    }

    #[test]
    fn no_objectives_is_ok_whatever_the_facts() {
        let t = Targets {
            objectives: None,
            ..targets()
        };
        let e = evaluate(&t, &Facts::default(), now());
        assert_eq!(e.verdict, Verdict::Ok);
        assert!(e.reasons[0].starts_with("no objectives set"));
        let e = evaluate(&t, &facts(secs(100 * H), secs(10 * H)), now());
        assert_eq!(e.verdict, Verdict::Ok);
        assert_eq!(e.rpo_exposure, Some(secs(100 * H)));
    }

    #[test]
    fn a_snapshot_from_the_future_has_no_exposure() {
        let f = Facts {
            newest_complete: Some(now() + chrono::Duration::minutes(3)),
            ..facts(secs(0), secs(60))
        };
        assert_eq!(eval(&f).rpo_exposure, Some(Duration::ZERO));
    }

    #[test]
    fn zero_overhead_is_not_mentioned() {
        let t = Targets {
            rto_overhead: Duration::ZERO,
            ..targets()
        };
        let e = evaluate(&t, &facts(secs(H), secs(10 * 60)), now());
        assert_eq!(e.reasons[1], "last measured restore 10m, RTO is 30m");
    }

    #[test]
    fn verdicts_order_and_print() {
        assert!(Verdict::Ok < Verdict::AtRisk && Verdict::AtRisk < Verdict::Breached);
        assert_eq!(
            serde_json::to_string(&Verdict::AtRisk).unwrap(),
            "\"at-risk\""
        );
    }

    proptest::proptest! {
        /// An older snapshot, a slower restore or an older verification never makes the
        /// verdict better; and a breach always says so in a reason.
        #[test]
        fn verdict_is_monotone(
            snap in 0u64..20 * H, more_snap in 0u64..20 * H,
            restore in 0u64..2 * H, more_restore in 0u64..2 * H,
            verified in 0u64..20 * 86_400, more_verified in 0u64..20 * 86_400,
        ) {
            let f = |snap: u64, restore: u64, verified: u64| {
                let mut f = facts(secs(snap), secs(restore));
                f.verified.as_mut().unwrap().finished_at = ago(secs(verified));
                eval(&f)
            };
            let a = f(snap, restore, verified);
            let b = f(snap + more_snap, restore + more_restore, verified + more_verified);
            proptest::prop_assert!(a.verdict <= b.verdict, "{:?} then {:?}", a, b);
            proptest::prop_assert!(!b.reasons.is_empty());
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(secs(45)), "45s");
        assert_eq!(human(secs(12 * 60 + 30)), "12m30s");
        assert_eq!(human(secs(6 * H)), "6h");
        assert_eq!(human(secs(7 * H + 12 * 60 + 9)), "7h12m");
        assert_eq!(human(secs(3 * 86_400 + 4 * H + 5)), "3d4h");
        assert_eq!(human(secs(86_400 + 59)), "1d");
    }
}
