//! `lifeboat verify SOURCE|SNAPSHOT_ID`: restore a snapshot into a scratch sandbox, check it
//! against the facts recorded at backup time (and the source's user checks), tear the sandbox
//! down, and record the verification in the catalog. A snapshot is *verified* only after a
//! passing verification.
//!
//! # Guarantees
//! - The verification row is inserted before anything is restored and always finished:
//!   passed, or failed with the cause (a corrupt object, a failed restore, a check, a timeout,
//!   an interruption). Only catalog errors escape as `Err`.
//! - The sandbox is owned by the verification future. Timeout and cancellation drop that
//!   future, and the sandbox guards ([`sandbox::local`]) stop their servers and remove their
//!   directory before `run` returns.
//! - The restore goes through [`crate::ops::restore`] (the same integrity checks as a real
//!   restore) and the kinds' own `Target`s; its wall time is the recorded restore duration
//!   (the RTO evidence). For Redis and etcd it includes starting the server on the restored
//!   data, since that is part of getting the service back.
//!
//! # Caveats
//! A command snapshot's restore command that ignores its input closing is waited for (it is
//! killed when its stdin is dropped mid-stream, but not once all data was written).

pub mod sandbox;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::{CatalogError, NewVerification, Status, VerificationStatus};
use crate::config::{Probe, UserCheck};
use crate::kinds::checks;
use crate::kinds::scratch::{ScratchOptions, UserTarget};
use crate::kinds::{RestoreOptions, RestoreTo};
use crate::model::snapshot::Manifest;
use crate::ops::Ctx;
use crate::ops::{RunGuard, RunSpec};

pub use crate::kinds::checks::{Check, Expect};
pub use sandbox::Sandbox;

/// Default `verify.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "`{0}` is neither a source in the config nor a snapshot in the catalog or a configured store; see `lifeboat snapshots list` (after a disaster, run `lifeboat catalog rebuild` first)"
    )]
    Unknown(String),
    #[error("source `{0}` has no complete snapshot to verify; take one with `lifeboat backup {0}`")]
    NoSnapshot(String),
    /// Its manifest was found but is not trusted (forged, tampered, misplaced).
    #[error("{0}")]
    Refused(String),
    /// The configured (or `--identity`) age identity cannot be read: a deployment problem,
    /// not a finding about the snapshot, so no verification is recorded.
    #[error(
        "cannot read the age identity {path}: {reason}; verification needs it to decrypt: mount the age identity Secret there (on Kubernetes only in the verify workload, `run --jobs verify`, e.g. `lifeboat-age-identity` at /etc/lifeboat/identity: see deploy/README.md), or fix `encryption.identity_file` / pass --identity"
    )]
    Identity { path: String, reason: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl VerifyError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            VerifyError::Unknown(_) | VerifyError::NoSnapshot(_) | VerifyError::Identity { .. } => {
                ErrorKind::Config
            }
            VerifyError::Refused(_) => ErrorKind::Corrupt,
            VerifyError::Catalog(e) => e.kind(),
        }
    }
}

pub struct Request {
    /// A source name (its newest complete snapshot) or a snapshot id.
    pub what: String,
    pub sandbox: Sandbox,
    /// Overrides the source's `verify.timeout`.
    pub timeout: Option<Duration>,
    pub identity: Option<PathBuf>,
}

/// The outcome, as `lifeboat verify --output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub snapshot_id: String,
    pub source: String,
    pub kind: String,
    pub sandbox: Sandbox,
    pub status: VerificationStatus,
    pub restore_ms: Option<u64>,
    pub checks: Vec<Check>,
    pub error: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.status == VerificationStatus::Passed
    }
}

