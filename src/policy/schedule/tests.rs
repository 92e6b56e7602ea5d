use super::*;
use chrono::TimeZone;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn sched(expr: &str) -> Schedule {
    Schedule::parse(expr).expect("test cron")
}

fn job(source: &str) -> Job {
    Job::new(source, JobKind::Backup)
}

fn jobs_due(p: &mut Planner, now: DateTime<Utc>) -> Vec<String> {
    let mut v: Vec<String> = p
        .pop_due(now)
        .into_iter()
        .map(|d| d.job.to_string())
        .collect();
    v.sort();
    v
}

/// Steps the planner from `from` to `to`, waking exactly when it asks; returns every fire.
fn simulate(p: &mut Planner, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, Job)> {
    let mut fired = Vec::new();
    let mut now = from;
    loop {
        for d in p.pop_due(now) {
            fired.push((now, d.job));
        }
        match p.next_wake() {
            Some(w) if w <= to => now = w,
            _ => break,
        }
    }
    fired
}

#[test]
fn never_run_job_is_due_at_start_then_follows_its_schedule() {
    let now = t("2026-11-25T10:17:00Z");
    let mut p = Planner::new(
        [(job("a"), sched("0 * * * *"))],
        Duration::ZERO,
        &BTreeMap::new(),
        now,
    );
    assert_eq!(jobs_due(&mut p, now), ["backup a"]);
    assert_eq!(p.next_wake(), Some(t("2026-11-25T11:00:00Z")));
    assert!(p.pop_due(t("2026-11-25T10:59:59Z")).is_empty());
    assert_eq!(jobs_due(&mut p, t("2026-11-25T11:00:00Z")), ["backup a"]);
}

#[test]
fn job_that_ran_its_latest_slot_is_not_due() {
    let now = t("2026-11-25T10:17:00Z");
    let last = BTreeMap::from([(job("a"), t("2026-11-25T10:00:01Z"))]);
    let mut p = Planner::new([(job("a"), sched("0 * * * *"))], Duration::ZERO, &last, now);
    assert!(p.pop_due(now).is_empty());
    assert_eq!(p.next_wake(), Some(t("2026-11-25T11:00:00Z")));
}

#[test]
fn daemon_down_for_a_week_runs_each_job_once_then_resumes() {
    let down = t("2026-11-18T10:00:00Z");
    let up = t("2026-11-25T10:30:00Z");
    let last = BTreeMap::from([
        (job("hourly"), down),
        (job("daily"), down),
        (Job::new("hourly", JobKind::Prune), down),
    ]);
    let mut p = Planner::new(
        [
            (job("hourly"), sched("0 * * * *")),
            (job("daily"), sched("0 3 * * *")),
            (Job::new("hourly", JobKind::Prune), sched("15 */6 * * *")),
        ],
        Duration::ZERO,
        &last,
        up,
    );
    // 168 hourly slots, 7 daily, 28 six-hourly were missed: one run each.
    let fired = simulate(&mut p, up, up + TimeDelta::minutes(29));
    let mut names: Vec<String> = fired.iter().map(|(_, j)| j.to_string()).collect();
    names.sort();
    assert_eq!(names, ["backup daily", "backup hourly", "prune hourly"]);
    assert!(fired.iter().all(|(at, _)| *at == up));
    // Then the normal rhythm.
    let fired = simulate(
        &mut p,
        up + TimeDelta::minutes(29),
        up + TimeDelta::hours(24),
    );
    let hourly = fired
        .iter()
        .filter(|(_, j)| j.source == "hourly" && j.kind == JobKind::Backup)
        .count();
    let daily = fired.iter().filter(|(_, j)| j.source == "daily").count();
    assert_eq!((hourly, daily), (24, 1));
}

#[test]
fn a_long_sleep_between_wakeups_coalesces_into_one_run() {
    let start = t("2026-11-25T00:00:00Z");
    let mut p = Planner::new(
        [(job("a"), sched("*/5 * * * *"))],
        Duration::ZERO,
        &BTreeMap::from([(job("a"), start)]),
        start,
    );
    assert!(p.pop_due(start).is_empty());
    // The process was suspended for 3 hours: one run, then the next slot is in the future.
    let late = t("2026-11-25T03:02:00Z");
    assert_eq!(jobs_due(&mut p, late), ["backup a"]);
    assert_eq!(p.next_wake(), Some(t("2026-11-25T03:05:00Z")));
}

