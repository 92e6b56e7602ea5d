//! The failover controller inside `lifeboat run` (`failover.mode: automatic | observe`): every
//! `probe_interval` it probes every site's services, publishes what it saw to its peers
//! (`GET /api/v1/failover/observations`), fetches theirs, and feeds the round to the pure
//! state machine [`crate::policy::failover`]; in `automatic` mode it carries the machine's
//! actions out: votes (`POST /api/v1/failover/vote`), the failover's persisted steps
//! ([`crate::ops::failover::take_step`], each carrying the term), self-fencing and unfencing.
//!
//! # Guarantees
//! - The peer endpoints answer only with the bearer `failover.peer_token` (compared in
//!   constant time); without a configured token they refuse everything.
//! - Every probe and every peer request is bounded (a hung server or peer is a failure, never
//!   a hung round).
//! - The state and the vote book are saved in this site's catalog after every decision and
//!   before a vote is answered: a restarted controller resumes an unfinished failover at its
//!   first step not done, and never votes twice in one term.
//! - A controller whose catalog is empty starts as term 0 and learns the term and primary
//!   from its peers at its first round with them (the state machine adopts a newer term).
//! - `observe` probes, publishes and logs what it would do, and acts on nothing.
//! - A move made by `failover execute` is adopted (term and primary) when announced
//!   (`POST /api/v1/failover/adopt`) or, at the latest, at the next round after it is done in
//!   this site's catalog; votes are per (term, candidate, requester), so a controller never
//!   wins a term that `execute` claimed.
//! - Split-brain guard: the primary site's controller, with a quorum and no newer term in
//!   sight, fences any other site's service that answers as a writable primary (an old
//!   primary restarted before it could fence itself), provided its own services answer as
//!   writable primaries.
//!
//! # Caveats
//! With several daemon replicas at one site only the leader decides and acts; the others
//! publish their probes with the term their catalog holds. `manual` mode does not run the
//! controller (`failover execute` moves the primary). The old primary is not rejoined
//! automatically: `lifeboat failover rejoin SITE` does it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::ops::Ctx;
use crate::ops::failover::Seen;
use crate::ops::failover_peers::Peers;
use crate::policy::failover::{
    Action, Adopt, Ballot, Input, Lag, Mode, Params, Phase, Report, Round, State, View, VoteAnswer,
    VoteRequest, decide,
};

/// What this controller shares with the HTTP handlers.
pub struct Shared {
    app: Arc<Ctx>,
    here: String,
    token: Option<String>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    ballot: Ballot,
    report: Option<Report>,
    gauges: super::metrics::FailoverGauges,
    /// A move announced by `failover execute`, adopted at the next round.
    announced: Option<Adopt>,
    /// The latest round saw another controller electing or failing over.
    peers_moving: bool,
}

impl Shared {
    /// The term, primary and phase this controller holds now.
    pub async fn state(&self) -> State {
        self.inner.lock().await.state.clone()
    }