/// Runs one verification and records it. `cancel` (Ctrl-C/SIGTERM) stops it cleanly.
pub async fn run(
    app: &Ctx,
    req: &Request,
    cancel: CancellationToken,
) -> Result<Report, VerifyError> {
    // Before anything is recorded: a missing identity mount is not a failed snapshot.
    if let Some(path) = req
        .identity
        .as_ref()
        .or(app.config.encryption.identity_file.as_ref())
        && let Err(e) = std::fs::File::open(path)
    {
        return Err(VerifyError::Identity {
            path: path.display().to_string(),
            reason: e.to_string(),
        });
    }
    let row = match app.config.source(&req.what) {
        Some(_) => app
            .catalog
            .snapshots(Some(&req.what))
            .await?
            .into_iter()
            .rfind(|s| s.status == Status::Complete)
            .ok_or_else(|| VerifyError::NoSnapshot(req.what.clone()))?,
        None => match app.catalog.snapshot(&req.what).await? {
            Some(row) => row,
            None => from_stores(app, &req.what).await?,
        },
    };
    let now = app.now();
    let id = format!("verify-{}", crate::model::snapshot::new_id(now));
    app.catalog
        .insert_verification(&NewVerification {
            id: &id,
            snapshot_id: &row.id,
            source: &row.source,
            sandbox: req.sandbox.as_str(),
            now,
        })
        .await?;
    // The verification is also a run: heartbeated, so that settlement records a killed one.
    let run = RunGuard::start(
        app,
        RunSpec {
            id: &id,
            job: "verify",
            source: &row.source,
            snapshot_id: Some(&row.id),
            store: None,
        },
    )
    .await?;
    let verify_cfg = app
        .config
        .source(&row.source)
        .and_then(|s| s.verify.clone());
    let timeout = req
        .timeout
        .or(verify_cfg.as_ref().and_then(|v| v.timeout.map(|t| t.0)))
        .unwrap_or(DEFAULT_TIMEOUT);
    let span = tracing::info_span!("verify", source = %row.source, snapshot_id = %row.id, verification = %id);
    span.in_scope(
        || tracing::info!(sandbox = req.sandbox.as_str(), kind = %row.kind, "verification started"),
    );

    let user_checks = verify_cfg.map(|v| v.checks).unwrap_or_default();
    let work = verify_snapshot(app, req, &row, &user_checks, &id).instrument(span.clone());
    let outcome = tokio::select! {
        r = work => r,
        _ = cancel.cancelled() => Err(Failure::new(
            "interrupted (SIGINT/SIGTERM); the sandbox was torn down; run `lifeboat verify` again",
        )),
        _ = tokio::time::sleep(timeout) => Err(Failure::new(format!(
            "timed out after {}; the sandbox was torn down; raise `verify.timeout` or pass --timeout",
            humantime::format_duration(timeout)
        ))),
    };
    // The sandbox future was dropped above: its servers are stopped and its directory gone.
    let legacy = row
        .manifest()
        .ok()
        .flatten()
        .is_some_and(|m| m.predates_facts());
    let outcome = outcome.map(|done| Done {
        checks: fail_closed(done.checks, legacy),
        ..done
    });
    let (status, restore_ms, checks, error) = match outcome {
        Ok(done) => {
            let passed = done.checks.iter().all(|c| c.passed);
            let error = (!passed).then(|| {
                let failed: Vec<String> = done
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect();
                format!("{} check(s) failed: {}", failed.len(), failed.join("; "))
            });
            let status = if passed {
                VerificationStatus::Passed
            } else {
                VerificationStatus::Failed
            };
            (status, Some(done.restore_ms), done.checks, error)
        }
        Err(f) => (
            VerificationStatus::Failed,
            f.restore_ms,
            f.checks,
            Some(f.error),
        ),
    };
    let checks_json = serde_json::to_value(&checks).unwrap_or_default();
    app.catalog
        .finish_verification(
            &id,
            status,
            restore_ms.map(|n| n as i64),
            &checks_json,
            error.as_deref(),
            app.now(),
        )
        .await?;
    match (&status, &error) {
        (VerificationStatus::Passed, _) => run.complete().await?,
        (_, e) => {
            run.fail(e.as_deref().unwrap_or("verification failed"))
                .await?
        }
    }
    span.in_scope(|| {
        tracing::info!(status = status.as_str(), restore_ms, error = ?error, "verification finished")
    });
    Ok(Report {
        id,
        snapshot_id: row.id,
        source: row.source,
        kind: row.kind,
        sandbox: req.sandbox,
        status,
        restore_ms,
        checks,
        error,
    })
}

