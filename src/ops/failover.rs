//! `lifeboat failover plan | execute | status | history`: a planned switchover or a manual
//! failover of the `sites:` services to another site, step by step (fence, promote, repoint,
//! dns, verify), each step recorded in the catalog before it is taken.
//!
//! # Guarantees
//! - Each step is recorded `started` before it is taken and `done` after; a step already
//!   `done` for the term is never taken again, so a killed `execute` run again resumes where
//!   it stopped (every step is idempotent, so one killed mid-way is simply taken again).
//! - The old primary is fenced (read-only, other writers terminated) and the fence confirmed
//!   before anything is promoted; an unreachable old primary is skipped only with `--force`.
//! - With the old primary fenced, promotion waits until the new primary has replayed all of
//!   the old primary's WAL: a planned switchover loses no acknowledged write. Otherwise the
//!   RPO gate refuses unless `--accept-data-loss`, and the plan says what is at risk.
//! - The DNS switch is a compare-and-swap against the old site's values (or a no-op when a
//!   resumed run already moved it), verified on every authoritative nameserver.
//! - With the daemons' controllers running (`sites[].peer` + `peer_token`), the term is one
//!   no reachable controller holds or has promised, and `execute` wins their votes for it
//!   before the first step (a controller that promised it to someone else refuses, and so does
//!   `execute`): a controller and an operator never act in one term. When done, every
//!   controller is told the new term and primary (one not reached learns it from its peers or
//!   from its own catalog).
//!
//! # Caveats
//! PostgreSQL and Redis services are fenced and promoted (etcd, http, tcp are probe-only).
//! A remaining replica that cannot be repointed does not fail the failover (the primary has
//! moved): the `repoint` step's detail says so and names `failover rejoin`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ctx::Ctx;
use super::error::OpError;
use crate::catalog::FailoverRow;
use crate::config::failover::{ActionConfig, ServiceConfig, ServiceKind, SiteConfig};
use crate::kinds::probe::{self, Probe, Role};
use crate::kube::KubeApi;
use crate::model::ErrorKind;
use crate::policy::failover::{Adopt, Step, VoteRequest};

use super::failover_peers::Peers;

/// How long promotion may take, and the wait for the new primary to catch up.
const PROMOTE_WAIT: Duration = Duration::from_secs(60);
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("no `sites:`/`failover:` in the config; add them (see the README's failover section)")]
    NotConfigured,
    #[error("no site is called `{0}`; name one of `sites:`")]
    UnknownSite(String),
    #[error("{0} is already the primary site: nothing to do")]
    AlreadyPrimary(String),
    #[error(
        "a failover to {to} (term {term}) is still unfinished; run `lifeboat failover execute --to {to}` to resume it"
    )]
    Unfinished { term: i64, to: String },
    #[error("refused: {0}")]
    Refused(String),
    #[error("step {step} failed: {reason}")]
    Step { step: &'static str, reason: String },
    #[error(
        "the failover controller at {site} refused term {term}: {reason}. Check `lifeboat failover status` at each site and run execute again once no failover is under way (or pass --force if you know none is)"
    )]
    TermTaken {
        site: String,
        term: i64,
        reason: String,
    },
    #[error(
        "only {granted} of the {need} votes term {term} needs were won ({missing}): a controller out of reach may be failing over on its own. Check `lifeboat failover status` at each site; pass --force to go ahead without them"
    )]
    NoQuorum {
        term: i64,
        granted: usize,
        need: usize,
        missing: String,
    },
}

impl FailoverError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            FailoverError::NotConfigured | FailoverError::UnknownSite(_) => ErrorKind::Config,
            FailoverError::AlreadyPrimary(_)
            | FailoverError::Unfinished { .. }
            | FailoverError::Refused(_)
            | FailoverError::TermTaken { .. }
            | FailoverError::NoQuorum { .. } => ErrorKind::Conflict,
            FailoverError::Step { .. } => ErrorKind::Unreachable,
        }
    }
}

impl From<FailoverError> for OpError {
    fn from(e: FailoverError) -> OpError {
        OpError::new(e.kind(), e)
    }
}

fn step_err(step: Step, reason: impl std::fmt::Display) -> OpError {
    FailoverError::Step {
        step: step.as_str(),
        reason: reason.to_string(),
    }
    .into()
}

/// What one service of one site answered.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub site: String,
    pub service: String,
    pub kind: &'static str,
    pub probe: Option<Probe>,
    pub error: Option<String>,
}

/// Probes one service: a `kind: kubernetes` one through the Kubernetes API, the others at
/// their URL.
async fn probe_service(kube: &dyn KubeApi, svc: &ServiceConfig) -> Result<Probe, String> {
    if svc.kind == ServiceKind::Kubernetes {
        return super::failover_kube::probe(
            kube,
            svc.workload.as_deref().unwrap_or("Deployment"),
            svc.namespace.as_deref().unwrap_or_default(),
            svc.name.as_deref().unwrap_or_default(),
            svc.min_ready.unwrap_or(1),
        )
        .await;
    }
    probe::probe(svc.kind.as_str(), svc.url.expose())
        .await
        .map_err(|e| e.to_string())
}

async fn probe_site(kube: &dyn KubeApi, site: &SiteConfig) -> Vec<Seen> {
    let mut out = Vec::new();
    for (name, svc) in &site.services {
        let r = probe_service(kube, svc).await;
        out.push(Seen {
            site: site.name.clone(),
            service: name.clone(),
            kind: svc.kind.as_str(),
            error: r.as_ref().err().cloned(),
            probe: r.ok(),
        });
    }
    out
}

