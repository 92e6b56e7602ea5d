//! Publishing reports into a store: [`publish`] renders a report (HTML and JSON), writes both
//! under `reports/<kind>/` of the `reports.store`, object-locks them where the store has
//! `object_lock`, and records each object's SHA-256 in the catalog (`published_reports`).
//! [`read_verified`] reads one back and refuses bytes that no longer match the catalog.
//! The daemon publishes the posture report on `reports.schedule`; `lifeboat failover
//! execute` (cli) and the drill runner call [`publish_after`] after each failover and drill
//! (from the cli or daemon layer: ops cannot name this module).
//!
//! # Guarantees
//! - A catalog row is written only after its object was written and locked: a row always
//!   names a complete object. Publishing again the same report (a crash in between, a
//!   resumed failover) rewrites the object and keeps the first row when one exists.
//! - Nothing is published without a `reports:` section ([`PublishError::NotConfigured`]).
//!
//! # Caveats
//! - On an object-locked store a republished failover or drill report creates a new version
//!   of the key; the catalog keeps the first row's SHA-256, so a republish whose bytes differ
//!   (a newer lifeboat renders differently) is served as mismatched until the row is removed.
//!   Report ids carry the time for posture reports, so only failover/drill ids can repeat.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::{CatalogError, PublishedReport, ts};
use crate::model::ErrorKind;
use crate::model::journal::DrillJournal;
use crate::ops::Ctx;
use crate::ops::reports::ReportError;
use crate::report::ReportFormat;
use crate::store::StoreError;

/// What to publish.
#[derive(Debug, Clone)]
pub enum ReportKind {
    /// The posture over `period` ending now.
    Posture { period: std::time::Duration },
    /// The failover of this term.
    Failover { term: i64 },
    /// A drill, from its journal.
    Drill(Box<DrillJournal>),
}

impl ReportKind {
    pub fn name(&self) -> &'static str {
        match self {
            ReportKind::Posture { .. } => "posture",
            ReportKind::Failover { .. } => "failover",
            ReportKind::Drill(_) => "drill",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "no `reports:` section in the config: reports are not published; add `reports: {{ schedule: \"0 6 * * 1\" }}` to publish them"
    )]
    NotConfigured,
    #[error("`reports.store` names no configured store; name one of `stores:`")]
    NoStore,
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot render the report as JSON: {0}")]
    Render(#[from] serde_json::Error),
    #[error("no published report `{id}` ({format}) in the catalog; list them at /reports")]
    Unknown { id: String, format: String },
    #[error(
        "published report {key} in store `{store}` does not match the catalog's SHA-256 (catalog {expected}, store {found}): it was altered or replaced after publishing; do not trust it, and compare with the store's object versions"
    )]
    Mismatch {
        store: String,
        key: String,
        expected: String,
        found: String,
    },
}

impl PublishError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PublishError::NotConfigured | PublishError::NoStore => ErrorKind::Config,
            PublishError::Report(e) => e.kind(),
            PublishError::Catalog(e) => e.kind(),
            PublishError::Store(e) => e.kind(),
            PublishError::Render(_) => ErrorKind::Internal,
            PublishError::Unknown { .. } => ErrorKind::Config,
            PublishError::Mismatch { .. } => ErrorKind::Corrupt,
        }
    }
}

/// What was published.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub id: String,
    pub objects: Vec<PublishedReport>,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether a scheduled posture report is due: an occurrence of `cron` passed (at or before
/// `now`) after the newest one published (`last`), or none was ever published. Pure.
pub fn posture_due(cron: &croner::Cron, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match last {
        None => true,
        Some(last) => cron
            .find_previous_occurrence(&now, true)
            .is_ok_and(|prev| prev > last),
    }
}

/// The report id: `posture-<time>`, `failover-term-<n>`, `drill-<id>`. Pure.
pub fn report_id(kind: &ReportKind, now: DateTime<Utc>) -> String {
    match kind {
        ReportKind::Posture { .. } => format!("posture-{}", now.format("%Y%m%dT%H%M%SZ")),
        ReportKind::Failover { term } => format!("failover-term-{term}"),
        ReportKind::Drill(j) => format!(
            "drill-{}",
            j.id.strip_prefix("drill-")
                .unwrap_or(&j.id)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                })
                .collect::<String>()
        ),
    }
}