/// Store credentials the object-store and S3 clients read from the environment, by store
/// URL scheme, carried into a Kubernetes sandbox when set and a store of the verified source
/// has that scheme (its Job has no service account token: IRSA and workload identity do not
/// reach it).
const STORE_CREDENTIAL_VARS: &[(&str, &[&str])] = &[
    (
        "s3",
        &[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
        ],
    ),
    (
        "az",
        &[
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_SAS_KEY",
        ],
    ),
    ("gs", &["GOOGLE_SERVICE_ACCOUNT_KEY"]),
];

/// What the Job's `lifeboat` needs, and no more (least privilege): the config cut down to
/// `source` and its stores ([`crate::config::job::for_verification`]), the values of the
/// `${VAR}`s that cut references, the credentials in our environment for those stores'
/// kinds, the trusted signers, and the age identity.
fn job_bundle(
    app: &Ctx,
    req: &Request,
    row: &crate::catalog::SnapshotRow,
) -> Result<sandbox::kubernetes::Bundle, Failure> {
    let source = row.source.as_str();
    let job = crate::config::job::for_verification(
        &app.config.origin,
        source,
        &row.locations,
        sandbox::kubernetes::INNER_CATALOG,
    )
    .map_err(|e| {
        Failure::new(format!(
            "cannot prepare the config for the sandbox Job: {e}"
        ))
    })?;
    let mut env = job.vars;
    // The Job has no signing key: it trusts the public keys this process trusts.
    if !app.trust.signers.is_empty() {
        let signers: Vec<String> = app.trust.signers.iter().map(ToString::to_string).collect();
        env.insert(
            crate::ops::manifest::TRUSTED_SIGNERS_ENV.to_string(),
            signers.join(","),
        );
    }
    let schemes: Vec<&str> = app
        .config
        .source(source)
        .into_iter()
        .flat_map(|s| std::iter::once(&s.store).chain(&s.copies))
        .chain(&row.locations)
        .filter_map(|name| app.config.stores.get(name))
        .filter_map(|store| store.url.split_once("://").map(|(scheme, _)| scheme))
        .collect();
    for (scheme, names) in STORE_CREDENTIAL_VARS {
        if !schemes.contains(scheme) {
            continue;
        }
        for name in *names {
            if let Ok(v) = std::env::var(name) {
                env.entry(name.to_string()).or_insert(v);
            }
        }
    }
    let identity = match req
        .identity
        .as_ref()
        .or(app.config.encryption.identity_file.as_ref())
    {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            Failure::new(format!(
                "cannot read the age identity {} for the sandbox: {e}; verification needs it: mount the age identity Secret there (on Kubernetes only in the verify/restore workload, e.g. `lifeboat-age-identity` at /etc/lifeboat/identity: see deploy/README.md), or pass --identity / fix `encryption.identity_file`",
                path.display()
            ))
        })?),
        None => None,
    };
    Ok(sandbox::kubernetes::Bundle {
        config_yaml: job.text,
        identity,
        env,
    })
}

/// A snapshot the catalog does not know (a fresh catalog after a disaster, or the
/// throwaway one inside a Kubernetes sandbox Job) but a configured store holds: record it
/// from its manifest, as `lifeboat catalog rebuild` would.
async fn from_stores(app: &Ctx, id: &str) -> Result<crate::catalog::SnapshotRow, VerifyError> {
    let (store, manifest) = crate::ops::restore::locate(app, id)
        .await
        .map_err(|e| match e {
            crate::ops::restore::RestoreError::NotFound { .. } => {
                VerifyError::Unknown(id.to_string())
            }
            other => VerifyError::Refused(other.to_string()),
        })?;
    app.catalog.record_complete(&store.name, &manifest).await?;
    tracing::info!(snapshot_id = id, store = %store.name, "snapshot found in the store and recorded in the catalog");
    app.catalog
        .snapshot(id)
        .await?
        .ok_or_else(|| VerifyError::Unknown(id.to_string()))
}

struct Done {
    restore_ms: u64,
    checks: Vec<Check>,
}

