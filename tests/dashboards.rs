// The Grafana dashboard (deploy/grafana/lifeboat-dashboard.json) against a real Prometheus
// (Debian `prometheus`) scraping a real lifeboat daemon: every panel's query parses and
// returns series, the site, failover, lag and drill panels included (a controller in observe
// mode probing a real PostgreSQL primary and its standby; a real drill in the catalog). And
// `promtool test rules` over tests/promtool/prometheusrule_test.yaml, which covers every alert
// of deploy/overlays/daemon/prometheusrule.yaml.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::servers::{bin_on_path, free_port, http_get};
use common::{text, wait_until};
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `name` on PATH; `None` (skip) only when LIFEBOAT_REQUIRE_PROMETHEUS is unset.
fn tool(name: &str) -> Option<PathBuf> {
    let found = bin_on_path(name);
    if found.is_none() {
        assert!(
            std::env::var_os("LIFEBOAT_REQUIRE_PROMETHEUS").is_none(),
            "LIFEBOAT_REQUIRE_PROMETHEUS is set but `{name}` is not on PATH: run scripts/setup.sh (apt prometheus)"
        );
        eprintln!(
            "SKIPPED: no `{name}` on PATH (install Debian `prometheus`, see scripts/setup.sh)"
        );
    }
    found
}

/// Kills the process on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path_and_query: &str) -> (u16, String) {
    http_get(port, path_and_query, None)
}

fn query(port: u16, expr: &str) -> Value {
    let q = percent_encoding::utf8_percent_encode(expr, percent_encoding::NON_ALPHANUMERIC);
    let (code, body) = get(port, &format!("/api/v1/query?query={q}"));
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("query `{expr}`: HTTP {code}, not JSON ({e}): {body}"));
    assert_eq!(v["status"], "success", "query `{expr}` does not parse: {v}");
    v
}

