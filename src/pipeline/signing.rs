//! ed25519 manifest signatures: generating and loading the backup side's signing key,
//! parsing trusted public keys, signing and checking a manifest.
//!
//! Public keys are written `lifeboat-ed25519:<base64 of the 32 key bytes>`; the key file holds
//! `LIFEBOAT-ED25519-SECRET-KEY:<base64 of the 32 seed bytes>`. Like an age identity, the
//! secret never appears in an error or a log line.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, Verifier};

use crate::model::snapshot::{Manifest, Signature};
use crate::pipeline::crypto::{CryptoError, write_secret_file};

pub const ALGORITHM: &str = "ed25519";
pub const PUBLIC_PREFIX: &str = "lifeboat-ed25519:";
const SECRET_PREFIX: &str = "LIFEBOAT-ED25519-SECRET-KEY:";

/// A public key allowed to sign manifests.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

pub fn parse_public(s: &str) -> Result<PublicKey, CryptoError> {
    let bad = || CryptoError::BadSigner {
        shown: if s.trim_start().starts_with(SECRET_PREFIX) {
            format!("{SECRET_PREFIX}…(a secret key, not a public one)")
        } else {
            s.chars().take(80).collect()
        },
    };
    let b64 = s.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
    let bytes: [u8; 32] = B64
        .decode(b64)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map(PublicKey)
        .map_err(|_| bad())
}

/// The backup side's signing key. `Debug` shows only the public key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public())
    }
}

impl SigningKey {
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature of `m` (over [`Manifest::signed_bytes`]).
    pub fn sign(&self, m: &Manifest) -> Signature {
        Signature {
            algorithm: ALGORITHM.into(),
            signer: self.public().to_string(),
            value: B64.encode(self.0.sign(&m.signed_bytes()).to_bytes()),
        }
    }
}

/// Writes a new signing key to `path` (mode 0600, never overwriting); returns its public key.
pub fn generate_signing_key_file(
    path: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<PublicKey, CryptoError> {
    let key = SigningKey(ed25519_dalek::SigningKey::from_bytes(&rand::random::<
        [u8; 32],
    >()));
    let public = key.public();
    let body = format!(
        "# lifeboat manifest signing key (ed25519); keep it secret: it is what makes a snapshot trusted\n# created: {}\n# public key: {public}\n{SECRET_PREFIX}{}\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        B64.encode(key.0.to_bytes())
    );
    write_secret_file(path, body.as_bytes())?;
    Ok(public)
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey, CryptoError> {
    let err = |reason: String| CryptoError::SigningKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| err("it holds no key".into()))?;
    let seed: [u8; 32] = line
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b| B64.decode(b).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| err(format!("its key line is not `{SECRET_PREFIX}<base64>`")))?;
    Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
}

/// Why a manifest's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    Unsigned,
    UntrustedSigner(String),
    Invalid,
}

/// Checks `m`'s signature against `trusted`: it must exist, name a trusted signer and verify.
pub fn check(m: &Manifest, trusted: &[PublicKey]) -> Result<PublicKey, Rejected> {
    let sig = m.signature.as_ref().ok_or(Rejected::Unsigned)?;
    let signer = parse_public(&sig.signer)
        .ok()
        .filter(|k| sig.algorithm == ALGORITHM && trusted.contains(k))
        .ok_or_else(|| Rejected::UntrustedSigner(sig.signer.chars().take(80).collect()))?;
    let bytes: [u8; 64] = B64
        .decode(&sig.value)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Rejected::Invalid)?;
    signer
        .0
        .verify(
            &m.signed_bytes(),
            &ed25519_dalek::Signature::from_bytes(&bytes),
        )
        .map_err(|_| Rejected::Invalid)?;
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_check_and_the_ways_a_signature_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let public = generate_signing_key_file(&path, chrono::DateTime::UNIX_EPOCH).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            generate_signing_key_file(&path, chrono::DateTime::UNIX_EPOCH),
            Err(CryptoError::Exists { .. })
        ));
        assert_eq!(parse_public(&public.to_string()).unwrap(), public);
        let key = load_signing_key(&path).unwrap();
        assert_eq!(key.public(), public);
        assert!(!format!("{key:?}").contains(SECRET_PREFIX));

        let text = std::fs::read_to_string(&path).unwrap();
        let secret_line = text.lines().last().unwrap();
        let e = parse_public(secret_line).unwrap_err().to_string();
        assert!(!e.contains(&secret_line[SECRET_PREFIX.len()..]), "{e}");

        let id = crate::model::snapshot::new_id(chrono::DateTime::UNIX_EPOCH);
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format": "lifeboat.snapshot/v1", "id": id, "source": "db", "kind": "files",
            "created_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z",
            "duration_ms": 0, "raw_bytes": 1, "compressed_bytes": 1, "stored_bytes": 1,
            "sha256": "00", "objects": [{"name": "data.zst.age", "stored_bytes": 1, "sha256": "00"}],
            "compression": {"algorithm": "zstd", "level": 3},
            "encryption": {"algorithm": "age", "recipients": []},
            "facts": {"files": 3}, "lifeboat_version": "0"
        }))
        .unwrap();
        let trusted = std::slice::from_ref(&public);
        assert_eq!(check(&m, trusted), Err(Rejected::Unsigned));
        m.signature = Some(key.sign(&m));
        assert_eq!(check(&m, trusted), Ok(public.clone()));
        assert!(matches!(check(&m, &[]), Err(Rejected::UntrustedSigner(_))));
        let mut forged = m.clone();
        forged.facts.insert("files".into(), 4.into());
        assert_eq!(check(&forged, trusted), Err(Rejected::Invalid));
        let other = dir.path().join("other.key");
        generate_signing_key_file(&other, chrono::DateTime::UNIX_EPOCH).unwrap();
        let mut foreign = m.clone();
        foreign.signature = Some(load_signing_key(&other).unwrap().sign(&m));
        assert!(matches!(
            check(&foreign, &[public]),
            Err(Rejected::UntrustedSigner(_))
        ));
    }
}