    /// The failover metrics (`lifeboat_site_up`, `lifeboat_failover_term`, ...) as
    /// Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let inner = self.inner.lock().await;
        let mut g = inner.gauges.clone();
        g.primary = inner.state.primary.clone();
        g.term = inner.state.term;
        super::metrics::render_failover(&g)
    }

    /// This controller's latest published report.
    pub async fn report(&self) -> Option<Report> {
        self.inner.lock().await.report.clone()
    }

    async fn save(&self, inner: &Inner) {
        let (Ok(state), Ok(ballot)) = (
            serde_json::to_string(&inner.state),
            serde_json::to_string(&inner.ballot),
        ) else {
            return;
        };
        if let Err(e) = self
            .app
            .catalog
            .controller_save(&self.here, &state, &ballot, self.app.now())
            .await
        {
            tracing::error!(cause = %e, "cannot save the failover controller's state");
        }
    }

    /// Notes a move finished elsewhere; the controller adopts it at its next round.
    pub async fn announce(&self, a: Adopt) {
        let mut inner = self.inner.lock().await;
        if a.term > inner.state.term && inner.announced.as_ref().is_none_or(|p| a.term > p.term) {
            inner.announced = Some(a);
        }
    }

    /// Grants (or refuses) a vote; the vote is saved before it is answered.
    /// Returns why the vote was refused, or None when granted.
    pub async fn vote(
        &self,
        req: &VoteRequest,
    ) -> Result<Option<String>, crate::catalog::CatalogError> {
        let mut inner = self.inner.lock().await;
        let before = inner.ballot.clone();
        let Inner {
            state,
            ballot,
            peers_moving,
            ..
        } = &mut *inner;
        let refused = crate::policy::failover::vote(state, ballot, *peers_moving, req);
        if inner.ballot != before {
            let state = serde_json::to_string(&inner.state).unwrap_or_default();
            let ballot = serde_json::to_string(&inner.ballot).unwrap_or_default();
            if let Err(e) = self
                .app
                .catalog
                .controller_save(&self.here, &state, &ballot, self.app.now())
                .await
            {
                inner.ballot = before;
                return Err(e);
            }
        }
        Ok(refused)
    }
}

/// Starts the controller if `failover.mode` is `automatic` or `observe`; `acting` says
/// whether this replica may act (it is the daemon's leader). Returns the shared state for
/// the HTTP endpoints and the task.
pub async fn start(
    app: Arc<Ctx>,
    acting: Arc<dyn Fn() -> bool + Send + Sync>,
    stop: CancellationToken,
) -> Result<Option<(Arc<Shared>, tokio::task::JoinHandle<()>)>, crate::ops::OpError> {
    let Some(fc) = app.config.failover.clone() else {
        return Ok(None);
    };
    if fc.mode == Mode::Manual || app.config.sites.is_empty() {
        return Ok(None);
    }
    let here = fc.here(&|n| std::env::var(n).ok()).ok_or_else(|| {
        crate::ops::OpError::new(
            crate::model::ErrorKind::Config,
            "failover.site is not set and neither is $LIFEBOAT_SITE: say which site this daemon runs at",
        )
    })?;
    let order = fc.order(&app.config.sites);
    let loaded = app.catalog.controller_load(&here).await?;
    let (state, ballot) = match loaded {
        Some((s, b)) => (
            serde_json::from_str(&s).unwrap_or_else(|e| {
                tracing::warn!(cause = %e, "unreadable failover controller state: starting afresh, learning the term from peers");
                State::new(order.first().map_or("", String::as_str))
            }),
            serde_json::from_str(&b).unwrap_or_default(),
        ),
        None => (
            State::new(order.first().map_or("", String::as_str)),
            Ballot::default(),
        ),
    };
    if matches!(fc.quorum, crate::config::failover::Quorum::Exactly(n) if n < Params::majority(app.config.sites.len()))
    {
        tracing::warn!(
            quorum = fc.quorum(app.config.sites.len()),
            sites = app.config.sites.len(),
            "failover.quorum is below the majority: one vantage point alone can call a site down"
        );
    }
    tracing::info!(site = %here, mode = ?fc.mode, term = state.term, primary = %state.primary, "failover controller starting");
    let shared = Arc::new(Shared {
        app: app.clone(),
        here,
        token: fc.peer_token.as_ref().map(|t| t.expose().to_string()),
        inner: Mutex::new(Inner {
            gauges: super::metrics::FailoverGauges {
                rpo_seconds: app
                    .config
                    .sites
                    .iter()
                    .flat_map(|s| s.services.iter())
                    .filter_map(|(name, svc)| {
                        let src = app.config.source(svc.source.as_deref()?)?;
                        let rpo = app.config.targets(src).objectives?.rpo.0;
                        Some((name.clone(), rpo.as_secs_f64()))
                    })
                    .collect(),
                ..Default::default()
            },
            state,
            ballot,
            report: None,
            announced: None,
            peers_moving: false,
        }),
    });
    let task = tokio::spawn(run(shared.clone(), acting, stop));
    Ok(Some((shared, task)))
}

