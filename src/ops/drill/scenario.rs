//! Drill scenario files (`chaos/*.yaml`): what a drill touches, how, for how long, what must
//! hold before and after, when to abort, and the objectives it is judged against. Parsed
//! strictly (unknown keys are errors) and validated at load, like the config, so a typo is
//! an error before anything is touched, never a fault that silently does nothing.
//!
//! # Guarantees
//! - Every fault names a declared target; a target a fault may touch must say
//!   `allowed: true` (the `lifeboat.dev/chaos: allowed` of a local target).
//! - Every fault has a `duration` and a `ttl` ≥ its duration (the longest it may outlive a
//!   drill that died), both at most [`MAX_TTL`].
//! - `${VAR}` in string values is substituted from `--var` before parsing; an undefined one
//!   is an error naming it.
//!
//! # Caveats
//! Whether a target exists is only known when the drill runs: a fault matching nothing makes
//! the drill inconclusive ([`crate::policy::drill::judge`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

/// No fault may be left in place longer than this, whatever the scenario says.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario `{name}`: {message}")]
    Invalid { name: String, message: String },
}

impl ScenarioError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        crate::model::ErrorKind::Config
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!("`{s}` is not a duration like 2s or 5m: {e}"))
    })
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    Pod,
    Node,
    Zone,
    Region,
    Disaster,
    Data,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub description: String,
    pub tier: Tier,
    #[serde(default)]
    pub targets: Vec<Target>,
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub probes: Vec<Probe>,
    #[serde(default)]
    pub canary: Option<CanarySpec>,
    #[serde(default)]
    pub abort: Abort,
    #[serde(default)]
    pub expect: Expect,
    /// region-failover: the failover (issue 11) the fault must provoke, measured.
    #[serde(default)]
    pub failover: Option<FailoverSpec>,
    /// A runbook the drill runs while its fault is active: a failing step fails the drill.
    #[serde(default)]
    pub runbook: Option<RunbookSpec>,
}

/// A runbook a drill executes (issue 12 point 7), through the runbook runner, as
/// `runbook run NAME --yes --var K=V ...` would.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookSpec {
    /// A shipped runbook's name, or a path to a Markdown file.
    pub name: String,
    /// Its `${VAR}`s (`${...}` in them are the drill's `--var`s).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// Who moves the primary during a failover drill.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverBy {
    /// `controller` when the config's `failover.mode` is `automatic`, else `drill`.
    #[default]
    Auto,
    /// The daemons' controllers (`failover.mode: automatic`) detect and move it; the drill
    /// only waits for the failover to be recorded done in its catalog.
    Controller,
    /// The drill runs the manual failover itself (`failover execute --to TO --force`), a
    /// declared step, `after` the fault.
    Drill,
}

/// A failover drill's expectations: the fault takes the primary site down, the failover moves
/// the service to `to`; its persisted steps give the timeline's segments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverSpec {
    /// The site the service must land on.
    pub to: String,
    #[serde(default)]
    pub by: FailoverBy,
    /// `by: drill`: promote although the old primary (down: that is the fault) cannot be asked
    /// how far the replica is behind; the canary measures what was actually lost.
    #[serde(default)]
    pub accept_data_loss: bool,
    /// `by: drill`: how long after the fault the drill starts the failover (the detection a
    /// person or an alert would take); 0 when absent.
    #[serde(default, deserialize_with = "opt_duration")]
    pub after: Option<Duration>,
    /// The failover must be done within this after the fault (default 5m).
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

impl FailoverSpec {
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(300))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    /// Faults only touch targets that say so.
    #[serde(default)]
    pub allowed: bool,
    /// A local process group, by the pid file of its leader.
    #[serde(default)]
    pub process_group: Option<ProcessGroupTarget>,
    /// A TCP service reached through an in-process proxy that the drill controls.
    #[serde(default)]
    pub proxy: Option<ProxyTarget>,
    /// One of the config's stores, wrapped (the real objects are never touched).
    #[serde(default)]
    pub store: Option<String>,
    /// Every source of the config (complete-disaster).
    #[serde(default)]
    pub all_sources: bool,
    /// Kubernetes objects, through `KubeApi`; only those labelled
    /// `lifeboat.dev/chaos: allowed` or listed in `names` are touched.
    #[serde(default)]
    pub kubernetes: Option<KubeTarget>,
}

