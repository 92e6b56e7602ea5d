//! `lifeboat drill list` and `drill plan NAME`: the shipped chaos scenarios (`chaos/*.yaml`,
//! embedded) or a scenario file, validated with the `--var` values, and what a drill of it
//! would touch. (`drill run` is not built yet.)

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

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

pub fn run(action: DrillAction) -> Result<ExitCode> {
    match action {
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
            println!("scenario `{name}` ({:?} tier): {}", s.tier, s.description);
            println!("plan only: nothing is touched");
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
            if let Some(m) = s.abort.max_elapsed {
                println!("abort after {}", humantime::format_duration(m));
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
        }
    }
    Ok(ExitCode::SUCCESS)
}