/// Why a verification could not finish its checks.
struct Failure {
    error: String,
    restore_ms: Option<u64>,
    checks: Vec<Check>,
}

impl Failure {
    fn new(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            restore_ms: None,
            checks: Vec::new(),
        }
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::new(e.to_string())
    }
}

async fn verify_snapshot(
    app: &Ctx,
    req: &Request,
    row: &crate::catalog::SnapshotRow,
    user: &[UserCheck],
    verification_id: &str,
) -> Result<Done, Failure> {
    let (snapshot_id, kind) = (row.id.as_str(), row.kind.as_str());
    match req.sandbox {
        Sandbox::Local => local(app, req, snapshot_id, kind, user).await,
        Sandbox::Kubernetes => {
            let cfg = app
                .config
                .sandbox
                .as_ref()
                .and_then(|s| s.kubernetes.clone())
                .ok_or_else(|| {
                    Failure::new(
                        "no `sandbox.kubernetes` in the config; set at least its `image` to verify in Kubernetes",
                    )
                })?;
            let bundle = job_bundle(app, req, row)?;
            let started = Instant::now();
            let outcome = sandbox::kubernetes::verify(
                app.kube.clone(),
                &cfg,
                verification_id,
                snapshot_id,
                &bundle,
                app.now(),
            )
            .await?;
            // The restore measured inside the sandbox; without the Job's report, the whole
            // Job (scheduling and image pull included): an upper bound.
            Ok(Done {
                restore_ms: outcome
                    .restore_ms
                    .unwrap_or(started.elapsed().as_millis() as u64),
                checks: outcome.checks,
            })
        }
    }
}

