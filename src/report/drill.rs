//! The drill report: a [`DrillJournal`] (schema `lifeboat.drill-journal/v1`, written by the
//! drill runner) rendered as HTML, Markdown or JSON ([`DRILL_REPORT_SCHEMA`]: the journal
//! plus what the report checked, documented in `docs/reports.md`). Renders values; does no
//! I/O: `lifeboat report drill --journal FILE` reads the file, `report drill ID` (after the
//! drills merge) reads the catalog, and both call [`render_drill`].
//!
//! # Guarantees
//! - The verdict comes first, with the objective it is judged against.
//! - The journal's hash chain is checked ([`verify_chain`]) and the result shown next to the
//!   journal SHA-256: a journal whose chain does not hold says so in red, at the top, and its
//!   verdict is shown as `inconclusive` (the measures cannot be trusted).
//! - Every text from the journal goes through [`esc`] (HTML) or [`md`] (Markdown).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ReportFormat;
use super::dr::{dur, md, measured, opt_dur, time};
use super::failover::clock;
use super::html::{self, GanttRow, esc};
use crate::model::journal::{DrillJournal, verify_chain};

pub const DRILL_REPORT_SCHEMA: &str = "lifeboat.report.drill/v1";

/// The phases of a drill timeline, in the order the report shows them.
pub const DRILL_PHASES: [&str; 8] = [
    "fault",
    "detect",
    "decide",
    "fence",
    "promote",
    "dns",
    "first-write",
    "rollback",
];

/// The JSON form of the drill report: the journal as recorded, and what the report made of it.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport<'a> {
    pub schema: &'static str,
    /// The verdict shown: the journal's, or `inconclusive` when its chain does not hold.
    pub verdict: String,
    /// The objective the verdict is judged against (e.g. `RTO 5m`).
    pub verdict_objective: Option<String>,
    /// Whether the journal's hash chain holds (`verify_chain`).
    pub chain_verified: bool,
    pub chain_error: Option<String>,
    pub journal_sha256: &'a str,
    pub journal: &'a DrillJournal,
}

fn objective_of(j: &DrillJournal) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(r) = j.objectives.rto_seconds {
        parts.push(format!("RTO {}", dur(r)));
    }
    if let Some(r) = j.objectives.rpo_seconds {
        parts.push(format!("RPO {}", dur(r)));
    }
    if parts.is_empty() {
        // The tightest per-service objectives.
        let min = |f: fn(&crate::model::journal::ServiceMeasure) -> Option<f64>| {
            j.services.iter().filter_map(f).reduce(f64::min)
        };
        if let Some(r) = min(|s| s.rto_objective_seconds) {
            parts.push(format!("RTO {}", dur(r)));
        }
        if let Some(r) = min(|s| s.rpo_objective_seconds) {
            parts.push(format!("RPO {}", dur(r)));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// What the report made of `j`.
pub fn drill_report(j: &DrillJournal) -> DrillReport<'_> {
    let chain = verify_chain(j);
    DrillReport {
        schema: DRILL_REPORT_SCHEMA,
        verdict: if chain.is_ok() {
            j.verdict.clone()
        } else {
            "inconclusive".into()
        },
        verdict_objective: objective_of(j),
        chain_verified: chain.is_ok(),
        chain_error: chain.err().map(|e| e.to_string()),
        journal_sha256: &j.journal_sha256,
        journal: j,
    }
}

/// The drill report of `j` in `format`.
pub fn render_drill(j: &DrillJournal, format: ReportFormat) -> Result<String, serde_json::Error> {
    let r = drill_report(j);
    Ok(match format {
        ReportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
        ReportFormat::Md => markdown(&r),
        ReportFormat::Html => page(&r),
    })
}

/// A CSS-safe verdict class (`v-<word>` from a fixed set; anything else is inconclusive).
fn class(v: &str) -> &'static str {
    match v {
        "pass" | "ok" => "pass",
        "at-risk" => "at-risk",
        "breached" => "breached",
        "failed" | "aborted" => "failed",
        _ => "inconclusive",
    }
}

