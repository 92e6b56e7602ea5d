//! The daemon's own Prometheus metrics (job counters and durations, bytes, leadership),
//! kept in plain atomics and a mutex-guarded map and rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::policy::schedule::JobKind;

/// The outcome label of `lifeboat_job_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    Failed,
    /// Failed with no attempts left: reported, waits for its next slot.
    GaveUp,
    Cancelled,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::GaveUp => "gave_up",
            Outcome::Cancelled => "cancelled",
        }
    }
}

#[derive(Default)]
struct PerJob {
    runs: BTreeMap<Outcome, u64>,
    seconds_sum: f64,
    seconds_count: u64,
    last_success: Option<i64>,
    last_failure: Option<i64>,
}

#[derive(Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<(JobKind, String), PerJob>>,
    bytes: AtomicU64,
    pub leader: AtomicBool,
    pub running: AtomicU64,
}

impl Metrics {
    pub fn record(
        &self,
        kind: JobKind,
        source: &str,
        outcome: Outcome,
        took: Duration,
        bytes: u64,
        at: i64,
    ) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let j = jobs.entry((kind, source.to_string())).or_default();
        *j.runs.entry(outcome).or_default() += 1;
        j.seconds_sum += took.as_secs_f64();
        j.seconds_count += 1;
        match outcome {
            Outcome::Success => j.last_success = Some(at),
            Outcome::Failed | Outcome::GaveUp => j.last_failure = Some(at),
            Outcome::Cancelled => {}
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP lifeboat_leader 1 if this replica is the leader (runs jobs), 0 on standby.\n# TYPE lifeboat_leader gauge\nlifeboat_leader {}",
            u8::from(self.is_leader())
        );
        let _ = writeln!(
            out,
            "# HELP lifeboat_jobs_running Jobs running now.\n# TYPE lifeboat_jobs_running gauge\nlifeboat_jobs_running {}",
            self.running.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lifeboat_job_bytes_total Bytes written to stores by backups.\n# TYPE lifeboat_job_bytes_total counter\nlifeboat_job_bytes_total {}",
            self.bytes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lifeboat_job_runs_total Job runs by kind, source and outcome.\n# TYPE lifeboat_job_runs_total counter"
        );
        for ((kind, source), j) in jobs.iter() {
            for (outcome, n) in &j.runs {
                let _ = writeln!(
                    out,
                    "lifeboat_job_runs_total{{kind=\"{kind}\",source=\"{source}\",outcome=\"{}\"}} {n}",
                    outcome.as_str()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_job_duration_seconds Time spent in job runs.\n# TYPE lifeboat_job_duration_seconds summary"
        );
        for ((kind, source), j) in jobs.iter() {
            let _ = writeln!(
                out,
                "lifeboat_job_duration_seconds_sum{{kind=\"{kind}\",source=\"{source}\"}} {}",
                j.seconds_sum
            );
            let _ = writeln!(
                out,
                "lifeboat_job_duration_seconds_count{{kind=\"{kind}\",source=\"{source}\"}} {}",
                j.seconds_count
            );
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_job_last_success_timestamp_seconds When a job last succeeded.\n# TYPE lifeboat_job_last_success_timestamp_seconds gauge"
        );
        for ((kind, source), j) in jobs.iter() {
            if let Some(t) = j.last_success {
                let _ = writeln!(
                    out,
                    "lifeboat_job_last_success_timestamp_seconds{{kind=\"{kind}\",source=\"{source}\"}} {t}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lifeboat_job_last_failure_timestamp_seconds When a job last failed.\n# TYPE lifeboat_job_last_failure_timestamp_seconds gauge"
        );
        for ((kind, source), j) in jobs.iter() {
            if let Some(t) = j.last_failure {
                let _ = writeln!(
                    out,
                    "lifeboat_job_last_failure_timestamp_seconds{{kind=\"{kind}\",source=\"{source}\"}} {t}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.leader.store(true, Ordering::Relaxed);
        m.record(
            JobKind::Backup,
            "db",
            Outcome::Success,
            Duration::from_millis(1500),
            42,
            1_700_000_000,
        );
        m.record(
            JobKind::Backup,
            "db",
            Outcome::GaveUp,
            Duration::from_secs(1),
            0,
            1_700_000_100,
        );
        let text = m.render();
        for line in [
            "lifeboat_leader 1",
            "lifeboat_job_bytes_total 42",
            "lifeboat_job_runs_total{kind=\"backup\",source=\"db\",outcome=\"success\"} 1",
            "lifeboat_job_runs_total{kind=\"backup\",source=\"db\",outcome=\"gave_up\"} 1",
            "lifeboat_job_duration_seconds_sum{kind=\"backup\",source=\"db\"} 2.5",
            "lifeboat_job_duration_seconds_count{kind=\"backup\",source=\"db\"} 2",
            "lifeboat_job_last_success_timestamp_seconds{kind=\"backup\",source=\"db\"} 1700000000",
            "lifeboat_job_last_failure_timestamp_seconds{kind=\"backup\",source=\"db\"} 1700000100",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }
}
