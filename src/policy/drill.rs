//! Chaos drills, measured: what the canary writes of a drill prove about the actual RPO and
//! RTO, and the drill's verdict against the objectives. Pure: the drill runner (ops) records
//! the canaries and reads back which survived; these functions judge.
//!
//! # Measures
//! - A **canary** is one write of a sequence number, sent every `resolution` (100 ms) through
//!   the service's public endpoint; its outcome is acknowledged (with the time), failed, or
//!   timed out. A timeout is **indeterminate**: the write may or may not have landed, so it is
//!   never counted as lost nor as a gap.
//! - **Actual RPO** = fault time − send time of the newest acknowledged canary sent before the
//!   fault that survived (is found after recovery); zero when the newest acknowledged one
//!   survived (nothing acknowledged was lost). No surviving acknowledged canary while some
//!   were acknowledged: unbounded (`None`).
//! - **Actual RTO** = ack time of the first acknowledged canary sent at or after the fault −
//!   fault time; `None` while no write has been acknowledged since.
//! - **Integrity**: an acknowledged canary missing *inside* the surviving sequence (between its
//!   lowest and highest surviving numbers) is a gap: an integrity failure whatever the times.
//! - Both measures are only as precise as the canary **resolution**, which is reported.
//!
//! # Verdicts (the same thresholds as `lifeboat status`: strict, in milliseconds)
//! - `inconclusive`: a fault matched zero targets (the drill did nothing), or a measure the
//!   objectives need could not be taken (no RTO: the service never came back during the drill
//!   is `breached`, not inconclusive; no canary at all is inconclusive);
//! - `breached`: an integrity failure, a measure above 100 % of its objective, or no RTO;
//! - `at-risk`: a measure above 80 % of its objective;
//! - `pass`: none of the above.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How one canary write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Ack {
    Acknowledged {
        at: DateTime<Utc>,
    },
    Failed,
    /// No answer in time: indeterminate.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Canary {
    pub seq: u64,
    pub sent_at: DateTime<Utc>,
    pub ack: Ack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Measurement {
    /// `None`: no acknowledged canary sent before the fault survived (unbounded loss).
    pub rpo_ms: Option<u64>,
    /// `None`: no write acknowledged since the fault.
    pub rto_ms: Option<u64>,
    pub resolution_ms: u64,
    /// Acknowledged canaries missing inside the surviving sequence.
    pub gaps: Vec<u64>,
    /// Acknowledged canaries sent before the fault that did not survive (the data lost).
    pub lost: Vec<u64>,
    pub indeterminate: usize,
    pub acknowledged: usize,
    pub sent: usize,
}

fn ms(d: chrono::TimeDelta) -> u64 {
    d.num_milliseconds().max(0) as u64
}

/// Measures a drill from its canaries and the sequence numbers found after recovery.
pub fn measure(
    canaries: &[Canary],
    survived: &BTreeSet<u64>,
    fault_at: DateTime<Utc>,
    resolution: Duration,
) -> Measurement {
    let acked = |c: &&Canary| matches!(c.ack, Ack::Acknowledged { .. });
    let before: Vec<&Canary> = canaries
        .iter()
        .filter(acked)
        .filter(|c| c.sent_at < fault_at)
        .collect();
    let newest_acked = before.iter().map(|c| c.sent_at).max();
    let newest_survivor = before
        .iter()
        .filter(|c| survived.contains(&c.seq))
        .map(|c| c.sent_at)
        .max();
    let rpo_ms = match (newest_survivor, newest_acked) {
        // The newest acknowledged write before the fault survived: nothing acknowledged was lost.
        (Some(s), Some(a)) if s == a => Some(0),
        (Some(s), _) => Some(ms(fault_at - s)),
        // Nothing acknowledged before the fault (the drill started with the fault): no loss.
        (None, None) => Some(0),
        (None, Some(_)) => None,
    };
    let rto_ms = canaries
        .iter()
        .filter(|c| c.sent_at >= fault_at)
        .filter_map(|c| match c.ack {
            Ack::Acknowledged { at } => Some(at),
            _ => None,
        })
        .min()
        .map(|first| ms(first - fault_at));
    let gaps = match (survived.first(), survived.last()) {
        (Some(&lo), Some(&hi)) => canaries
            .iter()
            .filter(acked)
            .map(|c| c.seq)
            .filter(|s| (lo..=hi).contains(s) && !survived.contains(s))
            .collect(),
        _ => Vec::new(),
    };
    let lost = before
        .iter()
        .map(|c| c.seq)
        .filter(|s| !survived.contains(s))
        .collect();
    Measurement {
        rpo_ms,
        rto_ms,
        resolution_ms: resolution.as_millis() as u64,
        gaps,
        lost,
        indeterminate: canaries.iter().filter(|c| c.ack == Ack::Timeout).count(),
        acknowledged: canaries.iter().filter(acked).count(),
        sent: canaries.len(),
    }
}

/// Worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillVerdict {
    Pass,
    AtRisk,
    Breached,
    /// The drill proved nothing (a fault touched nothing, no canary was written).
    Inconclusive,
}

impl DrillVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillVerdict::Pass => "pass",
            DrillVerdict::AtRisk => "at-risk",
            DrillVerdict::Breached => "breached",
            DrillVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// The objectives a drill is judged against (a scenario's `expect:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expected {
    pub rpo: Option<Duration>,
    pub rto: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: DrillVerdict,
    pub reasons: Vec<String>,
}

fn over(value_ms: u64, limit: Duration, percent: u128) -> bool {
    u128::from(value_ms) * 100 > limit.as_millis() * percent
}

/// The verdict of a drill whose faults matched `targets_per_fault` targets each.
pub fn judge(
    m: &Measurement,
    expected: &Expected,
    targets_per_fault: &[(String, usize)],
) -> Judgement {
    let mut reasons = Vec::new();
    let mut verdict = DrillVerdict::Pass;
    let empty: Vec<&str> = targets_per_fault
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(f, _)| f.as_str())
        .collect();
    if !empty.is_empty() {
        reasons.push(format!(
            "fault(s) {} matched no target: the drill did nothing, so it proves nothing",
            empty.join(", ")
        ));
        return Judgement {
            verdict: DrillVerdict::Inconclusive,
            reasons,
        };
    }
    if m.sent == 0 {
        return Judgement {
            verdict: DrillVerdict::Inconclusive,
            reasons: vec!["no canary was written: nothing was measured".into()],
        };
    }
    let mut worse = |v: DrillVerdict, why: String| {
        verdict = verdict.max(v);
        reasons.push(why);
    };
    if !m.gaps.is_empty() {
        worse(
            DrillVerdict::Breached,
            format!(
                "integrity failure: acknowledged canaries {:?} are missing inside the surviving sequence",
                m.gaps
            ),
        );
    }
    let res = m.resolution_ms;
    let mut check = |name: &str, value: Option<u64>, limit: Option<Duration>, none: &str| {
        let Some(limit) = limit else { return };
        let lim = crate::policy::objectives::human(limit);
        match value {
            None => worse(
                DrillVerdict::Breached,
                format!("{name}: {none} (objective {lim})"),
            ),
            Some(v) if over(v, limit, 100) => worse(
                DrillVerdict::Breached,
                format!("{name} {v} ms ±{res} ms is over the objective {lim}"),
            ),
            Some(v) if over(v, limit, 80) => worse(
                DrillVerdict::AtRisk,
                format!("{name} {v} ms ±{res} ms is over 80 % of the objective {lim}"),
            ),
            Some(v) => worse(
                DrillVerdict::Pass,
                format!("{name} {v} ms ±{res} ms is within the objective {lim}"),
            ),
        }
    };
    check(
        "RPO",
        m.rpo_ms,
        expected.rpo,
        "no acknowledged write from before the fault survived",
    );
    check(
        "RTO",
        m.rto_ms,
        expected.rto,
        "no write was acknowledged after the fault",
    );
    if m.indeterminate > 0 {
        reasons.push(format!(
            "{} canary write(s) timed out: indeterminate, counted neither lost nor kept",
            m.indeterminate
        ));
    }
    Judgement { verdict, reasons }
}

/// What the drill runner saw at one abort check: every condition that stops a drill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AbortInputs {
    pub elapsed: Duration,
    /// `abort.max_elapsed`, else k × the expected RTO (see [`elapsed_limit`]).
    pub limit: Option<Duration>,
    /// Ctrl-C / SIGTERM.
    pub interrupted: bool,
    /// Blast-radius probes (on non-targets) that failed, with why.
    pub blast_radius_failures: Vec<String>,
    /// Prometheus alerts firing (their names).
    pub alerts_firing: Vec<String>,
    /// A failover in progress (its term).
    pub failover_running: Option<i64>,
}

/// How many times the expected RTO a drill may run (past its faults' durations) when the
/// scenario sets no `abort.max_elapsed`.
pub const RTO_FACTOR: u32 = 3;

