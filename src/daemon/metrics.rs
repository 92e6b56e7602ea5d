//! The daemon's own Prometheus metrics (job counters and durations, bytes, leadership),
//! kept in plain atomics and a mutex-guarded map and rendered as Prometheus text; and the
//! failover controller's gauges ([`render_failover`]).

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

/// What the failover controller exposes ([`super::failover`]), rendered by
/// [`render_failover`].
#[derive(Debug, Clone, Default)]
pub struct FailoverGauges {
    /// (site, vantage) → up, from the latest round (every vantage point's report).
    pub site_up: BTreeMap<(String, String), bool>,
    pub primary: String,
    pub term: u64,
    /// (service, site) → replication lag in seconds, as this vantage point probed it.
    pub lag_seconds: BTreeMap<(String, String), f64>,
    /// service → the RPO of its backup source, in seconds (for the lag-above-RPO alert).
    pub rpo_seconds: BTreeMap<String, f64>,
    /// outcome (`done`, `step_failed`) → count since start.
    pub failovers: BTreeMap<String, u64>,
    /// Failovers this controller finished, and the seconds they took in all.
    pub duration_sum: f64,
    pub duration_count: u64,
}

/// Label values are site and service names (checked at config load: no quotes or
/// backslashes), escaped anyway.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The failover metrics as Prometheus text.
pub fn render_failover(g: &FailoverGauges) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP lifeboat_site_up 1 if the vantage point saw every service of the site answer in its latest round.\n# TYPE lifeboat_site_up gauge"
    );
    for ((site, vantage), up) in &g.site_up {
        let _ = writeln!(
            out,
            "lifeboat_site_up{{site=\"{}\",vantage=\"{}\"}} {}",
            label(site),
            label(vantage),
            u8::from(*up)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lifeboat_primary_site 1 for the site this controller holds as primary.\n# TYPE lifeboat_primary_site gauge\nlifeboat_primary_site{{site=\"{}\"}} 1",
        label(&g.primary)
    );
    let _ = writeln!(
        out,
        "# HELP lifeboat_failover_term The failover term this controller knows (a fencing token).\n# TYPE lifeboat_failover_term gauge\nlifeboat_failover_term {}",
        g.term
    );
    let _ = writeln!(
        out,
        "# HELP lifeboat_replication_lag_seconds Replay lag of a replica, as this vantage point probed it.\n# TYPE lifeboat_replication_lag_seconds gauge"
    );
    for ((service, site), lag) in &g.lag_seconds {
        let _ = writeln!(
            out,
            "lifeboat_replication_lag_seconds{{service=\"{}\",site=\"{}\"}} {lag}",
            label(service),
            label(site)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lifeboat_failover_rpo_seconds The RPO of the backup source of a failover service.\n# TYPE lifeboat_failover_rpo_seconds gauge"
    );
    for (service, rpo) in &g.rpo_seconds {
        let _ = writeln!(
            out,
            "lifeboat_failover_rpo_seconds{{service=\"{}\"}} {rpo}",
            label(service)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lifeboat_failovers_total Failovers this controller took part in, by outcome (done; step_failed: a step failed and is retried).\n# TYPE lifeboat_failovers_total counter"
    );
    for outcome in ["done", "step_failed"] {
        let _ = writeln!(
            out,
            "lifeboat_failovers_total{{outcome=\"{outcome}\"}} {}",
            g.failovers.get(outcome).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lifeboat_failover_duration_seconds Time from the decision to the verified new primary.\n# TYPE lifeboat_failover_duration_seconds summary\nlifeboat_failover_duration_seconds_sum {}\nlifeboat_failover_duration_seconds_count {}",
        g.duration_sum, g.duration_count
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_failover_metrics() {
        let mut g = FailoverGauges {
            primary: "secondary".into(),
            term: 3,
            duration_sum: 5.5,
            duration_count: 1,
            ..FailoverGauges::default()
        };
        g.site_up.insert(("primary".into(), "dr".into()), false);
        g.site_up.insert(("secondary".into(), "dr".into()), true);
        g.lag_seconds
            .insert(("orders-db".into(), "dr".into()), 0.25);
        g.rpo_seconds.insert("orders-db".into(), 60.0);
        g.failovers.insert("done".into(), 1);
        let text = render_failover(&g);
        for line in [
            "lifeboat_site_up{site=\"primary\",vantage=\"dr\"} 0",
            "lifeboat_site_up{site=\"secondary\",vantage=\"dr\"} 1",
            "lifeboat_primary_site{site=\"secondary\"} 1",
            "lifeboat_failover_term 3",
            "lifeboat_replication_lag_seconds{service=\"orders-db\",site=\"dr\"} 0.25",
            "lifeboat_failover_rpo_seconds{service=\"orders-db\"} 60",
            "lifeboat_failovers_total{outcome=\"done\"} 1",
            "lifeboat_failovers_total{outcome=\"step_failed\"} 0",
            "lifeboat_failover_duration_seconds_sum 5.5",
            "lifeboat_failover_duration_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        assert_eq!(label("a\"b"), "a\\\"b");
    }

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
