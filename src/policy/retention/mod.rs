//! GFS retention: which snapshots of a source to keep, and why. Pure: no I/O, no clock; the
//! caller ([`crate::ops::prune`]) gathers the facts, passes `now`, and carries out the decisions.
//!
//! # Semantics (those of restic's `forget`)
//! - Only **complete** snapshots are counted by the rules. They are walked newest first
//!   (by `created_at`, then id). `keep_last N` keeps the N newest. Each period rule
//!   (`hourly`, `daily`, `weekly`, `monthly`, `yearly` N) keeps a snapshot when its period
//!   differs from the period of the previous snapshot it kept, until it has kept N: so it
//!   keeps the **newest snapshot of each of the N newest periods that have one**. Periods
//!   without a snapshot are skipped, not counted.
//! - As in restic, a rule that has not used up its count when it reaches the **oldest**
//!   complete snapshot keeps that one too (it stretches the history kept while the rule is
//!   not full yet: a new `yearly: 3` keeps the first snapshot ever taken).
//! - Periods are in **UTC**: hour, calendar day, ISO 8601 week (Monday to Sunday, numbered
//!   within its ISO week-year), calendar month, calendar year.
//! - Whatever the rules say, these are never deleted: the newest complete snapshot, the
//!   newest *verified* complete snapshot, a `running` snapshot (another process is writing
//!   it) and a snapshot whose objects are under an S3 Object Lock retention that has not
//!   expired at `now`.
//! - `failed` snapshots are not counted and are always deletable (unless locked): their
//!   objects are already gone or orphaned, only their catalog row and leftovers remain.
//! - An empty policy (no rule, or all counts 0) keeps everything.
//!
//! # Guarantees (tested by the property tests below)
//! Planning is deterministic and idempotent: applying a plan's deletions and planning again
//! deletes nothing more. Adding a newer snapshot never keeps one that was to be deleted.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::model::values::LockMode;

/// How many snapshots each rule keeps (`None` or 0: the rule is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

impl Policy {
    /// True when no rule keeps anything: then the policy keeps everything.
    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|(_, n)| *n == 0)
    }

    fn rules(&self) -> [(Rule, u32); 6] {
        let n = |v: Option<u32>| v.unwrap_or(0);
        [
            (Rule::Last, n(self.keep_last)),
            (Rule::Hourly, n(self.hourly)),
            (Rule::Daily, n(self.daily)),
            (Rule::Weekly, n(self.weekly)),
            (Rule::Monthly, n(self.monthly)),
            (Rule::Yearly, n(self.yearly)),
        ]
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "none (keep everything)");
        }
        let parts: Vec<String> = self
            .rules()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{} {n}", r.name()))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Last => "keep_last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The UTC period `t` falls in, as shown in reasons (`2026-11-20`, `2026-W47`). `None`
    /// for `keep_last`, which has no periods.
    pub fn period(self, t: DateTime<Utc>) -> Option<String> {
        Some(match self {
            Rule::Last => return None,
            Rule::Hourly => format!("{}T{:02}", t.format("%Y-%m-%d"), t.hour()),
            Rule::Daily => t.format("%Y-%m-%d").to_string(),
            Rule::Weekly => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Rule::Monthly => t.format("%Y-%m").to_string(),
            Rule::Yearly => t.format("%Y").to_string(),
        })
    }
}

/// The state of a snapshot, as the catalog has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    Complete,
    Running,
    Failed,
}

/// An S3 Object Lock retention on (some of) a snapshot's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub mode: LockMode,
    pub until: DateTime<Utc>,
}

/// What the planner knows of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub status: ItemStatus,
    /// A verification (test restore) of this snapshot succeeded.
    pub verified: bool,
    /// The latest-expiring object lock on its objects, if any.
    pub lock: Option<Lock>,
}

/// Why a snapshot is kept, or why it may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// One of the `keep_last` newest: `nth` of `of`.
    Last {
        nth: u32,
        of: u32,
    },
    /// The newest snapshot of `period` for `rule`.
    Period {
        rule: Rule,
        period: String,
    },
    /// The oldest snapshot, kept because `rule` had not used up its count.
    Oldest {
        rule: Rule,
    },
    NewestComplete,
    NewestVerified,
    Running,
    Locked(Lock),
    NoPolicy,
    // Reasons to delete:
    /// Complete, but no rule keeps it.
    Expired,
    /// A failed run's leftovers.
    Failed,
}

