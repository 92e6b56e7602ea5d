//! `lifeboat status`: sources with hand-made snapshot histories (manifests written into a
//! local store and `catalog rebuild`) and verifications recorded through the catalog API;
//! the JSON rows, the exit codes and the Prometheus text parsed back.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use common::*;
use lifeboat::catalog::{Catalog, NewVerification, VerificationStatus};
use lifeboat::config::SecretString;

/// Records a passed verification of `snapshot_id`, finished at `finished_at`.
fn verify(env: &Env, source: &str, snapshot_id: &str, finished_at: DateTime<Utc>, restore_ms: i64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", env.path("catalog.db").display());
        let catalog = Catalog::open(&SecretString::new(url)).await.unwrap();
        let id = format!("v-{snapshot_id}");
        catalog
            .insert_verification(&NewVerification {
                id: &id,
                snapshot_id,
                source,
                sandbox: "local",
                now: finished_at - Duration::milliseconds(restore_ms),
            })
            .await
            .unwrap();
        catalog
            .finish_verification(
                &id,
                VerificationStatus::Passed,
                Some(restore_ms),
                &serde_json::json!([]),
                None,
                finished_at,
            )
            .await
            .unwrap();
        catalog.close().await;
    });
}

fn source(name: &str, extra: &str) -> String {
    format!(
        "  - {{ name: {name}, kind: postgres, url: \"postgres://u@127.0.0.1:1/db\", store: local{extra} }}\n"
    )
}

/// A config with `defaults:` (RPO 6h, RTO 30m, 5m overhead) and the given sources.
fn config(env: &Env, sources: &[String]) {
    env.write_config(&format!(
        "catalog: sqlite://./catalog.db\n\
         stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n\
         defaults:\n  objectives: {{ rpo: 6h, rto: 30m }}\n  rto_overhead: 5m\n\
         sources:\n{}",
        sources.concat()
    ));
}

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A small parser of the text exposition format: checks every family has `# HELP` and
/// `# TYPE` before its samples and that every line is well-formed.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut typed = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(!help.is_empty());
            helped.insert(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert_eq!(kind, "gauge", "{line}");
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let brace = line.find('{').expect("samples carry labels");
        let name = &line[..brace];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
            "{name}"
        );
        assert!(typed.contains_key(name) && helped.contains(name), "{name}");
        let close = line.rfind('}').unwrap();
        let mut labels = BTreeMap::new();
        let mut rest = &line[brace + 1..close];
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("closing quote");
                match c {
                    '\\' => match chars.next().unwrap().1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.insert(key.to_string(), value);
            rest = after[end + 1..].trim_start_matches(',');
        }
        let value: f64 = line[close + 1..].trim().parse().expect("a float value");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

fn value(samples: &[Sample], name: &str, source: &str) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && s.labels.get("source").map(String::as_str) == Some(source))
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name}{{source={source}}} twice");
    found.first().copied()
}

fn close(actual: f64, expected: f64, slack: f64) -> bool {
    (actual - expected).abs() <= slack
}

