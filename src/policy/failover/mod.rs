//! Failover decisions between sites: a pure state machine driven by what the vantage points
//! (every site's lifeboat) see of every site, by votes, by the executor's step reports and by
//! a clock. The daemon and `ops::failover` gather the facts and carry the actions out.
//!
//! States: `Healthy → Suspect → Electing → FailingOver{fence, promote, repoint, dns, verify}
//! → FailedOver → Rejoining → Healthy`. Every action carries the **term** it belongs to (a
//! fencing token): a term is won by the votes of a quorum of vantage points, each of which
//! votes at most once per term ([`Ballot`]), so no two sites are promoted in one term.
//!
//! # Guarantees
//! - A site is **down** only when a quorum (majority of all sites' vantage points, unless an
//!   explicit smaller quorum is configured) have seen it fail `unhealthy_after` rounds in a
//!   row. A quorum that sees the primary healthy therefore rules any automatic failover out
//!   (two majorities share a vantage point, which cannot both see it up and down).
//! - Hysteresis: a suspect primary is healthy again only after a quorum has seen it succeed
//!   `healthy_after` rounds in a row.
//! - No automatic move within `min_dwell` of the previous one.
//! - A primary whose lifeboat has not had a quorum of vantage reports for `fence_after`, or
//!   that sees a vote promised for a newer term, demotes itself ([`Action::FenceSelf`]); the others promote only after the old primary's
//!   fence is confirmed, or `fence_after + fence_margin` after any vantage point last saw it
//!   up (a primary with quorum contact is seen up by a member of that quorum).
//! - A promotion needs a quorum, within `fence_margin`, reporting no newer term or promise:
//!   a controller that was away while a newer term was won never promotes for its old one.
//! - RPO gate: a candidate lagging more than the RPO (or whose lag is unknown) is not
//!   promoted automatically; the most up-to-date eligible site wins, ties broken by `order`.
//!
//! # Caveats
//! An election that fails after some votes were promised leaves the old primary fenced until a
//! newer term completes or an operator runs `failover execute`: safety over availability.
//! A restarted site is assumed to come back fenced (its controller starts with `self_fenced`
//! and lifts the fence only with a quorum and no newer term): a primary that crashed before
//! it could fence itself and restarts writable is fenced by its own controller at its first
//! round, or by the new primary's fence step when reachable, but not before.
//! Reachability is assumed symmetric at the granularity of a probe round. A manual
//! [`Input::Manual`] bypasses quorum, dwell and (with `accept_data_loss`) the RPO gate: the
//! operator takes responsibility, and the plan says what is at risk.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// How the controller may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Detects, elects and fails over on its own.
    Automatic,
    /// Detects and reports; moves only on `failover execute`.
    Manual,
    /// Probes and reports; never acts (not even self-fencing).
    Observe,
}

/// The fixed parameters of the decision (from `failover:` and `sites:`).
#[derive(Debug, Clone)]
pub struct Params {
    /// Every site, in preference order (`failover.order`).
    pub order: Vec<String>,
    pub mode: Mode,
    pub unhealthy_after: u32,
    /// Successful rounds in a row before a suspect primary counts as healthy again.
    pub healthy_after: u32,
    /// Vantage points needed for a verdict or a vote.
    pub quorum: usize,
    pub fence_after: Duration,
    /// Extra wait on top of `fence_after` before promoting without a confirmed fence.
    pub fence_margin: Duration,
    pub min_dwell: Duration,
    /// The strictest RPO of the sources served by the sites; `None`: no RPO gate.
    pub rpo: Option<Duration>,
}

impl Params {
    /// The majority of `vantage_points`.
    pub fn majority(vantage_points: usize) -> usize {
        vantage_points / 2 + 1
    }
}

/// Replication lag of a replica behind the primary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lag {
    pub bytes: u64,
    pub seconds: f64,
}

