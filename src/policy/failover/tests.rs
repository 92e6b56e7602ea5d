use super::*;

use proptest::prelude::*;

const SITES: [&str; 3] = ["primary", "secondary", "dr"];

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid time")
}

fn params() -> Params {
    Params {
        order: SITES.iter().map(|s| s.to_string()).collect(),
        mode: Mode::Automatic,
        unhealthy_after: 3,
        healthy_after: 2,
        quorum: Params::majority(3),
        fence_after: Duration::from_secs(5),
        fence_margin: Duration::from_secs(2),
        min_dwell: Duration::from_secs(600),
        rpo: Some(Duration::from_secs(60)),
    }
}

fn view(failures: u32, lag_s: f64) -> View {
    View {
        failures_in_a_row: failures,
        successes_in_a_row: if failures == 0 { 10 } else { 0 },
        last_ok: None,
        lag: Some(Lag {
            bytes: (lag_s * 1000.0) as u64,
            seconds: lag_s,
        }),
    }
}

/// Every vantage point in `from` reports the primary failing `f` rounds in a row, the others
/// up with the given lags.
fn round(from: &[&str], f: u32, lags: [f64; 3]) -> Round {
    from.iter()
        .map(|v| {
            let sites = SITES
                .iter()
                .zip(lags)
                .map(|(s, l)| {
                    let failures = if *s == "primary" { f } else { 0 };
                    (s.to_string(), view(failures, l))
                })
                .collect();
            (
                v.to_string(),
                Report {
                    term: 0,
                    primary: "primary".into(),
                    promised: 0,
                    sites,
                    moving: false,
                },
            )
        })
        .collect()
}

#[test]
fn one_vantage_point_never_decides_down() {
    let p = params();
    let r = round(&["secondary"], 10, [0.0; 3]);
    assert_eq!(verdict(&p, &r, "primary"), Verdict::Unsure);
    let (s, actions) = decide(
        &p,
        &State::new("primary"),
        &Input::Round(r),
        "secondary",
        t0(),
    );
    assert!(actions.is_empty(), "{actions:?}");
    assert!(matches!(s.phase, Phase::Suspect { .. }));
}

#[test]
fn quorum_down_elects_the_best_candidate_and_takes_steps_in_order() {
    let p = params();
    let r = round(&["secondary", "dr"], 3, [0.0, 1.0, 0.5]);
    // dr has less lag: it is the candidate, so secondary's controller does not run.
    let (_, actions) = decide(
        &p,
        &State::new("primary"),
        &Input::Round(r.clone()),
        "secondary",
        t0(),
    );
    assert!(actions.is_empty(), "{actions:?}");
    let (s, actions) = decide(&p, &State::new("primary"), &Input::Round(r), "dr", t0());
    assert_eq!(
        actions,
        vec![Action::RequestVotes {
            term: 1,
            to: "dr".into()
        }]
    );
    let (s, actions) = decide(
        &p,
        &s,
        &Input::Votes {
            term: 1,
            granted: 2,
        },
        "dr",
        t0(),
    );
    assert!(matches!(
        &actions[..],
        [Action::Take {
            term: 1,
            step: Step::Fence,
            ..
        }]
    ));
    // Fence not confirmed and the primary never seen up: safe at once.
    let mut s = s;
    for step in Step::ALL {
        let (next, actions) = decide(
            &p,
            &s,
            &Input::StepDone {
                term: 1,
                step,
                confirmed: false,
            },
            "dr",
            t0(),
        );
        if let Some(n) = step.next() {
            assert!(
                matches!(&actions[..], [Action::Take { step: x, term: 1, .. }] if *x == n),
                "{actions:?}"
            );
        }
        s = next;
    }
    assert_eq!(s.primary, "dr");
    assert_eq!(s.term, 1);
    assert!(matches!(s.phase, Phase::FailedOver { .. }));
}

#[test]
fn rpo_gate_holds_a_lagging_replica() {
    let p = params();
    let r = round(&["secondary", "dr"], 3, [0.0, 120.0, 300.0]);
    let (_, actions) = decide(
        &p,
        &State::new("primary"),
        &Input::Round(r),
        "secondary",
        t0(),
    );
    assert!(
        matches!(&actions[..], [Action::Hold { reason }] if reason.contains("RPO")),
        "{actions:?}"
    );
}