impl Reason {
    pub fn keeps(&self) -> bool {
        !matches!(self, Reason::Expired | Reason::Failed)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last { nth, of } => write!(f, "keep_last {of} (#{nth})"),
            Reason::Period { rule, period } => write!(f, "{} {period}", rule.name()),
            Reason::Oldest { rule } => {
                write!(f, "{} (oldest snapshot, rule not filled)", rule.name())
            }
            Reason::NewestComplete => write!(f, "newest complete"),
            Reason::NewestVerified => write!(f, "newest verified"),
            Reason::Running => write!(f, "running (another process is writing)"),
            Reason::Locked(l) => write!(
                f,
                "object lock ({}) until {}",
                l.mode,
                l.until.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            Reason::NoPolicy => write!(f, "no retention policy"),
            Reason::Expired => write!(f, "no rule keeps it"),
            Reason::Failed => write!(f, "failed run"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Delete,
}

/// The decision for one item: keep it (with every reason that applies) or delete it (with
/// the reason it may go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub reasons: Vec<Reason>,
}

/// One decision per item, in the order of `items`. `now` decides which locks still hold.
pub fn plan(policy: &Policy, items: &[Item], now: DateTime<Utc>) -> Vec<Decision> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); items.len()];

    // Complete items, newest first (ties broken by id, which also sorts by time).
    let mut complete: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].status == ItemStatus::Complete)
        .collect();
    complete.sort_by(|&a, &b| {
        (items[b].created_at, &items[b].id).cmp(&(items[a].created_at, &items[a].id))
    });

    if policy.is_empty() {
        for r in &mut reasons {
            r.push(Reason::NoPolicy);
        }
    } else {
        for (rule, count) in policy.rules() {
            if count == 0 {
                continue;
            }
            let mut left = count;
            let mut last: Option<String> = None;
            for (nr, &i) in complete.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let oldest = nr + 1 == complete.len();
                let reason = match rule.period(items[i].created_at) {
                    None => Some(Reason::Last {
                        nth: count - left + 1,
                        of: count,
                    }),
                    Some(p) if last.as_ref() != Some(&p) => {
                        last = Some(p.clone());
                        Some(Reason::Period { rule, period: p })
                    }
                    Some(_) if oldest => Some(Reason::Oldest { rule }),
                    Some(_) => None,
                };
                if let Some(reason) = reason {
                    reasons[i].push(reason);
                    left -= 1;
                }
            }
        }
    }

    // Guards that hold whatever the policy says.
    if let Some(&newest) = complete.first() {
        reasons[newest].push(Reason::NewestComplete);
    }
    if let Some(&newest) = complete.iter().find(|&&i| items[i].verified) {
        reasons[newest].push(Reason::NewestVerified);
    }
    for (item, r) in items.iter().zip(&mut reasons) {
        if item.status == ItemStatus::Running {
            r.push(Reason::Running);
        }
        if let Some(lock) = item.lock.filter(|l| l.until > now) {
            r.push(Reason::Locked(lock));
        }
    }

    items
        .iter()
        .zip(reasons)
        .map(|(item, reasons)| {
            if reasons.is_empty() {
                let why = if item.status == ItemStatus::Failed {
                    Reason::Failed
                } else {
                    Reason::Expired
                };
                Decision {
                    action: Action::Delete,
                    reasons: vec![why],
                }
            } else {
                Decision {
                    action: Action::Keep,
                    reasons,
                }
            }
        })
        .collect()
}

/// The ids `plan` keeps; a convenience for tests and summaries.
pub fn kept_ids(items: &[Item], decisions: &[Decision]) -> BTreeSet<String> {
    items
        .iter()
        .zip(decisions)
        .filter(|(_, d)| d.action == Action::Keep)
        .map(|(i, _)| i.id.clone())
        .collect()
}

#[cfg(test)]
mod tests;