/// Data at risk for one replicated service.
#[derive(Debug, Clone, Serialize)]
pub struct Risk {
    pub service: String,
    /// Bytes the new primary is behind the old one (unknown if the old one cannot be asked).
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub rpo_seconds: Option<u64>,
    /// The old primary is reachable: it is fenced and the new one catches up first, so
    /// nothing acknowledged is lost.
    pub zero_loss: bool,
    pub within_rpo: bool,
}

/// What `execute --to` would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub term: i64,
    pub from: String,
    pub to: String,
    pub old_primary_reachable: bool,
    pub services: Vec<Seen>,
    pub data_at_risk: Vec<Risk>,
    /// name → (old site's values, new site's values).
    pub dns: BTreeMap<String, (Vec<String>, Vec<String>)>,
    pub steps: Vec<&'static str>,
    /// The old site's `fence:` and the new site's `promote:` actions, each with what it would
    /// do (`kube_scale`: the object read now, e.g. `3 → 0 replicas`, or why it is refused).
    pub actions: Vec<String>,
    /// Why `execute` refuses without `--accept-data-loss` / `--force`.
    pub blocked: Vec<String>,
}

fn sites(ctx: &Ctx) -> Result<&[SiteConfig], FailoverError> {
    if ctx.config.failover.is_none() || ctx.config.sites.is_empty() {
        return Err(FailoverError::NotConfigured);
    }
    Ok(&ctx.config.sites)
}

fn site<'a>(ctx: &'a Ctx, name: &str) -> Result<&'a SiteConfig, FailoverError> {
    sites(ctx)?
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| FailoverError::UnknownSite(name.to_string()))
}

/// The current primary site: the one whose replicated services answer as writable primaries
/// (of several, the newest completed failover's target), else the newest completed
/// failover's target, else the first of `order`.
async fn current_primary(ctx: &Ctx, seen: &[Seen]) -> Result<String, OpError> {
    let mut by_site: BTreeMap<&str, bool> = BTreeMap::new();
    for s in seen
        .iter()
        .filter(|s| s.kind == "postgres" || s.kind == "redis")
    {
        let primary = s
            .probe
            .as_ref()
            .is_some_and(|p| p.role == Role::Primary && !p.fenced);
        let e = by_site.entry(s.site.as_str()).or_insert(true);
        *e = *e && primary;
    }
    let writable: Vec<&str> = by_site
        .iter()
        .filter(|(_, p)| **p)
        .map(|(s, _)| *s)
        .collect();
    let history = ctx.catalog.failovers(1).await?;
    let last_done = history
        .last()
        .filter(|f| f.status == "done")
        .map(|f| f.to_site.clone());
    // Two writable primaries (an old primary restarted before it was fenced): the newest
    // completed failover's target is the primary; the other is what `rejoin` is for.
    if writable.len() > 1
        && let Some(to) = last_done
            .as_ref()
            .filter(|t| writable.contains(&t.as_str()))
    {
        return Ok(to.clone());
    }
    if let Some(site) = writable.first() {
        return Ok(site.to_string());
    }
    if let Some(to) = last_done {
        return Ok(to);
    }
    let order = ctx
        .config
        .failover
        .as_ref()
        .map(|f| f.order(&ctx.config.sites))
        .unwrap_or_default();
    order
        .first()
        .cloned()
        .ok_or_else(|| FailoverError::NotConfigured.into())
}

/// How long a site's controller may take to answer `plan`/`execute`.
const PEER_WAIT: Duration = Duration::from_secs(3);

/// The requester name `execute` votes under.
const EXECUTE: &str = "failover execute";

/// Every site's controller (`sites[].peer`), when `failover.peer_token` is set.
fn peers(ctx: &Ctx) -> Result<Option<Peers>, OpError> {
    let token = ctx
        .config
        .failover
        .as_ref()
        .and_then(|f| f.peer_token.as_ref())
        .map(|t| t.expose().to_string());
    Peers::new(&ctx.config.sites, None, token.as_deref(), PEER_WAIT)
        .map_err(|e| OpError::new(ErrorKind::Internal, e))
}

/// What the sites' controllers say before a move.
#[derive(Debug, Default)]
struct Survey {
    /// The next term: above this catalog's newest failover, the state this site's controller
    /// saved, and every reachable controller's term and promise.
    term: i64,
    /// Controllers electing or failing over right now.
    moving: Vec<String>,
}

async fn survey(ctx: &Ctx, peers: Option<&Peers>) -> Result<Survey, OpError> {
    let mut highest = ctx.catalog.failovers(1).await?.last().map_or(0, |f| f.term);
    let here = ctx
        .config
        .failover
        .as_ref()
        .and_then(|f| f.here(&|n| std::env::var(n).ok()));
    if let Some(h) = here
        && let Some((state, ballot)) = ctx.catalog.controller_load(&h).await?
    {
        for (json, pointer) in [(state, "/term"), (ballot, "/voted/0")] {
            let v = serde_json::from_str::<serde_json::Value>(&json).unwrap_or_default();
            highest = highest.max(v.pointer(pointer).and_then(|t| t.as_i64()).unwrap_or(0));
        }
    }
    let mut moving = Vec::new();
    if let Some(peers) = peers {
        for (site, r) in peers.reports().await {
            if let Ok(r) = r {
                let t = r.term.max(r.promised);
                highest = highest.max(i64::try_from(t).unwrap_or(i64::MAX - 1));
                if r.moving {
                    moving.push(format!("{site} (term {})", r.term));
                }
            }
        }
    }
    Ok(Survey {
        term: highest + 1,
        moving,
    })
}

