//! `lifeboat run`: the long-running orchestrator (and `--once`, its CronJob mode).
//!
//! The schedule is decided by the pure [`crate::policy::schedule`] planner; this module performs it:
//! it waits to be leader ([`crate::leader`]), settles crashed runs, asks the planner what is
//! due, starts jobs, and reports their outcome back (retries with backoff).
//!
//! # Guarantees
//! - Only the leader starts jobs; a replica that loses leadership cancels its jobs at once.
//! - With `--jobs` ([`Options::jobs`]) only those kinds are scheduled (copies follow
//!   backups only where copies are listed); the caller takes that role's own leader lock,
//!   so the backup and verify workloads each have one leader.
//! - Never two jobs of one source at once (a source is *busy* while any of its jobs runs;
//!   its other due jobs wait in the queue), and never more than `max_concurrent_jobs` jobs
//!   (a [`Semaphore`]).
//! - Shutdown is a value ([`run`] takes a future, as mini-redis does): once it resolves no
//!   job starts; running ones get `shutdown_grace` to finish, then are cancelled through
//!   their [`CancellationToken`], which makes a backup remove its partial objects and record
//!   itself failed (no manifest is written after cancellation, so no partial snapshot is
//!   ever committed). A process killed harder is settled by [`crate::ops::settle`] at the next
//!   start.
//!
//! # Caveats
//! Retries in `--once` mode are left to the CronJob's Job (`backoffLimit`): `--once` tries
//! each due job once and exits non-zero if any failed. "Never two jobs of one source at
//! once" holds within one workload: a backup-role and a verify-role workload may back up
//! and verify one source at the same time. That is safe (a verification reads the newest
//! complete snapshot, which retention never deletes while it is the newest), except that a
//! prune right after a newer backup may remove the snapshot a running verification reads;
//! that verification fails and the next one verifies the newer snapshot.

mod drills;
pub mod failover;
pub mod http;
pub mod metrics;
pub mod reports;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::leader::{Leader, RENEW_EVERY};
use crate::model::ErrorKind;
use crate::ops::Ctx;
use crate::ops::OpError;
use crate::policy::schedule::{Backoff, Due, Job, JobFilter, JobKind, Planner, Queue, Trigger};
use metrics::{Metrics, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "another lifeboat replica holds the leader lock ({0}); with --once, run one at a time (CronJob concurrencyPolicy: Forbid)"
    )]
    NotLeader(&'static str),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Run what is due now (and what was missed), then return.
    pub once: bool,
    /// The kinds of job this workload runs (`--jobs`; the leader lock is the role's, chosen
    /// by the caller through [`crate::leader::build`]).
    pub jobs: JobFilter,
}

/// What a `--once` run (or a whole daemon life) did.
#[derive(Debug, Default)]
pub struct Summary {
    pub succeeded: usize,
    /// `kind source: cause` of every job that failed for good.
    pub failed: Vec<String>,
}

/// Runs until `shutdown` resolves (or, with `once`, until what was due is done).
pub async fn run(
    app: Arc<Ctx>,
    leader: Box<dyn Leader>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    opts: Options,
) -> Result<Summary, DaemonError> {
    let stop = CancellationToken::new();
    let inner = run_inner(app, leader, metrics, stop.clone(), opts);
    tokio::pin!(inner);
    tokio::select! {
        r = &mut inner => return r,
        _ = shutdown => {
            tracing::warn!("shutdown requested: starting no more jobs");
            stop.cancel();
        }
    }
    inner.await
}

enum Ended {
    Stopped,
    LostLeadership,
}

