//! When a scheduled drill runs: cron slots in a named time zone, allowed windows, blackout
//! dates, one drill at a time, missed slots skipped (never caught up), a schedule suspended
//! after N consecutive failed drills. Pure: the caller (the daemon) passes what the catalog
//! says and `now`, and records what it did with the slot.
//!
//! # Guarantees
//! - [`decide`] returns `Run` only for the newest cron slot at or before `now`, newer than the
//!   last slot handled, at most `grace` late, whose local date is not a blackout date and whose
//!   local time is inside an allowed window (when there are windows), while no drill runs and
//!   the schedule is not suspended.
//! - Older slots are never run: a slot more than `grace` late is `Skip(Missed)`; slots
//!   between the last one handled and the newest are not reported at all (not caught up).
//! - Time-zone rules (DST) are the system's tz database's (`/usr/share/zoneinfo`): a wall-clock
//!   slot that does not exist on a spring-forward day is not invented.
//!
//! # Caveats
//! A drill running elsewhere is only known through the catalog: `drill_running` is what it says.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

#[derive(Debug, Clone)]
pub struct DrillSchedule {
    pub scenario: String,
    pub cron: croner::Cron,
    pub tz: jiff::tz::TimeZone,
    /// Allowed local wall-clock windows `[start, end)` (an end before the start spans midnight);
    /// empty: any time.
    pub windows: Vec<(NaiveTime, NaiveTime)>,
    /// Local dates on which no drill starts.
    pub blackout: Vec<NaiveDate>,
    /// Suspended after this many consecutive failed drills (0: never).
    pub suspend_after: u32,
    /// How late a slot may still start.
    pub grace: Duration,
}

/// What the catalog says about this schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleState {
    /// The newest slot already handled (run or skipped).
    pub last_slot: Option<DateTime<Utc>>,
    /// Failed drills of this schedule since its last good one (`breached`, `failed`,
    /// `aborted`, `inconclusive`).
    pub consecutive_failures: u32,
    /// A drill (of any schedule, or by hand) is running now.
    pub drill_running: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// More than `grace` late (the daemon was down, or a drill ran too long).
    Missed,
    Blackout,
    OutsideWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do before `next`.
    Wait { next: Option<DateTime<Utc>> },
    /// Run the drill for `slot` now.
    Run { slot: DateTime<Utc> },
    /// Record `slot` as skipped.
    Skip { slot: DateTime<Utc>, why: Skip },
    /// `slot` is due but another drill runs: ask again (it becomes missed after `grace`).
    Busy { slot: DateTime<Utc> },
    /// Suspended after this many consecutive failures: a person must look (and resume it).
    Suspended { failures: u32 },
}

/// Whether a drill verdict counts as a failure for [`ScheduleState::consecutive_failures`].
pub fn is_failure(verdict: &str) -> bool {
    !matches!(verdict, "pass" | "at-risk")
}