/// Wins the votes of the controllers for `term` (to promote `to`): every reachable one must
/// grant it, and with `failover.mode: automatic` a quorum of them (unless `--force`).
/// Returns what each said, for the record.
async fn claim_term(
    ctx: &Ctx,
    peers: Option<&Peers>,
    term: i64,
    to: &str,
    force: bool,
) -> Result<BTreeMap<String, String>, OpError> {
    let mut said = BTreeMap::new();
    let Some(peers) = peers else {
        return Ok(said);
    };
    let req = VoteRequest {
        term: u64::try_from(term).unwrap_or(0),
        to: to.to_string(),
        by: Some(EXECUTE.to_string()),
    };
    let mut granted = 0;
    let mut missing = Vec::new();
    for (site, answer) in peers.votes(&req).await {
        match answer {
            Ok(a) if a.granted => {
                granted += 1;
                said.insert(site, "vote granted".to_string());
            }
            Ok(a) => {
                let reason = a.reason.unwrap_or_else(|| "refused".into());
                if !force {
                    return Err(FailoverError::TermTaken { site, term, reason }.into());
                }
                tracing::warn!(site = %site, reason = %reason, "a controller refused the vote: going ahead (--force)");
                said.insert(
                    site,
                    format!("vote refused ({reason}), overridden by --force"),
                );
            }
            Err(e) => {
                tracing::warn!(site = %site, cause = %e, "a site's controller did not answer the vote");
                missing.push(format!("{site}: {e}"));
                said.insert(site, format!("no vote: unreachable ({e})"));
            }
        }
    }
    let fc = ctx.config.failover.as_ref();
    let need = fc.map_or(0, |f| f.quorum(ctx.config.sites.len()));
    let automatic = fc.is_some_and(|f| f.mode == crate::policy::failover::Mode::Automatic);
    if automatic && granted < need && !force {
        return Err(FailoverError::NoQuorum {
            term,
            granted,
            need,
            missing: missing.join("; "),
        }
        .into());
    }
    Ok(said)
}

/// Tells every reachable controller that `to` holds `term`.
async fn announce(peers: Option<&Peers>, term: i64, to: &str) -> BTreeMap<String, String> {
    let Some(peers) = peers else {
        return BTreeMap::new();
    };
    let a = Adopt {
        term: u64::try_from(term).unwrap_or(0),
        primary: to.to_string(),
    };
    peers
        .adopt(&a)
        .await
        .into_iter()
        .map(|(site, r)| {
            let said = match r {
                Ok(_) => format!("told: term {term}, primary {to}"),
                Err(e) => format!("not reached ({e}); it learns the term from its peers"),
            };
            (site, said)
        })
        .collect()
}

fn rpo_of(ctx: &Ctx, source: Option<&str>) -> Option<Duration> {
    let src = ctx.config.source(source?)?;
    ctx.config.targets(src).objectives.map(|o| o.rpo.0)
}

/// What moving to `to` would do and risk; changes nothing.
#[tracing::instrument(skip_all, fields(to))]
pub async fn plan(ctx: &Ctx, to: &str) -> Result<Plan, OpError> {
    plan_with(ctx, to, peers(ctx)?.as_ref()).await
}

async fn plan_with(ctx: &Ctx, to: &str, peers: Option<&Peers>) -> Result<Plan, OpError> {
    let all = sites(ctx)?;
    let target = site(ctx, to)?;
    let mut seen = Vec::new();
    for s in all {
        seen.extend(probe_site(&*ctx.kube, s).await);
    }
    let from = current_primary(ctx, &seen).await?;
    if from == to {
        return Err(FailoverError::AlreadyPrimary(to.to_string()).into());
    }
    let old = site(ctx, &from)?;
    let find = |site: &str, svc: &str| {
        seen.iter()
            .find(|s| s.site == site && s.service == svc)
            .and_then(|s| s.probe.clone())
    };
    let mut risks = Vec::new();
    let mut blocked = Vec::new();
    let mut old_reachable = true;
    for (name, svc) in &target.services {
        if !svc.kind.replicated() {
            continue;
        }
        let old_p = find(&from, name);
        let new_p = find(to, name);
        if old.services.contains_key(name) && old_p.is_none() {
            old_reachable = false;
        }
        if new_p.is_none() {
            blocked.push(format!(
                "{name} at {to} is unreachable: nothing to promote (fix it first)"
            ));
        }
        let lag_bytes = match (&old_p, &new_p) {
            (Some(o), Some(n)) => match (o.position, n.position) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            },
            _ => None,
        };
        let rpo = rpo_of(ctx, svc.source.as_deref());
        let lag_seconds = new_p.as_ref().and_then(|p| p.lag_seconds);
        let zero_loss = old_p.is_some();
        let within_rpo = zero_loss
            || match (rpo, lag_seconds) {
                (None, _) => false,
                (Some(r), Some(l)) => l <= r.as_secs_f64() && lag_bytes.is_some(),
                (Some(_), None) => false,
            };
        if !within_rpo {
            blocked.push(format!(
                "{name}: the old primary at {from} cannot be asked, so the data lost is unknown (replica lag {}, RPO {}); pass --accept-data-loss to promote anyway",
                lag_seconds.map_or("unknown".into(), |l| format!("{l:.1}s")),
                rpo.map_or("not set".into(), |r| humantime::format_duration(r).to_string()),
            ));
        }
        risks.push(Risk {
            service: name.clone(),
            lag_bytes,
            lag_seconds,
            rpo_seconds: rpo.map(|r| r.as_secs()),
            zero_loss,
            within_rpo,
        });
    }
    if !old_reachable {
        blocked.push(format!(
            "the old primary site {from} is unreachable: its fence cannot be confirmed; wait until it fenced itself (failover.fence_after) and pass --force"
        ));
    }
    let dns = target
        .dns
        .iter()
        .map(|(name, values)| {
            (
                name.clone(),
                (
                    old.dns.get(name).cloned().unwrap_or_default(),
                    values.clone(),
                ),
            )
        })
        .collect();
    let survey = survey(ctx, peers).await?;
    for m in &survey.moving {
        blocked.push(format!(
            "the failover controller at {m} is electing or failing over right now: wait until `lifeboat failover status` shows it done, then plan again (or pass --force if it is stuck)"
        ));
    }
    let mut actions = Vec::new();
    for (step, list) in [("fence", &old.fence), ("promote", &target.promote)] {
        for action in list {
            actions.push(format!("{step}: {}", preview_action(ctx, action).await));
        }
    }
    Ok(Plan {
        actions,
        term: survey.term,
        from,
        to: to.to_string(),
        old_primary_reachable: old_reachable,
        services: seen,
        data_at_risk: risks,
        dns,
        steps: Step::ALL.iter().map(|s| s.as_str()).collect(),
        blocked,
    })
}

