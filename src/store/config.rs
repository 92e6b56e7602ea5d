//! A store's section of the config: where it is, how it is written, how it is locked.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::values::LockMode;
use crate::model::{ByteSize, SecretString, Span};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `file://PATH`, `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or `az://CONTAINER/PREFIX`.
    pub url: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<SecretString>,
    pub secret_access_key: Option<SecretString>,
    /// Further `object_store` builder options (e.g. `google_service_account`).
    #[serde(default)]
    pub options: BTreeMap<String, SecretString>,
    /// Size of each multipart part.
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Parts uploaded at once.
    #[serde(default = "default_upload_concurrency")]
    pub upload_concurrency: usize,
    #[serde(default)]
    pub retry: RetryConfig,
    /// S3 Object Lock: every object a backup writes gets this retention (s3:// only).
    pub object_lock: Option<ObjectLockConfig>,
}

/// `object_lock: { mode: compliance|governance, days: N }` of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockConfig {
    pub mode: LockMode,
    /// How long each object stays undeletable after it is written.
    pub days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// Give up on a request after this long, retries included.
    #[serde(default = "default_retry_timeout")]
    pub timeout: Span,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            timeout: default_retry_timeout(),
        }
    }
}

fn default_part_size() -> ByteSize {
    ByteSize(8 * 1024 * 1024)
}

fn default_upload_concurrency() -> usize {
    2
}

fn default_max_retries() -> usize {
    4
}

fn default_retry_timeout() -> Span {
    Span(std::time::Duration::from_secs(60))
}
