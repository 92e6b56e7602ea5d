//! What the daemon runs, and when. Pure: no I/O and no clock of its own; the caller
//! ([`crate::daemon`]) passes `now`, performs the jobs and reports their outcome back.
//!
//! # Model
//! A [`Job`] is a source and a [`JobKind`]. Each kind names where its schedule comes from
//! ([`Trigger`]): a backup runs on the source's `schedule`, a prune on its
//! `retention.schedule`, a verification on its `verify.schedule`; a copy is not on a clock but
//! follows each successful backup (and runs once at start, to catch up).
//!
//! # Rules (each one unit-tested below)
//! - **Times are UTC.** Cron expressions are evaluated in UTC, so daylight-saving changes
//!   neither skip nor repeat a run (a `30 2 * * *` job runs once every day, DST or not).
//! - **Missed runs coalesce.** At start, a job whose latest slot is newer than its last run in
//!   the catalog (or that has never run) is due once, now, however many slots were missed
//!   (a daemon down for a week runs each job once, not 168 times). Likewise a slot that
//!   passes while the job is queued adds nothing, and slots that pass while it runs add one
//!   run, after it.
//! - **Jitter** delays every slot of a job by a fixed offset in `[0, jitter)`, a hash of
//!   (source, kind): stable across restarts and replicas, reproducible in tests, and it
//!   spreads `0 * * * *` over the hour's first minutes instead of a thundering herd.
//! - **Retries**: a failed run is retried after [`Backoff::delay`] (exponential, capped) up to
//!   `max_attempts`; then it is reported and waits for its next slot. A new slot supersedes a
//!   pending retry.
//!
//! # Cost
//! The next fire time of each job is kept in a binary heap: a wake-up costs O(log n) per job
//! that fires, and finding the next wake-up is O(1), so 10,000 schedules idle for free.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Schedule;

mod roles;
pub use roles::{JobFilter, Role};

/// The kinds of work the daemon does. Adding one is a variant here, its trigger in
/// [`Planner::from_config`] and its call in `daemon::execute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Backup,
    Copy,
    Prune,
    Verify,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::Backup,
        JobKind::Copy,
        JobKind::Prune,
        JobKind::Verify,
    ];

    /// The `job` column of the catalog's `runs` table.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Copy => "copy",
            JobKind::Prune => "prune",
            JobKind::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One unit of work: a kind of job for one source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Job {
    pub source: String,
    pub kind: JobKind,
}

impl Job {
    pub fn new(source: impl Into<String>, kind: JobKind) -> Job {
        Job {
            source: source.into(),
            kind,
        }
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.source)
    }
}

/// When a job runs.
#[derive(Debug, Clone)]
pub enum Trigger {
    Cron(Box<Schedule>),
    /// After each successful backup of the same source (and once at start).
    AfterBackup,
}

/// The fixed jitter offset of `job`, in `[0, jitter)`: FNV-1a of (source, kind), so it is the
/// same on every replica and every restart.
pub fn jitter_offset(job: &Job, jitter: Duration) -> Duration {
    let ms = jitter.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job
        .source
        .bytes()
        .chain([0u8])
        .chain(job.kind.as_str().bytes())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_millis(h % ms)
}

/// Exponential backoff between the attempts of a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first one included (1: never retry).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub base: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Backoff {
    /// After attempt `attempt` (1-based) failed: how long to wait before the next one, or
    /// `None` when the attempts are used up and the failure is to be reported.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        Some(self.base.saturating_mul(factor).min(self.max))
    }
}

/// A job to start now; `attempt` is 1 for a scheduled run, more for a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub job: Job,
    pub attempt: u32,
}

struct Entry {
    job: Job,
    cron: croner::Cron,
    offset: TimeDelta,
}