/// What one vantage point reports of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub failures_in_a_row: u32,
    pub successes_in_a_row: u32,
    /// When this vantage point last saw the site up.
    pub last_ok: Option<DateTime<Utc>>,
    /// The site's replication lag (replicas only), as last probed.
    pub lag: Option<Lag>,
}

/// What one vantage point (a site's lifeboat) reports in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The highest term and its primary this vantage point knows.
    pub term: u64,
    pub primary: String,
    /// The highest term this vantage point has voted in ([`Ballot`]): a primary that sees a
    /// promise for a newer term stays fenced.
    pub promised: u64,
    pub sites: BTreeMap<String, View>,
    /// This controller is electing or failing over right now.
    #[serde(default)]
    pub moving: bool,
}

/// A vote request (`POST /api/v1/failover/vote`): for `term`, to promote `to`. `by` names a
/// requester other than `to`'s own controller (`failover execute`): a vote is for the pair, so
/// a controller and an operator never both win one term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteRequest {
    pub term: u64,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl VoteRequest {
    /// The name the ballot records.
    pub fn candidate(&self) -> String {
        match &self.by {
            Some(by) => format!("{} ({by})", self.to),
            None => self.to.clone(),
        }
    }
}

/// A vantage point's answer to a [`VoteRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteAnswer {
    pub granted: bool,
    pub voter: String,
    /// Why the vote was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A finished move announced to the controllers (`POST /api/v1/failover/adopt`, or found in
/// this site's catalog): `primary` holds `term`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adopt {
    pub term: u64,
    pub primary: String,
}

/// One round of reports, keyed by vantage point (site name). A vantage point this instance
/// cannot reach is absent; our own is always present.
pub type Round = BTreeMap<String, Report>;

/// A step of a failover, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Fence,
    Promote,
    Repoint,
    Dns,
    Verify,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Fence,
        Step::Promote,
        Step::Repoint,
        Step::Dns,
        Step::Verify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Fence => "fence",
            Step::Promote => "promote",
            Step::Repoint => "repoint",
            Step::Dns => "dns",
            Step::Verify => "verify",
        }
    }

    pub fn next(self) -> Option<Step> {
        let i = Step::ALL.iter().position(|s| *s == self)?;
        Step::ALL.get(i + 1).copied()
    }
}

/// Where the controller is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    Healthy,
    Suspect {
        since: DateTime<Utc>,
    },
    /// Asked the vantage points for `term`, to promote `to`.
    Electing {
        term: u64,
        to: String,
        since: DateTime<Utc>,
    },
    FailingOver {
        term: u64,
        from: String,
        to: String,
        step: Step,
        /// The old primary's fence was confirmed directly.
        fence_confirmed: bool,
        started: DateTime<Utc>,
    },
    FailedOver {
        at: DateTime<Utc>,
    },
    Rejoining {
        site: String,
    },
}

/// The controller's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub term: u64,
    pub primary: String,
    pub phase: Phase,
    /// When the last move (automatic or manual) began.
    pub last_move: Option<DateTime<Utc>>,
    /// The last time any vantage point saw the primary up.
    pub primary_seen_up: Option<DateTime<Utc>>,
    /// The last round in which this instance had a quorum of vantage reports.
    pub quorum_contact: Option<DateTime<Utc>>,
    /// This instance fenced its own site (it is the primary's and lost the quorum).
    pub self_fenced: bool,
    /// The last round in which a quorum reported no newer term or promise than ours: a
    /// promotion needs one within `fence_margin` (a controller that slept through a newer
    /// term never promotes for its old one).
    #[serde(default)]
    pub current_at: Option<DateTime<Utc>>,
}

impl State {
    /// A fresh instance: term 0, `primary` is the first site in `order` (or what peers say).
    pub fn new(primary: &str) -> State {
        State {
            term: 0,
            primary: primary.to_string(),
            phase: Phase::Healthy,
            last_move: None,
            primary_seen_up: None,
            quorum_contact: None,
            self_fenced: false,
            current_at: None,
        }
    }
}