/// `execute` options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub accept_data_loss: bool,
    pub force: bool,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    /// Already done by an earlier run of this term: not taken again.
    pub resumed: bool,
    pub ms: u128,
    pub detail: String,
}

/// The outcome of `execute`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub term: i64,
    pub from: String,
    pub to: String,
    pub steps: Vec<StepReport>,
    /// Measured milliseconds: decide, fence, promote, repoint, dns, verify, total.
    pub timeline: BTreeMap<String, u128>,
    /// What each site's controller said to the vote and to the announcement.
    pub controllers: BTreeMap<String, String>,
}

/// A failover not finished yet, if any.
pub async fn unfinished(ctx: &Ctx) -> Result<Option<FailoverRow>, OpError> {
    Ok(ctx
        .catalog
        .failovers(20)
        .await?
        .into_iter()
        .rev()
        .find(|f| f.status == "running"))
}

/// Moves the primary to `to` (or resumes the unfinished move to `to`).
#[tracing::instrument(skip_all, fields(to))]
pub async fn execute(ctx: &Ctx, to: &str, opts: &Options) -> Result<Outcome, OpError> {
    let start = Instant::now();
    let peers = peers(ctx)?;
    let mut controllers = BTreeMap::new();
    let (term, from, resumed) = match unfinished(ctx).await? {
        Some(f) if f.to_site == to => (f.term, f.from_site.clone(), true),
        Some(f) => {
            return Err(FailoverError::Unfinished {
                term: f.term,
                to: f.to_site,
            }
            .into());
        }
        None => {
            let plan = plan_with(ctx, to, peers.as_ref()).await?;
            let refused: Vec<&String> = plan
                .blocked
                .iter()
                .filter(|b| {
                    !((opts.accept_data_loss && b.contains("--accept-data-loss"))
                        || (opts.force && b.contains("--force")))
                })
                .collect();
            if !refused.is_empty() {
                return Err(FailoverError::Refused(
                    refused
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
                .into());
            }
            controllers = claim_term(ctx, peers.as_ref(), plan.term, to, opts.force).await?;
            let mut json = serde_json::to_value(&plan).unwrap_or_default();
            // Who ran it, for the failover report.
            json["run_by"] = crate::ops::runbook::run::who(&crate::model::host::hostname()).into();
            json["votes"] = serde_json::to_value(&controllers).unwrap_or_default();
            let mode = if plan.old_primary_reachable {
                "planned"
            } else {
                "manual"
            };
            ctx.catalog
                .failover_begin(plan.term, &plan.from, to, mode, &json, ctx.now())
                .await?;
            (plan.term, plan.from, false)
        }
    };
    let decide_ms = start.elapsed().as_millis();
    tracing::info!(term, from, to, resumed, "failover");
    let old = site(ctx, &from)?.clone();
    let new = site(ctx, to)?.clone();
    let done: BTreeMap<String, bool> = ctx
        .catalog
        .failover_steps(term)
        .await?
        .into_iter()
        .map(|s| (s.step.clone(), s.done()))
        .collect();
    let mut steps = Vec::new();
    let mut timeline = BTreeMap::new();
    timeline.insert("decide".to_string(), decide_ms);
    for step in Step::ALL {
        if ctx.cancel.is_cancelled() {
            return Err(OpError::interrupted());
        }
        if done.get(step.as_str()).copied().unwrap_or(false) {
            steps.push(StepReport {
                step: step.as_str(),
                resumed: true,
                ms: 0,
                detail: format!("already done in term {term}: not taken again"),
            });
            continue;
        }
        ctx.catalog
            .failover_step_start(term, step.as_str(), ctx.now())
            .await?;
        crate::model::failpoint::hit(&format!("failover-before-{}", step.as_str()));
        let t = Instant::now();
        let detail = match step {
            Step::Fence => fence(ctx, &old, opts).await?,
            Step::Promote => promote(ctx, &old, &new, opts).await?,
            Step::Repoint => repoint(ctx, &old, &new).await?,
            Step::Dns => switch_dns(ctx, &old, &new).await?,
            Step::Verify => verify(&new).await?,
        };
        let ms = t.elapsed().as_millis();
        ctx.catalog
            .failover_step_done(term, step.as_str(), &detail, ctx.now())
            .await?;
        crate::model::failpoint::hit(&format!("failover-after-{}", step.as_str()));
        timeline.insert(step.as_str().to_string(), ms);
        steps.push(StepReport {
            step: step.as_str(),
            resumed: false,
            ms,
            detail,
        });
    }
    timeline.insert("total".to_string(), start.elapsed().as_millis());
    ctx.catalog
        .failover_finish(
            term,
            "done",
            &serde_json::to_value(&timeline).unwrap_or_default(),
            None,
            ctx.now(),
        )
        .await?;
    for (site, said) in announce(peers.as_ref(), term, to).await {
        let entry = controllers.entry(site).or_default();
        if !entry.is_empty() {
            entry.push_str("; ");
        }
        entry.push_str(&said);
    }
    Ok(Outcome {
        term,
        from,
        to: to.to_string(),
        steps,
        timeline,
        controllers,
    })
}

/// The services of `site` that have a primary to fence and promote, with their kind.
fn replicated(
    site: &SiteConfig,
) -> Result<Vec<(&String, &'static dyn crate::kinds::Kind, &str)>, OpError> {
    site.services
        .iter()
        .filter(|(_, s)| s.kind.replicated())
        .map(|(n, s)| {
            let kind = crate::kinds::kind(s.kind.as_str()).ok_or_else(|| {
                OpError::new(
                    ErrorKind::Internal,
                    format!("the {} kind is not registered", s.kind.as_str()),
                )
            })?;
            Ok((n, kind, s.url.expose()))
        })
        .collect()
}

/// Whether a replica at `replayed` holds all the primary wrote up to `written`.
fn caught_up(kind: &str, written: u64, replayed: u64) -> bool {
    if kind == "postgres" {
        probe::caught_up(written, replayed)
    } else {
        replayed >= written
    }
}

async fn fence(ctx: &Ctx, old: &SiteConfig, opts: &Options) -> Result<String, OpError> {
    let mut detail = Vec::new();
    for (name, kind, url) in replicated(old)? {
        match kind.fence(url).await {
            Ok(()) => detail.push(format!("{name} at {}: read-only, confirmed", old.name)),
            Err(e) if opts.force && e.kind() == ErrorKind::Unreachable => detail.push(format!(
                "{name} at {}: unreachable, fence NOT confirmed (--force): {e}",
                old.name
            )),
            Err(e) => return Err(step_err(Step::Fence, e)),
        }
    }
    for action in &old.fence {
        detail.push(run_action(&*ctx.kube, Step::Fence, action).await?);
    }
    Ok(detail.join("; "))
}

async fn promote(
    ctx: &Ctx,
    old: &SiteConfig,
    new: &SiteConfig,
    opts: &Options,
) -> Result<String, OpError> {
    let mut detail = Vec::new();
    for (name, kind, url) in replicated(new)? {
        // With the old primary fenced and reachable: wait for the replica to replay all of it.
        let old_url = old.services.get(name).map(|s| s.url.expose().to_string());
        let mut lag = None;
        if let Some(old_url) = old_url {
            let until = Instant::now() + CATCH_UP_WAIT;
            loop {
                let (o, n) = (kind.probe(&old_url).await, kind.probe(url).await);
                match (o, n) {
                    (Ok(o), Ok(n)) => {
                        let (behind, caught) = match (o.position, n.position) {
                            (Some(a), Some(b)) => {
                                (a.saturating_sub(b), caught_up(kind.name(), a, b))
                            }
                            _ => (u64::MAX, false),
                        };
                        if caught || n.role == Role::Primary {
                            lag = Some(0);
                            break;
                        }
                        if Instant::now() >= until {
                            if !opts.accept_data_loss {
                                return Err(step_err(
                                    Step::Promote,
                                    format!(
                                        "{name} at {} is still {behind} bytes behind after {CATCH_UP_WAIT:?}; check replication, or pass --accept-data-loss to lose them",
                                        new.name
                                    ),
                                ));
                            }
                            lag = Some(behind);
                            break;
                        }
                    }
                    _ => break, // the old primary cannot be asked: the plan's RPO gate decided
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                if ctx.cancel.is_cancelled() {
                    return Err(OpError::interrupted());
                }
            }
        }
        kind.promote(url, PROMOTE_WAIT)
            .await
            .map_err(|e| step_err(Step::Promote, e))?;
        detail.push(format!(
            "{name} at {}: promoted and writable (lag at promotion: {})",
            new.name,
            lag.map_or("unknown".to_string(), |l| format!("{l} bytes"))
        ));
    }
    for action in &new.promote {
        detail.push(run_action(&*ctx.kube, Step::Promote, action).await?);
    }
    Ok(detail.join("; "))
}

/// How long a repointed replica may take to stream from the new primary.
const REPOINT_WAIT: Duration = Duration::from_secs(30);

/// Points the replicas of the sites other than `old` and `new` (e.g. DR) at the new
/// primary. A replica that cannot be repointed (unreachable, or replayed past the promotion)
/// does not stop the failover, which has already moved the primary: the step's detail names
/// it and what to run (`failover rejoin`), and the log warns.
async fn repoint(ctx: &Ctx, old: &SiteConfig, new: &SiteConfig) -> Result<String, OpError> {
    let mut detail = Vec::new();
    for other in sites(ctx)?
        .iter()
        .filter(|s| s.name != old.name && s.name != new.name)
    {
        for (name, kind, url) in replicated(other)? {
            let Some(primary) = new.services.get(name.as_str()) else {
                continue;
            };
            match kind.repoint(url, primary.url.expose(), REPOINT_WAIT).await {
                Ok(()) => detail.push(format!(
                    "{name} at {}: streams from {}",
                    other.name, new.name
                )),
                Err(e) => {
                    tracing::warn!(site = %other.name, service = %name, cause = %e, "replica not repointed");
                    detail.push(format!(
                        "{name} at {}: NOT repointed ({e}); run `lifeboat failover rejoin {}` once it is reachable",
                        other.name, other.name
                    ));
                }
            }
        }
    }
    if detail.is_empty() {
        detail.push("no other replicas to repoint".into());
    }
    Ok(detail.join("; "))
}

/// What `run_action` would do, changing nothing.
async fn preview_action(ctx: &Ctx, action: &ActionConfig) -> String {
    if let Some(k) = &action.kube_scale {
        return match super::failover_kube::preview(&*ctx.kube, k).await {
            Ok(what) => format!("scale {what}"),
            Err(e) => format!("WILL FAIL: {e}"),
        };
    }
    match action.command.as_deref().and_then(|a| a.first()) {
        Some(program) => format!("run {program}"),
        None => "nothing to run".into(),
    }
}

async fn run_action(
    kube: &dyn KubeApi,
    step: Step,
    action: &ActionConfig,
) -> Result<String, OpError> {
    if let Some(k) = &action.kube_scale {
        return super::failover_kube::scale(kube, k).await.map_err(|e| {
            OpError::new(
                e.kind(),
                FailoverError::Step {
                    step: step.as_str(),
                    reason: e.to_string(),
                },
            )
        });
    }
    let argv = action.command.clone().unwrap_or_default();
    let Some((program, args)) = argv.split_first() else {
        return Ok("nothing to run".into());
    };
    let (program, args) = (program.clone(), args.to_vec());
    let shown = program.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .status()
    })
    .await
    .map_err(|e| step_err(step, e))?
    .map_err(|e| step_err(step, format!("cannot run {shown}: {e}")))?;
    if !status.success() {
        return Err(step_err(step, format!("{shown} failed: {status}")));
    }
    Ok(format!("ran {shown}"))
}

