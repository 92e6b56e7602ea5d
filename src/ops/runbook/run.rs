//! Executing a runbook: each step a child `lifeboat` process (this executable, with the
//! runner's `--config`), one after the other, every step's start and end in the catalog.
//!
//! # Guarantees
//! - A step's attempt row is written (`running`) before its process starts and finished after
//!   it exits; a step counts as done only when its process exited 0. `resume` skips exactly
//!   the done steps and runs the first other one again.
//! - A step that outlives its `timeout=`, or a Ctrl-C/SIGTERM of the runner, stops the step's
//!   process group (SIGTERM, then SIGKILL after [`GRACE`]) and records it `interrupted`.
//! - A `confirm=true` step runs only after the operator said yes (or `--yes` was given).
//! - Resuming a run whose runner is alive on this host, or whose interrupted step's process
//!   is still alive, is refused; two resumes of one run race on a compare-and-swap, one wins.
//! - Variable values that look secret (a URL with a password, a registered config secret)
//!   are never stored: the run keeps a null and `resume` asks for them again.
//!
//! # Caveats
//! When the runner is killed with SIGKILL, the step's process (in a group of its own) goes on
//! to its end; `resume` refuses while it lives, then runs the step again (lifeboat commands
//! are safe to repeat, see each command's docs).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Runbook, RunbookError, Step};
use crate::catalog::{
    Catalog, CatalogError, NewRunbookRun, NewStep, RunbookRunRow, RunbookStatus, StepStatus,
};
use crate::model::Clock;
use crate::model::redact;

/// How long a stopped step's process group gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);
/// Keep at most this much of a step's stderr for the catalog and the error message.
const TAIL: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Runbook(#[from] RunbookError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("no runbook run {id} in the catalog; list runs with `lifeboat runbook log`")]
    NotFound { id: String },
    #[error("runbook run {id} is already complete: there is nothing to resume")]
    AlreadyComplete { id: String },
    #[error(
        "runbook run {id} is still running in process {pid} on {host}; wait for it, or stop it (Ctrl-C) and resume{}",
        if *.same_host { "" } else { " (if that host and process are gone, add --force)" }
    )]
    StillRunning {
        id: String,
        host: String,
        pid: i64,
        same_host: bool,
    },
    #[error(
        "step `{step}` of runbook run {id} is still running in process group {pid}; wait for it to end (or stop it) and resume again"
    )]
    StepStillRunning { id: String, step: String, pid: i64 },
    #[error(
        "runbook run {id} held secret values that were not stored: pass them again ({})",
        .vars.iter().map(|v| format!("--var {v}=...")).collect::<Vec<_>>().join(" ")
    )]
    WithheldVars { id: String, vars: Vec<String> },
    #[error(
        "another process took over runbook run {id} while this one was resuming it; see `lifeboat runbook log {id}`"
    )]
    LostRace { id: String },
    #[error("the stored text of runbook run {id} no longer parses: {cause}")]
    StoredTextInvalid { id: String, cause: String },
}

impl RunError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            RunError::Runbook(e) => e.kind(),
            RunError::Catalog(e) => e.kind(),
            RunError::NotFound { .. }
            | RunError::AlreadyComplete { .. }
            | RunError::WithheldVars { .. } => ErrorKind::Config,
            RunError::StillRunning { .. }
            | RunError::StepStillRunning { .. }
            | RunError::LostRace { .. } => ErrorKind::Conflict,
            RunError::StoredTextInvalid { .. } => ErrorKind::Corrupt,
        }
    }
}

/// The operator's answer before a `confirm=true` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Yes,
    Declined,
    /// Nobody to ask (not a terminal) and no `--yes`.
    NoTerminal,
}

/// How one step ended.
#[derive(Debug, Clone)]
pub enum StepEnd {
    Done,
    Failed {
        exit_code: Option<i32>,
        error: String,
    },
    TimedOut {
        after: Duration,
    },
    Interrupted,
}