/// The schedule of every cron-triggered job, with retries; see the module doc.
pub struct Planner {
    entries: Vec<Entry>,
    /// (next fire time, entry index); exactly one item per entry that has a next slot.
    heap: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
    retries: BTreeMap<Job, (DateTime<Utc>, u32)>,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Planner {
    /// `last_runs`: the newest `started_at` per job (from the catalog). Jobs whose latest slot
    /// (plus jitter) is at or before `now` and newer than their last run, and jobs that never
    /// ran, fire at `now`: once each.
    pub fn new(
        jobs: impl IntoIterator<Item = (Job, Schedule)>,
        jitter: Duration,
        last_runs: &BTreeMap<Job, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Planner {
        let mut p = Planner {
            entries: Vec::new(),
            heap: BinaryHeap::new(),
            retries: BTreeMap::new(),
        };
        for (job, schedule) in jobs {
            let offset = delta(jitter_offset(&job, jitter));
            let idx = p.entries.len();
            let entry = Entry {
                job,
                cron: schedule.cron,
                offset,
            };
            let latest = entry
                .cron
                .find_previous_occurrence(&(now - offset), true)
                .ok()
                .map(|s| s + offset);
            let missed = match (latest, last_runs.get(&entry.job)) {
                (_, None) => true,
                (Some(slot), Some(last)) => slot > *last,
                (None, Some(_)) => false,
            };
            let next = if missed {
                Some(now)
            } else {
                next_after(&entry, now)
            };
            if let Some(t) = next {
                p.heap.push(Reverse((t, idx)));
            }
            p.entries.push(entry);
        }
        p
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the next job (or retry) fires; `None` if nothing ever will.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let cron = self.heap.peek().map(|Reverse((t, _))| *t);
        let retry = self.retries.values().map(|(t, _)| *t).min();
        match (cron, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The jobs due at `now`, each once, and each rescheduled to its first slot after `now`
    /// (so slots that passed while the process slept are coalesced into this one run).
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut due = Vec::new();
        let mut seen = HashSet::new();
        while let Some(Reverse((t, idx))) = self.heap.peek().copied() {
            if t > now {
                break;
            }
            self.heap.pop();
            let entry = &self.entries[idx];
            if let Some(next) = next_after(entry, now) {
                self.heap.push(Reverse((next, idx)));
            }
            // A new slot supersedes a pending retry.
            self.retries.remove(&entry.job);
            if seen.insert(idx) {
                due.push(Due {
                    job: entry.job.clone(),
                    attempt: 1,
                });
            }
        }
        let ready: Vec<Job> = self
            .retries
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(j, _)| j.clone())
            .collect();
        for job in ready {
            if let Some((_, attempt)) = self.retries.remove(&job) {
                due.push(Due { job, attempt });
            }
        }
        due
    }

    /// Records that attempt `attempt` of `job` failed at `now`: returns when it will be
    /// retried, or `None` when `backoff` says to give up or the failure is not `retryable`
    /// (a config error or corrupt data: retrying changes nothing; the caller reports it).
    pub fn failed(
        &mut self,
        job: &Job,
        attempt: u32,
        backoff: &Backoff,
        now: DateTime<Utc>,
        retryable: bool,
    ) -> Option<DateTime<Utc>> {
        if !retryable {
            return None;
        }
        let at = now + delta(backoff.delay(attempt)?);
        self.retries.insert(job.clone(), (at, attempt + 1));
        Some(at)
    }
}

fn next_after(entry: &Entry, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    entry
        .cron
        .find_next_occurrence(&(now - entry.offset), false)
        .ok()
        .map(|t| t + entry.offset)
}

/// Jobs waiting to start: deduplicated (a job already waiting is not queued twice) and
/// started in arrival order, skipping those whose source is busy.
#[derive(Debug, Default)]
pub struct Queue {
    order: VecDeque<Due>,
    queued: BTreeSet<Job>,
}

impl Queue {
    /// Queues `due` unless the same job is already waiting.
    pub fn push(&mut self, due: Due) {
        if self.queued.insert(due.job.clone()) {
            self.order.push_back(due);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The first waiting job whose source is not in `busy`, removed from the queue.
    pub fn take_runnable(&mut self, busy: &HashSet<String>) -> Option<Due> {
        let pos = self
            .order
            .iter()
            .position(|d| !busy.contains(&d.job.source))?;
        let due = self.order.remove(pos)?;
        self.queued.remove(&due.job);
        Some(due)
    }
}

#[cfg(test)]
mod tests;