/// The peer endpoints, behind `failover.peer_token`.
pub fn router<S: Clone + Send + Sync + 'static>(shared: Arc<Shared>) -> Router<S> {
    Router::new()
        .route("/api/v1/failover/observations", get(observations))
        .route("/api/v1/failover/vote", post(vote))
        .route("/api/v1/failover/adopt", post(adopt))
        .route_layer(middleware::from_fn_with_state(shared.clone(), peer_bearer))
        .with_state(shared)
}

async fn peer_bearer(AxState(s): AxState<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return (
            StatusCode::FORBIDDEN,
            "failover.peer_token is not set on this daemon: peers are refused\n",
        )
            .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| super::http::same(g.as_bytes(), token.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token (failover.peer_token)\n",
        )
            .into_response();
    }
    next.run(req).await
}

async fn observations(AxState(s): AxState<Arc<Shared>>) -> Response {
    match s.report().await {
        Some(r) => axum::Json(r).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no probe round finished yet\n",
        )
            .into_response(),
    }
}

async fn vote(
    AxState(s): AxState<Arc<Shared>>,
    axum::Json(req): axum::Json<VoteRequest>,
) -> Response {
    match s.vote(&req).await {
        Ok(refused) => {
            let granted = refused.is_none();
            tracing::info!(term = req.term, to = %req.to, by = ?req.by, granted, reason = ?refused, "vote requested");
            axum::Json(VoteAnswer {
                granted,
                voter: s.here.clone(),
                reason: refused,
            })
            .into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn adopt(AxState(s): AxState<Arc<Shared>>, axum::Json(a): axum::Json<Adopt>) -> Response {
    tracing::info!(term = a.term, primary = %a.primary, "a finished move was announced");
    s.announce(a).await;
    axum::Json(serde_json::json!({ "accepted": true })).into_response()
}

/// How long a probe of one service may take in a round of `interval`.
pub fn probe_timeout(interval: Duration) -> Duration {
    (interval * 8 / 10).clamp(Duration::from_millis(300), Duration::from_secs(3))
}

/// How long a peer may take to answer.
pub fn peer_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_millis(300), Duration::from_secs(2))
}

/// Per-site probe counters kept across rounds.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub views: BTreeMap<String, View>,
}

impl Counters {
    /// Folds one round of this vantage point's probes into the views: a site is up when
    /// every service of it answered. A replica's lag in bytes is measured against the
    /// primary's same service; when the primary cannot be asked, the last known is kept.
    pub fn observe(&mut self, primary: &str, seen: &[Seen], now: DateTime<Utc>) {
        let mut by_site: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
        for s in seen {
            by_site.entry(s.site.as_str()).or_default().push(s);
        }
        for (site, services) in by_site {
            let up = services.iter().all(|s| s.probe.is_some());
            let prev = self.views.get(site).cloned();
            let mut lag: Option<Lag> = None;
            if site != primary {
                let mut bytes: Option<u64> = Some(0);
                let mut seconds: Option<f64> = Some(0.0);
                let mut any = false;
                for s in services
                    .iter()
                    .filter(|s| s.kind == "postgres" || s.kind == "redis")
                {
                    any = true;
                    let Some(p) = &s.probe else {
                        bytes = None;
                        seconds = None;
                        continue;
                    };
                    let prim = seen
                        .iter()
                        .find(|x| x.site == primary && x.service == s.service)
                        .and_then(|x| x.probe.as_ref());
                    let b = match (prim.and_then(|x| x.position), p.position) {
                        (Some(a), Some(b)) => Some(
                            if s.kind == "postgres" && crate::kinds::probe::caught_up(a, b) {
                                0
                            } else {
                                a.saturating_sub(b)
                            },
                        ),
                        _ => prev.as_ref().and_then(|v| v.lag).map(|l| l.bytes),
                    };
                    bytes = match (bytes, b) {
                        (Some(x), Some(y)) => Some(x.max(y)),
                        _ => None,
                    };
                    let sec = p.lag_seconds.or(match b {
                        Some(0) => Some(0.0),
                        _ => None,
                    });
                    seconds = match (seconds, sec) {
                        (Some(x), Some(y)) => Some(x.max(y)),
                        _ => None,
                    };
                }
                if any && let (Some(bytes), Some(seconds)) = (bytes, seconds) {
                    lag = Some(Lag { bytes, seconds });
                }
            }
            let v = self.views.entry(site.to_string()).or_insert(View {
                failures_in_a_row: 0,
                successes_in_a_row: 0,
                last_ok: None,
                lag: None,
            });
            if up {
                v.failures_in_a_row = 0;
                v.successes_in_a_row = v.successes_in_a_row.saturating_add(1);
                v.last_ok = Some(now);
            } else {
                v.successes_in_a_row = 0;
                v.failures_in_a_row = v.failures_in_a_row.saturating_add(1);
            }
            v.lag = lag.or(if site == primary { None } else { v.lag });
        }
    }
}