/// How a run ended (this time).
#[derive(Debug, Clone)]
pub enum Outcome {
    Complete,
    Failed {
        step: String,
        error: String,
    },
    /// Stopped before a step without a failure: declined, unconfirmed, interrupted.
    Stopped {
        step: String,
        why: String,
    },
}

/// What the person at the terminal sees and answers.
pub trait Operator: Send {
    /// The run exists in the catalog (or was taken over for a resume).
    fn begun(&mut self, run_id: &str);
    fn already_done(&mut self, index: usize, total: usize, step: &Step);
    fn starting(&mut self, index: usize, total: usize, step: &Step, shown_argv: &[String]);
    fn confirm(&mut self, step: &Step) -> Confirm;
    fn finished(&mut self, step: &Step, end: &StepEnd, took: Duration);
}

/// Runs runbooks as child processes of `exe`.
pub struct Runner {
    pub catalog: Catalog,
    pub clock: Arc<dyn Clock>,
    /// The lifeboat executable and the global arguments every step gets (`--config ...`).
    pub exe: PathBuf,
    pub global_args: Vec<OsString>,
    /// Environment for every step (e.g. `LIFEBOAT_CATALOG`, kept out of argv).
    pub env: Vec<(OsString, OsString)>,
    /// `user@host` of the operator, for the timeline.
    pub who: String,
    pub host: String,
    pub cancel: CancellationToken,
    /// Steps print to the runner's stderr instead of its stdout (a drill whose stdout is
    /// its JSON journal).
    pub stdout_to_stderr: bool,
}

/// The operator's name: `SUDO_USER`, `USER` or `LOGNAME`, at this host.
pub fn who(host: &str) -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

/// Whether `value` must not be stored: it holds a password-looking part or a secret of the
/// config.
fn is_secret(value: &str) -> bool {
    redact::url(value) != value || redact::scrub_registered(value) != value
}

fn shown(argv: &[String]) -> Vec<String> {
    argv.iter()
        .map(|a| redact::scrub_registered(&redact::url(a)))
        .collect()
}

