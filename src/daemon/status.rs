//! What `/api/v1/status` and the status part of `/metrics` show: exactly what
//! `lifeboat status --output json|prometheus` prints ([`crate::ops::status::gather`]), behind a
//! small trait so the HTTP layer can be tested with any provider.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ops::Ctx;

#[async_trait]
pub trait StatusProvider: Send + Sync {
    /// The JSON of `/api/v1/status`.
    async fn json(&self, app: &Ctx, now: DateTime<Utc>) -> Result<serde_json::Value, String>;
    /// Prometheus text for `/metrics` (status metrics).
    async fn prometheus(&self, app: &Ctx, now: DateTime<Utc>) -> Result<String, String>;
}

/// The status report of [`crate::ops::status`], evaluated against each source's objectives.
pub struct ObjectiveStatus;

#[async_trait]
impl StatusProvider for ObjectiveStatus {
    async fn json(&self, app: &Ctx, now: DateTime<Utc>) -> Result<serde_json::Value, String> {
        let report = crate::ops::status::gather(app, now)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::to_value(report).map_err(|e| e.to_string())
    }

    async fn prometheus(&self, app: &Ctx, now: DateTime<Utc>) -> Result<String, String> {
        crate::ops::status::gather(app, now)
            .await
            .map(|r| r.prometheus())
            .map_err(|e| e.to_string())
    }
}
