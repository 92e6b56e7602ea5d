//! The drill runner: `lifeboat drill run`. Steady-state probes, then each fault applied,
//! held and rolled back while canary writes measure the service through its own endpoint,
//! then probes again; the canaries measured and judged by [`crate::policy::drill`]; the
//! journal ([`DrillJournal`]) kept in the catalog as the drill goes and, at the end, written
//! to the store at `drills/<id>/journal.json`.
//!
//! # Guarantees
//! - **Intent before action**: a fault's row (what it touches, how to revert it, its TTL) is
//!   in the catalog before the fault is applied.
//! - **Always rolled back**: a detached watchdog (`lifeboat drill watchdog ID`, its own
//!   process group) reverts every fault whose TTL passed or whose drill died; a revert is
//!   retried until a probe confirms it ([`revert_once`]) and only then recorded reverted;
//!   [`sweep`] (at `drill run`, `drill history` and daemon start) reverts what a crash left and
//!   records the dead drill `aborted`. An abort (Ctrl-C, blast radius, time limit, a
//!   Prometheus alert, a failover in progress) rolls back like the normal end.
//! - **Nothing proves nothing**: a fault that matches zero targets is not applied at all and
//!   the drill is `inconclusive`, never `pass`.
//! - A process-group fault signals the group and every descendant of its processes (workers
//!   that made their own groups, like PostgreSQL backends), never lifeboat's own group nor a
//!   family lifeboat belongs to, nor pids 0 and 1.
//!
//! # Caveats
//! - A pid file naming a pid reused by another process is taken at its word.
//! - In-process faults (proxy) end with the drill's process: there is nothing to revert.
//! - Store faults (`unavailable`, `corrupt`, `hide-latest`) are a wrapper in the lifeboat
//!   commands the drill starts ([`crate::store::DRILL_FAULT_ENV`]): the store's objects are
//!   never touched. `unavailable`: a backup of each source on the store must fail, and succeed
//!   again once the fault is reverted (RTO: fault to that backup). `corrupt`/`hide-latest`:
//!   the newest snapshot of each source is served corrupt or hidden, from a throwaway catalog
//!   rebuilt from the store; verifying it must fail (corrupt) and the previous snapshot must
//!   restore (RTO: fault to that restore verified; RPO: the age of the snapshot restored).
//! - complete-disaster (`restore-all`) is a simulation on the side: the catalog rebuilt from
//!   the stores alone into a throwaway catalog, every source verified (restored into a
//!   scratch sandbox, checked, torn down) in parallel from it; the real catalog, stores and
//!   services are only read. Its RTO is the total time, its RPO per source the age of the
//!   snapshot restored.
//! - region-failover (`failover:`): the drill checks first that `to` is a site and not the
//!   primary and that no failover is unfinished; the failover is done by the controllers
//!   (waited for in this site's catalog) or by the drill (`failover execute --to TO --force`,
//!   a declared step); a failed or late failover fails the drill; the drill's own failover is
//!   not an abort condition. The process-group fault's revert restarts the old primary and
//!   fences its services that another site now serves as writable primary
//!   ([`fence_returned`]) before it is recorded reverted, from the watchdog and the sweep
//!   too: a moved primary is never made writable again (`failover rejoin`); one the failover
//!   did not move is left the only primary.
//!   Between its restart and the fence, clients connecting to it directly could write.
//! - A runbook drill (`runbook:`): a failing step fails the drill; the fault is still
//!   rolled back. A run cut by the fault's TTL leaves its step's process to finish.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::canary::{AnyCanary, CanaryError, write_observed};
use super::proxy::{Mode, Proxy};
use super::scenario::{Action, FailoverBy, FailoverSpec, Fault, MAX_TTL, Probe, Scenario};
use crate::catalog::CatalogError;
use crate::model::journal::{
    CanaryStrip, CanaryWrite, DrillJournal, FaultRecord, JournalFinding, JournalObjectives,
    ServiceMeasure, TimelineEntry,
};
use crate::ops::Ctx;
use crate::policy::drill::{
    AbortInputs, Ack, Canary, Expected, abort_reasons, elapsed_limit, judge, measure,
};

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("scenario `{scenario}`: {message}")]
    Unsupported { scenario: String, message: String },
    #[error(transparent)]
    Canary(#[from] CanaryError),
    #[error("no drill {id} in the catalog; `lifeboat drill history` lists them")]
    NotFound { id: String },
    #[error(
        "the watchdog of drill {id} gave up with faults not reverted: {faults}; revert them by hand (see `lifeboat drill history --output json`)"
    )]
    GaveUp { id: String, faults: String },
}

impl DrillError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            DrillError::Catalog(e) => e.kind(),
            DrillError::Unsupported { .. } | DrillError::NotFound { .. } => ErrorKind::Config,
            DrillError::Canary(_) => ErrorKind::Unreachable,
            DrillError::GaveUp { .. } => ErrorKind::Internal,
        }
    }
}

/// How the runner starts lifeboat itself: for `lifeboat:` probes and the watchdog.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub exe: PathBuf,
    /// Global arguments (`--config PATH ...`).
    pub global_args: Vec<OsString>,
    /// Environment (e.g. `LIFEBOAT_CATALOG`, kept out of argv).
    pub env: Vec<(OsString, OsString)>,
}

impl Launcher {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(&self.global_args)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }
}

pub struct Options {
    pub launcher: Launcher,
    /// `user@host`.
    pub who: String,
    /// How long the canary writes before the first fault (the "before" of the RPO).
    pub steady: Duration,
}

/// What a fault touched and how to revert it: stored as JSON with the fault's intent, read
/// by the watchdog and the sweep (other processes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FaultSpec {
    ProcessGroup {
        pgid: u32,
        leader: u32,
        pidfile: String,
        /// SIGSTOP (reverted by SIGCONT); else SIGKILL (reverted by `restart`).
        pause: bool,
        restart: Vec<String>,
        /// A failover drill: the old primary site whose replicated services are fenced
        /// (read-only, confirmed) once the group is back, before the revert is recorded; they
        /// are not made writable again (`lifeboat failover rejoin SITE` is the way back).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fence_site: Option<String>,
    },
    /// Lives in the drill's process (a proxy mode): ends with it.
    InProcess { target: String },
    /// A throwaway directory (complete-disaster's rebuilt catalog): reverted by removing it.
    Scratch { dir: PathBuf },
    /// A Kubernetes fault ([`super::kube_fault`]): reverted from its planned intent
    /// (uncordon, replicas back, policy deleted), confirmed by re-reading the objects.
    Kube {
        intent: super::kube_fault::KubeIntent,
    },
}

// ---------------------------------------------------------------------------------------
// Processes

/// The state letter of `/proc/PID/stat` (R, S, D, T, t, Z, X ...).
fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// The process group of `pid`, from `/proc/PID/stat` (field 5).
fn proc_pgid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// A live process (zombies are dead).
pub fn pid_alive(pid: u32) -> bool {
    pid > 0 && matches!(proc_state(pid), Some(c) if c != 'Z' && c != 'X')
}

/// (pid, ppid, pgid, state) of every process, from `/proc`.
fn processes() -> Vec<(u32, u32, u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut f = s[s.rfind(')')? + 1..].split_whitespace();
            let state = f.next()?.chars().next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgid = f.next()?.parse().ok()?;
            Some((pid, ppid, pgid, state))
        })
        .collect()
}

/// The states of every process of group `pgid` and of all their descendants (a service's
/// workers may have made their own groups, as PostgreSQL backends do).
fn group_states(pgid: u32) -> Vec<(u32, char)> {
    let all = processes();
    let mut members: std::collections::BTreeMap<u32, char> = all
        .iter()
        .filter(|p| p.2 == pgid)
        .map(|p| (p.0, p.3))
        .collect();
    loop {
        let more: Vec<(u32, char)> = all
            .iter()
            .filter(|p| members.contains_key(&p.1) && !members.contains_key(&p.0))
            .map(|p| (p.0, p.3))
            .collect();
        if more.is_empty() {
            return members.into_iter().collect();
        }
        members.extend(more);
    }
}

/// Signals group `pgid` and every descendant of its processes (twice: a process forked
/// meanwhile gets it too).
fn signal_family(pgid: u32, sig: rustix::process::Signal) -> Result<(), String> {
    signal_group(pgid, sig)?;
    for _ in 0..2 {
        for (pid, _) in group_states(pgid) {
            if let Some(p) = i32::try_from(pid)
                .ok()
                .filter(|&p| p > 1)
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
    }
    Ok(())
}

fn read_pidfile(path: &str) -> Result<u32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("pid file {path}: {e}"))?;
    text.lines()
        .next()
        .map(str::trim)
        .and_then(|l| l.parse::<u32>().ok())
        .filter(|&p| p > 1)
        .ok_or_else(|| format!("pid file {path} does not start with a pid"))
}

fn signal_group(pgid: u32, sig: rustix::process::Signal) -> Result<(), String> {
    let pid = i32::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("refusing to signal process group {pgid}"))?;
    rustix::process::kill_process_group(pid, sig).map_err(|e| format!("process group {pgid}: {e}"))
}

