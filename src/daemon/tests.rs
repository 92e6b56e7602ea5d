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
        Options { once: true },
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
