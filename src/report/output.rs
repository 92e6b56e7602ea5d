//! What the CLI prints on stdout: tables for people, JSON for scripts.

use std::path::Path;

use crate::catalog::{RunSummary, SnapshotRow};
use crate::config::Config;
use crate::model::snapshot::Manifest;
use crate::ops::prune::{Outcome, SourcePlan};
use crate::pipeline::RestoreStats;
use crate::policy::retention::Action;

use super::Output;

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn config_summary(path: &Path, config: &Config) {
    println!("{}: ok", path.display());
    println!("catalog: {}", config.catalog);
    for (name, store) in &config.stores {
        match store.object_lock {
            Some(l) => println!(
                "store {name}: {} (object lock: {}, {} days)",
                store.url, l.mode, l.days
            ),
            None => println!("store {name}: {}", store.url),
        }
    }
    if let Some(r) = &config.reports {
        println!(
            "reports: posture report on \"{}\" (covering {}), and one after each failover, into store {}",
            r.schedule().expr,
            crate::policy::objectives::human(r.period()),
            r.store(config.stores.keys()).unwrap_or("(none)")
        );
    }
    let enc = &config.encryption;
    if enc.signing_configured() {
        println!(
            "signing: {}; trusted signers: {}",
            enc.signing_key_file
                .as_ref()
                .map_or("no signing key (restore/verify side)".to_string(), |p| {
                    format!("manifests signed with {}", p.display())
                }),
            enc.trusted_signers.len() + usize::from(enc.signing_key_file.is_some())
        );
    } else {
        eprintln!(
            "warning: no manifest signing configured (encryption.signing_key_file / trusted_signers): anyone who can write to a store can forge a snapshot that restores and verifies; run `lifeboat keys generate --signing --output FILE` and set encryption.signing_key_file"
        );
    }
    for s in &config.sources {
        println!(
            "source {} ({}) → store {}; schedule {}; objectives {}; retention {}",
            s.name,
            s.spec.kind(),
            s.store,
            s.schedule.as_ref().map_or("none", |c| c.expr.as_str()),
            {
                let t = config.targets(s);
                let h = crate::policy::objectives::human;
                t.objectives.map_or("none".to_string(), |o| {
                    format!(
                        "rpo {}, rto {} (+{} overhead), verified within {}",
                        h(o.rpo.0),
                        h(o.rto.0),
                        h(t.rto_overhead),
                        h(t.verify_max_age)
                    )
                })
            },
            s.retention
                .map_or("none (keep everything)".to_string(), |p| p.to_string()),
        );
    }
}

pub fn committed(m: &Manifest) {
    println!(
        "snapshot {} of {} committed: {} raw → {} stored in {:.1}s (sha256 {})",
        m.id,
        m.source,
        bytes(m.raw_bytes),
        bytes(m.stored_bytes),
        m.duration_ms as f64 / 1000.0,
        m.sha256
    );
}

pub fn restored(m: &Manifest, stats: &RestoreStats, to: &crate::kinds::RestoreTo) {
    println!(
        "snapshot {} of {} restored into {}: {} stored → {} raw",
        m.id,
        m.source,
        to,
        bytes(stats.stored_bytes),
        bytes(stats.raw_bytes)
    );
}

pub fn snapshots(rows: &[SnapshotRow], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Output::Table => {
            let line = |c: [&str; 7]| {
                println!(
                    "{:<30} {:<16} {:<9} {:<9} {:<24} {:>10}  {}",
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6]
                )
            };
            line([
                "ID",
                "SOURCE",
                "KIND",
                "STATUS",
                "CREATED",
                "STORED",
                "LOCATIONS",
            ]);
            for r in rows {
                let stored = r.stored_bytes.map_or("-".into(), |b| bytes(b as u64));
                line([
                    &r.id,
                    &r.source,
                    &r.kind,
                    r.status.as_str(),
                    &r.created_at,
                    &stored,
                    &r.locations.join("+"),
                ]);
                if let Some(e) = &r.error {
                    println!("    error: {e}");
                }
            }
        }
    }
    Ok(())
}

pub fn runs(rows: &[RunSummary], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Output::Table => {
            let line = |c: [&str; 6]| {
                println!(
                    "{:<24} {:<8} {:<16} {:<9} {:<30}  {}",
                    c[0], c[1], c[2], c[3], c[4], c[5]
                )
            };
            line(["STARTED", "JOB", "SOURCE", "STATUS", "SNAPSHOT", "ERROR"]);
            for r in rows {
                line([
                    &r.started_at,
                    &r.job,
                    &r.source,
                    r.status.as_str(),
                    r.snapshot_id.as_deref().unwrap_or("-"),
                    r.error.as_deref().unwrap_or(""),
                ]);
            }
        }
    }
    Ok(())
}

