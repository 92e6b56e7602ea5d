//! `lifeboat failover status | plan | execute | rejoin | history`: moving the primary between the
//! `sites:` (see `ops::failover`).
//!
//! Exit codes of `execute`: 0 done (or resumed and done); 1 failed (run it again to resume);
//! 3 refused (the plan says why and which flag would accept it); 5 not confirmed.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::ops::ctx::Ctx;
use crate::ops::failover::{self, Options, Plan};
use crate::report::Output;

pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_NOT_CONFIRMED: u8 = 5;

#[derive(Subcommand, Debug)]
pub enum FailoverAction {
    /// Sites, what this vantage point sees of each service (role, position, lag), the current
    /// primary and term, and any unfinished failover.
    Status {
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// What `execute --to SITE` would do and what data is at risk; changes nothing.
    Plan {
        #[arg(long)]
        to: String,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Move the primary to SITE: fence the old primary, promote, switch DNS, verify. Run it
    /// again after a crash: it resumes without redoing a finished step.
    Execute {
        #[arg(long)]
        to: String,
        /// Promote even though data may be lost (the plan says how much).
        #[arg(long)]
        accept_data_loss: bool,
        /// Go on when the old primary cannot be reached to confirm its fence.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Turn a recovered old primary SITE into a replica of the current primary (PostgreSQL:
    /// pg_rewind, else a fresh base backup, in the service's `data_dir`; Redis: REPLICAOF).
    /// Then failing back is a planned `execute --to SITE`.
    Rejoin { site: String },
    /// Past failovers with their steps and measured timeline.
    History {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Each site's health as every controller sees it: a row per site, a column per vantage
/// point (`up`, `DOWN×N` for N failed rounds in a row, `?` when it has no view).
fn print_vantage_points(s: &failover::Status) {
    use failover::Vantage;
    if s.vantage_points.is_empty() {
        return;
    }
    let names: Vec<&String> = s.vantage_points.keys().collect();
    println!("health per vantage point (rows: sites; columns: the lifeboat that looked):");
    print!("  {:<12}", "");
    for n in &names {
        print!(" {n:<14}");
    }
    println!();
    let mut sites: Vec<&str> = s.services.iter().map(|v| v.site.as_str()).collect();
    sites.dedup();
    for site in sites {
        print!("  {site:<12}");
        for v in s.vantage_points.values() {
            let cell = match v {
                Vantage::Report(r) => match r.sites.get(site) {
                    Some(view) if view.failures_in_a_row == 0 => "up".to_string(),
                    Some(view) => format!("DOWN×{}", view.failures_in_a_row),
                    None => "?".to_string(),
                },
                Vantage::Unreachable { .. } => "unreachable".to_string(),
            };
            print!(" {cell:<14}");
        }
        println!();
    }
    print!("  {:<12}", "term/primary");
    for v in s.vantage_points.values() {
        let cell = match v {
            Vantage::Report(r) => format!(
                "{}/{}{}",
                r.term,
                r.primary,
                if r.moving { " (moving)" } else { "" }
            ),
            Vantage::Unreachable { .. } => "-".to_string(),
        };
        print!(" {cell:<14}");
    }
    println!();
}

fn print_plan(p: &Plan) {
    println!("failover plan: {} → {} (term {})", p.from, p.to, p.term);
    for s in &p.services {
        match (&s.probe, &s.error) {
            (Some(probe), _) => println!(
                "  {:<10} {:<12} {:<8} {:?}{} position {} lag {}",
                s.site,
                s.service,
                s.kind,
                probe.role,
                if probe.fenced { " (fenced)" } else { "" },
                probe.position.map_or("-".into(), |p| p.to_string()),
                probe.lag_seconds.map_or("-".into(), |l| format!("{l:.1}s")),
            ),
            (None, e) => println!(
                "  {:<10} {:<12} {:<8} UNREACHABLE {}",
                s.site,
                s.service,
                s.kind,
                e.as_deref().unwrap_or("")
            ),
        }
    }
    for r in &p.data_at_risk {
        println!(
            "  data at risk, {}: {}",
            r.service,
            if r.zero_loss {
                "none (the old primary is fenced first and the new one catches up)".to_string()
            } else {
                format!(
                    "{} bytes / {} behind (RPO {})",
                    r.lag_bytes.map_or("unknown".into(), |b| b.to_string()),
                    r.lag_seconds
                        .map_or("unknown".into(), |s| format!("{s:.1}s")),
                    r.rpo_seconds.map_or("not set".into(), |s| format!("{s}s")),
                )
            }
        );
    }
    for (name, (old, new)) in &p.dns {
        println!("  dns {name}: {} → {}", old.join(", "), new.join(", "));
    }
    println!("  steps: {}", p.steps.join(" → "));
    for a in &p.actions {
        println!("  action {a}");
    }
    for b in &p.blocked {
        println!("  BLOCKED: {b}");
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(app: Ctx, action: FailoverAction) -> Result<ExitCode> {
    match action {
        FailoverAction::Status { output } => {
            let s = failover::status(&app).await?;
            match output {
                Output::Json => json(&s)?,
                Output::Table => {
                    println!(
                        "primary: {}   term: {}   this site: {}   mode: {}",
                        s.primary,
                        s.term,
                        s.site.as_deref().unwrap_or("(unset)"),
                        s.mode
                            .map_or("-".to_string(), |m| format!("{m:?}").to_lowercase())
                    );
                    for v in &s.services {
                        match &v.probe {
                            Some(p) => println!(
                                "  {:<10} {:<12} {:?}{} position {} lag {}",
                                v.site,
                                v.service,
                                p.role,
                                if p.fenced { " (fenced)" } else { "" },
                                p.position.map_or("-".into(), |p| p.to_string()),
                                p.lag_seconds.map_or("-".into(), |l| format!("{l:.1}s")),
                            ),
                            None => println!(
                                "  {:<10} {:<12} UNREACHABLE {}",
                                v.site,
                                v.service,
                                v.error.as_deref().unwrap_or("")
                            ),
                        }
                    }
                    print_vantage_points(&s);
                    if let Some(u) = &s.unfinished {
                        println!(
                            "  UNFINISHED failover to {} (term {}): run `lifeboat failover execute --to {}` to resume",
                            u.to_site, u.term, u.to_site
                        );
                    }
                }
            }
        }
        FailoverAction::Plan { to, output } => {
            let p = failover::plan(&app, &to).await?;
            match output {
                Output::Json => json(&p)?,
                Output::Table => print_plan(&p),
            }
        }
        FailoverAction::Execute {
            to,
            accept_data_loss,
            force,
            yes,
            output,
        } => {
            let opts = Options {
                accept_data_loss,
                force,
            };
            if !yes && std::io::stdin().is_terminal() && failover::unfinished(&app).await?.is_none()
            {
                let p = failover::plan(&app, &to).await?;
                print_plan(&p);
                print!("move the primary from {} to {}? type `yes`: ", p.from, p.to);
                std::io::stdout().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                if line.trim() != "yes" {
                    eprintln!("not confirmed: nothing changed");
                    return Ok(ExitCode::from(EXIT_NOT_CONFIRMED));
                }
            }
            let result = failover::execute(&app, &to, &opts).await;
            if let Ok(out) = &result {
                // The failover's report into the store, when `reports:` is configured.
                use crate::report::publish::{ReportKind, publish_after};
                publish_after(&app, ReportKind::Failover { term: out.term }).await;
            }
            match result {
                Ok(out) => match output {
                    Output::Json => json(&out)?,
                    Output::Table => {
                        println!("failover term {}: {} → {} done", out.term, out.from, out.to);
                        for s in &out.steps {
                            println!(
                                "  {:<8} {:>6} ms  {}{}",
                                s.step,
                                s.ms,
                                if s.resumed { "(resumed) " } else { "" },
                                s.detail
                            );
                        }
                        println!(
                            "  timeline: {}",
                            out.timeline
                                .iter()
                                .map(|(k, v)| format!("{k} {v} ms"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        for (site, said) in &out.controllers {
                            println!("  controller {site}: {said}");
                        }
                    }
                },
                Err(e) if e.kind() == crate::model::ErrorKind::Conflict => {
                    eprintln!("lifeboat: {e}");
                    return Ok(ExitCode::from(EXIT_REFUSED));
                }
                Err(e) => return Err(e.into()),
            }
        }
        FailoverAction::Rejoin { site } => match failover::rejoin(&app, &site).await {
            Ok(done) => {
                for d in done {
                    println!("{d}");
                }
            }
            Err(e) if e.kind() == crate::model::ErrorKind::Conflict => {
                eprintln!("lifeboat: {e}");
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
            Err(e) => return Err(e.into()),
        },
        FailoverAction::History { limit, output } => {
            let h = failover::history(&app, limit).await?;
            match output {
                Output::Json => json(&h)?,
                Output::Table => {
                    for f in &h {
                        println!(
                            "term {:<4} {} → {}  {}  {}  started {}{}",
                            f.term,
                            f.from_site,
                            f.to_site,
                            f.mode,
                            f.status,
                            f.started_at,
                            f.timeline
                                .as_ref()
                                .map_or(String::new(), |t| format!("  timeline {t}"))
                        );
                        for s in &f.steps {
                            println!(
                                "    {:<8} {:<8} {}",
                                s.step,
                                s.status,
                                s.detail.as_deref().unwrap_or("")
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
