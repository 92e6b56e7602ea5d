//! etcd's scratch: the snapshot restored into a data directory (member `default`), then
//! served by an `etcd` on 127.0.0.1; the revision and key count are compared with the
//! facts. See [`crate::kinds::scratch`].
//!
//! Guarantees: the scratch etcd lets no one in. As soon as it serves, authentication is
//! turned on (user `root` with a random password that lives only in this process's memory
//! and the environment of the user checks: never in argv or a file), before any check runs
//! and before this step returns; every request after that needs the password.
//!
//! # Caveats
//! Between the member answering its first read and authentication being on (one round trip
//! of three requests on 127.0.0.1) the restored data is readable by a local client that
//! races for it. A snapshot of a cluster that had authentication on keeps its own users:
//! turning it on again fails and so does the verification (as it did before).

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
        let server = EtcdServer::start(
            Path::new("etcd"),
            &self.dir,
            &self.data,
            super::DEFAULT_NAME,
            &self.peer_url,
            free_port()?,
            READY_TIMEOUT,
        )
        .await?;
        let endpoint = server.endpoint().to_string();
        self.server = Some(server);
        super::enable_auth(&endpoint, &self.password, Duration::from_secs(30))
            .await
            .map_err(|detail| ScratchError::Server {
                what: "the restored etcd cannot be locked (authentication on)".into(),
                detail,
            })?;
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

    /// Issue 9 (sandboxes let no one in): once the scratch etcd serves, a client without the
    /// password (another local user with `etcdctl`, or any TCP client) is refused.
    #[tokio::test]
    async fn the_scratch_etcd_refuses_a_client_without_the_password() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let mut scratch = EtcdScratch::new(dir.path()).expect("ports");
        // An empty member (no restore): what matters is who may read it.
        scratch.data = dir.path().join("fresh");
        scratch
            .serve()
            .await
            .expect("etcd (scripts/setup.sh installs it)");
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
        let login = Some(("root", &scratch.password));
        super::super::observe_as(&endpoint, login, Duration::from_secs(10))
            .await
            .expect("the sandbox's own client is served");
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