/// Services of sites other than the primary that answer as writable primaries, to fence:
/// only when `here` is the primary, a quorum answered this round and nobody knows or
/// promised a newer term (a controller that missed a failover must not fence the real
/// primary).
pub fn strays(
    params: &Params,
    state: &State,
    here: &str,
    round: &Round,
    seen: &[Seen],
) -> Vec<(String, String)> {
    let settled = matches!(state.phase, Phase::Healthy | Phase::FailedOver { .. });
    let current = round
        .values()
        .all(|r| r.term <= state.term && r.promised <= state.term);
    // This site's own replicated services must answer as writable primaries: after a
    // `failover execute` run outside the controller, the stale "primary" is fenced itself
    // and must not fence the real one.
    let replicated = |s: &&Seen| s.kind == "postgres" || s.kind == "redis";
    let really_primary = seen.iter().filter(replicated).any(|s| s.site == here)
        && seen
            .iter()
            .filter(replicated)
            .filter(|s| s.site == here)
            .all(|s| {
                s.probe
                    .as_ref()
                    .is_some_and(|p| p.role == crate::kinds::probe::Role::Primary && !p.fenced)
            });
    if params.mode != Mode::Automatic
        || state.primary != here
        || state.self_fenced
        || !settled
        || round.len() < params.quorum
        || !current
        || !really_primary
    {
        return Vec::new();
    }
    seen.iter()
        .filter(|s| s.site != state.primary)
        .filter(|s| {
            s.probe
                .as_ref()
                .is_some_and(|p| p.role == crate::kinds::probe::Role::Primary && !p.fenced)
        })
        .map(|s| (s.site.clone(), s.service.clone()))
        .collect()
}

