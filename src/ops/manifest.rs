//! Reading a snapshot's manifest from a store: the commit point of every snapshot (a
//! snapshot exists once its manifest does, see [`crate::model::snapshot`]), and the trust
//! check every manifest passes before lifeboat acts on it ([`Trust`]).
//!
//! Whoever can write to a bucket can write a manifest: a manifest is acted on only if it is
//! where it claims to be (its id and source are its directory's, its `created_at` its id's
//! time) and, once signing is configured, carries a signature of a trusted signer.
//!
//! On a versioned store, a manifest can be read at the version the backup wrote
//! (`*_at`, the version the catalog recorded), and its objects are checked at the versions
//! it records for that store: what an attacker wrote over those keys later is not read.
//! Where no version is known (no catalog row, after a disaster) and the store has
//! `object_lock`, a current manifest that is missing, unreadable or untrusted is not the
//! end: its older versions are tried, newest first, and the first trusted one is the
//! snapshot's (an attacker's overwrite or delete marker does not hide it from
//! `catalog rebuild`).

use crate::model::ErrorKind;
use crate::model::snapshot::{self, Manifest};
use crate::pipeline::crypto::CryptoError;
use crate::pipeline::signing::{self, PublicKey, Rejected};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the manifest of snapshot {dir} in store `{store}` is refused: {reason}")]
    Untrusted {
        store: String,
        dir: String,
        reason: String,
    },
}

impl ManifestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManifestError::Store(e) => e.kind(),
            ManifestError::Untrusted { .. } => ErrorKind::Corrupt,
        }
    }
}

/// Extra trusted signers (comma-separated public keys), added to `encryption.trusted_signers`:
/// how a Kubernetes verification Job, which has no signing key, trusts the key of the config
/// that started it.
pub const TRUSTED_SIGNERS_ENV: &str = "LIFEBOAT_TRUSTED_SIGNERS";

/// Which manifests are trusted: the signers of `encryption.trusted_signers` and the public
/// key of `encryption.signing_key_file`.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub signers: Vec<PublicKey>,
    /// Signing is configured: a manifest without a trusted signature is refused.
    pub enforced: bool,
    /// `--allow-unsigned`: unsigned manifests are accepted (a foreign or broken signature
    /// still is not).
    pub allow_unsigned: bool,
}

impl Trust {
    /// The trust of a config. A signing key that cannot be read is reported (backups will
    /// fail on it) but does not stop restores: its public key is just not trusted.
    pub fn from_config(enc: &crate::config::EncryptionConfig) -> Result<Trust, CryptoError> {
        let extra = std::env::var(TRUSTED_SIGNERS_ENV).unwrap_or_default();
        let mut signers = enc
            .trusted_signers
            .iter()
            .map(String::as_str)
            .chain(extra.split(',').map(str::trim).filter(|s| !s.is_empty()))
            .map(signing::parse_public)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(path) = &enc.signing_key_file {
            match signing::load_signing_key(path) {
                Ok(key) => signers.push(key.public()),
                Err(e) => {
                    tracing::warn!(cause = %e, "the signing key's own public key is not trusted")
                }
            }
        }
        Ok(Trust {
            signers,
            enforced: enc.signing_configured() || !extra.trim().is_empty(),
            allow_unsigned: false,
        })
    }

    /// Whether `m` may be acted on; the reason (saying what to do) if not.
    pub fn check(&self, m: &Manifest) -> Result<(), String> {
        match signing::check(m, &self.signers) {
            Ok(_) => Ok(()),
            Err(Rejected::Unsigned) if !self.enforced => {
                tracing::warn!(snapshot_id = %m.id, "snapshot manifest is not signed and no signing is configured: anyone who can write to the store can forge snapshots; set encryption.signing_key_file (`lifeboat keys generate --signing`)");
                Ok(())
            }
            Err(Rejected::Unsigned) if self.allow_unsigned => {
                tracing::warn!(snapshot_id = %m.id, "--allow-unsigned: accepting an UNSIGNED manifest; nothing proves lifeboat made this snapshot (it may be forged by anyone with write access to the store)");
                Ok(())
            }
            Err(Rejected::Unsigned) => Err(
                "it is not signed, and this config trusts only signed snapshots (encryption.trusted_signers / signing_key_file); if it was made before signing was set up and you trust the store, pass --allow-unsigned, otherwise treat it as forged and use another snapshot".into(),
            ),
            Err(Rejected::UntrustedSigner(signer)) if !self.enforced => {
                tracing::warn!(snapshot_id = %m.id, signer = %signer, "snapshot is signed by a key this config does not list; set encryption.trusted_signers to check signatures");
                Ok(())
            }
            Err(Rejected::UntrustedSigner(signer)) => Err(format!(
                "it is signed by {signer}, which is not in encryption.trusted_signers; if that key is yours, add it there, otherwise the snapshot is forged: use another one"
            )),
            Err(Rejected::Invalid) => Err(
                "its signature does not match its contents: it was altered after it was signed; treat it as forged and use another snapshot".into(),
            ),
        }
    }

