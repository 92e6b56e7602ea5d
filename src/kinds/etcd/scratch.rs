//! etcd's scratch: the snapshot restored into a data directory (member `default`), then
//! served by an `etcd` on 127.0.0.1; the revision and key count are compared with the
//! facts. See [`crate::kinds::scratch`].
//!
//! Guarantees: the scratch etcd lets no one in, at any time. Before it listens on TCP,
//! authentication is turned on in the restored data (user `root` with a random password
//! that lives only in this process's memory, `etcdctl`'s stdin and the environment of the
//! user checks: never in argv or a file) by a first run of the member that serves only on
//! unix sockets in a directory of mode 0700 of ours ([`EtcdServer::lock`]); the member
//! that then serves clients on 127.0.0.1 (its peer listener stays a unix socket in that
//! directory) starts with authentication on, so every request to it needs the password
//! from its first one.
//!
//! # Caveats
//! A snapshot of a cluster that had authentication on keeps its own users: adding `root`
//! again fails and so does the verification (as it did before). The restored member starts
//! twice (once locked away, once to serve): about a second more per etcd verification.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::server::EtcdServer;
use crate::kinds::checks::{self, Check};
use crate::kinds::scratch::{READY_TIMEOUT, Scratch, ScratchError, UserTarget, free_port};
use crate::kinds::{Facts, RestoreOptions, RestoreTo};
use crate::model::SecretString;

pub struct EtcdScratch {
    dir: PathBuf,
    data: PathBuf,
    peer_url: String,
    client_port: u16,
    server: Option<EtcdServer>,
    /// The `root` user's password once authentication is on.
    password: SecretString,
}

impl EtcdScratch {
    pub fn new(dir: &Path) -> Result<EtcdScratch, ScratchError> {
        Ok(EtcdScratch {
            dir: dir.to_path_buf(),
            data: dir.join("etcd-data"),
            peer_url: format!("http://127.0.0.1:{}", free_port()?),
            client_port: free_port()?,
            server: None,
            password: SecretString::new(hex::encode(rand::random::<[u8; 24]>())),
        })
    }

    fn endpoint(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.endpoint().to_string())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Scratch for EtcdScratch {
    fn restore_to(&self) -> (RestoreTo, RestoreOptions) {
        let options = RestoreOptions {
            etcd_name: Some(super::DEFAULT_NAME.to_string()),
            etcd_peer_url: Some(self.peer_url.clone()),
            ..RestoreOptions::default()
        };
        (RestoreTo::Dir(self.data.clone()), options)
    }

    async fn serve(&mut self) -> Result<(), ScratchError> {
        let name = super::DEFAULT_NAME;
        // Authentication on before the member listens on anything another user can reach.
        EtcdServer::lock(
            Path::new("etcd"),
            Path::new("etcdctl"),
            &self.dir,
            &self.data,
            name,
            &self.peer_url,
            &self.password,
            READY_TIMEOUT,
        )
        .await?;
        let server = EtcdServer::start(
            Path::new("etcd"),
            &self.dir,
            &self.data,
            name,
            &self.peer_url,
            self.client_port,
            Some(("root", &self.password)),
            READY_TIMEOUT,
        )
        .await?;
        self.server = Some(server);
        Ok(())
    }

    async fn check(&mut self, facts: &Facts) -> Result<Vec<Check>, ScratchError> {
        let login = Some(("root", &self.password));
        let (revision, keys) = super::observe_as(&self.endpoint(), login, Duration::from_secs(30))
            .await
            .map_err(|detail| ScratchError::Server {
                what: "the restored etcd does not serve reads".into(),
                detail,
            })?;
        let mut out = vec![Check::pass(
            "etcd serves reads",
            format!("revision {revision}, {keys} key(s)"),
        )];
        out.extend(checks::etcd(facts, revision, keys));
        Ok(out)
    }

    fn user_target(&self) -> UserTarget {
        let mut target = UserTarget::url(&self.endpoint());
        // What `etcdctl` reads (`--user`/`--password`), so checks need no secret in argv.
        target.env.push(("ETCDCTL_USER", "root".to_string()));
        target
            .env
            .push(("ETCDCTL_PASSWORD", self.password.expose().to_string()));
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `etcdctl get "" --prefix` as user `nobody`, without the password, at `endpoint`,
    /// from the working directory `cwd`: whether it read anything (`None`: not run).
    fn nobody_reads(endpoint: &str, cwd: &Path) -> Option<bool> {
        let out = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "etcdctl", "--endpoints", endpoint])
            .args(["--dial-timeout", "1s", "--command-timeout", "2s"])
            .args(["get", "", "--prefix", "--keys-only"])
            .env("ETCDCTL_API", "3")
            .env_remove("ETCDCTL_USER")
            .env_remove("ETCDCTL_PASSWORD")
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        Some(out.status.success())
    }

