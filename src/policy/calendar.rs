//! The calendar of required recovery tests (SOC 2 A1.3, ISO 22301 §8.5, DORA art. 11–12:
//! periodic recovery testing with evidence), and the RPO exposure trend of a period. Pure:
//! the caller passes the activities it found (verifications today; failovers and region
//! drills once they are recorded) and `now`.
//!
//! # Model
//! - A [`Requirement`] is a kind of test ([`ActivityKind`]), a scope (one source, or every
//!   scenario: `None`) and a cadence ([`Cadence`]: calendar weeks starting Monday, calendar
//!   months, calendar quarters, all UTC).
//! - An [`Activity`] is one test that happened: its kind, scope, time, and whether it passed.
//!   New kinds of evidence (failovers, drills) plug in as more activities: nothing else changes.
//!
//! # Guarantees
//! - A slot (one week/month/quarter of the period) is `done` when a *passed* activity of the
//!   requirement's kind and scope falls in it; a past slot without one is `missed`; the
//!   slot holding `now` without one is `pending`.
//! - A requirement is `overdue` when neither the current slot nor the previous one holds a
//!   passed activity (the previous slot ended with the test not done: the deadline passed),
//!   `never-done` when no passed activity exists at all, else `done` or `due` (the current
//!   slot still open, the previous one done).
//!
//! # Caveats
//! Failed activities are shown (they are evidence of testing) but never satisfy a slot.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivityKind {
    /// A test restore with checks (`lifeboat verify`).
    RestoreVerification,
    /// A failover to another site (each finished term).
    Failover,
    /// A whole-region disaster drill (a drill of tier `region` or `disaster`).
    RegionDrill,
}

