//! The daemon's drill schedules (`drills.schedules`): every second, each schedule's decision
//! ([`crate::policy::drill_schedule::decide`]) from what the catalog holds, and a due drill run
//! in this process, one at a time (a drill running anywhere makes a due slot wait).
//!
//! # Guarantees
//! - A slot runs at most once: it is remembered as handled when it starts or is skipped, and
//!   a drill started after a slot (found in the catalog) counts as its run after a restart.
//! - Missed slots are skipped, not caught up; a schedule is suspended after its
//!   `suspend_after` consecutive failed drills (logged once; a passing drill run by hand
//!   resumes it).
//!
//! # Caveats
//! - The drills' `lifeboat:` probes and watchdog run this executable with the daemon's own
//!   `--config`/`--catalog` (from its command line or environment).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::drills::DrillScheduleConfig;
use crate::ops::Ctx;
use crate::ops::drill::run::{Launcher, Options};
use crate::policy::drill_schedule::{Decision, ScheduleState, decide, is_failure};

/// Stops the schedules' task when dropped.
pub struct Running(Option<tokio::task::JoinHandle<()>>, CancellationToken);

impl Drop for Running {
    fn drop(&mut self) {
        self.1.cancel();
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Starts the schedules (none for `run --once`, or when there are none).
pub fn start(app: &Arc<Ctx>, opts: &super::Options, stop: &CancellationToken) -> Running {
    let token = stop.child_token();
    if opts.once || app.config.drills.schedules.is_empty() {
        return Running(None, token);
    }
    let (app, t) = (app.clone(), token.clone());
    Running(
        Some(tokio::spawn(async move { schedules(app, t).await })),
        token,
    )
}

/// This executable with the daemon's own `--config` and `--catalog` (the environment is
/// inherited).
fn launcher() -> Result<Launcher, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let args: Vec<String> = std::env::args().collect();
    let mut global_args: Vec<OsString> = vec!["--log-format".into(), "json".into()];
    let mut env = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let value = |flag: &str| {
            a.strip_prefix(&format!("{flag}="))
                .map(str::to_string)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned()).flatten())
        };
        if let Some(c) = value("--config").or_else(|| value("-c")) {
            global_args.extend(["--config".into(), c.into()]);
        }
        if let Some(c) = value("--catalog") {
            env.push((OsString::from("LIFEBOAT_CATALOG"), OsString::from(c)));
        }
    }
    Ok(Launcher {
        exe,
        global_args,
        env,
    })
}

async fn schedules(app: Arc<Ctx>, stop: CancellationToken) {
    let mut handled: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut suspended: BTreeSet<String> = BTreeSet::new();
    loop {
        for sc in &app.config.drills.schedules {
            if let Err(e) = tick(&app, sc, &mut handled, &mut suspended).await {
                tracing::warn!(scenario = %sc.scenario, cause = %e, "drill schedule");
            }
            if stop.is_cancelled() {
                return;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn tick(
    app: &Ctx,
    sc: &DrillScheduleConfig,
    handled: &mut BTreeMap<String, DateTime<Utc>>,
    suspended: &mut BTreeSet<String>,
) -> Result<(), String> {
    let schedule = sc.decision()?;
    let (name, text) = crate::ops::drill::scenario_text(&sc.scenario)?;
    let now = app.now();
    let journals = app
        .catalog
        .drill_journals(now - chrono::Duration::days(400))
        .await
        .map_err(|e| e.to_string())?;
    let mine: Vec<_> = journals.iter().filter(|j| j.scenario == name).collect();
    let consecutive_failures = mine
        .iter()
        .rev()
        .filter(|j| j.finished_at.is_some())
        .take_while(|j| is_failure(&j.verdict))
        .count() as u32;
    let last_started = mine.iter().map(|j| j.started_at).max();
    let last_slot = match (handled.get(&sc.scenario).copied(), last_started) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let running = app
        .catalog
        .drill_runs_running()
        .await
        .map_err(|e| e.to_string())?;
    let state = ScheduleState {
        last_slot,
        consecutive_failures,
        drill_running: !running.is_empty(),
    };
    match decide(&schedule, &state, now) {
        Decision::Wait { .. } | Decision::Busy { .. } => {
            suspended.remove(&sc.scenario);
        }
        Decision::Suspended { failures } => {
            if suspended.insert(sc.scenario.clone()) {
                tracing::error!(scenario = %name, failures, "drill schedule SUSPENDED after consecutive failed drills: look at `lifeboat drill history`; a drill that passes (run by hand) resumes it");
            }
        }
        Decision::Skip { slot, why } => {
            handled.insert(sc.scenario.clone(), slot);
            tracing::warn!(scenario = %name, slot = %slot, why = ?why, "scheduled drill skipped");
        }
        Decision::Run { slot } => {
            handled.insert(sc.scenario.clone(), slot);
            let scenario = crate::ops::drill::scenario::Scenario::load(&name, &text, &sc.vars)
                .map_err(|e| e.to_string())?;
            let host = crate::model::host::hostname();
            let opts = Options {
                launcher: launcher()?,
                who: format!("daemon@{host}"),
                steady: Duration::from_secs(1),
            };
            tracing::info!(scenario = %name, slot = %slot, "scheduled drill starting");
            let j = crate::ops::drill::run::run(app, &name, &scenario, &opts)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(scenario = %name, drill = %j.id, verdict = %j.verdict, "scheduled drill finished");
            let kind = crate::report::publish::ReportKind::Drill(Box::new(j));
            crate::report::publish::publish_after(app, kind).await;
        }
    }
    Ok(())
}
