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
    let port = common::servers::free_port();
    let config = std::fs::read_to_string(env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        env.path("lifeboat.yaml"),
        format!("{config}daemon:\n  listen: \"127.0.0.1:{port}\"\n  api_token: s3cret\n"),
    )
    .unwrap();
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let _daemon = Killed(
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