/// Reverts `spec` if it is not reverted already, then checks: `Ok(what the probe saw)` only
/// when a probe confirms the revert. Safe to repeat, from any process.
pub async fn revert_once(
    spec: &FaultSpec,
    kube: &dyn crate::kube::KubeApi,
) -> Result<String, String> {
    match spec {
        FaultSpec::Kube { intent } => super::kube_fault::revert(kube, intent)
            .await
            .map(|()| format!("confirmed: {}", intent.describe().join("; ")))
            .map_err(|e| e.to_string()),
        FaultSpec::ProcessGroup {
            pgid, pause: true, ..
        } => {
            let _ = signal_family(*pgid, rustix::process::Signal::CONT);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let stopped: Vec<u32> = group_states(*pgid)
                .into_iter()
                .filter(|(_, s)| *s == 'T')
                .map(|(p, _)| p)
                .collect();
            if stopped.is_empty() {
                Ok(format!("no process of group {pgid} is stopped"))
            } else {
                Err(format!(
                    "process(es) {stopped:?} of group {pgid} still stopped after SIGCONT"
                ))
            }
        }
        FaultSpec::ProcessGroup {
            pidfile, restart, ..
        } => {
            let running = || {
                read_pidfile(pidfile)
                    .ok()
                    .filter(|&p| pid_alive(p) && proc_state(p) != Some('T'))
            };
            if let Some(pid) = running() {
                return Ok(format!("pid {pid} of {pidfile} is running"));
            }
            let Some((program, args)) = restart.split_first() else {
                return Err(format!(
                    "{pidfile} names no running process and the target has no `restart` command: start it by hand"
                ));
            };
            let status = tokio::time::timeout(
                Duration::from_secs(120),
                tokio::process::Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status(),
            )
            .await;
            match status {
                Ok(Ok(s)) if s.success() => {}
                Ok(Ok(s)) => return Err(format!("restart command `{program}` exited with {s}")),
                Ok(Err(e)) => return Err(format!("cannot run restart command `{program}`: {e}")),
                Err(_) => return Err(format!("restart command `{program}` ran over 120 s")),
            }
            for _ in 0..100 {
                if let Some(pid) = running() {
                    return Ok(format!("restarted: pid {pid} of {pidfile} is running"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(format!(
                "restart command `{program}` succeeded but {pidfile} names no running process"
            ))
        }
        FaultSpec::InProcess { target } => Ok(format!(
            "in-process fault on `{target}` ended with the drill's process"
        )),
        FaultSpec::Scratch { dir } => {
            if let Err(e) = std::fs::remove_dir_all(dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(format!("cannot remove {}: {e}", dir.display()));
            }
            if dir.exists() {
                Err(format!("{} is still there", dir.display()))
            } else {
                Ok(format!("{} removed", dir.display()))
            }
        }
    }
}

/// [`revert_once`], then, for a failover drill's process group, the old primary site's
/// replicated services fenced and confirmed read-only ([`fence_returned`]): reverted only then.
pub async fn revert_fault(spec: &FaultSpec, ctx: &Ctx) -> Result<String, String> {
    let how = revert_once(spec, ctx.kube.as_ref()).await?;
    match spec {
        FaultSpec::ProcessGroup {
            fence_site: Some(site),
            ..
        } => Ok(format!("{how}; {}", fence_returned(ctx, site).await?)),
        _ => Ok(how),
    }
}

/// The replicated services of `site` (the old primary of a failover drill, back after the
/// fault), each fenced (read-only, confirmed) when another site now answers for it as a
/// writable primary: the failover moved it, and the old one must never be writable again
/// (`lifeboat failover rejoin SITE` turns it into a replica). When no other site does (the
/// failover did not happen), it is left as it is: it is still the only primary, and fencing
/// it would leave the service with none.
pub async fn fence_returned(ctx: &Ctx, site: &str) -> Result<String, String> {
    use crate::kinds::probe::Role;
    let Some(s) = ctx.config.sites.iter().find(|x| x.name == site) else {
        return Err(format!("no site `{site}` in the config: fence it by hand"));
    };
    let mut done = Vec::new();
    for (name, svc) in &s.services {
        if !svc.kind.replicated() {
            continue;
        }
        let mut moved_to = None;
        for other in ctx.config.sites.iter().filter(|x| x.name != site) {
            let Some(o) = other.services.get(name) else {
                continue;
            };
            let Some(kind) = crate::kinds::kind(o.kind.as_str()) else {
                continue;
            };
            if let Ok(Ok(p)) =
                tokio::time::timeout(Duration::from_secs(10), kind.probe(o.url.expose())).await
                && p.role == Role::Primary
                && !p.fenced
            {
                moved_to = Some(other.name.clone());
                break;
            }
        }
        let Some(to) = moved_to else {
            done.push(format!(
                "{name} at {site} left as it is: no other site answers as a writable primary for it (the failover did not move it)"
            ));
            continue;
        };
        crate::ops::failover::fence_service(ctx, site, name)
            .await
            .map_err(|e| format!("{name} at {site} is not confirmed fenced yet: {e}"))?;
        done.push(format!(
            "{name} at {site} fenced (read-only, confirmed): the primary is at {to}"
        ));
    }
    Ok(done.join("; "))
}

// ---------------------------------------------------------------------------------------
// Probes and abort conditions

async fn probe(launcher: &Launcher, p: &Probe) -> Result<(), String> {
    if let Some(addr) = &p.tcp {
        return match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(addr.as_str()),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("probe `{}`: tcp {addr}: {e}", p.name)),
            Err(_) => Err(format!("probe `{}`: tcp {addr}: no answer in 2 s", p.name)),
        };
    }
    let args: Vec<&str> = p.lifeboat.iter().map(String::as_str).collect();
    let mut cmd = launcher.command(&args);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(crate::model::redact::scrub_registered(&format!(
                "probe `{}`: lifeboat {} exited with {}: {last}",
                p.name,
                p.lifeboat.join(" "),
                out.status
            )))
        }
        Ok(Err(e)) => Err(format!("probe `{}`: cannot run lifeboat: {e}", p.name)),
        Err(_) => Err(format!("probe `{}`: ran over 60 s", p.name)),
    }
}

/// The names of the alerts firing at Prometheus `base`.
async fn firing_alerts(base: &str) -> Result<Vec<String>, String> {
    let url = format!(
        "{}/api/v1/query?query=ALERTS%7Balertstate%3D%22firing%22%7D",
        base.trim_end_matches('/')
    );
    let shown = crate::model::redact::url(base);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client.get(&url).send().await.map_err(|e| {
        format!("Prometheus {shown} unreachable ({e}): cannot tell whether alerts fire")
    })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "Prometheus {shown} answered {status}: cannot tell whether alerts fire"
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("Prometheus {shown} answered no JSON: {e}"))?;
    Ok(v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|a| a["metric"]["alertname"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default())
}

/// The slow abort inputs (probes, Prometheus, catalog), refreshed at most every second.
#[derive(Default)]
struct Watch {
    last: Option<Instant>,
    blast: Vec<String>,
    alerts: Vec<String>,
    failover: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// The runner

struct Resolved<'s> {
    fault: &'s Fault,
    spec: Option<FaultSpec>,
    /// What it matched (empty: nothing).
    targets: Vec<String>,
}

struct Drill<'a> {
    ctx: &'a Ctx,
    s: &'a Scenario,
    opts: &'a Options,
    j: DrillJournal,
    started: Instant,
    limit: Option<Duration>,
    watch: Watch,
    proxies: BTreeMap<String, Proxy>,
    /// Why the drill stopped early (empty: it did not).
    aborted: Vec<String>,
    /// Catalog writes that failed mid-drill (the drill goes on rolling back).
    save_errors: Vec<String>,
    /// complete-disaster: what each source's restore gave.
    disaster: Option<Disaster>,
    /// Declared steps of the drill that failed (the failover, a runbook): the drill fails.
    failures: Vec<String>,
    /// A failover drill's own failover (to, not started before): not an abort condition.
    own_failover: Option<(String, DateTime<Utc>)>,
    /// A runbook drill: (runbook, ms from the fault to the run complete, when it completed).
    runbook_done: Option<(String, Option<u64>)>,
}

/// One source restored by complete-disaster.
#[derive(Debug, Clone)]
struct Restored {
    source: String,
    /// Why it did not restore and check out (None: it did).
    error: Option<String>,
    /// From the fault to this source verified.
    done_ms: u64,
    /// The age of the snapshot restored at the fault.
    rpo_ms: Option<u64>,
    snapshot_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Disaster {
    total_ms: u64,
    restored: Vec<Restored>,
}

/// Runs drill `name` of scenario `s` to its end (or abort) and returns its journal.
pub async fn run(
    ctx: &Ctx,
    name: &str,
    s: &Scenario,
    opts: &Options,
) -> Result<DrillJournal, DrillError> {
    check_supported(name, s)?;
    if let Err(e) = sweep(ctx).await {
        tracing::warn!(cause = %e, "could not sweep drills left by crashed runs");
    }
    let now = ctx.now();
    let id = format!(
        "drill-{}-{:04x}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u16>()
    );
    let held: Duration = s.faults.iter().map(|f| f.duration).sum();
    let mut d = Drill {
        ctx,
        s,
        opts,
        j: DrillJournal {
            objectives: JournalObjectives {
                rto_seconds: s.expect.rto.map(|d| d.as_secs_f64()),
                rpo_seconds: s.expect.rpo.map(|d| d.as_secs_f64()),
            },
            ..DrillJournal::start(
                &id,
                name,
                &format!("{:?}", s.tier).to_lowercase(),
                now,
                &opts.who,
            )
        },
        started: Instant::now(),
        limit: elapsed_limit(s.abort.max_elapsed, s.expect.rto, held),
        watch: Watch::default(),
        proxies: BTreeMap::new(),
        aborted: vec![],
        save_errors: vec![],
        disaster: None,
        failures: vec![],
        own_failover: None,
        runbook_done: None,
    };
    d.event("started", &format!("scenario {name} by {}", opts.who));
    ctx.catalog.put_drill_journal(&d.j).await?;
    let span = tracing::info_span!("drill", id = %id, scenario = %name);
    d.go().instrument(span).await?;
    Ok(d.j)
}

/// Refuses, before anything is touched, what this runner cannot do yet.
fn check_supported(name: &str, s: &Scenario) -> Result<(), DrillError> {
    let unsupported = |message: String| DrillError::Unsupported {
        scenario: name.to_string(),
        message,
    };
    for t in &s.targets {
        match t.kind() {
            Ok(_) => {}
            Err(e) => return Err(unsupported(e)),
        }
    }
    if let Some(r) = &s.runbook {
        super::runbook::find(&r.name, &r.vars)
            .map_err(|e| unsupported(format!("runbook `{}`: {e}; nothing was touched", r.name)))?;
    }
    Ok(())
}

impl<'a> Drill<'a> {
    fn now(&self) -> DateTime<Utc> {
        self.ctx.now()
    }

    fn event(&mut self, kind: &str, detail: &str) {
        let detail = crate::model::redact::scrub_registered(detail);
        tracing::info!(event = kind, "{detail}");
        let now = self.now();
        self.j.push_event(now, kind, &detail);
    }

    fn finding(&mut self, severity: &str, text: String) {
        self.j.findings.push(JournalFinding {
            severity: severity.into(),
            text,
        });
    }

    async fn save(&mut self) {
        if let Err(e) = self.ctx.catalog.put_drill_journal(&self.j).await {
            tracing::warn!(cause = %e, "could not store the drill journal in the catalog");
            self.save_errors.push(e.to_string());
        }
    }

    /// Every abort reason now (the slow checks at most once a second).
    /// A controller reporting a finished move of the primary away from `from` to another
    /// site than `to`: (reporting site, term, new primary).
    async fn moved_elsewhere(&self, from: &str, to: &str) -> Option<(String, u64, String)> {
        let vantage = crate::ops::failover::vantage_points(self.ctx).await.ok()?;
        vantage.into_iter().find_map(|(site, v)| match v {
            crate::ops::failover::Vantage::Report(r)
                if !r.moving && r.term > 0 && r.primary != from && r.primary != to =>
            {
                Some((site, r.term, r.primary))
            }
            _ => None,
        })
    }

    /// Waits until a canary write sent at `since` or later is acknowledged, the drill aborts
    /// (abort conditions checked while waiting), or `until`.
    async fn await_ack(
        &mut self,
        acks: &mut tokio::sync::watch::Receiver<Option<DateTime<Utc>>>,
        since: DateTime<Utc>,
        until: Instant,
    ) {
        while self.aborted.is_empty()
            && !acks.borrow_and_update().is_some_and(|t| t >= since)
            && Instant::now() < until
        {
            tokio::select! {
                _ = acks.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let reasons = self.abort_now().await;
            if !reasons.is_empty() {
                self.event("abort", &reasons.join("; "));
                self.aborted = reasons;
            }
        }
    }

    async fn abort_now(&mut self) -> Vec<String> {
        if self
            .watch
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.watch.last = Some(Instant::now());
            let mut blast = Vec::new();
            for p in self.s.probes.iter().filter(|p| p.blast_radius) {
                if let Err(e) = probe(&self.opts.launcher, p).await {
                    blast.push(e);
                }
            }
            self.watch.blast = blast;
            self.watch.alerts = match &self.s.abort.prometheus {
                Some(url) => firing_alerts(url).await.unwrap_or_else(|e| vec![e]),
                None => vec![],
            };
            self.watch.failover = match self.ctx.catalog.failovers(5).await {
                Ok(rows) => rows
                    .iter()
                    .find(|f| f.status == "running" && !self.is_own_failover(f))
                    .map(|f| f.term),
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot read failovers from the catalog");
                    None
                }
            };
        }
        abort_reasons(&AbortInputs {
            elapsed: self.started.elapsed(),
            limit: self.limit,
            interrupted: self.ctx.cancel.is_cancelled(),
            blast_radius_failures: self.watch.blast.clone(),
            alerts_firing: self.watch.alerts.clone(),
            failover_running: self.watch.failover,
        })
    }

