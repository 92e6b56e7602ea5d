//! `lifeboat dns show|set|delete`: what every authoritative nameserver answers for a record of
//! `dns.records`, and switching it (compare-and-swap, then proof from every nameserver).
//!
//! Exit codes of `set` and `delete`: 0 switched and proven; 3 the record does not hold what
//! `--expect-current` / `--expect-absent` says (nothing was changed); 4 the change was applied
//! but some nameservers still disagree at the timeout (named on stderr); 1 anything else.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::config::Config;
use crate::dns::{
    self, Change, Desired, DnsError, Expect, Provider, RRset, RecordConfig, RecordType,
    VerifyOptions,
};
use crate::model::ErrorKind;
use crate::report::Output;

/// Exit code when compare-and-swap lost.
pub const EXIT_CONFLICT: u8 = 3;
/// Exit code when the nameservers did not agree in time.
pub const EXIT_NOT_AGREED: u8 = 4;

#[derive(Subcommand, Debug)]
pub enum DnsAction {
    /// What each authoritative nameserver of a record answers now (values, AA flag, SOA
    /// serial, rcode), what the provider holds, and whether they agree.
    Show {
        /// The record's name, as in `dns.records` (trailing dot optional).
        name: String,
        /// A, AAAA, CNAME or LUA, when the name has records of several types.
        #[arg(long = "type", value_parser = parse_type)]
        rtype: Option<RecordType>,
        /// Ask as for a client in this subnet (EDNS Client Subnet), e.g. 203.0.113.0/24:
        /// what a GeoDNS record answers there.
        #[arg(long)]
        client_subnet: Option<dns::wire::Subnet>,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Replace a record's values, then wait until every nameserver answers them.
    /// Exit 3 if it does not hold --expect-current (nothing changed), 4 if nameservers still
    /// disagree at the timeout.
    Set {
        name: String,
        /// The new values (addresses for A/AAAA, one name for CNAME).
        #[arg(required = true)]
        values: Vec<String>,
        /// Change only if the record holds exactly these values now (compare-and-swap).
        #[arg(long, num_args = 1.., value_name = "VALUE")]
        expect_current: Vec<String>,
        /// Change only if the record does not exist now.
        #[arg(long, conflicts_with = "expect_current")]
        expect_absent: bool,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long = "type", value_parser = parse_type)]
        rtype: Option<RecordType>,
        /// How long the nameservers may take to agree (default: the record's verify_timeout).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Delete a record, then wait until every nameserver answers that it is gone.
    Delete {
        name: String,
        #[arg(long, num_args = 1.., value_name = "VALUE")]
        expect_current: Vec<String>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long = "type", value_parser = parse_type)]
        rtype: Option<RecordType>,
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

fn parse_type(s: &str) -> Result<RecordType, String> {
    match s.to_ascii_uppercase().as_str() {
        "A" => Ok(RecordType::A),
        "AAAA" => Ok(RecordType::Aaaa),
        "CNAME" => Ok(RecordType::Cname),
        "LUA" => Ok(RecordType::Lua),
        _ => Err(format!(
            "`{s}` is not a record type lifeboat moves; write A, AAAA, CNAME or LUA"
        )),
    }
}