impl State {
    /// Electing or failing over.
    pub fn moving(&self) -> bool {
        matches!(
            self.phase,
            Phase::Electing { .. } | Phase::FailingOver { .. }
        )
    }

    /// The term and its primary as this instance tells its peers: during a failover, the
    /// term's primary is the site being promoted.
    pub fn announce(&self) -> (u64, &str) {
        match &self.phase {
            Phase::FailingOver { term, to, .. } => (*term, to),
            _ => (self.term, &self.primary),
        }
    }
}

/// What happened, fed to [`decide`].
#[derive(Debug, Clone)]
pub enum Input {
    /// A probe round's reports.
    Round(Round),
    /// Votes granted for an election this instance asked for.
    Votes { term: u64, granted: usize },
    /// The executor finished `step` of `term` (for `Fence`: `confirmed` says whether the old
    /// primary was reached and confirmed read-only).
    StepDone {
        term: u64,
        step: Step,
        confirmed: bool,
    },
    /// The executor could not do `step`: the failover stays at it (retried next round).
    StepFailed { term: u64, step: Step },
    /// `failover execute --to SITE`.
    Manual { to: String, accept_data_loss: bool },
    /// The old primary finished rejoining as a replica.
    Rejoined { site: String },
    /// A move finished elsewhere (`failover execute`): adopt its term and primary if newer.
    Adopt(Adopt),
}

/// What the controller asks its executor to do. Each carries the term it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Ask every reachable vantage point for a vote for `term` (to promote `to`).
    RequestVotes { term: u64, to: String },
    /// Take this step of the failover of `term` (persist first).
    Take {
        term: u64,
        step: Step,
        from: String,
        to: String,
    },
    /// This instance's site is primary and cut off: demote its own primaries.
    FenceSelf { term: u64, site: String },
    /// Quorum contact is back and no newer term exists: undo the self-fence.
    Unfence { term: u64, site: String },
    /// A failover is warranted but held back (status and alerts say why).
    Hold { reason: String },
    /// A manual request was refused.
    Refuse { reason: String },
}

/// A vantage point's vote book: at most one vote per term, never for an old term.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ballot {
    pub voted: Option<(u64, String)>,
}

impl Ballot {
    /// Grants `candidate` the vote for `term` if this vantage point has not voted in `term`
    /// or later for someone else.
    pub fn grant(&mut self, term: u64, candidate: &str) -> bool {
        match &self.voted {
            Some((t, c)) if *t > term || (*t == term && c != candidate) => false,
            _ => {
                self.voted = Some((term, candidate.to_string()));
                true
            }
        }
    }
}

/// Answers a vote request at a vantage point holding `state` and `ballot`; `peers_moving`
/// says whether its latest round saw another controller electing or failing over. Returns
/// why the vote is refused, or None when it is granted (and recorded in `ballot`).
///
/// A request from an operator (`by`, i.e. `failover execute`) is refused while a move is
/// under way where this vantage point can see it: its own, a peer's, or one it promised its
/// vote to and has not seen finish. Two quorums share a vantage point, so an operator's
/// quorum and a controller's election never both win.
pub fn vote(
    state: &State,
    ballot: &mut Ballot,
    peers_moving: bool,
    req: &VoteRequest,
) -> Option<String> {
    if req.term <= state.term {
        return Some(format!(
            "term {} is not newer than term {} this site holds",
            req.term, state.term
        ));
    }
    let candidate = req.candidate();
    let asked_before = ballot.voted.as_ref() == Some(&(req.term, candidate.clone()));
    if req.by.is_some() && !asked_before {
        if state.moving() {
            return Some("this controller is failing over right now".into());
        }
        if peers_moving {
            return Some("another site's controller is failing over right now".into());
        }
        if let Some((t, c)) = &ballot.voted
            && *t > state.term
        {
            return Some(format!(
                "it promised term {t} to {c} and has not seen that move finish"
            ));
        }
    }
    if ballot.grant(req.term, &candidate) {
        None
    } else {
        Some(format!(
            "it already voted in term {} or later for someone else",
            req.term
        ))
    }
}