async fn run(
    shared: Arc<Shared>,
    acting: Arc<dyn Fn() -> bool + Send + Sync>,
    stop: CancellationToken,
) {
    let app = shared.app.clone();
    let Some(fc) = app.config.failover.clone() else {
        return;
    };
    let sites = app.config.sites.clone();
    let params = fc.params(&sites, crate::ops::failover::strictest_rpo(&app));
    let interval = fc.probe_interval.0;
    let probe_within = probe_timeout(interval);
    let peers = match Peers::new(
        &sites,
        Some(&shared.here),
        shared.token.as_deref(),
        peer_timeout(interval),
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(cause = %e, "failover controller stopped");
            return;
        }
    };
    let mut counters = Counters::default();
    let mut last_hold = String::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Probe every site and ask every peer at once.
        let probes = futures::future::join_all(
            sites
                .iter()
                .map(|s| crate::ops::failover::probe_site_within(&*app.kube, s, probe_within)),
        );
        let fetches = async {
            match &peers {
                Some(p) => p.reports().await,
                None => Vec::new(),
            }
        };
        let (seen, fetched) = tokio::join!(probes, fetches);
        let seen: Vec<Seen> = seen.into_iter().flatten().collect();
        let now = app.now();
        let mut inner = shared.inner.lock().await;
        counters.observe(&inner.state.primary, &seen, now);
        let (term, primary) = {
            let (t, p) = inner.state.announce();
            (t, p.to_string())
        };
        let own = Report {
            term,
            primary,
            promised: inner.ballot.voted.as_ref().map_or(0, |(t, _)| *t),
            sites: counters.views.clone(),
            moving: inner.state.moving(),
        };
        inner.report = Some(own.clone());
        let mut round: Round = BTreeMap::new();
        round.insert(shared.here.clone(), own);
        for (name, r) in fetched {
            match r {
                Ok(report) => {
                    round.insert(name, report);
                }
                Err(e) => tracing::debug!(peer = %name, cause = %e, "peer did not answer"),
            }
        }
        inner.peers_moving = round
            .iter()
            .any(|(vantage, r)| *vantage != shared.here && r.moving);
        inner.gauges.site_up = round
            .iter()
            .flat_map(|(vantage, r)| {
                r.sites
                    .iter()
                    .map(|(site, v)| ((site.clone(), vantage.clone()), v.failures_in_a_row == 0))
            })
            .collect();
        inner.gauges.lag_seconds = seen
            .iter()
            .filter_map(|s| {
                let p = s.probe.as_ref()?;
                (p.role == crate::kinds::probe::Role::Replica)
                    .then_some(((s.service.clone(), s.site.clone()), p.lag_seconds?))
            })
            .collect();
        if !acting() {
            continue;
        }
        // A move `failover execute` announced or recorded in this site's catalog.
        let recorded = match app.catalog.failovers(1).await {
            Ok(rows) => rows
                .into_iter()
                .rfind(|f| f.status == "done")
                .and_then(|f| {
                    Some(Adopt {
                        term: u64::try_from(f.term).ok()?,
                        primary: f.to_site,
                    })
                }),
            Err(e) => {
                tracing::debug!(cause = %e, "cannot read this site's failover history");
                None
            }
        };
        let mut learned = Vec::new();
        if let Some(a) = [inner.announced.take(), recorded]
            .into_iter()
            .flatten()
            .filter(|a| a.term > inner.state.term)
            .max_by_key(|a| a.term)
        {
            tracing::info!(term = a.term, primary = %a.primary, "adopting a move made by `failover execute`");
            let (next, actions) =
                decide(&params, &inner.state, &Input::Adopt(a), &shared.here, now);
            inner.state = next;
            shared.save(&inner).await;
            learned = actions;
        }
        let (next, mut actions) = decide(
            &params,
            &inner.state,
            &Input::Round(round.clone()),
            &shared.here,
            now,
        );
        let changed = next != inner.state;
        inner.state = next;
        if changed {
            shared.save(&inner).await;
        }
        drop(inner);
        learned.append(&mut actions);
        let actions = learned;
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            if stop.is_cancelled() {
                return;
            }
            let input = match &action {
                Action::Hold { reason } => {
                    if *reason != last_hold {
                        tracing::warn!(reason = %reason, "failover held back");
                        last_hold = reason.clone();
                    }
                    None
                }
                Action::Refuse { reason } => {
                    tracing::warn!(reason = %reason, "failover refused");
                    None
                }
                _ if params.mode == Mode::Observe => {
                    tracing::info!(action = ?action, "observe mode: not acting");
                    None
                }
                Action::RequestVotes { term, to } => {
                    let granted = request_votes(&shared, peers.as_ref(), *term, to).await;
                    tracing::info!(term, to = %to, granted, "election");
                    Some(Input::Votes {
                        term: *term,
                        granted,
                    })
                }
                Action::Take {
                    term,
                    step,
                    from,
                    to,
                } => {
                    tracing::info!(term, step = step.as_str(), from = %from, to = %to, "failover step");
                    match crate::ops::failover::take_step(&app, *term, from, to, *step).await {
                        Ok(t) => {
                            tracing::info!(term, step = step.as_str(), done = t.done, confirmed = t.confirmed, ms = t.ms as u64, detail = %t.detail, "failover step taken");
                            Some(Input::StepDone {
                                term: *term,
                                step: *step,
                                confirmed: t.confirmed,
                            })
                        }
                        Err(e) => {
                            tracing::error!(term, step = step.as_str(), cause = %e, "failover step failed; retried next round");
                            Some(Input::StepFailed {
                                term: *term,
                                step: *step,
                            })
                        }
                    }
                }
                Action::FenceSelf { term, site } => {
                    match crate::ops::failover::fence_site(&app, site).await {
                        Ok(d) => {
                            tracing::warn!(term, detail = %d, "fenced this site (lost the quorum or superseded)")
                        }
                        Err(e) => tracing::error!(term, cause = %e, "self-fence failed"),
                    }
                    None
                }
                Action::Unfence { term, site } => {
                    match crate::ops::failover::unfence_site(&app, site).await {
                        Ok(d) => {
                            tracing::info!(term, detail = %d, "self-fence lifted (quorum contact is back)")
                        }
                        Err(e) => {
                            tracing::error!(term, cause = %e, "lifting the self-fence failed")
                        }
                    }
                    None
                }
            };
            if let Some(input) = input {
                let mut inner = shared.inner.lock().await;
                let now = app.now();
                let (next, more) = decide(&params, &inner.state, &input, &shared.here, now);
                let finished = match (&inner.state.phase, &next.phase) {
                    (Phase::FailingOver { started, .. }, Phase::FailedOver { .. }) => {
                        Some(*started)
                    }
                    _ => None,
                };
                if let Some(started) = finished {
                    *inner.gauges.failovers.entry("done".into()).or_default() += 1;
                    inner.gauges.duration_sum +=
                        (now - started).to_std().unwrap_or_default().as_secs_f64();
                    inner.gauges.duration_count += 1;
                }
                if matches!(input, Input::StepFailed { .. }) {
                    *inner
                        .gauges
                        .failovers
                        .entry("step_failed".into())
                        .or_default() += 1;
                }
                if next != inner.state {
                    inner.state = next;
                    shared.save(&inner).await;
                }
                queue.extend(more);
            }
        }
        let state = shared.state().await;
        for (site, service) in strays(&params, &state, &shared.here, &round, &seen) {
            tracing::warn!(site = %site, service = %service, term = state.term, "a non-primary site answers as a writable primary: fencing it");
            if let Err(e) = crate::ops::failover::fence_service(&app, &site, &service).await {
                tracing::error!(site = %site, service = %service, cause = %e, "cannot fence the stray primary");
            }
        }
    }
}