    /// Issue 9 (sandboxes let no one in): from before the scratch etcd starts until it is
    /// checked, another local user (`nobody` with `etcdctl`, racing on the client port, the
    /// peer port and the private unix socket) is never served; once it serves, a client
    /// without the password is refused.
    #[tokio::test]
    async fn the_scratch_etcd_refuses_a_client_without_the_password() {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().expect("scratch dir");
        let mut scratch = EtcdScratch::new(dir.path()).expect("ports");
        // An empty member (no restore): what matters is who may read it.
        scratch.data = dir.path().join("fresh");
        let racing = crate::kinds::scratch::is_root()
            && std::process::Command::new("etcdctl")
                .arg("version")
                .output()
                .is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let (tries, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let racer = racing.then(|| {
            // Only the private directory may keep `nobody` out, not the test's own.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            let client = format!("http://127.0.0.1:{}", scratch.client_port);
            let peer = scratch.peer_url.clone();
            let private = dir.path().join(super::super::server::PRIVATE_DIR);
            let root = dir.path().to_path_buf();
            let (stop, tries, served) = (stop.clone(), tries.clone(), served.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let attempts = [
                        nobody_reads(&client, &root),
                        nobody_reads(&peer, &root),
                        // Relative to the member's working directory, as it listens.
                        nobody_reads(super::super::server::PRIVATE_CLIENT_URL, &private),
                    ];
                    for read in attempts.into_iter().flatten() {
                        tries.fetch_add(1, Ordering::SeqCst);
                        if read {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        });
        let started = scratch.serve().await;
        let login = Some(("root", &scratch.password));
        let own =
            super::super::observe_as(&scratch.endpoint(), login, Duration::from_secs(10)).await;
        stop.store(true, Ordering::SeqCst);
        if let Some(racer) = racer {
            racer.join().expect("racer");
            assert!(tries.load(Ordering::SeqCst) > 0, "nobody never tried");
            assert_eq!(
                served.load(Ordering::SeqCst),
                0,
                "another local user read the sandbox"
            );
        }
        started.expect("etcd (scripts/setup.sh installs it)");
        own.expect("the sandbox's own client is served");
        let private = dir.path().join(super::super::server::PRIVATE_DIR);
        let mode = std::fs::metadata(&private)
            .expect("private dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the socket directory is not private");
        let peer = scratch.peer_url.trim_start_matches("http://").to_string();
        assert!(
            std::net::TcpStream::connect(&peer).is_err(),
            "the peer port listens on TCP"
        );
        let endpoint = scratch.endpoint();
        let anonymous = super::super::observe(&endpoint, Duration::from_secs(10)).await;
        assert!(
            anonymous.is_err(),
            "a client without the password was served"
        );
        let wrong = SecretString::new("guess");
        let guessed =
            super::super::observe_as(&endpoint, Some(("root", &wrong)), Duration::from_secs(10))
                .await;
        assert!(guessed.is_err(), "a wrong password was accepted");
        // Another local user with etcdctl, without the password, is refused too.
        if std::process::Command::new("etcdctl")
            .arg("version")
            .output()
            .is_ok()
        {
            let mut cmd = if crate::kinds::scratch::is_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "nobody", "--", "etcdctl"]);
                c
            } else {
                std::process::Command::new("etcdctl")
            };
            let out = cmd
                .args([
                    "--endpoints",
                    &endpoint,
                    "get",
                    "",
                    "--prefix",
                    "--keys-only",
                ])
                .env_remove("ETCDCTL_USER")
                .env_remove("ETCDCTL_PASSWORD")
                .output()
                .expect("run etcdctl");
            assert!(
                !out.status.success(),
                "etcdctl without the password read the sandbox: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let argv = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .any(|c| c.contains(scratch.password.expose()));
        assert!(!argv, "the password is in some process's argv");
        let target = scratch.user_target();
        assert!(target.env.iter().any(|(k, _)| *k == "ETCDCTL_PASSWORD"));
    }
}
