//! `published_reports`: the reports the daemon wrote into a store, with the SHA-256 of each
//! object's bytes (migration 0016).
//!
//! # Guarantees
//! - [`Catalog::report_published`] is idempotent: the same (id, format) recorded twice keeps
//!   the first row (a publisher that crashed after the write and runs again records nothing
//!   new).

use serde::Serialize;
use sqlx::Row;

use super::{Catalog, CatalogError, q};

/// One published report object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedReport {
    pub id: String,
    pub format: String,
    pub kind: String,
    pub subject: Option<String>,
    pub store: String,
    pub object_key: String,
    pub sha256: String,
    pub bytes: i64,
    pub locked_until: Option<String>,
    pub created_at: String,
}

impl Catalog {
    /// Records a report object written to a store (nothing if already recorded).
    pub async fn report_published(&self, r: &PublishedReport) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO published_reports (id, format, kind, subject, store, object_key, sha256, \
             bytes, locked_until, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id, format) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.format)
        .bind(&r.kind)
        .bind(&r.subject)
        .bind(&r.store)
        .bind(&r.object_key)
        .bind(&r.sha256)
        .bind(r.bytes)
        .bind(&r.locked_until)
        .bind(&r.created_at)
        .execute(&self.pool)
        .await
        .map_err(q("record a published report"))?;
        Ok(())
    }

    /// Published reports, newest first, at most `limit`.
    pub async fn published_reports(
        &self,
        limit: i64,
    ) -> Result<Vec<PublishedReport>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, format, kind, subject, store, object_key, sha256, bytes, locked_until, \
             created_at FROM published_reports ORDER BY created_at DESC, id, format LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list published reports"))?;
        rows.iter().map(row).collect()
    }

    /// One published report object.
    pub async fn published_report(
        &self,
        id: &str,
        format: &str,
    ) -> Result<Option<PublishedReport>, CatalogError> {
        let r = sqlx::query(
            "SELECT id, format, kind, subject, store, object_key, sha256, bytes, locked_until, \
             created_at FROM published_reports WHERE id = $1 AND format = $2",
        )
        .bind(id)
        .bind(format)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read a published report"))?;
        r.as_ref().map(row).transpose()
    }
}

fn row(r: &sqlx::any::AnyRow) -> Result<PublishedReport, CatalogError> {
    let s = |c: &str| {
        r.try_get::<String, _>(c)
            .map_err(q("read published reports"))
    };
    let o = |c: &str| {
        r.try_get::<Option<String>, _>(c)
            .map_err(q("read published reports"))
    };
    Ok(PublishedReport {
        id: s("id")?,
        format: s("format")?,
        kind: s("kind")?,
        subject: o("subject")?,
        store: s("store")?,
        object_key: s("object_key")?,
        sha256: s("sha256")?,
        bytes: r.try_get("bytes").map_err(q("read published reports"))?,
        locked_until: o("locked_until")?,
        created_at: s("created_at")?,
    })
}