/// Every PromQL expression of the dashboard, with its panel title.
fn panel_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/lifeboat-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            out.push((
                p["title"].as_str().expect("title").to_string(),
                t["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    out
}

#[test]
fn every_dashboard_panel_returns_series_from_a_real_daemon() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    // Sites probed for real: a PostgreSQL primary and its streaming standby (the shared
    // failover setup), watched by a controller in observe mode (probes, never acts).
    let common::failover::Setup {
        env,
        primary,
        standby,
        ns: _ns,
    } = common::failover::setup();
    let port = free_port();
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/hello.txt"), "hello dashboard\n").unwrap();
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n\
         \x20 - name: tree\n    kind: files\n    path: ./data\n    store: local\n    schedule: \"*/2 * * * * *\"\n    \
         objectives: {{ rpo: 1h, rto: 30m }}\n    verify: {{ schedule: \"*/3 * * * * *\" }}\n\
         \x20 - {{ name: orders-db, kind: postgres, url: \"{primary_url}\", store: local, objectives: {{ rpo: 1m, rto: 5m }} }}\n\
         sites:\n\
         \x20 - name: primary\n    services:\n      orders-db: {{ kind: postgres, url: \"{primary_url}\", source: orders-db }}\n\
         \x20 - name: secondary\n    services:\n      orders-db: {{ kind: postgres, url: \"{standby_url}\", source: orders-db }}\n\
         failover:\n  site: primary\n  mode: observe\n  order: [primary, secondary]\n  probe_interval: 1s\n\
         daemon:\n  listen: \"127.0.0.1:{port}\"\n  api_token: s3cret\n",
        primary_url = primary.url("orders"),
        standby_url = standby.url("orders"),
    ));
    // Status metrics (restore evidence) from a verification before the daemon starts.
    env.ok(&["backup", "tree"]);
    env.ok(&["verify", "tree"]);
    // Drill evidence: a real drill (the primary paused for a second under a canary) finished
    // in the catalog.
    std::fs::write(
        env.path("scenario.yaml"),
        format!(
            "tier: pod\n\
             targets:\n  - name: pg\n    allowed: true\n    process_group: {{ pidfile: \"{}\" }}\n\
             faults:\n  - {{ name: freeze-pg, target: pg, action: pause, duration: 1s, ttl: 20s }}\n\
             canary: {{ url: \"{}\", interval: 100ms, timeout: 10s }}\n\
             probes:\n  - {{ name: pg-port, tcp: \"127.0.0.1:{}\" }}\n\
             expect: {{ rpo: 1s, rto: 30s }}\n",
            primary.data_dir().join("postmaster.pid").display(),
            primary.url("orders"),
            primary.port()
        ),
    )
    .unwrap();
    env.ok(&["drill", "run", "--file", "./scenario.yaml", "--yes"]);
    let log = std::fs::File::create(env.path("daemon.log")).unwrap();
    let _daemon = Killed(
        env.command(&["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start lifeboat run"),
    );

    let prom_port = free_port();
    std::fs::write(
        env.path("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: lifeboat\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ),
    )
    .unwrap();
    let prom_log = std::fs::File::create(env.path("prometheus.log")).unwrap();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                env.path("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                env.path("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(prom_log)
            .spawn()
            .expect("start prometheus"),
    );
    wait_until("prometheus to answer", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", prom_port)).is_ok()
            && get(prom_port, "/-/ready").0 == 200
    });

    let queries = panel_queries();
    assert!(queries.len() >= 24, "{queries:?}");
    let mut empty = Vec::new();
    // Series need a few scrapes (rates need two samples) and the daemon's first jobs.
    for _ in 0..90 {
        empty = queries
            .iter()
            .filter(|(_, expr)| {
                query(prom_port, expr)["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
            })
            .cloned()
            .collect();
        if empty.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        empty.is_empty(),
        "panels without series: {empty:#?}\ndaemon log:\n{}\nprometheus log:\n{}",
        std::fs::read_to_string(env.path("daemon.log")).unwrap_or_default(),
        std::fs::read_to_string(env.path("prometheus.log")).unwrap_or_default()
    );
    // The RPO panel shows the source against its objective.
    let v = query(
        prom_port,
        "max by (source) (lifeboat_rpo_objective_seconds{source=\"tree\"})",
    );
    assert_eq!(v["data"]["result"][0]["metric"]["source"], "tree", "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "3600", "{v}");
    // The site panels show this controller's primary; the drill panels the objective the
    // drill was judged against.
    let v = query(prom_port, "max by (site) (lifeboat_primary_site)");
    assert_eq!(v["data"]["result"][0]["metric"]["site"], "primary", "{v}");
    let v = query(
        prom_port,
        "max by (scenario) (lifeboat_drill_rto_objective_seconds)",
    );
    assert_eq!(
        v["data"]["result"][0]["metric"]["scenario"], "scenario",
        "{v}"
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "30", "{v}");
    // Both sites as this vantage point sees them; the standby's lag against the RPO.
    let v = query(prom_port, "max by (site, vantage) (lifeboat_site_up)");
    let mut seen: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|r| {
            (
                r["metric"]["site"].as_str().unwrap_or_default().to_string(),
                r["metric"]["vantage"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("primary".to_string(), "primary".to_string()),
            ("secondary".to_string(), "primary".to_string())
        ],
        "{v}"
    );
    let v = query(
        prom_port,
        "max by (service, site) (lifeboat_replication_lag_seconds)",
    );
    assert_eq!(v["data"]["result"][0]["metric"]["site"], "secondary", "{v}");
    assert_eq!(
        v["data"]["result"][0]["metric"]["service"], "orders-db",
        "{v}"
    );
    // A query that does not parse is reported as such (the check above means something).
    let (code, _) = get(prom_port, "/api/v1/query?query=max%20by%20(");
    assert_eq!(code, 400);
}

/// Grafana needs unique panel ids; panels that overlap hide each other; a panel before the
/// first row would belong to none.
#[test]
fn dashboard_panels_have_unique_ids_and_do_not_overlap() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/lifeboat-dashboard.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert_eq!(panels[0]["type"], "row", "the first panel is a row");
    let mut ids = std::collections::BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("title").to_string();
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "id of {title} reused"
        );
        let g = &p["gridPos"];
        let b = ["x", "y", "w", "h"].map(|k| g[k].as_u64().expect("gridPos"));
        assert!(b[0] + b[2] <= 24, "{title} is wider than the dashboard");
        for (other, o) in &boxes {
            let apart = b[0] + b[2] <= o[0]
                || o[0] + o[2] <= b[0]
                || b[1] + b[3] <= o[1]
                || o[1] + o[3] <= b[1];
            assert!(apart, "{title} overlaps {other}");
        }
        boxes.push((title, b));
    }
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    for row in ["Sites and failover", "Drills"] {
        assert!(rows.contains(&row), "no {row} row in {rows:?}");
    }
}

#[test]
fn promtool_unit_tests_cover_every_alert() {
    promtool_test(
        "deploy/overlays/daemon/prometheusrule.yaml",
        "tests/promtool/prometheusrule_test.yaml",
    );
}

#[test]
fn promtool_unit_tests_cover_every_failover_alert() {
    promtool_test(
        "deploy/overlays/daemon/prometheusrule-failover.yaml",
        "tests/promtool/failover_test.yaml",
    );
}

/// `promtool check rules` and `promtool test rules` of the PrometheusRule `rule_file` with
/// the unit tests `tests_file`, which must name every alert.
fn promtool_test(rule_file: &str, tests_file: &str) {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let rule: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo(rule_file)).unwrap()).unwrap();
    let spec = &rule["spec"];
    let tests_text = std::fs::read_to_string(repo(tests_file)).unwrap();
    for group in spec["groups"].as_sequence().expect("groups") {
        for r in group["rules"].as_sequence().expect("rules") {
            if let Some(alert) = r["alert"].as_str() {
                assert!(
                    tests_text.contains(&format!("alertname: {alert}\n")),
                    "alert {alert} has no promtool test in {tests_file}"
                );
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(spec).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("prometheusrule_test.yaml"), &tests_text).unwrap();
    let out = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(dir.path().join("rules.yaml"))
        .output()
        .expect("run promtool check rules");
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(dir.path().join("prometheusrule_test.yaml"))
        .output()
        .expect("run promtool test rules");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