#[test]
fn min_dwell_holds_an_automatic_move() {
    let p = params();
    let mut s = State::new("primary");
    s.last_move = Some(t0() - chrono::Duration::seconds(60));
    let r = round(&["secondary", "dr"], 3, [0.0, 1.0, 2.0]);
    let (_, actions) = decide(&p, &s, &Input::Round(r), "secondary", t0());
    assert!(
        matches!(&actions[..], [Action::Hold { reason }] if reason.contains("min_dwell")),
        "{actions:?}"
    );
}

#[test]
fn hysteresis_needs_healthy_after_rounds() {
    let p = params();
    let s = State {
        phase: Phase::Suspect { since: t0() },
        ..State::new("primary")
    };
    let mut r = round(&["secondary", "dr"], 0, [0.0; 3]);
    for rep in r.values_mut() {
        if let Some(v) = rep.sites.get_mut("primary") {
            v.successes_in_a_row = 1;
        }
    }
    let (s2, _) = decide(&p, &s, &Input::Round(r.clone()), "secondary", t0());
    assert!(matches!(s2.phase, Phase::Suspect { .. }));
    for rep in r.values_mut() {
        if let Some(v) = rep.sites.get_mut("primary") {
            v.successes_in_a_row = 2;
        }
    }
    let (s3, _) = decide(&p, &s2, &Input::Round(r), "secondary", t0());
    assert_eq!(s3.phase, Phase::Healthy);
}

#[test]
fn a_cut_off_primary_fences_itself_after_fence_after_and_learns_the_new_term() {
    let p = params();
    let mut s = State::new("primary");
    s.quorum_contact = Some(t0());
    let alone = round(&["primary"], 0, [0.0; 3]);
    let (s1, a1) = decide(
        &p,
        &s,
        &Input::Round(alone.clone()),
        "primary",
        t0() + chrono::Duration::seconds(4),
    );
    assert!(a1.is_empty(), "{a1:?}");
    let (s2, a2) = decide(
        &p,
        &s1,
        &Input::Round(alone),
        "primary",
        t0() + chrono::Duration::seconds(5),
    );
    assert!(
        matches!(&a2[..], [Action::FenceSelf { term: 0, .. }]),
        "{a2:?}"
    );
    // Back with a quorum that has promised a newer term: stays fenced, then learns the term.
    let mut r = round(&["primary", "secondary"], 0, [0.0; 3]);
    if let Some(rep) = r.get_mut("secondary") {
        rep.promised = 1;
    }
    let (s3, a3) = decide(&p, &s2, &Input::Round(r.clone()), "primary", t0());
    assert!(a3.is_empty(), "{a3:?}");
    assert!(s3.self_fenced);
    if let Some(rep) = r.get_mut("secondary") {
        rep.term = 1;
        rep.primary = "secondary".into();
    }
    let (s4, _) = decide(&p, &s3, &Input::Round(r), "primary", t0());
    assert_eq!((s4.term, s4.primary.as_str()), (1, "secondary"));
    assert!(s4.self_fenced);
}

#[test]
fn manual_move_bumps_the_term_and_refuses_nonsense() {
    let p = params();
    let s = State::new("primary");
    let (_, a) = decide(
        &p,
        &s,
        &Input::Manual {
            to: "nowhere".into(),
            accept_data_loss: false,
        },
        "primary",
        t0(),
    );
    assert!(matches!(&a[..], [Action::Refuse { .. }]));
    let (s2, a) = decide(
        &p,
        &s,
        &Input::Manual {
            to: "secondary".into(),
            accept_data_loss: false,
        },
        "primary",
        t0(),
    );
    assert_eq!(s2.term, 1);
    assert!(matches!(
        &a[..],
        [Action::Take {
            term: 1,
            step: Step::Fence,
            ..
        }]
    ));
}

#[test]
fn ballots_vote_once_per_term() {
    let mut b = Ballot::default();
    assert!(b.grant(1, "dr"));
    assert!(b.grant(1, "dr"));
    assert!(!b.grant(1, "secondary"));
    assert!(!b.grant(0, "dr"));
    assert!(b.grant(2, "secondary"));
}