/// The one record of the config called `name` (of `rtype`).
fn record<'a>(
    config: &'a Config,
    name: &str,
    rtype: Option<RecordType>,
) -> Result<&'a RecordConfig> {
    let found = config.dns.records_named(name, rtype);
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            let known: Vec<String> = config
                .dns
                .records
                .iter()
                .map(|r| format!("{} {}", dns::fqdn(&r.name), r.rtype))
                .collect();
            bail!(
                "no record `{}`{} in dns.records; add it (name, zone, type, provider, nameservers){}",
                dns::fqdn(name),
                rtype.map(|t| format!(" of type {t}")).unwrap_or_default(),
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" or use one of: {}", known.join(", "))
                }
            )
        }
        many => bail!(
            "`{}` has records of several types ({}); pick one with --type",
            dns::fqdn(name),
            many.iter()
                .map(|r| r.rtype.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn provider(config: &Config, rec: &RecordConfig) -> Result<std::sync::Arc<dyn Provider>> {
    let p = config
        .dns
        .providers
        .get(&rec.provider)
        .with_context(|| format!("no dns provider `{}`", rec.provider))?;
    Ok(dns::config::build(&rec.provider, p)?)
}

pub async fn run(config: &Config, action: DnsAction) -> Result<ExitCode> {
    match action {
        DnsAction::Show {
            name,
            rtype,
            client_subnet,
            output,
        } => show(config, &name, rtype, client_subnet, output).await,
        DnsAction::Set {
            name,
            values,
            expect_current,
            expect_absent,
            dry_run,
            rtype,
            timeout,
            output,
        } => {
            let rec = record(config, &name, rtype)?;
            let desired = Desired::Present(RRset::new(rec.rtype, rec.ttl, &values)?);
            let expect = if expect_absent {
                Expect::Absent
            } else if expect_current.is_empty() {
                Expect::Anything
            } else {
                Expect::values(rec.rtype, &expect_current)?
            };
            switch(config, rec, expect, desired, dry_run, timeout, output).await
        }
        DnsAction::Delete {
            name,
            expect_current,
            dry_run,
            rtype,
            timeout,
            output,
        } => {
            let rec = record(config, &name, rtype)?;
            let expect = if expect_current.is_empty() {
                Expect::Anything
            } else {
                Expect::values(rec.rtype, &expect_current)?
            };
            switch(
                config,
                rec,
                expect,
                Desired::Absent,
                dry_run,
                timeout,
                output,
            )
            .await
        }
    }
}

async fn show(
    config: &Config,
    name: &str,
    rtype: Option<RecordType>,
    subnet: Option<dns::wire::Subnet>,
    output: Output,
) -> Result<ExitCode> {
    let rec = record(config, name, rtype)?;
    let target = rec.target()?;
    let provider = provider(config, rec)?;
    let nameservers = rec.nameserver_addrs(&*provider).await?;
    // What the provider holds first: for a LUA record it says which type the servers answer.
    let held = provider.read(&target).await;
    let desired = match &held {
        Ok(Some(r)) => Some(Desired::Present(r.clone())),
        _ => None,
    };
    let answers = dns::verify::observe(
        &nameservers,
        &target,
        desired.as_ref(),
        Duration::from_secs(2),
        subnet,
    )
    .await;
    let agree = !answers.is_empty()
        && answers
            .iter()
            .all(|a| a.error.is_none() && a.authoritative && a.rrset == answers[0].rrset);
    match output {
        Output::Json => {
            let (held, held_error) = match &held {
                Ok(h) => (serde_json::to_value(h)?, serde_json::Value::Null),
                Err(e) => (
                    serde_json::Value::Null,
                    serde_json::Value::String(e.to_string()),
                ),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "name": target.name,
                    "zone": target.zone,
                    "type": target.rtype,
                    "provider": provider.describe(),
                    "provider_holds": held,
                    "provider_error": held_error,
                    "client_subnet": subnet,
                    "nameservers": answers,
                    "agree": agree,
                }))?
            );
        }
        Output::Table => {
            println!("{} {} (zone {})", target.name, target.rtype, target.zone);
            match &held {
                Ok(Some(r)) => println!("  provider {}: {r}", provider.describe()),
                Ok(None) => println!("  provider {}: no such record", provider.describe()),
                Err(e) => println!("  provider {}: cannot read: {e}", provider.describe()),
            }
            for a in &answers {
                println!("  {:<22} {a}", a.nameserver.to_string());
            }
            println!(
                "  {}",
                if agree {
                    "every nameserver gives the same authoritative answer"
                } else {
                    "the nameservers DISAGREE (or some did not answer authoritatively)"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn switch(
    config: &Config,
    rec: &RecordConfig,
    expect: Expect,
    desired: Desired,
    dry_run: bool,
    timeout: Option<Duration>,
    output: Output,
) -> Result<ExitCode> {
    let target = rec.target()?;
    let provider = provider(config, rec)?;
    let change = Change {
        target,
        expect,
        desired,
    };
    let result = if dry_run {
        dns::plan(&*provider, change)
            .await
            .map(|plan| match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "dry_run": true,
                        "provider": provider.describe(),
                        "plan": plan,
                    }))
                    .unwrap_or_default()
                ),
                Output::Table => {
                    let t = &plan.change.target;
                    println!(
                        "dry run: {} {} holds {} at {}; would {:?} it to {}; nothing changed",
                        t.name,
                        t.rtype,
                        plan.current
                            .as_ref()
                            .map_or_else(|| "nothing".to_string(), |c| c.to_string()),
                        provider.describe(),
                        plan.action,
                        plan.change.desired
                    );
                }
            })
    } else {
        let options = VerifyOptions::new(
            rec.nameserver_addrs(&*provider).await?,
            timeout.unwrap_or_else(|| rec.verify_timeout()),
        );
        dns::switch(&*provider, change, &options)
            .await
            .map(|done| match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "provider": provider.describe(),
                        "plan": done.plan,
                        "applied": done.applied,
                        "timings": done.timings,
                        "agreement": done.agreement,
                    }))
                    .unwrap_or_default()
                ),
                Output::Table => print_switched(&*provider, &done),
            })
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => failed(e, output),
    }
}

fn print_switched(provider: &dyn Provider, done: &dns::Switched) {
    let t = &done.plan.change.target;
    let from = done
        .plan
        .current
        .as_ref()
        .map_or_else(|| "nothing".to_string(), |c| c.to_string());
    println!(
        "{} {}: {from} → {} at {}{}",
        t.name,
        t.rtype,
        done.plan.change.desired,
        provider.describe(),
        done.applied
            .serial
            .map(|s| format!(", serial {s}"))
            .unwrap_or_default()
    );
    for n in &done.agreement.nameservers {
        println!(
            "  {:<22} {}  agreed after {} ms",
            n.answer.nameserver.to_string(),
            n.answer,
            n.agreed_after_ms
        );
    }
    println!(
        "time to agreement: {} ms over {} nameserver(s) in {} round(s) (plan {} ms, apply {} ms, total {} ms)",
        done.timings.agreement_ms,
        done.agreement.nameservers.len(),
        done.agreement.rounds,
        done.timings.plan_ms,
        done.timings.apply_ms,
        done.timings.total_ms
    );
}

/// Conflicts exit 3, disagreement at the timeout 4, each with the message on stderr (and a
/// JSON error on stdout with `--output json`); anything else is returned as an error.
fn failed(e: DnsError, output: Output) -> Result<ExitCode> {
    let code = match &e {
        DnsError::NotAgreed { .. } => EXIT_NOT_AGREED,
        _ if e.kind() == ErrorKind::Conflict => EXIT_CONFLICT,
        _ => 1,
    };
    if output == Output::Json {
        let disagreeing = match &e {
            DnsError::NotAgreed { disagreeing, .. } => disagreeing
                .iter()
                .map(|d| serde_json::json!({"nameserver": d.nameserver, "answered": d.answered}))
                .collect(),
            _ => Vec::new(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "error": e.to_string(),
                "kind": e.kind(),
                "disagreeing": disagreeing,
            }))?
        );
    }
    if code == 1 {
        return Err(e.into());
    }
    eprintln!("error: {e}");
    Ok(ExitCode::from(code))
}
