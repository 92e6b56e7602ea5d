// `lifeboat report posture|verification` from real runs (a files source backed up and
// verified through the binary), in every format, and opened in headless Chromium: the DOM
// holds the verdict, every source row and the objectives; a screenshot is not blank; the CSP
// blocks an injected external image; print-to-PDF works; catalog text is escaped.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::Env;
use common::browser::{self, Browser, Probe, colour_stats};
use serde_json::Value;

/// Two sources: `tree` backed up and verified, `empty` never backed up (breached).
fn setup() -> (Env, String) {
    let env = Env::new();
    std::fs::create_dir_all(env.path("data/sub")).unwrap();
    std::fs::write(env.path("data/a.txt"), "hello").unwrap();
    std::fs::write(env.path("data/sub/b.bin"), vec![7u8; 10_000]).unwrap();
    std::fs::create_dir_all(env.path("other")).unwrap();
    env.write_config(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: { url: \"file://./store\" }\n\
         encryption:\n  recipients: [\"{recipient}\"]\n  identity_file: ./age.key\n\
         sources:\n\
         \x20 - name: tree\n    kind: files\n    path: ./data\n    store: local\n    objectives: { rpo: 6h, rto: 45m }\n\
         \x20 - name: empty\n    kind: files\n    path: ./other\n    store: local\n    objectives: { rpo: 1h, rto: 20m }\n",
    );
    env.ok(&["backup", "tree"]);
    env.ok(&["verify", "tree"]);
    let list: Value =
        serde_json::from_str(&env.ok(&["verifications", "list", "--output", "json"])).unwrap();
    let id = list[0]["id"].as_str().expect("verification id").to_string();
    (env, id)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn posture_and_verification_in_every_format() {
    let (env, id) = setup();

    let json: Value =
        serde_json::from_str(&env.ok(&["report", "posture", "--since", "7d", "-o", "json"]))
            .unwrap();
    assert_eq!(json["schema"], "lifeboat.report.posture/v1");
    assert_eq!(json["verdict"], "breached");
    let sources = json["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["status"]["source"], "tree");
    assert_eq!(sources[0]["status"]["rto_objective_seconds"], 2700.0);
    assert_eq!(sources[0]["backups_complete"], 1);
    assert_eq!(sources[0]["restores"].as_array().unwrap().len(), 1);
    assert_eq!(sources[0]["last_verification"]["id"], id.as_str());
    assert_eq!(sources[1]["status"]["verdict"], "breached");
    let calendar = json["calendar"].as_array().unwrap();
    let state = |kind: &str, scope: Value| {
        calendar
            .iter()
            .find(|c| c["requirement"]["kind"] == kind && c["requirement"]["scope"] == scope)
            .unwrap_or_else(|| panic!("{kind} {scope} in {calendar:#?}"))["state"]
            .clone()
    };
    assert_eq!(state("restore-verification", "tree".into()), "done");
    assert_eq!(state("restore-verification", "empty".into()), "never-done");
    assert_eq!(state("failover", Value::Null), "never-done");
    assert_eq!(state("region-drill", Value::Null), "never-done");
    let findings = json["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["severity"] == "critical" && f["source"] == "empty"),
        "{findings:#?}"
    );

    // Markdown on stdout by default; HTML into a file by its extension, mode 0600.
    let md = env.ok(&["report", "posture"]);
    assert!(md.starts_with("# Recovery posture: **BREACHED**"), "{md}");
    assert!(
        md.contains("| tree | ok |") || md.contains("| tree | at-risk |"),
        "{md}"
    );
    let html = env.path("posture.html");
    env.ok(&["report", "posture", "--to-file", html.to_str().unwrap()]);
    assert_eq!(mode(&html), 0o600);
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.starts_with("<!DOCTYPE html>"));
    assert!(!text.contains("<script") && !text.contains("http://") && !text.contains("https://"));

    let v: Value =
        serde_json::from_str(&env.ok(&["report", "verification", &id, "--output", "json"]))
            .unwrap();
    assert_eq!(v["schema"], "lifeboat.report.verification/v1");
    assert_eq!(v["verdict"], "pass", "{v:#}");
    assert_eq!(v["rto_objective_seconds"], 2700.0);
    assert!(v["checks"].as_array().unwrap().len() >= 3, "{v:#}");
    let snapshot_sha = v["evidence"]["sha256"].as_str().unwrap();
    assert_eq!(snapshot_sha.len(), 64);
    assert!(v["evidence"]["ran_on_host"].as_str().is_some(), "{v:#}");
    assert!(v["evidence"]["facts"]["files"].is_number(), "{v:#}");
    let md = env.ok(&["report", "verification", &id, "-o", "md"]);
    assert!(md.contains("**PASS**") && md.contains(snapshot_sha), "{md}");

    let err = env.fails(&["report", "verification", "verify-nope"]);
    assert!(err.contains("no verification `verify-nope`"), "{err}");
    let err = env.fails(&["report", "publish", "posture"]);
    assert!(err.contains("no `reports:` section"), "{err}");
}

#[test]
fn reports_render_in_a_real_browser() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let (env, id) = setup();
    let posture = env.path("posture.html");
    env.ok(&[
        "report",
        "posture",
        "-o",
        "html",
        "--to-file",
        posture.to_str().unwrap(),
    ]);
    let dom = browser.dump_dom(&posture);
    assert!(dom.contains("id=\"verdict\""), "{dom}");
    assert!(dom.contains(">breached<"), "verdict missing: {dom}");
    for row in ["tree", "empty"] {
        assert!(
            dom.contains(&format!("<strong>{row}</strong>")),
            "row {row}: {dom}"
        );
    }
    // The objectives: tree 6h / 45m, empty 1h / 20m.
    for objective in ["6h", "45m", "1h", "20m"] {
        assert!(
            dom.contains(&format!("/ {objective}<")),
            "objective {objective}: {dom}"
        );
    }
    assert!(
        dom.contains("never-done") && dom.contains("region drill"),
        "{dom}"
    );

    let png = env.path("posture.png");
    browser.screenshot(&posture, &png, 1000, 1400);
    let (colours, top) = colour_stats(&std::fs::read(&png).unwrap());
    assert!(
        colours > 8 && top < 0.98,
        "blank screenshot: {colours} colours, top {top}"
    );
    // A phone-sized viewport renders too.
    let phone = env.path("phone.png");
    browser.screenshot(&posture, &phone, 390, 844);
    let (colours, _) = colour_stats(&std::fs::read(&phone).unwrap());
    assert!(colours > 8, "blank phone screenshot");
    browser.print_to_pdf(&posture, &env.path("posture.pdf"));
    // Light by default, dark when the reader prefers it.
    let luma = |c: [u8; 3]| u32::from(c[0]) + u32::from(c[1]) + u32::from(c[2]);
    let (_, _, light_bg) = browser::colours(&std::fs::read(&png).unwrap());
    let dark = env.path("dark.png");
    browser.screenshot_with(&posture, &dark, 1000, 1400, &["--force-dark-mode"]);
    let (colours_dark, _, dark_bg) = browser::colours(&std::fs::read(&dark).unwrap());
    assert!(colours_dark > 8, "blank dark screenshot");
    assert!(
        luma(light_bg) > 600 && luma(dark_bg) < 150,
        "light {light_bg:?}, dark {dark_bg:?}"
    );

    let verification = env.path("verification.html");
    env.ok(&[
        "report",
        "verification",
        &id,
        "--to-file",
        verification.to_str().unwrap(),
    ]);
    let dom = browser.dump_dom(&verification);
    assert!(dom.contains(">pass<"), "{dom}");
    for check in ["files", "bytes", "tree hash"] {
        assert!(dom.contains(&format!(">{check}<")), "check {check}: {dom}");
    }
    assert!(dom.contains("45m"), "{dom}");
    browser.print_to_pdf(&verification, &env.path("verification.pdf"));
}

#[test]
fn csp_blocks_an_injected_external_image() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let (env, _) = setup();
    let page = env.path("posture.html");
    env.ok(&["report", "posture", "--to-file", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    let probe = Probe::start();
    let img = format!("<img src=\"http://127.0.0.1:{}/leak.png\">", probe.port);
    let injected = env.path("injected.html");
    std::fs::write(&injected, html.replace("<body>", &format!("<body>{img}"))).unwrap();
    let dom = browser.dump_dom(&injected);
    assert!(dom.contains("leak.png"), "the image is in the page: {dom}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        probe.seen(),
        Vec::<String>::new(),
        "the CSP let a fetch through"
    );

    // The probe works: without the CSP, the same page fetches the image.
    let start = html
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let end = start + html[start..].find('>').unwrap() + 1;
    let open =
        format!("{}{}", &html[..start], &html[end..]).replace("<body>", &format!("<body>{img}"));
    let control = env.path("control.html");
    std::fs::write(&control, open).unwrap();
    browser.dump_dom(&control);
    common::wait_until(
        "the control page fetches the image",
        std::time::Duration::from_secs(10),
        || !probe.seen().is_empty(),
    );
}

#[test]
fn catalog_text_is_escaped() {
    let (env, id) = setup();
    let probe = Probe::start();
    let evil = format!(
        "<script>alert(1)</script><img src=\"http://127.0.0.1:{}/x.png\">",
        probe.port
    );
    let checks = serde_json::json!([{"name": "<script>document.title='pwned'</script>", "passed": false, "detail": evil}]);
    let sql = format!(
        "UPDATE verifications SET source = '{e}', status = 'failed', error = '{e}', checks = '{c}' WHERE id = '{id}';",
        e = evil.replace('\'', "''"),
        c = checks.to_string().replace('\'', "''"),
    );
    let out = std::process::Command::new("sqlite3")
        .arg(env.path("catalog.db"))
        .arg(&sql)
        .output()
        .expect("run sqlite3 (apt sqlite3, see scripts/setup.sh)");
    assert!(out.status.success(), "{}", common::text(&out.stderr));

    let page = env.path("evil.html");
    env.ok(&[
        "report",
        "verification",
        &id,
        "--to-file",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let md = env.ok(&["report", "verification", &id, "-o", "md"]);
    assert!(!md.contains("<script>"), "{md}");
    let json: Value =
        serde_json::from_str(&env.ok(&["report", "verification", &id, "-o", "json"])).unwrap();
    assert_eq!(json["source"], evil.as_str());
    assert_eq!(json["verdict"], "failed");

    let Some(browser) = Browser::find() else {
        return;
    };
    let dom = browser.dump_dom(&page);
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains(">failed<"), "{dom}");
    assert!(!dom.contains("pwned</title>"), "{dom}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(probe.seen(), Vec::<String>::new());
}

/// Kills the process on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (code, head.to_lowercase(), body.to_string())
}

#[test]
fn the_daemon_serves_reports_behind_the_api_token() {
    let (env, id) = setup();
    let (_daemon, port) = daemon_with(&env, "");
    assert_eq!(http_get(port, "/reports/posture", None).0, 401);
    assert_eq!(http_get(port, "/reports/posture", Some("wrong")).0, 401);
    let (code, head, body) = http_get(port, "/reports/posture", Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(
        body.contains("<strong>tree</strong>") && body.contains(">breached<"),
        "{body}"
    );
    let (code, _, body) = http_get(
        port,
        "/reports/posture?format=json&since=7d",
        Some("s3cret"),
    );
    assert_eq!(code, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["schema"], "lifeboat.report.posture/v1");
    assert_eq!(json["period"]["seconds"], 604800.0);
    let (code, _, body) = http_get(
        port,
        &format!("/reports/verifications/{id}?format=md"),
        Some("s3cret"),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("**PASS**"), "{body}");
    assert_eq!(
        http_get(port, "/reports/verifications/verify-nope", Some("s3cret")).0,
        404
    );
    assert_eq!(
        http_get(port, "/reports/posture?format=pdf", Some("s3cret")).0,
        400
    );
    assert_eq!(
        http_get(port, "/reports/posture?since=soon", Some("s3cret")).0,
        400
    );
}

/// A real planned switchover (PostgreSQL primary → streaming standby, DNS on BIND), then
/// `lifeboat report failover 1` in every format and in Chromium.
#[test]
fn failover_report_from_a_real_switchover() {
    let s = common::failover::setup();
    let env = &s.env;
    // Reports published into the store after each failover.
    let config = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        format!("{config}reports: {{}}\n"),
    )
    .unwrap();
    let out = env.ok(&[
        "failover",
        "execute",
        "--to",
        "secondary",
        "--yes",
        "--output",
        "json",
    ]);
    let outcome: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcome["term"], 1, "{outcome}");
    // The failover's report was published: in the store, its SHA-256 in the catalog.
    let stored = std::fs::read(env.path("store/reports/failover/failover-term-1.html"))
        .expect("the failover report in the store");
    let row = std::process::Command::new("sqlite3")
        .arg(env.path("catalog.db"))
        .arg(
            "SELECT sha256 FROM published_reports WHERE id = 'failover-term-1' AND format = 'html'",
        )
        .output()
        .expect("sqlite3");
    assert_eq!(common::text(&row.stdout).trim(), sha256_hex(&stored));
    assert!(String::from_utf8_lossy(&stored).contains("<strong>orders-db</strong>"));

    let json: Value =
        serde_json::from_str(&env.ok(&["report", "failover", "1", "-o", "json"])).unwrap();
    assert_eq!(json["schema"], "lifeboat.report.failover/v1");
    assert_eq!(json["verdict"], "pass", "{json:#}");
    assert_eq!(json["verdict_objective"], "RTO 5m of orders-db", "{json:#}");
    assert_eq!(json["from_site"], "primary");
    assert_eq!(json["to_site"], "secondary");
    assert_eq!(json["mode"], "planned");
    assert!(
        json["run_by"].as_str().is_some_and(|r| r.contains('@')),
        "{json:#}"
    );
    let rto = json["measured_rto_seconds"].as_f64().expect("measured RTO");
    assert!(rto > 0.0 && rto < 240.0, "{rto}");
    let services = json["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{json:#}");
    assert_eq!(services[0]["service"], "orders-db");
    assert_eq!(services[0]["kind"], "postgres");
    assert_eq!(services[0]["rto_objective_seconds"], 300.0);
    assert_eq!(services[0]["rpo_objective_seconds"], 60.0);
    assert_eq!(services[0]["rpo_seconds"], 0.0);
    assert_eq!(services[0]["zero_loss"], true);
    let phases: Vec<&str> = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "detect", "decide", "fence", "promote", "repoint", "dns", "verify"
        ]
    );
    for p in json["timeline"].as_array().unwrap() {
        let status = p["status"].as_str().unwrap();
        match p["phase"].as_str().unwrap() {
            "detect" => assert_eq!(status, "not-recorded"),
            // No other replica to repoint: the step is done (nothing to do) or skipped.
            "repoint" => assert!(matches!(status, "done" | "skipped"), "{p}"),
            _ => {
                assert_eq!(status, "done", "{p}");
                assert!(
                    p["started_at"].is_string() && p["seconds"].is_number(),
                    "{p}"
                );
            }
        }
    }
    assert_eq!(json["dns"][0]["name"], "api.example.test.");
    assert_eq!(json["dns"][0]["to"][0], "192.0.2.20");

    let md = env.ok(&["report", "failover", "1"]);
    assert!(
        md.starts_with("# Failover term 1: primary → secondary: **PASS**"),
        "{md}"
    );
    assert!(md.contains("| orders-db | pass |"), "{md}");
    // The posture's calendar counts it as this month's failover.
    let posture: Value =
        serde_json::from_str(&env.ok(&["report", "posture", "-o", "json"])).unwrap();
    let fo = posture["calendar"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["requirement"]["kind"] == "failover")
        .expect("failover requirement")
        .clone();
    assert_eq!(fo["state"], "done", "{fo:#}");
    assert_eq!(fo["last_passed"]["id"], "failover-term-1", "{fo:#}");
    // Killed between finishing and publishing (the rows are gone): the daemon publishes it.
    let out = std::process::Command::new("sqlite3")
        .arg(env.path("catalog.db"))
        .arg("DELETE FROM published_reports")
        .output()
        .expect("sqlite3");
    assert!(out.status.success());
    {
        let (_daemon, port) = daemon_with(env, "");
        common::wait_until(
            "the failover report to be published again",
            std::time::Duration::from_secs(60),
            || {
                published(port)
                    .iter()
                    .any(|r| r["id"] == "failover-term-1" && r["format"] == "html")
            },
        );
        let list = published(port);
        let row = list
            .iter()
            .find(|r| r["id"] == "failover-term-1" && r["format"] == "html")
            .unwrap();
        assert_eq!(row["kind"], "failover");
        assert_eq!(row["subject"], "1");
        let (code, _, body) = http_get(port, row["href"].as_str().unwrap(), Some("s3cret"));
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("<strong>orders-db</strong>"), "{body}");
    }
    let err = env.fails(&["report", "failover", "9"]);
    assert!(err.contains("no failover `9`"), "{err}");

    let page = env.path("failover.html");
    env.ok(&[
        "report",
        "failover",
        "1",
        "--to-file",
        page.to_str().unwrap(),
    ]);
    assert_eq!(mode(&page), 0o600);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script") && !html.contains("http://"));

    // Text from the catalog is escaped.
    let probe = Probe::start();
    let evil = format!(
        "<script>alert(1)</script><img src=\"http://127.0.0.1:{}/x.png\">",
        probe.port
    );
    let sql = format!(
        "UPDATE failovers SET from_site = '{e}' WHERE term = 1; UPDATE failover_steps SET detail = '{e}' WHERE term = 1 AND step = 'promote';",
        e = evil.replace('\'', "''"),
    );
    let out = std::process::Command::new("sqlite3")
        .arg(env.path("catalog.db"))
        .arg(&sql)
        .output()
        .expect("run sqlite3 (apt sqlite3, see scripts/setup.sh)");
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let evil_page = env.path("evil.html");
    env.ok(&[
        "report",
        "failover",
        "1",
        "--to-file",
        evil_page.to_str().unwrap(),
    ]);
    let evil_html = std::fs::read_to_string(&evil_page).unwrap();
    assert!(!evil_html.contains("<script") && !evil_html.contains("<img"));
    assert!(evil_html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let md = env.ok(&["report", "failover", "1", "-o", "md"]);
    assert!(!md.contains("<script>"), "{md}");

    let Some(browser) = Browser::find() else {
        return;
    };
    let dom = browser.dump_dom(&page);
    assert!(
        dom.contains("id=\"verdict\"") && dom.contains(">pass<"),
        "{dom}"
    );
    assert!(dom.contains("<strong>orders-db</strong>"), "{dom}");
    for objective in ["5m", "1m"] {
        assert!(
            dom.contains(&format!("/ {objective}<")),
            "objective {objective}: {dom}"
        );
    }
    for phase in ["fence", "promote", "dns", "verify"] {
        assert!(
            dom.contains(&format!("<strong>{phase}</strong>")),
            "{phase}: {dom}"
        );
    }
    let png = env.path("failover.png");
    browser.screenshot(&page, &png, 1000, 1400);
    let (colours, top) = colour_stats(&std::fs::read(&png).unwrap());
    assert!(
        colours > 8 && top < 0.98,
        "blank: {colours} colours, top {top}"
    );
    browser.print_to_pdf(&page, &env.path("failover.pdf"));
    let phone = env.path("failover-phone.png");
    browser.screenshot(&page, &phone, 390, 844);
    assert!(
        colour_stats(&std::fs::read(&phone).unwrap()).0 > 8,
        "blank phone screenshot"
    );
    // The CSP blocks an injected external image.
    let img = format!("<img src=\"http://127.0.0.1:{}/leak.png\">", probe.port);
    let injected = env.path("injected.html");
    std::fs::write(&injected, html.replace("<body>", &format!("<body>{img}"))).unwrap();
    let dom = browser.dump_dom(&injected);
    assert!(dom.contains("leak.png"), "{dom}");
    let dom = browser.dump_dom(&evil_page);
    assert!(!dom.contains("<script") && dom.contains(">pass<"), "{dom}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(probe.seen(), Vec::<String>::new(), "a fetch got through");
}

/// A realistic drill journal as the drill runner writes it: a primary killed, the standby
/// promoted, DNS switched, canary writes every 100 ms, hash-chained events.
fn drill_journal(scenario: &str) -> lifeboat::model::journal::DrillJournal {
    use lifeboat::model::journal::*;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let phase = |p: &str, ms: i64, d: &str| TimelineEntry {
        phase: p.into(),
        at: at(ms),
        detail: d.into(),
    };
    let mut writes = Vec::new();
    for seq in 0..300u64 {
        let outcome = match seq {
            100..=102 => "indeterminate",
            103..=190 => "failed",
            99 => "lost",
            _ => "acknowledged",
        };
        writes.push(CanaryWrite {
            seq,
            sent_at: at(seq as i64 * 100),
            outcome: outcome.into(),
        });
    }
    let count = |o: &str| writes.iter().filter(|w| w.outcome == o).count();
    let mut j = DrillJournal {
        schema: DRILL_JOURNAL_SCHEMA.into(),
        id: "drill-20261205-0001".into(),
        scenario: scenario.into(),
        tier: "zone".into(),
        started_at: t0,
        finished_at: Some(at(60_000)),
        run_by: "sre@bastion-1".into(),
        dry_run: false,
        verdict: "at-risk".into(),
        reasons: vec!["orders-db RTO 9.1s is 91 % of its 10s objective".into()],
        objectives: JournalObjectives {
            rto_seconds: Some(10.0),
            rpo_seconds: Some(1.0),
        },
        services: vec![
            ServiceMeasure {
                service: "orders-db".into(),
                rto_seconds: Some(9.1),
                rpo_seconds: Some(0.1),
                rto_objective_seconds: Some(10.0),
                rpo_objective_seconds: Some(1.0),
                verdict: "at-risk".into(),
            },
            ServiceMeasure {
                service: "sessions-redis".into(),
                rto_seconds: Some(2.5),
                rpo_seconds: Some(0.0),
                rto_objective_seconds: Some(30.0),
                rpo_objective_seconds: Some(5.0),
                verdict: "pass".into(),
            },
        ],
        timeline: vec![
            phase("fault", 10_000, "kill -9 postgres on db-a"),
            phase("detect", 12_000, "liveness: 3 probes failed"),
            phase("decide", 12_500, "promote db-b (lag 0 B)"),
            phase("fence", 13_800, "db-a read-only"),
            phase("promote", 16_900, "db-b promoted"),
            phase("dns", 18_700, "api.example.test. → 192.0.2.20"),
            phase("first-write", 19_100, "canary 191 acknowledged"),
            phase("rollback", 55_000, "db-a rejoined as standby"),
        ],
        canary: Some(CanaryStrip {
            resolution_ms: 100,
            sent: writes.len(),
            acknowledged: count("acknowledged"),
            lost: count("lost"),
            indeterminate: count("indeterminate"),
            writes,
        }),
        faults: vec![FaultRecord {
            name: "kill-primary".into(),
            action: "kill".into(),
            targets: vec!["db-a".into()],
            applied_at: Some(at(10_000)),
            reverted_at: Some(at(55_000)),
            reverted: true,
        }],
        findings: vec![JournalFinding {
            severity: "warning".into(),
            text: "orders-db recovered at 91 % of its RTO".into(),
        }],
        evidence: vec!["snapshot orders-db-20261205T000000Z".into()],
        events: vec![],
        journal_sha256: GENESIS.into(),
    };
    for (ms, kind, detail) in [
        (0, "started", "scenario zone-loss"),
        (10_000, "fault-intent", "kill -9 postgres on db-a"),
        (10_010, "fault-applied", "kill -9 postgres on db-a"),
        (19_100, "recovered", "first canary acknowledged"),
        (55_000, "reverted", "db-a rejoined"),
        (60_000, "finished", "at-risk"),
    ] {
        j.push_event(at(ms), kind, detail);
    }
    j
}

#[test]
fn drill_report_from_a_journal_in_a_real_browser() {
    let env = Env::new();
    let j = drill_journal("zone-loss <script>alert(1)</script>");
    let file = env.path("journal.json");
    std::fs::write(&file, serde_json::to_string_pretty(&j).unwrap()).unwrap();
    let f = file.to_str().unwrap();
    // Needs no config.
    let json: Value =
        serde_json::from_str(&env.ok(&["report", "drill", "--journal", f, "-o", "json"])).unwrap();
    assert_eq!(json["schema"], "lifeboat.report.drill/v1");
    assert_eq!(json["verdict"], "at-risk");
    assert_eq!(json["verdict_objective"], "RTO 10s, RPO 1s");
    assert_eq!(json["chain_verified"], true);
    assert_eq!(json["journal_sha256"], j.journal_sha256.as_str());
    assert_eq!(json["journal"]["services"].as_array().unwrap().len(), 2);
    let md = env.ok(&["report", "drill", "--journal", f]);
    assert!(
        md.contains("**AT-RISK**") && md.contains("chain verified"),
        "{md}"
    );
    assert!(!md.contains("<script>"), "{md}");

    let page = env.path("drill.html");
    env.ok(&[
        "report",
        "drill",
        "--journal",
        f,
        "--to-file",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script") && !html.contains("http://"));
    assert!(html.contains(&j.journal_sha256));

    // A tampered journal: the chain does not hold, the verdict is not trusted.
    let mut bad = j.clone();
    bad.events[2].detail = "nothing happened".into();
    let bad_file = env.path("bad.json");
    std::fs::write(&bad_file, serde_json::to_string(&bad).unwrap()).unwrap();
    let bad_json: Value = serde_json::from_str(&env.ok(&[
        "report",
        "drill",
        "--journal",
        bad_file.to_str().unwrap(),
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(bad_json["chain_verified"], false);
    assert_eq!(bad_json["verdict"], "inconclusive");
    let err = env.fails(&[
        "report",
        "drill",
        "--journal",
        env.path("none.json").to_str().unwrap(),
    ]);
    assert!(err.contains("cannot read the drill journal"), "{err}");

    let Some(browser) = Browser::find() else {
        return;
    };
    let dom = browser.dump_dom(&page);
    assert!(
        dom.contains("id=\"verdict\"") && dom.contains(">at-risk<"),
        "{dom}"
    );
    for service in ["orders-db", "sessions-redis"] {
        assert!(
            dom.contains(&format!("<strong>{service}</strong>")),
            "{service}: {dom}"
        );
    }
    for objective in ["10s", "1s", "30s", "5s"] {
        assert!(
            dom.contains(&format!("/ {objective}<")),
            "objective {objective}: {dom}"
        );
    }
    for phase in [
        "fault",
        "detect",
        "decide",
        "fence",
        "promote",
        "dns",
        "first-write",
        "rollback",
    ] {
        assert!(
            dom.contains(&format!("<strong>{phase}</strong>")),
            "{phase}: {dom}"
        );
    }
    assert!(
        dom.contains("202 acknowledged") || dom.contains("acknowledged</span>"),
        "{dom}"
    );
    assert!(dom.contains(">verified</span>"), "{dom}");
    assert!(!dom.contains("<script"), "{dom}");
    let png = env.path("drill.png");
    browser.screenshot(&page, &png, 1000, 1600);
    let (colours, top) = colour_stats(&std::fs::read(&png).unwrap());
    assert!(
        colours > 8 && top < 0.98,
        "blank: {colours} colours, top {top}"
    );
    browser.print_to_pdf(&page, &env.path("drill.pdf"));
    // On a phone, and dark when the reader prefers it.
    let phone = env.path("drill-phone.png");
    browser.screenshot(&page, &phone, 390, 844);
    assert!(
        colour_stats(&std::fs::read(&phone).unwrap()).0 > 8,
        "blank phone screenshot"
    );
    let luma = |c: [u8; 3]| u32::from(c[0]) + u32::from(c[1]) + u32::from(c[2]);
    let dark = env.path("drill-dark.png");
    browser.screenshot_with(&page, &dark, 1000, 1600, &["--force-dark-mode"]);
    let (colours, _, bg) = browser::colours(&std::fs::read(&dark).unwrap());
    assert!(
        colours > 8 && luma(bg) < 150,
        "dark: {colours} colours, background {bg:?}"
    );
    let probe = Probe::start();
    let img = format!("<img src=\"http://127.0.0.1:{}/leak.png\">", probe.port);
    let injected = env.path("injected.html");
    std::fs::write(&injected, html.replace("<body>", &format!("<body>{img}"))).unwrap();
    assert!(browser.dump_dom(&injected).contains("leak.png"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        probe.seen(),
        Vec::<String>::new(),
        "the CSP let a fetch through"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Starts `lifeboat run` with `extra` appended to the config; returns it and its port.
fn daemon_with(env: &Env, extra: &str) -> (Killed, u16) {
    let port = common::servers::free_port();
    let config = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        format!("{config}{extra}daemon:\n  listen: \"127.0.0.1:{port}\"\n  api_token: s3cret\n"),
    )
    .unwrap();
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let daemon = Killed(
        env.command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start lifeboat run"),
    );
    common::wait_until(
        "the daemon to listen",
        std::time::Duration::from_secs(60),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    (daemon, port)
}

fn published(port: u16) -> Vec<Value> {
    let (code, _, body) = http_get(port, "/reports", Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["reports"].as_array().unwrap().clone()
}

#[test]
fn the_daemon_publishes_the_weekly_posture_report_into_the_store() {
    let (env, _) = setup();
    let (_daemon, port) = daemon_with(&env, "reports:\n  schedule: \"0 6 * * 1\"\n");
    let check = env.ok(&["config", "check"]);
    assert!(
        check.contains("reports: posture report on \"0 6 * * 1\" (covering 7d)")
            && check.contains("into store local"),
        "{check}"
    );
    // Never published: the missed occurrence is published at start.
    common::wait_until(
        "the posture report to be published",
        std::time::Duration::from_secs(60),
        || published(port).len() == 2,
    );
    assert_eq!(http_get(port, "/reports", None).0, 401);
    let list = published(port);
    let html_row = list.iter().find(|r| r["format"] == "html").unwrap();
    let json_row = list.iter().find(|r| r["format"] == "json").unwrap();
    assert_eq!(html_row["kind"], "posture");
    let id = html_row["id"].as_str().unwrap();
    assert!(id.starts_with("posture-"), "{id}");
    let key = html_row["object_key"].as_str().unwrap();
    assert_eq!(key, format!("reports/posture/{id}.html"));
    // In the store, with the SHA-256 the catalog recorded.
    let stored = std::fs::read(env.path(&format!("store/{key}"))).unwrap();
    assert_eq!(sha256_hex(&stored), html_row["sha256"].as_str().unwrap());
    let (code, head, body) = http_get(port, html_row["href"].as_str().unwrap(), Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(
        body.contains("<strong>tree</strong>") && body.contains(">breached<"),
        "{body}"
    );
    let (code, _, body) = http_get(port, json_row["href"].as_str().unwrap(), Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["schema"], "lifeboat.report.posture/v1");
    assert_eq!(json["period"]["seconds"], 604800.0);
    assert_eq!(
        http_get(port, "/reports/published/nope?format=html", Some("s3cret")).0,
        404
    );
    assert_eq!(
        http_get(port, html_row["href"].as_str().unwrap(), None).0,
        401
    );
    // Bytes altered in the store: refused, not served.
    std::fs::write(
        env.path(&format!("store/{key}")),
        String::from_utf8_lossy(&stored).replace("breached", "ok"),
    )
    .unwrap();
    let (code, _, body) = http_get(port, html_row["href"].as_str().unwrap(), Some("s3cret"));
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("does not match the catalog's SHA-256"),
        "{body}"
    );
}

#[test]
fn reports_are_object_locked_on_a_locked_moto_store() {
    let moto = common::MotoServer::start();
    let s3 = common::s3::S3::new(&moto);
    s3.create_locked_bucket("reports");
    let (env, _) = setup();
    let extra = "reports:\n  store: audit\n";
    let config = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    let config = config.replace(
        "stores:\n  local: { url: \"file://./store\" }\n",
        &format!(
            "stores:\n  local: {{ url: \"file://./store\" }}\n  audit: {{ url: \"s3://reports/lb\", region: us-east-1, endpoint: \"{}\", object_lock: {{ mode: compliance, days: 2 }} }}\n",
            moto.endpoint()
        ),
    );
    std::fs::write(env.path("lifeboat.yaml"), config).unwrap();
    let (_daemon, port) = daemon_with(&env, extra);
    let err = {
        let yaml = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
        std::fs::write(
            env.path("bad.yaml"),
            yaml.replace("store: audit", "store: audti"),
        )
        .unwrap();
        env.fails(&["--config", "bad.yaml", "config", "check"])
    };
    assert!(
        err.contains("reports.store") && err.contains("no store is called `audti`"),
        "{err}"
    );
    common::wait_until(
        "the posture report to be published",
        std::time::Duration::from_secs(60),
        || published(port).len() == 2,
    );
    // A drill's report, published by hand (as the drill runner does), locked too; again:
    // nothing new.
    let journal = env.path("journal.json");
    std::fs::write(
        &journal,
        serde_json::to_string(&drill_journal("zone-loss")).unwrap(),
    )
    .unwrap();
    let out = env.ok(&[
        "report",
        "publish",
        "drill",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert!(
        out.contains("published drill-20261205-0001 (html) to store audit: reports/drill/drill-20261205-0001.html")
            && out.contains("locked until"),
        "{out}"
    );
    assert_eq!(
        env.ok(&[
            "report",
            "publish",
            "drill",
            "--journal",
            journal.to_str().unwrap()
        ]),
        out
    );
    let list = published(port);
    assert_eq!(list.len(), 4, "{list:#?}");
    for row in &list {
        assert_eq!(row["store"], "audit");
        assert!(row["locked_until"].is_string(), "{row}");
        let key = format!("lb/{}", row["object_key"].as_str().unwrap());
        let r = s3
            .retention("reports", &key)
            .expect("a retention on the report");
        assert_eq!(r.mode, "COMPLIANCE");
        assert_eq!(
            sha256_hex(s3.get_text("reports", &key).as_bytes()),
            row["sha256"].as_str().unwrap()
        );
        let (code, _, _) = http_get(port, row["href"].as_str().unwrap(), Some("s3cret"));
        assert_eq!(code, 200);
    }
}
