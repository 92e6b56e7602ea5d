//! `lifeboat report posture|verification|failover|drill`: the DR reports, as HTML, JSON or Markdown, on
//! stdout or into a file (written whole or not at all: a temporary file in the same
//! directory, mode 0600, synced, then renamed over the target).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::ops::Ctx;
use crate::report::{ReportFormat, dr};

#[derive(clap::Args, Debug)]
pub struct Destination {
    /// html (one self-contained page), json (versioned schema) or md (Markdown). Default:
    /// from the --to-file extension, else html into a file and md on stdout.
    #[arg(long, short, value_enum)]
    pub output: Option<ReportFormat>,
    /// Write the report to this file (mode 0600, replaced atomically) instead of stdout.
    #[arg(long)]
    pub to_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ReportAction {
    /// Every source's RPO exposure and last measured RTO against its objectives, the trend
    /// over the period, the last verifications, the calendar of required tests, open findings.
    Posture {
        /// The period covered, ending now (e.g. `7d`, `30d`, `12w`).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[command(flatten)]
        to: Destination,
    },
    /// One verification: the verdict, its restore time against the RTO, every check, and
    /// the evidence (snapshot, SHA-256, signer, versions, where it ran).
    Verification {
        /// The verification id (see `lifeboat verifications list`).
        id: String,
        #[command(flatten)]
        to: Destination,
    },
    /// One failover: the verdict against the services' RTO/RPO objectives, measured RTO and
    /// data lost per service, the timeline (detect, decide, fence, promote, repoint, DNS,
    /// verify), findings and evidence.
    Failover {
        /// The failover's term (see `lifeboat failover history`).
        id: String,
        #[command(flatten)]
        to: Destination,
    },
    /// Write a report into the reports store now (as the daemon does on `reports.schedule`
    /// and after each failover): HTML and JSON, object-locked where the store is, each
    /// object's SHA-256 in the catalog. Safe to run again: a report already published is
    /// left as it is.
    Publish {
        #[command(subcommand)]
        what: PublishWhat,
    },
    /// One drill (its id from `lifeboat drill history`, read from the catalog), or a journal
    /// file (`--journal`, `lifeboat.drill-journal/v1`, e.g. fetched from the store; needs no
    /// config): the verdict against its objectives, measured RTO/RPO per service, the
    /// timeline, the canary writes, findings, and the evidence (journal SHA-256, whether its
    /// hash chain holds).
    Drill {
        /// The drill's id (see `lifeboat drill history`).
        #[arg(required_unless_present = "journal", conflicts_with = "journal")]
        id: Option<String>,
        /// The drill journal, as JSON.
        #[arg(long)]
        journal: Option<PathBuf>,
        #[command(flatten)]
        to: Destination,
    },
}

#[derive(Subcommand, Debug)]
pub enum PublishWhat {
    /// The posture over the period ending now.
    Posture {
        /// The period covered (default: `reports.period`, 7d).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// The report of one failover (its term).
    Failover { term: i64 },
    /// The report of one drill: its id (from the catalog) or its journal file.
    Drill {
        #[arg(required_unless_present = "journal", conflicts_with = "journal")]
        id: Option<String>,
        #[arg(long)]
        journal: Option<PathBuf>,
    },
}

fn read_journal(journal: &Path) -> Result<crate::model::journal::DrillJournal> {
    let text = std::fs::read_to_string(journal)
        .with_context(|| format!("cannot read the drill journal {}", journal.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a drill journal (JSON, schema {}); fetch the drill's journal.json from the store",
            journal.display(),
            crate::model::journal::DRILL_JOURNAL_SCHEMA
        )
    })
}

async fn publish(app: &Ctx, what: PublishWhat) -> Result<()> {
    use crate::report::publish::ReportKind;
    let kind = match what {
        PublishWhat::Posture { since } => ReportKind::Posture {
            period: since.unwrap_or_else(|| {
                app.config
                    .reports
                    .as_ref()
                    .map_or(std::time::Duration::from_secs(7 * 86_400), |r| r.period())
            }),
        },
        PublishWhat::Failover { term } => ReportKind::Failover { term },
        PublishWhat::Drill { id, journal } => {
            ReportKind::Drill(Box::new(drill_journal(Some(app), id, journal).await?))
        }
    };
    let published = crate::report::publish::publish(app, kind).await?;
    for o in &published.objects {
        println!(
            "published {} ({}) to store {}: {} sha256 {}{}",
            o.id,
            o.format,
            o.store,
            o.object_key,
            o.sha256,
            o.locked_until
                .as_deref()
                .map_or(String::new(), |u| format!(", locked until {u}"))
        );
    }
    Ok(())
}

/// `lifeboat report ...`: a drill journal file needs no config; the others read the catalog.
pub(super) async fn dispatch(config: &super::ConfigArgs, action: ReportAction) -> Result<()> {
    match action {
        ReportAction::Drill {
            id: None,
            journal: Some(journal),
            to,
        } => {
            let j = read_journal(&journal)?;
            let text = crate::report::drill::render_drill(&j, format(&to))?;
            emit(&to, &text)
        }
        action => run(&super::open(config).await?, action).await,
    }
}

pub async fn run(app: &Ctx, action: ReportAction) -> Result<()> {
    match action {
        ReportAction::Posture { since, to } => {
            let posture = crate::ops::reports::posture(app, since).await?;
            let text = dr::posture(&posture, format(&to))?;
            emit(&to, &text)
        }
        ReportAction::Verification { id, to } => {
            let report = crate::ops::reports::verification(app, &id).await?;
            let text = dr::verification(&report, format(&to))?;
            emit(&to, &text)
        }
        ReportAction::Failover { id, to } => {
            let report = crate::ops::reports_failover::failover(app, &id).await?;
            let text = crate::report::failover::render(&report, format(&to))?;
            emit(&to, &text)
        }
        ReportAction::Drill { id, journal, to } => {
            let j = drill_journal(Some(app), id, journal).await?;
            let text = crate::report::drill::render_drill(&j, format(&to))?;
            emit(&to, &text)
        }
        ReportAction::Publish { what } => publish(app, what).await,
    }
}

/// The journal of a drill: from a file, or by id from the catalog.
async fn drill_journal(
    app: Option<&Ctx>,
    id: Option<String>,
    journal: Option<PathBuf>,
) -> Result<crate::model::journal::DrillJournal> {
    match (id, journal, app) {
        (_, Some(path), _) => read_journal(&path),
        (Some(id), None, Some(app)) => app.catalog.drill_journal(&id).await?.with_context(|| {
            format!(
                "no drill `{id}` in the catalog; `lifeboat drill history` lists the drills, or pass the journal from the store with --journal"
            )
        }),
        _ => anyhow::bail!("name a drill: its id (see `lifeboat drill history`) or --journal FILE"),
    }
}

fn format(to: &Destination) -> ReportFormat {
    to.output.unwrap_or_else(|| match &to.to_file {
        Some(p) => ReportFormat::from_extension(p).unwrap_or(ReportFormat::Html),
        None => ReportFormat::Md,
    })
}

fn emit(to: &Destination, text: &str) -> Result<()> {
    match &to.to_file {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write the report to stdout")
        }
        Some(path) => {
            write_atomic(path, text.as_bytes())?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
    }
}

/// Writes `bytes` to `path` whole or not at all, readable by its owner only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lifeboat-report-")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot create a file in {} for the report; check that the directory exists and is writable",
                dir.display()
            )
        })?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .context("cannot restrict the report file to mode 0600")?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write the report into {}", dir.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the report into place at {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.html");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/r.html"), b"x").is_err());
    }
}
