//! [`RunGuard`]: the one lifecycle of a run (backup, copy, prune, restore, verify) in the
//! catalog's `runs` table: inserted before any work, heartbeated while it works, finished on
//! every path.
//!
//! # Guarantees
//! - The run row exists before the operation touches a store or a target.
//! - While the guard lives, a task refreshes the heartbeat every [`HEARTBEAT`], so settlement
//!   in another process ([`crate::ops::settle`]) never takes a long restore or verification
//!   for dead.
//! - [`RunGuard::finish`] records the outcome. A guard dropped without `finish` (a panic, a
//!   cancelled future) records the run failed, best effort, from a spawned task; if even that
//!   cannot happen (the process is killed), the heartbeat stops and settlement finds the run.
//!
//! # Caveats
//! The drop path needs a tokio runtime; without one the run is left to settlement.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{Catalog, CatalogError, NewRun, Status};
use crate::model::Clock;
use crate::ops::Ctx;

/// How often a live run refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// One run of one job, alive until finished or dropped.
pub struct RunGuard {
    catalog: Catalog,
    clock: Arc<dyn Clock>,
    id: String,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

/// What a run is, for its catalog row.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    pub id: &'a str,
    pub job: &'a str,
    pub source: &'a str,
    pub snapshot_id: Option<&'a str>,
    pub store: Option<&'a str>,
}

impl RunGuard {
    /// Inserts the run (status `running`) and starts its heartbeat.
    pub async fn start(ctx: &Ctx, spec: RunSpec<'_>) -> Result<RunGuard, CatalogError> {
        ctx.catalog
            .insert_run(&NewRun {
                id: spec.id,
                job: spec.job,
                source: spec.source,
                snapshot_id: spec.snapshot_id,
                store: spec.store,
                now: ctx.now(),
            })
            .await?;
        Ok(RunGuard::adopt(ctx, spec.id))
    }

    /// Heartbeats a run row inserted elsewhere.
    fn adopt(ctx: &Ctx, id: &str) -> RunGuard {
        let (catalog, clock, run_id) = (ctx.catalog.clone(), ctx.clock.clone(), id.to_string());
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = catalog.heartbeat(&run_id, clock.now()).await {
                    tracing::warn!(run = %run_id, cause = %e, "heartbeat not recorded");
                }
            }
        });
        RunGuard {
            catalog: ctx.catalog.clone(),
            clock: ctx.clock.clone(),
            id: id.to_string(),
            heartbeat: Some(heartbeat),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops the heartbeat and records the outcome.
    pub async fn finish(mut self, status: Status, error: Option<&str>) -> Result<(), CatalogError> {
        self.stop_heartbeat();
        let id = std::mem::take(&mut self.id);
        self.catalog
            .finish_run(&id, status, error, self.clock.now())
            .await
    }

    /// Records the run complete.
    pub async fn complete(self) -> Result<(), CatalogError> {
        self.finish(Status::Complete, None).await
    }

    /// Records the run failed with `error`.
    pub async fn fail(self, error: &str) -> Result<(), CatalogError> {
        self.finish(Status::Failed, Some(error)).await
    }

    /// Stops the heartbeat and leaves the row `running`: for a run whose outcome only
    /// settlement can record (e.g. committed to the store, but the catalog is down).
    pub fn leave_to_settlement(mut self) {
        self.stop_heartbeat();
        self.id.clear();
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.stop_heartbeat();
        if self.id.is_empty() {
            return;
        }
        let (catalog, clock, id) = (
            self.catalog.clone(),
            self.clock.clone(),
            std::mem::take(&mut self.id),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let msg = "interrupted before it finished (its task was dropped); run it again";
                    if let Err(e) = catalog
                        .finish_run(&id, Status::Failed, Some(msg), clock.now())
                        .await
                    {
                        tracing::warn!(run = %id, cause = %e, "could not record the dropped run; settlement will");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(run = %id, "run dropped outside a runtime; settlement will record it")
            }
        }
    }
}