/// The quorum's verdict on one site in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A quorum failed it `unhealthy_after` rounds in a row.
    Down,
    /// A quorum sees it up.
    Up,
    /// A quorum sees it up `healthy_after` rounds in a row.
    Steady,
    /// Neither: some vantage points failed it, or too few answered.
    Unsure,
}

/// The quorum's verdict on `site`.
pub fn verdict(params: &Params, round: &Round, site: &str) -> Verdict {
    let views = || round.values().filter_map(|r| r.sites.get(site));
    let down = views()
        .filter(|v| v.failures_in_a_row >= params.unhealthy_after)
        .count();
    let up: Vec<&View> = views().filter(|v| v.failures_in_a_row == 0).collect();
    if down >= params.quorum {
        Verdict::Down
    } else if up
        .iter()
        .filter(|v| v.successes_in_a_row >= params.healthy_after)
        .count()
        >= params.quorum
    {
        Verdict::Steady
    } else if up.len() >= params.quorum {
        Verdict::Up
    } else {
        Verdict::Unsure
    }
}

/// Whether any vantage point sees `site` failing right now.
fn any_failure(round: &Round, site: &str) -> bool {
    round
        .values()
        .filter_map(|r| r.sites.get(site))
        .any(|v| v.failures_in_a_row > 0)
}

/// A site that may be promoted, with its lag (the worst any vantage point reports).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub site: String,
    pub lag: Option<Lag>,
    /// Within the RPO.
    pub eligible: bool,
}

/// Candidates for promotion other than `primary`, best first: a quorum sees them up; eligible
/// (lag known and within the RPO) before not; less lag first; then `order`.
pub fn candidates(params: &Params, round: &Round, primary: &str) -> Vec<Candidate> {
    let mut out: Vec<(usize, Candidate)> = params
        .order
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_str() != primary)
        .filter(|(_, s)| matches!(verdict(params, round, s), Verdict::Up | Verdict::Steady))
        .map(|(i, s)| {
            let lag = worst_lag(round, s);
            let eligible = match (params.rpo, lag) {
                (None, _) => true,
                (Some(rpo), Some(l)) => l.seconds <= rpo.as_secs_f64(),
                (Some(_), None) => false,
            };
            (
                i,
                Candidate {
                    site: s.clone(),
                    lag,
                    eligible,
                },
            )
        })
        .collect();
    out.sort_by(|(ia, a), (ib, b)| {
        b.eligible
            .cmp(&a.eligible)
            .then_with(|| {
                let la = a.lag.map_or(u64::MAX, |l| l.bytes);
                let lb = b.lag.map_or(u64::MAX, |l| l.bytes);
                la.cmp(&lb)
            })
            .then(ia.cmp(ib))
    });
    out.into_iter().map(|(_, c)| c).collect()
}

fn worst_lag(round: &Round, site: &str) -> Option<Lag> {
    let lags: Vec<Lag> = round
        .values()
        .filter_map(|r| r.sites.get(site))
        .filter_map(|v| v.lag)
        .collect();
    if lags.is_empty() {
        return None;
    }
    Some(Lag {
        bytes: lags.iter().map(|l| l.bytes).max().unwrap_or(0),
        seconds: lags.iter().map(|l| l.seconds).fold(0.0, f64::max),
    })
}

fn elapsed(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    since.map(|t| (now - t).to_std().unwrap_or(Duration::ZERO))
}