// ---- randomized traces ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Event {
    Nothing,
    Crash(usize),
    Restart(usize),
    /// Each site's partition group.
    Partition([u8; 3]),
    Heal,
    /// A partition for this one round only.
    Flap([u8; 3]),
    Lag(usize, u32),
    /// An operator at this site runs `failover execute --to` that site (without --force).
    Operator(usize, usize),
}

fn event() -> impl Strategy<Value = Event> {
    let groups = proptest::array::uniform3(0u8..3);
    prop_oneof![
        6 => Just(Event::Nothing),
        1 => (0usize..3).prop_map(Event::Crash),
        2 => (0usize..3).prop_map(Event::Restart),
        1 => groups.clone().prop_map(Event::Partition),
        1 => Just(Event::Heal),
        1 => groups.prop_map(Event::Flap),
        1 => (0usize..3, 0u32..200).prop_map(|(s, l)| Event::Lag(s, l)),
        1 => (0usize..3, 0usize..3).prop_map(|(a, t)| Event::Operator(a, t)),
    ]
}

struct World {
    p: Params,
    now: DateTime<Utc>,
    alive: [bool; 3],
    group: [u8; 3],
    /// The term whose primary each site's database is (writable), or `None`: read-only.
    writable: [Option<u64>; 3],
    lag: [u32; 3],
    fails: [[u32; 3]; 3],
    succ: [[u32; 3]; 3],
    last_ok: [[Option<DateTime<Utc>>; 3]; 3],
    states: Vec<State>,
    ballots: Vec<Ballot>,
    promoted: BTreeMap<u64, String>,
    automatic_moves: Vec<DateTime<Utc>>,
}

fn idx(site: &str) -> usize {
    SITES.iter().position(|s| *s == site).unwrap_or(0)
}

impl World {
    fn new() -> World {
        let mut p = params();
        p.min_dwell = Duration::from_secs(30);
        World {
            p,
            now: t0(),
            alive: [true; 3],
            group: [0; 3],
            writable: [Some(0), None, None],
            lag: [0; 3],
            fails: [[0; 3]; 3],
            succ: [[0; 3]; 3],
            last_ok: [[None; 3]; 3],
            states: SITES.iter().map(|_| State::new("primary")).collect(),
            ballots: vec![Ballot::default(); 3],
            promoted: BTreeMap::new(),
            automatic_moves: Vec::new(),
        }
    }

    fn reach(&self, a: usize, b: usize) -> bool {
        self.alive[a] && self.alive[b] && self.group[a] == self.group[b]
    }

    fn report(&self, v: usize) -> Report {
        let (term, primary) = self.states[v].announce();
        Report {
            term,
            primary: primary.to_string(),
            promised: self.ballots[v].voted.as_ref().map_or(0, |(t, _)| *t),
            sites: (0..3)
                .map(|s| {
                    (
                        SITES[s].to_string(),
                        View {
                            failures_in_a_row: self.fails[v][s],
                            successes_in_a_row: self.succ[v][s],
                            last_ok: self.last_ok[v][s],
                            lag: Some(Lag {
                                bytes: u64::from(self.lag[s]) * 1000,
                                seconds: f64::from(self.lag[s]),
                            }),
                        },
                    )
                })
                .collect(),
            moving: self.states[v].moving(),
        }
    }

    /// How many vantage points (alive) see `site` up right now.
    fn truly_seen_up(&self, site: usize) -> usize {
        (0..3).filter(|v| self.reach(*v, site)).count()
    }

