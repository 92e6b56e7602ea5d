//! etcd's scratch: the snapshot restored into a data directory (member `default`), then
//! served by an `etcd` on 127.0.0.1; the revision and key count are compared with the
//! facts. See [`crate::kinds::scratch`].
//!
//! # Caveats
//! The scratch etcd has no authentication: another local user can read it while the
//! verification runs. (Its client port is on 127.0.0.1 only.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::server::EtcdServer;
use crate::kinds::checks::{self, Check};
use crate::kinds::scratch::{READY_TIMEOUT, Scratch, ScratchError, UserTarget, free_port};
use crate::kinds::{Facts, RestoreOptions, RestoreTo};

pub struct EtcdScratch {
    dir: PathBuf,
    data: PathBuf,
    peer_url: String,
    server: Option<EtcdServer>,
}

impl EtcdScratch {
    pub fn new(dir: &Path) -> Result<EtcdScratch, ScratchError> {
        Ok(EtcdScratch {
            dir: dir.to_path_buf(),
            data: dir.join("etcd-data"),
            peer_url: format!("http://127.0.0.1:{}", free_port()?),
            server: None,
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
        self.server = Some(server);
        Ok(())
    }

    async fn check(&mut self, facts: &Facts) -> Result<Vec<Check>, ScratchError> {
        let (revision, keys) = super::observe(&self.endpoint(), Duration::from_secs(30))
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
        UserTarget::url(&self.endpoint())
    }
}