    /// [`Manifest::check_place`] and [`Trust::check`], as a [`ManifestError`].
    pub fn accept(&self, store: &Store, dir: &str, m: &Manifest) -> Result<(), ManifestError> {
        m.check_place(dir)
            .and_then(|()| self.check(m))
            .map_err(|reason| ManifestError::Untrusted {
                store: store.name.clone(),
                dir: dir.to_string(),
                reason,
            })
    }
}

/// The manifest of `dir`, if it exists, parses, is trusted, and its data objects are all
/// present with their recorded sizes. Anything less is not a committed snapshot; an
/// untrusted manifest is an error.
pub async fn read_committed(
    store: &Store,
    dir: &str,
    trust: &Trust,
) -> Result<Option<Manifest>, ManifestError> {
    Ok(read_committed_at(store, dir, trust, None)
        .await?
        .map(|(m, _)| m))
}

/// [`read_committed`] of the manifest's version `version` (`None`: the current one); also
/// returns the version read (`None` on unversioned stores). Objects are checked at the
/// versions the manifest records for this store.
pub async fn read_committed_at(
    store: &Store,
    dir: &str,
    trust: &Trust,
    version: Option<&str>,
) -> Result<Option<(Manifest, Option<String>)>, ManifestError> {
    let Some((manifest, read)) = read_manifest_at(store, dir, trust, version).await? else {
        return Ok(None);
    };
    for obj in &manifest.objects {
        let size = store
            .size_at(&format!("{dir}/{}", obj.name), obj.version_in(&store.url))
            .await?;
        if size != Some(obj.stored_bytes) {
            tracing::warn!(store = %store.name, dir, object = %obj.name, "manifest lists an object that is missing or has the wrong size; not a snapshot");
            return Ok(None);
        }
    }
    Ok(Some((manifest, read)))
}

/// The manifest of `dir`, if it exists and parses, checked by `trust` (its objects are not
/// checked).
pub async fn read_manifest(
    store: &Store,
    dir: &str,
    trust: &Trust,
) -> Result<Option<Manifest>, ManifestError> {
    Ok(read_manifest_at(store, dir, trust, None)
        .await?
        .map(|(m, _)| m))
}

/// [`read_manifest`] of version `version` of the manifest (`None`: the current one); also
/// returns the version read (`None` on unversioned stores).
pub async fn read_manifest_at(
    store: &Store,
    dir: &str,
    trust: &Trust,
    version: Option<&str>,
) -> Result<Option<(Manifest, Option<String>)>, ManifestError> {
    let current = read_one(store, dir, trust, version).await;
    if version.is_some() || store.object_lock().is_none() {
        return current;
    }
    let refused = match current {
        Ok(Some(found)) => return Ok(Some(found)),
        Ok(None) => None,
        Err(e @ ManifestError::Untrusted { .. }) => Some(e),
        Err(e) => return Err(e),
    };
    let key = format!("{dir}/{}", snapshot::MANIFEST);
    for v in store.versions(&key).await? {
        match read_one(store, dir, trust, Some(&v)).await {
            Ok(Some(found)) => {
                tracing::warn!(store = %store.name, dir, version = %v, "the current manifest is missing, unreadable or untrusted (overwritten or deleted after the backup?); using its newest trusted earlier version");
                return Ok(Some(found));
            }
            Ok(None) | Err(ManifestError::Untrusted { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    match refused {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// One version of the manifest of `dir` (`None`: the current one), checked by `trust`.
async fn read_one(
    store: &Store,
    dir: &str,
    trust: &Trust,
    version: Option<&str>,
) -> Result<Option<(Manifest, Option<String>)>, ManifestError> {
    let (bytes, read) = match store
        .get_bytes_at(&format!("{dir}/{}", snapshot::MANIFEST), version)
        .await
    {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) => {
            trust.accept(store, dir, &m)?;
            Ok(Some((m, read)))
        }
        Err(e) => {
            tracing::warn!(store = %store.name, dir, cause = %e, "unreadable manifest; not a snapshot");
            Ok(None)
        }
    }
}
