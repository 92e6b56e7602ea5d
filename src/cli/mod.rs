//! The command line: parsing, logging setup, and printing. The only place `anyhow` is used;
//! every failure exits non-zero with the error's whole chain on stderr.

mod dns;
mod drill;
mod failover;
mod report;
mod runbook;
mod trust;

use crate::report::output;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::ops::Ctx;

#[derive(Parser, Debug)]
#[command(
    name = "lifeboat",
    version,
    about = "Encrypted, verifiable snapshots of stateful services"
)]
pub struct Cli {
    /// Config file.
    #[arg(short, long, global = true, env = "LIFEBOAT_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Catalog URL overriding the config's `catalog:` (e.g. a throwaway
    /// `sqlite:///tmp/catalog.db` where the real catalog is out of reach).
    #[arg(long, global = true, env = "LIFEBOAT_CATALOG", hide_env_values = true)]
    pub catalog: Option<String>,
    /// Log format on stderr: human on a terminal, json otherwise when `auto`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Log filter (RUST_LOG syntax), e.g. `debug` or `lifeboat=debug`.
    #[arg(long, global = true, env = "LIFEBOAT_LOG", default_value = "info")]
    pub log_level: String,
    /// Accept snapshots whose manifest is not signed (made before signing was configured).
    /// Skips the check that proves lifeboat made them: a forged snapshot is accepted too.
    #[arg(long, global = true)]
    pub allow_unsigned: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Human,
    Json,
}

pub use crate::report::Output;

