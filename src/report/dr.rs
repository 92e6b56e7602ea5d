//! The DR reports as people read them: HTML (one self-contained file, see [`super::html`]),
//! Markdown (chat, tickets) and JSON (the data of [`crate::ops::reports`], versioned schema).
//! Renders values; does no I/O.
//!
//! # Guarantees
//! - The verdict comes first, in every format.
//! - Every text from the catalog or the config goes through [`esc`] in HTML and [`md`] in
//!   Markdown.

use std::fmt::Write as _;
use std::time::Duration;

use super::ReportFormat;
use super::html::{self, Bar, esc};
use crate::ops::reports::{Finding, Posture, VerificationReport};
use crate::policy::calendar::{SlotState, Standing};
use crate::policy::objectives::human;

pub(crate) fn dur(s: f64) -> String {
    human(Duration::from_secs_f64(s.max(0.0)))
}

/// A measured duration: tenths of a second under a minute (`9.1s`), else as [`dur`].
pub(crate) fn measured(s: f64) -> String {
    if (1.0..60.0).contains(&s) {
        let t = format!("{s:.1}");
        format!("{}s", t.trim_end_matches(".0"))
    } else {
        dur(s)
    }
}

pub(crate) fn opt_dur(s: Option<f64>) -> String {
    s.map_or("–".to_string(), dur)
}

/// Markdown-safe inline text: table pipes, emphasis and markup characters escaped, newlines
/// flattened.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub fn posture(p: &Posture, format: ReportFormat) -> Result<String, serde_json::Error> {
    Ok(match format {
        ReportFormat::Json => serde_json::to_string_pretty(p)? + "\n",
        ReportFormat::Md => posture_md(p),
        ReportFormat::Html => posture_html(p),
    })
}

pub fn verification(
    r: &VerificationReport,
    format: ReportFormat,
) -> Result<String, serde_json::Error> {
    Ok(match format {
        ReportFormat::Json => serde_json::to_string_pretty(r)? + "\n",
        ReportFormat::Md => verification_md(r),
        ReportFormat::Html => verification_html(r),
    })
}

pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(crate) fn text_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| time(t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| t.to_string())
}

fn calendar_label(st: &Standing) -> String {
    format!(
        "{:?} {}{}",
        st.requirement.cadence,
        st.requirement.kind.title(),
        st.requirement
            .scope
            .as_deref()
            .map_or(String::new(), |s| format!(" of {s}"))
    )
}

fn slot_label(st: &Standing, start: chrono::DateTime<chrono::Utc>) -> String {
    use crate::policy::calendar::Cadence;
    match st.requirement.cadence {
        Cadence::Weekly => start.format("W%V").to_string(),
        Cadence::Monthly => start.format("%b").to_string(),
        Cadence::Quarterly => {
            use chrono::Datelike;
            format!("Q{} {}", start.month0() / 3 + 1, start.year())
        }
    }
}

fn slot_class(s: SlotState) -> &'static str {
    match s {
        SlotState::Done => "v-done",
        SlotState::Missed => "v-missed",
        SlotState::Pending => "v-pending",
    }
}

/// The footer every report ends with: when, where and by which lifeboat it was generated,
/// and its schema.
pub(crate) fn footer(
    at: chrono::DateTime<chrono::Utc>,
    by: &crate::ops::reports::Origin,
    schema: &str,
) -> String {
    format!(
        "<footer><p class=\"muted\">Generated {} on {} by lifeboat {} · schema {}</p></footer>",
        time(at),
        esc(&by.host),
        esc(&by.lifeboat_version),
        esc(schema)
    )
}

pub(crate) fn findings_html(out: &mut String, findings: &[Finding]) {
    if findings.is_empty() {
        out.push_str("<p class=\"v-ok\">No open findings.</p>");
        return;
    }
    out.push_str("<table class=\"wide\"><thead><tr><th>Severity</th><th>Finding</th><th>Detail</th></tr></thead><tbody>");
    for f in findings {
        let sev = match f.severity {
            crate::ops::reports::Severity::Critical => "critical",
            crate::ops::reports::Severity::Warning => "warning",
        };
        let _ = write!(
            out,
            "<tr><td data-h=\"Severity\" class=\"v-{sev}\">{sev}</td><td data-h=\"Finding\">{}</td><td data-h=\"Detail\">{}</td></tr>",
            esc(&f.title),
            esc(&f.detail)
        );
    }
    out.push_str("</tbody></table>");
}

