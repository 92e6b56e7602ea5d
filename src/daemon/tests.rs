//! The daemon in process: a real catalog (SQLite) and stores (local disk, S3 endpoints that
//! do not answer), the Kubernetes API through its contract fake.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::{Options, run};
use crate::config::Config;
use crate::kube::KubeApi;
use crate::kube::fake::Fake;
use crate::leader::FileLock;
use crate::model::Clock;
use crate::ops::Ctx;

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid time")
}

/// A scratch directory with an age key, a data directory and the config `yaml`
/// (`{dir}` and `{recipient}` replaced), opened as a [`Ctx`].
struct Fixture {
    dir: tempfile::TempDir,
    app: Arc<Ctx>,
}

impl Fixture {
    async fn new(yaml: &str, clock: Arc<dyn Clock>, kube: Arc<dyn KubeApi>) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let recipient = crate::pipeline::crypto::generate_identity_file(
            &dir.path().join("age.key"),
            start_time(),
        )
        .expect("age key");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        std::fs::write(dir.path().join("data/hello.txt"), "hello daemon\n").expect("data file");
        let text = yaml
            .replace("{dir}", &dir.path().display().to_string())
            .replace("{recipient}", &recipient);
        let config = Config::parse(&text, &dir.path().join("lifeboat.yaml")).expect("config");
        let mut app = Ctx::open(config).await.expect("open catalog and stores");
        app.clock = clock;
        app.kube = kube;
        Fixture {
            dir,
            app: Arc::new(app),
        }
    }

    fn leader(&self) -> Box<dyn crate::leader::Leader> {
        Box::new(FileLock::new(self.dir.path().join("leader.lock")))
    }
}

const HEAD: &str = "catalog: \"sqlite://{dir}/catalog.db\"\n\
    encryption:\n  recipients: [\"{recipient}\"]\n  identity_file: \"{dir}/age.key\"\n";

#[tokio::test]
async fn scheduled_verifications_run_in_the_sandbox_of_daemon_verify_sandbox() {
    let fake = Arc::new(Fake::default());
    let f = Fixture::new(
        &format!(
            "{HEAD}stores:\n  local: {{ url: \"file://{{dir}}/store\" }}\n\
             sources:\n  - name: s\n    kind: files\n    path: \"{{dir}}/data\"\n    store: local\n    \
             verify: {{ schedule: \"0 3 * * *\" }}\n\
             sandbox:\n  kubernetes: {{ image: \"ghcr.io/x/lifeboat-sandbox:1\" }}\n\
             daemon:\n  verify_sandbox: kubernetes\n"
        ),
        crate::model::clock::system(),
        fake.clone(),
    )
    .await;
    let bar = indicatif::ProgressBar::hidden();
    crate::ops::backup::run(&f.app, "s", &bar, CancellationToken::new())
        .await
        .expect("backup");

    let summary = run(
        f.app.clone(),
        f.leader(),
        Arc::new(Metrics::default()),
        std::future::pending(),
        Options {
            once: true,
            ..Default::default()
        },
    )
    .await
    .expect("daemon");
    assert_eq!(
        (summary.succeeded, summary.failed.as_slice()),
        (1, &[][..]),
        "{summary:?}"
    );
    let rows = f
        .app
        .catalog
        .verifications(Some("s"), 10)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].sandbox, "kubernetes", "{rows:?}");
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.verb == "create" && c.kind == "Job"),
        "the restore ran as a Job: {:?}",
        fake.calls()
    );
}

/// `GET path` on 127.0.0.1:`port`; the status code, the body and how long it took.
async fn get(port: u16, path: &str) -> (u16, String, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut resp = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        s.read_to_string(&mut resp),
    )
    .await
    .expect("an answer within 30s")
    .expect("read");
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body, started.elapsed())
}

/// Serves the daemon's HTTP endpoints for `app` on a free loopback port.
async fn serve(app: Arc<Ctx>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let state = super::http::HttpState {
        app,
        metrics: Arc::new(Metrics::default()),
        status: Arc::new(super::status::ObjectiveStatus),
        token: None,
        failover: None,
    };
    tokio::spawn(super::http::serve(listener, state, std::future::pending()));
    port
}

/// An S3 store whose endpoint accepts connections and never answers (a region that is down).
fn blackhole_store(name: &str, port: u16) -> String {
    format!(
        "  {name}: {{ url: \"s3://dr/lb\", region: us-east-1, endpoint: \"http://127.0.0.1:{port}\", \
         access_key_id: k, secret_access_key: s }}\n"
    )
}