/// Whether the old primary is certainly fenced or fenced itself by now.
pub fn fence_safe(params: &Params, state: &State, confirmed: bool, now: DateTime<Utc>) -> bool {
    confirmed
        || elapsed(state.primary_seen_up, now)
            .is_none_or(|e| e >= params.fence_after + params.fence_margin)
}

/// Whether the dwell since the last move has passed.
pub fn dwell_over(params: &Params, state: &State, now: DateTime<Utc>) -> bool {
    elapsed(state.last_move, now).is_none_or(|e| e >= params.min_dwell)
}

/// The decision: the next state and the actions to take, from the state, one input and the
/// time. `here` is the site this instance runs at.
pub fn decide(
    params: &Params,
    state: &State,
    input: &Input,
    here: &str,
    now: DateTime<Utc>,
) -> (State, Vec<Action>) {
    let mut s = state.clone();
    let mut actions = Vec::new();
    match input {
        Input::Round(round) => on_round(params, &mut s, &mut actions, round, here, now),
        Input::Votes { term, granted } => {
            if let Phase::Electing { term: t, to, .. } = &s.phase
                && t == term
            {
                if *granted >= params.quorum && *term > s.term {
                    let from = s.primary.clone();
                    let to = to.clone();
                    s.term = *term;
                    s.last_move = Some(now);
                    s.phase = Phase::FailingOver {
                        term: *term,
                        from: from.clone(),
                        to: to.clone(),
                        step: Step::Fence,
                        fence_confirmed: false,
                        started: now,
                    };
                    actions.push(Action::Take {
                        term: *term,
                        step: Step::Fence,
                        from,
                        to,
                    });
                } else {
                    s.phase = Phase::Suspect { since: now };
                }
            }
        }
        Input::StepDone {
            term,
            step,
            confirmed,
        } => {
            if let Phase::FailingOver {
                term: t,
                from,
                to,
                step: cur,
                fence_confirmed,
                started,
            } = s.phase.clone()
                && t == *term
                && cur == *step
            {
                let confirmed = fence_confirmed || (*step == Step::Fence && *confirmed);
                advance(
                    params,
                    &mut s,
                    &mut actions,
                    t,
                    from,
                    to,
                    cur,
                    confirmed,
                    started,
                    now,
                    here,
                );
            }
        }
        Input::StepFailed { .. } => {}
        Input::Manual {
            to,
            accept_data_loss,
        } => on_manual(params, &mut s, &mut actions, to, *accept_data_loss, now),
        Input::Adopt(a) => learn(params, &mut s, &mut actions, a.term, &a.primary, here, now),
        Input::Rejoined { site } => {
            if matches!(&s.phase, Phase::Rejoining { site: r } if r == site)
                || matches!(s.phase, Phase::FailedOver { .. })
            {
                s.phase = Phase::Healthy;
            }
        }
    }
    (s, actions)
}

/// Moves past a finished step; the fence step finishes only when the fence is safe.
#[allow(clippy::too_many_arguments)]
fn advance(
    params: &Params,
    s: &mut State,
    actions: &mut Vec<Action>,
    term: u64,
    from: String,
    to: String,
    done: Step,
    confirmed: bool,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
    here: &str,
) {
    let current = elapsed(s.current_at, now).is_some_and(|e| e <= params.fence_margin);
    if done == Step::Fence && !current {
        s.phase = Phase::FailingOver {
            term,
            from,
            to,
            step: Step::Fence,
            fence_confirmed: confirmed,
            started,
        };
        actions.push(Action::Hold {
            reason: format!("waiting for a quorum to confirm that term {term} is still the newest"),
        });
        return;
    }
    if done == Step::Fence && !fence_safe(params, s, confirmed, now) {
        s.phase = Phase::FailingOver {
            term,
            from: from.clone(),
            to,
            step: Step::Fence,
            fence_confirmed: false,
            started,
        };
        actions.push(Action::Hold {
            reason: format!("waiting for {from} to fence itself (fence_after + margin)"),
        });
        return;
    }
    match done.next() {
        Some(next) => {
            if next == Step::Promote {
                s.primary = to.clone();
            }
            if next == Step::Promote && s.self_fenced && to == here {
                // Promotion lifts this site's fence: from now on a lost quorum fences again.
                s.self_fenced = false;
            }
            s.phase = Phase::FailingOver {
                term,
                from: from.clone(),
                to: to.clone(),
                step: next,
                fence_confirmed: confirmed,
                started,
            };
            actions.push(Action::Take {
                term,
                step: next,
                from,
                to,
            });
        }
        None => s.phase = Phase::FailedOver { at: now },
    }
}