/// The longest a drill may run: `max_elapsed` when set, else [`RTO_FACTOR`] × the expected
/// RTO plus the time the faults are held; `None`: no limit but the faults' TTLs.
pub fn elapsed_limit(
    max_elapsed: Option<Duration>,
    expected_rto: Option<Duration>,
    faults_held: Duration,
) -> Option<Duration> {
    max_elapsed.or_else(|| expected_rto.map(|r| r.saturating_mul(RTO_FACTOR) + faults_held))
}

/// Why the drill must stop now and roll back, or `None` to go on. Every reason is listed
/// (the journal keeps them all).
pub fn abort_reasons(i: &AbortInputs) -> Vec<String> {
    let mut out = Vec::new();
    if i.interrupted {
        out.push("interrupted (Ctrl-C or SIGTERM)".to_string());
    }
    if let Some(limit) = i.limit
        && i.elapsed > limit
    {
        out.push(format!(
            "the drill ran {} ms, past its limit of {}",
            i.elapsed.as_millis(),
            crate::policy::objectives::human(limit)
        ));
    }
    for f in &i.blast_radius_failures {
        out.push(format!("blast radius: {f}"));
    }
    if !i.alerts_firing.is_empty() {
        out.push(format!(
            "Prometheus alert(s) firing: {}",
            i.alerts_firing.join(", ")
        ));
    }
    if let Some(term) = i.failover_running {
        out.push(format!("failover of term {term} is in progress"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 3, 0, 0)
            .single()
            .expect("time")
    }

    fn at(ms: i64) -> DateTime<Utc> {
        t0() + chrono::TimeDelta::milliseconds(ms)
    }

    /// A canary every 100 ms from 0 to `until` ms; writes sent in [down_from, down_to) fail,
    /// the others are acknowledged 5 ms after being sent.
    fn series(until: i64, down_from: i64, down_to: i64) -> Vec<Canary> {
        (0..=until / 100)
            .map(|i| {
                let sent = i * 100;
                Canary {
                    seq: i as u64,
                    sent_at: at(sent),
                    ack: if (down_from..down_to).contains(&sent) {
                        Ack::Failed
                    } else {
                        Ack::Acknowledged { at: at(sent + 5) }
                    },
                }
            })
            .collect()
    }

    fn acked_seqs(c: &[Canary]) -> BTreeSet<u64> {
        c.iter()
            .filter(|c| matches!(c.ack, Ack::Acknowledged { .. }))
            .map(|c| c.seq)
            .collect()
    }

    const RES: Duration = Duration::from_millis(100);

    #[test]
    fn writer_stopped_for_two_seconds_measures_rto_two_seconds() {
        let c = series(5000, 1000, 3000);
        let m = measure(&c, &acked_seqs(&c), at(1000), RES);
        assert_eq!(m.rto_ms, Some(2005));
        // The newest acknowledged write before the fault (sent at 900 ms) survived.
        assert_eq!(m.rpo_ms, Some(0));
        assert!(m.gaps.is_empty() && m.lost.is_empty());
    }

    #[test]
    fn lost_tail_is_the_rpo_and_a_hole_is_an_integrity_failure() {
        let c = series(3000, 1000, 2000);
        // The last 300 ms before the fault were acknowledged but lost.
        let survived: BTreeSet<u64> = acked_seqs(&c)
            .into_iter()
            .filter(|&s| !(7..=9).contains(&s))
            .collect();
        let m = measure(&c, &survived, at(1000), RES);
        assert_eq!(m.rpo_ms, Some(400));
        assert_eq!(m.lost, vec![7, 8, 9]);
        // 7..=9 lie between the lowest (0) and highest (30) survivors: a hole.
        assert_eq!(m.gaps, vec![7, 8, 9]);
        let j = judge(
            &m,
            &Expected {
                rpo: Some(Duration::from_secs(1)),
                rto: None,
            },
            &[("kill".into(), 1)],
        );
        assert_eq!(j.verdict, DrillVerdict::Breached, "{j:?}");
    }

    #[test]
    fn timeouts_are_indeterminate_not_gaps() {
        let mut c = series(2000, 1000, 1500);
        c[12].ack = Ack::Timeout;
        let mut survived = acked_seqs(&c);
        survived.remove(&12);
        let m = measure(&c, &survived, at(1000), RES);
        assert!(m.gaps.is_empty());
        assert_eq!(m.indeterminate, 1);
    }

    #[test]
    fn verdict_thresholds_like_status() {
        let c = series(5000, 1000, 3000);
        let m = measure(&c, &acked_seqs(&c), at(1000), RES);
        let f = [("kill".to_string(), 1)];
        let judge_rto = |secs: u64| {
            judge(
                &m,
                &Expected {
                    rpo: None,
                    rto: Some(Duration::from_millis(secs)),
                },
                &f,
            )
            .verdict
        };
        assert_eq!(judge_rto(2005), DrillVerdict::AtRisk); // exactly 100 %: at-risk
        assert_eq!(judge_rto(2004), DrillVerdict::Breached);
        // 2005 is 80 % of 2506.25: 2507 ms leaves it ok, 2506 at risk.
        assert_eq!(judge_rto(2507), DrillVerdict::Pass);
        assert_eq!(judge_rto(2506), DrillVerdict::AtRisk);
    }

    #[test]
    fn a_fault_matching_nothing_is_inconclusive() {
        let c = series(1000, 2000, 2000);
        let m = measure(&c, &acked_seqs(&c), at(500), RES);
        let j = judge(
            &m,
            &Expected::default(),
            &[("kill".into(), 0), ("delay".into(), 2)],
        );
        assert_eq!(j.verdict, DrillVerdict::Inconclusive);
        assert!(j.reasons[0].contains("kill"));
    }

    #[test]
    fn never_recovered_is_breached() {
        let c = series(3000, 1000, 10_000);
        let m = measure(&c, &acked_seqs(&c), at(1000), RES);
        assert_eq!(m.rto_ms, None);
        let j = judge(
            &m,
            &Expected {
                rpo: None,
                rto: Some(Duration::from_secs(60)),
            },
            &[("kill".into(), 1)],
        );
        assert_eq!(j.verdict, DrillVerdict::Breached);
    }

    #[test]
    fn every_abort_condition_is_named() {
        assert!(abort_reasons(&AbortInputs::default()).is_empty());
        let within = AbortInputs {
            elapsed: Duration::from_secs(10),
            limit: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        assert!(abort_reasons(&within).is_empty());
        let all = AbortInputs {
            elapsed: Duration::from_secs(11),
            limit: Some(Duration::from_secs(10)),
            interrupted: true,
            blast_radius_failures: vec!["probe api: refused".into()],
            alerts_firing: vec!["PostgresDown".into()],
            failover_running: Some(7),
        };
        let r = abort_reasons(&all).join("; ");
        for part in [
            "interrupted",
            "past its limit",
            "probe api",
            "PostgresDown",
            "term 7",
        ] {
            assert!(r.contains(part), "{r}");
        }
        assert_eq!(
            elapsed_limit(None, Some(Duration::from_secs(30)), Duration::from_secs(5)),
            Some(Duration::from_secs(95))
        );
        assert_eq!(
            elapsed_limit(
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(30)),
                Duration::ZERO
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(elapsed_limit(None, None, Duration::from_secs(5)), None);
    }

    proptest! {
        /// Past the limit always aborts; within it, nothing else set, never.
        #[test]
        fn elapsed_limit_aborts_exactly_past_it(elapsed in 0u64..100_000, limit in 0u64..100_000) {
            let i = AbortInputs {
                elapsed: Duration::from_millis(elapsed),
                limit: Some(Duration::from_millis(limit)),
                ..Default::default()
            };
            prop_assert_eq!(abort_reasons(&i).is_empty(), elapsed <= limit);
        }

        /// For any outage window, the measured RTO is within one canary interval (plus the ack
        /// latency) of what was injected, and nothing acknowledged is reported lost.
        #[test]
        fn rto_within_resolution(down_from in 100i64..3000, len in 0i64..3000) {
            let c = series(7000, down_from, down_from + len);
            let m = measure(&c, &acked_seqs(&c), at(down_from), RES);
            let rto = m.rto_ms.expect("recovered") as i64;
            prop_assert!(rto >= len && rto <= len + 100 + 5, "rto {rto} for {len}");
            prop_assert!(m.gaps.is_empty());
            prop_assert_eq!(m.rpo_ms, Some(0));
        }

        /// The verdict never improves when a measure grows.
        #[test]
        fn verdict_is_monotonic(a in 0u64..10_000, b in 0u64..10_000, limit in 1u64..10_000) {
            let mk = |v: u64| Measurement { rpo_ms: None, rto_ms: Some(v), resolution_ms: 100, gaps: vec![], lost: vec![], indeterminate: 0, acknowledged: 1, sent: 1 };
            let e = Expected { rpo: None, rto: Some(Duration::from_millis(limit)) };
            let f = [("f".to_string(), 1)];
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(judge(&mk(lo), &e, &f).verdict <= judge(&mk(hi), &e, &f).verdict);
        }
    }
}