impl DrillSchedule {
    /// Parses a schedule: `cron` (5 or 6 fields), `tz` (an IANA name, e.g. `Europe/Paris`),
    /// `windows` as `HH:MM-HH:MM`, `blackout` as `YYYY-MM-DD`.
    pub fn parse(
        scenario: &str,
        cron: &str,
        tz: &str,
        windows: &[String],
        blackout: &[String],
        suspend_after: u32,
        grace: Duration,
    ) -> Result<DrillSchedule, String> {
        let cron = crate::model::Schedule::parse(cron)?.cron;
        let tz = jiff::tz::TimeZone::get(tz).map_err(|e| {
            format!("`{tz}` is not a time zone this host knows ({e}); write an IANA name like Europe/Paris or UTC")
        })?;
        let windows = windows
            .iter()
            .map(|w| {
                let (a, b) = w
                    .split_once('-')
                    .ok_or_else(|| format!("window `{w}`: write HH:MM-HH:MM"))?;
                let t = |s: &str| {
                    NaiveTime::parse_from_str(s.trim(), "%H:%M")
                        .map_err(|e| format!("window `{w}`: `{s}` is not HH:MM ({e})"))
                };
                Ok((t(a)?, t(b)?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let blackout = blackout
            .iter()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|e| format!("blackout date `{d}` is not YYYY-MM-DD ({e})"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(DrillSchedule {
            scenario: scenario.to_string(),
            cron,
            tz,
            windows,
            blackout,
            suspend_after,
            grace,
        })
    }

    fn zoned(&self, t: DateTime<Utc>) -> Option<jiff::Zoned> {
        jiff::Timestamp::from_millisecond(t.timestamp_millis())
            .ok()
            .map(|ts| ts.to_zoned(self.tz.clone()))
    }

    /// The local date and wall-clock time of `t` in the schedule's zone.
    fn local(&self, t: DateTime<Utc>) -> Option<(NaiveDate, NaiveTime)> {
        let z = self.zoned(t)?;
        let date = NaiveDate::from_ymd_opt(
            i32::from(z.year()),
            u32::try_from(z.month()).ok()?,
            u32::try_from(z.day()).ok()?,
        )?;
        let time = NaiveTime::from_hms_opt(
            u32::try_from(z.hour()).ok()?,
            u32::try_from(z.minute()).ok()?,
            u32::try_from(z.second()).ok()?,
        )?;
        Some((date, time))
    }

    fn in_window(&self, t: NaiveTime) -> bool {
        self.windows.is_empty()
            || self.windows.iter().any(|&(a, b)| {
                if a <= b {
                    a <= t && t < b
                } else {
                    t >= a || t < b
                }
            })
    }
}

fn utc(z: &jiff::Zoned) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(z.timestamp().as_millisecond())
}

/// What the daemon does about schedule `s` at `now`; see the module doc.
pub fn decide(s: &DrillSchedule, st: &ScheduleState, now: DateTime<Utc>) -> Decision {
    if s.suspend_after > 0 && st.consecutive_failures >= s.suspend_after {
        return Decision::Suspended {
            failures: st.consecutive_failures,
        };
    }
    let Some(zoned_now) = s.zoned(now) else {
        return Decision::Wait { next: None };
    };
    let next = || {
        s.cron
            .find_next_occurrence(&zoned_now, false)
            .ok()
            .and_then(|z| utc(&z))
    };
    let slot = s
        .cron
        .find_previous_occurrence(&zoned_now, true)
        .ok()
        .and_then(|z| utc(&z));
    let Some(slot) = slot.filter(|&slot| st.last_slot.is_none_or(|last| slot > last)) else {
        return Decision::Wait { next: next() };
    };
    let late = (now - slot).to_std().unwrap_or_default();
    if late > s.grace {
        return Decision::Skip {
            slot,
            why: Skip::Missed,
        };
    }
    let Some((date, time)) = s.local(slot) else {
        return Decision::Wait { next: next() };
    };
    if s.blackout.contains(&date) {
        return Decision::Skip {
            slot,
            why: Skip::Blackout,
        };
    }
    if !s.in_window(time) {
        return Decision::Skip {
            slot,
            why: Skip::OutsideWindow,
        };
    }
    if st.drill_running {
        return Decision::Busy { slot };
    }
    Decision::Run { slot }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("time")
    }

    fn sched(cron: &str, tz: &str, windows: &[&str], blackout: &[&str]) -> DrillSchedule {
        DrillSchedule::parse(
            "pod-kill",
            cron,
            tz,
            &windows.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &blackout.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            3,
            Duration::from_secs(15 * 60),
        )
        .expect("valid")
    }

    #[test]
    fn slots_are_in_the_named_time_zone() {
        // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC in summer.
        let s = sched("0 3 * * *", "Europe/Paris", &[], &[]);
        let st = ScheduleState::default();
        assert_eq!(
            decide(&s, &st, at(2026, 12, 7, 2, 5)),
            Decision::Run {
                slot: at(2026, 12, 7, 2, 0)
            }
        );
        assert_eq!(
            decide(&s, &st, at(2026, 7, 7, 1, 5)),
            Decision::Run {
                slot: at(2026, 7, 7, 1, 0)
            }
        );
    }

    #[test]
    fn a_slot_runs_once_and_missed_ones_are_not_caught_up() {
        let s = sched("0 3 * * *", "UTC", &[], &[]);
        let slot = at(2026, 12, 7, 3, 0);
        let mut st = ScheduleState::default();
        assert_eq!(
            decide(&s, &st, at(2026, 12, 7, 3, 1)),
            Decision::Run { slot }
        );
        st.last_slot = Some(slot);
        assert!(matches!(
            decide(&s, &st, at(2026, 12, 7, 3, 2)),
            Decision::Wait { next: Some(n) } if n == at(2026, 12, 8, 3, 0)
        ));
        // The daemon was down for three days: only the newest slot, and it is missed.
        assert_eq!(
            decide(&s, &st, at(2026, 12, 10, 9, 0)),
            Decision::Skip {
                slot: at(2026, 12, 10, 3, 0),
                why: Skip::Missed
            }
        );
    }

    #[test]
    fn windows_blackouts_busy_and_suspension() {
        let s = sched("0 * * * *", "UTC", &["22:00-02:00"], &["2026-12-24"]);
        let st = ScheduleState::default();
        assert!(matches!(
            decide(&s, &st, at(2026, 12, 7, 23, 0)),
            Decision::Run { .. }
        ));
        assert!(matches!(
            decide(&s, &st, at(2026, 12, 7, 12, 0)),
            Decision::Skip {
                why: Skip::OutsideWindow,
                ..
            }
        ));
        assert!(matches!(
            decide(&s, &st, at(2026, 12, 24, 23, 0)),
            Decision::Skip {
                why: Skip::Blackout,
                ..
            }
        ));
        let busy = ScheduleState {
            drill_running: true,
            ..Default::default()
        };
        assert!(matches!(
            decide(&s, &busy, at(2026, 12, 7, 23, 0)),
            Decision::Busy { .. }
        ));
        let failing = ScheduleState {
            consecutive_failures: 3,
            ..Default::default()
        };
        assert_eq!(
            decide(&s, &failing, at(2026, 12, 7, 23, 0)),
            Decision::Suspended { failures: 3 }
        );
        assert!(is_failure("aborted") && is_failure("inconclusive") && !is_failure("at-risk"));
    }

    #[test]
    fn bad_input_is_named() {
        let e = |r: Result<DrillSchedule, String>| r.expect_err("invalid");
        let p = |cron: &str, tz: &str, w: &str, b: &str| {
            DrillSchedule::parse(
                "x",
                cron,
                tz,
                &[w.to_string()],
                &[b.to_string()],
                1,
                Duration::ZERO,
            )
        };
        assert!(e(p("0 3 * *", "UTC", "01:00-02:00", "2026-01-01")).contains("fields"));
        assert!(e(p("0 3 * * *", "Mars/Olympus", "01:00-02:00", "2026-01-01")).contains("Mars"));
        assert!(e(p("0 3 * * *", "UTC", "1-2", "2026-01-01")).contains("window"));
        assert!(e(p("0 3 * * *", "UTC", "01:00-02:00", "01/01/2026")).contains("blackout"));
    }

    proptest! {
        /// Whatever the state and the time, a `Run` is for a slot at or before now, newer than
        /// the last one handled, at most `grace` late, inside the window, not on a blackout
        /// date, with no drill running and the schedule not suspended; asking again after
        /// recording it never runs it twice.
        #[test]
        fn run_only_when_every_rule_allows(
            minutes in 0i64..(60 * 24 * 60),
            last_back in proptest::option::of(0i64..(60 * 24 * 10)),
            failures in 0u32..5,
            running in any::<bool>(),
        ) {
            let s = sched("*/30 * * * *", "America/New_York", &["01:00-05:00"], &["2026-03-08"]);
            let now = at(2026, 3, 1, 0, 0) + chrono::Duration::minutes(minutes);
            let st = ScheduleState {
                last_slot: last_back.map(|b| now - chrono::Duration::minutes(b)),
                consecutive_failures: failures,
                drill_running: running,
            };
            match decide(&s, &st, now) {
                Decision::Run { slot } => {
                    prop_assert!(slot <= now && st.last_slot.is_none_or(|l| slot > l));
                    prop_assert!(now - slot <= chrono::Duration::minutes(15));
                    prop_assert!(!running && failures < 3);
                    let (date, time) = s.local(slot).expect("local");
                    prop_assert!(date != NaiveDate::from_ymd_opt(2026, 3, 8).expect("date"));
                    prop_assert!(s.in_window(time));
                    let again = ScheduleState { last_slot: Some(slot), ..st.clone() };
                    let twice = matches!(decide(&s, &again, now), Decision::Run { .. });
                    prop_assert!(!twice, "ran slot {} twice", slot);
                }
                Decision::Suspended { .. } => prop_assert!(failures >= 3),
                Decision::Skip { slot, .. } | Decision::Busy { slot } => {
                    prop_assert!(slot <= now && st.last_slot.is_none_or(|l| slot > l));
                }
                Decision::Wait { next } => {
                    prop_assert!(next.is_none_or(|n| n > now));
                }
            }
        }
    }
}