impl ActivityKind {
    pub fn title(self) -> &'static str {
        match self {
            ActivityKind::RestoreVerification => "restore verification",
            ActivityKind::Failover => "failover",
            ActivityKind::RegionDrill => "region drill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cadence {
    Weekly,
    Monthly,
    Quarterly,
}

impl Cadence {
    /// The start of the slot holding `t`.
    pub fn slot_start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = t.date_naive();
        let first = match self {
            Cadence::Weekly => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Cadence::Monthly => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d),
            Cadence::Quarterly => {
                NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).unwrap_or(d)
            }
        };
        Utc.from_utc_datetime(&first.and_time(chrono::NaiveTime::MIN))
    }

    /// The start of the slot after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        let months = match self {
            Cadence::Weekly => return start + Duration::days(7),
            Cadence::Monthly => 1,
            Cadence::Quarterly => 3,
        };
        start
            .checked_add_months(chrono::Months::new(months))
            .unwrap_or(start + Duration::days(31 * i64::from(months)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub kind: ActivityKind,
    /// A source name; `None`: any scope (every scenario).
    pub scope: Option<String>,
    pub cadence: Cadence,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    pub kind: ActivityKind,
    pub scope: String,
    pub id: String,
    pub at: DateTime<Utc>,
    pub passed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotState {
    Done,
    Missed,
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub state: SlotState,
    /// The passed activity that satisfied it.
    pub done_by: Option<String>,
    /// Every activity (passed or not) in it.
    pub activities: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequirementState {
    Done,
    Due,
    Overdue,
    NeverDone,
}

impl RequirementState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequirementState::Done => "done",
            RequirementState::Due => "due",
            RequirementState::Overdue => "overdue",
            RequirementState::NeverDone => "never-done",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub requirement: Requirement,
    pub state: RequirementState,
    pub last_passed: Option<Activity>,
    pub last_attempt: Option<Activity>,
    /// When the current slot ends: the test is due by then.
    pub due_by: DateTime<Utc>,
    /// Oldest first, from the slot holding `since` to the one holding `now`.
    pub slots: Vec<Slot>,
}

fn matches(r: &Requirement, a: &Activity) -> bool {
    a.kind == r.kind && r.scope.as_ref().is_none_or(|s| *s == a.scope)
}

/// Where `r` stands at `now`, with its slots over `[since, now]`.
pub fn standing(
    r: &Requirement,
    activities: &[Activity],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Standing {
    let mine: Vec<&Activity> = activities
        .iter()
        .filter(|a| matches(r, a) && a.at <= now)
        .collect();
    let newest = |passed_only: bool| {
        mine.iter()
            .filter(|a| a.passed || !passed_only)
            .max_by_key(|a| a.at)
            .map(|a| (*a).clone())
    };
    let passed_in = |start: DateTime<Utc>, end: DateTime<Utc>| {
        mine.iter()
            .filter(|a| a.passed && a.at >= start && a.at < end)
            .max_by_key(|a| a.at)
    };
    let current = r.cadence.slot_start(now);
    let due_by = r.cadence.next(current);
    let previous = r.cadence.slot_start(current - Duration::seconds(1));
    let last_passed = newest(true);
    let state = if last_passed.is_none() {
        RequirementState::NeverDone
    } else if passed_in(current, due_by).is_some() {
        RequirementState::Done
    } else if passed_in(previous, current).is_some() {
        RequirementState::Due
    } else {
        RequirementState::Overdue
    };
    let mut slots = Vec::new();
    let mut start = r.cadence.slot_start(since.min(now));
    while start <= now {
        let end = r.cadence.next(start);
        let done = passed_in(start, end);
        slots.push(Slot {
            start,
            end,
            state: match (done, end > now) {
                (Some(_), _) => SlotState::Done,
                (None, true) => SlotState::Pending,
                (None, false) => SlotState::Missed,
            },
            done_by: done.map(|a| a.id.clone()),
            activities: mine.iter().filter(|a| a.at >= start && a.at < end).count(),
        });
        start = end;
    }
    Standing {
        requirement: r.clone(),
        state,
        last_passed,
        last_attempt: newest(false),
        due_by,
        slots,
    }
}

/// The RPO exposure over `[since, until]` in `buckets` equal buckets: for each, the worst
/// exposure in it (seconds since the newest complete snapshot at or before that moment);
/// `None` while no snapshot existed yet. `snapshots` are creation times, any order.
pub fn exposure_trend(
    snapshots: &[DateTime<Utc>],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    buckets: usize,
) -> Vec<Option<f64>> {
    let mut times: Vec<DateTime<Utc>> = snapshots.to_vec();
    times.sort();
    let span = (until - since).num_milliseconds().max(1);
    let latest_at = |t: DateTime<Utc>| times.iter().rev().find(|s| **s <= t).copied();
    (0..buckets)
        .map(|i| {
            let start = since + Duration::milliseconds(span * i as i64 / buckets as i64);
            let end = since + Duration::milliseconds(span * (i as i64 + 1) / buckets as i64);
            // The exposure is a sawtooth: its peaks are just before each snapshot, and at `end`.
            let mut peaks: Vec<DateTime<Utc>> = times
                .iter()
                .filter(|s| **s > start && **s <= end)
                .map(|s| *s - Duration::milliseconds(1))
                .collect();
            peaks.push(end);
            peaks
                .into_iter()
                .filter_map(|t| {
                    latest_at(t).map(|s| (t - s).num_milliseconds().max(0) as f64 / 1000.0)
                })
                .reduce(f64::max)
        })
        .collect()
}

/// The default requirements: a weekly restore verification of every source, a monthly
/// failover and a quarterly region drill.
pub fn default_requirements<'a>(sources: impl IntoIterator<Item = &'a str>) -> Vec<Requirement> {
    let mut out: Vec<Requirement> = sources
        .into_iter()
        .map(|s| Requirement {
            kind: ActivityKind::RestoreVerification,
            scope: Some(s.to_string()),
            cadence: Cadence::Weekly,
        })
        .collect();
    out.push(Requirement {
        kind: ActivityKind::Failover,
        scope: None,
        cadence: Cadence::Monthly,
    });
    out.push(Requirement {
        kind: ActivityKind::RegionDrill,
        scope: None,
        cadence: Cadence::Quarterly,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn verify(at: &str, passed: bool) -> Activity {
        Activity {
            kind: ActivityKind::RestoreVerification,
            scope: "db".into(),
            id: format!("v-{at}"),
            at: t(at),
            passed,
        }
    }

    fn weekly() -> Requirement {
        Requirement {
            kind: ActivityKind::RestoreVerification,
            scope: Some("db".into()),
            cadence: Cadence::Weekly,
        }
    }

    #[test]
    fn slots_align_to_weeks_months_quarters() {
        // 2026-12-05 is a Saturday.
        let now = t("2026-12-05T10:00:00Z");
        assert_eq!(Cadence::Weekly.slot_start(now), t("2026-11-30T00:00:00Z"));
        assert_eq!(Cadence::Monthly.slot_start(now), t("2026-12-01T00:00:00Z"));
        assert_eq!(
            Cadence::Quarterly.slot_start(now),
            t("2026-10-01T00:00:00Z")
        );
        assert_eq!(
            Cadence::Quarterly.next(t("2026-10-01T00:00:00Z")),
            t("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn states() {
        let since = t("2026-11-05T00:00:00Z");
        let now = t("2026-12-05T10:00:00Z");
        let r = weekly();
        let s = standing(&r, &[], since, now);
        assert_eq!(s.state, RequirementState::NeverDone);
        assert!(s.slots.iter().all(|s| s.state != SlotState::Done));
        assert_eq!(s.slots.last().unwrap().state, SlotState::Pending);
        assert_eq!(s.due_by, t("2026-12-07T00:00:00Z"));

        let s = standing(&r, &[verify("2026-12-01T00:00:00Z", true)], since, now);
        assert_eq!(s.state, RequirementState::Done);
        let s = standing(&r, &[verify("2026-11-25T00:00:00Z", true)], since, now);
        assert_eq!(s.state, RequirementState::Due);
        let s = standing(
            &r,
            &[
                verify("2026-11-10T00:00:00Z", true),
                verify("2026-12-02T00:00:00Z", false),
            ],
            since,
            now,
        );
        assert_eq!(s.state, RequirementState::Overdue);
        assert_eq!(s.last_attempt.unwrap().id, "v-2026-12-02T00:00:00Z");
        assert_eq!(
            s.slots
                .iter()
                .filter(|s| s.state == SlotState::Done)
                .count(),
            1
        );
        // Another source's verification does not count.
        let mut other = verify("2026-12-01T00:00:00Z", true);
        other.scope = "cache".into();
        assert_eq!(
            standing(&r, &[other], since, now).state,
            RequirementState::NeverDone
        );
    }

    #[test]
    fn exposure_is_a_sawtooth() {
        let since = t("2026-12-01T00:00:00Z");
        let until = t("2026-12-01T04:00:00Z");
        let snaps = [t("2026-12-01T01:10:00Z"), t("2026-12-01T02:30:00Z")];
        let trend = exposure_trend(&snaps, since, until, 4);
        // Hour 0: no snapshot yet; hour 1: 50m at its end; hour 2: 1h20 just before 02:30;
        // hour 3: 1h30 at 04:00.
        assert_eq!(trend[0], None);
        assert_eq!(trend[1], Some(3000.0));
        assert!((trend[2].unwrap() - 4800.0).abs() < 0.01, "{trend:?}");
        assert_eq!(trend[3], Some(5400.0));
    }

    proptest! {
        #[test]
        fn slots_tile_the_period(
            since_h in 0i64..24 * 400,
            len_h in 0i64..24 * 200,
            cadence in prop_oneof![Just(Cadence::Weekly), Just(Cadence::Monthly), Just(Cadence::Quarterly)],
        ) {
            let since = t("2025-01-01T00:00:00Z") + Duration::hours(since_h);
            let now = since + Duration::hours(len_h);
            let r = Requirement { kind: ActivityKind::Failover, scope: None, cadence };
            let s = standing(&r, &[], since, now);
            prop_assert!(s.slots[0].start <= since);
            prop_assert!(s.slots.last().unwrap().end > now);
            for w in s.slots.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
            }
            prop_assert_eq!(s.state, RequirementState::NeverDone);
        }

        #[test]
        fn exposure_never_negative_and_bounded(
            offsets in proptest::collection::vec(0i64..86_400, 0..20),
            buckets in 1usize..50,
        ) {
            let since = t("2026-01-01T00:00:00Z");
            let until = since + Duration::days(1);
            let snaps: Vec<_> = offsets.iter().map(|o| since + Duration::seconds(*o)).collect();
            for v in exposure_trend(&snaps, since, until, buckets).into_iter().flatten() {
                prop_assert!((0.0..=86_400.0).contains(&v));
            }
        }
    }
}
