// Throwaway etcd members for the tests: a fresh one-member cluster in a temp dir, or a member
// started on an existing data directory (a restored one). Client and peer ports are free
// loopback ports; dropping the server kills it and removes what it owns.
// Depends on nothing but std and the `tempfile` crate.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::servers::free_port;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: u32 = 3;

pub struct EtcdServer {
    pub name: String,
    pub client_port: u16,
    pub peer_url: String,
    pub data_dir: PathBuf,
    log_file: PathBuf,
    child: Option<Child>,
    /// Holds the data dir (fresh members) and the log; removed on drop.
    dir: TempDir,
}

impl EtcdServer {
    /// A new one-member cluster named `default` with an empty data directory.
    pub fn start() -> EtcdServer {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = temp_dir();
            let data_dir = dir.path().join("data");
            let peer_url = format!("http://127.0.0.1:{}", free_port());
            match EtcdServer::spawn(dir, data_dir, "default", &peer_url) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("etcd did not start: {last}");
    }

    /// A member on an existing data directory (e.g. one `lifeboat restore --to-dir` made);
    /// `name` and `peer_url` must be the ones it was restored with.
    pub fn start_on(data_dir: &Path, name: &str, peer_url: &str) -> EtcdServer {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match EtcdServer::spawn(temp_dir(), data_dir.to_path_buf(), name, peer_url) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("etcd did not start on {}: {last}", data_dir.display());
    }

    fn spawn(
        dir: TempDir,
        data_dir: PathBuf,
        name: &str,
        peer_url: &str,
    ) -> Result<EtcdServer, String> {
        let client_port = free_port();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let log_file = dir.path().join("etcd.log");
        let log = fs::File::create(&log_file).map_err(|e| format!("create log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", peer_url])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            // No metrics/pprof listener on a fixed port, quiet logs.
            .args(["--log-level", "warn"])
            .env_remove("ETCD_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run etcd (install etcd-server): {e}"))?;
        let mut server = EtcdServer {
            name: name.to_string(),
            client_port,
            peer_url: peer_url.to_string(),
            data_dir,
            log_file,
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "etcd exited ({status}):\n{}",
                    fs::read_to_string(&server.log_file).unwrap_or_default()
                ));
            }
            let health = etcdctl_command(&server.endpoint())
                .args(["endpoint", "health", "--command-timeout=2s"])
                .output();
            if health.is_ok_and(|o| o.status.success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not healthy within {READY_TIMEOUT:?}:\n{}",
                    fs::read_to_string(&server.log_file).unwrap_or_default()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Runs `etcdctl` (API v3) against this member; panics unless it succeeds; returns stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = etcdctl_command(&self.endpoint())
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("lifeboat-etcd-")
        .tempdir()
        .expect("create a temp dir for etcd")
}

fn etcdctl_command(endpoint: &str) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .stdin(Stdio::null());
    cmd
}
