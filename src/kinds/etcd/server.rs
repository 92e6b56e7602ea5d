//! An etcd member on a restored data directory (one member, client URL on a loopback port).
//! The verification sandbox starts it to check a restore; the restore itself only builds the
//! data directory (`etcdutl snapshot restore`) and starts nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::kinds::process::{Group, ServerError, ServerProcess};

/// A running etcd member; its log is `etcd.log` in the directory given to
/// [`EtcdServer::start`]. Dropping it kills the member.
pub struct EtcdServer {
    _process: ServerProcess,
    endpoint: String,
}

impl EtcdServer {
    /// Starts `program` (an `etcd`) on the data directory `data`, restored as member `name`
    /// with `peer_url`, serving clients on `127.0.0.1:client_port`; its log goes to
    /// `dir/etcd.log`. Waits until it serves reads, at most `timeout`. It runs in its own
    /// process group (see [`Group::Own`]): whoever starts it stops it.
    pub async fn start(
        program: &Path,
        dir: &Path,
        data: &Path,
        name: &str,
        peer_url: &str,
        client_port: u16,
        timeout: Duration,
    ) -> Result<EtcdServer, ServerError> {
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let mut cmd = Command::new(program);
        cmd.args(["--name", name])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", peer_url])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--log-level", "warn"])
            .env_remove("ETCD_DATA_DIR");
        let mut process = ServerProcess::spawn(cmd, "etcd", dir.join("etcd.log"), Group::Own)?;
        let probe = endpoint.clone();
        process
            .wait_ready_async(timeout, || {
                let probe = probe.clone();
                async move { super::observe(&probe, Duration::from_secs(2)).await.is_ok() }
            })
            .await?;
        Ok(EtcdServer {
            _process: process,
            endpoint,
        })
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}
