//! `lifeboat runbook ...`: the runbooks shipped in the binary (`runbooks/*.md`, embedded by
//! `build.rs` so they exist at the DR site) or a runbook file given by path; listing,
//! showing, linting (every step parsed by this very command line grammar), running step by
//! step, resuming, and the timeline of a run.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use super::{Cli, ConfigArgs, Output};
use crate::ops::runbook::run::{Confirm, Operator, Outcome, Runner, StepEnd};
use crate::ops::runbook::{Problem, Runbook, Step, parse_var};

/// The shipped runbooks: (name, Markdown), sorted by name.
pub const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/runbooks.rs"));

fn var_arg(s: &str) -> Result<(String, String), String> {
    parse_var(s)
}

#[derive(Subcommand, Debug)]
pub enum RunbookAction {
    /// The runbooks shipped in this binary.
    List,
    /// Print a runbook (a shipped name, or a path to a Markdown file).
    Show { name: String },
    /// Check that every step of a runbook (default: every shipped one) is a valid lifeboat
    /// command line and that step ids are unique.
    Lint { name: Option<String> },
    /// Run a runbook step by step, each step's start and end recorded in the catalog.
    Run {
        /// A shipped runbook's name, or a path to a Markdown file.
        name: String,
        /// Print the steps as they would run (variables substituted); run and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// A variable the steps use as `${NAME}` (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = var_arg)]
        vars: Vec<(String, String)>,
        /// Run `confirm=true` steps without asking (required when not on a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Continue a stopped, failed or interrupted run at its first step not done.
    Resume {
        run_id: String,
        /// Variables to set again or override (secret values are never stored: pass them again).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = var_arg)]
        vars: Vec<(String, String)>,
        #[arg(long)]
        yes: bool,
        /// Resume a run still marked running by a process on another host (that host is gone).
        #[arg(long)]
        force: bool,
    },
    /// The timeline of a run (who ran which step when, and how it ended); without RUN_ID the
    /// recent runs.
    Log {
        run_id: Option<String>,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// The runbook `name`: a path when it holds a `/` or ends with `.md`, else a shipped one.
pub fn find(name: &str) -> Result<Runbook> {
    if name.contains('/') || name.ends_with(".md") {
        let text = std::fs::read_to_string(name)
            .with_context(|| format!("cannot read runbook file {name}"))?;
        let stem = std::path::Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(name);
        return Ok(Runbook::parse(stem, &text)?);
    }
    match SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Ok(Runbook::parse(n, text)?),
        None => anyhow::bail!(
            "no runbook named `{name}`; shipped: {} (or give a path to a Markdown file)",
            SHIPPED
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Commands whose step must be marked `confirm=true`: they change a service, a store, the
/// catalog, keys or DNS.
fn changes_things(argv: &[String]) -> bool {
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["restore", ..] | ["keys", "generate", ..] | ["catalog", "rebuild", ..] => true,
        ["prune", rest @ ..] => !rest.contains(&"--dry-run"),
        ["dns", "set", rest @ ..] => !rest.contains(&"--dry-run"),
        _ => false,
    }
}

/// Every problem of `rb` beyond parsing: each step must parse as a lifeboat command line
/// (variables stand in as their names), must not set the global flags the runner passes
/// itself, must not run a runbook, and must ask before changing things.
pub fn lint(rb: &Runbook) -> Vec<Problem> {
    let placeholders: BTreeMap<String, String> =
        rb.vars().into_iter().map(|v| (v.clone(), v)).collect();
    let mut problems = Vec::new();
    for step in &rb.steps {
        let mut problem = |message: String| {
            problems.push(Problem {
                line: step.line,
                message: format!("step `{}`: {message}", step.id),
            })
        };
        let argv = match step.argv(&placeholders) {
            Ok(a) => a,
            Err(e) => {
                problem(e);
                continue;
            }
        };
        if let Some(flag) = argv.iter().find(|a| {
            ["-c", "--config", "--catalog"].contains(&a.as_str())
                || a.starts_with("--config=")
                || a.starts_with("--catalog=")
        }) {
            problem(format!(
                "sets `{flag}`: a runbook's steps run with the --config/--catalog of `runbook run`; remove it"
            ));
            continue;
        }
        if argv.first().is_some_and(|a| a == "runbook") {
            problem("runs a runbook command; runbooks do not nest".into());
            continue;
        }
        let full = std::iter::once("lifeboat".to_string()).chain(argv.iter().cloned());
        match Cli::try_parse_from(full) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
            {
                problem("only prints help or the version".into())
            }
            Err(e) => {
                let text = e.to_string();
                let first = text
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid")
                    .trim_start_matches("error: ")
                    .to_string();
                problem(format!("not a valid lifeboat command line: {first}"));
            }
        }
        if changes_things(&argv) && !step.confirm {
            problem("changes a service, store, key or the catalog: mark it confirm=true".into());
        }
    }
    problems
}

/// A command line as a person would type it (words quoted when needed).
fn quoted(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn step_header(index: usize, total: usize, step: &Step) -> String {
    let mut attrs = Vec::new();
    if step.confirm {
        attrs.push("asks first".to_string());
    }
    attrs.push(format!(
        "timeout {}",
        humantime::format_duration(step.timeout)
    ));
    format!(
        "[{}/{}] {} ({})",
        index + 1,
        total,
        step.id,
        attrs.join(", ")
    )
}

/// The person at the terminal (or nobody, when stdin is not one).
struct Terminal {
    yes: bool,
}

impl Operator for Terminal {
    fn begun(&mut self, run_id: &str) {
        println!("run {run_id} (if it stops: `lifeboat runbook resume {run_id}`)");
    }
    fn already_done(&mut self, index: usize, total: usize, step: &Step) {
        println!(
            "{}: done in an earlier attempt, skipped",
            step_header(index, total, step)
        );
    }
    fn starting(&mut self, index: usize, total: usize, step: &Step, shown_argv: &[String]) {
        println!("\n{}", step_header(index, total, step));
        println!("  $ lifeboat {}", quoted(shown_argv));
        let _ = std::io::stdout().flush();
    }
    fn confirm(&mut self, step: &Step) -> Confirm {
        if self.yes {
            return Confirm::Yes;
        }
        if !std::io::stdin().is_terminal() {
            return Confirm::NoTerminal;
        }
        tokio::task::block_in_place(|| {
            eprint!("  run step `{}`? [y/N] ", step.id);
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            match std::io::stdin().lock().read_line(&mut answer) {
                Ok(_) if matches!(answer.trim(), "y" | "Y" | "yes" | "YES") => Confirm::Yes,
                _ => Confirm::Declined,
            }
        })
    }
    fn finished(&mut self, step: &Step, end: &StepEnd, took: Duration) {
        let secs = took.as_secs_f64();
        match end {
            StepEnd::Done => println!("  ✓ {} done in {secs:.1}s", step.id),
            StepEnd::Failed { exit_code, error } => println!(
                "  ✗ {} failed after {secs:.1}s (exit {}): {error}",
                step.id,
                exit_code.map_or("-".into(), |c| c.to_string())
            ),
            StepEnd::TimedOut { after } => println!(
                "  ✗ {} timed out after {} and was stopped",
                step.id,
                humantime::format_duration(*after)
            ),
            StepEnd::Interrupted => println!("  ✗ {} interrupted after {secs:.1}s", step.id),
        }
    }
}

/// How a run ended, for the operator; the exit code.
fn report(run_id: &str, outcome: &Outcome) -> ExitCode {
    match outcome {
        Outcome::Complete => {
            println!("\nrunbook run {run_id} complete");
            ExitCode::SUCCESS
        }
        Outcome::Failed { step, error } => {
            eprintln!(
                "error: step `{step}` failed: {error}\n\
                 The run stopped there; the steps before it are done and will not run again. \
                 Fix the cause, then `lifeboat runbook resume {run_id}` (it starts at `{step}`); \
                 the timeline: `lifeboat runbook log {run_id}`."
            );
            ExitCode::FAILURE
        }
        Outcome::Stopped { step, why } => {
            eprintln!(
                "stopped before step `{step}`: {why}.\n\
                 Continue with `lifeboat runbook resume {run_id}` (add --yes to run steps that ask first)."
            );
            ExitCode::FAILURE
        }
    }
}

fn vars_map(vars: Vec<(String, String)>) -> BTreeMap<String, String> {
    vars.into_iter().collect()
}

async fn runner(
    args: &ConfigArgs,
    log_level: &str,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<Runner> {
    let config = super::load(args)?;
    let catalog = crate::catalog::Catalog::open(&config.catalog).await?;
    let exe = std::env::current_exe().context("cannot find this lifeboat executable")?;
    let mut global_args: Vec<OsString> = vec![
        "--config".into(),
        args.path.clone().into_os_string(),
        "--log-format".into(),
        "human".into(),
        "--log-level".into(),
        log_level.into(),
    ];
    if args.allow_unsigned {
        global_args.push("--allow-unsigned".into());
    }
    let env = args
        .catalog
        .iter()
        .map(|c| (OsString::from("LIFEBOAT_CATALOG"), OsString::from(c)))
        .collect();
    let host = crate::model::host::hostname();
    Ok(Runner {
        catalog,
        clock: Arc::new(crate::model::SystemClock),
        exe,
        global_args,
        env,
        who: crate::ops::runbook::run::who(&host),
        host,
        cancel,
        stdout_to_stderr: false,
    })
}

pub async fn run(args: &ConfigArgs, log_level: &str, action: RunbookAction) -> Result<ExitCode> {
    match action {
        RunbookAction::List => {
            println!("{:<28} {:>5}  TITLE", "NAME", "STEPS");
            for (name, text) in SHIPPED {
                match Runbook::parse(name, text) {
                    Ok(rb) => println!("{name:<28} {:>5}  {}", rb.steps.len(), rb.title),
                    Err(_) => println!(
                        "{name:<28} {:>5}  (invalid: see `lifeboat runbook lint {name}`)",
                        "-"
                    ),
                }
            }
        }
        RunbookAction::Show { name } => {
            let rb = find(&name)?;
            print!("{}", rb.text);
            let vars = rb.vars();
            eprintln!(
                "\n-- {} step(s){}",
                rb.steps.len(),
                if vars.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; variables: {}",
                        vars.iter()
                            .map(|v| format!("--var {v}=..."))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }
            );
        }
        RunbookAction::Lint { name } => {
            let names: Vec<String> = match name {
                Some(n) => vec![n],
                None => SHIPPED.iter().map(|(n, _)| n.to_string()).collect(),
            };
            let mut bad = 0;
            for n in &names {
                let problems = match find(n) {
                    Ok(rb) => lint(&rb),
                    Err(e) => match e.downcast_ref::<crate::ops::runbook::RunbookError>() {
                        Some(crate::ops::runbook::RunbookError::Invalid { problems, .. }) => {
                            problems.clone()
                        }
                        _ => return Err(e),
                    },
                };
                if problems.is_empty() {
                    println!("ok    {n}");
                } else {
                    bad += 1;
                    println!("FAIL  {n}");
                    for p in &problems {
                        println!("      {p}");
                    }
                }
            }
            if bad > 0 {
                anyhow::bail!("{bad} runbook(s) have problems (listed above)");
            }
        }
        RunbookAction::Run {
            name,
            dry_run,
            vars,
            yes,
        } => {
            let rb = find(&name)?;
            let problems = lint(&rb);
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("  {p}");
                }
                anyhow::bail!(
                    "runbook `{}` does not lint (problems above); nothing was run",
                    rb.name
                );
            }
            let vars = vars_map(vars);
            if dry_run {
                return dry_run_print(&rb, &vars);
            }
            rb.check_vars(&vars)?;
            let runner = runner(args, log_level, super::shutdown_token()).await?;
            println!("runbook `{}`: {}", rb.name, rb.title);
            let mut op = Terminal { yes };
            let (id, outcome) = runner.start(&rb, &vars, &mut op).await?;
            return Ok(report(&id, &outcome));
        }
        RunbookAction::Resume {
            run_id,
            vars,
            yes,
            force,
        } => {
            let runner = runner(args, log_level, super::shutdown_token()).await?;
            let mut op = Terminal { yes };
            let (rb, outcome) = runner
                .resume(&run_id, &vars_map(vars), force, &mut op)
                .await?;
            println!("(resumed runbook `{}`)", rb.name);
            return Ok(report(&run_id, &outcome));
        }
        RunbookAction::Log { run_id, output } => {
            let config = super::load(args)?;
            let catalog = crate::catalog::Catalog::open(&config.catalog).await?;
            match run_id {
                None => {
                    let runs = catalog.runbook_runs(50).await?;
                    if output == Output::Json {
                        println!("{}", serde_json::to_string_pretty(&runs)?);
                    } else {
                        println!(
                            "{:<32} {:<24} {:<9} {:<24} WHO",
                            "RUN", "RUNBOOK", "STATUS", "STARTED"
                        );
                        for r in &runs {
                            println!(
                                "{:<32} {:<24} {:<9} {:<24} {}",
                                r.id,
                                r.runbook,
                                r.status.as_str(),
                                r.started_at,
                                r.who
                            );
                        }
                    }
                }
                Some(id) => {
                    let run = catalog.runbook_run(&id).await?.with_context(|| {
                        format!("no runbook run {id}; `lifeboat runbook log` lists them")
                    })?;
                    let steps = catalog.runbook_steps(&id).await?;
                    if output == Output::Json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &serde_json::json!({ "run": run, "steps": steps })
                            )?
                        );
                    } else {
                        println!(
                            "run {} of runbook `{}` by {} ({}), started {}{}: {}",
                            run.id,
                            run.runbook,
                            run.who,
                            run.host,
                            run.started_at,
                            run.finished_at
                                .as_deref()
                                .map(|f| format!(", finished {f}"))
                                .unwrap_or_default(),
                            run.status.as_str()
                        );
                        if let Some(e) = &run.error {
                            println!("  {e}");
                        }
                        println!(
                            "{:<24} {:>3} {:<24} {:<24} {:<11} {:<20} DETAIL",
                            "STEP", "TRY", "STARTED", "FINISHED", "OUTCOME", "WHO"
                        );
                        for s in &steps {
                            println!(
                                "{:<24} {:>3} {:<24} {:<24} {:<11} {:<20} {}",
                                s.step,
                                s.attempt,
                                s.started_at,
                                s.finished_at.as_deref().unwrap_or("-"),
                                s.status.as_str(),
                                s.who,
                                s.error.as_deref().unwrap_or("")
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `runbook run --dry-run`: the steps as they would run; nothing opened, run or recorded.
fn dry_run_print(rb: &Runbook, vars: &BTreeMap<String, String>) -> Result<ExitCode> {
    println!(
        "runbook `{}`: {} (dry run: nothing is run or recorded)",
        rb.name, rb.title
    );
    let total = rb.steps.len();
    for (i, step) in rb.steps.iter().enumerate() {
        println!("\n{}", step_header(i, total, step));
        match step.argv(vars) {
            Ok(argv) => {
                let shown: Vec<String> = argv
                    .iter()
                    .map(String::as_str)
                    .map(crate::model::redact::url)
                    .collect();
                println!("  $ lifeboat {}", quoted(&shown));
            }
            Err(e) => println!("  ! {e}"),
        }
    }
    rb.check_vars(vars)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_runbook_lints() {
        assert!(!SHIPPED.is_empty(), "no runbook embedded");
        for (name, text) in SHIPPED {
            let rb = Runbook::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert!(!rb.steps.is_empty(), "runbook {name} has no step");
            let problems = lint(&rb);
            assert!(problems.is_empty(), "runbook {name}: {problems:?}");
        }
    }

    #[test]
    fn lint_catches_bad_steps() {
        let text = "```lifeboat {#a}\nrestor x\n```\n```lifeboat {#b}\nrestore ${S} --target ${T}\n```\n\
                    ```lifeboat {#c}\nstatus --config /x\n```\n```lifeboat {#d}\nrunbook list\n```\n\
                    ```lifeboat {#e confirm=true}\nrestore ${S} --target ${T}\n```\n\
                    ```lifeboat {#f}\nprune --dry-run\n```\n";
        let rb = Runbook::parse("t", text).expect("parses");
        let problems = lint(&rb);
        let steps: Vec<&str> = problems
            .iter()
            .map(|p| p.message.split('`').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(steps, ["a", "b", "c", "d"], "{problems:?}");
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(
            quoted(&["restore".into(), "a b".into(), "it's".into(), String::new()]),
            r"restore 'a b' 'it'\''s' ''"
        );
    }
}
