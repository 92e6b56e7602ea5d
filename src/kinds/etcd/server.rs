//! An etcd member on a restored data directory (one member, client URL on a loopback port).
//! The verification sandbox starts it to check a restore; the restore itself only builds the
//! data directory (`etcdutl snapshot restore`) and starts nothing.
//!
//! Guarantees: [`EtcdServer::lock`] turns authentication on in a data directory while the
//! member serves only on unix sockets inside a directory of mode 0700 (no TCP listener at
//! all), so no other local user can reach the data before it needs a password; the password
//! reaches `etcdctl` on its stdin, never argv or a file.
//!
//! [`EtcdServer::start`] then listens on TCP for clients only (its peer listener is a unix
//! socket in the same directory).
//!
//! Caveats: `lock` needs `etcdctl` (etcd's client tools) on `PATH`. etcd's unauthenticated
//! `/health`, `/version` and `/metrics` on the client port stay open to local users: no
//! keys or values, but the metrics tell the database size and key count.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::kinds::process::{Group, ServerError, ServerProcess};
use crate::model::SecretString;

/// The directory, inside the sandbox directory, holding [`EtcdServer::lock`]'s sockets.
pub const PRIVATE_DIR: &str = "etcd-private";
/// The client URL of the member [`EtcdServer::lock`] starts: a unix socket named
/// `client:2379` in the member's working directory ([`PRIVATE_DIR`]); etcd 3.4 takes unix
/// URLs only as `unix://HOST:PORT`, relative to its working directory.
pub const PRIVATE_CLIENT_URL: &str = "unix://client:2379";
const PRIVATE_PEER_URL: &str = "unix://peer:2380";

/// A running etcd member; its log is `etcd.log` in the directory given to
/// [`EtcdServer::start`]. Dropping it kills the member.
pub struct EtcdServer {
    _process: ServerProcess,
    endpoint: String,
}

