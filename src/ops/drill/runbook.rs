//! A drill that executes a runbook (issue 12 point 7): while the drill's fault is active, the
//! scenario's `runbook:` (a shipped one, embedded in the binary, or a Markdown file) runs
//! through the runbook runner ([`crate::ops::runbook::run::Runner`]), non-interactively (as
//! `runbook run --yes`), so a runbook that no longer works fails its drill.
//!
//! # Guarantees
//! - The runbook and its variables are checked before anything is touched (a runbook that
//!   does not parse or misses a variable refuses the drill, nothing applied).
//! - The run is an ordinary runbook run: every step's start and end in the catalog, its id in
//!   the drill's journal (`lifeboat runbook log RUN_ID` shows it; `runbook resume RUN_ID`
//!   continues it after fixing what failed).
//! - A step that fails (or stops the run) fails the drill, naming the step and what to do;
//!   the drill's faults are rolled back all the same.
//!
//! # Caveats
//! Steps run as `confirm=true` was answered yes: the drill was started with `--yes` (or a
//! terminal confirmation), which covers the runbook's steps. Their output goes to stderr (the
//! drill's stdout is its journal with `--output json`).

use std::collections::BTreeMap;

use crate::ops::runbook::Runbook;
use crate::ops::runbook::run::{Confirm, Operator, StepEnd};

/// The shipped runbooks: (name, Markdown), sorted by name (the same list as `runbook list`).
pub const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/runbooks.rs"));

/// The runbook `name`: a path when it holds a `/` or ends with `.md`, else a shipped one;
/// parsed, with `vars` checked.
pub fn find(name: &str, vars: &BTreeMap<String, String>) -> Result<Runbook, String> {
    let runbook = if name.contains('/') || name.ends_with(".md") {
        let text = std::fs::read_to_string(name)
            .map_err(|e| format!("cannot read runbook file {name}: {e}"))?;
        let stem = std::path::Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(name);
        Runbook::parse(stem, &text).map_err(|e| e.to_string())?
    } else {
        let (n, text) = SHIPPED.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            format!(
                "runbook.name: no runbook named `{name}`; shipped: {} (or give a path to a Markdown file)",
                SHIPPED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        Runbook::parse(n, text).map_err(|e| e.to_string())?
    };
    runbook.check_vars(vars).map_err(|e| {
        format!("{e} (set them under the scenario's runbook.vars, e.g. from --var)")
    })?;
    Ok(runbook)
}

/// The drill as the runbook's operator: every confirmation answered yes (the drill was
/// confirmed), each step logged.
#[derive(Default)]
pub struct DrillOperator {
    pub run_id: Option<String>,
}

impl Operator for DrillOperator {
    fn begun(&mut self, run_id: &str) {
        self.run_id = Some(run_id.to_string());
        tracing::info!(run = %run_id, "runbook run begun");
    }
    fn already_done(&mut self, _index: usize, _total: usize, step: &crate::ops::runbook::Step) {
        tracing::info!(step = %step.id, "runbook step already done");
    }
    fn starting(
        &mut self,
        index: usize,
        total: usize,
        step: &crate::ops::runbook::Step,
        shown_argv: &[String],
    ) {
        tracing::info!(step = %step.id, "runbook step {}/{total}: lifeboat {}", index + 1, shown_argv.join(" "));
    }
    fn confirm(&mut self, _step: &crate::ops::runbook::Step) -> Confirm {
        Confirm::Yes
    }
    fn finished(
        &mut self,
        step: &crate::ops::runbook::Step,
        end: &StepEnd,
        took: std::time::Duration,
    ) {
        tracing::info!(step = %step.id, end = ?end, ms = took.as_millis() as u64, "runbook step finished");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_runbooks_are_found_and_their_vars_checked() {
        let vars: BTreeMap<String, String> = [("SOURCE", "a"), ("SNAPSHOT", "b"), ("DIR", "/x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(find("restore-files", &vars).is_ok());
        let err = find("restore-files", &BTreeMap::new()).expect_err("vars missing");
        assert!(err.contains("SOURCE"), "{err}");
        let err = find("no-such", &vars).expect_err("unknown");
        assert!(err.contains("restore-files"), "{err}");
    }
}