fn on_round(
    params: &Params,
    s: &mut State,
    actions: &mut Vec<Action>,
    round: &Round,
    here: &str,
    now: DateTime<Utc>,
) {
    // Learn a newer term from the peers (an instance started with an empty catalog joins).
    if let Some(newer) = round
        .values()
        .filter(|r| r.term > s.term)
        .max_by_key(|r| r.term)
    {
        learn(params, s, actions, newer.term, &newer.primary, here, now);
    }
    let promised_newer = round.values().any(|r| r.promised > s.term);
    if round.len() >= params.quorum && !promised_newer {
        s.current_at = Some(now);
    }
    let have_quorum = round.len() >= params.quorum;
    if have_quorum {
        s.quorum_contact = Some(now);
    }
    if round
        .values()
        .filter_map(|r| r.sites.get(&s.primary))
        .any(|v| v.failures_in_a_row == 0)
    {
        s.primary_seen_up = Some(now);
    }
    let latest_seen = round
        .values()
        .filter_map(|r| r.sites.get(&s.primary))
        .filter_map(|v| v.last_ok)
        .max();
    if latest_seen > s.primary_seen_up {
        s.primary_seen_up = latest_seen;
    }

    // Self-fencing: this site is primary and cut off from the quorum for fence_after.
    if params.mode != Mode::Observe && s.primary == here {
        let cut_off =
            !have_quorum && elapsed(s.quorum_contact, now).is_none_or(|e| e >= params.fence_after);
        // A vote promised for a newer term: a new primary may be on its way; step down.
        if (cut_off || promised_newer) && !s.self_fenced {
            s.self_fenced = true;
            actions.push(Action::FenceSelf {
                term: s.term,
                site: here.to_string(),
            });
        } else if have_quorum && s.self_fenced && !promised_newer {
            s.self_fenced = false;
            actions.push(Action::Unfence {
                term: s.term,
                site: here.to_string(),
            });
        }
    }
    // No longer primary: a self-fence stays until `rejoin` makes this site a replica.

    match s.phase.clone() {
        Phase::Healthy | Phase::Suspect { .. } => {
            let v = verdict(params, round, &s.primary);
            match v {
                Verdict::Steady => s.phase = Phase::Healthy,
                Verdict::Up
                    if matches!(s.phase, Phase::Healthy) && !any_failure(round, &s.primary) => {}
                Verdict::Up | Verdict::Unsure => {
                    if any_failure(round, &s.primary) && matches!(s.phase, Phase::Healthy) {
                        s.phase = Phase::Suspect { since: now };
                    }
                }
                Verdict::Down => {
                    if matches!(s.phase, Phase::Healthy) {
                        s.phase = Phase::Suspect { since: now };
                    }
                    try_elect(params, s, actions, round, here, now);
                }
            }
        }
        Phase::Electing { since, .. } => {
            // Votes come as `Input::Votes`; an election without an answer in a few rounds
            // is abandoned.
            if elapsed(Some(since), now).is_some_and(|e| e >= params.fence_after) {
                s.phase = Phase::Suspect { since: now };
            }
        }
        Phase::FailingOver {
            term,
            from,
            to,
            step,
            ..
        } => {
            // Resume (idempotent): the step is taken again until reported done. The fence is
            // tried every round even once time alone would make it safe: an old primary
            // reachable again (restarted writable) is fenced directly before any promotion.
            actions.push(Action::Take {
                term,
                step,
                from,
                to,
            });
        }
        Phase::FailedOver { .. } | Phase::Rejoining { .. } => {}
    }
}