async fn run_inner(
    app: Arc<Ctx>,
    mut leader: Box<dyn Leader>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    opts: Options,
) -> Result<Summary, DaemonError> {
    let mut summary = Summary::default();
    loop {
        metrics.leader.store(false, Ordering::Relaxed);
        let mut logged = false;
        loop {
            match crate::leader::acquire(leader.as_mut()).await {
                Ok(true) => break,
                Ok(false) if opts.once => return Err(DaemonError::NotLeader(leader.kind())),
                Ok(false) if !logged => {
                    tracing::info!(
                        lock = leader.kind(),
                        "standing by: another replica is leader"
                    );
                    logged = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(cause = %e, "leader lock not reachable; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(summary),
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
        }
        metrics.leader.store(true, Ordering::Relaxed);
        tracing::info!(lock = leader.kind(), identity = %crate::leader::identity(), "became leader");
        let ended = Box::pin(lead(
            &app,
            leader.as_mut(),
            &metrics,
            &stop,
            opts,
            &mut summary,
        ))
        .await;
        metrics.leader.store(false, Ordering::Relaxed);
        match ended? {
            Ended::Stopped => {
                crate::leader::release(leader.as_mut()).await;
                return Ok(summary);
            }
            Ended::LostLeadership => {
                tracing::error!("lost leadership: jobs cancelled, standing by");
                crate::leader::release(leader.as_mut()).await;
            }
        }
    }
}

type Finished = (Due, Result<u64, OpError>, Duration, bool);

async fn lead(
    app: &Arc<Ctx>,
    leader: &mut dyn Leader,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
    opts: Options,
    summary: &mut Summary,
) -> Result<Ended, DaemonError> {
    let cfg = &app.config.daemon;
    crate::ops::settle::before_work(app).await;
    // Drills a crash left running: their faults reverted, recorded aborted.
    if let Err(e) = crate::ops::drill::run::sweep(app).await {
        tracing::warn!(cause = %e, "could not sweep drills left by crashed runs");
    }
    let _drills = drills::start(app, &opts, stop);
    let now = app.now();
    let mut last = BTreeMap::new();
    for (source, job, at) in app.catalog.last_runs().await? {
        if let Some(kind) = JobKind::parse(&job) {
            let e = last.entry(Job::new(source, kind)).or_insert(at);
            *e = (*e).max(at);
        }
    }
    let jitter = if opts.once {
        Duration::ZERO
    } else {
        cfg.jitter.0
    };
    let jobs = app
        .config
        .cron_jobs()
        .filter(|(job, _)| opts.jobs.contains(job.kind));
    let mut planner = Planner::new(jobs, jitter, &last, now);
    let backoff = Backoff {
        max_attempts: if opts.once { 1 } else { cfg.retry.max_attempts },
        base: cfg.retry.backoff.0,
        max: cfg.retry.max_backoff.0,
    };
    tracing::info!(jobs = planner.len(), kinds = ?opts.jobs.kinds().collect::<Vec<_>>(), "schedule loaded");
    let mut queue = Queue::default();
    for d in planner.pop_due(now) {
        queue.push(d);
    }
    // Copies are not on a clock: catch up on whatever is missing, once, at start.
    let followers: Vec<Job> = app
        .config
        .jobs()
        .into_iter()
        .filter(|(j, t)| matches!(t, Trigger::AfterBackup) && opts.jobs.contains(j.kind))
        .map(|(j, _)| j)
        .collect();
    for job in &followers {
        queue.push(Due {
            job: job.clone(),
            attempt: 1,
        });
    }

    // The scheduled reports, while this replica leads.
    let reports_stop = stop.child_token();
    let reports =
        (!opts.once).then(|| tokio::spawn(reports::schedule(app.clone(), reports_stop.clone())));

    let permits = Arc::new(Semaphore::new(cfg.max_concurrent_jobs));
    let mut busy: HashSet<String> = HashSet::new();
    let mut running: JoinSet<Finished> = JoinSet::new();
    let cancel_jobs = CancellationToken::new();
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await;

    let ended = loop {
        if stop.is_cancelled() {
            break Ended::Stopped;
        }
        if !opts.once {
            for d in planner.pop_due(app.now()) {
                queue.push(d);
            }
        }
        while let Ok(permit) = permits.clone().try_acquire_owned() {
            let Some(due) = queue.take_runnable(&busy) else {
                break;
            };
            busy.insert(due.job.source.clone());
            metrics.running.fetch_add(1, Ordering::Relaxed);
            let token = cancel_jobs.child_token();
            let app = app.clone();
            running.spawn(async move {
                let _permit = permit;
                let started = Instant::now();
                let r = std::panic::AssertUnwindSafe(execute(&app, &due.job, token.clone()))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Err(OpError::new(
                            ErrorKind::Internal,
                            "the job panicked (a bug; please report it)",
                        ))
                    });
                (due, r, started.elapsed(), token.is_cancelled())
            });
        }
        if opts.once && running.is_empty() && queue.is_empty() {
            break Ended::Stopped;
        }
        // Through the context's clock, so a manual clock drives the schedule in tests.
        let wake = planner
            .next_wake()
            .unwrap_or_else(|| app.now() + chrono::TimeDelta::hours(1));
        tokio::select! {
            _ = stop.cancelled() => break Ended::Stopped,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(done) = done {
                    finish(app, done, &mut busy, &mut planner, &mut queue, &backoff, &followers, metrics, summary);
                }
            }
            _ = app.clock.sleep_until(wake), if !opts.once => {}
            // `run --once` renews too: its jobs must stop if another replica takes over.
            _ = renew.tick() => {
                match crate::leader::renew(leader).await {
                    Ok(true) => {}
                    Ok(false) => break Ended::LostLeadership,
                    Err(e) => {
                        tracing::error!(cause = %e, "cannot renew leadership");
                        break Ended::LostLeadership;
                    }
                }
            }
        }
    };

    // Wind down: no more starts. Running jobs get the grace period (none if leadership is
    // lost: another replica may start them), then are cancelled and clean up.
    let grace = match ended {
        Ended::Stopped => cfg.shutdown_grace.0,
        Ended::LostLeadership => Duration::ZERO,
    };
    if !running.is_empty() {
        tracing::info!(running = running.len(), grace = ?grace, "waiting for running jobs");
    }
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some(done) = running.join_next() => {
                if let Ok(done) = done {
                    finish(app, done, &mut busy, &mut planner, &mut queue, &backoff, &[], metrics, summary);
                }
            }
            _ = tokio::time::sleep_until(deadline), if !cancel_jobs.is_cancelled() => {
                tracing::warn!(running = running.len(), "grace period over: cancelling running jobs");
                cancel_jobs.cancel();
            }
        }
    }
    reports_stop.cancel();
    if let Some(r) = reports {
        let _ = r.await;
    }
    Ok(ended)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    app: &Ctx,
    (due, result, took, cancelled): Finished,
    busy: &mut HashSet<String>,
    planner: &mut Planner,
    queue: &mut Queue,
    backoff: &Backoff,
    followers: &[Job],
    metrics: &Metrics,
    summary: &mut Summary,
) {
    busy.remove(&due.job.source);
    metrics.running.fetch_sub(1, Ordering::Relaxed);
    let now = app.now();
    let job = &due.job;
    let _ = app;
    match result {
        Ok(bytes) => {
            tracing::info!(source = %job.source, job = %job.kind, took_ms = took.as_millis() as u64, "job succeeded");
            metrics.record(
                job.kind,
                &job.source,
                Outcome::Success,
                took,
                bytes,
                now.timestamp(),
            );
            summary.succeeded += 1;
            if job.kind == JobKind::Backup {
                for f in followers.iter().filter(|f| f.source == job.source) {
                    queue.push(Due {
                        job: f.clone(),
                        attempt: 1,
                    });
                }
            }
        }
        Err(cause) if cancelled => {
            tracing::warn!(source = %job.source, job = %job.kind, cause = %cause, "job cancelled");
            metrics.record(
                job.kind,
                &job.source,
                Outcome::Cancelled,
                took,
                0,
                now.timestamp(),
            );
            summary.failed.push(format!("{job}: cancelled: {cause}"));
        }
        Err(cause) => {
            match planner.failed(job, due.attempt, backoff, now, cause.kind().is_retryable()) {
                Some(at) => {
                    tracing::warn!(source = %job.source, job = %job.kind, attempt = due.attempt, retry_at = %at, cause = %cause, "job failed; will retry");
                    metrics.record(
                        job.kind,
                        &job.source,
                        Outcome::Failed,
                        took,
                        0,
                        now.timestamp(),
                    );
                }
                None => {
                    tracing::error!(source = %job.source, job = %job.kind, attempts = due.attempt, cause = %cause, "job failed; no attempts left, waiting for its next slot");
                    metrics.record(
                        job.kind,
                        &job.source,
                        Outcome::GaveUp,
                        took,
                        0,
                        now.timestamp(),
                    );
                    summary.failed.push(format!("{job}: {cause}"));
                }
            }
        }
    }
}

