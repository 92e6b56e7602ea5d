//! `drills:`: drill schedules the daemon runs (`lifeboat run`), each a scenario (a shipped
//! name or a path) with its `--var` values, a cron `schedule` in a named `timezone`, allowed
//! `windows`, `blackout` dates, and `suspend_after` consecutive failures. The decision is
//! [`crate::policy::drill_schedule::decide`].
//!
//! # Guarantees
//! - Validated at load: the cron expression, the time zone (the host's tz database), the
//!   windows (`HH:MM-HH:MM`) and dates (`YYYY-MM-DD`); a scenario listed twice is an error.
//!
//! # Caveats
//! - Whether the scenario exists and its variables are complete is checked when it is due
//!   (scenarios live above the config layer); the daemon then logs the error and skips it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::drill_schedule::DrillSchedule;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillsConfig {
    #[serde(default)]
    pub schedules: Vec<DrillScheduleConfig>,
}

fn utc() -> String {
    "UTC".into()
}
fn three() -> u32 {
    3
}
fn fifteen_minutes() -> crate::model::Span {
    crate::model::Span(Duration::from_secs(15 * 60))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillScheduleConfig {
    /// A shipped scenario's name, or a path to a scenario file.
    pub scenario: String,
    /// Cron, 5 fields (or 6 with seconds first), in `timezone`.
    pub schedule: String,
    #[serde(default = "utc")]
    pub timezone: String,
    /// Local `HH:MM-HH:MM` windows a drill may start in (empty: any time).
    #[serde(default)]
    pub windows: Vec<String>,
    /// Local `YYYY-MM-DD` dates on which no drill starts.
    #[serde(default)]
    pub blackout: Vec<String>,
    /// Suspended after this many consecutive failed drills (0: never).
    #[serde(default = "three")]
    pub suspend_after: u32,
    /// How late a slot may still start; later ones are skipped, not caught up.
    #[serde(default = "fifteen_minutes")]
    pub grace: crate::model::Span,
    /// The scenario's `${NAME}` values.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

impl DrillScheduleConfig {
    pub fn decision(&self) -> Result<DrillSchedule, String> {
        DrillSchedule::parse(
            &self.scenario,
            &self.schedule,
            &self.timezone,
            &self.windows,
            &self.blackout,
            self.suspend_after,
            self.grace.0,
        )
    }
}

impl DrillsConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut seen = BTreeSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let at = format!("drills.schedules[{i}]");
            if !seen.insert(s.scenario.as_str()) {
                return Err((
                    at,
                    format!(
                        "scenario `{}` is scheduled twice; give it one schedule (cron can list several times)",
                        s.scenario
                    ),
                ));
            }
            s.decision().map_err(|e| (at, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> DrillsConfig {
        serde_yaml::from_str(yaml).expect("yaml")
    }

    #[test]
    fn schedules_are_validated_at_load() {
        let ok = parse(
            "schedules:\n  - { scenario: pod-kill, schedule: \"0 3 * * 1\", timezone: Europe/Paris, windows: [\"02:00-05:00\"], blackout: [\"2026-12-24\"], vars: { PIDFILE: /run/x.pid } }\n",
        );
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.schedules[0].suspend_after, 3);
        let bad_tz = parse(
            "schedules:\n  - { scenario: a, schedule: \"0 3 * * *\", timezone: Nowhere/Land }\n",
        );
        let (at, why) = bad_tz.validate().expect_err("bad tz");
        assert_eq!(at, "drills.schedules[0]");
        assert!(why.contains("Nowhere/Land"), "{why}");
        let twice = parse(
            "schedules:\n  - { scenario: a, schedule: \"0 3 * * *\" }\n  - { scenario: a, schedule: \"0 4 * * *\" }\n",
        );
        assert!(twice.validate().expect_err("twice").1.contains("twice"));
        assert!(
            serde_yaml::from_str::<DrillsConfig>(
                "schedules:\n  - { scenario: a, schedule: \"0 3 * * *\", typo: 1 }\n"
            )
            .is_err()
        );
    }
}
