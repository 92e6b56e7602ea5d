//! Redis's scratch: the snapshot's RDB restored to a file, then served by a `redis-server`
//! on 127.0.0.1 with a random password; key counts are compared with the facts and a sample
//! of keys is read back with `DUMP`. See [`crate::kinds::scratch`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::server::{Listen, RedisServer};
use crate::kinds::Group;
use crate::kinds::checks::{self, Check};
use crate::kinds::scratch::{READY_TIMEOUT, Scratch, ScratchError, UserTarget, free_port};
use crate::kinds::{Facts, RestoreOptions, RestoreTo};

pub struct RedisScratch {
    dir: PathBuf,
    server: Option<(RedisServer, String)>,
}

impl RedisScratch {
    pub fn new(dir: &Path) -> RedisScratch {
        RedisScratch {
            dir: dir.to_path_buf(),
            server: None,
        }
    }

    fn url(&self) -> Result<String, ScratchError> {
        self.server
            .as_ref()
            .map(|(_, url)| url.clone())
            .ok_or_else(|| ScratchError::Server {
                what: "redis-server".into(),
                detail: "not started".into(),
            })
    }
}

#[async_trait]
impl Scratch for RedisScratch {
    fn restore_to(&self) -> (RestoreTo, RestoreOptions) {
        (
            RestoreTo::File(self.dir.join("dump.rdb")),
            RestoreOptions::default(),
        )
    }

    async fn serve(&mut self) -> Result<(), ScratchError> {
        let port = free_port()?;
        let server = RedisServer::start_async(
            Path::new("redis-server"),
            &self.dir,
            Listen::Loopback(port),
            Group::Own,
            READY_TIMEOUT,
        )
        .await?;
        let url = server.url().ok_or_else(|| ScratchError::Server {
            what: "redis-server".into(),
            detail: "listens on no loopback port".into(),
        })?;
        self.server = Some((server, url));
        Ok(())
    }

    async fn check(&mut self, facts: &Facts) -> Result<Vec<Check>, ScratchError> {
        let probe = self.url()?;
        let observed = tokio::task::spawn_blocking(move || {
            let keys = super::checks::keys(&probe)?;
            let sample = super::checks::sample(&probe, 20);
            Ok::<_, String>((keys, sample))
        })
        .await
        .map_err(|e| ScratchError::Server {
            what: "reading the restored Redis".into(),
            detail: e.to_string(),
        })?
        .map_err(|detail| ScratchError::Server {
            what: "reading the restored Redis".into(),
            detail,
        })?;
        let (keys, sample) = observed;
        let keys: BTreeMap<String, i64> = keys
            .into_iter()
            .filter_map(|(k, v)| v.as_i64().map(|n| (k, n)))
            .collect();
        let mut out = checks::redis(facts, &keys);
        out.push(match sample {
            Ok(n) => Check::pass(
                "sampled keys readable",
                format!("{n} key(s) read with DUMP"),
            ),
            Err(e) => Check::fail("sampled keys readable", e),
        });
        Ok(out)
    }

    fn user_target(&self) -> UserTarget {
        let url = self.url().unwrap_or_default();
        UserTarget {
            redis_url: Some(url.clone()),
            ..UserTarget::url(&url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9 (sandboxes let no one in): the scratch redis-server answers only with its
    /// password.
    #[tokio::test]
    async fn the_scratch_server_refuses_a_client_without_the_password() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let mut scratch = RedisScratch::new(dir.path());
        scratch
            .serve()
            .await
            .expect("redis-server (scripts/setup.sh installs it)");
        let url = scratch.url().expect("url");
        let without = url::Url::parse(&url)
            .map(|mut u| {
                let _ = u.set_password(None);
                u.to_string()
            })
            .expect("url parses");
        let refused = tokio::task::spawn_blocking(move || super::super::checks::keys(&without))
            .await
            .expect("join");
        assert!(refused.is_err(), "a client without the password was served");
        let with = url.clone();
        let served = tokio::task::spawn_blocking(move || super::super::checks::keys(&with))
            .await
            .expect("join");
        assert!(served.is_ok(), "{served:?}");
        let conf = dir.path().join("redis.conf");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&conf)
            .expect("config file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the password file is private");
    }
}