/// Asks this vantage point and every peer for a vote; returns how many granted.
async fn request_votes(shared: &Shared, peers: Option<&Peers>, term: u64, to: &str) -> usize {
    let req = VoteRequest {
        term,
        to: to.to_string(),
        by: None,
    };
    let own = match shared.vote(&req).await {
        Ok(refused) => usize::from(refused.is_none()),
        Err(e) => {
            tracing::error!(cause = %e, "cannot record this site's own vote");
            0
        }
    };
    let Some(peers) = peers else {
        return own;
    };
    let answers = peers.votes(&req).await;
    own + answers
        .into_iter()
        .filter(|(name, r)| match r {
            Ok(a) => a.granted,
            Err(e) => {
                tracing::debug!(peer = %name, cause = %e, "no vote from peer");
                false
            }
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::probe::{Probe, Role};

    fn seen(site: &str, probe: Option<Probe>) -> Seen {
        Seen {
            site: site.into(),
            service: "db".into(),
            kind: "postgres",
            probe,
            error: None,
        }
    }

    fn pg(role: Role, fenced: bool, position: u64) -> Probe {
        Probe {
            role,
            fenced,
            position: Some(position),
            lag_seconds: (role == Role::Replica).then_some(0.5),
            streaming: None,
        }
    }

    #[test]
    fn counters_count_failures_and_keep_the_last_known_lag() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("time");
        let mut c = Counters::default();
        c.observe(
            "a",
            &[
                seen("a", Some(pg(Role::Primary, false, 1000))),
                seen("b", Some(pg(Role::Replica, false, 400))),
            ],
            t0,
        );
        assert_eq!(c.views["a"].successes_in_a_row, 1);
        assert_eq!(
            c.views["b"].lag,
            Some(Lag {
                bytes: 600,
                seconds: 0.5
            })
        );
        assert_eq!(c.views["a"].lag, None);
        for _ in 0..3 {
            c.observe(
                "a",
                &[
                    seen("a", None),
                    seen("b", Some(pg(Role::Replica, false, 400))),
                ],
                t0,
            );
        }
        assert_eq!(c.views["a"].failures_in_a_row, 3);
        assert_eq!(c.views["a"].successes_in_a_row, 0);
        assert_eq!(c.views["a"].last_ok, Some(t0));
        // The primary cannot be asked: the last known lag in bytes stays.
        assert_eq!(c.views["b"].lag.map(|l| l.bytes), Some(600));
    }

    fn params() -> Params {
        Params {
            order: vec!["a".into(), "b".into(), "c".into()],
            mode: Mode::Automatic,
            unhealthy_after: 3,
            healthy_after: 3,
            quorum: 2,
            fence_after: Duration::from_secs(5),
            fence_margin: Duration::from_secs(2),
            min_dwell: Duration::from_secs(600),
            rpo: None,
        }
    }

    fn report(term: u64, promised: u64) -> Report {
        Report {
            term,
            primary: "b".into(),
            promised,
            sites: BTreeMap::new(),
            moving: false,
        }
    }

    #[test]
    fn strays_only_with_a_quorum_and_no_newer_term() {
        let p = params();
        let mut s = State::new("b");
        s.term = 1;
        let probes = [
            seen("a", Some(pg(Role::Primary, false, 10))),
            seen("b", Some(pg(Role::Primary, false, 10))),
            seen("c", Some(pg(Role::Replica, false, 10))),
        ];
        let round: Round = [
            ("b".to_string(), report(1, 1)),
            ("c".to_string(), report(1, 1)),
        ]
        .into();
        assert_eq!(
            strays(&p, &s, "b", &round, &probes),
            [("a".to_string(), "db".to_string())]
        );
        // Not the primary's controller, no quorum, or a newer term/promise: nothing.
        assert!(strays(&p, &s, "c", &round, &probes).is_empty());
        let alone: Round = [("b".to_string(), report(1, 1))].into();
        assert!(strays(&p, &s, "b", &alone, &probes).is_empty());
        let newer: Round = [
            ("b".to_string(), report(1, 1)),
            ("c".to_string(), report(1, 2)),
        ]
        .into();
        assert!(strays(&p, &s, "b", &newer, &probes).is_empty());
        // A fenced old primary is no stray.
        let fenced = [
            seen("a", Some(pg(Role::Primary, true, 10))),
            seen("b", Some(pg(Role::Primary, false, 10))),
        ];
        assert!(strays(&p, &s, "b", &round, &fenced).is_empty());
        // This site's own primary is fenced (moved away by `failover execute`): it is no
        // primary, and fences nobody.
        let moved = [
            seen("a", Some(pg(Role::Primary, false, 10))),
            seen("b", Some(pg(Role::Primary, true, 10))),
        ];
        assert!(strays(&p, &s, "b", &round, &moved).is_empty());
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(
            probe_timeout(Duration::from_secs(1)),
            Duration::from_millis(800)
        );
        assert_eq!(
            probe_timeout(Duration::from_secs(60)),
            Duration::from_secs(3)
        );
        assert_eq!(
            peer_timeout(Duration::from_millis(10)),
            Duration::from_millis(300)
        );
    }
}
