//! Chaos drills: scenario files (`chaos/*.yaml`, embedded in the binary) that inject faults
//! and measure the actual RTO and RPO with canary writes, judged by
//! [`crate::policy::drill`].
//!
//! # State
//! The scenario schema and its validation ([`scenario`]), the canary writer ([`canary`],
//! PostgreSQL), the in-process TCP proxy for network faults ([`proxy`]), and the runner
//! ([`run`]: faults with persisted intent and TTL, the detached watchdog, the startup sweep,
//! probes and abort conditions); the measurements and verdicts are in
//! [`crate::policy::drill`]. Kubernetes faults ([`kube_fault`]: plan/apply/revert with a
//! confirming probe, allowed targets only) run through `ctx.kube` (tested against the
//! contract fake). A scenario's `failover:` (region-failover) has the fault's failover done
//! by the controllers or by the drill ([`crate::ops::failover::execute`]) and its persisted
//! steps read back into the timeline; a scenario's `runbook:` ([`runbook`]) runs a runbook
//! through the runbook runner while the fault is active.

pub mod canary;
pub mod kube_fault;
pub mod proxy;
pub mod run;
pub mod runbook;
pub mod scenario;

/// The shipped scenarios: (name, YAML), sorted by name.
pub const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/chaos.rs"));

/// A scenario's (name, YAML): a path when `name` holds a `/` or ends with `.yaml`/`.yml` (the
/// name is then the file's stem), else a shipped one.
pub fn scenario_text(name: &str) -> Result<(String, String), String> {
    if name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml") {
        let text = std::fs::read_to_string(name)
            .map_err(|e| format!("cannot read scenario file {name}: {e}"))?;
        let stem = std::path::Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(name)
            .to_string();
        return Ok((stem, text));
    }
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .ok_or_else(|| {
            format!(
                "no scenario named `{name}`; shipped: {} (or give a path to a YAML file)",
                SHIPPED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped scenario loads when each of its variables is given.
    #[test]
    fn every_shipped_scenario_is_valid() {
        assert!(!SHIPPED.is_empty());
        for (name, text) in SHIPPED {
            let mut vars = std::collections::BTreeMap::new();
            let mut rest = *text;
            while let Some(i) = rest.find("${") {
                let after = &rest[i + 2..];
                let j = after.find('}').expect("closed");
                let v = &after[..j];
                let value = if v.ends_with("URL") {
                    "postgres://h/db".to_string()
                } else {
                    format!("x-{v}")
                };
                vars.insert(v.to_string(), value);
                rest = &after[j + 1..];
            }
            scenario::Scenario::load(name, text, &vars).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
