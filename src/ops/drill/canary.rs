//! The canary writer: during a drill, one write of a sequence number every `interval`
//! through the service's own URL (PostgreSQL: a row of `lifeboat_canary`), each recorded as
//! acknowledged (with the time), failed, or timed out; after recovery, the sequence numbers
//! that survived. [`crate::policy::drill::measure`] turns both into the actual RPO and RTO.
//!
//! # Guarantees
//! - Writes are sent on a fixed tick, concurrently: a stalled write does not delay the next,
//!   so the resolution stays `interval` while the service is down.
//! - A write that does not answer within `timeout` is recorded as timed out (indeterminate),
//!   never as failed: it may have landed.
//!
//! # Caveats
//! The canary table lives in the service's database (`lifeboat_canary`, one row per write,
//! keyed by drill run): the drill needs a role allowed to create and insert into it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::model::Clock;
use crate::policy::drill::{Ack, Canary};

#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error(
        "canary database {url}: {reason}; check canary.url and that the role may create a table"
    )]
    Setup { url: String, reason: String },
    #[error("reading the surviving canaries back from {url}: {reason}")]
    ReadBack { url: String, reason: String },
}

/// A PostgreSQL canary for one drill run.
pub struct PgCanary {
    pool: PgPool,
    run: String,
    shown_url: String,
}

impl PgCanary {
    /// Connects lazily (the service may be down) and makes sure the table exists.
    pub async fn connect(url: &str, run: &str, timeout: Duration) -> Result<PgCanary, CanaryError> {
        let shown_url = crate::model::redact::url(url);
        let setup = |reason: String| CanaryError::Setup {
            url: shown_url.clone(),
            reason,
        };
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(timeout)
            .connect(url)
            .await
            .map_err(|e| setup(e.to_string()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS lifeboat_canary (run TEXT NOT NULL, seq BIGINT NOT NULL, \
             sent_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (run, seq))",
        )
        .execute(&pool)
        .await
        .map_err(|e| setup(e.to_string()))?;
        Ok(PgCanary {
            pool,
            run: run.to_string(),
            shown_url,
        })
    }

    async fn write(&self, seq: u64) -> Result<(), String> {
        sqlx::query("INSERT INTO lifeboat_canary (run, seq) VALUES ($1, $2)")
            .bind(&self.run)
            .bind(seq as i64)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The sequence numbers of this run found in the table now.
    pub async fn survivors(&self) -> Result<BTreeSet<u64>, CanaryError> {
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM lifeboat_canary WHERE run = $1 ORDER BY seq")
                .bind(&self.run)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| CanaryError::ReadBack {
                    url: self.shown_url.clone(),
                    reason: e.to_string(),
                })?;
        Ok(rows.into_iter().map(|s| s as u64).collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Writes a canary every `interval` until `stop`, then waits for the writes in flight (each
/// bounded by `timeout`); every write's outcome, in sequence order.
pub async fn write_until(
    canary: Arc<PgCanary>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
) -> Vec<Canary> {
    let (acks, _) = tokio::sync::watch::channel(None);
    write_observed(canary, clock, interval, timeout, stop, acks).await
}

/// [`write_until`], publishing the send time of the newest acknowledged write on `acks` as
/// it happens (the drill runner waits on it for the service to be back).
pub async fn write_observed(
    canary: Arc<PgCanary>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
    acks: tokio::sync::watch::Sender<Option<chrono::DateTime<chrono::Utc>>>,
) -> Vec<Canary> {
    let acks = Arc::new(acks);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (canary, clock, acks) = (canary.clone(), clock.clone(), acks.clone());
        let n = seq;
        seq += 1;
        tasks.spawn(async move {
            let sent_at = clock.now();
            let ack = match tokio::time::timeout(timeout, canary.write(n)).await {
                Ok(Ok(())) => {
                    acks.send_modify(|newest| {
                        if newest.is_none_or(|t| t < sent_at) {
                            *newest = Some(sent_at);
                        }
                    });
                    Ack::Acknowledged { at: clock.now() }
                }
                Ok(Err(e)) => {
                    tracing::debug!(seq = n, cause = %e, "canary write failed");
                    Ack::Failed
                }
                Err(_) => Ack::Timeout,
            };
            Canary {
                seq: n,
                sent_at,
                ack,
            }
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(c) = done {
            out.push(c);
        }
    }
    out.sort_by_key(|c| c.seq);
    out
}
