//! GeoDNS with PowerDNS LUA records, set through lifeboat's PowerDNS provider and checked with
//! EDNS Client Subnet queries against a GeoIP database made in the test (PyPI `mmdb-writer`):
//! `pickclosest` and `country` answer per client location, and `ifurlextup` pointed at
//! per-site health URLs (as lifeboat serves them) moves the answer when a site goes down.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::dns::{PdnsServer, ZONE, write_mmdb};
use lifeboat::dns::wire::Subnet;
use lifeboat::dns::{
    self, Change, Desired, Expect, Provider, RRset, RecordType, Target, VerifyOptions,
};
use lifeboat::model::SecretString;

const EU: &str = "203.0.113.0/25";
const US: &str = "203.0.113.128/25";

fn geo_server() -> (tempfile::TempDir, PdnsServer) {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.path().join("test.mmdb");
    write_mmdb(
        &mmdb,
        &[
            // Clients.
            (EU, "DE", "EU", 50.1, 8.7),
            (US, "US", "NA", 40.7, -74.0),
            // The sites' addresses, so that pickclosest knows where they are.
            ("192.0.2.0/24", "DE", "EU", 50.1, 8.7),
            ("198.51.100.0/24", "US", "NA", 40.7, -74.0),
        ],
    );
    let pdns = PdnsServer::start_geo(&mmdb);
    (dir, pdns)
}

async fn answer(pdns: &PdnsServer, target: &Target, from: &str) -> Vec<String> {
    let subnet: Subnet = from.parse().unwrap();
    let a = dns::verify::observe(
        &[pdns.addr()],
        target,
        None,
        Duration::from_secs(1),
        Some(subnet),
    )
    .await;
    assert!(a[0].authoritative, "{:?}", a[0]);
    a[0].rrset
        .as_ref()
        .map(|r| r.values.clone())
        .unwrap_or_default()
}

async fn set_lua(p: &dyn Provider, pdns: &PdnsServer, name: &str, lua: &str) -> Target {
    let target = Target::new(name, ZONE, RecordType::Lua).unwrap();
    let change = Change {
        target: target.clone(),
        expect: Expect::Absent,
        desired: Desired::Present(RRset::new(RecordType::Lua, 30, &[lua.to_string()]).unwrap()),
    };
    let done = dns::switch(
        p,
        change,
        &VerifyOptions::new(vec![pdns.addr()], Duration::from_secs(10)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", pdns.log_tail()));
    assert!(done.applied.serial.is_some());
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_records_answer_per_client_location() {
    let (_dir, pdns) = geo_server();
    let p = dns::powerdns::PowerDns::new(
        "pdns",
        &pdns.api_url(),
        "localhost",
        SecretString::new(pdns.api_key.clone()),
    )
    .unwrap();

    let near = set_lua(
        &p,
        &pdns,
        "near.example.test.",
        "A \"pickclosest({'192.0.2.10','198.51.100.20'})\"",
    )
    .await;
    assert_eq!(
        answer(&pdns, &near, "203.0.113.5/32").await,
        vec!["192.0.2.10"]
    );
    assert_eq!(
        answer(&pdns, &near, "203.0.113.200/32").await,
        vec!["198.51.100.20"]
    );

    let by_country = set_lua(
        &p,
        &pdns,
        "country.example.test.",
        "A \"country('DE') and '192.0.2.10' or '198.51.100.20'\"",
    )
    .await;
    assert_eq!(answer(&pdns, &by_country, EU).await, vec!["192.0.2.10"]);
    assert_eq!(answer(&pdns, &by_country, US).await, vec!["198.51.100.20"]);

    // What the provider reads back is the LUA record itself.
    let held = p.read(&near).await.unwrap().unwrap();
    assert!(held.values[0].contains("pickclosest"), "{held:?}");
}

/// lifeboat's per-site health URLs steer PowerDNS: site A down → every client gets site B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ifurlextup_follows_site_health() {
    let (_dir, pdns) = geo_server();
    let site_a = Arc::new(AtomicBool::new(true));
    let health = {
        use axum::routing::get;
        let a = site_a.clone();
        let app = axum::Router::new()
            .route(
                "/site-a",
                get(move || {
                    let up = a.load(Ordering::SeqCst);
                    async move {
                        if up {
                            (axum::http::StatusCode::OK, "up")
                        } else {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                        }
                    }
                }),
            )
            .route("/site-b", get(|| async { "up" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    };
    let p = dns::powerdns::PowerDns::new(
        "pdns",
        &pdns.api_url(),
        "localhost",
        SecretString::new(pdns.api_key.clone()),
    )
    .unwrap();
    let lua = format!(
        "A \"ifurlextup({{{{['192.0.2.10']='http://{health}/site-a'}}, {{['198.51.100.20']='http://{health}/site-b'}}}})\""
    );
    let www = set_lua(&p, &pdns, "www.example.test.", &lua).await;

    // Health checks run every second; until the first one, ifurlextup may answer anything.
    let until = |want: &'static str| {
        let (pdns, www) = (&pdns, &www);
        async move {
            let start = Instant::now();
            loop {
                let (eu, us) = (answer(pdns, www, EU).await, answer(pdns, www, US).await);
                if eu == vec![want] && us == vec![want] {
                    return start.elapsed();
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "still {eu:?} / {us:?}, want {want}\n{}",
                    pdns.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until("192.0.2.10").await;
    site_a.store(false, Ordering::SeqCst);
    let switched = until("198.51.100.20").await;
    eprintln!(
        "site A down → every client answered site B after {} ms",
        switched.as_millis()
    );
    site_a.store(true, Ordering::SeqCst);
    until("192.0.2.10").await;
}

/// The binary: `dns set` a LUA record through the PowerDNS API, `dns show --client-subnet`
/// what clients in Europe and in the US get.
#[test]
fn cli_sets_and_shows_geo_answers() {
    let (_dir, pdns) = geo_server();
    let mut env = common::Env::new();
    env.extra_env
        .push(("PDNS_API_KEY".into(), pdns.api_key.clone()));
    env.write_config(&format!(
        "stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n\
         sources: []\n\
         dns:\n\
         \x20 providers:\n\
         \x20   pdns: {{ kind: powerdns, api_url: \"{}\", api_key: \"${{PDNS_API_KEY}}\" }}\n\
         \x20 records:\n\
         \x20   - {{ name: near.example.test., zone: example.test., type: LUA, ttl: 30, provider: pdns, nameservers: [\"{}\"], verify_timeout: 10s }}\n",
        pdns.api_url(),
        pdns.addr()
    ));
    let lua = "A \"pickclosest({'192.0.2.10','198.51.100.20'})\"";
    let out = env.ok(&[
        "dns",
        "set",
        "near.example.test.",
        lua,
        "--expect-absent",
        "--output",
        "json",
    ]);
    let done: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(done["timings"]["agreement_ms"].as_u64().is_some(), "{done}");
    for (subnet, want) in [
        ("203.0.113.5/32", "192.0.2.10"),
        ("203.0.113.200/32", "198.51.100.20"),
    ] {
        let out = env.ok(&[
            "dns",
            "show",
            "near.example.test.",
            "--client-subnet",
            subnet,
            "--output",
            "json",
        ]);
        let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            shown["nameservers"][0]["rrset"]["values"][0], want,
            "{subnet}: {shown}"
        );
        assert_eq!(shown["nameservers"][0]["authoritative"], true, "{shown}");
        assert!(!out.contains(&pdns.api_key));
    }
}
