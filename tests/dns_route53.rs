//! Route53 beyond the conformance suite, on moto behind a fault proxy: throttling retried (and
//! reported when it persists), GetChange polled through PENDING, and routing-policy changes
//! (failover, weighted, geolocation) applied as one batch with compare-and-swap, checked
//! before anything is sent.

mod common;

use std::time::Duration;

use common::dns::ZONE;
use common::route53::{FaultProxy, create_zone};
use lifeboat::dns::route53::Route53;
use lifeboat::dns::routing::{Role, RoutedSet, Routing};
use lifeboat::dns::{Change, Desired, DnsError, Expect, Provider, RRset, RecordType, Target};
use lifeboat::model::{ErrorKind, SecretString};

struct World {
    _moto: common::MotoServer,
    proxy: FaultProxy,
    r53: Route53,
}

async fn world() -> World {
    let moto = common::MotoServer::start();
    let zone_id = create_zone(&moto, ZONE).await;
    let proxy = FaultProxy::start(moto.port());
    let r53 = Route53::new(
        "r53",
        &zone_id,
        Some("us-east-1".into()),
        Some(proxy.endpoint()),
    )
    .with_credentials("testing", SecretString::new("testing-secret-key"));
    World {
        _moto: moto,
        proxy,
        r53,
    }
}

fn a(name: &str, values: &[&str]) -> Change {
    Change {
        target: Target::new(name, ZONE, RecordType::A).unwrap(),
        expect: Expect::Anything,
        desired: Desired::Present(
            RRset::new(
                RecordType::A,
                30,
                &values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_pending_is_polled_and_persistent_throttling_reported() {
    let w = world().await;
    w.proxy.set(|f| {
        f.throttling = 1;
        f.prior_request_not_complete = 1;
        f.pending = 3;
    });
    let started = std::time::Instant::now();
    w.r53
        .apply(&a("api.example.test.", &["192.0.2.10"]))
        .await
        .unwrap();
    let seen = w.proxy.seen();
    assert_eq!(
        (seen.injected_errors, seen.injected_pending),
        (2, 3),
        "{seen:?}"
    );
    // 3 PENDING polls at 200, 300, 450 ms: well under the SDK waiter's 30 s minimum.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        w.r53
            .read(&Target::new("api.example.test.", ZONE, RecordType::A).unwrap())
            .await
            .unwrap()
            .unwrap()
            .values,
        vec!["192.0.2.10"]
    );

    w.proxy.set(|f| f.throttling = 100);
    let e = w
        .r53
        .apply(&a("api.example.test.", &["192.0.2.11"]))
        .await
        .expect_err("always throttled");
    assert!(matches!(e, DnsError::Throttled { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert!(e.to_string().contains("retry later"), "{e}");
}

fn routed(id: &str, routing: Routing, hc: Option<&str>, value: &str) -> RoutedSet {
    RoutedSet {
        name: "www.example.test.".into(),
        rtype: RecordType::A,
        set_identifier: Some(id.into()),
        routing,
        health_check_id: hc.map(str::to_string),
        alias: false,
        ttl: 30,
        values: vec![value.into()],
    }
}

fn geo(id: &str, continent: Option<&str>, country: Option<&str>, value: &str) -> RoutedSet {
    routed(
        id,
        Routing::Geo {
            continent: continent.map(str::to_string),
            country: country.map(str::to_string),
            subdivision: None,
        },
        None,
        value,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_policies_switch_with_compare_and_swap() {
    let w = world().await;
    let www = Target::new("www.example.test.", ZONE, RecordType::A).unwrap();
    let all_healthy = |_: &str| true;

    // Failover: PRIMARY site A, SECONDARY site B.
    let failover = vec![
        routed(
            "www-primary",
            Routing::Failover {
                role: Role::Primary,
            },
            Some("hc-site-a"),
            "192.0.2.10",
        ),
        routed(
            "www-secondary",
            Routing::Failover {
                role: Role::Secondary,
            },
            Some("hc-site-b"),
            "198.51.100.20",
        ),
    ];
    w.r53
        .apply_routed(&www, &[], &failover, &all_healthy)
        .await
        .unwrap();

    // Both sites unhealthy: refused before anything is sent.
    let before = w.proxy.seen().forwarded;
    let e = w
        .r53
        .apply_routed(&www, &failover, &failover, &|_| false)
        .await
        .expect_err("both unhealthy");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("both unhealthy"), "{e}");
    // A geolocation with a continent and a country: refused before anything is sent.
    let e = w
        .r53
        .apply_routed(
            &www,
            &failover,
            &[geo("www-bad", Some("EU"), Some("DE"), "192.0.2.1")],
            &all_healthy,
        )
        .await
        .expect_err("continent with country");
    assert!(e.to_string().contains("not both"), "{e}");
    assert_eq!(
        w.proxy.seen().forwarded,
        before,
        "nothing sent for refused plans"
    );

    // Failover → weighted, from the expected failover sets, in one batch.
    let weighted = vec![
        routed(
            "www-w-a",
            Routing::Weighted { weight: 90 },
            None,
            "192.0.2.10",
        ),
        routed(
            "www-w-b",
            Routing::Weighted { weight: 10 },
            None,
            "198.51.100.20",
        ),
    ];
    w.r53
        .apply_routed(&www, &failover, &weighted, &all_healthy)
        .await
        .unwrap();
    let now: Vec<RoutedSet> = w
        .r53
        .read_sets(&www)
        .await
        .unwrap()
        .iter()
        .map(|s| Route53::routed_of(s, RecordType::A))
        .collect();
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.iter()
            .all(|s| matches!(s.routing, Routing::Weighted { .. })),
        "{now:?}"
    );

    // A controller still expecting the failover sets loses and is told what is there.
    let e = w
        .r53
        .apply_routed(&www, &failover, &weighted, &all_healthy)
        .await
        .expect_err("stale");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("[www-w-a] weighted 90 192.0.2.10"), "{msg}");

    // Weighted → a geolocation map with a default.
    let geo_map = vec![
        geo("www-eu", Some("EU"), None, "192.0.2.10"),
        geo("www-us", None, Some("US"), "198.51.100.20"),
        geo("www-default", None, Some("*"), "203.0.113.30"),
    ];
    w.r53
        .apply_routed(&www, &weighted, &geo_map, &all_healthy)
        .await
        .unwrap();
    let now: Vec<RoutedSet> = w
        .r53
        .read_sets(&www)
        .await
        .unwrap()
        .iter()
        .map(|s| Route53::routed_of(s, RecordType::A))
        .collect();
    assert_eq!(now.len(), 3, "{now:?}");

    // A routed name is not a simple record: the simple API says so instead of guessing.
    let e = w.r53.read(&www).await.expect_err("routed");
    assert!(e.to_string().contains("routing-policy API"), "{e}");
}