/// Restores through `crate::ops::restore` (integrity checks included); returns the manifest and
/// the wall time.
async fn restore_into(
    app: &Ctx,
    req: &Request,
    snapshot_id: &str,
    to: RestoreTo,
    options: RestoreOptions,
) -> Result<(Manifest, Instant), Failure> {
    let started = Instant::now();
    let request = crate::ops::restore::Request {
        snapshot_id: snapshot_id.to_string(),
        to,
        identity: req.identity.clone(),
        store: None,
        options,
    };
    let (manifest, _) =
        crate::ops::restore::restore(app, &request, &indicatif::ProgressBar::hidden()).await?;
    if manifest.facts.is_empty() && !manifest.predates_facts() {
        // Fail closed: nothing to compare the restore with is not a pass.
        return Err(Failure {
            error: format!(
                "the snapshot's manifest ({}) records no facts to check the restore against; current manifests always do, so it was altered or forged: verify another snapshot",
                manifest.format
            ),
            restore_ms: Some(ms(started)),
            checks: Vec::new(),
        });
    }
    Ok((manifest, started))
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

async fn local(
    app: &Ctx,
    req: &Request,
    snapshot_id: &str,
    kind: &str,
    user: &[UserCheck],
) -> Result<Done, Failure> {
    use sandbox::local;
    local::sweep_stale();
    // The scratch is created after (and so dropped before) the directory it lives in.
    let dir = local::SandboxDir::new()?;
    let opts = ScratchOptions {
        postgres_bin_dir: app
            .config
            .sandbox
            .as_ref()
            .and_then(|s| s.postgres_bin_dir.clone()),
    };
    let cannot = || {
        Failure::new(format!(
            "`{kind}` snapshots cannot be verified in the local sandbox; use --sandbox kubernetes"
        ))
    };
    let kind = crate::kinds::kind(kind).ok_or_else(cannot)?;
    let mut scratch = kind.scratch(dir.path(), &opts).await?.ok_or_else(cannot)?;
    let (to, options) = scratch.restore_to();
    let (manifest, started) = restore_into(app, req, snapshot_id, to, options).await?;
    scratch.serve().await?;
    let restore_ms = ms(started);
    let mut checks = vec![Check::pass(
        "restore",
        format!("restored in {restore_ms} ms"),
    )];
    match scratch.check(&manifest.facts).await {
        Ok(observed) => checks.extend(observed),
        Err(e) => {
            return Err(Failure {
                error: e.to_string(),
                restore_ms: Some(restore_ms),
                checks,
            });
        }
    }
    let target = scratch.user_target();
    checks.extend(user_checks(user, &target, snapshot_id).await);
    drop(scratch);
    Ok(Done { restore_ms, checks })
}

/// A check skipped for want of a recorded fact passes only for manifests that predate facts
/// (`legacy`); otherwise it fails: a verification never passes on what it could not compare.
fn fail_closed(checks: Vec<Check>, legacy: bool) -> Vec<Check> {
    checks
        .into_iter()
        .map(|c| {
            if legacy || !c.passed || !c.detail.starts_with("skipped") {
                return c;
            }
            Check::fail(
                c.name,
                format!(
                    "{}; a current manifest records it, so this one was altered or forged",
                    c.detail
                ),
            )
        })
        .collect()
}

async fn user_checks(checks: &[UserCheck], target: &UserTarget, snapshot_id: &str) -> Vec<Check> {
    let pg_url = target.sql_url.as_deref();
    let redis_url = target.redis_url.as_deref();
    let mut env = target.env.clone();
    env.push(("LIFEBOAT_SNAPSHOT", snapshot_id.to_string()));
    let mut out = Vec::new();
    for c in checks {
        let name = c.name.as_str();
        out.push(match &c.probe {
            Probe::Sql(sql) => match pg_url {
                None => Check::fail(name, "`sql` checks apply to PostgreSQL snapshots only"),
                Some(url) => sql_check(c, url, sql).await,
            },
            Probe::Redis(args) => match redis_url {
                None => Check::fail(name, "`redis` checks apply to Redis snapshots only"),
                Some(url) => {
                    let (url, args) = (url.to_string(), args.clone());
                    let reply = tokio::task::spawn_blocking(move || {
                        crate::kinds::redis::checks::command(&url, &args)
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                    match reply {
                        Ok(r) => checks::expectation(name, c.expect.as_ref(), &r),
                        Err(e) => Check::fail(name, format!("Redis answered an error: {e}")),
                    }
                }
            },
            Probe::Command(argv) => command_check(c, argv, &env).await,
        });
    }
    out
}

async fn sql_check(c: &UserCheck, url: &str, sql: &str) -> Check {
    let name = c.name.as_str();
    let result: Result<Vec<(Option<String>,)>, sqlx::Error> = async {
        let mut db = sqlx::PgConnection::connect(url).await?;
        // Any result shape: each row as JSON; the first column is the check's value.
        // The operator's own query from the config, run in a throwaway sandbox database.
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT value FROM json_each_text(row_to_json(q)) LIMIT 1) FROM ({}) q",
            sql.trim().trim_end_matches(';')
        )))
        .fetch_all(&mut db)
        .await?;
        let _ = db.close().await;
        Ok(rows)
    }
    .await;
    match result {
        Err(e) => Check::fail(name, format!("the query failed: {e}")),
        Ok(rows) => {
            if let Some(want) = c.expect_rows
                && rows.len() as u64 != want
            {
                return Check::fail(
                    name,
                    format!("returned {} row(s), expected {want}", rows.len()),
                );
            }
            match (&c.expect, rows.first()) {
                (Some(_), None) => Check::fail(name, "returned no rows"),
                (Some(e), Some((v,))) => {
                    checks::expectation(name, Some(e), v.as_deref().unwrap_or("NULL"))
                }
                (None, _) => Check::pass(name, format!("returned {} row(s)", rows.len())),
            }
        }
    }
}

async fn command_check(c: &UserCheck, argv: &[String], env: &[(&'static str, String)]) -> Check {
    let name = c.name.as_str();
    let Some((program, args)) = argv.split_first() else {
        return Check::fail(name, "empty command");
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match cmd.output().await {
        Err(e) => Check::fail(name, format!("cannot run {program}: {e}")),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr.trim().chars().take(500).collect();
            Check::fail(name, format!("{program} failed ({}): {tail}", out.status))
        }
        Ok(out) => match &c.expect {
            None => Check::pass(name, "exited 0"),
            Some(e) => checks::expectation(name, Some(e), &String::from_utf8_lossy(&out.stdout)),
        },
    }
}
