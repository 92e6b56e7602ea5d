//! Self-contained HTML for the DR reports: the escaping function every piece of text goes
//! through, the page shell (inline CSS: light and dark, print, narrow screens; a CSP that
//! forbids scripts and any fetch), and hand-made inline SVG charts.
//!
//! # Guarantees
//! - [`esc`] is the only way text enters markup: `&`, `<`, `>`, `"` and `'` are replaced by
//!   entities, so text is safe both between tags and inside quoted attribute values.
//! - The page loads nothing: no script, no external stylesheet, font or image; the CSP
//!   (`default-src 'none'; style-src 'unsafe-inline'; img-src data:`) makes a browser refuse
//!   any that slipped in.
//! - Charts scale with the page (`viewBox`, no fixed pixel width) and print.

use std::fmt::Write as _;

/// `s` escaped for HTML text and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const CSS: &str = r#"
:root{--bg:#fff;--fg:#1b1f24;--muted:#5b6470;--line:#d5dae0;--card:#f6f8fa;
--ok:#1a7f37;--risk:#9a6700;--bad:#cf222e;--na:#6e7781;--bar:#0969da;--obj:#cf222e}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;
--line:#30363d;--card:#161b22;--ok:#3fb950;--risk:#d29922;--bad:#f85149;--na:#9198a1;
--bar:#4493f8;--obj:#f85149}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1rem;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.6rem 0 .5rem;
border-bottom:1px solid var(--line);padding-bottom:.2rem}
.muted{color:var(--muted)}code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
font-size:.85em;word-break:break-all}
.verdict{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;padding:1rem;
border-radius:.5rem;background:var(--card);border-left:.5rem solid var(--na)}
.verdict .big{font-size:1.8rem;font-weight:700;text-transform:uppercase}
.v-ok,.v-pass,.v-done,.v-passed{color:var(--ok);--accent:var(--ok)}
.v-at-risk,.v-due,.v-warning,.v-pending{color:var(--risk);--accent:var(--risk)}
.v-breached,.v-failed,.v-overdue,.v-never-done,.v-critical,.v-missed{color:var(--bad);--accent:var(--bad)}
.v-inconclusive,.v-running{color:var(--na);--accent:var(--na)}
.verdict[class*=v-],.cal span{border-color:var(--accent,var(--na))}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.03em;color:var(--muted)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.8rem}
.card{background:var(--card);border-radius:.5rem;padding:.7rem;break-inside:avoid}
.card h3{margin:0 0 .3rem;font-size:1rem}
svg{width:100%;height:auto;display:block}svg.bars{max-width:40rem}svg.bars text{font-size:13px}
svg text{fill:var(--fg);font-size:11px;font-family:system-ui,sans-serif}
.bar{fill:var(--bar)}.obj{stroke:var(--obj);stroke-width:2;stroke-dasharray:4 3}
.bar.v-breached,.cell.v-breached,.cell.v-lost{fill:var(--bad)}.bar.v-at-risk,.cell.v-indeterminate{fill:var(--risk)}
.bar.v-skipped,.cell.v-failed{fill:var(--na)}.cell.v-acknowledged{fill:var(--ok)}svg.strip{max-width:40rem}
.spark{fill:none;stroke:var(--bar);stroke-width:1.5}.dot{fill:var(--bar)}.axis{stroke:var(--line)}
.cal{display:flex;flex-wrap:wrap;gap:3px}.cal span{display:inline-block;min-width:1.6rem;
padding:0 .2rem;text-align:center;border-radius:3px;font-size:.7rem;border:1px solid}
@media (max-width:40rem){body{padding:.5rem;font-size:14px}
table.wide thead{display:none}table.wide tr{display:block;border-bottom:2px solid var(--line);
padding:.3rem 0}table.wide td{display:block;border:0;padding:.1rem .3rem}
table.wide td::before{content:attr(data-h) ": ";color:var(--muted);font-size:.8rem}}
@media print{:root{--bg:#fff;--fg:#000;--card:#fff;--line:#999}body{max-width:none;
padding:0;font-size:11pt}.card,.verdict{border:1px solid #999}h2{break-after:avoid}
tr,.card{break-inside:avoid}}
"#;

/// A whole page: `<head>` with the CSP and the style, then `body` (already escaped markup).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"generator\" content=\"lifeboat {}\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(title)
    )
}

/// One bar of [`bars`]: a label, a value (none: not measured) and its objective.
pub struct Bar<'a> {
    pub label: &'a str,
    pub value: Option<f64>,
    pub objective: Option<f64>,
}

