//! lifeboat: encrypted, verifiable snapshots of stateful services, and (later) the failover
//! that depends on them.
//!
//! # Layout
//! - [`config`]: the YAML file, `${ENV}` interpolation and load-time validation.
//! - [`source`]: one module per source kind; each turns a live service into a byte stream
//!   (`dump`) and a byte stream back into a service (`restore`).
//! - [`pipeline`]: the streaming path between a source and a store: zstd → age → SHA-256 →
//!   multipart upload, and its reverse. Bounded memory whatever the dump size.
//! - [`store`]: object storage (`object_store`: local disk, S3, GCS, Azure) under a prefix.
//! - [`snapshot`]: snapshot ids and the manifest whose presence is what makes a snapshot exist.
//! - [`catalog`]: the sqlx catalog of runs and snapshots (SQLite or PostgreSQL).
//! - [`backup`], [`restore`], [`recovery`], [`prune`]: the operations the CLI runs, built
//!   from the above.
//! - [`retention`]: the GFS retention planner (pure: facts and a clock in, decisions out).
//! - [`objectives`]: the RPO/RTO evaluator (pure: facts and a clock in, a verdict out);
//!   [`status`] gathers its facts from the catalog for `lifeboat status`.
//! - [`copy`]: cross-region copies of committed snapshots.
//! - [`schedule`]: what `lifeboat run` runs and when (pure: job kinds, cron slots, catch-up,
//!   jitter, retries with backoff).
//! - [`daemon`]: `lifeboat run [--once]`: the run loop that performs the schedule (bounded
//!   concurrency, one job per source at a time, graceful shutdown) and its HTTP endpoints.
//! - [`leader`]: leader election between replicas (lock file, PostgreSQL advisory lock,
//!   Kubernetes Lease) behind one trait.
//! - [`verify`]: `lifeboat verify`: restore into a scratch sandbox (local servers or a
//!   Kubernetes namespace), check against the facts recorded at backup time, tear down, record.
//! - [`kube`]: the Kubernetes API behind a small trait, and its contract fake.
//! - [`crypto`]: age keys: generation, recipients, identities.
//! - [`redact`]: keeping secrets out of logs, errors, the catalog and the store.
//! - [`cli`]: the command line (the only place `anyhow` is used).
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod kinds;
pub mod kube;
pub mod leader;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod store;