fn posture_html(p: &Posture) -> String {
    let mut b = String::new();
    let period = format!(
        "{} – {} ({})",
        time(p.period.since),
        time(p.period.until),
        dur(p.period.seconds)
    );
    let worst = p
        .sources
        .iter()
        .filter(|s| s.status.verdict == p.verdict)
        .count();
    let _ = write!(
        b,
        "<header><p class=\"muted\">lifeboat DR posture report · {}</p><h1>Recovery posture</h1></header>\
         <section class=\"verdict v-{v}\" id=\"verdict\"><span class=\"big v-{v}\">{v}</span>\
         <span>{} source(s); {worst} at this verdict. {} open finding(s).</span></section>",
        esc(&period),
        p.sources.len(),
        p.findings.len(),
        v = p.verdict.as_str(),
    );

    b.push_str("<h2>Sources against their objectives</h2><table class=\"wide\" id=\"sources\"><thead><tr>\
        <th>Source</th><th>Verdict</th><th>RPO exposure / objective</th><th>Restore (RTO evidence) / objective</th>\
        <th>Last snapshot</th><th>Last verification</th><th>Why</th></tr></thead><tbody>");
    for s in &p.sources {
        let st = &s.status;
        let last_v = s
            .last_verification
            .as_ref()
            .map_or("never".to_string(), |v| {
                format!(
                    "<span class=\"v-{}\">{}</span> {} <code>{}</code>",
                    v.status.as_str(),
                    v.status.as_str(),
                    esc(&v.finished_at.as_deref().map_or("running".into(), text_time)),
                    esc(&v.id)
                )
            });
        let _ = write!(
            b,
            "<tr class=\"source\"><td data-h=\"Source\"><strong>{}</strong> <span class=\"muted\">{}</span></td>\
             <td data-h=\"Verdict\" class=\"v-{v}\">{v}</td><td data-h=\"RPO\">{} / {}</td><td data-h=\"RTO\">{} / {}</td>\
             <td data-h=\"Last snapshot\">{}</td><td data-h=\"Last verification\">{last_v}</td><td data-h=\"Why\">{}</td></tr>",
            esc(&st.source),
            esc(&st.kind),
            opt_dur(st.rpo_exposure_seconds),
            opt_dur(st.rpo_objective_seconds),
            opt_dur(st.rto_evidence_seconds),
            opt_dur(st.rto_objective_seconds),
            st.last_snapshot_at.map_or("never".into(), time),
            esc(&st.reasons.join("; ")),
            v = st.verdict.as_str(),
        );
    }
    b.push_str("</tbody></table>");

    let rpo: Vec<Bar> = p
        .sources
        .iter()
        .map(|s| Bar {
            label: &s.status.source,
            value: s.status.rpo_exposure_seconds,
            objective: s.status.rpo_objective_seconds,
        })
        .collect();
    let rto: Vec<Bar> = p
        .sources
        .iter()
        .map(|s| Bar {
            label: &s.status.source,
            value: s.status.rto_evidence_seconds,
            objective: s.status.rto_objective_seconds,
        })
        .collect();
    let _ = write!(
        b,
        "<div class=\"grid\"><div class=\"card\"><h3>RPO exposure now vs objective</h3>{}</div>\
         <div class=\"card\"><h3>Last measured RTO vs objective</h3>{}</div></div>",
        html::bars(&rpo, dur),
        html::bars(&rto, dur)
    );

    let _ = write!(
        b,
        "<h2>Trend over the period</h2><p class=\"muted\">Worst RPO exposure per {} (dashed: the objective).</p><div class=\"grid\">",
        esc(&dur(
            p.period.seconds / crate::ops::reports::TREND_BUCKETS as f64
        ))
    );
    for s in &p.sources {
        let restores: Vec<Option<f64>> = s.restores.iter().map(|r| r.restore_seconds).collect();
        let _ = write!(
            b,
            "<div class=\"card trend\"><h3>{}</h3><div class=\"muted\">RPO exposure, worst {} (objective {})</div>{}\
             <div class=\"muted\">Restore times of {} verification(s) (RTO {})</div>{}\
             <div class=\"muted\">{} backup(s) complete, {} failed</div></div>",
            esc(&s.status.source),
            opt_dur(s.rpo_trend.worst_seconds),
            opt_dur(s.status.rpo_objective_seconds),
            html::sparkline(&s.rpo_trend.values, s.status.rpo_objective_seconds),
            s.restores.len(),
            opt_dur(s.status.rto_objective_seconds),
            html::sparkline(&restores, s.status.rto_objective_seconds),
            s.backups_complete,
            s.backups_failed,
        );
    }
    b.push_str("</div>");

    b.push_str("<h2>Required tests</h2><table class=\"wide\" id=\"calendar\"><thead><tr><th>Requirement</th><th>State</th><th>Last passed</th><th>Due by</th><th>Calendar</th></tr></thead><tbody>");
    for st in &p.calendar {
        let mut cells = String::from("<div class=\"cal\">");
        for slot in &st.slots {
            let _ = write!(
                cells,
                "<span class=\"{}\" title=\"{} {}\">{}</span>",
                slot_class(slot.state),
                esc(&time(slot.start)),
                esc(slot.done_by.as_deref().unwrap_or("not done")),
                esc(&slot_label(st, slot.start))
            );
        }
        cells.push_str("</div>");
        let recorded = p.recorded_activity_kinds.contains(&st.requirement.kind);
        let _ = write!(
            b,
            "<tr><td data-h=\"Requirement\">{}</td><td data-h=\"State\" class=\"v-{s}\">{s}{}</td><td data-h=\"Last passed\">{}</td><td data-h=\"Due by\">{}</td><td data-h=\"Calendar\">{cells}</td></tr>",
            esc(&calendar_label(st)),
            if recorded {
                ""
            } else {
                " <span class=\"muted\">(not recorded by this lifeboat yet)</span>"
            },
            st.last_passed.as_ref().map_or("never".into(), |a| format!(
                "{} <code>{}</code>",
                time(a.at),
                esc(&a.id)
            )),
            time(st.due_by),
            s = st.state.as_str(),
        );
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Last drill per scenario</h2>");
    if p.drills.is_empty() {
        b.push_str("<p class=\"muted\">No drill finished in the period (<code>lifeboat drill run NAME</code>).</p>");
    } else {
        b.push_str("<table class=\"wide\" id=\"drills\"><thead><tr><th>Scenario</th><th>Verdict</th><th>RTO</th><th>RPO</th><th>Finished</th><th>Drill</th></tr></thead><tbody>");
        for d in &p.drills {
            let _ = write!(
                b,
                "<tr><td data-h=\"Scenario\">{} <span class=\"muted\">({})</span></td><td data-h=\"Verdict\" class=\"v-{v}\">{v}</td><td data-h=\"RTO\">{} / {}</td><td data-h=\"RPO\">{} / {}</td><td data-h=\"Finished\">{}</td><td data-h=\"Drill\"><code>{}</code></td></tr>",
                esc(&d.scenario),
                esc(&d.tier),
                opt_dur(d.rto_seconds),
                opt_dur(d.rto_objective_seconds),
                opt_dur(d.rpo_seconds),
                opt_dur(d.rpo_objective_seconds),
                time(d.finished_at),
                esc(&d.id),
                v = esc(&d.verdict),
            );
        }
        b.push_str("</tbody></table>");
    }

    b.push_str("<h2>Open findings</h2>");
    findings_html(&mut b, &p.findings);
    b.push_str(&footer(p.generated_at, &p.generated_by, p.schema));
    html::page("lifeboat DR posture report", &b)
}

fn posture_md(p: &Posture) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Recovery posture: **{}**\n\n{} – {} · {} source(s) · {} open finding(s)\n",
        p.verdict.as_str().to_uppercase(),
        time(p.period.since),
        time(p.period.until),
        p.sources.len(),
        p.findings.len()
    );
    let _ = writeln!(
        o,
        "| Source | Verdict | RPO exposure / objective | RTO evidence / objective | Worst RPO in period | Last verification |\n|---|---|---|---|---|---|"
    );
    for s in &p.sources {
        let st = &s.status;
        let _ = writeln!(
            o,
            "| {} | {} | {} / {} | {} / {} | {} | {} |",
            md(&st.source),
            st.verdict.as_str(),
            opt_dur(st.rpo_exposure_seconds),
            opt_dur(st.rpo_objective_seconds),
            opt_dur(st.rto_evidence_seconds),
            opt_dur(st.rto_objective_seconds),
            opt_dur(s.rpo_trend.worst_seconds),
            s.last_verification
                .as_ref()
                .map_or("never".into(), |v| format!(
                    "{} {}",
                    v.status.as_str(),
                    md(&v.finished_at.as_deref().map_or("running".into(), text_time))
                )),
        );
    }
    let _ = writeln!(
        o,
        "\n## Required tests\n\n| Requirement | State | Last passed | Due by |\n|---|---|---|---|"
    );
    for st in &p.calendar {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            md(&calendar_label(st)),
            st.state.as_str(),
            st.last_passed
                .as_ref()
                .map_or("never".into(), |a| time(a.at)),
            time(st.due_by)
        );
    }
    if !p.drills.is_empty() {
        let _ = writeln!(
            o,
            "\n## Last drill per scenario\n\n| Scenario | Verdict | RTO | RPO | Finished | Drill |\n|---|---|---|---|---|---|"
        );
        for d in &p.drills {
            let _ = writeln!(
                o,
                "| {} ({}) | {} | {} / {} | {} / {} | {} | `{}` |",
                md(&d.scenario),
                md(&d.tier),
                md(&d.verdict),
                opt_dur(d.rto_seconds),
                opt_dur(d.rto_objective_seconds),
                opt_dur(d.rpo_seconds),
                opt_dur(d.rpo_objective_seconds),
                time(d.finished_at),
                md(&d.id)
            );
        }
    }
    let _ = writeln!(o, "\n## Open findings\n");
    if p.findings.is_empty() {
        let _ = writeln!(o, "None.");
    }
    for f in &p.findings {
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

fn verification_html(r: &VerificationReport) -> String {
    let mut b = String::new();
    let v = r.verdict.as_str();
    let _ = write!(
        b,
        "<header><p class=\"muted\">lifeboat verification report</p><h1>Verification of {} <code>{}</code></h1></header>\
         <section class=\"verdict v-{v}\" id=\"verdict\"><span class=\"big v-{v}\">{v}</span><span>{}</span></section>",
        esc(&r.source),
        esc(&r.id),
        esc(&r.verdict_reason),
    );
    if let Some(e) = &r.error {
        let _ = write!(b, "<p class=\"v-failed\">Error: {}</p>", esc(e));
    }
    let _ = write!(
        b,
        "<h2>Restore time against the RTO objective</h2><div class=\"card\">{}\
         <p>Restore measured <strong>{}</strong> + overhead {} = RTO evidence <strong>{}</strong>; objective <strong>{}</strong>.</p></div>",
        html::bars(
            &[Bar {
                label: &r.source,
                value: r.rto_evidence_seconds,
                objective: r.rto_objective_seconds,
            }],
            dur
        ),
        opt_dur(r.restore_seconds),
        dur(r.rto_overhead_seconds),
        opt_dur(r.rto_evidence_seconds),
        opt_dur(r.rto_objective_seconds),
    );
    b.push_str("<h2>Checks</h2><table class=\"wide\" id=\"checks\"><thead><tr><th>Result</th><th>Check</th><th>Detail</th></tr></thead><tbody>");
    if r.checks.is_empty() {
        b.push_str("<tr><td colspan=\"3\">No checks were recorded.</td></tr>");
    }
    for c in &r.checks {
        let (cls, word) = if c.passed {
            ("v-pass", "pass")
        } else {
            ("v-failed", "FAIL")
        };
        let _ = write!(
            b,
            "<tr class=\"check\"><td data-h=\"Result\" class=\"{cls}\">{word}</td><td data-h=\"Check\">{}</td><td data-h=\"Detail\">{}</td></tr>",
            esc(&c.name),
            esc(&c.detail)
        );
    }
    b.push_str("</tbody></table>");
    let e = &r.evidence;
    let row = |k: &str, v: String| format!("<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    let code =
        |s: Option<&str>| s.map_or("–".to_string(), |s| format!("<code>{}</code>", esc(s)));
    let mut ev = String::new();
    ev.push_str(&row("Snapshot", code(Some(&e.snapshot_id))));
    if !e.snapshot_in_catalog {
        ev.push_str(&row(
            "Snapshot row",
            "gone from the catalog (pruned since): its manifest facts are not shown".into(),
        ));
    }
    ev.push_str(&row(
        "Snapshot created",
        esc(&e
            .snapshot_created_at
            .as_deref()
            .map_or("–".into(), text_time)),
    ));
    ev.push_str(&row("SHA-256", code(e.sha256.as_deref())));
    ev.push_str(&row(
        "Size",
        format!(
            "{} stored, {} raw",
            e.stored_bytes
                .map_or("–".into(), |b| super::output::bytes(b.max(0) as u64)),
            e.raw_bytes
                .map_or("–".into(), |b| super::output::bytes(b.max(0) as u64))
        ),
    ));
    ev.push_str(&row(
        "Store",
        format!(
            "{} (copies: {})",
            esc(e.store.as_deref().unwrap_or("–")),
            esc(&e.locations.join(", "))
        ),
    ));
    ev.push_str(&row(
        "Signer",
        match (&e.signer, &e.signature_algorithm) {
            (Some(s), a) => format!(
                "{} <code>{}</code>",
                esc(a.as_deref().unwrap_or("")),
                esc(s)
            ),
            _ => "unsigned".into(),
        },
    ));
    ev.push_str(&row(
        "Backup made by lifeboat",
        esc(e.backup_lifeboat_version.as_deref().unwrap_or("–")),
    ));
    for (k, v) in &e.facts {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        ev.push_str(&row(
            &format!("fact: {k}"),
            format!("<code>{}</code>", esc(&text)),
        ));
    }
    ev.push_str(&row(
        "Ran",
        format!(
            "{} sandbox on {} (pid {}), {} – {}",
            esc(&r.sandbox),
            esc(e.ran_on_host.as_deref().unwrap_or("unknown host")),
            e.ran_as_pid.map_or("?".into(), |p| p.to_string()),
            esc(&text_time(&r.started_at)),
            esc(&r
                .finished_at
                .as_deref()
                .map_or("unfinished".into(), text_time)),
        ),
    ));
    let _ = write!(
        b,
        "<h2>Evidence</h2><table id=\"evidence\"><tbody>{ev}</tbody></table>"
    );
    b.push_str(&footer(r.generated_at, &r.generated_by, r.schema));
    html::page(&format!("lifeboat verification {}", r.id), &b)
}

fn verification_md(r: &VerificationReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Verification {} of {}: **{}**\n\n{}\n",
        md(&r.id),
        md(&r.source),
        r.verdict.as_str().to_uppercase(),
        md(&r.verdict_reason)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(o, "Error: {}\n", md(e));
    }
    let _ = writeln!(
        o,
        "- Restore: {} + overhead {} = RTO evidence {} (objective {})\n- Snapshot: {} (sha256 {})\n- Signer: {}\n- Ran: {} sandbox on {}, {} – {}\n\n| Result | Check | Detail |\n|---|---|---|",
        opt_dur(r.restore_seconds),
        dur(r.rto_overhead_seconds),
        opt_dur(r.rto_evidence_seconds),
        opt_dur(r.rto_objective_seconds),
        md(&r.evidence.snapshot_id),
        md(r.evidence.sha256.as_deref().unwrap_or("–")),
        md(r.evidence.signer.as_deref().unwrap_or("unsigned")),
        md(&r.sandbox),
        md(r.evidence.ran_on_host.as_deref().unwrap_or("unknown host")),
        md(&text_time(&r.started_at)),
        md(&r
            .finished_at
            .as_deref()
            .map_or("unfinished".into(), text_time)),
    );
    for c in &r.checks {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            if c.passed { "pass" } else { "FAIL" },
            md(&c.name),
            md(&c.detail)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_durations_keep_tenths_under_a_minute() {
        assert_eq!(measured(9.14), "9.1s");
        assert_eq!(measured(10.0), "10s");
        assert_eq!(measured(0.25), "250ms");
        assert_eq!(measured(90.0), "1m30s");
    }

    #[test]
    fn markdown_escapes_table_and_markup() {
        assert_eq!(md("a|b <script>\nx"), "a\\|b \\<script\\> x");
    }
}
