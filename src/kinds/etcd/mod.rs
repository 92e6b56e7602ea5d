//! etcd: a snapshot through the maintenance API (`Maintenance.Snapshot`, streamed), restored
//! into a new data directory the way `etcdutl snapshot restore` does.
//!
//! # The snapshot stream
//! etcd sends its bbolt database followed by 32 bytes: the SHA-256 of the database. The dump
//! keeps that trailer in the stored bytes (so stock `etcdctl snapshot restore` checks it too)
//! and checks it while streaming ([`TrailerCheck`]): on a mismatch the reader fails at the end
//! of the stream, so the pipeline fails and no manifest is written.
//!
//! # Facts
//! `etcd_version` and `db_size` come from `Status`. `revision` and `keys` (live keys) come from
//! a count over the whole keyspace taken just before the snapshot request and again once its
//! first chunk arrived (the server has taken its point-in-time copy by then). If both counts
//! saw the same revision, the snapshot holds exactly that revision and key count; otherwise
//! etcd was written meanwhile and the facts say `revision_exact: false`, with `revision` and
//! `keys` from the first count and `revision_max` from the second.
//!
//! # Restore
//! `--to-dir DIR` (must not exist or be empty): the snapshot is written to a temporary file
//! beside DIR, `etcdutl snapshot restore` (or, where only etcd 3.4 is installed,
//! `ETCDCTL_API=3 etcdctl snapshot restore`) builds a data directory beside DIR, and that is
//! renamed to DIR at the end. The temporaries are removed whatever happens, so DIR either
//! holds a complete data directory or is left as it was.
//!
//! The password never reaches a log, an error or a command line.
//!
//! # Layout
//! - [`client`]: endpoints, connect options and the key count;
//! - [`snapshot`]: the snapshot stream's SHA-256 trailer check;
//! - [`backup`]: the [`Etcd`] source;
//! - [`restore`]: the [`EtcdTarget`] (a data directory);
//! - [`server`]: an etcd member on a restored data directory (the verification sandbox);
//! - [`checks`]: what a verification observes of a restored member.

mod backup;
pub mod checks;
mod client;
mod restore;
pub mod scratch;
pub mod server;
mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{RestoreOptions, Source, SourceError, Target};
use crate::model::{SecretString, Span};

pub use backup::Etcd;
pub use checks::{enable_auth, observe, observe_as};
pub use restore::EtcdTarget;
pub use snapshot::TrailerCheck;

/// Default member name and peer URL of a restored data directory (as `etcdutl`'s defaults).
pub const DEFAULT_NAME: &str = "default";
pub const DEFAULT_PEER_URL: &str = "http://localhost:2380";

/// Checks an etcd source at config load time; errors are (key, message).
pub fn check_spec(spec: &EtcdSpec) -> Result<(), (String, String)> {
    if spec.endpoints.is_empty() {
        return Err((
            "endpoints".into(),
            "no endpoints; list the client URLs of the etcd members, e.g. [\"http://etcd-0:2379\"]"
                .into(),
        ));
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        let endpoint = client::Endpoint::parse(e, spec.tls.is_some())
            .map_err(|m| (format!("endpoints[{i}]"), m))?;
        if endpoint.tls && spec.tls.is_none() {
            return Err((
                format!("endpoints[{i}]"),
                format!(
                    "`{e}` is an https endpoint; add `tls: {{ ca_file: /path/to/ca.pem }}` (and cert_file/key_file if etcd requires client certificates)"
                ),
            ));
        }
        if !endpoint.tls && spec.tls.is_some() {
            return Err((
                format!("endpoints[{i}]"),
                format!(
                    "`{e}` is a plain http endpoint but `tls` is set; write https://... (or HOST:PORT) or remove `tls`"
                ),
            ));
        }
    }
    if let Some(tls) = &spec.tls
        && tls.cert_file.is_some() != tls.key_file.is_some()
    {
        return Err((
            "tls".into(),
            "set both cert_file and key_file (a client certificate needs its key), or neither"
                .into(),
        ));
    }
    match (&spec.user, &spec.password) {
        (Some(u), _) if u.is_empty() => Err(("user".into(), "is empty".into())),
        (None, Some(_)) => Err((
            "password".into(),
            "a password needs a `user`; add `user: NAME` or remove the password".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoints: &[&str]) -> EtcdSpec {
        EtcdSpec {
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            tls: None,
            user: None,
            password: None,
            timeout: None,
        }
    }

    #[test]
    fn spec_checks() {
        assert!(check_spec(&spec(&["http://127.0.0.1:2379"])).is_ok());
        assert_eq!(check_spec(&spec(&[])).unwrap_err().0, "endpoints");
        let (key, msg) = check_spec(&spec(&["https://e:2379"])).unwrap_err();
        assert_eq!(key, "endpoints[0]");
        assert!(msg.contains("ca_file"), "{msg}");
        let mut s = spec(&["e:2379"]);
        s.password = Some(crate::model::SecretString::new("pw"));
        assert_eq!(check_spec(&s).unwrap_err().0, "password");
        s.tls = Some(EtcdTls {
            ca_file: "ca.pem".into(),
            cert_file: Some("c.pem".into()),
            key_file: None,
        });
        s.user = Some("root".into());
        assert_eq!(check_spec(&s).unwrap_err().0, "tls");
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSpec {
    /// Client URLs: `http://host:2379`, `https://host:2379` or `host:2379`.
    pub endpoints: Vec<String>,
    /// Client TLS: required for `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// etcd user, when etcd has authentication enabled.
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// How long to wait for etcd: connecting, each request, and between snapshot chunks.
    pub timeout: Option<Span>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// PEM CA certificate that signed the etcd server certificates.
    pub ca_file: PathBuf,
    /// PEM client certificate and key, when etcd requires client certificates.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// etcd, through its maintenance snapshot.
pub struct EtcdKind;
pub static KIND: EtcdKind = EtcdKind;

impl super::Spec for EtcdSpec {
    fn kind(&self) -> &'static dyn super::Kind {
        &KIND
    }
    fn validate(&self) -> Result<(), super::SpecError> {
        check_spec(self).map_err(|(key, m)| super::SpecError::new(key, m))
    }
    fn source(&self, name: &str, _kube: Arc<dyn crate::kube::KubeApi>) -> Box<dyn Source> {
        Box::new(Etcd::new(name, self))
    }
}

#[async_trait]
impl super::Kind for EtcdKind {
    async fn scratch(
        &self,
        dir: &std::path::Path,
        _opts: &super::scratch::ScratchOptions,
    ) -> Result<Option<Box<dyn super::scratch::Scratch>>, super::scratch::ScratchError> {
        Ok(Some(Box::new(scratch::EtcdScratch::new(dir)?)))
    }
    fn name(&self) -> &'static str {
        "etcd"
    }
    fn target(
        &self,
        to: &super::RestoreTo,
        opts: &RestoreOptions,
        _source: Option<&super::SourceSpec>,
        _kube: Arc<dyn crate::kube::KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError> {
        match to {
            super::RestoreTo::Dir(dir) => Ok(Box::new(EtcdTarget::new(dir, opts)?)),
            _ => Err(super::unsupported(
                to,
                "etcd snapshots restore into a new data directory: --to-dir PATH (or --to-file for the raw snapshot file)",
            )),
        }
    }
}