/// The timeline in report order: the known phases first (in [`DRILL_PHASES`] order, as they
/// happened), then any other recorded phase by time.
fn ordered(j: &DrillJournal) -> Vec<&crate::model::journal::TimelineEntry> {
    let mut t: Vec<_> = j.timeline.iter().collect();
    t.sort_by_key(|e| {
        (
            DRILL_PHASES
                .iter()
                .position(|p| *p == e.phase)
                .unwrap_or(DRILL_PHASES.len()),
            e.at,
        )
    });
    t
}

fn page(r: &DrillReport<'_>) -> String {
    let j = r.journal;
    let mut b = String::new();
    let v = class(&r.verdict);
    let _ = write!(
        b,
        "<header><p class=\"muted\">lifeboat drill report{}</p><h1>Drill {} <code>{}</code></h1></header>\
         <section class=\"verdict v-{v}\" id=\"verdict\"><span class=\"big v-{v}\">{}</span>\
         <span>against <strong>{}</strong>. {}</span></section>",
        if j.dry_run {
            " · DRY RUN (no fault injected)"
        } else {
            ""
        },
        esc(&j.scenario),
        esc(&j.id),
        esc(&r.verdict),
        esc(r.verdict_objective.as_deref().unwrap_or("no objective")),
        esc(&j.reasons.join("; ")),
    );
    if let Some(e) = &r.chain_error {
        let _ = write!(
            b,
            "<p class=\"v-failed\" id=\"chain\"><strong>The journal's hash chain does not hold:</strong> {} (recorded verdict: {})</p>",
            esc(e),
            esc(&j.verdict)
        );
    }
    let row = |k: &str, v: String| format!("<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    let mut sum = String::new();
    sum.push_str(&row("Scenario", esc(&j.scenario)));
    sum.push_str(&row("Tier", esc(&j.tier)));
    sum.push_str(&row("Started", esc(&time(j.started_at))));
    sum.push_str(&row(
        "Finished",
        j.finished_at.map_or("unfinished".into(), |t| esc(&time(t))),
    ));
    sum.push_str(&row("Run by", esc(&j.run_by)));
    let _ = write!(b, "<table id=\"summary\"><tbody>{sum}</tbody></table>");

    b.push_str(
        "<h2>Services against their objectives</h2><table class=\"wide\" id=\"services\"><thead><tr>\
         <th>Service</th><th>Verdict</th><th>RTO measured / objective</th><th>RPO measured / objective</th></tr></thead><tbody>",
    );
    if j.services.is_empty() {
        b.push_str("<tr><td colspan=\"4\">No service was measured.</td></tr>");
    }
    for s in &j.services {
        let sv = class(&s.verdict);
        let _ = write!(
            b,
            "<tr class=\"service\"><td data-h=\"Service\"><strong>{}</strong></td><td data-h=\"Verdict\" class=\"v-{sv}\">{}</td>\
             <td data-h=\"RTO\">{} / {}</td><td data-h=\"RPO\">{} / {}</td></tr>",
            esc(&s.service),
            esc(&s.verdict),
            s.rto_seconds.map_or("not recovered".into(), measured),
            opt_dur(s.rto_objective_seconds),
            s.rpo_seconds.map_or("unbounded".into(), measured),
            opt_dur(s.rpo_objective_seconds),
        );
    }
    b.push_str("</tbody></table>");
    let rows: Vec<html::Measured> = j
        .services
        .iter()
        .map(|s| html::Measured {
            label: &s.service,
            rto: s.rto_seconds,
            rto_objective: s.rto_objective_seconds,
            rpo: s.rpo_seconds,
            rpo_objective: s.rpo_objective_seconds,
        })
        .collect();
    b.push_str(&html::rto_rpo_cards(&rows, "Measured RPO", measured));

    // Timeline: each phase drawn from the fault (or the start) to when it happened.
    let phases = ordered(j);
    let origin: DateTime<Utc> = phases
        .iter()
        .find(|e| e.phase == "fault")
        .map(|e| e.at)
        .unwrap_or(j.started_at);
    let rel = |t: DateTime<Utc>| (t - origin).num_milliseconds() as f64 / 1000.0;
    let mut prev = 0.0f64;
    let rows: Vec<GanttRow> = phases
        .iter()
        .map(|e| {
            let at = rel(e.at);
            let start = prev.min(at);
            prev = prev.max(at);
            GanttRow {
                label: &e.phase,
                span: Some((start, at)),
                class: "",
            }
        })
        .collect();
    let _ = write!(
        b,
        "<h2>Timeline</h2><p class=\"muted\">From the fault; each bar runs from the previous phase.</p><div class=\"card\">{}</div>\
         <table class=\"wide\" id=\"timeline\"><thead><tr><th>Phase</th><th>At (UTC)</th><th>After the fault</th><th>Detail</th></tr></thead><tbody>",
        html::gantt(&rows, 1.0, measured)
    );
    for p in DRILL_PHASES {
        if !phases.iter().any(|e| e.phase == p) {
            let _ = write!(
                b,
                "<tr><td data-h=\"Phase\"><strong>{p}</strong></td><td data-h=\"At\" class=\"v-inconclusive\">did not happen</td><td></td><td></td></tr>"
            );
        }
    }
    for e in &phases {
        let after = rel(e.at);
        let _ = write!(
            b,
            "<tr><td data-h=\"Phase\"><strong>{}</strong></td><td data-h=\"At\">{}</td><td data-h=\"After\">{}{}</td><td data-h=\"Detail\">{}</td></tr>",
            esc(&e.phase),
            clock(e.at),
            if after < 0.0 { "−" } else { "+" },
            measured(after.abs()),
            esc(&e.detail)
        );
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Canary writes</h2>");
    match &j.canary {
        None => b.push_str("<p class=\"v-inconclusive\">No canary writes were recorded: the RPO and RTO are not measured by writes.</p>"),
        Some(c) => {
            let cells: Vec<(&str, String)> = c
                .writes
                .iter()
                .map(|w| {
                    let cls = match w.outcome.as_str() {
                        "acknowledged" => "v-acknowledged",
                        "lost" => "v-lost",
                        "indeterminate" => "v-indeterminate",
                        _ => "v-failed",
                    };
                    (cls, format!("#{} {} {}", w.seq, clock(w.sent_at), w.outcome))
                })
                .collect();
            let _ = write!(
                b,
                "<div class=\"card\" id=\"canary\"><p><span class=\"v-pass\">{} acknowledged</span> · <span class=\"v-breached\">{} lost</span> · \
                 <span class=\"v-at-risk\">{} indeterminate</span> · {} sent, one every {} ms (the measures are this precise)</p>{}</div>",
                c.acknowledged,
                c.lost,
                c.indeterminate,
                c.sent,
                c.resolution_ms,
                html::strip(&cells)
            );
        }
    }

    if !j.faults.is_empty() {
        b.push_str("<h2>Faults</h2><table class=\"wide\" id=\"faults\"><thead><tr><th>Fault</th><th>Action</th><th>Targets</th><th>Applied</th><th>Reverted</th></tr></thead><tbody>");
        for f in &j.faults {
            let _ = write!(
                b,
                "<tr><td data-h=\"Fault\">{}</td><td data-h=\"Action\">{}</td><td data-h=\"Targets\">{}</td><td data-h=\"Applied\">{}</td><td data-h=\"Reverted\" class=\"{}\">{}</td></tr>",
                esc(&f.name),
                esc(&f.action),
                esc(&f.targets.join(", ")),
                f.applied_at.map_or("not applied".into(), clock),
                if f.reverted { "v-pass" } else { "v-failed" },
                match (f.reverted, f.reverted_at) {
                    (true, Some(t)) => format!("confirmed {}", clock(t)),
                    (true, None) => "confirmed".into(),
                    (false, _) => "NOT confirmed: check the target by hand".into(),
                }
            );
        }
        b.push_str("</tbody></table>");
    }

    b.push_str("<h2>Findings</h2>");
    if j.findings.is_empty() {
        b.push_str("<p class=\"v-ok\">No findings.</p>");
    } else {
        b.push_str("<table class=\"wide\" id=\"findings\"><thead><tr><th>Severity</th><th>Finding</th></tr></thead><tbody>");
        for f in &j.findings {
            let sev = match f.severity.as_str() {
                "critical" => "critical",
                "warning" => "warning",
                _ => "inconclusive",
            };
            let _ = write!(
                b,
                "<tr><td data-h=\"Severity\" class=\"v-{sev}\">{}</td><td data-h=\"Finding\">{}</td></tr>",
                esc(&f.severity),
                esc(&f.text)
            );
        }
        b.push_str("</tbody></table>");
    }

    let mut ev = String::new();
    ev.push_str(&row(
        "Journal SHA-256",
        format!("<code>{}</code>", esc(&j.journal_sha256)),
    ));
    ev.push_str(&row(
        "Hash chain",
        if r.chain_verified {
            format!(
                "<span class=\"v-pass\">verified</span> ({} events)",
                j.events.len()
            )
        } else {
            format!(
                "<span class=\"v-failed\">BROKEN</span>: {}",
                esc(r.chain_error.as_deref().unwrap_or(""))
            )
        },
    ));
    ev.push_str(&row("Journal schema", esc(&j.schema)));
    ev.push_str(&row("Run by", esc(&j.run_by)));
    for e in &j.evidence {
        ev.push_str(&row("evidence", format!("<code>{}</code>", esc(e))));
    }
    let _ = write!(
        b,
        "<h2>Evidence</h2><table id=\"evidence\"><tbody>{ev}</tbody></table>\
         <h2>Journal events</h2><table class=\"wide\" id=\"events\"><thead><tr><th>#</th><th>At</th><th>Event</th><th>Detail</th></tr></thead><tbody>"
    );
    for e in &j.events {
        let _ = write!(
            b,
            "<tr><td data-h=\"#\">{}</td><td data-h=\"At\">{}</td><td data-h=\"Event\">{}</td><td data-h=\"Detail\">{}</td></tr>",
            e.seq,
            clock(e.at),
            esc(&e.kind),
            esc(&e.detail)
        );
    }
    let _ = write!(
        b,
        "</tbody></table><footer><p class=\"muted\">Rendered by lifeboat {} · report schema {} · journal schema {}</p></footer>",
        env!("CARGO_PKG_VERSION"),
        DRILL_REPORT_SCHEMA,
        esc(&j.schema)
    );
    html::page(&format!("lifeboat drill {}", j.id), &b)
}

fn markdown(r: &DrillReport<'_>) -> String {
    let j = r.journal;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Drill {} ({}): **{}**{}\n\nAgainst {}. {}\n",
        md(&j.scenario),
        md(&j.id),
        r.verdict.to_uppercase(),
        if j.dry_run { " (dry run)" } else { "" },
        md(r.verdict_objective.as_deref().unwrap_or("no objective")),
        md(&j.reasons.join("; "))
    );
    if let Some(e) = &r.chain_error {
        let _ = writeln!(o, "**The journal's hash chain does not hold:** {}\n", md(e));
    }
    let _ = writeln!(
        o,
        "| Service | Verdict | RTO / objective | RPO / objective |\n|---|---|---|---|"
    );
    for s in &j.services {
        let _ = writeln!(
            o,
            "| {} | {} | {} / {} | {} / {} |",
            md(&s.service),
            md(&s.verdict),
            s.rto_seconds.map_or("not recovered".into(), measured),
            opt_dur(s.rto_objective_seconds),
            s.rpo_seconds.map_or("unbounded".into(), measured),
            opt_dur(s.rpo_objective_seconds)
        );
    }
    let _ = writeln!(o, "\n## Timeline\n");
    for e in ordered(j) {
        let _ = writeln!(o, "- {} {}: {}", clock(e.at), md(&e.phase), md(&e.detail));
    }
    if let Some(c) = &j.canary {
        let _ = writeln!(
            o,
            "\nCanary writes: {} acknowledged, {} lost, {} indeterminate of {} (every {} ms)",
            c.acknowledged, c.lost, c.indeterminate, c.sent, c.resolution_ms
        );
    }
    let _ = writeln!(o, "\n## Findings\n");
    if j.findings.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for f in &j.findings {
        let _ = writeln!(o, "- **{}** {}", md(&f.severity), md(&f.text));
    }
    let _ = writeln!(
        o,
        "\nJournal SHA-256 {} ({}), run by {}",
        md(&j.journal_sha256),
        if r.chain_verified {
            "chain verified"
        } else {
            "chain BROKEN"
        },
        md(&j.run_by)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::journal::*;

    fn journal() -> DrillJournal {
        let t0 = DateTime::UNIX_EPOCH + chrono::Duration::days(20_000);
        let s = |n: i64| t0 + chrono::Duration::milliseconds(n);
        let mut j = DrillJournal {
            schema: DRILL_JOURNAL_SCHEMA.into(),
            id: "drill-1".into(),
            scenario: "<script>x</script>".into(),
            tier: "pod".into(),
            started_at: t0,
            finished_at: Some(s(60_000)),
            run_by: "sre@host".into(),
            dry_run: false,
            verdict: "at-risk".into(),
            reasons: vec!["RTO 50s is 83 % of 1m".into()],
            objectives: JournalObjectives {
                rto_seconds: Some(60.0),
                rpo_seconds: Some(5.0),
            },
            services: vec![ServiceMeasure {
                service: "orders-db".into(),
                rto_seconds: Some(50.0),
                rpo_seconds: Some(0.2),
                rto_objective_seconds: Some(60.0),
                rpo_objective_seconds: Some(5.0),
                verdict: "at-risk".into(),
            }],
            timeline: vec![
                TimelineEntry {
                    phase: "promote".into(),
                    at: s(30_000),
                    detail: String::new(),
                },
                TimelineEntry {
                    phase: "fault".into(),
                    at: s(1_000),
                    detail: "kill".into(),
                },
            ],
            canary: Some(CanaryStrip {
                resolution_ms: 100,
                sent: 3,
                acknowledged: 1,
                lost: 1,
                indeterminate: 1,
                writes: vec![],
            }),
            faults: vec![],
            findings: vec![],
            evidence: vec![],
            events: vec![],
            journal_sha256: GENESIS.into(),
        };
        j.push_event(s(1_000), "fault-applied", "kill");
        j
    }

    #[test]
    fn verdict_first_escaped_and_chain_checked() {
        let j = journal();
        let html = render_drill(&j, ReportFormat::Html).expect("html");
        assert!(!html.contains("<script>x"), "{html}");
        let verdict = html.find("id=\"verdict\"").expect("verdict");
        assert!(verdict < html.find("id=\"services\"").expect("services"));
        assert!(html.contains(">at-risk<") && html.contains("RTO 1m, RPO 5s"));
        assert!(html.contains(">verified</span>"));
        // phases in drill order: fault before promote
        assert!(html.find(">fault<").expect("fault") < html.find(">promote<").expect("promote"));
        let json: serde_json::Value =
            serde_json::from_str(&render_drill(&j, ReportFormat::Json).expect("json"))
                .expect("parse");
        assert_eq!(json["schema"], DRILL_REPORT_SCHEMA);
        assert_eq!(json["chain_verified"], true);
        assert_eq!(json["journal"]["id"], "drill-1");

        let mut bad = j.clone();
        bad.events[0].detail = "edited".into();
        let html = render_drill(&bad, ReportFormat::Html).expect("html");
        assert!(html.contains("id=\"chain\"") && html.contains(">inconclusive<"));
        let md = render_drill(&bad, ReportFormat::Md).expect("md");
        assert!(
            md.contains("**INCONCLUSIVE**") && md.contains("chain BROKEN"),
            "{md}"
        );
    }
}