async fn switch_dns(ctx: &Ctx, old: &SiteConfig, new: &SiteConfig) -> Result<String, OpError> {
    use crate::dns::{Change, Desired, Expect, RRset, VerifyOptions};
    let mut detail = Vec::new();
    for (name, values) in &new.dns {
        let dns_err = |e: crate::dns::DnsError| OpError::new(e.kind(), e);
        let rec = ctx
            .config
            .dns
            .records_named(name, None)
            .into_iter()
            .next()
            .ok_or_else(|| step_err(Step::Dns, format!("`{name}` is not in dns.records")))?
            .clone();
        let provider_config =
            ctx.config.dns.providers.get(&rec.provider).ok_or_else(|| {
                step_err(Step::Dns, format!("no dns provider `{}`", rec.provider))
            })?;
        let provider =
            crate::dns::config::build(&rec.provider, provider_config).map_err(dns_err)?;
        let target = rec.target().map_err(dns_err)?;
        let desired = RRset::new(rec.rtype, rec.ttl, values).map_err(dns_err)?;
        let current = provider.read(&target).await.map_err(dns_err)?;
        // Compare-and-swap against the old site's values; a resumed run finds the new ones.
        let expect = if current.as_ref().is_some_and(|c| c.values == desired.values) {
            Expect::values(rec.rtype, values).map_err(dns_err)?
        } else {
            Expect::values(
                rec.rtype,
                old.dns.get(name).map_or(&[][..], |v| v.as_slice()),
            )
            .map_err(dns_err)?
        };
        let options = VerifyOptions::new(
            rec.nameserver_addrs(&*provider).await.map_err(dns_err)?,
            rec.verify_timeout(),
        );
        let done = crate::dns::switch(
            &*provider,
            Change {
                target,
                expect,
                desired: Desired::Present(desired),
            },
            &options,
        )
        .await
        .map_err(dns_err)?;
        detail.push(format!(
            "{name} → {} ({:?}; every nameserver agreed after {} ms)",
            values.join(", "),
            done.plan.action,
            done.timings.agreement_ms
        ));
    }
    Ok(detail.join("; "))
}