/// One row of [`rto_rpo_cards`]: a service's measured RTO and RPO and their objectives.
pub struct Measured<'a> {
    pub label: &'a str,
    pub rto: Option<f64>,
    pub rto_objective: Option<f64>,
    pub rpo: Option<f64>,
    pub rpo_objective: Option<f64>,
}

/// Two cards side by side: measured RTO and (titled `rpo_title`) RPO per row, each as bars
/// against its objective.
pub fn rto_rpo_cards(
    rows: &[Measured<'_>],
    rpo_title: &str,
    fmt: impl Fn(f64) -> String,
) -> String {
    let bar = |value, objective, label| Bar {
        label,
        value,
        objective,
    };
    let rto: Vec<Bar> = rows
        .iter()
        .map(|m| bar(m.rto, m.rto_objective, m.label))
        .collect();
    let rpo: Vec<Bar> = rows
        .iter()
        .map(|m| bar(m.rpo, m.rpo_objective, m.label))
        .collect();
    format!(
        "<div class=\"grid\"><div class=\"card\"><h3>Measured RTO vs objective</h3>{}</div>\
         <div class=\"card\"><h3>{} vs objective</h3>{}</div></div>",
        bars(&rto, &fmt),
        esc(rpo_title),
        bars(&rpo, &fmt)
    )
}

/// Horizontal bars, each against its own objective (a dashed red line), scaled so the larger
/// of value and objective fits; values are labelled with `fmt`.
pub fn bars(items: &[Bar<'_>], fmt: impl Fn(f64) -> String) -> String {
    let row = 24.0;
    let (w, label_w) = (360.0, 96.0);
    let h = row * items.len().max(1) as f64 + 4.0;
    let mut s = format!(
        "<svg class=\"bars\" viewBox=\"0 0 {w} {h}\" role=\"img\" preserveAspectRatio=\"xMinYMin meet\">"
    );
    let plot = w - label_w - 64.0;
    for (i, b) in items.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        let max = b
            .value
            .unwrap_or(0.0)
            .max(b.objective.unwrap_or(0.0))
            .max(f64::MIN_POSITIVE);
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            y + 16.0,
            esc(&truncate(b.label, 14))
        );
        let class = match (b.value, b.objective) {
            (Some(v), Some(o)) if v > o => "v-breached",
            (Some(v), Some(o)) if v * 5.0 > o * 4.0 => "v-at-risk",
            (Some(_), _) => "",
            (None, _) => "v-inconclusive",
        };
        match b.value {
            Some(v) => {
                let bw = (v / max * plot).max(1.0);
                let _ = write!(
                    s,
                    "<rect class=\"bar\" x=\"{label_w}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"14\" rx=\"2\"><title>{}</title></rect>\
                     <text class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    y + 4.0,
                    esc(&fmt(v)),
                    label_w + plot + 6.0,
                    y + 16.0,
                    esc(&fmt(v))
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<text class=\"{class}\" x=\"{label_w}\" y=\"{:.1}\">not measured</text>",
                    y + 16.0
                );
            }
        }
        if let Some(o) = b.objective {
            let x = label_w + o / max * plot;
            let _ = write!(
                s,
                "<line class=\"obj\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"><title>objective {}</title></line>",
                y,
                y + 22.0,
                esc(&fmt(o))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A sparkline of `values` (gaps where `None`) with the objective as a dashed line.
pub fn sparkline(values: &[Option<f64>], objective: Option<f64>) -> String {
    let (w, h) = (240.0, 48.0);
    let max = values
        .iter()
        .flatten()
        .copied()
        .chain(objective)
        .fold(f64::MIN_POSITIVE, f64::max);
    let n = values.len().max(2) - 1;
    let x = |i: usize| i as f64 / n as f64 * (w - 4.0) + 2.0;
    let y = |v: f64| h - 2.0 - v / max * (h - 6.0);
    let mut s = format!("<svg viewBox=\"0 0 {w} {h}\" role=\"img\">");
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"0\" x2=\"{w}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        h - 2.0,
        h - 2.0
    );
    let mut path = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if pen_down { "L" } else { "M" },
                    x(i),
                    y(*v)
                );
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    if !path.is_empty() {
        let _ = write!(s, "<path class=\"spark\" d=\"{}\"/>", path.trim_end());
    }
    // A dot on every point: a lone value has no line to show it.
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            let _ = write!(
                s,
                "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/>",
                x(i),
                y(*v)
            );
        }
    }
    if let Some(o) = objective {
        let _ = write!(
            s,
            "<line class=\"obj\" x1=\"0\" x2=\"{w}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
            y(o),
            y(o)
        );
    }
    s.push_str("</svg>");
    s
}