pub fn prune_plan(plan: &SourcePlan, dry_run: bool) {
    let Some(policy) = &plan.policy else {
        println!(
            "source {}: no retention policy; keeping all {} snapshot(s) (add `retention:` to the source to prune it)",
            plan.source,
            plan.snapshots.len()
        );
        return;
    };
    let deletes: Vec<_> = plan.to_delete().collect();
    let bytes_to_free: i64 = deletes.iter().filter_map(|s| s.stored_bytes).sum();
    println!(
        "source {}: retention {policy}{}",
        plan.source,
        if dry_run {
            " (dry run: nothing is deleted)"
        } else {
            ""
        }
    );
    let line = |c: [&str; 5]| {
        println!(
            "  {:<30} {:<24} {:<9} {:<6}  {}",
            c[0], c[1], c[2], c[3], c[4]
        )
    };
    line(["ID", "CREATED", "STATUS", "ACTION", "REASONS"]);
    for s in &plan.snapshots {
        let action = match s.action {
            Action::Keep => "KEEP",
            Action::Delete => "DELETE",
        };
        line([
            &s.id,
            &crate::catalog::ts(s.created_at),
            s.status.as_str(),
            action,
            &s.reasons.join("; "),
        ]);
    }
    println!(
        "  keep {}, delete {} ({})",
        plan.snapshots.len() - deletes.len(),
        deletes.len(),
        bytes(bytes_to_free.max(0) as u64)
    );
}

pub fn prune_outcome(plan: &SourcePlan, o: &Outcome) {
    if plan.policy.is_none() {
        return;
    }
    println!(
        "source {}: pruned {} snapshot(s), {} freed",
        plan.source,
        o.deleted.len(),
        bytes(o.bytes_freed)
    );
    for (id, why) in &o.skipped {
        println!("  skipped {id}: {why}");
    }
}

pub fn prune_json(reports: &[(&SourcePlan, Option<Outcome>)], dry_run: bool) -> anyhow::Result<()> {
    let sources: Vec<serde_json::Value> = reports
        .iter()
        .map(|(plan, outcome)| {
            let mut v = serde_json::to_value(plan)?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("outcome".into(), serde_json::to_value(outcome)?);
            }
            Ok(v)
        })
        .collect::<Result<_, serde_json::Error>>()?;
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "dry_run": dry_run, "sources": sources })
        )?
    );
    Ok(())
}

pub fn status(report: &crate::ops::status::Report) {
    use crate::policy::objectives::human;
    let d = |secs: Option<f64>| secs.map(|s| human(std::time::Duration::from_secs_f64(s)));
    let line = |c: [&str; 7]| {
        println!(
            "{:<16} {:<9} {:<24} {:<24} {:>15} {:>15}  {}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        )
    };
    line([
        "SOURCE",
        "VERDICT",
        "LAST SNAPSHOT",
        "LAST VERIFIED",
        "RPO EXPOSURE",
        "RESTORE/RTO",
        "WHY",
    ]);
    let vs = |a: Option<String>, b: Option<String>| match (a, b) {
        (None, None) => "-".to_string(),
        (a, b) => format!(
            "{} / {}",
            a.as_deref().unwrap_or("-"),
            b.as_deref().unwrap_or("-")
        ),
    };
    for s in &report.sources {
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or("never".to_string(), |t| {
                t.format("%Y-%m-%d %H:%M:%SZ").to_string()
            })
        };
        line([
            &s.source,
            s.verdict.as_str(),
            &time(s.last_snapshot_at),
            &time(s.last_verification_at),
            &vs(d(s.rpo_exposure_seconds), d(s.rpo_objective_seconds)),
            &vs(d(s.rto_evidence_seconds), d(s.rto_objective_seconds)),
            &s.reasons.join("; "),
        ]);
    }
    if !report.drills.is_empty() {
        println!();
        println!(
            "{:<24} {:<12} {:>12} {:>17} {:>17}",
            "DRILL", "VERDICT", "AGE", "RTO/OBJECTIVE", "RPO/OBJECTIVE"
        );
        for dr in &report.drills {
            let measured = |v: Option<f64>| v.map(|s| format!("{s:.1}s"));
            println!(
                "{:<24} {:<12} {:>12} {:>17} {:>17}",
                dr.scenario,
                dr.verdict,
                human(std::time::Duration::from_secs_f64(dr.age_seconds)),
                vs(measured(dr.rto_seconds), d(dr.rto_objective_seconds)),
                vs(measured(dr.rpo_seconds), d(dr.rpo_objective_seconds)),
            );
        }
    }
    println!("overall: {}", report.verdict);
}

pub fn verification(r: &crate::ops::verify::Report, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(r)?),
        Output::Table => {
            println!(
                "verification {} of snapshot {} ({} {}) in the {} sandbox",
                r.id,
                r.snapshot_id,
                r.kind,
                r.source,
                r.sandbox.as_str()
            );
            if let Some(ms) = r.restore_ms {
                println!("restore duration: {:.1}s", ms as f64 / 1000.0);
            }
            for c in &r.checks {
                println!(
                    "  {:<4} {:<32} {}",
                    if c.passed { "ok" } else { "FAIL" },
                    c.name,
                    c.detail
                );
            }
            match &r.error {
                None => println!("verdict: PASSED"),
                Some(e) => println!("verdict: FAILED: {e}"),
            }
        }
    }
    Ok(())
}

pub fn verifications(
    rows: &[crate::catalog::VerificationRow],
    output: Output,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Output::Table => {
            let line = |c: [&str; 7]| {
                println!(
                    "{:<24} {:<16} {:<30} {:<10} {:<7} {:>10}  {}",
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6]
                )
            };
            line([
                "STARTED", "SOURCE", "SNAPSHOT", "SANDBOX", "STATUS", "RESTORE", "ERROR",
            ]);
            for r in rows {
                let restore = r
                    .restore_ms
                    .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
                line([
                    &r.started_at,
                    &r.source,
                    &r.snapshot_id,
                    &r.sandbox,
                    r.status.as_str(),
                    &restore,
                    r.error.as_deref().unwrap_or(""),
                ]);
            }
        }
    }
    Ok(())
}