/// Adopts `term` held by `primary` if it is newer than ours.
fn learn(
    params: &Params,
    s: &mut State,
    actions: &mut Vec<Action>,
    term: u64,
    primary: &str,
    here: &str,
    now: DateTime<Utc>,
) {
    if term <= s.term {
        return;
    }
    let was_primary = s.primary == here;
    s.term = term;
    s.primary = primary.to_string();
    // The move happened at the latest now: no automatic move again within min_dwell.
    s.last_move = Some(s.last_move.map_or(now, |t| t.max(now)));
    // Whatever this instance was doing belongs to an older term: abandoned (a failover of an
    // older term must not promote anything now).
    s.phase = Phase::Healthy;
    if was_primary && s.primary != here && params.mode != Mode::Observe {
        // Another site holds a newer term: whatever we were, our primaries are stale.
        s.self_fenced = true;
        actions.push(Action::FenceSelf {
            term: s.term,
            site: here.to_string(),
        });
    }
}

fn try_elect(
    params: &Params,
    s: &mut State,
    actions: &mut Vec<Action>,
    round: &Round,
    here: &str,
    now: DateTime<Utc>,
) {
    if params.mode != Mode::Automatic {
        actions.push(Action::Hold {
            reason: format!(
                "{} is down but failover.mode is not automatic: run `lifeboat failover execute`",
                s.primary
            ),
        });
        return;
    }
    if !dwell_over(params, s, now) {
        actions.push(Action::Hold {
            reason: "within min_dwell of the last move".into(),
        });
        return;
    }
    let cands = candidates(params, round, &s.primary);
    let Some(best) = cands.first() else {
        actions.push(Action::Hold {
            reason: "no site that a quorum sees up can take over".into(),
        });
        return;
    };
    if !best.eligible {
        actions.push(Action::Hold {
            reason: format!(
                "{} lags more than the RPO (or its lag is unknown): promote it by hand with \
                 --accept-data-loss",
                best.site
            ),
        });
        return;
    }
    // Only the winning site's controller runs the election: one candidate per view.
    if best.site != here {
        return;
    }
    let term = s.term + 1;
    s.phase = Phase::Electing {
        term,
        to: best.site.clone(),
        since: now,
    };
    actions.push(Action::RequestVotes {
        term,
        to: best.site.clone(),
    });
}

fn on_manual(
    params: &Params,
    s: &mut State,
    actions: &mut Vec<Action>,
    to: &str,
    accept_data_loss: bool,
    now: DateTime<Utc>,
) {
    if !params.order.iter().any(|o| o == to) {
        actions.push(Action::Refuse {
            reason: format!("{to} is not a site in failover.order"),
        });
        return;
    }
    if to == s.primary {
        actions.push(Action::Refuse {
            reason: format!("{to} is already the primary (term {})", s.term),
        });
        return;
    }
    if matches!(s.phase, Phase::FailingOver { .. } | Phase::Electing { .. }) {
        actions.push(Action::Refuse {
            reason: "a failover is already in progress: wait for it or resume it".into(),
        });
        return;
    }
    let _ = accept_data_loss; // the RPO gate for a manual move is in the plan (ops), which knows the lag.
    let term = s.term + 1;
    let from = s.primary.clone();
    s.term = term;
    s.last_move = Some(now);
    s.phase = Phase::FailingOver {
        term,
        from: from.clone(),
        to: to.to_string(),
        step: Step::Fence,
        fence_confirmed: false,
        started: now,
    };
    actions.push(Action::Take {
        term,
        step: Step::Fence,
        from,
        to: to.to_string(),
    });
}
