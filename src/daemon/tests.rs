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