/// `lifeboat status --output`: also the Prometheus text format.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum StatusOutput {
    #[default]
    Table,
    Json,
    /// Text exposition format (node-exporter textfile collector).
    Prometheus,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the config file without touching anything.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage age encryption keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Take a snapshot of one source now.
    Backup {
        /// Source name from the config.
        source: String,
    },
    /// Copy committed snapshots into their sources' `copies:` stores (what is missing only).
    Copy {
        /// Only this source (default: every source with copies).
        source: Option<String>,
    },
    /// List snapshots.
    Snapshots {
        #[command(subcommand)]
        action: SnapshotsAction,
    },
    /// Restore a snapshot into a target.
    Restore(Box<RestoreArgs>),
    /// List recent runs (backups, restores) with their outcome.
    Runs {
        #[command(subcommand)]
        action: RunsAction,
    },
    /// Apply each source's retention policy: print what is kept and why, then delete the rest.
    Prune {
        /// Only this source (default: every source).
        source: Option<String>,
        /// Print the plan; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Every source against its recovery objectives (RPO, RTO): exit 0 when none is
    /// breached (at-risk included), 2 when any is breached, 1 on errors.
    Status {
        #[arg(long, short, value_enum, default_value_t = StatusOutput::Table)]
        output: StatusOutput,
    },
    /// The orchestrator: run every source's jobs on their schedules (backups, copies, prunes,
    /// verifications), with leader election and the HTTP endpoints of `daemon.listen`.
    Run {
        /// Run what is due now (and anything missed since the last run), then exit: non-zero
        /// if any job failed. For a Kubernetes CronJob.
        #[arg(long)]
        once: bool,
        /// Only these kinds of job, comma-separated, all of one role: `backup,copy,prune`
        /// (the backup side: needs the recipients and the signing key, never the age
        /// identity) or `verify` (needs the identity). Each role elects its own leader (lock
        /// name + `-backup` / `-verify`). Default: every kind, under the plain lock.
        #[arg(long, value_name = "KIND,...", value_parser = parse_jobs)]
        jobs: Option<crate::policy::schedule::JobFilter>,
    },
    /// Restore a snapshot into a scratch sandbox, check it, tear the sandbox down, record it.
    Verify(VerifyArgs),
    /// Past verifications.
    Verifications {
        #[command(subcommand)]
        action: VerificationsAction,
    },
    /// Catalog maintenance.
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
    /// Move traffic: show and switch the DNS records of `dns.records` (compare-and-swap,
    /// then proof from every authoritative nameserver).
    Dns {
        #[command(subcommand)]
        action: dns::DnsAction,
    },
    /// DR reports people read: posture, verification, failover and drill, as html, json or md.
    Report {
        #[command(subcommand)]
        action: report::ReportAction,
    },
    /// Move the primary between `sites:`: status, plan, execute (fence, promote, DNS,
    /// verify; resumable), history.
    Failover {
        #[command(subcommand)]
        action: failover::FailoverAction,
    },
    /// Chaos drills: the shipped scenarios, what a drill would touch, running one, history.
    Drill {
        #[command(subcommand)]
        action: drill::DrillAction,
    },
    /// Runbooks: Markdown procedures whose ```lifeboat blocks are run step by step, resumable.
    Runbook {
        #[command(subcommand)]
        action: runbook::RunbookAction,
    },
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    pub snapshot_id: String,
    /// A live service to restore into: for PostgreSQL, the URL of an existing, empty database.
    #[arg(long, group = "to", required = true)]
    pub target: Option<String>,
    /// Write the raw dump (decrypted, decompressed) to this file instead; never overwrites.
    #[arg(long, group = "to")]
    pub to_file: Option<PathBuf>,
    /// Restore into this directory (files snapshots, etcd data directories); it must not exist or be empty.
    #[arg(long, group = "to")]
    pub to_dir: Option<PathBuf>,
    /// age identity file (default: encryption.identity_file).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Restore from this store's copy instead of the snapshot's own store.
    #[arg(long)]
    pub store: Option<String>,
    /// PostgreSQL: do not restore object ownership.
    #[arg(long)]
    pub no_owner: bool,
    /// Directory of the restore tools (pg_restore), if not on PATH.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// etcd: member name of the restored data directory.
    #[arg(long)]
    pub etcd_name: Option<String>,
    /// etcd: peer URL of the restored member.
    #[arg(long)]
    pub etcd_peer_url: Option<String>,
    /// Kubernetes: storage class of the PVC restored from a VolumeSnapshot.
    #[arg(long)]
    pub storage_class: Option<String>,
    /// command: feed `restore_argv` while the snapshot is still being decrypted (no staging
    /// copy on disk), i.e. before its checksum is known: the target may see forged or
    /// corrupt data before the restore fails.
    #[arg(long)]
    pub stream: bool,
    /// files: keep setuid, setgid and sticky bits (dropped by default, since file
    /// ownership is not restored).
    #[arg(long)]
    pub keep_special_modes: bool,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// A source (its newest complete snapshot) or a snapshot id.
    pub what: String,
    #[arg(long, value_enum, default_value_t = SandboxArg::Local)]
    pub sandbox: SandboxArg,
    /// Give up (and tear the sandbox down) after this long, e.g. `30m` (default: the
    /// source's verify.timeout, else 30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// age identity file (default: encryption.identity_file).
    #[arg(long)]
    pub identity: Option<PathBuf>,
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SandboxArg {
    Local,
    Kubernetes,
}

#[derive(Subcommand, Debug)]
pub enum VerificationsAction {
    /// List verifications, oldest first.
    List {
        source: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigAction {
    /// Load and validate the config; print a summary.
    Check,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Write a new age identity (mode 0600) and print its public key (the recipient); with
    /// --signing, a manifest signing key (ed25519) and its public key.
    Generate {
        /// Where to write it (default: encryption.identity_file, or with --signing
        /// encryption.signing_key_file, of the config).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// A manifest signing key instead of an age identity.
        #[arg(long)]
        signing: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotsAction {
    /// List snapshots, oldest first.
    List {
        source: Option<String>,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand, Debug)]
pub enum RunsAction {
    /// List the newest runs, oldest of them first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand, Debug)]
pub enum CatalogAction {
    /// Rebuild the catalog from the manifests in the stores.
    Rebuild,
    /// Settle runs left `running` by processes that died (alias: `recover`, its old name).
    #[command(alias = "recover")]
    Settle,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs JSON unless told otherwise: its logs go to a collector, not a person.
    let format = match (&cli.command, cli.log_format) {
        (Command::Run { once: false, .. }, LogFormat::Auto) => LogFormat::Json,
        (_, f) => f,
    };
    init_logging(format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "error: {}",
                crate::model::redact::scrub_registered(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    };
    // A cancelled backup's blocking encoder thread may still be reading the dump process'
    // stdout; the work is settled and recorded, so do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// One log event, written to stderr when dropped with every secret of the config scrubbed
/// ([`crate::model::redact::scrub_registered`]).
struct ScrubbedLine(Vec<u8>);

impl std::io::Write for ScrubbedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        let text = crate::model::redact::scrub_registered(&String::from_utf8_lossy(&self.0));
        let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    }
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| ScrubbedLine(Vec::new()))
        // A closed stderr (a log collector gone, a pipe closed by the caller) must not turn
        // a log line into a panic: the line is lost, the run goes on.
        .log_internal_errors(false);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
}

/// Where the config comes from: `--config` and `--catalog`.
struct ConfigArgs {
    path: PathBuf,
    catalog: Option<String>,
    allow_unsigned: bool,
}

fn load(args: &ConfigArgs) -> Result<Config> {
    let mut config = Config::load(&args.path)?;
    if let Some(url) = &args.catalog {
        config.catalog = crate::model::SecretString::new(url.clone());
    }
    Ok(config)
}

async fn open(args: &ConfigArgs) -> Result<Ctx> {
    let mut app = Ctx::open(load(args)?).await?;
    if args.allow_unsigned {
        tracing::warn!(
            "--allow-unsigned: UNSIGNED snapshots are accepted; their origin is NOT checked, so a snapshot forged by anyone with write access to the store restores and verifies like a real one (foreign or broken signatures are still refused)"
        );
        app.trust.allow_unsigned = true;
    }
    Ok(app)
}

/// A byte-progress bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Cancelled on the first SIGINT or SIGTERM, so a run can clean up and record why it stopped.
fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        // Cancel first: nothing that follows (a log line to a closed stderr) may stop it.
        crate::model::failpoint::release();
        t.cancel();
        tracing::warn!("signal received: stopping the current run cleanly");
    });
    token
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config_args = ConfigArgs {
        path: cli.config.clone(),
        catalog: cli.catalog.clone(),
        allow_unsigned: cli.allow_unsigned,
    };
    match cli.command {
        Command::Config {
            action: ConfigAction::Check,
        } => {
            let config = load(&config_args)?;
            output::config_summary(&cli.config, &config);
            trust::check_object_lock(&config).await?;
        }
        Command::Keys {
            action: KeysAction::Generate { output, signing },
        } => {
            let now = crate::model::Clock::now(&crate::model::SystemClock);
            if signing {
                let path = match output {
                    Some(p) => p,
                    None => load(&config_args)?.encryption.signing_key_file.context(
                        "no --output given and the config sets no encryption.signing_key_file",
                    )?,
                };
                let public = crate::pipeline::signing::generate_signing_key_file(&path, now)?;
                eprintln!(
                    "wrote signing key {} (mode 0600); set encryption.signing_key_file to it on the backup side, and list the public key below in encryption.trusted_signers wherever snapshots are restored or verified",
                    path.display()
                );
                println!("{public}");
                return Ok(ExitCode::SUCCESS);
            }
            let path = match output {
                Some(p) => p,
                None => load(&config_args)?
                    .encryption
                    .identity_file
                    .context("no --output given and the config sets no encryption.identity_file")?,
            };
            let recipient = crate::pipeline::crypto::generate_identity_file(&path, now)?;
            eprintln!(
                "wrote identity {} (mode 0600); keep it secret and keep a copy outside this cluster",
                path.display()
            );
            println!("{recipient}");
        }
        Command::Backup { source } => {
            let app = open(&config_args).await?;
            crate::ops::settle::before_work(&app).await;
            let bar = progress_bar(&format!("backing up {source}"));
            let result = crate::ops::backup::run(&app, &source, &bar, shutdown_token()).await;
            bar.finish_and_clear();
            let manifest = result?;
            output::committed(&manifest);
            copies(&app, Some(&source)).await?;
        }
        Command::Copy { source } => {
            let app = open(&config_args).await?;
            crate::ops::settle::before_work(&app).await;
            copies(&app, source.as_deref()).await?;
        }
        Command::Snapshots {
            action: SnapshotsAction::List { source, output },
        } => {
            let app = open(&config_args).await?;
            if let Some(s) = &source
                && app.config.source(s).is_none()
            {
                tracing::warn!(source = %s, "no source by that name in the config; listing what the catalog has");
            }
            let rows = app.catalog.snapshots(source.as_deref()).await?;
            output::snapshots(&rows, output)?;
        }
        Command::Restore(args) => {
            let RestoreArgs {
                snapshot_id,
                target,
                to_file,
                to_dir,
                identity,
                store,
                no_owner,
                bin_dir,
                etcd_name,
                etcd_peer_url,
                storage_class,
                stream,
                keep_special_modes,
            } = *args;
            use crate::kinds::RestoreTo;
            let to = match (target, to_file, to_dir) {
                (Some(url), _, _) => RestoreTo::Url(url),
                (_, Some(file), _) => RestoreTo::File(file),
                (_, _, Some(dir)) => RestoreTo::Dir(dir),
                _ => anyhow::bail!(
                    "say where to restore: --target URL, --to-file PATH or --to-dir PATH"
                ),
            };
            let app = open(&config_args).await?;
            let bar = progress_bar(&format!("restoring {snapshot_id}"));
            let req = crate::ops::restore::Request {
                snapshot_id,
                to,
                identity,
                store,
                options: crate::kinds::RestoreOptions {
                    no_owner,
                    no_privileges: false,
                    bin_dir,
                    etcd_name,
                    etcd_peer_url,
                    storage_class,
                    stream,
                    keep_special_modes,
                },
            };
            let cancel = shutdown_token();
            let result = tokio::select! {
                r = crate::ops::restore::run(&app, &req, &bar) => r.map_err(anyhow::Error::from),
                _ = cancel.cancelled() => Err(anyhow::anyhow!(
                    "interrupted: the restore was stopped before it finished and the target committed nothing"
                )),
            };
            bar.finish_and_clear();
            let (manifest, stats) = result?;
            output::restored(&manifest, &stats, &req.to);
        }
        Command::Runs {
            action: RunsAction::List { limit, output },
        } => {
            let app = open(&config_args).await?;
            output::runs(&app.catalog.runs(limit).await?, output)?;
        }
        Command::Prune {
            source,
            dry_run,
            output,
        } => {
            let app = open(&config_args).await?;
            if !dry_run {
                crate::ops::settle::before_work(&app).await;
            }
            let plans = crate::ops::prune::plan(&app, source.as_deref(), app.now()).await?;
            let mut reports = Vec::new();
            for plan in &plans {
                if output == Output::Table {
                    output::prune_plan(plan, dry_run);
                }
                let outcome = if dry_run {
                    None
                } else {
                    let outcome = crate::ops::prune::execute(&app, plan).await?;
                    if output == Output::Table {
                        output::prune_outcome(plan, &outcome);
                    }
                    Some(outcome)
                };
                reports.push((plan, outcome));
            }
            if output == Output::Json {
                output::prune_json(&reports, dry_run)?;
            }
        }
        Command::Status { output } => {
            let app = open(&config_args).await?;
            let report = crate::ops::status::gather(&app, app.now()).await?;
            match output {
                StatusOutput::Table => output::status(&report),
                StatusOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                StatusOutput::Prometheus => print!("{}", report.prometheus()),
            }
            if report.verdict == crate::policy::objectives::Verdict::Breached {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Run { once, jobs } => {
            return run_daemon(&config_args, once, jobs.unwrap_or_default()).await;
        }
        Command::Dns { action } => return dns::run(&load(&config_args)?, action).await,
        Command::Report { action } => report::dispatch(&config_args, action).await?,
        Command::Failover { action } => {
            return failover::run(open(&config_args).await?, action).await;
        }
        Command::Drill { action } => return drill::run(&config_args, action).await,
        Command::Runbook { action } => {
            return runbook::run(&config_args, &cli.log_level, action).await;
        }
        Command::Verify(args) => {
            let app = open(&config_args).await?;
            let req = crate::ops::verify::Request {
                what: args.what,
                sandbox: match args.sandbox {
                    SandboxArg::Local => crate::ops::verify::Sandbox::Local,
                    SandboxArg::Kubernetes => crate::ops::verify::Sandbox::Kubernetes,
                },
                timeout: args.timeout,
                identity: args.identity,
            };
            let report = crate::ops::verify::run(&app, &req, shutdown_token()).await?;
            output::verification(&report, args.output)?;
            if !report.passed() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Verifications {
            action:
                VerificationsAction::List {
                    source,
                    limit,
                    output,
                },
        } => {
            let app = open(&config_args).await?;
            let rows = app.catalog.verifications(source.as_deref(), limit).await?;
            output::verifications(&rows, output)?;
        }
        Command::Catalog {
            action: CatalogAction::Rebuild,
        } => {
            let app = open(&config_args).await?;
            let rebuilt = crate::ops::rebuild::run(&app).await?;
            for (store, dir, why) in &rebuilt.skipped {
                eprintln!("skipped {store}:{dir}: {why}");
            }
            for (id, why) in &rebuilt.conflicts {
                eprintln!(
                    "CONFLICT {id}: {why}; the catalog row was kept (the store copy may have been replaced: investigate before restoring it)"
                );
            }
            println!(
                "catalog rebuilt: {} snapshot(s) recorded from {} store(s)",
                rebuilt.recorded,
                app.stores.len() - rebuilt.unreachable.len()
            );
            if !rebuilt.unreachable.is_empty() {
                for e in &rebuilt.unreachable {
                    eprintln!("error: {e}");
                }
                anyhow::bail!(
                    "{} store(s) could not be read; their snapshots are missing from the catalog until `lifeboat catalog rebuild` succeeds for them",
                    rebuilt.unreachable.len()
                );
            }
        }
        Command::Catalog {
            action: CatalogAction::Settle,
        } => {
            let app = open(&config_args).await?;
            let r = crate::ops::settle::run(&app).await?;
            println!(
                "crashed runs settled: {} recorded complete, {} failed, {} orphan object(s) removed",
                r.completed.len(),
                r.failed.len(),
                r.orphans_removed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--jobs KIND,...`.
fn parse_jobs(text: &str) -> Result<crate::policy::schedule::JobFilter, String> {
    crate::policy::schedule::JobFilter::parse(text)
}

/// `lifeboat run [--once] [--jobs KIND,...]`.
async fn run_daemon(
    args: &ConfigArgs,
    once: bool,
    jobs: crate::policy::schedule::JobFilter,
) -> Result<ExitCode> {
    use crate::daemon::{self, http, metrics::Metrics, status::ObjectiveStatus};
    use std::sync::Arc;
    let app = Arc::new(open(args).await?);
    let metrics = Arc::new(Metrics::default());
    let leader = crate::leader::build(
        &app.config.daemon.leader,
        &app.config.catalog,
        app.kube.clone(),
        jobs.role(),
    )
    .await?;
    if let Some(role) = jobs.role() {
        tracing::info!(role = role.as_str(), kinds = ?jobs.kinds().collect::<Vec<_>>(), "running one job role under its own leader lock");
    }
    let stop = shutdown_token();
    let http_stop = CancellationToken::new();
    let controller = match once {
        true => None,
        false => {
            let m = metrics.clone();
            daemon::failover::start(
                app.clone(),
                Arc::new(move || m.is_leader()),
                http_stop.clone(),
            )
            .await?
        }
    };
    let server = match (&app.config.daemon.listen, once) {
        (Some(addr), false) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on daemon.listen `{addr}`"))?;
            tracing::info!(addr = %addr, "HTTP endpoints listening");
            let state = http::HttpState {
                app: app.clone(),
                metrics: metrics.clone(),
                status: Arc::new(ObjectiveStatus),
                token: app.config.daemon.api_token().map(str::to_string),
                failover: controller.as_ref().map(|(shared, _)| shared.clone()),
            };
            let until = http_stop.clone();
            Some(tokio::spawn(http::serve(listener, state, async move {
                until.cancelled().await
            })))
        }
        _ => None,
    };
    let result = daemon::run(
        app.clone(),
        leader,
        metrics,
        stop.cancelled_owned(),
        daemon::Options { once, jobs },
    )
    .await;
    http_stop.cancel();
    if let Some(server) = server {
        match server.await {
            Ok(Err(e)) => tracing::warn!(cause = %e, "HTTP server stopped with an error"),
            Err(e) => tracing::warn!(cause = %e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
    let summary = result?;
    if once {
        println!(
            "{} job(s) succeeded, {} failed",
            summary.succeeded,
            summary.failed.len()
        );
    }
    if summary.failed.is_empty() || !once {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &summary.failed {
            eprintln!("error: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Runs the pending copies of `source` (or all); any failure makes the command fail.
async fn copies(app: &Ctx, source: Option<&str>) -> Result<()> {
    let (copied, failures) = crate::ops::copy::pending(app, source).await?;
    if copied > 0 {
        println!("{copied} cop(ies) committed");
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        anyhow::bail!(
            "{} cop(ies) failed (the snapshots themselves are committed); rerun `lifeboat copy`",
            failures.len()
        );
    }
    Ok(())
}
