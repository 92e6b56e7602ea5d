//! The failover report (`lifeboat report failover TERM`) as HTML and Markdown; JSON is
//! [`FailoverReport`] serialized. Renders values; does no I/O.
//!
//! # Guarantees
//! - The verdict comes first, with the objective it is judged against.
//! - Every text from the catalog or the config goes through [`esc`] (HTML) or [`md`].

use std::fmt::Write as _;

use super::ReportFormat;
use super::dr::{findings_html, md, measured, opt_dur, text_time};
use super::html::{self, GanttRow, esc};
use crate::ops::reports_failover::FailoverReport;

pub fn render(r: &FailoverReport, format: ReportFormat) -> Result<String, serde_json::Error> {
    Ok(match format {
        ReportFormat::Json => serde_json::to_string_pretty(r)? + "\n",
        ReportFormat::Md => markdown(r),
        ReportFormat::Html => page(r),
    })
}

/// `HH:MM:SS.mmm` UTC.
pub(crate) fn clock(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

fn opt_clock(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or("–".into(), clock)
}

fn page(r: &FailoverReport) -> String {
    let mut b = String::new();
    let v = r.verdict.as_str();
    let _ = write!(
        b,
        "<header><p class=\"muted\">lifeboat failover report</p><h1>Failover term {}: {} → {}</h1></header>\
         <section class=\"verdict v-{v}\" id=\"verdict\"><span class=\"big v-{v}\">{v}</span>\
         <span>against <strong>{}</strong>. {}</span></section>",
        r.term,
        esc(&r.from_site),
        esc(&r.to_site),
        esc(r.verdict_objective.as_deref().unwrap_or("no objective")),
        esc(&r.verdict_reason),
    );
    if let Some(e) = &r.error {
        let _ = write!(b, "<p class=\"v-failed\">Error: {}</p>", esc(e));
    }
    let row = |k: &str, v: String| format!("<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    let mut sum = String::new();
    sum.push_str(&row("Mode", esc(&r.mode)));
    sum.push_str(&row(
        "Status",
        format!("<span class=\"v-{0}\">{0}</span>", esc(&r.status)),
    ));
    sum.push_str(&row("Started", esc(&text_time(&r.started_at))));
    sum.push_str(&row(
        "Finished",
        esc(&r
            .finished_at
            .as_deref()
            .map_or("unfinished".into(), text_time)),
    ));
    sum.push_str(&row(
        "Measured RTO (write outage)",
        format!(
            "<strong>{}</strong>",
            r.measured_rto_seconds.map_or("–".into(), measured)
        ),
    ));
    sum.push_str(&row(
        "Run by",
        esc(r.run_by.as_deref().unwrap_or("not recorded")),
    ));
    let _ = write!(b, "<table id=\"summary\"><tbody>{sum}</tbody></table>");

    b.push_str(
        "<h2>Services against their objectives</h2><table class=\"wide\" id=\"services\"><thead><tr>\
         <th>Service</th><th>Verdict</th><th>RTO measured / objective</th><th>Data lost / RPO objective</th>\
         <th>Lag at decision</th></tr></thead><tbody>",
    );
    if r.services.is_empty() {
        b.push_str("<tr><td colspan=\"5\">No replicated service was recorded.</td></tr>");
    }
    for s in &r.services {
        let sv = s.verdict.as_str();
        let _ = write!(
            b,
            "<tr class=\"service\"><td data-h=\"Service\"><strong>{}</strong> <span class=\"muted\">{}{}</span></td>\
             <td data-h=\"Verdict\" class=\"v-{sv}\">{sv}</td><td data-h=\"RTO\">{} / {}</td>\
             <td data-h=\"RPO\">{}{} / {}</td><td data-h=\"Lag\">{}</td></tr>",
            esc(&s.service),
            esc(s.kind.as_deref().unwrap_or("")),
            s.source
                .as_deref()
                .map_or(String::new(), |src| format!(" · source {}", esc(src))),
            s.rto_seconds.map_or("–".into(), measured),
            opt_dur(s.rto_objective_seconds),
            s.rpo_seconds.map_or("unknown".into(), measured),
            if s.zero_loss {
                " <span class=\"muted\">(fenced, caught up)</span>"
            } else {
                ""
            },
            opt_dur(s.rpo_objective_seconds),
            s.lag_bytes.map_or("–".into(), super::output::bytes),
        );
    }
    b.push_str("</tbody></table>");
    let rows: Vec<html::Measured> = r
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
    b.push_str(&html::rto_rpo_cards(&rows, "Data lost (RPO)", measured));

    // The timeline, relative to the first timed phase.
    let origin = r.timeline.iter().filter_map(|p| p.started_at).min();
    let rel = |t: chrono::DateTime<chrono::Utc>| {
        origin.map_or(0.0, |o| (t - o).num_milliseconds() as f64 / 1000.0)
    };
    let rows: Vec<GanttRow> = r
        .timeline
        .iter()
        .map(|p| GanttRow {
            label: &p.phase,
            span: match (p.started_at, p.finished_at) {
                (Some(a), Some(b)) => Some((rel(a), rel(b))),
                _ => None,
            },
            class: if p.status == "skipped" {
                "v-skipped"
            } else {
                ""
            },
        })
        .collect();
    let _ = write!(
        b,
        "<h2>Timeline</h2><div class=\"card\">{}</div><table class=\"wide\" id=\"timeline\"><thead><tr>\
         <th>Phase</th><th>Status</th><th>Started (UTC)</th><th>Finished</th><th>Took</th><th>Detail</th></tr></thead><tbody>",
        html::gantt(&rows, 1.0, measured)
    );
    for p in &r.timeline {
        let _ = write!(
            b,
            "<tr><td data-h=\"Phase\"><strong>{}</strong></td><td data-h=\"Status\" class=\"v-{s}\">{s}</td>\
             <td data-h=\"Started\">{}</td><td data-h=\"Finished\">{}</td><td data-h=\"Took\">{}</td><td data-h=\"Detail\">{}</td></tr>",
            esc(&p.phase),
            opt_clock(p.started_at),
            opt_clock(p.finished_at),
            p.seconds.map_or("–".into(), measured),
            esc(&p.detail),
            s = esc(&p.status),
        );
    }
    b.push_str("</tbody></table>");

    if !r.dns.is_empty() {
        b.push_str("<h2>DNS</h2><table class=\"wide\" id=\"dns\"><thead><tr><th>Name</th><th>Before</th><th>After</th></tr></thead><tbody>");
        for d in &r.dns {
            let _ = write!(
                b,
                "<tr><td data-h=\"Name\"><code>{}</code></td><td data-h=\"Before\">{}</td><td data-h=\"After\">{}</td></tr>",
                esc(&d.name),
                esc(&d.from.join(", ")),
                esc(&d.to.join(", "))
            );
        }
        b.push_str("</tbody></table>");
    }

    b.push_str("<h2>Findings</h2>");
    findings_html(&mut b, &r.findings);

    let mut ev = String::new();
    ev.push_str(&row("Catalog term", r.evidence.term.to_string()));
    ev.push_str(&row(
        "Measured (ms)",
        format!(
            "<code>{}</code>",
            esc(&r
                .evidence
                .timeline_ms
                .as_ref()
                .map_or("not recorded".into(), |t| t.to_string()))
        ),
    ));
    for p in &r.evidence.probes {
        ev.push_str(&row(
            &format!("seen at decision: {} {}", p.site, p.service),
            esc(&match (&p.role, &p.error) {
                (Some(role), _) => format!(
                    "{} {role}{}",
                    p.kind,
                    if p.fenced == Some(true) {
                        " (fenced)"
                    } else {
                        ""
                    }
                ),
                (None, e) => format!(
                    "{} unreachable: {}",
                    p.kind,
                    e.as_deref().unwrap_or("no answer")
                ),
            }),
        ));
    }
    for o in &r.evidence.blocked_and_overridden {
        ev.push_str(&row("overridden", esc(o)));
    }
    let _ = write!(
        b,
        "<h2>Evidence</h2><table id=\"evidence\"><tbody>{ev}</tbody></table>"
    );
    b.push_str(&super::dr::footer(
        r.generated_at,
        &r.generated_by,
        r.schema,
    ));
    html::page(&format!("lifeboat failover term {}", r.term), &b)
}

fn markdown(r: &FailoverReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Failover term {}: {} → {}: **{}**\n\nAgainst {}. {}\n",
        r.term,
        md(&r.from_site),
        md(&r.to_site),
        r.verdict.as_str().to_uppercase(),
        md(r.verdict_objective.as_deref().unwrap_or("no objective")),
        md(&r.verdict_reason)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "Error: {}\n", md(e));
    }
    let _ = writeln!(
        o,
        "- Mode: {}, status {}\n- Started {}, finished {}\n- Measured RTO (write outage): {}\n- Run by: {}\n",
        md(&r.mode),
        md(&r.status),
        md(&text_time(&r.started_at)),
        md(&r
            .finished_at
            .as_deref()
            .map_or("unfinished".into(), text_time)),
        r.measured_rto_seconds.map_or("–".into(), measured),
        md(r.run_by.as_deref().unwrap_or("not recorded"))
    );
    let _ = writeln!(
        o,
        "| Service | Verdict | RTO / objective | Data lost / RPO objective |\n|---|---|---|---|"
    );
    for s in &r.services {
        let _ = writeln!(
            o,
            "| {} | {} | {} / {} | {} / {} |",
            md(&s.service),
            s.verdict.as_str(),
            s.rto_seconds.map_or("–".into(), measured),
            opt_dur(s.rto_objective_seconds),
            s.rpo_seconds.map_or("unknown".into(), measured),
            opt_dur(s.rpo_objective_seconds)
        );
    }
    let _ = writeln!(
        o,
        "\n## Timeline\n\n| Phase | Status | Started | Took | Detail |\n|---|---|---|---|---|"
    );
    for p in &r.timeline {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            md(&p.phase),
            md(&p.status),
            opt_clock(p.started_at),
            p.seconds.map_or("–".into(), measured),
            md(&p.detail)
        );
    }
    let _ = writeln!(o, "\n## Findings\n");
    if r.findings.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for f in &r.findings {
        let _ = writeln!(
            o,
            "- **{:?}** {}: {}",
            f.severity,
            md(&f.title),
            md(&f.detail)
        );
    }
    o
}
