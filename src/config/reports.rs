//! `reports:` of the config: the reports the daemon writes into a store on its own (the
//! posture report on `schedule`, weekly by default), and where.
//!
//! # Guarantees
//! - The section is optional: without it the daemon publishes nothing on a schedule (a
//!   report after each failover is still written when the section is present, never
//!   otherwise).
//! - `store` names a configured store (default: the first one, by name).

use serde::Deserialize;

use crate::model::{Schedule, Span};

/// Monday 06:00 UTC.
pub const DEFAULT_SCHEDULE: &str = "0 6 * * 1";

/// `reports: { schedule, store, period }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// When the daemon writes the posture report (cron; default weekly, Monday 06:00 UTC).
    pub schedule: Option<Schedule>,
    /// The store the reports go to (default: the first store by name); object-locked there
    /// when the store has `object_lock`.
    pub store: Option<String>,
    /// The period a scheduled posture report covers (default 7d).
    pub period: Option<Span>,
}

impl ReportsConfig {
    /// The posture schedule: the configured one, else weekly.
    pub fn schedule(&self) -> Schedule {
        self.schedule.clone().unwrap_or_else(|| {
            Schedule::parse(DEFAULT_SCHEDULE).unwrap_or_else(|e| unreachable!("{e}"))
        })
    }

    pub fn period(&self) -> std::time::Duration {
        self.period
            .map_or(std::time::Duration::from_secs(7 * 86_400), |s| s.0)
    }

    /// The store the reports go to.
    pub fn store<'a>(&'a self, stores: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
        match &self.store {
            Some(s) => Some(s.as_str()),
            None => stores.into_iter().next().map(|s| s.as_str()),
        }
    }
}

/// Checks `reports:` against the stores configured.
pub fn validate(
    reports: Option<&ReportsConfig>,
    stores: &std::collections::BTreeMap<String, crate::store::StoreConfig>,
) -> Result<(), (String, String)> {
    let Some(r) = reports else {
        return Ok(());
    };
    if let Some(s) = &r.store
        && !stores.contains_key(s)
    {
        return Err((
            "reports.store".into(),
            format!(
                "no store is called `{s}`; name one of `stores:` ({})",
                stores.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if r.period.is_some_and(|p| p.0.is_zero()) {
        return Err((
            "reports.period".into(),
            "must be more than 0s (e.g. 7d)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let r = ReportsConfig::default();
        assert_eq!(r.schedule().expr, DEFAULT_SCHEDULE);
        assert_eq!(r.period().as_secs(), 7 * 86_400);
        let stores = std::collections::BTreeMap::new();
        assert!(validate(Some(&r), &stores).is_ok());
        let bad = ReportsConfig {
            store: Some("nope".into()),
            ..Default::default()
        };
        let (key, msg) = validate(Some(&bad), &stores).expect_err("unknown store");
        assert_eq!(key, "reports.store");
        assert!(msg.contains("no store is called `nope`"), "{msg}");
    }
}