    #[allow(clippy::needless_range_loop)] // sites index several arrays at once
    fn round(&mut self) -> Result<(), TestCaseError> {
        self.now += chrono::Duration::seconds(1);
        for v in 0..3 {
            if !self.alive[v] {
                continue;
            }
            for s in 0..3 {
                if self.reach(v, s) {
                    self.fails[v][s] = 0;
                    self.succ[v][s] += 1;
                    self.last_ok[v][s] = Some(self.now);
                } else {
                    self.fails[v][s] += 1;
                    self.succ[v][s] = 0;
                }
            }
        }
        for c in 0..3 {
            if !self.alive[c] {
                continue;
            }
            let round: Round = (0..3)
                .filter(|v| self.reach(c, *v))
                .map(|v| (SITES[v].to_string(), self.report(v)))
                .collect();
            let mut work = vec![Input::Round(round)];
            while let Some(input) = work.pop() {
                let before = self.states[c].clone();
                let (next, actions) = decide(&self.p, &before, &input, SITES[c], self.now);
                if let (Input::Votes { .. }, Phase::FailingOver { from, .. }) =
                    (&input, &next.phase)
                {
                    // An automatic move was decided.
                    let old = idx(from);
                    prop_assert!(
                        self.truly_seen_up(old) < self.p.quorum,
                        "failover while a quorum sees {from} healthy"
                    );
                    if let Some(last) = self.automatic_moves.last() {
                        prop_assert!(
                            (self.now - *last).to_std().unwrap_or_default() >= self.p.min_dwell,
                            "automatic move within min_dwell"
                        );
                    }
                    self.automatic_moves.push(self.now);
                }
                self.states[c] = next;
                for action in actions {
                    match action {
                        Action::RequestVotes { term, to } => {
                            let mut granted = 0;
                            for v in 0..3 {
                                let req = VoteRequest {
                                    term,
                                    to: to.clone(),
                                    by: None,
                                };
                                if self.reach(c, v)
                                    && vote(&self.states[v], &mut self.ballots[v], false, &req)
                                        .is_none()
                                {
                                    granted += 1;
                                }
                            }
                            work.push(Input::Votes { term, granted });
                        }
                        Action::FenceSelf { site, .. } => self.writable[idx(&site)] = None,
                        Action::Unfence { term, site } => {
                            let i = idx(&site);
                            if self.writable[i].is_none() && self.promoted_or_initial(term, i) {
                                self.writable[i] = Some(term);
                            }
                        }
                        Action::Take {
                            term,
                            step,
                            from,
                            to,
                        } => {
                            let confirmed = match step {
                                Step::Fence => {
                                    let f = idx(&from);
                                    if self.reach(c, f) {
                                        self.writable[f] = None;
                                        true
                                    } else {
                                        false
                                    }
                                }
                                Step::Promote => {
                                    let t = idx(&to);
                                    if let Some(prev) = self.promoted.get(&term) {
                                        prop_assert_eq!(
                                            prev,
                                            &to,
                                            "two primaries in term {}",
                                            term
                                        );
                                    }
                                    self.promoted.insert(term, to.clone());
                                    for o in (0..3).filter(|o| *o != t) {
                                        prop_assert!(
                                            !(self.alive[o] && self.writable[o].is_some()),
                                            "promoting {} in term {} while {} is writable",
                                            to,
                                            term,
                                            SITES[o]
                                        );
                                    }
                                    self.writable[t] = Some(term);
                                    false
                                }
                                _ => false,
                            };
                            work.push(Input::StepDone {
                                term,
                                step,
                                confirmed,
                            });
                        }
                        Action::Hold { .. } | Action::Refuse { .. } => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// `failover execute --to SITES[to]` run at `at` as `ops::failover` does it: refused when a
    /// reachable controller is moving, the term above every reachable term and promise, every
    /// reachable controller's vote and a quorum of them, then fence, promote, announce.
    fn operator(&mut self, at: usize, to: usize) -> Result<(), TestCaseError> {
        let reach: Vec<usize> = (0..3).filter(|v| self.reach(at, *v)).collect();
        // A planned switchover: the writable primary is reachable (no --force).
        let Some(from) = (0..3).find(|s| self.writable[*s].is_some()) else {
            return Ok(());
        };
        if !self.alive[at] || from == to || !self.reach(at, from) || !self.reach(at, to) {
            return Ok(());
        }
        if reach.iter().any(|v| self.states[*v].moving()) {
            return Ok(());
        }
        let term = 1 + reach
            .iter()
            .map(|v| {
                let r = self.report(*v);
                r.term.max(r.promised)
            })
            .max()
            .unwrap_or(0);
        let req = VoteRequest {
            term,
            to: SITES[to].to_string(),
            by: Some("failover execute".into()),
        };
        for v in &reach {
            // What v's latest round saw: the controllers it reaches, moving or not.
            let peers_moving =
                (0..3).any(|o| o != *v && self.reach(*v, o) && self.states[o].moving());
            if vote(&self.states[*v], &mut self.ballots[*v], peers_moving, &req).is_some() {
                return Ok(());
            }
        }
        if reach.len() < self.p.quorum {
            return Ok(());
        }
        self.writable[from] = None;
        prop_assert!(
            !self.promoted.contains_key(&term),
            "the operator's term {} was already used by {:?}",
            term,
            self.promoted.get(&term)
        );
        for o in (0..3).filter(|o| *o != to) {
            prop_assert!(
                !(self.alive[o] && self.writable[o].is_some()),
                "the operator promotes {} in term {} while {} is writable",
                SITES[to],
                term,
                SITES[o]
            );
        }
        self.promoted.insert(term, SITES[to].to_string());
        self.writable[to] = Some(term);
        for v in reach {
            let adopt = Input::Adopt(Adopt {
                term,
                primary: SITES[to].to_string(),
            });
            let (next, actions) = decide(&self.p, &self.states[v], &adopt, SITES[v], self.now);
            self.states[v] = next;
            for a in actions {
                if let Action::FenceSelf { site, .. } = a {
                    self.writable[idx(&site)] = None;
                }
            }
        }
        Ok(())
    }

    /// Whether `site` really is the primary of `term` (promoted in it, or the initial one).
    fn promoted_or_initial(&self, term: u64, site: usize) -> bool {
        match self.promoted.get(&term) {
            Some(p) => idx(p) == site,
            None => term == 0 && site == 0,
        }
    }

    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        let mut restore = None;
        match e {
            Event::Nothing => {}
            Event::Crash(s) => self.alive[*s] = false,
            Event::Restart(s) => {
                // A restarted site comes back fenced; its lifeboat lifts the fence once it
                // has a quorum and no newer term (the model's assumption, see the caveats).
                if !self.alive[*s] {
                    self.writable[*s] = None;
                    self.states[*s].self_fenced = true;
                }
                self.alive[*s] = true;
            }
            Event::Partition(g) => self.group = *g,
            Event::Heal => self.group = [0; 3],
            Event::Flap(g) => {
                restore = Some(self.group);
                self.group = *g;
            }
            Event::Lag(s, l) => self.lag[*s] = *l,
            Event::Operator(at, to) => self.operator(*at, *to)?,
        }
        self.round()?;
        if let Some(g) = restore {
            self.group = g;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn randomized_traces_keep_the_invariants(events in proptest::collection::vec(event(), 1..300)) {
        let mut w = World::new();
        for e in &events {
            w.apply(e)?;
        }
        // Let the world settle healed and alive: still safe.
        w.alive = [true; 3];
        w.group = [0; 3];
        for _ in 0..20 {
            w.apply(&Event::Nothing)?;
        }
    }
}

#[test]
fn a_partitioned_primary_is_replaced_after_it_fenced_itself() {
    let mut w = World::new();
    for _ in 0..3 {
        w.apply(&Event::Nothing).expect("healthy");
    }
    for _ in 0..15 {
        w.apply(&Event::Partition([0, 1, 1])).expect("partition");
    }
    assert_eq!(w.writable[0], None, "the cut-off primary fenced itself");
    assert_eq!(w.promoted.len(), 1, "{:?}", w.promoted);
    let (term, site) = w.promoted.iter().next().expect("a promotion");
    assert_eq!(*term, 1);
    assert_eq!(w.writable[idx(site)], Some(1));
    // Healed: the old primary learns the term and stays fenced; no second move.
    for _ in 0..10 {
        w.apply(&Event::Heal).expect("heal");
    }
    assert_eq!(w.writable[0], None);
    assert_eq!(w.states[0].term, 1);
    assert_eq!(w.promoted.len(), 1);
}

#[test]
fn an_adopted_move_is_learned_once_and_fences_the_old_primary() {
    let p = params();
    let s = State::new("primary");
    let adopt = |term: u64| {
        Input::Adopt(Adopt {
            term,
            primary: "secondary".into(),
        })
    };
    // At the old primary: the newer term is learned and this site fences itself.
    let (s1, a) = decide(&p, &s, &adopt(4), "primary", t0());
    assert_eq!((s1.term, s1.primary.as_str()), (4, "secondary"));
    assert!(s1.self_fenced);
    assert!(matches!(&a[..], [Action::FenceSelf { term: 4, .. }]));
    assert_eq!(s1.last_move, Some(t0()));
    // Elsewhere: learned, nothing to fence; the dwell starts.
    let (s2, a) = decide(&p, &s, &adopt(4), "dr", t0());
    assert_eq!(s2.term, 4);
    assert!(a.is_empty() && !s2.self_fenced);
    assert!(!dwell_over(&p, &s2, t0()));
    // An older or equal term changes nothing.
    let (s3, a) = decide(&p, &s1, &adopt(4), "primary", t0());
    assert_eq!(s3, s1);
    assert!(a.is_empty());
    let (s4, _) = decide(&p, &s1, &adopt(2), "primary", t0());
    assert_eq!(s4, s1);
}

#[test]
fn a_vote_is_for_the_candidate_and_its_requester() {
    let controller = VoteRequest {
        term: 3,
        to: "secondary".into(),
        by: None,
    };
    let operator = VoteRequest {
        by: Some("failover execute".into()),
        ..controller.clone()
    };
    let mut b = Ballot::default();
    assert!(b.grant(operator.term, &operator.candidate()));
    assert!(
        b.grant(operator.term, &operator.candidate()),
        "asked again: same answer"
    );
    assert!(!b.grant(controller.term, &controller.candidate()));
    // Old requests without `by` still parse.
    let old: VoteRequest = serde_json::from_str(r#"{"term":3,"to":"secondary"}"#).expect("parses");
    assert_eq!(old, controller);
}

#[test]
fn an_operator_move_is_adopted_and_the_controllers_never_reuse_its_term() {
    let mut w = World::new();
    for _ in 0..3 {
        w.apply(&Event::Nothing).expect("healthy");
    }
    w.apply(&Event::Operator(0, 1)).expect("switchover");
    assert_eq!(w.promoted.get(&1).map(String::as_str), Some("secondary"));
    assert_eq!((w.writable[0], w.writable[1]), (None, Some(1)));
    assert!(
        w.states
            .iter()
            .all(|s| s.term == 1 && s.primary == "secondary")
    );
    for _ in 0..20 {
        w.apply(&Event::Nothing).expect("steady");
    }
    assert_eq!(w.promoted.len(), 1, "no controller moves on its own");
    // The primary (secondary) cut off: the controllers move it (term 2); an operator at DR
    // then moves it again, in a term of its own (every step checks the invariants).
    for _ in 0..15 {
        w.apply(&Event::Partition([0, 1, 0])).expect("partition");
        w.apply(&Event::Operator(2, 2)).expect("operator");
    }
    assert_eq!(w.promoted.get(&2).map(String::as_str), Some("primary"));
    assert_eq!(w.promoted.get(&3).map(String::as_str), Some("dr"));
    assert_eq!(w.promoted.len(), 3);
}

#[test]
fn vote_refuses_an_operator_while_a_move_is_under_way() {
    let req = |term: u64| VoteRequest {
        term,
        to: "dr".into(),
        by: Some("failover execute".into()),
    };
    let s = State::new("primary");
    let mut b = Ballot::default();
    assert!(vote(&s, &mut b, true, &req(1)).is_some_and(|r| r.contains("another site")));
    assert!(b.voted.is_none());
    let mut moving = s.clone();
    moving.phase = Phase::Electing {
        term: 1,
        to: "secondary".into(),
        since: t0(),
    };
    assert!(vote(&moving, &mut b, false, &req(2)).is_some_and(|r| r.contains("this controller")));
    // A promise not seen finished: refused; the same request asked again: granted again.
    let mut promised = Ballot {
        voted: Some((1, "secondary".into())),
    };
    assert!(vote(&s, &mut promised, false, &req(2)).is_some_and(|r| r.contains("promised term 1")));
    assert_eq!(vote(&s, &mut b, false, &req(3)), None);
    assert_eq!(vote(&s, &mut b, false, &req(3)), None);
    // A controller's own election is not held back by an operator's rules.
    let mut c = Ballot {
        voted: Some((1, "secondary".into())),
    };
    let election = VoteRequest {
        term: 2,
        to: "dr".into(),
        by: None,
    };
    assert_eq!(vote(&s, &mut c, true, &election), None);
    // Never for a term this site already holds.
    let mut held = s.clone();
    held.term = 5;
    assert!(vote(&held, &mut Ballot::default(), false, &req(5)).is_some());
}