impl EtcdServer {
    /// Starts `program` (an `etcd`) on the data directory `data`, restored as member `name`
    /// with `peer_url` (advertised only: the peer listener is a unix socket in
    /// `dir/`[`PRIVATE_DIR`], created 0700 if missing), serving clients on
    /// `127.0.0.1:client_port`, its only TCP listener; its log goes to `dir/etcd.log`. Waits
    /// until it serves reads (as `login` when given), at most `timeout`. It runs in its own process group (see [`Group::Own`]): whoever starts it
    /// stops it.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        program: &Path,
        dir: &Path,
        data: &Path,
        name: &str,
        peer_url: &str,
        client_port: u16,
        login: Option<(&str, &SecretString)>,
        timeout: Duration,
    ) -> Result<EtcdServer, ServerError> {
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let private = private_dir(dir)?;
        let mut cmd = Command::new(program);
        cmd.current_dir(&private)
            .args(["--name", name])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", PRIVATE_PEER_URL])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--log-level", "warn"])
            .env_remove("ETCD_DATA_DIR");
        let mut process = ServerProcess::spawn(cmd, "etcd", dir.join("etcd.log"), Group::Own)?;
        let probe = endpoint.clone();
        let login = login.map(|(u, p)| (u.to_string(), p.clone()));
        process
            .wait_ready_async(timeout, || {
                let probe = probe.clone();
                let login = login.clone();
                async move {
                    let login = login.as_ref().map(|(u, p)| (u.as_str(), p));
                    super::observe_as(&probe, login, Duration::from_secs(2))
                        .await
                        .is_ok()
                }
            })
            .await?;
        Ok(EtcdServer {
            _process: process,
            endpoint,
        })
    }

    /// Turns authentication on in the data directory `data` (member `name`, `peer_url`):
    /// user `root` (role `root`) with `password`. The member runs only for this, serving on
    /// unix sockets in `dir/`[`PRIVATE_DIR`] (mode 0700, ours), never on TCP, and is stopped
    /// before this returns; its log is `dir/etcd-lock.log`. Fails if the data already has
    /// a `root` user (a snapshot of a cluster with authentication on).
    #[allow(clippy::too_many_arguments)]
    pub async fn lock(
        program: &Path,
        etcdctl: &Path,
        dir: &Path,
        data: &Path,
        name: &str,
        peer_url: &str,
        password: &SecretString,
        timeout: Duration,
    ) -> Result<(), ServerError> {
        // Said plainly up front, rather than as a member that never becomes ready.
        let on_path = if etcdctl.components().count() > 1 {
            etcdctl.is_file()
        } else {
            crate::kinds::process::find_program(None, &etcdctl.to_string_lossy()).is_some()
        };
        if !on_path {
            return Err(ServerError::Spawn {
                what: "etcdctl",
                program: etcdctl.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "etcdctl is not on PATH (it turns authentication on in the restored etcd); \
                     install etcd's client tools (Debian: etcd-client)",
                ),
            });
        }
        let private = private_dir(dir)?;
        let mut cmd = Command::new(program);
        cmd.current_dir(&private)
            .args(["--name", name])
            .arg("--data-dir")
            .arg(data)
            .args(["--listen-client-urls", PRIVATE_CLIENT_URL])
            .args(["--advertise-client-urls", PRIVATE_CLIENT_URL])
            .args(["--listen-peer-urls", PRIVATE_PEER_URL])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--log-level", "warn"])
            .env_remove("ETCD_DATA_DIR");
        let mut process = ServerProcess::spawn(cmd, "etcd", dir.join("etcd-lock.log"), Group::Own)?;
        let ctl = |args: &[&str]| {
            let mut c = tokio::process::Command::new(etcdctl);
            c.current_dir(&private)
                .env("ETCDCTL_API", "3")
                .env_remove("ETCDCTL_USER")
                .env_remove("ETCDCTL_PASSWORD")
                .env_remove("ETCDCTL_ENDPOINTS")
                .args(["--endpoints", PRIVATE_CLIENT_URL])
                .args(["--dial-timeout", "2s", "--command-timeout", "5s"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            c
        };
        process
            .wait_ready_async(timeout, || {
                let mut probe = ctl(&["get", "lifeboat-ready"]);
                async move { probe.status().await.is_ok_and(|s| s.success()) }
            })
            .await?;
        let fail = |step: &'static str, detail: String| ServerError::Exited {
            what: step,
            status: "failed".into(),
            log: detail
                .replace(password.expose(), "[password]")
                .lines()
                .map(str::to_string)
                .collect(),
        };
        // `user add` reads the password (twice: entry and confirmation) from stdin.
        let mut add = ctl(&["user", "add", "root"]);
        add.stdin(Stdio::piped());
        let mut child = add
            .spawn()
            .map_err(|e| fail("etcdctl user add root", e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let typed = format!("{0}\n{0}\n", password.expose());
            stdin
                .write_all(typed.as_bytes())
                .await
                .map_err(|e| fail("etcdctl user add root", e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| fail("etcdctl user add root", e.to_string()))?;
        if !out.status.success() {
            return Err(fail(
                "etcdctl user add root (does the snapshot already have authentication on?)",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        for (step, args) in [
            (
                "etcdctl user grant-role root root",
                &["user", "grant-role", "root", "root"][..],
            ),
            ("etcdctl auth enable", &["auth", "enable"][..]),
        ] {
            let out = ctl(args)
                .output()
                .await
                .map_err(|e| fail(step, e.to_string()))?;
            if !out.status.success() {
                return Err(fail(
                    step,
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ));
            }
        }
        // Stopped (SIGKILL, reaped) here; `auth enable` is in its WAL, applied at restart.
        drop(process);
        Ok(())
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// `dir/`[`PRIVATE_DIR`], mode 0700 (made so if an earlier attempt left it), without the
/// sockets an earlier member left.
fn private_dir(dir: &Path) -> Result<std::path::PathBuf, ServerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = dir.join(PRIVATE_DIR);
    let io = |source| ServerError::Log {
        path: private.clone(),
        source,
    };
    if !private.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(io)?;
    }
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    for socket in ["client:2379", "peer:2380"] {
        match std::fs::remove_file(private.join(socket)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    Ok(private)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn locking_without_etcdctl_says_to_install_it_and_starts_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let err = EtcdServer::lock(
            Path::new("etcd"),
            Path::new("/nonexistent/etcdctl"),
            dir.path(),
            &dir.path().join("data"),
            "default",
            "http://127.0.0.1:1",
            &SecretString::new("pw"),
            Duration::from_secs(5),
        )
        .await
        .expect_err("no etcdctl");
        assert!(
            matches!(
                err,
                ServerError::Spawn {
                    what: "etcdctl",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("etcd-client"), "{err}");
        assert!(!dir.path().join(PRIVATE_DIR).exists());
    }
}