async fn verify(new: &SiteConfig) -> Result<String, OpError> {
    let mut detail = Vec::new();
    for (name, kind, url) in replicated(new)? {
        kind.verify_writable(url)
            .await
            .map_err(|e| step_err(Step::Verify, e))?;
        detail.push(format!("{name} at {}: write/read probe passed", new.name));
    }
    Ok(detail.join("; "))
}

/// `failover status`: what this vantage point sees now, and the catalog's term.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub site: Option<String>,
    pub mode: Option<crate::policy::failover::Mode>,
    pub primary: String,
    pub term: i64,
    pub services: Vec<Seen>,
    pub unfinished: Option<FailoverRow>,
    /// What each site's controller (vantage point) reports, when `sites[].peer` and
    /// `peer_token` are set: its term, primary and every site's health as it sees it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vantage_points: BTreeMap<String, Vantage>,
}

/// One controller's latest round, or why it did not answer.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Vantage {
    Report(crate::policy::failover::Report),
    Unreachable { error: String },
}

/// What every site's controller reports now (empty without `sites[].peer` + `peer_token`).
pub async fn vantage_points(ctx: &Ctx) -> Result<BTreeMap<String, Vantage>, OpError> {
    let mut out = BTreeMap::new();
    if let Some(peers) = peers(ctx)? {
        for (site, r) in peers.reports().await {
            out.insert(
                site,
                match r {
                    Ok(r) => Vantage::Report(r),
                    Err(error) => Vantage::Unreachable { error },
                },
            );
        }
    }
    Ok(out)
}