    /// Whether `f` is the failover this (failover) drill provoked.
    fn is_own_failover(&self, f: &crate::catalog::FailoverRow) -> bool {
        self.own_failover.as_ref().is_some_and(|(to, since)| {
            f.to_site == *to
                && parse_ts(&f.started_at)
                    .is_some_and(|t| t >= *since - chrono::TimeDelta::seconds(1))
        })
    }

    /// A declared step of the drill failed: the drill fails, and says why.
    fn fail(&mut self, text: String) {
        self.event("step-failed", &text);
        self.finding("critical", text.clone());
        self.failures.push(text);
    }

    /// Waits `d`, checking the abort conditions every 100 ms; false (and the reasons
    /// recorded) when the drill must abort.
    async fn hold(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if !self.aborted.is_empty() {
                return false;
            }
            let reasons = self.abort_now().await;
            if !reasons.is_empty() {
                self.event("abort", &reasons.join("; "));
                self.aborted = reasons;
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(Duration::from_millis(100))) => {}
                _ = self.ctx.cancel.cancelled() => {}
            }
        }
    }

    /// Ends the drill with `verdict` before any fault was applied.
    async fn finish_early(
        &mut self,
        verdict: &str,
        reasons: Vec<String>,
    ) -> Result<(), DrillError> {
        self.j.verdict = verdict.into();
        self.j.reasons = reasons;
        self.finish().await
    }

    async fn finish(&mut self) -> Result<(), DrillError> {
        self.j.finished_at = Some(self.now());
        let detail = format!("verdict {}", self.j.verdict);
        self.event("finished", &detail);
        self.store_journal().await;
        self.ctx.catalog.put_drill_journal(&self.j).await?;
        Ok(())
    }

    /// Writes the journal to the store (`drills/<id>/journal.json`); a failure is a finding.
    async fn store_journal(&mut self) {
        let Some((name, store)) = journal_store(self.ctx) else {
            return;
        };
        let rel = format!("drills/{}/journal.json", self.j.id);
        let bytes = match serde_json::to_vec_pretty(&self.j) {
            Ok(b) => b,
            Err(e) => {
                self.finding("warning", format!("journal not serialisable: {e}"));
                return;
            }
        };
        let text = crate::model::redact::scrub_registered(&String::from_utf8_lossy(&bytes));
        match store.put_bytes(&rel, bytes::Bytes::from(text)).await {
            Ok(w) => self.j.evidence.push(match w.version {
                Some(v) => format!("store {name}: {rel} (version {v})"),
                None => format!("store {name}: {rel}"),
            }),
            Err(e) => {
                self.finding(
                    "warning",
                    format!("the journal could not be written to store {name} at {rel}: {e}"),
                );
                let detail = format!("store {name}: {e}");
                self.event("journal-not-stored", &detail);
            }
        }
    }

    async fn go(&mut self) -> Result<(), DrillError> {
        let s: &'a Scenario = self.s;
        // Proxies first: the probes and the canary may go through them.
        for t in &s.targets {
            if let Some(p) = &t.proxy {
                match Proxy::start(&p.listen, p.upstream.clone()).await {
                    Ok(proxy) => {
                        let detail = format!("proxy {} -> {}", proxy.addr, p.upstream);
                        self.event("proxy-started", &detail);
                        self.proxies.insert(t.name.clone(), proxy);
                    }
                    Err(e) => {
                        return self
                            .finish_early(
                                "failed",
                                vec![format!(
                                    "target `{}`: cannot listen on {}: {e}; pick a free address",
                                    t.name, p.listen
                                )],
                            )
                            .await;
                    }
                }
            }
        }
        // Steady state.
        let mut failed = Vec::new();
        for p in &s.probes {
            match probe(&self.opts.launcher, p).await {
                Ok(()) => self.event("probe-before", &format!("{}: ok", p.name)),
                Err(e) => {
                    self.event("probe-before", &e);
                    failed.push(e);
                }
            }
        }
        if !failed.is_empty() {
            failed.insert(
                0,
                "the steady state does not hold before the drill: nothing was touched".into(),
            );
            return self.finish_early("failed", failed).await;
        }
        // Targets.
        let mut resolved = self.resolve();
        self.resolve_kube(&mut resolved).await;
        for r in &resolved {
            let detail = if r.targets.is_empty() {
                format!("{}: matched nothing", r.fault.name)
            } else {
                format!("{}: {}", r.fault.name, r.targets.join(", "))
            };
            self.event("targets", &detail);
            self.j.faults.push(FaultRecord {
                name: r.fault.name.clone(),
                action: action_name(r.fault.action),
                targets: r.targets.clone(),
                applied_at: None,
                reverted_at: None,
                reverted: false,
            });
        }
        let counts: Vec<(String, usize)> = resolved
            .iter()
            .map(|r| (r.fault.name.clone(), r.targets.len()))
            .collect();
        if counts.iter().any(|(_, n)| *n == 0) {
            let j = judge(
                &measure(&[], &Default::default(), self.now(), Duration::ZERO),
                &Expected::default(),
                &counts,
            );
            for r in &j.reasons {
                self.finding("warning", r.clone());
            }
            return self.finish_early(j.verdict.as_str(), j.reasons).await;
        }
        self.save().await;
        let mut failover_from = None;
        if let Some(f) = &s.failover {
            match self.failover_prepare(f).await {
                Ok(from) => {
                    for r in resolved.iter_mut() {
                        if let Some(FaultSpec::ProcessGroup { fence_site, .. }) = &mut r.spec {
                            *fence_site = Some(from.clone());
                        }
                    }
                    failover_from = Some(from);
                }
                Err(e) => return self.finish_early("failed", vec![e]).await,
            }
        }
        if resolved.iter().any(|r| {
            matches!(
                r.spec,
                Some(FaultSpec::ProcessGroup { .. } | FaultSpec::Kube { .. })
            )
        }) {
            self.spawn_watchdog();
        }
        // Canary.
        let (acks_tx, mut acks) = tokio::sync::watch::channel(None);
        let stop = tokio_util::sync::CancellationToken::new();
        let mut writer = None;
        let mut pg = None;
        if let Some(c) = &s.canary {
            let follow = super::canary::Follow::of(&c.url, &self.ctx.config.dns);
            if let Some(f) = &follow {
                let detail = format!(
                    "the canary asks {} for {} at every write (the DNS switch is measured)",
                    f.nameservers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    f.name
                );
                self.event("canary-follows-dns", &detail);
            }
            let canary = match AnyCanary::connect(&c.url, follow, &self.j.id, c.timeout).await {
                Ok(c) => Arc::new(c),
                Err(e) => return self.finish_early("failed", vec![e.to_string()]).await,
            };
            let where_ = canary.describe(&self.j.id, &crate::model::redact::url(&c.url));
            self.j.evidence.push(where_);
            writer = Some(tokio::spawn(write_observed(
                canary.clone(),
                self.ctx.clock.clone(),
                c.interval,
                c.timeout,
                stop.clone(),
                acks_tx,
            )));
            pg = Some(canary);
        }
        self.hold(self.opts.steady).await;
        // Faults, one after the other, each rolled back before the next.
        let mut fault_at = None;
        for (i, r) in resolved.iter().enumerate() {
            if !self.aborted.is_empty() {
                break;
            }
            let at = self.apply(i, r).await;
            if fault_at.is_none() {
                fault_at = at;
            }
            let store = s
                .targets
                .iter()
                .find(|t| t.name == r.fault.target)
                .and_then(|t| t.store.clone());
            if let (Some(at), Some(FaultSpec::Scratch { dir }), Some(store)) = (at, &r.spec, &store)
            {
                self.disaster = Some(self.store_fault(r.fault, store, dir, at).await);
            } else if let (Some(at), Some(FaultSpec::Scratch { dir })) = (at, &r.spec) {
                self.disaster = Some(self.restore_all(r.fault, dir, at).await);
            } else if let (Some(at), Some(f), Some(from)) = (at, &s.failover, &failover_from) {
                self.failover_phase(f, from, r.fault, at, &mut acks).await;
            } else if let (Some(at), Some(rb)) = (at, &s.runbook) {
                self.runbook_phase(rb, r.fault, at).await;
            } else if at.is_some() {
                self.hold(r.fault.duration).await;
            }
            self.revert(i, r).await;
        }
        // Recovery: the first write sent after the rollback acknowledged, a little more.
        let fault_at = fault_at.unwrap_or_else(|| self.now());
        if let Some(c) = &s.canary {
            let back_since = self.now();
            let limit = Instant::now() + s.expect.rto.unwrap_or(Duration::from_secs(60));
            self.await_ack(&mut acks, back_since, limit).await;
            tokio::time::sleep(c.interval * 5).await;
        }
        stop.cancel();
        let canaries = match writer {
            Some(w) => w.await.unwrap_or_default(),
            None => vec![],
        };
        // After: the steady state again.
        let mut after_failed = Vec::new();
        for p in &s.probes {
            match probe(&self.opts.launcher, p).await {
                Ok(()) => self.event("probe-after", &format!("{}: ok", p.name)),
                Err(e) => {
                    self.event("probe-after", &e);
                    after_failed.push(e);
                }
            }
        }
        let survived = match &pg {
            Some(pg) => {
                let mut out = Err(String::new());
                for _ in 0..10 {
                    out = pg.survivors().await.map_err(|e| e.to_string());
                    if out.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                pg.close().await;
                out
            }
            None => Ok(Default::default()),
        };
        self.conclude(&canaries, survived, fault_at, &counts, after_failed)
            .await
    }

    /// A runbook drill, with the fault active since `at`: the runbook run through the runbook
    /// runner (non-interactive, `--yes`), its run id in the journal; a failing step fails the
    /// drill. Then the rest of the fault's duration held.
    async fn runbook_phase(
        &mut self,
        spec: &super::scenario::RunbookSpec,
        fault: &Fault,
        at: DateTime<Utc>,
    ) {
        let started = Instant::now();
        let runbook = match super::runbook::find(&spec.name, &spec.vars) {
            Ok(r) => r,
            Err(e) => {
                self.fail(format!("runbook `{}`: {e}", spec.name));
                return;
            }
        };
        let runner = crate::ops::runbook::run::Runner {
            catalog: self.ctx.catalog.clone(),
            clock: self.ctx.clock.clone(),
            exe: self.opts.launcher.exe.clone(),
            global_args: self.opts.launcher.global_args.clone(),
            env: self.opts.launcher.env.clone(),
            who: self.opts.who.clone(),
            host: crate::model::host::hostname(),
            cancel: self.ctx.cancel.clone(),
            stdout_to_stderr: true,
        };
        let detail = format!(
            "runbook {} ({} step(s)), non-interactive as with --yes",
            runbook.name,
            runbook.steps.len()
        );
        self.event("runbook-start", &detail);
        let mut op = super::runbook::DrillOperator::default();
        let limit = fault.ttl();
        let result = tokio::time::timeout(limit, runner.start(&runbook, &spec.vars, &mut op)).await;
        if let Some(id) = &op.run_id {
            self.j.evidence.push(format!(
                "runbook {} run {id} (`lifeboat runbook log {id}`)",
                runbook.name
            ));
        }
        let name = runbook.name.clone();
        let resume = op.run_id.as_deref().map_or(String::new(), |id| {
            format!(", then `lifeboat runbook resume {id}` or run the drill again")
        });
        match result {
            Ok(Ok((id, crate::ops::runbook::run::Outcome::Complete))) => {
                let now = self.now();
                let ms = (now - at).num_milliseconds().max(0) as u64;
                self.runbook_done = Some((name.clone(), Some(ms)));
                self.j.timeline.push(TimelineEntry {
                    phase: "runbook".into(),
                    at: now,
                    detail: format!("runbook {name} run {id} complete"),
                });
                self.event("runbook-done", &format!("{name} run {id}: complete"));
            }
            Ok(Ok((id, crate::ops::runbook::run::Outcome::Failed { step, error }))) => {
                self.runbook_done = Some((name.clone(), None));
                self.fail(format!(
                    "runbook {name} (run {id}) failed at step `{step}`: {error}; the runbook no longer works: fix that step or what it relies on{resume}"
                ));
            }
            Ok(Ok((id, crate::ops::runbook::run::Outcome::Stopped { step, why }))) => {
                self.runbook_done = Some((name.clone(), None));
                self.fail(format!(
                    "runbook {name} (run {id}) stopped before step `{step}` completed: {why}{resume}"
                ));
            }
            Ok(Err(e)) => {
                self.runbook_done = Some((name.clone(), None));
                self.fail(format!("runbook {name} could not run: {e}"));
            }
            Err(_) => {
                self.runbook_done = Some((name.clone(), None));
                self.fail(format!(
                    "runbook {name} ran over the fault's ttl {}: it was stopped{resume}",
                    humantime::format_duration(limit)
                ));
            }
        }
        self.hold(fault.duration.saturating_sub(started.elapsed()))
            .await;
    }

    fn failover_by(&self, f: &FailoverSpec) -> FailoverBy {
        match f.by {
            FailoverBy::Auto => {
                if self
                    .ctx
                    .config
                    .failover
                    .as_ref()
                    .is_some_and(|c| c.mode == crate::policy::failover::Mode::Automatic)
                {
                    FailoverBy::Controller
                } else {
                    FailoverBy::Drill
                }
            }
            by => by,
        }
    }

    /// A failover drill, before anything is touched: `to` is a site, the primary is elsewhere
    /// and no failover is unfinished. Returns the primary site (the one the fault takes down).
    async fn failover_prepare(&mut self, f: &FailoverSpec) -> Result<String, String> {
        let sites: Vec<&str> = self
            .ctx
            .config
            .sites
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        if !sites.contains(&f.to.as_str()) {
            return Err(format!(
                "failover.to: no site `{}` in the config (sites: {}); nothing was touched",
                f.to,
                if sites.is_empty() {
                    "none: a failover drill needs `sites:` and `failover:`".to_string()
                } else {
                    sites.join(", ")
                }
            ));
        }
        let st = crate::ops::failover::status(self.ctx).await.map_err(|e| {
            format!("cannot tell which site is the primary ({e}); nothing was touched")
        })?;
        if let Some(u) = &st.unfinished {
            return Err(format!(
                "the failover of term {} to {} is unfinished: finish it first (`lifeboat failover execute --to {}`); nothing was touched",
                u.term, u.to_site, u.to_site
            ));
        }
        if st.primary == f.to {
            return Err(format!(
                "{} is already the primary site: there is nothing to fail over; name the site that should take over (e.g. --var TO_SITE=...); nothing was touched",
                f.to
            ));
        }
        if self.failover_by(f) == FailoverBy::Controller {
            let here = self
                .ctx
                .config
                .failover
                .as_ref()
                .and_then(|c| c.here(&|n| std::env::var(n).ok()));
            if here.as_deref() != Some(f.to.as_str()) {
                return Err(format!(
                    "the controllers' failover to {} is recorded in {}'s catalog, but this instance runs at {}: run the drill at {} (or `failover: {{ by: drill }}`); nothing was touched",
                    f.to,
                    f.to,
                    here.as_deref()
                        .unwrap_or("no site (failover.site / $LIFEBOAT_SITE unset)"),
                    f.to
                ));
            }
        }
        let by = match self.failover_by(f) {
            FailoverBy::Controller => "the daemons' controllers (failover.mode automatic)",
            _ => "the drill (`failover execute --to` as a declared step)",
        };
        let detail = format!(
            "primary {} (term {}) → {} by {by}",
            st.primary, st.term, f.to
        );
        self.event("failover-plan", &detail);
        Ok(st.primary)
    }

    /// A failover drill, with the primary site down since `at`: the failover done (by the
    /// drill, or waited for), its persisted steps in the timeline, the canary back through
    /// the public endpoint, then the rest of the fault's duration held.
    async fn failover_phase(
        &mut self,
        f: &FailoverSpec,
        from: &str,
        fault: &Fault,
        at: DateTime<Utc>,
        acks: &mut tokio::sync::watch::Receiver<Option<DateTime<Utc>>>,
    ) {
        let started = Instant::now();
        let deadline = started + f.timeout();
        self.own_failover = Some((f.to.clone(), at));
        let by = self.failover_by(f);
        let mut term = None;
        let mut detected_at = None;
        if by == FailoverBy::Drill {
            if !self.hold(f.after.unwrap_or_default()).await {
                return;
            }
            detected_at = Some(self.now());
            let detail = format!(
                "lifeboat failover execute --to {} --force{} (a declared step of the drill)",
                f.to,
                if f.accept_data_loss {
                    " --accept-data-loss"
                } else {
                    ""
                }
            );
            self.event("failover-execute", &detail);
            let opts = crate::ops::failover::Options {
                accept_data_loss: f.accept_data_loss,
                force: true,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, crate::ops::failover::execute(self.ctx, &f.to, &opts))
                .await
            {
                Ok(Ok(o)) => {
                    term = Some(o.term);
                    let detail = format!(
                        "term {}: {} → {} in {} ms",
                        o.term,
                        o.from,
                        o.to,
                        o.timeline.get("total").copied().unwrap_or(0)
                    );
                    self.event("failover-done", &detail);
                }
                Ok(Err(e)) => self.fail(format!(
                    "the failover to {} failed: {e}; `lifeboat failover status` shows where it stopped and `lifeboat failover execute --to {}` finishes it",
                    f.to, f.to
                )),
                Err(_) => self.fail(format!(
                    "the failover to {} did not finish within failover.timeout {}; `lifeboat failover status` shows where it stopped",
                    f.to,
                    humantime::format_duration(f.timeout())
                )),
            }
        } else {
            let detail = format!(
                "waiting up to {} for the controllers to fail over to {}",
                humantime::format_duration(f.timeout()),
                f.to
            );
            self.event("failover-wait", &detail);
            loop {
                match self.ctx.catalog.failovers(20).await {
                    Ok(rows) => {
                        if let Some(row) = rows
                            .iter()
                            .find(|r| self.is_own_failover(r) && r.status != "running")
                        {
                            if row.status == "done" {
                                term = Some(row.term);
                                let detail = format!(
                                    "term {}: {} → {} by the controllers",
                                    row.term, row.from_site, row.to_site
                                );
                                self.event("failover-done", &detail);
                            } else {
                                self.fail(format!(
                                    "the controllers' failover of term {} to {} ended {}: {}",
                                    row.term,
                                    f.to,
                                    row.status,
                                    row.error.as_deref().unwrap_or("no error recorded")
                                ));
                            }
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(cause = %e, "cannot read failovers from the catalog"),
                }
                if let Some((site, term, primary)) = self.moved_elsewhere(from, &f.to).await {
                    self.fail(format!(
                        "the controllers moved the primary to {primary} (term {term}, as {site}'s controller reports), not to {}: run the drill at {primary} (`--var` its site) or find why they preferred it (`lifeboat failover status`: lag per replica)",
                        f.to
                    ));
                    break;
                }
                if Instant::now() >= deadline {
                    self.fail(format!(
                        "no failover to {} was recorded done in this catalog within failover.timeout {}: check the daemons (`lifeboat failover status`; failover.mode automatic) and run the drill at the site that takes over, whose catalog records the failover",
                        f.to,
                        humantime::format_duration(f.timeout())
                    ));
                    break;
                }
                if !self.hold(Duration::from_millis(250)).await {
                    return;
                }
            }
        }
        if let Some(term) = term {
            self.failover_timeline(term, detected_at, by).await;
            let text = format!(
                "the old primary site {from} stays fenced (read-only) after the drill: `lifeboat failover rejoin {from}` makes it a replica of {}; failing back is then `lifeboat failover execute --to {from}`",
                f.to
            );
            self.finding("info", text);
        }
        // The service back through its public endpoint: a canary sent since the fault acked
        // (not awaited when the failover failed: the revert is what brings it back then).
        if term.is_some() {
            self.await_ack(acks, at, deadline).await;
        }
        self.hold(fault.duration.saturating_sub(started.elapsed()))
            .await;
    }

    /// The failover of `term`'s persisted steps as the drill's timeline segments: detect,
    /// decide, fence, promote, dns (each at its end, as the catalog recorded it).
    async fn failover_timeline(
        &mut self,
        term: i64,
        detected_at: Option<DateTime<Utc>>,
        by: FailoverBy,
    ) {
        let row = match self.ctx.catalog.failovers(50).await {
            Ok(rows) => rows.into_iter().find(|r| r.term == term),
            Err(e) => {
                self.finding(
                    "warning",
                    format!("the failover of term {term} could not be read back: {e}"),
                );
                return;
            }
        };
        let Some(row) = row else {
            self.finding(
                "warning",
                format!("the failover of term {term} is not in this catalog: its steps are not in the timeline"),
            );
            return;
        };
        if let Some(decided) = parse_ts(&row.started_at) {
            self.j.timeline.push(TimelineEntry {
                phase: "detect".into(),
                at: detected_at.unwrap_or(decided),
                detail: match by {
                    FailoverBy::Drill => {
                        "the drill started the failover (failover.after after the fault)".into()
                    }
                    _ => "the controllers' quorum saw the primary site down".into(),
                },
            });
            self.j.timeline.push(TimelineEntry {
                phase: "decide".into(),
                at: decided,
                detail: format!(
                    "term {term}: {} → {} ({}), recorded in the catalog",
                    row.from_site, row.to_site, row.mode
                ),
            });
        }
        for step in ["fence", "promote", "dns"] {
            if let Some(st) = row.steps.iter().find(|x| x.step == step)
                && let Some(end) = st.finished_at.as_deref().and_then(parse_ts)
            {
                self.j.timeline.push(TimelineEntry {
                    phase: step.into(),
                    at: end,
                    detail: crate::model::redact::scrub_registered(
                        st.detail.as_deref().unwrap_or(""),
                    ),
                });
            }
        }
        self.j.evidence.push(format!(
            "failover term {term}: {} → {} ({}); its steps: `lifeboat failover history`",
            row.from_site, row.to_site, row.mode
        ));
        let detail = format!("term {term} {}", row.status);
        self.event("failover-timeline", &detail);
    }

    /// Kubernetes targets: plans each fault (reads only) into the intent its revert needs;
    /// one that matches no allowed object keeps no targets (the drill is inconclusive).
    async fn resolve_kube(&mut self, resolved: &mut [Resolved<'a>]) {
        for r in resolved.iter_mut() {
            let Some(k) = self
                .s
                .targets
                .iter()
                .find(|t| t.name == r.fault.target)
                .and_then(|t| t.kubernetes.as_ref())
            else {
                continue;
            };
            let Some(action) = k.action(r.fault.action) else {
                continue;
            };
            match super::kube_fault::plan(self.ctx.kube.as_ref(), &action, &k.names).await {
                Ok(intent) => {
                    r.targets = intent.describe();
                    r.spec = Some(FaultSpec::Kube { intent });
                }
                Err(e) => {
                    tracing::warn!(fault = %r.fault.name, cause = %e, "Kubernetes fault touches nothing");
                    self.event("targets", &format!("{}: {e}", r.fault.name));
                }
            }
        }
    }

    fn resolve(&self) -> Vec<Resolved<'a>> {
        let own_pgid = proc_pgid(std::process::id());
        let s: &'a Scenario = self.s;
        s
            .faults
            .iter()
            .map(|f| {
                let mut r = Resolved {
                    fault: f,
                    spec: None,
                    targets: vec![],
                };
                let Some(t) = s.targets.iter().find(|t| t.name == f.target) else {
                    return r;
                };
                if let Some(pg) = &t.process_group {
                    let pid = match read_pidfile(&pg.pidfile) {
                        Ok(pid) if pid_alive(pid) => pid,
                        Ok(pid) => {
                            tracing::warn!(pid, pidfile = %pg.pidfile, "the pid file names no running process");
                            return r;
                        }
                        Err(e) => {
                            tracing::warn!(cause = %e, "no process group to touch");
                            return r;
                        }
                    };
                    let Some(pgid) = proc_pgid(pid).filter(|&g| g > 1) else {
                        return r;
                    };
                    if Some(pgid) == own_pgid {
                        tracing::error!(pgid, "refusing: the target's process group is lifeboat's own");
                        return r;
                    }
                    let family = group_states(pgid);
                    if family.iter().any(|(p, _)| *p == std::process::id()) {
                        tracing::error!(pgid, "refusing: lifeboat itself descends from the target's process group");
                        return r;
                    }
                    let members = family.len();
                    r.targets = vec![format!(
                        "process group {pgid} and its descendants ({members} process(es), leader {pid} from {})",
                        pg.pidfile
                    )];
                    r.spec = Some(FaultSpec::ProcessGroup {
                        pgid,
                        leader: pid,
                        pidfile: pg.pidfile.clone(),
                        pause: f.action == Action::Pause,
                        restart: pg.restart.clone(),
                        fence_site: None,
                    });
                } else if let Some(store) = &t.store {
                    if self.ctx.stores.contains_key(store) {
                        r.targets = self
                            .ctx
                            .config
                            .sources
                            .iter()
                            .filter(|s| &s.store == store)
                            .map(|s| format!("source {} on store {store}", s.name))
                            .collect();
                    } else {
                        tracing::warn!(store = %store, "no store by that name in the config");
                    }
                    r.spec = Some(FaultSpec::Scratch {
                        dir: std::env::temp_dir().join(format!("lifeboat-{}", self.j.id)),
                    });
                } else if t.all_sources {
                    r.targets = self
                        .ctx
                        .config
                        .sources
                        .iter()
                        .map(|s| format!("source {}", s.name))
                        .collect();
                    r.spec = Some(FaultSpec::Scratch {
                        dir: std::env::temp_dir().join(format!("lifeboat-{}", self.j.id)),
                    });
                } else if let Some(proxy) = self.proxies.get(&t.name) {
                    r.targets = vec![format!(
                        "connections through {} to {}",
                        proxy.addr,
                        t.proxy.as_ref().map_or("", |p| p.upstream.as_str())
                    )];
                    r.spec = Some(FaultSpec::InProcess {
                        target: t.name.clone(),
                    });
                }
                r
            })
            .collect()
    }

    /// complete-disaster: the catalog rebuilt from the stores alone into a throwaway catalog
    /// in `dir`, then every source verified from it in parallel (bounded by the fault's
    /// duration and the abort conditions).
    async fn restore_all(
        &mut self,
        fault: &Fault,
        dir: &std::path::Path,
        at: DateTime<Utc>,
    ) -> Disaster {
        let started = Instant::now();
        let url = format!("sqlite://{}", dir.join("catalog.db").display());
        let limit = started + fault.duration;
        let since = |t: Instant| t.duration_since(started).as_millis() as u64;
        let mut rebuild = self.opts.launcher.command(&["catalog", "rebuild"]);
        rebuild
            .env("LIFEBOAT_CATALOG", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let failed_all = |why: String, sources: &[crate::config::SourceConfig]| Disaster {
            total_ms: since(Instant::now()),
            restored: sources
                .iter()
                .map(|s| Restored {
                    source: s.name.clone(),
                    error: Some(why.clone()),
                    done_ms: since(Instant::now()),
                    rpo_ms: None,
                    snapshot_id: None,
                })
                .collect(),
        };
        let sources = &self.ctx.config.sources;
        match tokio::time::timeout(fault.duration, rebuild.output()).await {
            Ok(Ok(out)) if out.status.success() => {
                self.event(
                    "catalog-rebuilt",
                    &format!("throwaway catalog in {}", dir.display()),
                );
            }
            Ok(Ok(out)) => {
                let why = format!(
                    "catalog rebuild from the stores failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
                self.event("catalog-rebuilt", &why);
                return failed_all(why, sources);
            }
            Ok(Err(e)) => return failed_all(format!("cannot run catalog rebuild: {e}"), sources),
            Err(_) => {
                return failed_all(
                    "catalog rebuild ran over the fault's duration".into(),
                    sources,
                );
            }
        }
        let mut set = tokio::task::JoinSet::new();
        for source in sources {
            let mut cmd = self
                .opts
                .launcher
                .command(&["verify", &source.name, "--output", "json"]);
            cmd.env("LIFEBOAT_CATALOG", &url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let name = source.name.clone();
            set.spawn(async move {
                let out = cmd.output().await;
                (name, out, Instant::now())
            });
        }
        let mut restored = Vec::new();
        loop {
            tokio::select! {
                next = set.join_next() => {
                    let Some(joined) = next else { break };
                    let Ok((source, out, done)) = joined else { continue };
                    let (error, snapshot_id) = match out {
                        Ok(out) => {
                            let report: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
                            let snap = report.as_ref().and_then(|r| r["snapshot_id"].as_str()).map(str::to_string);
                            if out.status.success() {
                                (None, snap)
                            } else {
                                let why = report
                                    .as_ref()
                                    .and_then(|r| r["error"].as_str().map(str::to_string))
                                    .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string());
                                (Some(format!("did not restore and check out: {why}")), snap)
                            }
                        }
                        Err(e) => (Some(format!("cannot run verify: {e}")), None),
                    };
                    let detail = format!("{source}: {}", error.as_deref().unwrap_or("restored and checked"));
                    self.event("restored", &detail);
                    restored.push(Restored { source, error, done_ms: since(done), rpo_ms: None, snapshot_id });
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    let reasons = self.abort_now().await;
                    if !reasons.is_empty() {
                        self.event("abort", &reasons.join("; "));
                        self.aborted = reasons;
                        set.abort_all();
                    } else if Instant::now() > limit {
                        let text = format!("restores still running after the fault's {}", humantime::format_duration(fault.duration));
                        self.event("abort", &text);
                        self.aborted.push(text);
                        set.abort_all();
                    }
                }
            }
        }
        let total_ms = since(Instant::now());
        // The age of each snapshot restored, from the throwaway catalog.
        if let Ok(c) = crate::catalog::Catalog::open(&crate::model::SecretString::new(url)).await {
            for r in &mut restored {
                if let Some(id) = &r.snapshot_id
                    && let Ok(rows) = c.snapshots(Some(&r.source)).await
                    && let Some(row) = rows.iter().find(|s| &s.id == id)
                    && let Ok(created) = chrono::DateTime::parse_from_rfc3339(&row.created_at)
                {
                    r.rpo_ms =
                        Some((at - created.with_timezone(&Utc)).num_milliseconds().max(0) as u64);
                    self.j
                        .evidence
                        .push(format!("snapshot {id} ({})", r.source));
                }
            }
            c.close().await;
        }
        for s in sources {
            if !restored.iter().any(|r| r.source == s.name) {
                restored.push(Restored {
                    source: s.name.clone(),
                    error: Some("not restored (aborted)".into()),
                    done_ms: total_ms,
                    rpo_ms: None,
                    snapshot_id: None,
                });
            }
        }
        restored.sort_by(|a, b| a.source.cmp(&b.source));
        Disaster { total_ms, restored }
    }

    /// Runs `lifeboat ARGS` with `env`, bounded by `limit`: (exited 0, stdout as JSON if it
    /// is, the last line of stderr, when it ended).
    async fn lifeboat(
        &self,
        args: &[&str],
        env: &[(&str, String)],
        limit: Duration,
    ) -> (bool, Option<serde_json::Value>, String, Instant) {
        let mut cmd = self.opts.launcher.command(args);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match tokio::time::timeout(limit, cmd.output()).await {
            Ok(Ok(out)) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string();
                (
                    out.status.success(),
                    serde_json::from_slice(&out.stdout).ok(),
                    crate::model::redact::scrub_registered(&last),
                    Instant::now(),
                )
            }
            Ok(Err(e)) => (
                false,
                None,
                format!("cannot run lifeboat: {e}"),
                Instant::now(),
            ),
            Err(_) => (
                false,
                None,
                format!(
                    "lifeboat {} ran over {}",
                    args.join(" "),
                    humantime::format_duration(limit)
                ),
                Instant::now(),
            ),
        }
    }

    /// A store fault (see the module doc), source by source; one [`Restored`] each.
    async fn store_fault(
        &mut self,
        fault: &Fault,
        store: &str,
        dir: &std::path::Path,
        at: DateTime<Utc>,
    ) -> Disaster {
        use crate::store::{DRILL_FAULT_ENV, DrillFault};
        let started = Instant::now();
        let since = |t: Instant| t.duration_since(started).as_millis() as u64;
        let limit = fault.ttl();
        let url = format!("sqlite://{}", dir.join("catalog.db").display());
        let sources: Vec<String> = self
            .ctx
            .config
            .sources
            .iter()
            .filter(|s| s.store == store)
            .map(|s| s.name.clone())
            .collect();
        let mut restored = Vec::new();
        if fault.action == Action::Unavailable {
            let env = [(DRILL_FAULT_ENV, DrillFault::Unavailable.env_value(store))];
            for src in &sources {
                let (ok, _, why, _) = self.lifeboat(&["backup", src], &env, limit).await;
                let detail = if ok {
                    format!("{src}: a backup SUCCEEDED while the store was unavailable")
                } else {
                    format!("{src}: the backup failed loudly: {why}")
                };
                self.event("observed", &detail);
                if ok {
                    self.finding("critical", detail);
                }
            }
            let rest = fault.duration.saturating_sub(started.elapsed());
            self.hold(rest).await;
            // From here on the commands run without the fault.
            self.event(
                "fault-lifted",
                &format!("store {store} available again to lifeboat"),
            );
            for src in &sources {
                let (ok, _, why, done) = self.lifeboat(&["backup", src], &[], limit).await;
                let error = (!ok).then(|| format!("no backup after the outage: {why}"));
                let detail = format!("{src}: {}", error.as_deref().unwrap_or("backed up again"));
                self.event("recovered", &detail);
                restored.push(Restored {
                    source: src.clone(),
                    error,
                    done_ms: since(done),
                    rpo_ms: None,
                    snapshot_id: None,
                });
            }
            return Disaster {
                total_ms: since(Instant::now()),
                restored,
            };
        }
        // corrupt / hide-latest: each source's newest complete snapshot and the one before.
        let mut newest = BTreeMap::new();
        for src in &sources {
            let rows = self
                .ctx
                .catalog
                .snapshots(Some(src))
                .await
                .unwrap_or_default();
            let complete: Vec<_> = rows
                .iter()
                .filter(|r| r.status == crate::catalog::Status::Complete)
                .collect();
            let n = complete.len();
            newest.insert(
                src.clone(),
                (
                    complete.last().map(|r| r.id.clone()),
                    (n >= 2).then(|| {
                        (
                            complete[n - 2].id.clone(),
                            complete[n - 2].created_at.clone(),
                        )
                    }),
                ),
            );
        }
        let faults: Vec<String> = newest
            .iter()
            .filter_map(|(src, (id, _))| {
                let dir = crate::model::snapshot::dir(src, id.as_deref()?);
                Some(
                    match fault.action {
                        Action::Corrupt => DrillFault::Corrupt(format!("{dir}/")),
                        _ => DrillFault::Hide(format!("{dir}/")),
                    }
                    .env_value(store),
                )
            })
            .collect();
        let env = [
            (DRILL_FAULT_ENV, faults.join(",")),
            ("LIFEBOAT_CATALOG", url.clone()),
        ];
        // The throwaway catalog, from the store as the fault shows it.
        let rebuild_env: &[(&str, String)] = if fault.action == Action::HideLatest {
            &env
        } else {
            &env[1..]
        };
        let (ok, _, why, _) = self
            .lifeboat(&["catalog", "rebuild"], rebuild_env, limit)
            .await;
        if !ok {
            let error = Some(format!("catalog rebuild from the store failed: {why}"));
            return Disaster {
                total_ms: since(Instant::now()),
                restored: sources
                    .iter()
                    .map(|s| Restored {
                        source: s.clone(),
                        error: error.clone(),
                        done_ms: since(Instant::now()),
                        rpo_ms: None,
                        snapshot_id: None,
                    })
                    .collect(),
            };
        }
        for src in &sources {
            let (latest, previous) = newest.get(src).cloned().unwrap_or((None, None));
            let mut error = None;
            let mut snapshot_id = None;
            let mut rpo_ms = None;
            let mut done = Instant::now();
            if fault.action == Action::Corrupt
                && let Some(latest) = &latest
            {
                let (ok, report, why, _) = self
                    .lifeboat(&["verify", latest, "--output", "json"], &env, limit)
                    .await;
                let why = report
                    .as_ref()
                    .and_then(|r| r["error"].as_str())
                    .map_or(why, str::to_string);
                let detail = if ok {
                    format!("{src}: the corrupt snapshot {latest} VERIFIED as good")
                } else {
                    format!("{src}: the corrupt snapshot {latest} was refused: {why}")
                };
                self.event("observed", &detail);
                if ok {
                    self.finding("critical", detail.clone());
                    error = Some(detail);
                }
            }
            let fallback = match fault.action {
                Action::Corrupt => previous.as_ref().map(|(id, _)| id.clone()),
                _ => Some(src.clone()),
            };
            match fallback {
                None => {
                    error.get_or_insert_with(|| {
                        "no older complete snapshot to fall back on".to_string()
                    });
                }
                Some(what) => {
                    let (ok, report, why, end) = self
                        .lifeboat(&["verify", &what, "--output", "json"], &env, limit)
                        .await;
                    done = end;
                    let id = report
                        .as_ref()
                        .and_then(|r| r["snapshot_id"].as_str())
                        .map(str::to_string);
                    if !ok {
                        error.get_or_insert(format!("the fallback did not restore: {why}"));
                    } else if id.is_some() && id == latest {
                        error.get_or_insert(format!(
                            "the hidden snapshot {} was restored anyway",
                            latest.clone().unwrap_or_default()
                        ));
                    }
                    let created = previous
                        .as_ref()
                        .filter(|(pid, _)| Some(pid) == id.as_ref())
                        .and_then(|(_, c)| chrono::DateTime::parse_from_rfc3339(c).ok());
                    rpo_ms = created
                        .map(|c| (at - c.with_timezone(&Utc)).num_milliseconds().max(0) as u64);
                    if let Some(id) = &id {
                        self.j
                            .evidence
                            .push(format!("snapshot {id} ({src}) restored instead"));
                    }
                    snapshot_id = id;
                }
            }
            let detail = format!(
                "{src}: {}",
                error
                    .as_deref()
                    .unwrap_or("fell back to the previous snapshot")
            );
            self.event("restored", &detail);
            restored.push(Restored {
                source: src.clone(),
                error,
                done_ms: since(done),
                rpo_ms,
                snapshot_id,
            });
        }
        Disaster {
            total_ms: since(Instant::now()),
            restored,
        }
    }

    fn spawn_watchdog(&mut self) {
        let mut cmd = match crate::kinds::process::find_program(None, "setsid") {
            Some(setsid) => {
                let mut c = std::process::Command::new(setsid);
                c.arg(&self.opts.launcher.exe);
                c
            }
            None => std::process::Command::new(&self.opts.launcher.exe),
        };
        use std::os::unix::process::CommandExt;
        cmd.args(&self.opts.launcher.global_args)
            .args(["drill", "watchdog", &self.j.id])
            .envs(self.opts.launcher.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        match cmd.spawn() {
            Ok(child) => {
                let detail = format!("watchdog pid {} reverts any fault past its TTL", child.id());
                self.event("watchdog", &detail);
            }
            Err(e) => {
                let text = format!(
                    "no watchdog could be started ({e}): a fault would outlive this process if it died; the next `lifeboat drill` reverts it"
                );
                self.finding("warning", text.clone());
                self.event("watchdog", &text);
            }
        }
    }

    /// Persists the intent, then applies fault `i`; its time when applied.
    async fn apply(&mut self, i: usize, r: &Resolved<'_>) -> Option<DateTime<Utc>> {
        let spec = r.spec.as_ref()?;
        let ttl_at = self.now() + chrono::TimeDelta::from_std(r.fault.ttl()).unwrap_or_default();
        let spec_json = serde_json::to_value(spec).unwrap_or_default();
        if let Err(e) = self
            .ctx
            .catalog
            .drill_fault_intent(
                &self.j.id,
                &r.fault.name,
                &action_name(r.fault.action),
                &spec_json,
                ttl_at,
            )
            .await
        {
            // No persisted intent: the fault is not applied.
            let text = format!(
                "fault {} not applied: its intent could not be recorded: {e}",
                r.fault.name
            );
            self.event("abort", &text);
            self.aborted.push(text);
            return None;
        }
        let detail = format!("{} until {}", r.fault.name, crate::catalog::ts(ttl_at));
        self.event("fault-intent", &detail);
        self.save().await;
        let result = match spec {
            FaultSpec::ProcessGroup { pgid, pause, .. } => signal_family(
                *pgid,
                if *pause {
                    rustix::process::Signal::STOP
                } else {
                    rustix::process::Signal::KILL
                },
            ),
            FaultSpec::Scratch { dir } => std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display())),
            FaultSpec::Kube { intent } => super::kube_fault::apply(self.ctx.kube.as_ref(), intent)
                .await
                .map_err(|e| e.to_string()),
            FaultSpec::InProcess { target } => match self.proxies.get(target) {
                Some(p) => {
                    p.set(match r.fault.action {
                        Action::Blackhole => Mode::Blackhole,
                        Action::Reset => Mode::Reset,
                        _ => Mode::Delay(r.fault.delay.unwrap_or(Duration::from_millis(500))),
                    });
                    Ok(())
                }
                None => Err(format!("no proxy for target {target}")),
            },
        };
        let at = self.now();
        match result {
            Ok(()) => {
                if let Err(e) = self
                    .ctx
                    .catalog
                    .drill_fault_applied(&self.j.id, &r.fault.name, at)
                    .await
                {
                    self.save_errors.push(e.to_string());
                }
                self.j.faults[i].applied_at = Some(at);
                self.j.timeline.push(TimelineEntry {
                    phase: "fault".into(),
                    at,
                    detail: format!("{} {}", action_name(r.fault.action), r.targets.join(", ")),
                });
                let detail = format!("{}: {}", r.fault.name, r.targets.join(", "));
                self.event("fault-applied", &detail);
                self.save().await;
                Some(at)
            }
            Err(e) => {
                let text = format!("fault {} could not be applied: {e}", r.fault.name);
                self.finding("warning", text.clone());
                self.event("fault-not-applied", &text);
                self.j.faults[i].targets.clear();
                None
            }
        }
    }

    /// Reverts fault `i` until a probe confirms it (or its TTL passes: then the watchdog
    /// keeps trying and the drill records it not reverted).
    async fn revert(&mut self, i: usize, r: &Resolved<'_>) {
        let Some(spec) = &r.spec else { return };
        if let FaultSpec::InProcess { target } = spec
            && let Some(p) = self.proxies.get(target)
        {
            p.set(Mode::Pass);
        }
        let deadline = Instant::now() + r.fault.ttl();
        let mut wait = Duration::from_millis(100);
        loop {
            let outcome = match spec {
                FaultSpec::InProcess { target } => match self.proxies.get(target) {
                    Some(p) if p.mode() == Mode::Pass => Ok(format!("proxy {} passes", p.addr)),
                    Some(p) => Err(format!("proxy {} is still {:?}", p.addr, p.mode())),
                    None => Ok("proxy gone".into()),
                },
                other => revert_fault(other, self.ctx).await,
            };
            match outcome {
                Ok(how) => {
                    let at = self.now();
                    match self
                        .ctx
                        .catalog
                        .drill_fault_reverted(&self.j.id, &r.fault.name, "drill", at)
                        .await
                    {
                        Ok(_) => {}
                        Err(e) => self.save_errors.push(e.to_string()),
                    }
                    self.j.faults[i].reverted = true;
                    self.j.faults[i].reverted_at = Some(at);
                    self.j.timeline.push(TimelineEntry {
                        phase: "rollback".into(),
                        at,
                        detail: format!("{}: {how}", r.fault.name),
                    });
                    self.event("fault-reverted", &format!("{}: {how}", r.fault.name));
                    self.save().await;
                    return;
                }
                Err(e) => {
                    let _ = self
                        .ctx
                        .catalog
                        .drill_fault_attempt(&self.j.id, &r.fault.name, &e)
                        .await;
                    self.event("revert-unconfirmed", &format!("{}: {e}", r.fault.name));
                    if Instant::now() >= deadline {
                        let text = format!(
                            "fault {} is NOT confirmed reverted ({e}); the watchdog keeps trying; check the target by hand",
                            r.fault.name
                        );
                        self.finding("critical", text);
                        self.save().await;
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn conclude(
        &mut self,
        canaries: &[Canary],
        survived: Result<std::collections::BTreeSet<u64>, String>,
        fault_at: DateTime<Utc>,
        counts: &[(String, usize)],
        after_failed: Vec<String>,
    ) -> Result<(), DrillError> {
        let s: &'a Scenario = self.s;
        let resolution = s.canary.as_ref().map_or(Duration::ZERO, |c| c.interval);
        let expected = Expected {
            rpo: s.expect.rpo,
            rto: s.expect.rto,
        };
        let mut reasons = Vec::new();
        let survived = match survived {
            Ok(s) => Some(s),
            Err(e) => {
                reasons.push(format!(
                    "the surviving canaries could not be read back: {e}"
                ));
                None
            }
        };
        let mut m = measure(
            canaries,
            survived.as_ref().unwrap_or(&Default::default()),
            fault_at,
            resolution,
        );
        if let Some(d) = &self.disaster {
            // Measured by the restores, not by canaries: RTO is the total time (every source
            // back), RPO the oldest snapshot restored; one "write" per source.
            let ok = d.restored.iter().filter(|r| r.error.is_none()).count();
            m.rto_ms = (ok == d.restored.len()).then_some(d.total_ms);
            m.rpo_ms = d
                .restored
                .iter()
                .map(|r| r.rpo_ms)
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max());
            m.resolution_ms = 1;
            m.sent = d.restored.len();
            m.acknowledged = ok;
        }
        if let (None, None, Some((_, done))) =
            (&s.canary, &self.disaster, self.runbook_done.clone())
        {
            // Measured by the runbook: RTO is the fault to the run complete (no canary, no RPO).
            m.rto_ms = done;
            m.rpo_ms = None;
            m.resolution_ms = 1;
            m.sent = 1;
            m.acknowledged = usize::from(done.is_some());
        }
        let judgement = judge(&m, &expected, counts);
        let mut verdict = judgement.verdict.as_str().to_string();
        if let (None, None, Some((name, done))) =
            (&s.canary, &self.disaster, self.runbook_done.clone())
        {
            self.j.services.push(ServiceMeasure {
                service: format!("runbook {name}"),
                rto_seconds: done.map(|ms| ms as f64 / 1000.0),
                rpo_seconds: None,
                rto_objective_seconds: s.expect.rto.map(|d| d.as_secs_f64()),
                rpo_objective_seconds: s.expect.rpo.map(|d| d.as_secs_f64()),
                verdict: if done.is_some() {
                    verdict.clone()
                } else {
                    "failed".into()
                },
            });
        }
        if let Some(d) = self.disaster.clone() {
            let secs = |v: Option<u64>| v.map(|ms| ms as f64 / 1000.0);
            for r in &d.restored {
                let one = crate::policy::drill::Measurement {
                    rpo_ms: r.rpo_ms,
                    rto_ms: r.error.is_none().then_some(r.done_ms),
                    resolution_ms: 1,
                    gaps: vec![],
                    lost: vec![],
                    indeterminate: 0,
                    acknowledged: usize::from(r.error.is_none()),
                    sent: 1,
                };
                let v = judge(&one, &expected, counts).verdict;
                self.j.services.push(ServiceMeasure {
                    service: r.source.clone(),
                    rto_seconds: secs(one.rto_ms),
                    rpo_seconds: secs(r.rpo_ms),
                    rto_objective_seconds: s.expect.rto.map(|d| d.as_secs_f64()),
                    rpo_objective_seconds: s.expect.rpo.map(|d| d.as_secs_f64()),
                    verdict: v.as_str().into(),
                });
                if let Some(e) = &r.error {
                    reasons.push(format!("source {}: {e}", r.source));
                    self.finding("critical", format!("source {} {e}", r.source));
                }
            }
            self.j.timeline.push(TimelineEntry {
                phase: "first-write".into(),
                at: fault_at + chrono::TimeDelta::milliseconds(d.total_ms as i64),
                detail: format!(
                    "{} of {} source(s) restored and checked in {} ms",
                    d.restored.iter().filter(|r| r.error.is_none()).count(),
                    d.restored.len(),
                    d.total_ms
                ),
            });
        }
        if let Some(c) = &s.canary {
            let secs = |v: Option<u64>| v.map(|ms| ms as f64 / 1000.0);
            self.j.services.push(ServiceMeasure {
                service: crate::model::redact::url(&c.url),
                rto_seconds: secs(m.rto_ms),
                rpo_seconds: secs(m.rpo_ms),
                rto_objective_seconds: s.expect.rto.map(|d| d.as_secs_f64()),
                rpo_objective_seconds: s.expect.rpo.map(|d| d.as_secs_f64()),
                verdict: verdict.clone(),
            });
            let lost: std::collections::BTreeSet<u64> = m.lost.iter().copied().collect();
            self.j.canary = Some(CanaryStrip {
                resolution_ms: m.resolution_ms,
                sent: m.sent,
                acknowledged: m.acknowledged,
                lost: m.lost.len(),
                indeterminate: m.indeterminate,
                writes: canaries
                    .iter()
                    .map(|w| CanaryWrite {
                        seq: w.seq,
                        sent_at: w.sent_at,
                        outcome: match w.ack {
                            _ if lost.contains(&w.seq) => "lost",
                            Ack::Acknowledged { .. } => "acknowledged",
                            Ack::Timeout => "indeterminate",
                            Ack::Failed => "failed",
                        }
                        .into(),
                    })
                    .collect(),
            });
            if let Some(first) = canaries
                .iter()
                .filter(|w| w.sent_at >= fault_at)
                .filter_map(|w| match w.ack {
                    Ack::Acknowledged { at } => Some(at),
                    _ => None,
                })
                .min()
            {
                self.j.timeline.push(TimelineEntry {
                    phase: "first-write".into(),
                    at: first,
                    detail: format!("RTO {} ms ±{} ms", m.rto_ms.unwrap_or(0), m.resolution_ms),
                });
            }
            if !m.gaps.is_empty() {
                self.finding(
                    "critical",
                    format!("integrity: acknowledged canaries {:?} are missing inside the surviving sequence", m.gaps),
                );
            }
        }
        self.j.timeline.sort_by_key(|t| t.at);
        reasons.extend(judgement.reasons);
        if !after_failed.is_empty() {
            verdict = "failed".into();
            reasons.push("the steady state does not hold after the drill:".into());
            reasons.extend(after_failed);
        }
        let unreverted: Vec<String> = self
            .j
            .faults
            .iter()
            .filter(|f| f.applied_at.is_some() && !f.reverted)
            .map(|f| f.name.clone())
            .collect();
        if !unreverted.is_empty() {
            verdict = "failed".into();
            reasons.push(format!(
                "fault(s) {} not confirmed reverted: check the targets by hand",
                unreverted.join(", ")
            ));
        }
        if !self.failures.is_empty() {
            verdict = "failed".into();
            reasons.splice(0..0, self.failures.iter().cloned());
        }
        if !self.aborted.is_empty() {
            verdict = "aborted".into();
            let why = self.aborted.join("; ");
            reasons.insert(0, format!("aborted and rolled back: {why}"));
            self.finding("warning", format!("aborted: {why}"));
        }
        if !self.save_errors.is_empty() {
            let text = format!(
                "catalog writes failed during the drill: {}",
                self.save_errors.join("; ")
            );
            self.finding("warning", text);
        }
        let info: Vec<String> = reasons.clone();
        for r in info {
            self.finding("info", r);
        }
        self.j.verdict = verdict;
        self.j.reasons = reasons;
        self.finish().await
    }
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn action_name(a: Action) -> String {
    serde_yaml::to_value(format!("{a:?}"))
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .map(|s| {
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    out.push('-');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        })
        .unwrap_or_default()
}

/// Where journals go: the store of the first source, else the first store.
fn journal_store(ctx: &Ctx) -> Option<(&str, &crate::store::Store)> {
    let name = ctx
        .config
        .sources
        .first()
        .map(|s| s.store.as_str())
        .or_else(|| ctx.config.stores.keys().next().map(String::as_str))?;
    ctx.stores.get(name).map(|s| (name, s))
}

// ---------------------------------------------------------------------------------------
// Watchdog and sweep

/// `lifeboat drill watchdog ID`: until drill `id` is over and every fault of it reverted,
/// reverts each fault whose TTL passed or whose drill died. Runs detached from the drill.
pub async fn watchdog(ctx: &Ctx, id: &str) -> Result<(), DrillError> {
    let give_up = Instant::now() + MAX_TTL + Duration::from_secs(600);
    let host = crate::model::host::hostname();
    loop {
        let step = async {
            let run = ctx
                .catalog
                .drill_run(id)
                .await?
                .ok_or_else(|| DrillError::NotFound { id: id.into() })?;
            let faults = ctx.catalog.drill_faults(id).await?;
            let alive = run.status == "running"
                && (run.host != host || pid_alive(u32::try_from(run.pid).unwrap_or(0)));
            let now = ctx.now();
            for f in faults.iter().filter(|f| !f.reverted()) {
                if alive && now < f.ttl_at {
                    continue;
                }
                let Ok(spec) = serde_json::from_value::<FaultSpec>(f.spec.clone()) else {
                    tracing::error!(fault = %f.fault, "unreadable fault spec: revert it by hand");
                    continue;
                };
                match revert_fault(&spec, ctx).await {
                    Ok(how) => {
                        if ctx
                            .catalog
                            .drill_fault_reverted(id, &f.fault, "watchdog", ctx.now())
                            .await?
                        {
                            tracing::warn!(fault = %f.fault, drill_alive = alive, "watchdog reverted: {how}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(fault = %f.fault, cause = %e, "revert not confirmed yet");
                        ctx.catalog.drill_fault_attempt(id, &f.fault, &e).await?;
                    }
                }
            }
            let faults = ctx.catalog.drill_faults(id).await?;
            let pending: Vec<String> = faults
                .iter()
                .filter(|f| !f.reverted())
                .map(|f| f.fault.clone())
                .collect();
            Ok::<_, DrillError>((alive, pending))
        };
        match step.await {
            Ok((alive, pending)) => {
                if !alive && pending.is_empty() {
                    return Ok(());
                }
                if Instant::now() > give_up {
                    return Err(DrillError::GaveUp {
                        id: id.into(),
                        faults: pending.join(", "),
                    });
                }
            }
            Err(DrillError::NotFound { id }) => return Err(DrillError::NotFound { id }),
            Err(e) => tracing::warn!(cause = %e, "watchdog: catalog not readable; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Drills left `running` by a process that died (on this host; elsewhere once older than
/// twice the longest TTL): their faults reverted where a probe confirms it, and the drill
/// recorded `aborted`. Returns the drills it recorded aborted.
pub async fn sweep(ctx: &Ctx) -> Result<Vec<String>, DrillError> {
    let host = crate::model::host::hostname();
    let mut out = Vec::new();
    for run in ctx.catalog.drill_runs_running().await? {
        let pid = u32::try_from(run.pid).unwrap_or(0);
        let dead = if run.host == host {
            pid != std::process::id() && !pid_alive(pid)
        } else {
            ctx.now() - run.started_at
                > chrono::TimeDelta::from_std(MAX_TTL * 2).unwrap_or_default()
        };
        if !dead {
            continue;
        }
        let faults = ctx.catalog.drill_faults(&run.id).await?;
        let mut unreverted = Vec::new();
        for f in faults.iter().filter(|f| !f.reverted()) {
            let outcome = match serde_json::from_value::<FaultSpec>(f.spec.clone()) {
                Ok(spec) => revert_fault(&spec, ctx).await,
                Err(e) => Err(format!("unreadable fault spec: {e}")),
            };
            match outcome {
                Ok(_) => {
                    ctx.catalog
                        .drill_fault_reverted(&run.id, &f.fault, "sweep", ctx.now())
                        .await?;
                }
                Err(e) => {
                    ctx.catalog
                        .drill_fault_attempt(&run.id, &f.fault, &e)
                        .await?;
                    unreverted.push(format!("{}: {e}", f.fault));
                }
            }
        }
        let faults = ctx.catalog.drill_faults(&run.id).await?;
        let Some(mut j) = ctx.catalog.drill_journal(&run.id).await? else {
            continue;
        };
        for f in &faults {
            if let Some(rec) = j.faults.iter_mut().find(|r| r.name == f.fault) {
                rec.applied_at = rec.applied_at.or(f.applied_at);
                if f.reverted() {
                    rec.reverted = true;
                    rec.reverted_at = f.reverted_at;
                }
            }
            if f.reverted() && f.reverted_by.as_deref() != Some("drill") {
                let at = f.reverted_at.unwrap_or_else(|| ctx.now());
                let detail = format!(
                    "{} reverted by the {}",
                    f.fault,
                    f.reverted_by.as_deref().unwrap_or("?")
                );
                j.push_event(at, "fault-reverted", &detail);
                j.timeline.push(TimelineEntry {
                    phase: "rollback".into(),
                    at,
                    detail,
                });
            }
        }
        let why = format!(
            "the drill process (pid {} on {}) died before it finished; recorded aborted by {}",
            run.pid, run.host, host
        );
        j.verdict = "aborted".into();
        j.reasons.insert(0, why.clone());
        j.findings.push(JournalFinding {
            severity: "warning".into(),
            text: why.clone(),
        });
        for u in &unreverted {
            j.findings.push(JournalFinding {
                severity: "critical".into(),
                text: format!("fault {u} is NOT reverted: revert it by hand"),
            });
        }
        let now = ctx.now();
        j.finished_at = Some(now);
        j.push_event(now, "aborted", &why);
        ctx.catalog.put_drill_journal(&j).await?;
        if let Some((name, store)) = journal_store(ctx) {
            let rel = format!("drills/{}/journal.json", j.id);
            if let Ok(bytes) = serde_json::to_vec_pretty(&j)
                && let Err(e) = store.put_bytes(&rel, bytes::Bytes::from(bytes)).await
            {
                tracing::warn!(store = name, cause = %e, "aborted drill's journal not written to the store");
            }
        }
        tracing::warn!(drill = %run.id, "{why}");
        out.push(run.id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_the_scenario_words() {
        assert_eq!(action_name(Action::Pause), "pause");
        assert_eq!(action_name(Action::HideLatest), "hide-latest");
        assert_eq!(action_name(Action::RestoreAll), "restore-all");
    }

    #[test]
    fn own_process_is_alive_and_in_a_group() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(proc_pgid(me).is_some());
        assert!(!pid_alive(0));
    }

    #[tokio::test]
    async fn in_process_faults_need_no_revert() {
        let spec = FaultSpec::InProcess {
            target: "db".into(),
        };
        assert!(
            revert_once(&spec, &crate::kube::fake::Fake::default())
                .await
                .is_ok()
        );
        let text = serde_json::to_value(&spec).expect("json");
        assert_eq!(text["type"], "in-process");
    }

    /// A drill that dies (or hangs) with a node cordoned: the watchdog, from the persisted
    /// intent alone, uncordons it once the TTL has passed and records it reverted only after
    /// re-reading the node.
    #[tokio::test]
    async fn the_watchdog_reverts_a_kubernetes_fault_past_its_ttl() {
        use crate::kube::NODE;
        let (_dir, ctx, fake) = kube_ctx(true).await;
        let action = super::super::kube_fault::KubeAction::CordonEvict {
            selector: String::new(),
            namespace: "shop".into(),
            limit: Some(1),
        };
        let intent = super::super::kube_fault::plan(fake.as_ref(), &action, &[])
            .await
            .expect("plan");
        let now = ctx.now();
        let j = DrillJournal::start("drill-k1", "node-loss", "node", now, "test");
        ctx.catalog.put_drill_journal(&j).await.expect("journal");
        let spec = serde_json::to_value(FaultSpec::Kube {
            intent: intent.clone(),
        })
        .expect("spec");
        // The TTL is already over: the drill "hangs" past it.
        let ttl_at = now - chrono::TimeDelta::seconds(1);
        ctx.catalog
            .drill_fault_intent("drill-k1", "cordon", "cordon-evict", &spec, ttl_at)
            .await
            .expect("intent");
        super::super::kube_fault::apply(fake.as_ref(), &intent)
            .await
            .expect("apply");
        ctx.catalog
            .drill_fault_applied("drill-k1", "cordon", now)
            .await
            .expect("applied");
        assert_eq!(
            fake.object(&NODE, "", "n1").expect("n1")["spec"]["unschedulable"],
            true
        );
        // The drill (this process) is alive, so the watchdog keeps watching: stop it after
        // it had time for a few rounds.
        let _ = tokio::time::timeout(Duration::from_secs(2), watchdog(&ctx, "drill-k1")).await;
        assert!(fake.object(&NODE, "", "n1").expect("n1")["spec"]["unschedulable"].is_null());
        let faults = ctx.catalog.drill_faults("drill-k1").await.expect("faults");
        assert!(faults[0].reverted(), "{faults:?}");
        assert_eq!(faults[0].reverted_by.as_deref(), Some("watchdog"));
        // The revert re-read the node (the probe) after patching it.
        let calls: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.kind == "Node" && c.name == "n1")
            .map(|c| c.verb)
            .collect();
        assert_eq!(calls, ["patch", "patch", "get"]);
    }

    /// A catalog in a temp dir and the contract fake with nodes n1, n2 (labelled allowed when
    /// `allowed`) and pod db-0 (labelled) on n1.
    async fn kube_ctx(
        allowed: bool,
    ) -> (
        tempfile::TempDir,
        Ctx,
        std::sync::Arc<crate::kube::fake::Fake>,
    ) {
        use crate::kube::{CHAOS_LABEL, NODE, POD, fake::Fake};
        use serde_json::json;
        let dir = tempfile::tempdir().expect("temp dir");
        let recipient = crate::pipeline::crypto::generate_identity_file(
            &dir.path().join("age.key"),
            crate::model::clock::system().now(),
        )
        .expect("age key");
        let yaml = format!(
            "catalog: \"sqlite://{d}/catalog.db\"\nencryption:\n  recipients: [\"{recipient}\"]\n  identity_file: \"{d}/age.key\"\nstores:\n  local: {{ url: \"file://{d}/store\" }}\nsources:\n  - name: s\n    kind: files\n    path: \"{d}\"\n    store: local\n",
            d = dir.path().display()
        );
        let config =
            crate::config::Config::parse(&yaml, &dir.path().join("lifeboat.yaml")).expect("config");
        let mut ctx = Ctx::open(config).await.expect("ctx");
        let fake = std::sync::Arc::new(Fake::default());
        let labels = if allowed {
            json!({ CHAOS_LABEL.0: CHAOS_LABEL.1, "topology.kubernetes.io/zone": "a" })
        } else {
            json!({ "topology.kubernetes.io/zone": "a" })
        };
        for n in ["n1", "n2"] {
            fake.seed(
                &NODE,
                "",
                json!({ "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": n, "labels": labels }, "spec": {} }),
            );
        }
        fake.seed(
            &POD,
            "shop",
            json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "db-0", "labels": { CHAOS_LABEL.0: CHAOS_LABEL.1 } },
            "spec": { "nodeName": "n1" } }),
        );
        ctx.kube = fake.clone();
        (dir, ctx, fake)
    }

    fn node_loss() -> Scenario {
        let (_, text) = crate::ops::drill::SHIPPED
            .iter()
            .find(|(n, _)| *n == "node-loss")
            .expect("shipped node-loss");
        // The shipped scenario, without its canary and probe, for one second.
        let text = text
            .lines()
            .filter(|l| {
                !l.starts_with("canary:")
                    && !l.starts_with("probes:")
                    && !l.contains("name: config")
            })
            .collect::<Vec<_>>()
            .join("\n")
            .replace("duration: 1m", "duration: 1s");
        let vars = [
            ("NAMESPACE".to_string(), "shop".to_string()),
            (
                "NODE_SELECTOR".to_string(),
                "topology.kubernetes.io/zone=a".to_string(),
            ),
        ]
        .into();
        Scenario::load("node-loss", &text, &vars).expect("scenario")
    }

    fn opts() -> Options {
        Options {
            launcher: Launcher {
                exe: "/bin/true".into(),
                global_args: vec![],
                env: vec![],
            },
            who: "test@host".into(),
            steady: Duration::from_millis(10),
        }
    }

    /// Issue 12: a fault that matches nothing makes the drill inconclusive, never passed,
    /// and nothing is touched.
    #[tokio::test]
    async fn node_loss_with_no_labelled_node_is_inconclusive_and_touches_nothing() {
        let (_dir, ctx, fake) = kube_ctx(false).await;
        let j = run(&ctx, "node-loss", &node_loss(), &opts())
            .await
            .expect("drill");
        assert_eq!(j.verdict, "inconclusive", "{:?}", j.reasons);
        let touched: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| !["get", "list"].contains(&c.verb))
            .collect();
        assert!(touched.is_empty(), "{touched:?}");
    }

    /// node-loss cordons one labelled node and evicts its labelled pod, then uncordons it and
    /// records the fault reverted only after re-reading the node.
    #[tokio::test]
    async fn node_loss_cordons_evicts_and_reverts_after_the_probe() {
        use crate::kube::NODE;
        let (_dir, ctx, fake) = kube_ctx(true).await;
        let j = run(&ctx, "node-loss", &node_loss(), &opts())
            .await
            .expect("drill");
        assert_eq!(j.faults.len(), 1);
        assert!(j.faults[0].reverted, "{:?}", j.faults);
        assert_eq!(
            j.faults[0].targets,
            ["cordon node n1", "evict pod shop/db-0"]
        );
        let calls: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| !["list"].contains(&c.verb))
            .map(|c| (c.verb, c.kind, c.name))
            .collect();
        assert_eq!(
            calls,
            [
                ("patch", "Node", "n1".to_string()),
                ("create", "Eviction", "db-0".to_string()),
                ("patch", "Node", "n1".to_string()),
                ("get", "Node", "n1".to_string()),
            ]
        );
        assert!(fake.object(&NODE, "", "n1").expect("n1")["spec"]["unschedulable"].is_null());
        assert!(fake.object(&NODE, "", "n2").expect("n2")["spec"]["unschedulable"].is_null());
        let faults = ctx.catalog.drill_faults(&j.id).await.expect("faults");
        assert_eq!(faults[0].reverted_by.as_deref(), Some("drill"));
    }

    /// Issue 12: the drill process is killed while a node is cordoned; the next start's
    /// sweep uncordons it from the persisted intent, records it reverted by the sweep (after
    /// re-reading the node) and the drill aborted.
    #[tokio::test]
    async fn a_killed_drill_s_cordon_is_reverted_by_the_sweep() {
        use crate::kube::NODE;
        let (_dir, ctx, fake) = kube_ctx(true).await;
        let action = super::super::kube_fault::KubeAction::CordonEvict {
            selector: String::new(),
            namespace: "shop".into(),
            limit: None,
        };
        let intent = super::super::kube_fault::plan(fake.as_ref(), &action, &[])
            .await
            .expect("plan");
        let now = ctx.now();
        let j = DrillJournal::start("drill-k2", "zone-loss", "zone", now, "test");
        ctx.catalog.put_drill_journal(&j).await.expect("journal");
        let spec = serde_json::to_value(FaultSpec::Kube {
            intent: intent.clone(),
        })
        .expect("spec");
        ctx.catalog
            .drill_fault_intent(
                "drill-k2",
                "lose-zone",
                "cordon-evict",
                &spec,
                now + chrono::TimeDelta::minutes(10),
            )
            .await
            .expect("intent");
        super::super::kube_fault::apply(fake.as_ref(), &intent)
            .await
            .expect("apply");
        ctx.catalog
            .drill_fault_applied("drill-k2", "lose-zone", now)
            .await
            .expect("applied");
        // The drill's process is gone (killed).
        ctx.catalog
            .set_drill_pid("drill-k2", 0x3fff_fff0)
            .await
            .expect("pid");
        let aborted = sweep(&ctx).await.expect("sweep");
        assert_eq!(aborted, ["drill-k2"]);
        for n in ["n1", "n2"] {
            assert!(
                fake.object(&NODE, "", n).expect("node")["spec"]["unschedulable"].is_null(),
                "{n} still cordoned"
            );
        }
        let faults = ctx.catalog.drill_faults("drill-k2").await.expect("faults");
        assert_eq!(faults[0].reverted_by.as_deref(), Some("sweep"));
        let j = ctx
            .catalog
            .drill_journal("drill-k2")
            .await
            .expect("read")
            .expect("journal");
        assert_eq!(j.verdict, "aborted");
    }
}
