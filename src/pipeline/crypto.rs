//! age keys: generating identities, parsing recipients, loading identity files.
//! Identities are secrets: no error or log line here ever contains one.

use std::io::Write;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "`{shown}` is not an age X25519 recipient; recipients look like `age1...` (run `lifeboat keys generate` to make one)"
    )]
    BadRecipient { shown: String },
    #[error(
        "cannot read the age identity file {path}: {reason}; restore and verify need it: mount the age identity Secret there (on Kubernetes only in the verify/restore workload, e.g. `lifeboat-age-identity` at /etc/lifeboat/identity: see deploy/README.md), or set encryption.identity_file / pass --identity"
    )]
    IdentityFile { path: PathBuf, reason: String },
    #[error("the age identity file {path} holds no identities")]
    NoIdentities { path: PathBuf },
    #[error(
        "`{shown}` is not a lifeboat signing public key; they look like `lifeboat-ed25519:<base64>` (`lifeboat keys generate --signing` prints one)"
    )]
    BadSigner { shown: String },
    #[error(
        "cannot read the signing key file {path}: {reason}; set encryption.signing_key_file to a file written by `lifeboat keys generate --signing`"
    )]
    SigningKeyFile { path: PathBuf, reason: String },
    #[error("{path} already exists; refusing to overwrite a key (move it away first)")]
    Exists { path: PathBuf },
    #[error("cannot write the identity file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CryptoError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        match self {
            CryptoError::Write { .. } => crate::model::ErrorKind::Internal,
            _ => crate::model::ErrorKind::Config,
        }
    }
}

pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, CryptoError> {
    s.trim().parse().map_err(|_| CryptoError::BadRecipient {
        // A secret key pasted into the wrong place must not be echoed back.
        shown: if s.trim_start().starts_with("AGE-SECRET-KEY") {
            "AGE-SECRET-KEY-…(an identity, not a recipient)".into()
        } else {
            s.chars().take(80).collect()
        },
    })
}

pub fn parse_recipients(list: &[String]) -> Result<Vec<age::x25519::Recipient>, CryptoError> {
    list.iter().map(|s| parse_recipient(s)).collect()
}

/// The X25519 identities of an identity file (the format `age-keygen` and
/// `lifeboat keys generate` write). Never printed: `Debug` shows only the public keys.
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({:?})", self.recipients())
    }
}

impl Identities {
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }

    /// The public keys belonging to these identities.
    pub fn recipients(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }
}

pub fn load_identities(path: &Path) -> Result<Identities, CryptoError> {
    let err = |reason: String| CryptoError::IdentityFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line itself is secret: report only where it is.
        let key = line.parse::<age::x25519::Identity>().map_err(|_| {
            err(format!(
                "line {} is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                i + 1
            ))
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(CryptoError::NoIdentities {
            path: path.to_path_buf(),
        });
    }
    Ok(Identities { keys })
}

/// Writes a new identity to `path` (mode 0600, never overwriting) and returns its recipient.
pub fn generate_identity_file(
    path: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, CryptoError> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let body = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        identity.to_string().expose_secret()
    );
    write_secret_file(path, body.as_bytes())?;
    Ok(recipient)
}

/// Writes a key file: created with mode 0600, never over an existing file, synced.
pub(crate) fn write_secret_file(path: &Path, body: &[u8]) -> Result<(), CryptoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| CryptoError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => CryptoError::Exists {
                path: path.to_path_buf(),
            },
            _ => failed(source),
        })?;
    file.write_all(body)
        .and_then(|_| file.sync_all())
        .map_err(failed)
}