/// One row of [`gantt`]: a label and its span in seconds from the start (none: not timed),
/// and a CSS class (a verdict class, or empty).
pub struct GanttRow<'a> {
    pub label: &'a str,
    pub span: Option<(f64, f64)>,
    pub class: &'a str,
}

/// A timeline: one row per phase, its span drawn on a common axis from 0 to the latest end
/// (at least `min_total` seconds), labelled with `fmt` of the duration.
pub fn gantt(rows: &[GanttRow<'_>], min_total: f64, fmt: impl Fn(f64) -> String) -> String {
    let row = 22.0;
    let (w, label_w) = (480.0, 96.0);
    let plot = w - label_w - 70.0;
    let total = rows
        .iter()
        .filter_map(|r| r.span.map(|(_, e)| e))
        .fold(min_total.max(f64::MIN_POSITIVE), f64::max);
    let h = row * rows.len().max(1) as f64 + 18.0;
    let mut s = format!(
        "<svg class=\"bars gantt\" viewBox=\"0 0 {w} {h}\" role=\"img\" preserveAspectRatio=\"xMinYMin meet\">"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            y + 14.0,
            esc(&truncate(r.label, 14))
        );
        match r.span {
            Some((a, b)) => {
                let x = label_w + a.max(0.0) / total * plot;
                let bw = ((b - a).max(0.0) / total * plot).max(1.5);
                let _ = write!(
                    s,
                    "<rect class=\"bar {}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"12\" rx=\"2\"><title>{}</title></rect>\
                     <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    esc(r.class),
                    y + 3.0,
                    esc(&fmt(b - a)),
                    (x + bw + 4.0).min(w - 60.0),
                    y + 14.0,
                    esc(&fmt(b - a))
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<text class=\"v-inconclusive\" x=\"{label_w}\" y=\"{:.1}\">not timed</text>",
                    y + 14.0
                );
            }
        }
    }
    let y = rows.len() as f64 * row + 4.0;
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{label_w}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
         <text x=\"{label_w}\" y=\"{:.1}\">0</text><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        label_w + plot,
        y + 12.0,
        label_w + plot - 30.0,
        y + 12.0,
        esc(&fmt(total))
    );
    s.push_str("</svg>");
    s
}

/// A strip of small squares, one per item, each with its class (and a title).
pub fn strip(cells: &[(&str, String)]) -> String {
    let per_row = 50usize;
    let size = 8.0;
    let rows = cells.len().div_ceil(per_row).max(1);
    let w = per_row as f64 * (size + 1.0);
    let h = rows as f64 * (size + 1.0);
    let mut s = format!("<svg class=\"strip\" viewBox=\"0 0 {w} {h}\" role=\"img\">");
    for (i, (class, title)) in cells.iter().enumerate() {
        let x = (i % per_row) as f64 * (size + 1.0);
        let y = (i / per_row) as f64 * (size + 1.0);
        let _ = write!(
            s,
            "<rect class=\"cell {}\" x=\"{x:.0}\" y=\"{y:.0}\" width=\"{size}\" height=\"{size}\"><title>{}</title></rect>",
            esc(class),
            esc(title)
        );
    }
    s.push_str("</svg>");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("plain-name_1"), "plain-name_1");
        assert_eq!(esc("ünï ✓"), "ünï ✓");
    }

    #[test]
    fn charts_escape_labels_and_page_has_csp() {
        let svg = bars(
            &[Bar {
                label: "<script>x</script>",
                value: Some(5.0),
                objective: Some(4.0),
            }],
            |v| format!("{v}s"),
        );
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("v-breached"));
        let p = page("<t>", "");
        assert!(p.contains(CSP) && p.contains("<title>&lt;t&gt;</title>"));
        assert!(!p.contains("<script"));
        let spark = sparkline(&[None, Some(1.0), Some(2.0), None, Some(0.5)], Some(3.0));
        assert_eq!(spark.matches('M').count(), 2, "{spark}");
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_markup(s in ".*") {
            let e = esc(&s);
            prop_assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
            // Every `&` starts an entity we wrote.
            let unescaped = e.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"")
                .replace("&#39;", "'").replace("&amp;", "&");
            prop_assert_eq!(unescaped, s);
        }
    }
}