/// Kubernetes objects a fault may touch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeTarget {
    /// The namespace of the pods/workloads (for cordon-evict: whose pods are evicted).
    pub namespace: String,
    /// Label selector (`k=v,...`) of pods or workloads.
    #[serde(default)]
    pub selector: String,
    /// Label selector of nodes (cordon-evict), e.g. `topology.kubernetes.io/zone=eu-1a`.
    #[serde(default)]
    pub node_selector: String,
    /// At most this many nodes (by name order); every matching node when absent.
    #[serde(default)]
    pub limit: Option<usize>,
    /// For scale-to-zero: `deployment` or `stateful-set`.
    #[serde(default)]
    pub workload: Option<super::kube_fault::Workload>,
    /// Objects allowed by name although they lack the `lifeboat.dev/chaos: allowed` label.
    #[serde(default)]
    pub names: Vec<String>,
}

impl KubeTarget {
    /// The fault `action` on these objects (`None`: the action is not a Kubernetes one).
    pub fn action(&self, action: Action) -> Option<super::kube_fault::KubeAction> {
        use super::kube_fault::KubeAction;
        let namespace = self.namespace.clone();
        let selector = self.selector.clone();
        Some(match action {
            Action::DeletePods => KubeAction::DeletePods {
                namespace,
                selector,
            },
            Action::ScaleToZero => KubeAction::ScaleToZero {
                namespace,
                workload: self.workload?,
                selector,
            },
            Action::DenyAll => KubeAction::DenyAll {
                namespace,
                selector,
            },
            Action::CordonEvict => KubeAction::CordonEvict {
                selector: self.node_selector.clone(),
                namespace,
                limit: self.limit,
            },
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessGroupTarget {
    pub pidfile: String,
    /// How to bring it back after a kill (argv, no shell).
    #[serde(default)]
    pub restart: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTarget {
    pub listen: String,
    pub upstream: String,
}

/// What a target is (exactly one of a [`Target`]'s kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    ProcessGroup,
    Proxy,
    Store,
    AllSources,
    Kubernetes,
}

impl Target {
    pub fn kind(&self) -> Result<TargetKind, String> {
        let kinds: Vec<TargetKind> = [
            self.process_group
                .is_some()
                .then_some(TargetKind::ProcessGroup),
            self.proxy.is_some().then_some(TargetKind::Proxy),
            self.store.is_some().then_some(TargetKind::Store),
            self.all_sources.then_some(TargetKind::AllSources),
            self.kubernetes.is_some().then_some(TargetKind::Kubernetes),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds.as_slice() {
            [k] => Ok(*k),
            _ => Err(format!(
                "target `{}` needs exactly one of process_group, proxy, store, all_sources, kubernetes",
                self.name
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub name: String,
    pub target: String,
    pub action: Action,
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    #[serde(default, deserialize_with = "opt_duration")]
    pub ttl: Option<Duration>,
    /// For `delay`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub delay: Option<Duration>,
}

impl Fault {
    /// The TTL: the scenario's, else twice the duration (capped by [`MAX_TTL`]).
    pub fn ttl(&self) -> Duration {
        self.ttl
            .unwrap_or(self.duration.saturating_mul(2))
            .min(MAX_TTL)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL the process group, then its `restart` after the duration.
    Kill,
    /// SIGSTOP the process group, SIGCONT after the duration.
    Pause,
    Blackhole,
    Reset,
    Delay,
    Unavailable,
    HideLatest,
    Corrupt,
    /// Restore every source into fresh targets from the store alone.
    RestoreAll,
    /// Kubernetes: delete the target's pods.
    DeletePods,
    /// Kubernetes: scale the target's Deployments/StatefulSets to 0 (replicas restored).
    ScaleToZero,
    /// Kubernetes: a deny-all NetworkPolicy on the target's labelled pods.
    DenyAll,
    /// Kubernetes: cordon the target's nodes and evict their pods (uncordoned on revert).
    CordonEvict,
}

impl Action {
    fn fits(self, target: TargetKind) -> bool {
        use Action::*;
        matches!(
            (self, target),
            (Kill | Pause, TargetKind::ProcessGroup)
                | (Blackhole | Reset | Delay, TargetKind::Proxy)
                | (Unavailable | HideLatest | Corrupt, TargetKind::Store)
                | (RestoreAll, TargetKind::AllSources)
                | (
                    DeletePods | ScaleToZero | DenyAll | CordonEvict,
                    TargetKind::Kubernetes
                )
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    /// A lifeboat command line (words) that must exit 0, e.g. `[status]`.
    #[serde(default)]
    pub lifeboat: Vec<String>,
    /// A TCP address that must accept a connection.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Checked while the fault is active too (a non-target: failing aborts the drill).
    #[serde(default)]
    pub blast_radius: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// `postgres://...` or `redis://...`: the service's public endpoint.
    pub url: String,
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_write_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

fn default_interval() -> Duration {
    Duration::from_millis(100)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Abort {
    /// Abort (and roll back) when the drill has run this long.
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_elapsed: Option<Duration>,
    /// A Prometheus base URL: any alert firing there (`ALERTS{alertstate="firing"}`) aborts
    /// the drill, as does that Prometheus being unreachable (the drill cannot tell).
    #[serde(default)]
    pub prometheus: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default, deserialize_with = "opt_duration")]
    pub rpo: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub rto: Option<Duration>,
}

/// `${NAME}` in `text` replaced from `vars`; an error naming every undefined one.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, Vec<String>> {
    let mut out = String::new();
    let mut missing = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                let name = &after[..j];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        missing.insert(name.to_string());
                    }
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing.into_iter().collect())
    }
}

impl Scenario {
    /// Parses and validates scenario `name` from its YAML `text` with `vars` substituted.
    pub fn load(
        name: &str,
        text: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<Scenario, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            name: name.to_string(),
            message,
        };
        let text = substitute(text, vars).map_err(|missing| {
            invalid(format!(
                "needs {}",
                missing
                    .iter()
                    .map(|v| format!("--var {v}=..."))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        })?;
        let de = serde_yaml::Deserializer::from_str(&text);
        let s: Scenario = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("at `{}`: {}", e.path(), e.inner())))?;
        s.validate().map_err(invalid)?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if self.faults.is_empty() {
            return Err("has no fault".into());
        }
        let mut names = BTreeSet::new();
        for t in &self.targets {
            if !names.insert(t.name.as_str()) {
                return Err(format!("target `{}` is declared twice", t.name));
            }
            t.kind()?;
        }
        let mut faults = BTreeSet::new();
        for f in &self.faults {
            if !faults.insert(f.name.as_str()) {
                return Err(format!("fault `{}` is declared twice", f.name));
            }
            let t = self
                .targets
                .iter()
                .find(|t| t.name == f.target)
                .ok_or_else(|| {
                    format!(
                        "fault `{}` names target `{}`, which is not declared",
                        f.name, f.target
                    )
                })?;
            if !t.allowed {
                return Err(format!(
                    "fault `{}` would touch target `{}`, which is not `allowed: true`",
                    f.name, t.name
                ));
            }
            if !f.action.fits(t.kind()?) {
                return Err(format!(
                    "fault `{}`: action {:?} cannot apply to target `{}`",
                    f.name, f.action, t.name
                ));
            }
            if let Some(k) = &t.kubernetes {
                if k.namespace.is_empty() {
                    return Err(format!(
                        "target `{}`: kubernetes.namespace is empty",
                        t.name
                    ));
                }
                if f.action == Action::ScaleToZero && k.workload.is_none() {
                    return Err(format!(
                        "fault `{}`: scale-to-zero needs kubernetes.workload (deployment or stateful-set) on target `{}`",
                        f.name, t.name
                    ));
                }
                if f.action == Action::DenyAll
                    && k.selector
                        .split(',')
                        .any(|t| !t.is_empty() && !t.contains('='))
                {
                    return Err(format!(
                        "fault `{}`: deny-all needs a key=value selector on target `{}`",
                        f.name, t.name
                    ));
                }
            }
            if f.duration.is_zero() || f.duration > MAX_TTL {
                return Err(format!(
                    "fault `{}`: duration must be above 0 and at most {}",
                    f.name,
                    humantime::format_duration(MAX_TTL)
                ));
            }
            if let Some(ttl) = f.ttl
                && (ttl < f.duration || ttl > MAX_TTL)
            {
                return Err(format!(
                    "fault `{}`: ttl must be at least the duration and at most {}",
                    f.name,
                    humantime::format_duration(MAX_TTL)
                ));
            }
            if f.action == Action::Delay && f.delay.is_none() {
                return Err(format!("fault `{}`: a delay fault needs `delay:`", f.name));
            }
        }
        for p in &self.probes {
            if p.lifeboat.is_empty() == p.tcp.is_none() {
                return Err(format!(
                    "probe `{}` needs exactly one of `lifeboat:` or `tcp:`",
                    p.name
                ));
            }
        }
        if let Some(p) = &self.abort.prometheus
            && !(p.starts_with("http://") || p.starts_with("https://"))
        {
            return Err(format!(
                "abort.prometheus must be an http:// or https:// URL, not `{p}`"
            ));
        }
        if let Some(f) = &self.failover {
            if f.to.trim().is_empty() {
                return Err("failover.to names no site".into());
            }
            if f.timeout().is_zero() || f.timeout() > MAX_TTL {
                return Err(format!(
                    "failover.timeout must be above 0 and at most {}",
                    humantime::format_duration(MAX_TTL)
                ));
            }
            if self.canary.is_none() {
                return Err(
                    "a failover drill needs a `canary:` writing through the service's public endpoint (what measures the RTO and RPO)"
                        .into(),
                );
            }
            if self.faults.len() != 1
                || !matches!(self.faults[0].action, Action::Kill | Action::Pause)
            {
                return Err(
                    "a failover drill takes exactly one fault that takes the primary site down: kill or pause of its process group"
                        .into(),
                );
            }
        }
        if let Some(r) = &self.runbook {
            if r.name.trim().is_empty() {
                return Err("runbook.name names no runbook".into());
            }
            if let Some(bad) = r
                .vars
                .keys()
                .find(|k| !crate::ops::runbook::valid_var_name(k))
            {
                return Err(format!("runbook.vars: `{bad}` is not a variable name"));
            }
            if self.failover.is_some() {
                return Err(
                    "a scenario runs either a failover or a runbook during its fault, not both"
                        .into(),
                );
            }
            if self.faults.len() != 1 {
                return Err(
                    "a runbook drill takes exactly one fault (the runbook runs while it is active)"
                        .into(),
                );
            }
        }
        if let Some(c) = &self.canary {
            if !(c.url.starts_with("postgres://")
                || c.url.starts_with("postgresql://")
                || c.url.starts_with("redis://"))
            {
                return Err("canary.url must be a postgres:// or redis:// URL".into());
            }
            if c.interval.is_zero() || c.timeout.is_zero() {
                return Err("canary interval and timeout must be above 0".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_KILL: &str = "description: kill the app\ntier: pod\n\
        targets:\n  - name: app\n    allowed: true\n    process_group: { pidfile: \"${PIDFILE}\", restart: [\"sh\", \"-c\", \"true\"] }\n\
        faults:\n  - { name: kill-app, target: app, action: kill, duration: 2s }\n\
        canary: { url: \"${URL}\" }\nexpect: { rpo: 1s, rto: 30s }\n";

    fn vars() -> BTreeMap<String, String> {
        [("PIDFILE", "/run/app.pid"), ("URL", "postgres://h/db")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_valid_scenario_loads() {
        let s = Scenario::load("pod-kill", POD_KILL, &vars()).expect("valid");
        assert_eq!(s.faults[0].ttl(), Duration::from_secs(4));
        assert_eq!(
            s.canary.as_ref().map(|c| c.interval),
            Some(Duration::from_millis(100))
        );
        assert_eq!(s.expect.rto, Some(Duration::from_secs(30)));
    }

    #[test]
    fn missing_vars_are_named() {
        let err = Scenario::load("pod-kill", POD_KILL, &BTreeMap::new())
            .expect_err("vars missing")
            .to_string();
        assert!(
            err.contains("--var PIDFILE=...") && err.contains("--var URL=..."),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_unsafe_faults_are_refused() {
        let typo = POD_KILL.replace("duration: 2s", "duraton: 2s");
        assert!(Scenario::load("x", &typo, &vars()).is_err());
        let not_allowed = POD_KILL.replace("allowed: true", "allowed: false");
        let err = Scenario::load("x", &not_allowed, &vars())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("not `allowed: true`"), "{err}");
        let wrong = POD_KILL.replace("action: kill", "action: corrupt");
        assert!(Scenario::load("x", &wrong, &vars()).is_err());
        let short_ttl = POD_KILL.replace("duration: 2s", "duration: 2s, ttl: 1s");
        assert!(Scenario::load("x", &short_ttl, &vars()).is_err());
    }

    #[test]
    fn failover_and_runbook_sections_are_validated_at_load() {
        let ok = format!("{POD_KILL}failover: {{ to: secondary, after: 2s }}\n");
        let s = Scenario::load("x", &ok, &vars()).expect("valid");
        let f = s.failover.expect("failover");
        assert_eq!(f.by, FailoverBy::Auto);
        assert_eq!(f.after, Some(Duration::from_secs(2)));
        assert_eq!(f.timeout(), Duration::from_secs(300));
        let err = |text: String| {
            Scenario::load("x", &text, &vars())
                .expect_err("refused")
                .to_string()
        };
        let e = err(format!("{POD_KILL}failover: {{ to: \"\" }}\n"));
        assert!(e.contains("names no site"), "{e}");
        let e = err(format!("{POD_KILL}failover: {{ to: b, by: someone }}\n"));
        assert!(e.contains("someone"), "{e}");
        let no_canary: String = POD_KILL
            .lines()
            .filter(|l| !l.starts_with("canary:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = err(format!("{no_canary}failover: {{ to: b }}\n"));
        assert!(e.contains("needs a `canary:`"), "{e}");
        let rb = format!("{POD_KILL}runbook: {{ name: restore-files, vars: {{ SOURCE: a }} }}\n");
        let s = Scenario::load("x", &rb, &vars()).expect("valid");
        assert_eq!(s.runbook.expect("runbook").vars["SOURCE"], "a");
        let e = err(format!(
            "{POD_KILL}runbook: {{ name: r, vars: {{ \"bad name\": a }} }}\n"
        ));
        assert!(e.contains("not a variable name"), "{e}");
        let e = err(format!(
            "{POD_KILL}runbook: {{ name: r }}\nfailover: {{ to: b }}\n"
        ));
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn kubernetes_targets_are_validated_at_load() {
        let k8s = |target: &str, action: &str| {
            format!(
                "tier: node\ntargets:\n  - name: t\n    allowed: true\n    kubernetes: {target}\n\
                 faults:\n  - {{ name: f, target: t, action: {action}, duration: 1s }}\n"
            )
        };
        let ok = k8s(
            "{ namespace: shop, node_selector: \"zone=a\", limit: 1 }",
            "cordon-evict",
        );
        Scenario::load("x", &ok, &vars()).expect("valid");
        let err = |text: String| {
            Scenario::load("x", &text, &vars())
                .expect_err("refused")
                .to_string()
        };
        let e = err(k8s("{ namespace: shop }", "scale-to-zero"));
        assert!(e.contains("kubernetes.workload"), "{e}");
        let e = err(k8s("{ namespace: \"\" }", "delete-pods"));
        assert!(e.contains("namespace is empty"), "{e}");
        let e = err(k8s("{ namespace: shop, selector: app }", "deny-all"));
        assert!(e.contains("key=value"), "{e}");
        let e = err(k8s("{ namespace: shop, nodes: [a] }", "cordon-evict"));
        assert!(e.contains("nodes"), "{e}");
        let e = err(k8s("{ namespace: shop }", "kill"));
        assert!(e.contains("cannot apply"), "{e}");
    }
}
