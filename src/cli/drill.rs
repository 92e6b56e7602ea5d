//! `lifeboat drill list`, `drill plan NAME`, `drill run NAME`, `drill history`: the shipped
//! chaos scenarios (`chaos/*.yaml`, embedded) or a scenario file, validated with the `--var`
//! values; what a drill of it would touch; running it (see [`crate::ops::drill::run`]); past
//! drills. `drill watchdog ID` (hidden) is the detached process that reverts a fault whose
//! TTL passed or whose drill died.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{ConfigArgs, Output};

use crate::ops::drill::SHIPPED;
use crate::ops::drill::scenario::{Scenario, TargetKind};

#[derive(Subcommand, Debug)]
pub enum DrillAction {
    /// The scenarios shipped in this binary, with the variables each needs.
    List,
    /// Validate a scenario (a shipped name or a path to a YAML file) and print what a drill
    /// of it would touch, for how long, and what it is judged against. Touches nothing.
    Plan {
        name: String,
        /// A value for `${NAME}` in the scenario (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::ops::runbook::parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Run a drill: steady-state probes, each fault applied and rolled back while canary
    /// writes measure the actual RTO/RPO, probes again, the verdict. Exit 0 on pass or
    /// at-risk, 2 on breached, inconclusive, aborted or failed, 1 on errors.
    Run {
        /// A shipped scenario's name, or a path to a YAML file.
        #[arg(required_unless_present = "file")]
        name: Option<String>,
        /// A scenario file (instead of NAME).
        #[arg(long, conflicts_with = "name")]
        file: Option<PathBuf>,
        /// Print what would be touched; touch and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply the faults without asking (required when not on a terminal).
        #[arg(long)]
        yes: bool,
        /// A value for `${NAME}` in the scenario (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::ops::runbook::parse_var)]
        vars: Vec<(String, String)>,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Past drills, oldest first, with their verdict and measured RTO/RPO (drills left
    /// running by a process that died are reverted and recorded aborted first).
    History {
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The detached watchdog of a drill (started by `drill run`).
    #[command(hide = true)]
    Watchdog { run_id: String },
}

/// The `${NAME}`s of a scenario text.
fn vars_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else { break };
        if !out.iter().any(|v| v == &after[..j]) {
            out.push(after[..j].to_string());
        }
        rest = &after[j + 1..];
    }
    out
}

fn text_of_file(name: &str) -> Result<(String, String)> {
    let text = std::fs::read_to_string(name)
        .with_context(|| format!("cannot read scenario file {name}"))?;
    let stem = std::path::Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
        .to_string();
    Ok((stem, text))
}

fn text_of(name: &str) -> Result<(String, String)> {
    if name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml") {
        let text = std::fs::read_to_string(name)
            .with_context(|| format!("cannot read scenario file {name}"))?;
        let stem = std::path::Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(name)
            .to_string();
        return Ok((stem, text));
    }
    match SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((n, t)) => Ok((n.to_string(), t.to_string())),
        None => anyhow::bail!(
            "no scenario named `{name}`; shipped: {} (or give a path to a YAML file)",
            SHIPPED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn print_plan(name: &str, s: &Scenario) -> Result<()> {
    println!("scenario `{name}` ({:?} tier): {}", s.tier, s.description);
    for f in &s.faults {
        let t = s
            .targets
            .iter()
            .find(|t| t.name == f.target)
            .context("validated scenario lost a target")?;
        let what = match t.kind().map_err(anyhow::Error::msg)? {
            TargetKind::ProcessGroup => format!(
                "the process group of the pid in {}",
                t.process_group.as_ref().map_or("", |p| p.pidfile.as_str())
            ),
            TargetKind::Proxy => format!(
                "connections through {} to {}",
                t.proxy.as_ref().map_or("", |p| p.listen.as_str()),
                t.proxy.as_ref().map_or("", |p| p.upstream.as_str())
            ),
            TargetKind::Store => format!(
                "lifeboat's view of store `{}` (the objects are not touched)",
                t.store.as_deref().unwrap_or("")
            ),
            TargetKind::AllSources => {
                "every configured source, restored into fresh targets".to_string()
            }
            TargetKind::Kubernetes => {
                let k = t
                    .kubernetes
                    .as_ref()
                    .context("validated target lost kubernetes")?;
                format!(
                    "Kubernetes objects labelled lifeboat.dev/chaos=allowed{} in namespace {} (pods `{}`, nodes `{}`)",
                    if k.names.is_empty() {
                        String::new()
                    } else {
                        format!(" or named {}", k.names.join(", "))
                    },
                    k.namespace,
                    k.selector,
                    k.node_selector
                )
            }
        };
        println!(
            "fault {}: {:?} {} for {}, rolled back within {} at most",
            f.name,
            f.action,
            what,
            humantime::format_duration(f.duration),
            humantime::format_duration(f.ttl())
        );
    }
    for p in &s.probes {
        println!(
            "probe {}: {}{}",
            p.name,
            if p.lifeboat.is_empty() {
                format!("tcp {}", p.tcp.as_deref().unwrap_or(""))
            } else {
                format!("lifeboat {}", p.lifeboat.join(" "))
            },
            if p.blast_radius {
                " (checked during the fault: failing aborts)"
            } else {
                " (before and after)"
            }
        );
    }
    if let Some(c) = &s.canary {
        println!(
            "canary: a write every {} to {} (timeout {})",
            humantime::format_duration(c.interval),
            crate::model::redact::url(&c.url),
            humantime::format_duration(c.timeout)
        );
    }
    if let Some(f) = &s.failover {
        println!(
            "failover: to site {} by {}{}, done within {}; the old primary is fenced when it is back (`lifeboat failover rejoin` is the way back)",
            f.to,
            match f.by {
                crate::ops::drill::scenario::FailoverBy::Auto =>
                    "the controllers (failover.mode automatic), else the drill running `failover execute --to ... --force`",
                crate::ops::drill::scenario::FailoverBy::Controller => "the daemons' controllers",
                crate::ops::drill::scenario::FailoverBy::Drill =>
                    "the drill running `failover execute --to ... --force`",
            },
            if f.accept_data_loss {
                " accepting data loss (the canary measures it)"
            } else {
                ""
            },
            humantime::format_duration(f.timeout())
        );
    }
    if let Some(r) = &s.runbook {
        println!(
            "runbook: {} run while the fault is active, as `runbook run --yes`{} (a failing step fails the drill)",
            r.name,
            if r.vars.is_empty() {
                String::new()
            } else {
                format!(
                    " with {}",
                    r.vars
                        .iter()
                        .map(|(k, v)| format!(
                            "{k}={}",
                            crate::model::redact::scrub_registered(&crate::model::redact::url(v))
                        ))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        );
    }
    if let Some(m) = s.abort.max_elapsed {
        println!("abort after {}", humantime::format_duration(m));
    }
    if let Some(p) = &s.abort.prometheus {
        println!(
            "abort while an alert fires at {}",
            crate::model::redact::url(p)
        );
    }
    let show = |d: Option<std::time::Duration>| {
        d.map_or("-".to_string(), |d| {
            humantime::format_duration(d).to_string()
        })
    };
    println!(
        "expected: RPO {}, RTO {}",
        show(s.expect.rpo),
        show(s.expect.rto)
    );
    Ok(())
}

fn launcher(args: &ConfigArgs) -> Result<crate::ops::drill::run::Launcher> {
    let exe = std::env::current_exe().context("cannot find this lifeboat executable")?;
    let mut global_args: Vec<OsString> = vec![
        "--config".into(),
        args.path.clone().into_os_string(),
        "--log-format".into(),
        "json".into(),
    ];
    if args.allow_unsigned {
        global_args.push("--allow-unsigned".into());
    }
    let env = args
        .catalog
        .iter()
        .map(|c| (OsString::from("LIFEBOAT_CATALOG"), OsString::from(c)))
        .collect();
    Ok(crate::ops::drill::run::Launcher {
        exe,
        global_args,
        env,
    })
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.3}s"))
}

fn print_journal(j: &crate::model::journal::DrillJournal) {
    println!(
        "drill {} ({}): {}",
        j.id,
        j.scenario,
        j.verdict.to_uppercase()
    );
    for r in &j.reasons {
        println!("  {r}");
    }
    for s in &j.services {
        println!(
            "  {}: RTO {} (objective {}), RPO {} (objective {})",
            s.service,
            secs(s.rto_seconds),
            secs(s.rto_objective_seconds),
            secs(s.rpo_seconds),
            secs(s.rpo_objective_seconds)
        );
    }
    if let Some(c) = &j.canary {
        println!(
            "  canary: {} sent, {} acknowledged, {} lost, {} indeterminate, resolution {} ms",
            c.sent, c.acknowledged, c.lost, c.indeterminate, c.resolution_ms
        );
    }
    for f in &j.faults {
        println!(
            "  fault {} ({}): {}; {}",
            f.name,
            f.action,
            if f.targets.is_empty() {
                "matched nothing".to_string()
            } else {
                f.targets.join(", ")
            },
            match (f.applied_at, f.reverted) {
                (None, _) => "not applied",
                (Some(_), true) => "applied and reverted",
                (Some(_), false) => "applied, NOT confirmed reverted",
            }
        );
    }
    for f in j.findings.iter().filter(|f| f.severity != "info") {
        println!("  {}: {}", f.severity, f.text);
    }
}

fn exit_for(verdict: &str) -> ExitCode {
    match verdict {
        "pass" | "at-risk" => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    }
}

fn confirm(name: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "drill `{name}` applies real faults: pass --yes to run it without a terminal (or --dry-run to see what it would touch)"
        );
    }
    eprint!("Apply the faults of drill `{name}` now? [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub async fn run(args: &ConfigArgs, action: DrillAction) -> Result<ExitCode> {
    match action {
        DrillAction::Run {
            name,
            file,
            dry_run,
            yes,
            vars,
            output,
        } => {
            let given = match (&file, &name) {
                (Some(f), _) => f.display().to_string(),
                (None, Some(n)) => n.clone(),
                (None, None) => anyhow::bail!("give a scenario NAME or --file SCENARIO.yaml"),
            };
            let (name, text) = if file.is_some() {
                text_of_file(&given)?
            } else {
                text_of(&given)?
            };
            let vars: BTreeMap<String, String> = vars.into_iter().collect();
            let s = Scenario::load(&name, &text, &vars)?;
            if dry_run {
                println!("dry run: nothing is touched or recorded");
                print_plan(&name, &s)?;
                return Ok(ExitCode::SUCCESS);
            }
            if !yes && !confirm(&name)? {
                eprintln!("not confirmed: nothing was touched");
                return Ok(ExitCode::from(2));
            }
            let mut app = super::open(args).await?;
            app.cancel = super::shutdown_token();
            let host = crate::model::host::hostname();
            let opts = crate::ops::drill::run::Options {
                launcher: launcher(args)?,
                who: crate::ops::runbook::run::who(&host),
                steady: std::time::Duration::from_secs(1),
            };
            let j = crate::ops::drill::run::run(&app, &name, &s, &opts).await?;
            if !j.dry_run {
                let kind = crate::report::publish::ReportKind::Drill(Box::new(j.clone()));
                crate::report::publish::publish_after(&app, kind).await;
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&j)?),
                Output::Table => print_journal(&j),
            }
            return Ok(exit_for(&j.verdict));
        }
        DrillAction::History { output } => {
            let app = super::open(args).await?;
            crate::ops::drill::run::sweep(&app).await?;
            let all = app
                .catalog
                .drill_journals(chrono::DateTime::UNIX_EPOCH)
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&all)?),
                Output::Table => {
                    println!(
                        "{:<36} {:<24} {:<12} {:<24} {:>10} {:>10}",
                        "ID", "SCENARIO", "VERDICT", "STARTED", "RTO", "RPO"
                    );
                    for j in &all {
                        let s = j.services.first();
                        println!(
                            "{:<36} {:<24} {:<12} {:<24} {:>10} {:>10}",
                            j.id,
                            j.scenario,
                            j.verdict,
                            crate::catalog::ts(j.started_at),
                            secs(s.and_then(|s| s.rto_seconds)),
                            secs(s.and_then(|s| s.rpo_seconds))
                        );
                    }
                }
            }
        }
        DrillAction::Watchdog { run_id } => {
            let app = super::open(args).await?;
            crate::ops::drill::run::watchdog(&app, &run_id).await?;
        }
        DrillAction::List => {
            println!("{:<26} {:<9} DESCRIPTION", "NAME", "TIER");
            for (name, text) in SHIPPED {
                let v: serde_yaml::Value = serde_yaml::from_str(text)
                    .with_context(|| format!("shipped scenario {name} is not YAML"))?;
                let tier = v["tier"].as_str().unwrap_or("?");
                let description = v["description"].as_str().unwrap_or("");
                let vars = vars_of(text);
                println!("{name:<26} {tier:<9} {description}");
                if !vars.is_empty() {
                    println!(
                        "{:<36} needs {}",
                        "",
                        vars.iter()
                            .map(|v| format!("--var {v}=..."))
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                }
            }
        }
        DrillAction::Plan { name, vars } => {
            let (name, text) = text_of(&name)?;
            let vars: BTreeMap<String, String> = vars.into_iter().collect();
            let s = Scenario::load(&name, &text, &vars)?;
            println!("plan only: nothing is touched");
            print_plan(&name, &s)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