pub async fn status(ctx: &Ctx) -> Result<Status, OpError> {
    let all = sites(ctx)?;
    let mut seen = Vec::new();
    for s in all {
        seen.extend(probe_site(&*ctx.kube, s).await);
    }
    let history = ctx.catalog.failovers(1).await?;
    let failover = ctx.config.failover.as_ref();
    let here = failover.and_then(|f| f.here(&|n| std::env::var(n).ok()));
    // The daemon's controller may know a newer term (learned from its peers).
    let controller_term = match &here {
        Some(h) => ctx
            .catalog
            .controller_load(h)
            .await?
            .and_then(|(state, _)| serde_json::from_str::<serde_json::Value>(&state).ok())
            .and_then(|v| v["term"].as_i64()),
        None => None,
    };
    let vantage_points = vantage_points(ctx).await?;
    let peer_term = vantage_points
        .values()
        .filter_map(|v| match v {
            Vantage::Report(r) => i64::try_from(r.term).ok(),
            Vantage::Unreachable { .. } => None,
        })
        .max();
    Ok(Status {
        site: here,
        mode: failover.map(|f| f.mode),
        primary: current_primary(ctx, &seen).await?,
        term: history
            .last()
            .map_or(0, |f| f.term)
            .max(controller_term.unwrap_or(0))
            .max(peer_term.unwrap_or(0)),
        vantage_points,
        services: seen,
        unfinished: unfinished(ctx).await?,
    })
}

pub async fn history(ctx: &Ctx, limit: i64) -> Result<Vec<FailoverRow>, OpError> {
    Ok(ctx.catalog.failovers(limit).await?)
}

/// What one step taken for the daemon's controller did.
#[derive(Debug, Clone, Serialize)]
pub struct Taken {
    /// Done (recorded `done` in the catalog). A fence that could not reach the old primary
    /// is not done: `confirmed` is false and the controller waits (see `policy::failover`).
    pub done: bool,
    /// For the fence: the old primary was reached and confirmed read-only.
    pub confirmed: bool,
    pub detail: String,
    pub ms: u128,
}

/// Takes one `step` of the automatic failover of `term` from `from` to `to`, for the daemon's
/// controller: recorded `started` before and `done` after, never taken again once `done`
/// (the fence excepted: it is idempotent and tried until it is confirmed or the controller
/// moves on, which records it done as unconfirmed). The failover is recorded `done` after
/// its `verify` step.
#[tracing::instrument(skip(ctx, step), fields(step = step.as_str()))]
pub async fn take_step(
    ctx: &Ctx,
    term: u64,
    from: &str,
    to: &str,
    step: Step,
) -> Result<Taken, OpError> {
    let t = Instant::now();
    let term_i = i64::try_from(term)
        .map_err(|_| OpError::new(ErrorKind::Internal, format!("term {term} is out of range")))?;
    let old = site(ctx, from)?.clone();
    let new = site(ctx, to)?.clone();
    let plan = serde_json::json!({ "term": term, "from": from, "to": to, "by": "controller" });
    ctx.catalog
        .failover_begin(term_i, from, to, "automatic", &plan, ctx.now())
        .await?;
    let recorded: BTreeMap<String, bool> = ctx
        .catalog
        .failover_steps(term_i)
        .await?
        .into_iter()
        .map(|s| (s.step.clone(), s.done()))
        .collect();
    let is_done = |s: Step| recorded.get(s.as_str()).copied().unwrap_or(false);
    if is_done(step) {
        return Ok(Taken {
            done: true,
            confirmed: true,
            detail: format!("already done in term {term}: not taken again"),
            ms: 0,
        });
    }
    // The controller moved past an unconfirmed fence (fence_after + margin passed since the
    // old primary was last seen up): record the fence as done, saying so.
    for earlier in Step::ALL.iter().take_while(|s| **s < step) {
        if !is_done(*earlier) {
            ctx.catalog
                .failover_step_start(term_i, earlier.as_str(), ctx.now())
                .await?;
            let detail = if *earlier == Step::Fence {
                format!(
                    "{from} NOT confirmed read-only (unreachable); it was last seen up more than failover.fence_after plus a margin ago, so it fenced itself or is down"
                )
            } else {
                "skipped by the controller".to_string()
            };
            ctx.catalog
                .failover_step_done(term_i, earlier.as_str(), &detail, ctx.now())
                .await?;
        }
    }
    ctx.catalog
        .failover_step_start(term_i, step.as_str(), ctx.now())
        .await?;
    crate::model::failpoint::hit(&format!("failover-before-{}", step.as_str()));
    let opts = Options::default();
    let (done, confirmed, detail) = match step {
        Step::Fence => {
            let mut detail = Vec::new();
            let mut confirmed = true;
            for (name, kind, url) in replicated(&old)? {
                match kind.fence(url).await {
                    Ok(()) => detail.push(format!("{name} at {from}: read-only, confirmed")),
                    Err(e) => {
                        confirmed = false;
                        detail.push(format!("{name} at {from}: not confirmed: {e}"));
                    }
                }
            }
            if confirmed {
                for action in &old.fence {
                    detail.push(run_action(&*ctx.kube, Step::Fence, action).await?);
                }
            }
            (confirmed, confirmed, detail.join("; "))
        }
        Step::Promote => (true, true, promote(ctx, &old, &new, &opts).await?),
        Step::Repoint => (true, true, repoint(ctx, &old, &new).await?),
        Step::Dns => (true, true, switch_dns(ctx, &old, &new).await?),
        Step::Verify => (true, true, verify(&new).await?),
    };
    let ms = t.elapsed().as_millis();
    if done {
        ctx.catalog
            .failover_step_done(term_i, step.as_str(), &detail, ctx.now())
            .await?;
        crate::model::failpoint::hit(&format!("failover-after-{}", step.as_str()));
    }
    if done && step == Step::Verify {
        let timeline: BTreeMap<String, i64> = ctx
            .catalog
            .failover_steps(term_i)
            .await?
            .iter()
            .filter_map(|s| {
                let a = chrono::DateTime::parse_from_rfc3339(&s.started_at).ok()?;
                let b = chrono::DateTime::parse_from_rfc3339(s.finished_at.as_deref()?).ok()?;
                Some((s.step.clone(), (b - a).num_milliseconds()))
            })
            .collect();
        ctx.catalog
            .failover_finish(
                term_i,
                "done",
                &serde_json::to_value(&timeline).unwrap_or_default(),
                None,
                ctx.now(),
            )
            .await?;
    }
    Ok(Taken {
        done,
        confirmed,
        detail,
        ms,
    })
}