#[test]
fn status_rows_exit_codes_and_prometheus() {
    let env = Env::new();
    let now = Utc::now();
    let h = Duration::hours;
    // healthy: snapshot 1h ago, verified (that snapshot) 30m ago, 10m restore.
    env.write_fake_snapshot("store", "healthy", now - h(30));
    let healthy = env.write_fake_snapshot("store", "healthy", now - h(1));
    // stale: newest snapshot 5h ago (> 80 % of 6h), verified: at risk.
    let stale = env.write_fake_snapshot("store", "stale", now - h(5));
    // slow: fresh, but the restore took 26m (+5m overhead > 30m RTO): breached.
    let slow = env.write_fake_snapshot("store", "slow", now - h(1));
    // old: newest snapshot 7h ago: breached, and never verified.
    env.write_fake_snapshot("store", "old", now - h(7));
    // (empty: no snapshot at all.)
    let all = [
        source("healthy", ""),
        source("stale", ", verify_max_age: 2d"),
        source("slow", ""),
        source("old", ""),
        source("empty", ""),
    ];
    config(&env, &all);
    let out = env.ok(&["catalog", "rebuild"]);
    assert!(out.contains("5 snapshot(s)"), "{out}");
    verify(
        &env,
        "healthy",
        &healthy,
        now - Duration::minutes(30),
        600_000,
    );
    verify(&env, "stale", &stale, now - h(4), 60_000);
    verify(
        &env,
        "slow",
        &slow,
        now - Duration::minutes(10),
        26 * 60_000,
    );

    // All sources: the JSON rows, exit 2.
    let out = env.run(&["status", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "breached");
    let rows: BTreeMap<String, serde_json::Value> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["source"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    let verdicts: BTreeMap<&str, &str> = rows
        .iter()
        .map(|(k, r)| (k.as_str(), r["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        BTreeMap::from([
            ("healthy", "ok"),
            ("stale", "at-risk"),
            ("slow", "breached"),
            ("old", "breached"),
            ("empty", "breached"),
        ])
    );
    let r = &rows["healthy"];
    assert_eq!(r["last_snapshot_id"], healthy.as_str());
    assert_eq!(r["last_verified_snapshot_id"], healthy.as_str());
    assert!(
        close(r["rpo_exposure_seconds"].as_f64().unwrap(), 3600.0, 120.0),
        "{r}"
    );
    assert_eq!(r["rpo_objective_seconds"], 21600.0);
    assert_eq!(r["restore_seconds"], 600.0);
    assert_eq!(r["rto_overhead_seconds"], 300.0);
    assert_eq!(r["rto_evidence_seconds"], 900.0);
    assert_eq!(r["verify_max_age_seconds"], 7.0 * 86400.0);
    let reasons = |name: &str| -> String {
        rows[name]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert!(reasons("healthy").contains("last complete snapshot 1h ago, RPO is 6h"));
    assert!(reasons("stale").contains("last complete snapshot 5h ago, RPO is 6h"));
    assert!(
        reasons("slow").contains("last measured restore 26m + 5m overhead = 31m, RTO is 30m"),
        "{}",
        reasons("slow")
    );
    assert!(reasons("old").contains("7h ago") && reasons("old").contains("never verified"));
    assert!(reasons("empty").contains("no complete snapshot"));
    assert_eq!(
        rows["empty"]["rpo_exposure_seconds"],
        serde_json::Value::Null
    );

    // The table says the same, and exits 2 too.
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let table = text(&out.stdout);
    assert!(table.contains("overall: breached"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("stale") && l.contains("at-risk")),
        "{table}"
    );

    // Prometheus, parsed back.
    let out = env.run(&["status", "--output", "prometheus"]);
    assert_eq!(out.status.code(), Some(2));
    let samples = parse_prometheus(&text(&out.stdout));
    let v = |name: &str, source: &str| value(&samples, name, source);
    assert!(close(
        v("lifeboat_rpo_exposure_seconds", "healthy").unwrap(),
        3600.0,
        120.0
    ));
    assert!(close(
        v("lifeboat_rpo_exposure_seconds", "old").unwrap(),
        7.0 * 3600.0,
        120.0
    ));
    assert_eq!(v("lifeboat_rpo_exposure_seconds", "empty"), None);
    assert_eq!(
        v("lifeboat_rpo_objective_seconds", "healthy"),
        Some(21600.0)
    );
    assert_eq!(v("lifeboat_rto_objective_seconds", "slow"), Some(1800.0));
    assert_eq!(v("lifeboat_restore_duration_seconds", "slow"), Some(1560.0));
    assert_eq!(v("lifeboat_rto_evidence_seconds", "slow"), Some(1860.0));
    let verified_at = v("lifeboat_last_verified_timestamp_seconds", "stale").unwrap();
    assert!(close(
        verified_at,
        (now - h(4)).timestamp_millis() as f64 / 1000.0,
        0.001
    ));
    let snap_at = v("lifeboat_last_snapshot_timestamp_seconds", "healthy").unwrap();
    assert!(close(
        snap_at,
        (now - h(1)).timestamp_millis() as f64 / 1000.0,
        0.001
    ));
    assert_eq!(v("lifeboat_last_verified_timestamp_seconds", "old"), None);
    for (source, breached, at_risk) in [
        ("healthy", 0.0, 0.0),
        ("stale", 0.0, 1.0),
        ("slow", 1.0, 0.0),
        ("old", 1.0, 0.0),
        ("empty", 1.0, 0.0),
    ] {
        assert_eq!(
            v("lifeboat_source_breached", source),
            Some(breached),
            "{source}"
        );
        assert_eq!(
            v("lifeboat_source_at_risk", source),
            Some(at_risk),
            "{source}"
        );
    }

    // Without the breached sources: at risk is still exit 0.
    config(&env, &all[..2]);
    let out = env.run(&["status", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "at-risk");
    assert_eq!(report["sources"].as_array().unwrap().len(), 2);
    config(&env, &all[..1]);
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--output", "json"])).unwrap();
    assert_eq!(report["verdict"], "ok");

    // Errors are exit 1, not 2: a gate must not mistake a broken config for a breach.
    env.write_config("sources: [");
    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_snapshot_dated_in_the_future_does_not_zero_the_rpo_exposure() {
    let env = Env::new();
    config(&env, &[source("db", "")]);
    let now = Utc::now();
    env.write_fake_snapshot("store", "db", now - Duration::hours(10));
    let future = env.write_fake_snapshot("store", "db", now + Duration::days(365));
    env.ok(&["catalog", "rebuild"]);
    let out = env.run(&["status", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let db = &report["sources"][0];
    assert_eq!(db["verdict"], "breached", "{db:#}");
    assert!(db["rpo_exposure_seconds"].as_f64().unwrap() >= 10.0 * 3600.0 - 60.0);
    let reasons = db["reasons"].to_string();
    assert!(
        reasons.contains(&future) && reasons.contains("in the future"),
        "{reasons}"
    );
}