#[test]
fn utc_schedules_ignore_daylight_saving_changes() {
    // Europe springs forward on 2026-03-29 at 01:00 UTC and falls back on 2026-10-25 at
    // 01:00 UTC; the US on 2026-03-08 and 2026-11-01. Schedules are UTC: every day has exactly
    // one 02:30 run, 24 hours apart, across all four changes.
    let from = t("2026-03-01T00:00:00Z");
    let to = t("2026-11-30T00:00:00Z");
    let last = BTreeMap::from([(job("a"), from)]);
    let mut p = Planner::new(
        [(job("a"), sched("30 2 * * *"))],
        Duration::ZERO,
        &last,
        from,
    );
    let fired = simulate(&mut p, from, to);
    let days = (to - from).num_days() as usize;
    assert_eq!(fired.len(), days);
    for w in fired.windows(2) {
        assert_eq!(
            w[1].0 - w[0].0,
            TimeDelta::hours(24),
            "{} -> {}",
            w[0].0,
            w[1].0
        );
    }
    assert!(
        fired
            .iter()
            .all(|(at, _)| at.format("%H:%M:%S").to_string() == "02:30:00")
    );
    // The hourly schedule has 24 runs on the days the clocks change elsewhere.
    let day = t("2026-03-29T00:00:00Z");
    let mut p = Planner::new(
        [(job("h"), sched("0 * * * *"))],
        Duration::ZERO,
        &BTreeMap::from([(job("h"), day)]),
        day,
    );
    assert_eq!(simulate(&mut p, day, day + TimeDelta::hours(24)).len(), 24);
}

#[test]
fn jitter_is_deterministic_bounded_and_spreads_jobs() {
    let jitter = Duration::from_secs(300);
    let a = jitter_offset(&job("a"), jitter);
    assert_eq!(a, jitter_offset(&job("a"), jitter));
    let offsets: BTreeSet<Duration> = (0..100)
        .map(|i| jitter_offset(&job(&format!("src-{i}")), jitter))
        .collect();
    assert!(offsets.iter().all(|o| *o < jitter));
    assert!(
        offsets.len() > 90,
        "offsets should differ: {}",
        offsets.len()
    );
    assert_ne!(
        jitter_offset(&Job::new("a", JobKind::Backup), jitter),
        jitter_offset(&Job::new("a", JobKind::Prune), jitter)
    );
    assert_eq!(jitter_offset(&job("a"), Duration::ZERO), Duration::ZERO);
}

#[test]
fn jittered_slot_fires_at_slot_plus_offset_and_a_run_at_that_time_counts() {
    let jitter = Duration::from_secs(600);
    let off = delta(jitter_offset(&job("a"), jitter));
    let slot = t("2026-11-25T11:00:00Z");
    // Ran at the jittered time of the 11:00 slot: not due again before 12:00 + offset.
    let last = BTreeMap::from([(job("a"), slot + off)]);
    let mut p = Planner::new(
        [(job("a"), sched("0 * * * *"))],
        jitter,
        &last,
        slot + off + TimeDelta::seconds(1),
    );
    assert!(p.pop_due(slot + off + TimeDelta::seconds(1)).is_empty());
    assert_eq!(p.next_wake(), Some(slot + TimeDelta::hours(1) + off));
    // Before its jittered time, the 11:00 slot is not due yet when the last run was at 10:00+off.
    let last = BTreeMap::from([(job("a"), slot - TimeDelta::hours(1) + off)]);
    let now = slot + off - TimeDelta::milliseconds(1);
    let mut p = Planner::new([(job("a"), sched("0 * * * *"))], jitter, &last, now);
    assert!(p.pop_due(now).is_empty());
    assert_eq!(p.next_wake(), Some(slot + off));
}

#[test]
fn backoff_doubles_caps_and_gives_up() {
    let b = Backoff {
        max_attempts: 4,
        base: Duration::from_secs(30),
        max: Duration::from_secs(90),
    };
    assert_eq!(b.delay(1), Some(Duration::from_secs(30)));
    assert_eq!(b.delay(2), Some(Duration::from_secs(60)));
    assert_eq!(b.delay(3), Some(Duration::from_secs(90)));
    assert_eq!(b.delay(4), None);
    let never = Backoff {
        max_attempts: 1,
        ..b
    };
    assert_eq!(never.delay(1), None);
    let huge = Backoff {
        max_attempts: u32::MAX,
        base: Duration::from_secs(1),
        max: Duration::from_secs(3600),
    };
    assert_eq!(huge.delay(200), Some(Duration::from_secs(3600)));
}

