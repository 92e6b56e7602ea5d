//! The verbs: backup, restore, copy, prune, settle, verify, status. Each takes the [`Ctx`]
//! and a request, and records what it did in the catalog.

pub mod backup;
pub mod copy;
pub mod ctx;
pub mod drill;
pub mod error;
pub mod failover;
pub mod failover_kube;
pub mod failover_peers;
pub mod manifest;
pub mod prune;
pub mod rebuild;
pub mod reports;
pub mod reports_failover;
pub mod restore;
pub mod run;
pub mod runbook;
pub mod settle;
pub mod status;
pub mod verify;

pub use ctx::Ctx;
pub use error::OpError;
pub use run::{RunGuard, RunSpec};
