//! The drill journal: what one drill did and measured, as data. The drill runner writes it (to
//! the catalog and, as JSON, to the store); reports render it. Schema
//! [`DRILL_JOURNAL_SCHEMA`], documented in `docs/reports.md`.
//!
//! # Guarantees
//! - Events are **hash-chained**: each event's `sha256` covers the previous event's hash and
//!   its own content, so an edited, dropped or reordered event breaks [`verify_chain`]; the
//!   journal's `journal_sha256` is the hash of the last event.
//!
//! # Caveats
//! - The chain proves internal consistency, not authorship: a writer who can rewrite the whole
//!   journal can rebuild the chain. The catalog keeps the head hash as the witness.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DRILL_JOURNAL_SCHEMA: &str = "lifeboat.drill-journal/v1";

/// The hash an empty chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillJournal {
    pub schema: String,
    pub id: String,
    pub scenario: String,
    /// pod | node | zone | region | complete | data | store ...
    pub tier: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `user@host` (or the daemon's identity) that ran it.
    pub run_by: String,
    pub dry_run: bool,
    /// pass | at-risk | breached | inconclusive | aborted | failed
    pub verdict: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub objectives: JournalObjectives,
    #[serde(default)]
    pub services: Vec<ServiceMeasure>,
    /// fault, detect, decide, fence, promote, dns, first-write, rollback (those that happened).
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    #[serde(default)]
    pub canary: Option<CanaryStrip>,
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    #[serde(default)]
    pub findings: Vec<JournalFinding>,
    /// Snapshot ids (and object versions) the drill used as evidence.
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub events: Vec<JournalEvent>,
    /// The hash of the last event ([`GENESIS`] when there is none).
    pub journal_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct JournalObjectives {
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceMeasure {
    pub service: String,
    /// `None`: not measured (or never recovered during the drill, which the verdict says).
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub rto_objective_seconds: Option<f64>,
    pub rpo_objective_seconds: Option<f64>,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub phase: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryStrip {
    pub resolution_ms: u64,
    pub sent: usize,
    pub acknowledged: usize,
    pub lost: usize,
    pub indeterminate: usize,
    /// Every write in order; `outcome` is acknowledged | lost | indeterminate | failed.
    #[serde(default)]
    pub writes: Vec<CanaryWrite>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryWrite {
    pub seq: u64,
    pub sent_at: DateTime<Utc>,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub name: String,
    pub action: String,
    pub targets: Vec<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub reverted_at: Option<DateTime<Utc>>,
    /// True only once a probe confirmed the revert.
    pub reverted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalFinding {
    /// info | warning | critical
    pub severity: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEvent {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub kind: String,
    #[serde(default)]
    pub detail: String,
    pub prev_sha256: String,
    pub sha256: String,
}

/// The hash of one event given the previous hash (hex SHA-256 over a fixed, unambiguous
/// encoding: each field length-prefixed).
pub fn event_hash(prev: &str, seq: u64, at: DateTime<Utc>, kind: &str, detail: &str) -> String {
    let mut h = Sha256::new();
    let at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    for part in [prev, &seq.to_string(), &at, kind, detail] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

impl DrillJournal {
    /// A journal for a drill that starts now: verdict `running`, nothing measured or
    /// recorded yet, an empty chain.
    pub fn start(
        id: &str,
        scenario: &str,
        tier: &str,
        started_at: DateTime<Utc>,
        run_by: &str,
    ) -> DrillJournal {
        DrillJournal {
            schema: DRILL_JOURNAL_SCHEMA.into(),
            id: id.into(),
            scenario: scenario.into(),
            tier: tier.into(),
            started_at,
            finished_at: None,
            run_by: run_by.into(),
            dry_run: false,
            verdict: "running".into(),
            reasons: vec![],
            objectives: JournalObjectives::default(),
            services: vec![],
            timeline: vec![],
            canary: None,
            faults: vec![],
            findings: vec![],
            evidence: vec![],
            events: vec![],
            journal_sha256: GENESIS.into(),
        }
    }

    /// Appends an event to the chain and updates `journal_sha256`.
    pub fn push_event(&mut self, at: DateTime<Utc>, kind: &str, detail: &str) -> &JournalEvent {
        let prev = self.journal_sha256.clone();
        let seq = self.events.len() as u64;
        let sha256 = event_hash(&prev, seq, at, kind, detail);
        self.journal_sha256 = sha256.clone();
        self.events.push(JournalEvent {
            seq,
            at,
            kind: kind.to_string(),
            detail: detail.to_string(),
            prev_sha256: prev,
            sha256,
        });
        self.events.last().expect("just pushed")
    }
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "drill journal event {seq} does not chain (edited, dropped or reordered): do not trust this journal; compare with the catalog's copy"
    )]
    Broken { seq: u64 },
    #[error(
        "drill journal head {found} is not the last event's hash {expected}: the journal was altered"
    )]
    Head { expected: String, found: String },
}

/// Checks every event's hash and link, and the head.
pub fn verify_chain(j: &DrillJournal) -> Result<(), ChainError> {
    let mut prev = GENESIS.to_string();
    for (i, e) in j.events.iter().enumerate() {
        let ok = e.seq == i as u64
            && e.prev_sha256 == prev
            && e.sha256 == event_hash(&prev, e.seq, e.at, &e.kind, &e.detail);
        if !ok {
            return Err(ChainError::Broken { seq: i as u64 });
        }
        prev = e.sha256.clone();
    }
    if j.journal_sha256 != prev {
        return Err(ChainError::Head {
            expected: prev,
            found: j.journal_sha256.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> DrillJournal {
        DrillJournal::start("d1", "pod-kill", "pod", DateTime::UNIX_EPOCH, "t@h")
    }

    #[test]
    fn chain_verifies_and_detects_edits() {
        let mut j = journal();
        let t = DateTime::UNIX_EPOCH;
        j.push_event(t, "fault-intent", "kill postgres");
        j.push_event(t, "fault-applied", "kill postgres");
        j.push_event(t, "reverted", "");
        assert_eq!(verify_chain(&j), Ok(()));
        let text = serde_json::to_string(&j).expect("json");
        let back: DrillJournal = serde_json::from_str(&text).expect("parse");
        assert_eq!(verify_chain(&back), Ok(()));

        let mut edited = j.clone();
        edited.events[1].detail = "nothing".into();
        assert_eq!(verify_chain(&edited), Err(ChainError::Broken { seq: 1 }));
        let mut dropped = j.clone();
        dropped.events.remove(1);
        assert!(verify_chain(&dropped).is_err());
        let mut head = j;
        head.events.pop();
        assert!(matches!(verify_chain(&head), Err(ChainError::Head { .. })));
    }
}