#[tokio::test]
async fn readyz_ignores_copy_stores_and_names_a_primary_store_that_does_not_answer() {
    // Accepts (the kernel completes the handshake) and never reads nor answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole = blackhole.local_addr().expect("addr").port();
    let limit = super::http::READY_CHECK_TIMEOUT + std::time::Duration::from_secs(1);

    // The DR copy store is down: still ready, and at once.
    let f = Fixture::new(
        &format!(
            "{HEAD}stores:\n  local: {{ url: \"file://{{dir}}/store\" }}\n{}\
             sources:\n  - name: s\n    kind: files\n    path: \"{{dir}}/data\"\n    store: local\n    copies: [dr]\n",
            blackhole_store("dr", hole)
        ),
        crate::model::clock::system(),
        Arc::new(Fake::default()),
    )
    .await;
    let port = serve(f.app.clone()).await;
    let (code, body, took) = get(port, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(took < limit, "took {took:?}: {body}");
    assert!(
        !body.contains("\"dr\""),
        "copy stores are not probed: {body}"
    );

    // The primary store is down: not ready, within the bound, and the body says which.
    let f = Fixture::new(
        &format!(
            "{HEAD}stores:\n  local: {{ url: \"file://{{dir}}/store\" }}\n{}\
             sources:\n  - name: s\n    kind: files\n    path: \"{{dir}}/data\"\n    store: primary\n    copies: [local]\n",
            blackhole_store("primary", hole)
        ),
        crate::model::clock::system(),
        Arc::new(Fake::default()),
    )
    .await;
    let port = serve(f.app.clone()).await;
    let (code, body, took) = get(port, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(took < limit, "took {took:?}: {body}");
    assert!(body.contains("store primary: no answer within"), "{body}");
    drop(blackhole);
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_waits_for_its_next_slot() {
    use crate::catalog::Status;
    use std::time::Duration;
    let clock = Arc::new(crate::model::ManualClock::new(start_time()));
    let f = Fixture::new(
        &format!(
            "{HEAD}stores:\n  local: {{ url: \"file://{{dir}}/store\" }}\n\
             sources:\n  - name: broken\n    kind: command\n    argv: [\"sh\", \"-c\", \"exit 3\"]\n    \
             store: local\n    schedule: \"0 3 * * *\"\n\
             daemon:\n  retry: {{ max_attempts: 3, backoff: 1m, max_backoff: 1h }}\n"
        ),
        clock.clone(),
        Arc::new(Fake::default()),
    )
    .await;
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(run(
        f.app.clone(),
        f.leader(),
        metrics.clone(),
        stop.clone().cancelled_owned(),
        Options::default(),
    ));
    let app = f.app.clone();
    // The finished backup runs, oldest first, as (status, started_at).
    let finished = move || {
        let app = app.clone();
        async move {
            app.catalog
                .runs(100)
                .await
                .expect("runs")
                .into_iter()
                .filter(|r| r.job == "backup" && r.status != Status::Running)
                .map(|r| (r.status, r.started_at))
                .collect::<Vec<_>>()
        }
    };
    let wait_for = |n: usize| {
        let finished = finished.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let runs = finished().await;
                if runs.len() >= n {
                    return runs;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{n} finished backup(s) within 60s: {runs:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let at = |secs: i64| {
        (start_time() + chrono::TimeDelta::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    // What a short real pause would let the daemon do if it (wrongly) had something due.
    let settle = || tokio::time::sleep(Duration::from_millis(300));

    // Never ran: due at once; fails.
    let runs = wait_for(1).await;
    assert_eq!(runs[0].0, Status::Failed, "{runs:?}");
    // The first retry waits `backoff`, not a second less.
    clock.advance(Duration::from_secs(59));
    settle().await;
    assert_eq!(finished().await.len(), 1, "retried before the backoff");
    clock.advance(Duration::from_secs(1));
    wait_for(2).await;
    // The second waits twice as long.
    clock.advance(Duration::from_secs(119));
    settle().await;
    assert_eq!(
        finished().await.len(),
        2,
        "retried before the doubled backoff"
    );
    clock.advance(Duration::from_secs(1));
    wait_for(3).await;
    let gave_up =
        "lifeboat_job_runs_total{kind=\"backup\",source=\"broken\",outcome=\"gave_up\"} 1";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !metrics.render().lines().any(|l| l == gave_up) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more until the next slot (03:00 UTC the next day).
    clock.advance(Duration::from_secs(16 * 3600));
    settle().await;
    assert_eq!(finished().await.len(), 3, "no attempt after the last one");
    let next_slot = (3 + 24 - 10) * 3600;
    clock.set(start_time() + chrono::TimeDelta::seconds(next_slot));
    let runs_then = wait_for(4).await;

    stop.cancel();
    let summary = daemon.await.expect("daemon task").expect("daemon");
    assert_eq!(summary.failed.len(), 1, "{summary:?}");
    let starts: Vec<&str> = runs_then.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        starts,
        [at(0), at(60), at(60 + 120), at(next_slot)],
        "attempts at the start, after 1m, after 2m more, then at the next slot: {runs_then:?}"
    );
}

/// The contract fake behind a switch: once `cut` is set, every call hangs (an API server
/// behind a partition: no answer, no error).
struct Partitionable {
    inner: Fake,
    cut: std::sync::atomic::AtomicBool,
}

impl Partitionable {
    async fn wait(&self) {
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait::async_trait]
impl KubeApi for Partitionable {
    async fn create(
        &self,
        res: &crate::kube::Resource,
        ns: &str,
        obj: serde_json::Value,
    ) -> Result<serde_json::Value, crate::kube::KubeError> {
        self.wait().await;
        self.inner.create(res, ns, obj).await
    }
    async fn get(
        &self,
        res: &crate::kube::Resource,
        ns: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, crate::kube::KubeError> {
        self.wait().await;
        self.inner.get(res, ns, name).await
    }
    async fn delete(
        &self,
        res: &crate::kube::Resource,
        ns: &str,
        name: &str,
    ) -> Result<(), crate::kube::KubeError> {
        self.wait().await;
        self.inner.delete(res, ns, name).await
    }
    async fn replace(
        &self,
        res: &crate::kube::Resource,
        ns: &str,
        obj: serde_json::Value,
    ) -> Result<serde_json::Value, crate::kube::KubeError> {
        self.wait().await;
        self.inner.replace(res, ns, obj).await
    }
    async fn list(
        &self,
        res: &crate::kube::Resource,
        ns: &str,
        labels: &str,
    ) -> Result<Vec<serde_json::Value>, crate::kube::KubeError> {
        self.wait().await;
        self.inner.list(res, ns, labels).await
    }
    async fn logs(&self, ns: &str, pod: &str) -> Result<String, crate::kube::KubeError> {
        self.wait().await;
        self.inner.logs(ns, pod).await
    }
    async fn merge_patch(
        &self,
        res: &crate::kube::Resource,
        ns: &str,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<serde_json::Value, crate::kube::KubeError> {
        self.wait().await;
        self.inner.merge_patch(res, ns, name, patch).await
    }
    async fn evict(&self, ns: &str, pod: &str) -> Result<(), crate::kube::KubeError> {
        self.wait().await;
        self.inner.evict(ns, pod).await
    }
}

/// A daemon whose only source takes a minute to back up, leading through a Lease on `kube`.
async fn slow_job_fixture(kube: Arc<dyn KubeApi>) -> Fixture {
    Fixture::new(
        &format!(
            "{HEAD}stores:\n  local: {{ url: \"file://{{dir}}/store\" }}\n\
             sources:\n  - name: slow\n    kind: command\n    argv: [\"sh\", \"-c\", \"sleep 60; echo done\"]\n    \
             store: local\n    schedule: \"0 3 * * *\"\n"
        ),
        crate::model::clock::system(),
        kube,
    )
    .await
}

fn lease(kube: Arc<dyn KubeApi>, me: &str) -> Box<dyn crate::leader::Leader> {
    Box::new(crate::leader::KubeLease::new(
        kube,
        "lifeboat".into(),
        "lifeboat".into(),
        me.into(),
    ))
}

/// Waits until the backup of `slow` is running; returns when it ended, and how.
async fn backup_status(app: &Ctx) -> Option<crate::catalog::Status> {
    app.catalog
        .runs(10)
        .await
        .expect("runs")
        .into_iter()
        .find(|r| r.job == "backup")
        .map(|r| r.status)
}

async fn wait_for_status(
    app: &Ctx,
    want: impl Fn(&crate::catalog::Status) -> bool,
    within: std::time::Duration,
) -> std::time::Duration {
    let started = tokio::time::Instant::now();
    loop {
        if backup_status(app).await.as_ref().is_some_and(&want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "backup status {:?} after {within:?}",
            backup_status(app).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Issue 9 (leadership fences itself): `run --once` renews its Lease while its jobs run, and
/// cancels them when another replica holds the Lease.
#[tokio::test]
async fn run_once_renews_its_lease_and_stops_its_jobs_when_another_replica_takes_it() {
    use crate::catalog::Status;
    use std::time::Duration;
    let kube = Arc::new(Fake::default());
    let f = slow_job_fixture(kube.clone()).await;
    let daemon = tokio::spawn(run(
        f.app.clone(),
        lease(kube.clone(), "me"),
        Arc::new(Metrics::default()),
        std::future::pending::<()>(),
        Options {
            once: true,
            ..Default::default()
        },
    ));
    wait_for_status(&f.app, |s| *s == Status::Running, Duration::from_secs(30)).await;
    // Renewed while the job runs: renewTime moves.
    let renewed = |kube: &Fake| {
        kube.object(&crate::kube::LEASE, "lifeboat", "lifeboat")
            .and_then(|l| l["spec"]["renewTime"].as_str().map(str::to_string))
    };
    let first = renewed(&kube);
    tokio::time::sleep(crate::leader::RENEW_EVERY * 2).await;
    assert_ne!(renewed(&kube), first, "run --once renews its Lease");
    // Another replica writes itself in.
    let mut stolen = kube
        .object(&crate::kube::LEASE, "lifeboat", "lifeboat")
        .expect("lease");
    stolen["spec"]["holderIdentity"] = "other".into();
    stolen["spec"]["renewTime"] = crate::model::clock::system()
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        .into();
    kube.replace(&crate::kube::LEASE, "lifeboat", stolen)
        .await
        .expect("take the lease");
    let took = wait_for_status(&f.app, |s| *s != Status::Running, Duration::from_secs(30)).await;
    assert_eq!(backup_status(&f.app).await, Some(Status::Failed));
    assert!(
        took < Duration::from_secs(crate::leader::LEASE_SECONDS as u64),
        "stopped {took:?} after losing the lease"
    );
    let ended = daemon.await.expect("join");
    assert!(
        matches!(ended, Err(super::DaemonError::NotLeader(_))),
        "{ended:?}"
    );
}

/// Issue 9 (leadership fences itself): a leader whose lock stops answering (no error, no
/// answer) cancels its jobs before its Lease could pass to another replica.
#[tokio::test]
async fn a_leader_whose_lock_stops_answering_cancels_its_jobs_before_the_lease_expires() {
    use crate::catalog::Status;
    use std::time::Duration;
    let kube = Arc::new(Partitionable {
        inner: Fake::default(),
        cut: false.into(),
    });
    let f = slow_job_fixture(kube.clone()).await;
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(run(
        f.app.clone(),
        lease(kube.clone(), "me"),
        Arc::new(Metrics::default()),
        stop.clone().cancelled_owned(),
        Options::default(),
    ));
    wait_for_status(&f.app, |s| *s == Status::Running, Duration::from_secs(30)).await;
    kube.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    let took = wait_for_status(&f.app, |s| *s != Status::Running, Duration::from_secs(30)).await;
    assert_eq!(backup_status(&f.app).await, Some(Status::Failed));
    assert!(
        took < Duration::from_secs(crate::leader::LEASE_SECONDS as u64),
        "jobs ran on {took:?} after the lock stopped answering (the lease lasts {} s)",
        crate::leader::LEASE_SECONDS
    );
    stop.cancel();
    let _ = daemon.await;
}

#[tokio::test]
async fn a_half_sent_request_does_not_hold_a_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = Fixture::new(
        &format!(
            "{HEAD}stores:\n  local: {{ url: \"file://{{dir}}/store\" }}\n\
             sources:\n  - name: s\n    kind: files\n    path: \"{{dir}}/data\"\n    store: local\n"
        ),
        crate::model::clock::system(),
        Arc::new(Fake::default()),
    )
    .await;
    let port = serve(f.app.clone()).await;
    let limit = super::http::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(3);
    // Sends `bytes` and never more; what the server answered before closing, or why not.
    let half_sent = |bytes: &'static [u8]| async move {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        conn.write_all(bytes).await.expect("write");
        let mut buf = Vec::new();
        let started = std::time::Instant::now();
        match tokio::time::timeout(limit, conn.read_to_end(&mut buf)).await {
            Ok(_) => Ok(String::from_utf8_lossy(&buf).into_owned()),
            Err(_) => Err(format!("connection held for {:?}", started.elapsed())),
        }
    };
    // Headers never finished.
    let head = half_sent(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert!(head.is_ok(), "{head:?}");
    // A body announced and never sent.
    let body =
        half_sent(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nab")
            .await
            .expect("an oversized, half-sent body must not hold the connection");
    assert!(body.contains("413"), "{body}");
    // Whole requests still work.
    let (code, body, _) = get(port, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}
