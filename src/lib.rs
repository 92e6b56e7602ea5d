//! lifeboat: encrypted, verifiable snapshots of stateful services, and (later) the failover
//! that depends on them.
//!
//! # Layout
//! Layers, lowest first; a module names only modules of its own layer or below
//! (`tests/layering.rs` keeps it so, with no import cycle between top-level modules):
//! 0. [`model`]: the vocabulary: snapshot ids and manifests, secrets and redaction, spans,
//!    sizes, schedules, objectives, [`ErrorKind`](model::ErrorKind), the [`Clock`](model::Clock).
//! 1. [`policy`]: pure decisions of facts and `now`: retention, objectives, the schedule
//!    planner, liveness of a run, the failover state machine (quorum, terms, fencing), drill
//!    measurements and verdicts, the calendar of required DR tests.
//! 2. Adapters, one trait or type per boundary: [`store`] (object storage), [`catalog`]
//!    (SQLite or PostgreSQL), [`kube`] (the Kubernetes API and its contract fake), [`leader`]
//!    (leader election), [`dns`] (DNS providers with compare-and-swap, and verification by
//!    asking every authoritative nameserver).
//! 3. [`kinds`]: one folder per kind behind the [`Kind`](kinds::Kind) trait and one registry
//!    line; [`pipeline`] beside it carries a kind's stream into a store (zstd → age →
//!    SHA-256 → multipart upload) and back, in bounded memory.
//! 4. [`config`]: the file format, `${VAR}` interpolation, load-time validation; each section
//!    type lives with its owner and `config` assembles them.
//! 5. [`ops`]: the verbs (backup, restore, copy, prune, settle, rebuild, verify, status,
//!    failover, runbooks, drills, report data), each from a [`Ctx`](ops::Ctx), inside one
//!    [`RunGuard`](ops::RunGuard), failing with an [`OpError`](ops::OpError) of a kind.
//! 6. [`report`]: what people and machines read (tables, JSON, self-contained HTML and
//!    Markdown DR reports).
//! 7. [`daemon`]: `lifeboat run`: the scheduler, HTTP endpoints, metrics, leader election.
//! 8. [`cli`]: the command line (the only place `anyhow` is used).
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod kinds;
pub mod kube;
pub mod leader;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod store;
