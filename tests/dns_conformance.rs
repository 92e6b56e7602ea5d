//! One conformance suite for every DNS provider (set, compare-and-swap won, compare-and-swap
//! lost, delete, verify agreement, verify timeout), run against real servers: BIND 9 and Knot
//! through RFC 2136 + TSIG, PowerDNS through its HTTP API. Plus what only some providers have:
//! the authentication errors, a BIND primary with a Knot secondary (NOTIFY + AXFR over TSIG).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::dns::{DnsServer, PdnsServer, TsigKey, ZONE, dig};
use lifeboat::dns::{
    self, Change, Desired, DnsError, Expect, Provider, RRset, RecordType, Target, VerifyOptions,
};
use lifeboat::model::{ErrorKind, SecretString};

/// A provider under test and the nameservers that must agree.
struct Subject {
    label: &'static str,
    provider: Arc<dyn Provider>,
    nameservers: Vec<SocketAddr>,
    /// Whether the provider's compare-and-swap is atomic (two racers cannot both win).
    atomic: bool,
    /// Whether the provider reports the zone's serial after a change.
    serial: bool,
}

fn target(name: &str) -> Target {
    Target::new(&format!("{name}.{ZONE}"), ZONE, RecordType::A).unwrap()
}

fn rrset(values: &[&str]) -> RRset {
    RRset::new(
        RecordType::A,
        30,
        &values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn expect(values: &[&str]) -> Expect {
    Expect::values(
        RecordType::A,
        &values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn change(name: &str, expect: Expect, desired: Desired) -> Change {
    Change {
        target: target(name),
        expect,
        desired,
    }
}

/// plan → apply → verify; without nameservers (Route53 on moto serves no DNS) plan → apply.
/// Every nameserver's agreeing answer is authoritative with at least the new serial.
async fn switch(s: &Subject, ch: Change) -> Result<(dns::Plan, dns::Applied), DnsError> {
    if s.nameservers.is_empty() {
        let plan = dns::plan(&*s.provider, ch).await?;
        let applied = dns::apply(&*s.provider, &plan).await?;
        return Ok((plan, applied));
    }
    let options = VerifyOptions::new(s.nameservers.clone(), Duration::from_secs(30));
    let done = dns::switch(&*s.provider, ch, &options).await?;
    assert_eq!(done.agreement.nameservers.len(), s.nameservers.len());
    for agreed in &done.agreement.nameservers {
        assert!(
            agreed.answer.authoritative,
            "{}: {:?}",
            s.label, agreed.answer
        );
        if let Some(serial) = done.applied.serial {
            assert!(
                agreed.answer.serial.is_some_and(|n| n >= serial),
                "{}: {:?}",
                s.label,
                agreed.answer
            );
        }
    }
    Ok((done.plan, done.applied))
}

/// What the first nameserver answers (sorted), when there is one.
fn served(s: &Subject, name: &str) -> Option<Vec<String>> {
    let ns = s.nameservers.first()?;
    let mut seen = dig(*ns, name, "A");
    seen.sort();
    Some(seen)
}

async fn suite(s: &Subject) {
    let l = s.label;

    // set: replace whatever is there; every nameserver answers it, AA, with the new serial.
    let done = switch(
        s,
        change(
            "set",
            Expect::Anything,
            Desired::Present(rrset(&["192.0.2.10", "192.0.2.11"])),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{l}: set: {e}"));
    assert_eq!(done.0.action, dns::Action::Create, "{l}");
    assert_eq!(done.1.serial.is_some(), s.serial, "{l}: serial after set");
    assert_eq!(
        s.provider.read(&target("set")).await.unwrap(),
        Some(rrset(&["192.0.2.10", "192.0.2.11"])),
        "{l}"
    );
    if let Some(seen) = served(s, "set.example.test.") {
        assert_eq!(seen, vec!["192.0.2.10", "192.0.2.11"], "{l}");
    }
    // The same switch again sends nothing and still verifies.
    let again = switch(
        s,
        change(
            "set",
            expect(&["192.0.2.10", "192.0.2.11"]),
            Desired::Present(rrset(&["192.0.2.10", "192.0.2.11"])),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{l}: set again: {e}"));
    assert_eq!(again.0.action, dns::Action::Nothing, "{l}");

    // CAS won: created where absent was expected, then switched from the expected value.
    switch(
        s,
        change(
            "cas",
            Expect::Absent,
            Desired::Present(rrset(&["192.0.2.10"])),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{l}: create where absent: {e}"));
    let won = switch(
        s,
        change(
            "cas",
            expect(&["192.0.2.10"]),
            Desired::Present(rrset(&["198.51.100.20"])),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{l}: CAS from the expected value: {e}"));
    assert_eq!(won.0.action, dns::Action::Replace, "{l}");

    // CAS lost: a stale expectation changes nothing and names who holds what.
    let lost = switch(
        s,
        change(
            "cas",
            expect(&["192.0.2.10"]),
            Desired::Present(rrset(&["203.0.113.30"])),
        ),
    )
    .await
    .expect_err("a stale expectation must lose");
    assert_eq!(lost.kind(), ErrorKind::Conflict, "{l}: {lost}");
    let msg = lost.to_string();
    assert!(
        msg.contains("holds 198.51.100.20") && msg.contains("not the expected 192.0.2.10"),
        "{l}: {msg}"
    );
    // Also at apply time (the provider's own check, not the plan's).
    let stale = change(
        "cas",
        expect(&["192.0.2.10"]),
        Desired::Present(rrset(&["203.0.113.30"])),
    );
    let e = s
        .provider
        .apply(&stale)
        .await
        .expect_err("provider-side CAS");
    assert!(matches!(e, DnsError::Conflict { .. }), "{l}: {e}");
    let e = s
        .provider
        .apply(&change(
            "cas",
            Expect::Absent,
            Desired::Present(rrset(&["203.0.113.30"])),
        ))
        .await
        .expect_err("exists where absent was expected");
    assert!(matches!(e, DnsError::Conflict { .. }), "{l}: {e}");
    assert_eq!(
        s.provider.read(&target("cas")).await.unwrap(),
        Some(rrset(&["198.51.100.20"])),
        "{l}"
    );

    // Two controllers racing from the same expectation: exactly one wins (atomic providers).
    if s.atomic {
        for round in 0..5 {
            let from = s
                .provider
                .read(&target("cas"))
                .await
                .unwrap()
                .unwrap()
                .values;
            let from: Vec<&str> = from.iter().map(String::as_str).collect();
            let a = change(
                "cas",
                expect(&from),
                Desired::Present(rrset(&[&format!("192.0.2.{}", 100 + round)])),
            );
            let b = change(
                "cas",
                expect(&from),
                Desired::Present(rrset(&[&format!("198.51.100.{}", 100 + round)])),
            );
            let (ra, rb) = tokio::join!(s.provider.apply(&a), s.provider.apply(&b));
            let wins = [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count();
            assert_eq!(wins, 1, "{l}: round {round}: {ra:?} / {rb:?}");
            let loser = ra.err().or(rb.err()).unwrap();
            assert_eq!(loser.kind(), ErrorKind::Conflict, "{l}: {loser}");
        }
    }

    // delete: with the expected value; every nameserver then answers nothing.
    let current = s
        .provider
        .read(&target("cas"))
        .await
        .unwrap()
        .unwrap()
        .values;
    let current: Vec<&str> = current.iter().map(String::as_str).collect();
    let deleted = switch(s, change("cas", expect(&current), Desired::Absent))
        .await
        .unwrap_or_else(|e| panic!("{l}: delete: {e}"));
    assert_eq!(deleted.0.action, dns::Action::Delete, "{l}");
    assert_eq!(s.provider.read(&target("cas")).await.unwrap(), None, "{l}");
    if let Some(seen) = served(s, "cas.example.test.") {
        assert!(seen.is_empty(), "{l}: {seen:?}");
    }

    // verify timeout: nobody serves this value; the error names every nameserver, and one that
    // does not run at all.
    let dead: SocketAddr = format!("127.0.0.1:{}", common::servers::free_port())
        .parse()
        .unwrap();
    let mut ns = s.nameservers.clone();
    ns.push(dead);
    let mut opts = VerifyOptions::new(ns, Duration::from_millis(1500));
    opts.query_timeout = Duration::from_millis(300);
    let e = dns::verify::verify(
        &target("set"),
        &Desired::Present(rrset(&["203.0.113.99"])),
        None,
        &opts,
    )
    .await
    .expect_err("nobody serves 203.0.113.99");
    let msg = e.to_string();
    for n in s.nameservers.iter().chain([&dead]) {
        assert!(msg.contains(&n.to_string()), "{l}: {msg}");
    }
    if !s.nameservers.is_empty() {
        assert!(
            msg.contains("192.0.2.10, 192.0.2.11"),
            "{l}: says what they answer: {msg}"
        );
    }
    assert!(
        matches!(e, DnsError::NotAgreed { ref disagreeing, .. } if disagreeing.len() == s.nameservers.len() + 1),
        "{l}: {msg}"
    );
}

fn rfc2136(label: &'static str, server: SocketAddr, key: &TsigKey) -> Arc<dyn Provider> {
    Arc::new(
        dns::rfc2136::Rfc2136::new(
            label,
            server,
            &key.name,
            "hmac-sha256",
            &SecretString::new(key.secret.clone()),
            lifeboat::model::clock::system(),
        )
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_rfc2136() {
    let key = TsigKey::random();
    let bind = DnsServer::bind(&key, None);
    suite(&Subject {
        label: "bind",
        provider: rfc2136("bind", bind.addr(), &key),
        nameservers: vec![bind.addr()],
        atomic: true,
        serial: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_rfc2136() {
    let key = TsigKey::random();
    let knot = DnsServer::knot(&key);
    suite(&Subject {
        label: "knot",
        provider: rfc2136("knot", knot.addr(), &key),
        nameservers: vec![knot.addr()],
        atomic: true,
        serial: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerdns_api() {
    let pdns = PdnsServer::start();
    let provider = Arc::new(
        dns::powerdns::PowerDns::new(
            "pdns",
            &pdns.api_url(),
            "localhost",
            SecretString::new(pdns.api_key.clone()),
        )
        .unwrap(),
    );
    suite(&Subject {
        label: "powerdns",
        provider,
        nameservers: vec![pdns.addr()],
        // The API has no atomic precondition (see lifeboat::dns::powerdns).
        atomic: false,
        serial: true,
    })
    .await;
}

/// A BIND primary NOTIFYing a Knot secondary that transfers over TSIG: a switch returns only
/// once both serve the new RRset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_primary_knot_secondary_agree() {
    let key = TsigKey::random();
    let secondary_port = common::servers::free_port();
    let bind = DnsServer::bind(&key, Some(secondary_port));
    let knot = DnsServer::knot_secondary(&key, bind.port(), secondary_port);
    let provider = rfc2136("bind", bind.addr(), &key);
    let done = dns::switch(
        &*provider,
        change(
            "failover",
            Expect::Absent,
            Desired::Present(rrset(&["198.51.100.7"])),
        ),
        &VerifyOptions::new(vec![bind.addr(), knot.addr()], Duration::from_secs(60)),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- bind ---\n{}\n--- knot ---\n{}",
            bind.log_tail(),
            knot.log_tail()
        )
    });
    let serial = done.applied.serial.unwrap();
    assert_eq!(done.agreement.nameservers.len(), 2);
    for agreed in &done.agreement.nameservers {
        assert!(
            agreed.answer.serial.is_some_and(|s| s >= serial),
            "{:?}",
            agreed.answer
        );
    }
    assert_eq!(
        dig(knot.addr(), "failover.example.test.", "A"),
        vec!["198.51.100.7"]
    );
    eprintln!(
        "bind → knot: agreement after {} ms in {} round(s)",
        done.timings.agreement_ms, done.agreement.rounds
    );
}

/// Authentication and zone errors say what to do and are config errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_errors_say_what_to_do() {
    let key = TsigKey::random();
    let bind = DnsServer::bind(&key, None);
    let knot = DnsServer::knot(&key);
    let add = change(
        "auth",
        Expect::Anything,
        Desired::Present(rrset(&["192.0.2.5"])),
    );
    for server in [&bind, &knot] {
        let wrong_secret = TsigKey {
            name: key.name.clone(),
            secret: TsigKey::random().secret,
        };
        let e = rfc2136("x", server.addr(), &wrong_secret)
            .apply(&add)
            .await
            .expect_err("wrong secret");
        assert!(
            matches!(e, DnsError::Authentication { .. }),
            "{}: {e}",
            server.what
        );
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("tsig.secret"), "{e}");
        assert!(!e.to_string().contains(&wrong_secret.secret), "{e}");
        let unknown = TsigKey {
            name: "nobody-key".into(),
            secret: key.secret.clone(),
        };
        let e = rfc2136("x", server.addr(), &unknown)
            .apply(&add)
            .await
            .expect_err("unknown key");
        assert!(
            matches!(e, DnsError::Authentication { .. }),
            "{}: {e}",
            server.what
        );
        let elsewhere = Change {
            target: Target::new("api.other.test.", "other.test.", RecordType::A).unwrap(),
            expect: Expect::Anything,
            desired: Desired::Present(rrset(&["192.0.2.5"])),
        };
        let p = rfc2136("x", server.addr(), &key);
        let e = p.read(&elsewhere.target).await.expect_err("unknown zone");
        assert!(
            matches!(e, DnsError::UnknownZone { .. }),
            "{}: {e}",
            server.what
        );
        let e = p.apply(&elsewhere).await.expect_err("unknown zone");
        assert!(
            matches!(
                e,
                DnsError::UnknownZone { .. }
                    | DnsError::Authentication { .. }
                    | DnsError::Rejected { .. }
            ),
            "{}: {e}",
            server.what
        );
        assert_eq!(e.kind(), ErrorKind::Config, "{}: {e}", server.what);
    }
    // Nothing reached the zone.
    assert!(dig(bind.addr(), "auth.example.test.", "A").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powerdns_errors_say_what_to_do() {
    let pdns = PdnsServer::start();
    let wrong = dns::powerdns::PowerDns::new(
        "pdns",
        &pdns.api_url(),
        "localhost",
        SecretString::new("wrong-key-123"),
    )
    .unwrap();
    let e = wrong.read(&target("x")).await.expect_err("wrong key");
    assert!(matches!(e, DnsError::Forbidden { status: 401, .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        !e.to_string().contains("wrong-key-123") && !format!("{wrong:?}").contains("wrong-key-123"),
        "{e}"
    );
    let p = dns::powerdns::PowerDns::new(
        "pdns",
        &pdns.api_url(),
        "localhost",
        SecretString::new(pdns.api_key.clone()),
    )
    .unwrap();
    let e = p
        .read(&Target::new("api.other.test.", "other.test.", RecordType::A).unwrap())
        .await
        .expect_err("unknown zone");
    assert!(matches!(e, DnsError::UnknownZone { .. }), "{e}");
    // A name outside the zone that slipped past `Target::new`: the API's 422 says so.
    let outside = Change {
        target: Target {
            name: "api.other.test.".into(),
            zone: ZONE.into(),
            rtype: RecordType::A,
        },
        expect: Expect::Anything,
        desired: Desired::Present(rrset(&["192.0.2.5"])),
    };
    let e = p.apply(&outside).await.expect_err("outside the zone");
    assert!(matches!(e, DnsError::OutsideZone { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("`api.other.test.` is not inside zone `example.test.`"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

/// Route53 on moto behind the fault proxy (PENDING answers make lifeboat poll GetChange).
/// moto serves no DNS: the suite checks the provider's own view, and verification only against
/// a nameserver that does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_moto() {
    let moto = common::MotoServer::start();
    let zone_id = common::route53::create_zone(&moto, ZONE).await;
    let proxy = common::route53::FaultProxy::start(moto.port());
    proxy.set(|f| f.pending = 2);
    let provider = Arc::new(
        dns::route53::Route53::new(
            "r53",
            &zone_id,
            Some("us-east-1".into()),
            Some(proxy.endpoint()),
        )
        .with_credentials("testing", SecretString::new("testing-secret-key")),
    );
    suite(&Subject {
        label: "route53",
        provider,
        nameservers: vec![],
        // moto does not check the values a DELETE names, so a racer is not stopped there.
        atomic: false,
        serial: false,
    })
    .await;
    assert_eq!(proxy.seen().injected_pending, 2, "{:?}", proxy.seen());
}

/// Cloudflare's API as a contract fake that writes into a real PowerDNS: the suite's answers
/// come from PowerDNS's DNS port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_fake_into_powerdns() {
    let pdns = PdnsServer::start();
    let fake =
        common::cloudflare::CloudflareFake::start(ZONE, &pdns.api_url(), &pdns.api_key).await;
    let provider = Arc::new(
        dns::cloudflare::Cloudflare::new(
            "cf",
            &fake.zone_id,
            Some(&fake.api_url()),
            SecretString::new(fake.token.clone()),
        )
        .unwrap(),
    );
    // Two 429s on the way: retried after their retry-after.
    fake.with_state(|s| s.throttle = 2);
    suite(&Subject {
        label: "cloudflare",
        provider,
        nameservers: vec![pdns.addr()],
        // The batch deletes by id: a racer that replaced the records makes it fail.
        atomic: true,
        serial: false,
    })
    .await;
    assert_eq!(fake.with_state(|s| s.throttle), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_errors_say_what_to_do() {
    let pdns = PdnsServer::start();
    let fake =
        common::cloudflare::CloudflareFake::start(ZONE, &pdns.api_url(), &pdns.api_key).await;
    let bad = dns::cloudflare::Cloudflare::new(
        "cf",
        &fake.zone_id,
        Some(&fake.api_url()),
        SecretString::new("not-the-token"),
    )
    .unwrap();
    let e = bad.read(&target("x")).await.expect_err("wrong token");
    assert!(matches!(e, DnsError::Forbidden { status: 403, .. }), "{e}");
    assert!(
        !e.to_string().contains("not-the-token") && !format!("{bad:?}").contains("not-the-token")
    );
    let other_zone = dns::cloudflare::Cloudflare::new(
        "cf",
        "0123",
        Some(&fake.api_url()),
        SecretString::new(fake.token.clone()),
    )
    .unwrap();
    let e = other_zone
        .read(&target("x"))
        .await
        .expect_err("unknown zone");
    assert!(matches!(e, DnsError::UnknownZone { .. }), "{e}");
    let p = dns::cloudflare::Cloudflare::new(
        "cf",
        &fake.zone_id,
        Some(&fake.api_url()),
        SecretString::new(fake.token.clone()),
    )
    .unwrap();
    fake.with_state(|s| s.throttle = 10);
    let e = p.read(&target("x")).await.expect_err("throttled");
    assert!(
        matches!(
            e,
            DnsError::Throttled {
                retry_after: Some(_),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    fake.with_state(|s| s.throttle = 0);
    // TTL below Cloudflare's minimum: rejected with its message.
    let short = Change {
        target: target("short"),
        expect: Expect::Anything,
        desired: Desired::Present(RRset::new(RecordType::A, 5, &["192.0.2.1".into()]).unwrap()),
    };
    let e = p.apply(&short).await.expect_err("ttl 5");
    assert!(
        matches!(e, DnsError::Rejected { .. }) && e.to_string().contains("Invalid TTL"),
        "{e}"
    );
}

/// A record without `nameservers:` is verified on the zone's NS, found at the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nameservers_default_to_the_zones_ns() {
    let key = TsigKey::random();
    let bind = DnsServer::bind(&key, None);
    let provider = rfc2136("bind", bind.addr(), &key);
    let found = dns::nameservers::discover(ZONE, provider.dns_server())
        .await
        .unwrap();
    // example.test. NS ns1.example.test., ns1 A 127.0.0.1 (tests/common/dns.rs): port 53.
    assert_eq!(found, vec!["127.0.0.1:53".parse::<SocketAddr>().unwrap()]);
    let e = dns::nameservers::discover("other.test.", provider.dns_server())
        .await
        .expect_err("no such zone");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains("list the record's nameservers"),
        "{e}"
    );
}

/// The Cloudflare fake keeps the API's contract where lifeboat relies on it: exact-name and
/// type filters, PUT replaces and PATCH merges (both keep the id), a batch is all or nothing,
/// and everything lands in PowerDNS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_fake_keeps_the_contract() {
    let pdns = PdnsServer::start();
    let fake =
        common::cloudflare::CloudflareFake::start(ZONE, &pdns.api_url(), &pdns.api_key).await;
    let http = reqwest::Client::new();
    let base = format!("{}/zones/{}/dns_records", fake.api_url(), fake.zone_id);
    let auth = format!("Bearer {}", fake.token);
    let call = |method: reqwest::Method, url: String, body: Option<serde_json::Value>| {
        let (http, auth) = (http.clone(), auth.clone());
        async move {
            let mut req = http.request(method, url).header("Authorization", auth);
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    let post = |name: &str, content: &str| serde_json::json!({"type": "A", "name": name, "content": content, "ttl": 60, "proxied": false});
    let (s, a) = call(
        reqwest::Method::POST,
        base.clone(),
        Some(post("a.example.test", "192.0.2.1")),
    )
    .await;
    assert_eq!((s, a["success"].as_bool()), (200, Some(true)), "{a}");
    call(
        reqwest::Method::POST,
        base.clone(),
        Some(post("aa.example.test", "192.0.2.2")),
    )
    .await;
    let id = a["result"]["id"].as_str().unwrap().to_string();
    // Exact name filter: `a.` does not match `aa.`.
    let (_, l) = call(
        reqwest::Method::GET,
        format!("{base}?type=A&name=a.example.test"),
        None,
    )
    .await;
    assert_eq!(l["result"].as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l["result_info"]["total_count"], 1, "{l}");
    // PATCH merges, PUT replaces; the id stays.
    let (_, p) = call(
        reqwest::Method::PATCH,
        format!("{base}/{id}"),
        Some(serde_json::json!({"content": "192.0.2.9"})),
    )
    .await;
    assert_eq!(
        (p["result"]["id"].as_str(), p["result"]["ttl"].as_u64()),
        (Some(id.as_str()), Some(60)),
        "{p}"
    );
    let (s, bad) = call(
        reqwest::Method::PUT,
        format!("{base}/{id}"),
        Some(serde_json::json!({"content": "192.0.2.8"})),
    )
    .await;
    assert_eq!(
        (s, bad["errors"][0]["code"].as_i64()),
        (400, Some(9000)),
        "PUT needs the whole record: {bad}"
    );
    let (_, r) = call(
        reqwest::Method::PUT,
        format!("{base}/{id}"),
        Some(post("a.example.test", "192.0.2.8")),
    )
    .await;
    assert_eq!(r["result"]["id"].as_str(), Some(id.as_str()), "{r}");
    assert_eq!(dig(pdns.addr(), "a.example.test.", "A"), vec!["192.0.2.8"]);
    // A batch whose delete names a missing id changes nothing, its posts included.
    let (s, b) = call(
        reqwest::Method::POST,
        format!("{base}/batch"),
        Some(serde_json::json!({"deletes": [{"id": id}, {"id": "gone"}], "posts": [post("b.example.test", "192.0.2.3")]})),
    )
    .await;
    assert_eq!(
        (s, b["errors"][0]["code"].as_i64()),
        (400, Some(81044)),
        "{b}"
    );
    assert_eq!(dig(pdns.addr(), "a.example.test.", "A"), vec!["192.0.2.8"]);
    assert!(dig(pdns.addr(), "b.example.test.", "A").is_empty());
    // DELETE of a missing id: 404, 81044.
    let (s, d) = call(reqwest::Method::DELETE, format!("{base}/nope"), None).await;
    assert_eq!(
        (s, d["errors"][0]["code"].as_i64()),
        (404, Some(81044)),
        "{d}"
    );
}

/// An RRset too large for a UDP answer (TC set) is read and verified over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_rrsets_are_verified_over_tcp() {
    let key = TsigKey::random();
    let bind = DnsServer::bind(&key, None);
    let provider = rfc2136("bind", bind.addr(), &key);
    // 90: BIND refuses more than 100 records of one type (max-records-per-type).
    let values: Vec<String> = (1..=90).map(|i| format!("198.51.100.{i}")).collect();
    let big = RRset::new(RecordType::A, 30, &values).unwrap();
    let done = dns::switch(
        &*provider,
        Change {
            target: target("big"),
            expect: Expect::Absent,
            desired: Desired::Present(big.clone()),
        },
        &VerifyOptions::new(vec![bind.addr()], Duration::from_secs(10)),
    )
    .await
    .unwrap();
    assert_eq!(
        done.agreement.nameservers[0].answer.rrset.as_ref(),
        Some(&big)
    );
    // Over UDP alone the answer does not fit: 90 A records are > 1.4 KB, EDNS asks for 1232,
    // so the server sets TC and lifeboat asked again over TCP.
    let udp_only = std::process::Command::new("dig")
        .args([
            "+norec",
            "+ignore",
            "+bufsize=1232",
            &format!("@{}", bind.addr().ip()),
            "-p",
            &bind.addr().port().to_string(),
            "big.example.test.",
            "A",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&udp_only.stdout);
    assert!(text.contains("flags: qr aa tc"), "{text}");
    assert_eq!(provider.read(&target("big")).await.unwrap(), Some(big));
}