impl Runner {
    /// Starts a new run of `runbook`; returns its id and how it ended.
    pub async fn start(
        &self,
        runbook: &Runbook,
        vars: &BTreeMap<String, String>,
        op: &mut dyn Operator,
    ) -> Result<(String, Outcome), RunError> {
        runbook.check_vars(vars)?;
        let mut stored = serde_json::Map::new();
        for (k, v) in vars {
            if is_secret(v) {
                redact::register([v.clone()]);
                stored.insert(k.clone(), serde_json::Value::Null);
            } else {
                stored.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
        let now = self.clock.now();
        let id = format!("rb-{}", crate::model::snapshot::new_id(now));
        self.catalog
            .insert_runbook_run(&NewRunbookRun {
                id: &id,
                runbook: &runbook.name,
                runbook_text: &runbook.text,
                vars: &stored,
                who: &self.who,
                host: &self.host,
                pid: std::process::id(),
                now,
            })
            .await?;
        op.begun(&id);
        let outcome = self.drive(&id, runbook, vars, &BTreeSet::new(), op).await?;
        Ok((id, outcome))
    }

    /// Continues run `id` after its last done step. `vars` override the stored ones and
    /// supply the secret ones that were not stored.
    pub async fn resume(
        &self,
        id: &str,
        vars: &BTreeMap<String, String>,
        force: bool,
        op: &mut dyn Operator,
    ) -> Result<(Runbook, Outcome), RunError> {
        let row = self
            .catalog
            .runbook_run(id)
            .await?
            .ok_or_else(|| RunError::NotFound { id: id.into() })?;
        if row.status == RunbookStatus::Complete {
            return Err(RunError::AlreadyComplete { id: id.into() });
        }
        if row.status == RunbookStatus::Running {
            let same_host = row.host == self.host;
            let alive = if same_host {
                u32::try_from(row.pid)
                    .ok()
                    .filter(|&p| p != std::process::id())
                    .is_some_and(running)
            } else {
                !force
            };
            if alive {
                return Err(RunError::StillRunning {
                    id: id.into(),
                    host: row.host.clone(),
                    pid: row.pid,
                    same_host,
                });
            }
        }
        let runbook = Runbook::parse(&row.runbook, &row.runbook_text).map_err(|e| {
            RunError::StoredTextInvalid {
                id: id.into(),
                cause: e.to_string(),
            }
        })?;
        let merged = merge_vars(&row, vars)?;
        runbook.check_vars(&merged)?;
        for v in merged.values().filter(|v| is_secret(v)) {
            redact::register([v.clone()]);
        }
        // Steps that were running when the runner died.
        let steps = self.catalog.runbook_steps(id).await?;
        for s in steps.iter().filter(|s| s.status == StepStatus::Running) {
            if let Some(pid) = s.pid
                && row.host == self.host
                && u32::try_from(pid).is_ok_and(running)
            {
                return Err(RunError::StepStillRunning {
                    id: id.into(),
                    step: s.step.clone(),
                    pid,
                });
            }
        }
        if !self
            .catalog
            .claim_runbook_run(&row, &self.host, std::process::id())
            .await?
        {
            return Err(RunError::LostRace { id: id.into() });
        }
        op.begun(id);
        for s in steps.iter().filter(|s| s.status == StepStatus::Running) {
            self.catalog
                .finish_runbook_step(
                    id,
                    &s.step,
                    s.attempt,
                    StepStatus::Interrupted,
                    None,
                    Some("the runner stopped while this step ran (found by `runbook resume`)"),
                    self.clock.now(),
                )
                .await?;
        }
        let done: BTreeSet<String> = steps
            .iter()
            .filter(|s| s.status == StepStatus::Done)
            .map(|s| s.step.clone())
            .collect();
        let outcome = self.drive(id, &runbook, &merged, &done, op).await?;
        Ok((runbook, outcome))
    }

    async fn drive(
        &self,
        id: &str,
        runbook: &Runbook,
        vars: &BTreeMap<String, String>,
        done: &BTreeSet<String>,
        op: &mut dyn Operator,
    ) -> Result<Outcome, RunError> {
        let total = runbook.steps.len();
        for (i, step) in runbook.steps.iter().enumerate() {
            if done.contains(&step.id) {
                op.already_done(i, total, step);
                continue;
            }
            let argv = step.argv(vars).map_err(|m| RunbookError::MissingVars {
                runbook: runbook.name.clone(),
                missing: vec![m],
            })?;
            let shown_argv = shown(&argv);
            op.starting(i, total, step, &shown_argv);
            if self.cancel.is_cancelled() {
                return self
                    .stop(id, step, "interrupted before the step started")
                    .await;
            }
            if step.confirm {
                match op.confirm(step) {
                    Confirm::Yes => {}
                    Confirm::Declined => {
                        return self.stop(id, step, "the operator declined the step").await;
                    }
                    Confirm::NoTerminal => {
                        return self
                            .stop(
                                id,
                                step,
                                "the step needs confirmation and there is no terminal to ask: run it on a terminal or pass --yes",
                            )
                            .await;
                    }
                }
            }
            let attempt = self
                .catalog
                .start_runbook_step(&NewStep {
                    run_id: id,
                    step: &step.id,
                    seq: i,
                    who: &self.who,
                    argv: &shown_argv,
                    now: self.clock.now(),
                })
                .await?;
            let began = std::time::Instant::now();
            let end = self.execute(id, step, attempt, &argv).await;
            op.finished(step, &end, began.elapsed());
            let now = self.clock.now();
            let (status, code, error) = match &end {
                StepEnd::Done => (StepStatus::Done, Some(0), None),
                StepEnd::Failed { exit_code, error } => {
                    (StepStatus::Failed, *exit_code, Some(error.clone()))
                }
                StepEnd::TimedOut { after } => (
                    StepStatus::Interrupted,
                    None,
                    Some(format!(
                        "timed out after {}; its processes were stopped",
                        humantime::format_duration(*after)
                    )),
                ),
                StepEnd::Interrupted => (
                    StepStatus::Interrupted,
                    None,
                    Some("interrupted (signal); its processes were stopped".to_string()),
                ),
            };
            self.catalog
                .finish_runbook_step(id, &step.id, attempt, status, code, error.as_deref(), now)
                .await?;
            match end {
                StepEnd::Done => {}
                StepEnd::Interrupted => {
                    return self.stop(id, step, "interrupted while the step ran").await;
                }
                _ => {
                    let error = error.unwrap_or_default();
                    let text = format!("step `{}` failed: {error}", step.id);
                    self.catalog
                        .finish_runbook_run(id, RunbookStatus::Failed, Some(&text), now)
                        .await?;
                    return Ok(Outcome::Failed {
                        step: step.id.clone(),
                        error,
                    });
                }
            }
        }
        self.catalog
            .finish_runbook_run(id, RunbookStatus::Complete, None, self.clock.now())
            .await?;
        Ok(Outcome::Complete)
    }

    async fn stop(&self, id: &str, step: &Step, why: &str) -> Result<Outcome, RunError> {
        let text = format!("stopped before step `{}` completed: {why}", step.id);
        self.catalog
            .finish_runbook_run(id, RunbookStatus::Stopped, Some(&text), self.clock.now())
            .await?;
        Ok(Outcome::Stopped {
            step: step.id.clone(),
            why: why.to_string(),
        })
    }

    /// Where a step's stdout goes: the runner's stdout, or its stderr (`stdout_to_stderr`).
    fn step_stdout(&self) -> Stdio {
        use std::os::fd::AsFd;
        if self.stdout_to_stderr
            && let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned()
        {
            return Stdio::from(fd);
        }
        Stdio::inherit()
    }

    /// Runs one step's process to its end, its timeout or the runner's cancellation.
    async fn execute(&self, id: &str, step: &Step, attempt: i64, argv: &[String]) -> StepEnd {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(&self.global_args)
            .args(argv)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("LIFEBOAT_RUNBOOK_RUN", id)
            .stdin(Stdio::null())
            .stdout(self.step_stdout())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return StepEnd::Failed {
                    exit_code: None,
                    error: format!("cannot start {}: {e}", self.exe.display()),
                };
            }
        };
        let pid = child.id();
        if let Some(pid) = pid
            && let Err(e) = self
                .catalog
                .set_runbook_step_pid(id, &step.id, attempt, pid)
                .await
        {
            tracing::warn!(cause = %e, step = %step.id, "cannot record the step's process id");
        }
        // Show stderr as it comes and keep its tail for the record.
        let tail = child.stderr.take().map(|stderr| {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                let mut out = tokio::io::stderr();
                let mut kept = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = out.write_all(format!("  | {line}\n").as_bytes()).await;
                    kept.push_str(&line);
                    kept.push('\n');
                    if kept.len() > 2 * TAIL {
                        let cut = kept.len() - TAIL;
                        let cut = (cut..kept.len())
                            .find(|&i| kept.is_char_boundary(i))
                            .unwrap_or(kept.len());
                        kept.drain(..cut);
                    }
                }
                kept
            })
        });
        enum Why {
            Exited(std::io::Result<std::process::ExitStatus>),
            Timeout,
            Cancelled,
        }
        let why = tokio::select! {
            s = child.wait() => Why::Exited(s),
            _ = tokio::time::sleep(step.timeout) => Why::Timeout,
            _ = self.cancel.cancelled() => Why::Cancelled,
        };
        if !matches!(why, Why::Exited(_))
            && let Some(pid) = pid
        {
            stop_group(pid, &mut child).await;
        }
        let stderr = match tail {
            Some(t) => t.await.unwrap_or_default(),
            None => String::new(),
        };
        match why {
            Why::Exited(Ok(s)) if s.success() => StepEnd::Done,
            Why::Exited(Ok(s)) => StepEnd::Failed {
                exit_code: s.code(),
                error: last_error(&stderr).unwrap_or_else(|| format!("exited with {s}")),
            },
            Why::Exited(Err(e)) => StepEnd::Failed {
                exit_code: None,
                error: format!("waiting for the step's process: {e}"),
            },
            Why::Timeout => StepEnd::TimedOut {
                after: step.timeout,
            },
            Why::Cancelled => StepEnd::Interrupted,
        }
    }
}

