//! Drill measurement against a real PostgreSQL: canary writes every 100 ms through an
//! in-process proxy; the test blackholes the proxy (the writer path) for 2 s and the
//! measured RTO is 2 s within the canary resolution, with nothing acknowledged lost.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::PgServer;
use lifeboat::model::{Clock, SystemClock};
use lifeboat::ops::drill::canary::{PgCanary, write_until};
use lifeboat::ops::drill::proxy::{Mode, Proxy};
use lifeboat::policy::drill::{DrillVerdict, Expected, judge, measure};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_path_stopped_for_two_seconds_measures_rto_two_seconds() {
    let pg = PgServer::start();
    pg.create_db("app");
    let proxy = Proxy::start("127.0.0.1:0", format!("127.0.0.1:{}", pg.port()))
        .await
        .expect("proxy");
    let url = pg.url("app").replacen(
        &format!(":{}/", pg.port()),
        &format!(":{}/", proxy.addr.port()),
        1,
    );
    assert!(url.contains(&proxy.addr.port().to_string()), "{url}");
    let interval = Duration::from_millis(100);
    let canary = Arc::new(
        PgCanary::connect(&url, "drill-test", Duration::from_secs(5))
            .await
            .expect("canary"),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_until(
        canary.clone(),
        clock.clone(),
        interval,
        Duration::from_secs(5),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fault_at = clock.now();
    proxy.set(Mode::Blackhole);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    proxy.set(Mode::Pass);
    assert_eq!(proxy.mode(), Mode::Pass);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let canaries = writer.await.expect("writer");
    let survived = canary.survivors().await.expect("survivors");
    let m = measure(&canaries, &survived, fault_at, interval);
    let rto = m.rto_ms.expect("recovered");
    assert!(
        (1900..=2300).contains(&rto),
        "RTO {rto} ms for a 2000 ms outage (resolution 100 ms): {m:?}"
    );
    assert!(m.gaps.is_empty() && m.lost.is_empty(), "{m:?}");
    assert!(m.rpo_ms.expect("rpo") <= 200, "{m:?}");
    assert!(m.sent >= 45, "{m:?}");
    let j = judge(
        &m,
        &Expected {
            rpo: Some(Duration::from_secs(1)),
            rto: Some(Duration::from_secs(30)),
        },
        &[("blackhole".into(), 1)],
    );
    assert_eq!(j.verdict, DrillVerdict::Pass, "{j:?}");
    // Objectives tighter than what happened: breached.
    let j = judge(
        &m,
        &Expected {
            rpo: None,
            rto: Some(Duration::from_secs(1)),
        },
        &[("blackhole".into(), 1)],
    );
    assert_eq!(j.verdict, DrillVerdict::Breached, "{j:?}");
    canary.close().await;
}

#[test]
fn drill_list_and_plan() {
    let env = common::Env::new();
    let list = env.ok(&["drill", "list"]);
    for name in [
        "pod-kill",
        "store-outage",
        "corrupt-latest-snapshot",
        "complete-disaster",
    ] {
        assert!(list.contains(name), "{list}");
    }
    assert!(list.contains("--var PIDFILE=..."), "{list}");
    let err = env.fails(&["drill", "plan", "pod-kill"]);
    assert!(err.contains("--var PIDFILE=..."), "{err}");
    let plan = env.ok(&[
        "drill",
        "plan",
        "pod-kill",
        "--var",
        "PIDFILE=/run/app.pid",
        "--var",
        "RESTART=true",
        "--var",
        "CANARY_URL=postgres://canary:hunter2@db/app",
    ]);
    assert!(
        plan.contains("/run/app.pid") && plan.contains("rolled back within 2m"),
        "{plan}"
    );
    assert!(!plan.contains("hunter2"), "{plan}");
    // A scenario that would touch a target not marked allowed is refused.
    std::fs::write(
        env.path("bad.yaml"),
        "tier: pod\ntargets:\n  - { name: t, store: s }\nfaults:\n  - { name: f, target: t, action: unavailable, duration: 1s }\n",
    )
    .unwrap();
    let err = env.fails(&["drill", "plan", "./bad.yaml"]);
    assert!(err.contains("not `allowed: true`"), "{err}");
}