/// Renders `kind` as HTML and JSON, writes both to the reports store and records them.
#[tracing::instrument(skip_all, fields(kind = kind.name()))]
pub async fn publish(ctx: &Ctx, kind: ReportKind) -> Result<Published, PublishError> {
    let cfg = ctx
        .config
        .reports
        .as_ref()
        .ok_or(PublishError::NotConfigured)?;
    let store_name = cfg
        .store(ctx.config.stores.keys())
        .ok_or(PublishError::NoStore)?
        .to_string();
    let store = ctx.stores.get(&store_name).ok_or(PublishError::NoStore)?;
    let now = ctx.now();
    let id = report_id(&kind, now);
    let (subject, html, json) = match &kind {
        ReportKind::Posture { period } => {
            let p = crate::ops::reports::posture(ctx, *period).await?;
            (
                None,
                crate::report::dr::posture(&p, ReportFormat::Html)?,
                crate::report::dr::posture(&p, ReportFormat::Json)?,
            )
        }
        ReportKind::Failover { term } => {
            let r = crate::ops::reports_failover::failover(ctx, &term.to_string()).await?;
            (
                Some(term.to_string()),
                crate::report::failover::render(&r, ReportFormat::Html)?,
                crate::report::failover::render(&r, ReportFormat::Json)?,
            )
        }
        ReportKind::Drill(j) => (
            Some(j.id.clone()),
            crate::report::drill::render_drill(j, ReportFormat::Html)?,
            crate::report::drill::render_drill(j, ReportFormat::Json)?,
        ),
    };
    let mut objects = Vec::new();
    for (format, text) in [("html", html), ("json", json)] {
        if let Some(existing) = ctx.catalog.published_report(&id, format).await? {
            objects.push(existing);
            continue;
        }
        let key = format!("reports/{}/{id}.{format}", kind.name());
        let bytes = Bytes::from(text.into_bytes());
        let digest = sha256(&bytes);
        let len = bytes.len() as i64;
        store.put_bytes(&key, bytes).await?;
        let locked_until = store.lock(&key, now).await?.map(ts);
        let row = PublishedReport {
            id: id.clone(),
            format: format.to_string(),
            kind: kind.name().to_string(),
            subject: subject.clone(),
            store: store_name.clone(),
            object_key: key,
            sha256: digest,
            bytes: len,
            locked_until,
            created_at: ts(now),
        };
        ctx.catalog.report_published(&row).await?;
        tracing::info!(id, format, key = %row.object_key, sha256 = %row.sha256, "report published");
        objects.push(row);
    }
    Ok(Published { id, objects })
}

/// Publishes `kind` if a `reports:` section is configured; logs (never fails) otherwise.
/// For callers whose own work is done (a failover, a drill): the report is a by-product.
pub async fn publish_after(ctx: &Ctx, kind: ReportKind) -> Option<Published> {
    ctx.config.reports.as_ref()?;
    let name = kind.name();
    match publish(ctx, kind).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(kind = name, cause = %e, "the report was not published; the work itself is done (publish it again with the daemon's /reports or rerun)");
            None
        }
    }
}

/// One published object's row and bytes, refused when the bytes no longer match the
/// catalog's SHA-256.
pub async fn read_verified(
    ctx: &Ctx,
    id: &str,
    format: &str,
) -> Result<(PublishedReport, Bytes), PublishError> {
    let row = ctx
        .catalog
        .published_report(id, format)
        .await?
        .ok_or_else(|| PublishError::Unknown {
            id: id.to_string(),
            format: format.to_string(),
        })?;
    let store = ctx.stores.get(&row.store).ok_or(PublishError::NoStore)?;
    let bytes = store.get_bytes(&row.object_key).await?;
    let found = sha256(&bytes);
    if found != row.sha256 {
        return Err(PublishError::Mismatch {
            store: row.store.clone(),
            key: row.object_key.clone(),
            expected: row.sha256.clone(),
            found,
        });
    }
    Ok((row, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posture_is_due_after_a_missed_occurrence() {
        let cron = crate::model::Schedule::parse("0 6 * * 1")
            .expect("cron")
            .cron;
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        // 2026-12-07 is a Monday.
        let now = t("2026-12-07T06:00:30Z");
        assert!(posture_due(&cron, None, now));
        assert!(posture_due(&cron, Some(t("2026-11-30T06:00:05Z")), now));
        assert!(!posture_due(&cron, Some(t("2026-12-07T06:00:10Z")), now));
        // Sunday: the last Monday's report is there.
        assert!(!posture_due(
            &cron,
            Some(t("2026-11-30T06:01:00Z")),
            t("2026-12-06T23:00:00Z")
        ));
        // Down over Monday, back on Tuesday: due.
        assert!(posture_due(
            &cron,
            Some(t("2026-11-30T06:01:00Z")),
            t("2026-12-08T09:00:00Z")
        ));
    }

    #[test]
    fn report_ids() {
        let t = DateTime::UNIX_EPOCH;
        assert_eq!(
            report_id(
                &ReportKind::Posture {
                    period: std::time::Duration::from_secs(1)
                },
                t
            ),
            "posture-19700101T000000Z"
        );
        assert_eq!(
            report_id(&ReportKind::Failover { term: 3 }, t),
            "failover-term-3"
        );
        let mut j = crate::model::journal::DrillJournal {
            verdict: "pass".into(),
            ..crate::model::journal::DrillJournal::start("drill-20261205-0001", "s", "pod", t, "x")
        };
        assert_eq!(
            report_id(&ReportKind::Drill(Box::new(j.clone())), t),
            "drill-20261205-0001"
        );
        j.id = "zone/../x y".into();
        assert_eq!(
            report_id(&ReportKind::Drill(Box::new(j)), t),
            "drill-zone____x_y"
        );
    }
}