/// Performs one job. Adding a [`JobKind`] is one arm here.
async fn execute(app: &Ctx, job: &Job, cancel: CancellationToken) -> Result<u64, OpError> {
    let interrupted = OpError::interrupted;
    match job.kind {
        JobKind::Backup => {
            let bar = indicatif::ProgressBar::hidden();
            crate::ops::backup::run(app, &job.source, &bar, cancel)
                .await
                .map(|m| m.stored_bytes)
                .map_err(OpError::from)
        }
        JobKind::Copy => {
            let work = crate::ops::copy::pending(app, Some(&job.source));
            let (copied, failures) = tokio::select! {
                r = work => r?,
                _ = cancel.cancelled() => return Err(interrupted()),
            };
            if failures.is_empty() {
                tracing::info!(source = %job.source, copied, "copies up to date");
                Ok(0)
            } else {
                // Retried if any failure may pass on retry.
                let kind = failures
                    .iter()
                    .map(|f| f.kind())
                    .find(|k| k.is_retryable())
                    .unwrap_or(failures[0].kind());
                let text = failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(OpError::new(kind, text))
            }
        }
        JobKind::Prune => {
            // Idempotent step by step (see `prune`): safe to stop anywhere.
            let work = async {
                let plans = crate::ops::prune::plan(app, Some(&job.source), app.now()).await?;
                for plan in &plans {
                    crate::ops::prune::execute(app, plan).await?;
                }
                Ok::<_, OpError>(0)
            };
            tokio::select! {
                r = work => r,
                _ = cancel.cancelled() => Err(interrupted()),
            }
        }
        JobKind::Verify => {
            // The sandbox is torn down by `verify::run` itself, also when cancelled. Where:
            // `daemon.verify_sandbox` (the daemon image has no database servers of its own).
            let req = crate::ops::verify::Request {
                what: job.source.clone(),
                sandbox: app.config.daemon.verify_sandbox.into(),
                timeout: None,
                identity: None,
            };
            let report = crate::ops::verify::run(app, &req, cancel.clone()).await?;
            match &report.error {
                None => Ok(0),
                // A failed check is a finding about the snapshot, not a passing glitch: the
                // next scheduled verification runs it again.
                Some(e) => Err(OpError::new(
                    ErrorKind::Corrupt,
                    format!("verification {} failed: {e}", report.id),
                )),
            }
        }
    }
}
