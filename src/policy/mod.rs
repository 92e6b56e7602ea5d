//! Decisions: pure functions of facts and a clock (`now`), unit- and property-tested beside
//! the code. The callers (in `ops` and `daemon`) gather the facts and carry the decisions out.

pub mod calendar;
pub mod drill;
pub mod drill_schedule;
pub mod failover;
pub mod liveness;
pub mod objectives;
pub mod retention;
pub mod schedule;