/// Demotes the services of `site_name` (this instance's own site, cut off from the quorum or
/// superseded by a newer term): PostgreSQL read-only with writers terminated, Redis paused /
/// replica, then the site's `fence:` actions. Services that cannot be reached are reported
/// (they are down, or will be fenced when reached); the others are fenced anyway.
pub async fn fence_site(ctx: &Ctx, site_name: &str) -> Result<String, OpError> {
    let s = site(ctx, site_name)?.clone();
    let mut detail = Vec::new();
    for (name, kind, url) in replicated(&s)? {
        match kind.fence(url).await {
            Ok(()) => detail.push(format!("{name} at {site_name}: read-only, confirmed")),
            Err(e) => detail.push(format!("{name} at {site_name}: not fenced: {e}")),
        }
    }
    for action in &s.fence {
        detail.push(run_action(&*ctx.kube, Step::Fence, action).await?);
    }
    Ok(detail.join("; "))
}

/// Lifts this site's self-fence (quorum contact is back and no newer term exists).
pub async fn unfence_site(ctx: &Ctx, site_name: &str) -> Result<String, OpError> {
    let s = site(ctx, site_name)?.clone();
    let mut detail = Vec::new();
    for (name, kind, url) in replicated(&s)? {
        kind.unfence(url)
            .await
            .map_err(|e| OpError::new(e.kind(), e))?;
        detail.push(format!("{name} at {site_name}: writable again"));
    }
    Ok(detail.join("; "))
}

/// Fences one service of another site found answering as a writable primary while it is
/// not the primary site (e.g. an old primary restarted before it could fence itself).
pub async fn fence_service(ctx: &Ctx, site_name: &str, service: &str) -> Result<(), OpError> {
    let s = site(ctx, site_name)?;
    for (name, kind, url) in replicated(s)? {
        if name == service {
            kind.fence(url)
                .await
                .map_err(|e| OpError::new(e.kind(), e))?;
        }
    }
    Ok(())
}

/// Probes every service of `site` (for the controller), each bounded by `timeout`.
pub async fn probe_site_within(
    kube: &dyn KubeApi,
    site: &SiteConfig,
    timeout: Duration,
) -> Vec<Seen> {
    let probes = site.services.iter().map(|(name, svc)| async move {
        let r = match tokio::time::timeout(timeout, probe_service(kube, svc)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        Seen {
            site: site.name.clone(),
            service: name.clone(),
            kind: svc.kind.as_str(),
            error: r.as_ref().err().cloned(),
            probe: r.ok(),
        }
    });
    futures::future::join_all(probes).await
}

/// The strictest RPO of the sources the sites' services name (the controller's RPO gate).
pub fn strictest_rpo(ctx: &Ctx) -> Option<Duration> {
    ctx.config
        .sites
        .iter()
        .flat_map(|s| s.services.values())
        .filter_map(|svc| rpo_of(ctx, svc.source.as_deref()))
        .min()
}

/// How long a rejoined replica may take to stream (a base backup is taken before this).
const REJOIN_WAIT: Duration = Duration::from_secs(60);

/// `lifeboat failover rejoin SITE`: turns the services of `site_name` (a recovered old
/// primary) into replicas of the current primary site's. Refused for the primary itself.
/// Safe to repeat (a service that already is a replica is only repointed).
#[tracing::instrument(skip(ctx))]
pub async fn rejoin(ctx: &Ctx, site_name: &str) -> Result<Vec<String>, OpError> {
    let all = sites(ctx)?;
    let target = site(ctx, site_name)?.clone();
    let mut seen = Vec::new();
    for s in all {
        seen.extend(probe_site(&*ctx.kube, s).await);
    }
    let primary = current_primary(ctx, &seen).await?;
    if primary == site_name {
        return Err(FailoverError::Refused(format!(
            "{site_name} is the primary site: there is nothing to rejoin (move the primary away first with `failover execute`)"
        ))
        .into());
    }
    let primary_site = site(ctx, &primary)?.clone();
    let mut detail = Vec::new();
    for (name, kind, url) in replicated(&target)? {
        let Some(p) = primary_site.services.get(name.as_str()) else {
            continue;
        };
        let data_dir = target
            .services
            .get(name.as_str())
            .and_then(|s| s.data_dir.clone());
        let did = kind
            .rejoin(url, p.url.expose(), data_dir.as_deref(), REJOIN_WAIT)
            .await
            .map_err(|e| OpError::new(e.kind(), e))?;
        tracing::info!(site = %site_name, service = %name, primary = %primary, "rejoined");
        detail.push(format!("{name} at {site_name} follows {primary}: {did}"));
    }
    Ok(detail)
}