#[test]
fn failed_job_is_retried_with_backoff_then_reported_and_a_new_slot_supersedes() {
    let now = t("2026-11-25T10:00:00Z");
    let b = Backoff {
        max_attempts: 3,
        base: Duration::from_secs(60),
        max: Duration::from_secs(3600),
    };
    let mut p = Planner::new(
        [(job("a"), sched("0 * * * *"))],
        Duration::ZERO,
        &BTreeMap::new(),
        now,
    );
    let d = p.pop_due(now);
    assert_eq!(
        d,
        [Due {
            job: job("a"),
            attempt: 1
        }]
    );
    let at = p.failed(&job("a"), 1, &b, now, true).expect("retry");
    assert_eq!(at, now + TimeDelta::seconds(60));
    assert_eq!(p.next_wake(), Some(at));
    assert_eq!(
        p.pop_due(at),
        [Due {
            job: job("a"),
            attempt: 2
        }]
    );
    let at = p.failed(&job("a"), 2, &b, at, true).expect("retry");
    assert_eq!(at, now + TimeDelta::seconds(180));
    assert_eq!(
        p.pop_due(at),
        [Due {
            job: job("a"),
            attempt: 3
        }]
    );
    assert_eq!(
        p.failed(&job("a"), 3, &b, at, true),
        None,
        "attempts used up"
    );
    assert_eq!(p.next_wake(), Some(t("2026-11-25T11:00:00Z")));
    // A retry still pending when the next slot comes is replaced by the slot's attempt 1.
    let late = t("2026-11-25T10:59:30Z");
    p.failed(&job("a"), 1, &b, late, true).expect("retry");
    assert_eq!(
        p.pop_due(t("2026-11-25T11:00:00Z")),
        [Due {
            job: job("a"),
            attempt: 1
        }]
    );
    assert!(p.pop_due(t("2026-11-25T11:00:30Z")).is_empty());
}

#[test]
fn ten_thousand_schedules_fire_exactly_on_their_slots() {
    let start = t("2026-11-25T00:00:00Z");
    let exprs = [
        "*/5 * * * *",
        "0 * * * *",
        "30 */2 * * *",
        "*/15 * * * *",
        "0 0 * * *",
    ];
    // Slots in (00:00, 02:00].
    let per_window = [24usize, 2, 1, 8, 0];
    let jobs: Vec<(Job, Schedule)> = (0..10_000)
        .map(|i| {
            (
                Job::new(format!("s{i}"), JobKind::Backup),
                sched(exprs[i % exprs.len()]),
            )
        })
        .collect();
    let last: BTreeMap<Job, DateTime<Utc>> = jobs.iter().map(|(j, _)| (j.clone(), start)).collect();
    let mut p = Planner::new(jobs, Duration::ZERO, &last, start);
    assert_eq!(p.len(), 10_000);
    assert!(p.pop_due(start).is_empty());
    let end = start + TimeDelta::hours(2);
    let fired = simulate(&mut p, start + TimeDelta::seconds(1), end);
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (at, j) in &fired {
        let i: usize = j.source[1..].parse().expect("index");
        let cron = sched(exprs[i % exprs.len()]);
        assert!(
            cron.cron.is_time_matching(at).unwrap_or(false),
            "{j} fired at {at}"
        );
        *counts.entry(i % exprs.len()).or_default() += 1;
    }
    for (k, n) in per_window.iter().enumerate() {
        assert_eq!(
            counts.get(&k).copied().unwrap_or(0),
            n * 2000,
            "{}",
            exprs[k]
        );
    }
}

#[test]
fn queue_dedups_and_skips_busy_sources() {
    let mut q = Queue::default();
    q.push(Due {
        job: job("a"),
        attempt: 1,
    });
    q.push(Due {
        job: job("a"),
        attempt: 1,
    });
    q.push(Due {
        job: Job::new("a", JobKind::Prune),
        attempt: 1,
    });
    q.push(Due {
        job: job("b"),
        attempt: 1,
    });
    assert_eq!(q.len(), 3);
    let busy = HashSet::from(["a".to_string()]);
    assert_eq!(q.take_runnable(&busy).map(|d| d.job), Some(job("b")));
    assert_eq!(q.take_runnable(&busy), None);
    assert_eq!(
        q.take_runnable(&HashSet::new()).map(|d| d.job),
        Some(job("a"))
    );
    q.push(Due {
        job: job("a"),
        attempt: 1,
    });
    assert_eq!(q.len(), 2);
}

#[test]
fn seconds_schedules_work() {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 1)
        .single()
        .expect("time");
    let mut p = Planner::new(
        [(job("a"), sched("*/3 * * * * *"))],
        Duration::ZERO,
        &BTreeMap::from([(job("a"), now)]),
        now,
    );
    assert_eq!(p.next_wake(), Some(t("2026-11-25T10:00:03Z")));
    assert!(p.pop_due(now).is_empty());
}

#[test]
fn a_failure_that_retrying_cannot_fix_is_not_retried() {
    let now = t("2026-01-01T00:00:00Z");
    let mut p = Planner::new(
        [(job("a"), sched("0 * * * *"))],
        Duration::ZERO,
        &BTreeMap::new(),
        now,
    );
    let b = Backoff {
        max_attempts: 5,
        base: Duration::from_secs(10),
        max: Duration::from_secs(60),
    };
    assert_eq!(p.failed(&job("a"), 1, &b, now, false), None);
    assert!(!p.retries.contains_key(&job("a")), "no retry is planned");
}