/// SIGTERM to the group (lifeboat stops its work cleanly), SIGKILL after [`GRACE`].
async fn stop_group(pgid: u32, child: &mut tokio::process::Child) {
    if let Some(p) = i32::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = crate::kinds::process::sigkill_group(pgid);
        let _ = child.wait().await;
    }
    // What the step started in groups of their own is its business; its own group is gone.
    if crate::kinds::process::group_alive(pgid) {
        let _ = crate::kinds::process::sigkill_group(pgid);
    }
}

/// Whether the step process `pid` (its group's leader) still runs: present and not a zombie
/// (an orphan whose new parent does not reap it has ended all the same).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => crate::kinds::process::group_alive(pid),
    }
}

/// The `error: ...` line lifeboat prints last, else the last non-empty line.
fn last_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("error: "))
        .or(lines.last())
        .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_string())
}

/// The stored vars of `row` with `given` on top; an error naming the withheld ones not given.
fn merge_vars(
    row: &RunbookRunRow,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, RunError> {
    let mut out = BTreeMap::new();
    let mut withheld = Vec::new();
    for (k, v) in &row.vars {
        match v.as_str() {
            Some(s) => {
                out.insert(k.clone(), s.to_string());
            }
            None if !given.contains_key(k) => withheld.push(k.clone()),
            None => {}
        }
    }
    if !withheld.is_empty() {
        return Err(RunError::WithheldVars {
            id: row.id.clone(),
            vars: withheld,
        });
    }
    out.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_prefers_the_error_line() {
        assert_eq!(
            last_error("INFO x\nerror: boom: do this\n\n").as_deref(),
            Some("boom: do this")
        );
        assert_eq!(last_error("a\nb\n").as_deref(), Some("b"));
        assert_eq!(last_error(""), None);
    }

    #[test]
    fn withheld_secrets_must_be_given_again_on_resume() {
        let mut vars = serde_json::Map::new();
        vars.insert("SOURCE".into(), serde_json::Value::String("db".into()));
        vars.insert("TARGET".into(), serde_json::Value::Null);
        let row = RunbookRunRow {
            id: "rb-1".into(),
            runbook: "r".into(),
            runbook_text: String::new(),
            vars,
            who: "a@b".into(),
            host: "b".into(),
            pid: 1,
            status: RunbookStatus::Failed,
            started_at: "2026-12-05T00:00:00.000Z".into(),
            finished_at: None,
            error: None,
        };
        let err = merge_vars(&row, &BTreeMap::new()).expect_err("TARGET withheld");
        assert!(err.to_string().contains("--var TARGET=..."), "{err}");
        let given: BTreeMap<String, String> =
            [("TARGET".to_string(), "postgres://u:pw@h/db".to_string())].into();
        let merged = merge_vars(&row, &given).expect("given again");
        assert_eq!(merged["SOURCE"], "db");
        assert_eq!(merged["TARGET"], "postgres://u:pw@h/db");
    }

    #[test]
    fn secret_looking_values_are_not_stored() {
        assert!(is_secret("postgres://u:pw@h/db"));
        assert!(!is_secret("postgres://u@h/db"));
        assert!(!is_secret("orders-db"));
    }
}
