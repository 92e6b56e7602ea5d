//! Object storage for snapshots: one [`Store`] per `stores:` entry, wrapping `object_store`
//! (local disk, S3, GCS, Azure) under the store's prefix. Keys passed in are relative to that
//! prefix (`orders-db/<id>/manifest.json`).
//!
//! Every error names the store (its URL without credentials) and says what to check.
//!
//! **Drill faults** (`LIFEBOAT_DRILL_STORE_FAULT=STORE=unavailable|corrupt:PREFIX|hide:PREFIX`,
//! comma-separated; set only by `lifeboat drill run` on the commands it starts): this
//! process' view of a store refuses every call, serves the objects under `PREFIX` with bytes
//! flipped (manifests excepted), or hides them (absent from listings, not found). The real
//! objects are never touched: it is a wrapper around the reads and writes of this process.
//!
//! A store with `object_lock` also sets S3 Object Lock retentions ([`object_lock`]) through
//! [`Store::lock`] and reads them through [`Store::locked_until`]; on other stores both are
//! no-ops. Its bucket must lock every object in the write request itself (a default
//! retention, checked by [`Store::check`]), and its writes carry a checksum (S3 requires one
//! on writes to such a bucket).
//!
//! Versions: writes return the object version the store created ([`Written::version`],
//! S3 with versioning), and reads can ask for one exact version (`*_at`), so a snapshot is
//! read as it was written even after someone overwrote its keys or added delete markers.

pub mod gcs;
pub mod object_lock;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart, path::Path as ObjPath};

pub mod config;
use crate::policy::retention::Lock;
pub use config::{ObjectLockConfig, RetryConfig, StoreConfig};
use object_lock::ObjectLocker;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store `{store}` ({url}): cannot be opened: {reason}")]
    Open {
        store: String,
        url: String,
        reason: String,
    },
    #[error(
        "store `{store}` ({url}) is unreachable or refused the request ({op} {key}): {reason}; check the endpoint, bucket, credentials and network, then retry"
    )]
    Unavailable {
        store: String,
        url: String,
        op: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "store `{store}` ({url}): cannot {op} the object lock retention of {key}: {reason}; check that the bucket was created with Object Lock enabled and that the credentials may s3:PutObjectRetention and s3:GetObjectRetention"
    )]
    Lock {
        store: String,
        url: String,
        op: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "store `{store}` ({url}): refusing to {op} `{key}`: not a plain path inside the store (`..`, `.`, an absolute path, an empty segment, or a link leading out); nothing was touched"
    )]
    OutsideStore {
        store: String,
        url: String,
        op: &'static str,
        key: String,
    },
    #[error(
        "store `{store}` ({url}) has `object_lock` but its bucket does not lock objects as they are written: {reason}; then run `lifeboat config check`"
    )]
    LockDefault {
        store: String,
        url: String,
        reason: String,
    },
    #[error("store `{store}` ({url}) has no object {key}")]
    NotFound {
        store: String,
        url: String,
        key: String,
    },
}

impl StoreError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            StoreError::Open { .. } | StoreError::LockDefault { .. } => ErrorKind::Config,
            StoreError::Unavailable { .. } | StoreError::Lock { .. } => ErrorKind::Unreachable,
            StoreError::NotFound { .. } | StoreError::OutsideStore { .. } => ErrorKind::Corrupt,
        }
    }
}

/// Checks a store URL's form at config load time, without touching the store.
pub fn check_url(url: &str) -> Result<(), String> {
    let ok = |rest: &str| !rest.is_empty() && !rest.starts_with('/');
    match url.split_once("://") {
        Some(("file", rest)) if !rest.is_empty() => Ok(()),
        Some(("s3" | "gs" | "az", rest)) if ok(rest) => Ok(()),
        _ => Err(format!(
            "`{url}` is not a store URL lifeboat supports; write file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
        )),
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pub name: String,
    /// The configured URL (store URLs carry no credentials; those are separate keys).
    pub url: String,
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    /// The directory of a `file://` store, where interrupted uploads leave staging files
    /// that `object_store` does not list.
    local_root: Option<PathBuf>,
    pub part_size: usize,
    pub upload_concurrency: usize,
    /// Set when the store config has `object_lock` (s3:// only).
    locker: Option<Arc<ObjectLocker>>,
    /// A drill's fault on this process' view of the store (see the module doc).
    drill: Option<DrillFault>,
}

/// The environment variable a drill sets on the lifeboat commands it starts.
pub const DRILL_FAULT_ENV: &str = "LIFEBOAT_DRILL_STORE_FAULT";

/// A drill's fault on a store, as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillFault {
    Unavailable,
    /// Objects under this prefix (manifests excepted) read back with bytes flipped.
    Corrupt(String),
    /// Objects under this prefix are absent.
    Hide(String),
}

impl DrillFault {
    /// The fault `store` has in `env` (the value of [`DRILL_FAULT_ENV`]).
    pub fn parse(env: &str, store: &str) -> Option<DrillFault> {
        env.split(',').find_map(|one| {
            let (name, fault) = one.split_once('=')?;
            if name.trim() != store {
                return None;
            }
            match fault.trim().split_once(':') {
                None if fault.trim() == "unavailable" => Some(DrillFault::Unavailable),
                Some(("corrupt", p)) if !p.is_empty() => Some(DrillFault::Corrupt(p.into())),
                Some(("hide", p)) if !p.is_empty() => Some(DrillFault::Hide(p.into())),
                _ => None,
            }
        })
    }

    /// The value of [`DRILL_FAULT_ENV`] that puts this fault on `store`.
    pub fn env_value(&self, store: &str) -> String {
        match self {
            DrillFault::Unavailable => format!("{store}=unavailable"),
            DrillFault::Corrupt(p) => format!("{store}=corrupt:{p}"),
            DrillFault::Hide(p) => format!("{store}=hide:{p}"),
        }
    }
}

/// Flips every 64th byte (from the 17th on): enough for any checksum or AEAD to refuse it.
fn corrupted(bytes: Bytes) -> Bytes {
    let mut v = bytes.to_vec();
    for b in v.iter_mut().skip(16).step_by(64) {
        *b ^= 0x5a;
    }
    Bytes::from(v)
}

impl Store {
    pub fn open(name: &str, cfg: &StoreConfig) -> Result<Store, StoreError> {
        let fail = |reason: String| StoreError::Open {
            store: name.to_string(),
            url: cfg.url.clone(),
            reason,
        };
        check_url(&cfg.url).map_err(&fail)?;
        let (scheme, rest) = cfg.url.split_once("://").unwrap_or(("", ""));
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_string();
        let mut retry = object_store::RetryConfig::default();
        retry.max_retries = cfg.retry.max_retries;
        retry.retry_timeout = cfg.retry.timeout.0;
        let client = object_store::ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            .with_allow_http(
                cfg.endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
            );
        let (inner, prefix, local_root): (Arc<dyn ObjectStore>, String, Option<PathBuf>) =
            match scheme {
                "file" => {
                    let root = PathBuf::from(rest);
                    std::fs::create_dir_all(&root)
                        .map_err(|e| fail(format!("cannot create {}: {e}", root.display())))?;
                    let root = std::fs::canonicalize(&root)
                        .map_err(|e| fail(format!("cannot resolve {}: {e}", root.display())))?;
                    let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                        .map_err(|e| fail(e.to_string()))?
                        .with_automatic_cleanup(true)
                        .with_fsync(true);
                    (Arc::new(fs), String::new(), Some(root))
                }
                "s3" => {
                    let mut client = client;
                    let mut b = object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .with_retry(retry);
                    if cfg.object_lock.is_some() {
                        // S3 refuses writes to a bucket with a default retention unless they
                        // carry an integrity checksum (Content-MD5 or a flexible checksum).
                        b = b.with_checksum_algorithm(object_store::aws::Checksum::SHA256);
                        let mut headers = reqwest::header::HeaderMap::new();
                        headers.insert(
                            "x-amz-sdk-checksum-algorithm",
                            reqwest::header::HeaderValue::from_static("SHA256"),
                        );
                        client = client.with_default_headers(headers);
                    }
                    let mut b = b.with_client_options(client);
                    if let Some(region) = &cfg.region {
                        b = b.with_region(region);
                    }
                    if let Some(endpoint) = &cfg.endpoint {
                        b = b.with_endpoint(endpoint);
                    }
                    if let Some(k) = &cfg.access_key_id {
                        b = b.with_access_key_id(k.expose());
                    }
                    if let Some(k) = &cfg.secret_access_key {
                        b = b.with_secret_access_key(k.expose());
                    }
                    for (k, v) in &cfg.options {
                        let key = k.parse().map_err(|e| fail(format!("option {k}: {e}")))?;
                        b = b.with_config(key, v.expose());
                    }
                    (
                        Arc::new(b.build().map_err(|e| fail(e.to_string()))?),
                        prefix,
                        None,
                    )
                }
                // Built like s3: environment credentials (`GOOGLE_*`, `AZURE_*`), `endpoint`,
                // `retry` and timeouts apply, and an unknown option key is an error rather than
                // silently ignored (as `object_store::parse_url_opts` would; keys stay
                // case-insensitive as they were there).
                "gs" | "az" => {
                    if cfg.access_key_id.is_some() || cfg.secret_access_key.is_some() {
                        return Err(fail(
                            "access_key_id/secret_access_key are for s3:// stores; give GCS and Azure credentials in `options` or the environment".to_string(),
                        ));
                    }
                    let store: Arc<dyn ObjectStore> = if scheme == "gs" {
                        let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                            .with_bucket_name(bucket)
                            .with_retry(retry)
                            .with_client_options(client);
                        if let Some(endpoint) = &cfg.endpoint {
                            b = b.with_base_url(endpoint);
                        }
                        for (k, v) in &cfg.options {
                            let key = k
                                .to_ascii_lowercase()
                                .parse()
                                .map_err(|e| fail(format!("option {k}: {e}")))?;
                            b = b.with_config(key, v.expose());
                        }
                        gcs::check_part_size(cfg.part_size.0).map_err(&fail)?;
                        let reads = b.build().map_err(|e| fail(e.to_string()))?;
                        Arc::new(
                            gcs::JsonWrites::new(reads, cfg.endpoint.as_deref(), bucket)
                                .map_err(&fail)?,
                        )
                    } else {
                        let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                            .with_container_name(bucket)
                            .with_retry(retry)
                            .with_client_options(client);
                        if let Some(endpoint) = &cfg.endpoint {
                            b = b.with_endpoint(endpoint.clone());
                        }
                        for (k, v) in &cfg.options {
                            let key = k
                                .to_ascii_lowercase()
                                .parse()
                                .map_err(|e| fail(format!("option {k}: {e}")))?;
                            b = b.with_config(key, v.expose());
                        }
                        Arc::new(b.build().map_err(|e| fail(e.to_string()))?)
                    };
                    (store, prefix, None)
                }
                _ => return Err(fail(format!("unsupported scheme `{scheme}`"))),
            };
        let locker = match (scheme, cfg.object_lock) {
            ("s3", Some(lock)) => Some(Arc::new(ObjectLocker::new(bucket, lock, cfg))),
            (_, Some(_)) => {
                return Err(fail(
                    "object_lock is only supported on s3:// stores".to_string(),
                ));
            }
            _ => None,
        };
        Ok(Store {
            name: name.to_string(),
            url: cfg.url.clone(),
            inner,
            prefix,
            local_root,
            part_size: cfg.part_size.0,
            upload_concurrency: cfg.upload_concurrency,
            locker,
            drill: std::env::var(DRILL_FAULT_ENV)
                .ok()
                .and_then(|v| DrillFault::parse(&v, name)),
        })
    }

    /// Refuses the call when a drill fault says this store (or this object) is not there.
    fn drill_guard(&self, op: &'static str, rel: &str) -> Result<(), StoreError> {
        match &self.drill {
            Some(DrillFault::Unavailable) => Err(StoreError::Unavailable {
                store: self.name.clone(),
                url: self.url.clone(),
                op,
                key: rel.to_string(),
                reason: "drill fault: the store is unavailable to this process (the objects are untouched)".into(),
            }),
            Some(DrillFault::Hide(p)) if rel.starts_with(p.as_str()) => Err(StoreError::NotFound {
                store: self.name.clone(),
                url: self.url.clone(),
                key: rel.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether a drill fault serves `rel` corrupt.
    fn drill_corrupts(&self, rel: &str) -> bool {
        matches!(&self.drill, Some(DrillFault::Corrupt(p))
            if rel.starts_with(p.as_str()) && !rel.ends_with("manifest.json"))
    }

    /// The store's Object Lock settings, if it has any.
    pub fn object_lock(&self) -> Option<ObjectLockConfig> {
        self.locker.as_ref().map(|l| l.config)
    }

    /// Puts the configured Object Lock retention on `rel` (on its version `version` when
    /// given); returns when it ends, or `None` when the store has no `object_lock`.
    pub async fn lock(
        &self,
        rel: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        self.lock_at(rel, None, now).await
    }

    /// [`Store::lock`] on one version of `rel` (`None`: the current one).
    pub async fn lock_at(
        &self,
        rel: &str,
        version: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let Some(locker) = &self.locker else {
            return Ok(None);
        };
        locker
            .lock(self.key(rel).as_ref(), version, now)
            .await
            .map(Some)
            .map_err(|e| self.lock_err("set", rel, e.0))
    }

    /// The Object Lock retention of `rel` (expired or not); `None` when it has none or the
    /// store has no `object_lock`.
    pub async fn locked_until(&self, rel: &str) -> Result<Option<Lock>, StoreError> {
        self.locked_until_at(rel, None).await
    }

    /// [`Store::locked_until`] of one version of `rel` (`None`: the current one).
    pub async fn locked_until_at(
        &self,
        rel: &str,
        version: Option<&str>,
    ) -> Result<Option<Lock>, StoreError> {
        let Some(locker) = &self.locker else {
            return Ok(None);
        };
        locker
            .locked_until(self.key(rel).as_ref(), version)
            .await
            .map_err(|e| self.lock_err("read", rel, e.0))
    }

    /// The version ids of `rel`, newest first, on a store with `object_lock` (a versioned
    /// bucket); empty on other stores.
    pub async fn versions(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let Some(locker) = &self.locker else {
            return Ok(Vec::new());
        };
        locker
            .versions(self.key(rel).as_ref())
            .await
            .map_err(|e| StoreError::Unavailable {
                store: self.name.clone(),
                url: self.url.clone(),
                op: "list versions",
                key: rel.to_string(),
                reason: e.0,
            })
    }

    /// Every key under `rel_prefix` that has a version, relative and sorted, on a store with
    /// `object_lock`: keys whose current version is a delete marker included. On other
    /// stores, what [`Store::list`] lists.
    pub async fn list_ever(&self, rel_prefix: &str) -> Result<Vec<String>, StoreError> {
        let Some(locker) = &self.locker else {
            return Ok(self
                .list(rel_prefix)
                .await?
                .into_iter()
                .map(|(k, _)| k)
                .collect());
        };
        let key = self.key(rel_prefix.trim_end_matches('/'));
        let prefix = match key.as_ref() {
            "" => String::new(),
            k => format!("{k}/"),
        };
        let mut keys: Vec<String> = locker
            .list_versions(&prefix)
            .await
            .map_err(|e| StoreError::Unavailable {
                store: self.name.clone(),
                url: self.url.clone(),
                op: "list versions",
                key: rel_prefix.to_string(),
                reason: e.0,
            })?
            .into_iter()
            .map(|(k, _)| self.rel(&ObjPath::from(k)))
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn lock_err(&self, op: &'static str, rel: &str, reason: String) -> StoreError {
        StoreError::Lock {
            store: self.name.clone(),
            url: self.url.clone(),
            op,
            key: rel.to_string(),
            reason,
        }
    }

    fn key(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn rel(&self, key: &ObjPath) -> String {
        let k = key.as_ref();
        if self.prefix.is_empty() {
            k.to_string()
        } else {
            k.strip_prefix(&self.prefix)
                .map(|s| s.trim_start_matches('/').to_string())
                .unwrap_or_else(|| k.to_string())
        }
    }

    fn err(&self, op: &'static str, rel: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                store: self.name.clone(),
                url: self.url.clone(),
                key: rel.to_string(),
            },
            other => StoreError::Unavailable {
                store: self.name.clone(),
                url: self.url.clone(),
                op,
                key: rel.to_string(),
                reason: error_chain(&other),
            },
        }
    }

    /// Proves the store answers (and the bucket exists) before a run writes anything; with
    /// `object_lock`, also that the bucket locks what is written ([`Store::check_lock`]).
    pub async fn check(&self) -> Result<(), StoreError> {
        self.drill_guard("list", "")?;
        let key = self.key("");
        let prefix = (!self.prefix.is_empty()).then_some(&key);
        self.inner
            .list_with_delimiter(prefix)
            .await
            .map(|_| ())
            .map_err(|e| self.err("list", "", e))?;
        self.check_lock().await
    }

    /// With `object_lock`: the bucket's default retention locks every object in the request
    /// that writes it, at least as the config asks. Without `object_lock`: nothing to check.
    pub async fn check_lock(&self) -> Result<(), StoreError> {
        let Some(locker) = &self.locker else {
            return Ok(());
        };
        locker
            .check_default()
            .await
            .map_err(|e| StoreError::LockDefault {
                store: self.name.clone(),
                url: self.url.clone(),
                reason: e.0,
            })
    }

    /// Writes `rel`; returns the version the store created (`None` on unversioned stores).
    pub async fn put_bytes(&self, rel: &str, bytes: Bytes) -> Result<Written, StoreError> {
        self.drill_guard("put", rel)?;
        self.inner
            .put(&self.key(rel), bytes.into())
            .await
            .map(|r| Written::new(r.version))
            .map_err(|e| self.err("put", rel, e))
    }

    pub async fn get_bytes(&self, rel: &str) -> Result<Bytes, StoreError> {
        self.get_bytes_at(rel, None).await.map(|(b, _)| b)
    }

    /// The bytes of one version of `rel` (`None`: the current one), and the version read.
    pub async fn get_bytes_at(
        &self,
        rel: &str,
        version: Option<&str>,
    ) -> Result<(Bytes, Option<String>), StoreError> {
        self.drill_guard("get", rel)?;
        let got = self
            .inner
            .get_opts(&self.key(rel), Self::at(version, false))
            .await
            .map_err(|e| self.err("get", rel, e))?;
        let read = real_version(got.meta.version.clone()).or(version.map(str::to_string));
        let bytes = got.bytes().await.map_err(|e| self.err("get", rel, e))?;
        let bytes = if self.drill_corrupts(rel) {
            corrupted(bytes)
        } else {
            bytes
        };
        Ok((bytes, read))
    }

    fn at(version: Option<&str>, head: bool) -> object_store::GetOptions {
        object_store::GetOptions {
            version: version.map(str::to_string),
            head,
            ..Default::default()
        }
    }

    /// Size of an object, `None` if it does not exist.
    pub async fn size(&self, rel: &str) -> Result<Option<u64>, StoreError> {
        self.size_at(rel, None).await
    }

    /// Size of one version of `rel` (`None`: the current one), `None` if it does not exist.
    pub async fn size_at(
        &self,
        rel: &str,
        version: Option<&str>,
    ) -> Result<Option<u64>, StoreError> {
        if let Err(e) = self.drill_guard("head", rel) {
            return match e {
                StoreError::NotFound { .. } => Ok(None),
                e => Err(e),
            };
        }
        let got = match version {
            None => self.inner.head(&self.key(rel)).await,
            Some(_) => self
                .inner
                .get_opts(&self.key(rel), Self::at(version, true))
                .await
                .map(|g| g.meta),
        };
        match got {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("head", rel, e)),
        }
    }

    pub async fn get_stream(
        &self,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        self.get_stream_at(rel, None).await
    }

    /// The bytes of one version of `rel` (`None`: the current one), as they arrive.
    pub async fn get_stream_at(
        &self,
        rel: &str,
        version: Option<&str>,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        self.drill_guard("get", rel)?;
        let corrupt = self.drill_corrupts(rel);
        let got = self
            .inner
            .get_opts(&self.key(rel), Self::at(version, false))
            .await
            .map_err(|e| self.err("get", rel, e))?;
        let this = self.clone();
        let rel = rel.to_string();
        Ok(got
            .into_stream()
            .map_err(move |e| this.err("get", &rel, e))
            .map_ok(move |b| if corrupt { corrupted(b) } else { b })
            .boxed())
    }

    pub async fn upload(&self, rel: &str) -> Result<Upload, StoreError> {
        self.drill_guard("start upload", rel)?;
        let up = self
            .inner
            .put_multipart(&self.key(rel))
            .await
            .map_err(|e| self.err("start upload", rel, e))?;
        Ok(Upload {
            store: self.clone(),
            rel: rel.to_string(),
            writer: WriteMultipart::new_with_chunk_size(up, self.part_size),
        })
    }

    /// Every object under `rel_prefix`, as (relative key, size), sorted by key.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        if let Some(DrillFault::Unavailable) = &self.drill {
            self.drill_guard("list", rel_prefix)?;
        }
        let key = self.key(rel_prefix.trim_end_matches('/'));
        let prefix = (!key.as_ref().is_empty()).then_some(&key);
        let mut out: Vec<(String, u64)> = self
            .inner
            .list(prefix)
            .map_ok(|m| (self.rel(&m.location), m.size))
            .try_collect()
            .await
            .map_err(|e| self.err("list", rel_prefix, e))?;
        out.sort();
        if let Some(DrillFault::Hide(p)) = &self.drill {
            out.retain(|(k, _)| !k.starts_with(p.as_str()));
        }
        Ok(out)
    }

    /// `rel` is a plain store-relative path: `/`-separated normal segments (no `..`, `.`,
    /// empty segment or leading `/`), and in a `file://` store nothing on it resolves
    /// (through a symlink) outside the store's directory.
    fn check_inside(&self, op: &'static str, rel: &str) -> Result<(), StoreError> {
        let outside = || StoreError::OutsideStore {
            store: self.name.clone(),
            url: self.url.clone(),
            op,
            key: rel.escape_debug().to_string(),
        };
        let plain = rel
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'))
            && std::path::Path::new(rel)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(outside());
        }
        if let Some(root) = &self.local_root {
            // The deepest existing ancestor, resolved, must still be inside the root.
            let mut at = root.join(rel);
            while !at.exists() && at.pop() {}
            let real = std::fs::canonicalize(&at).unwrap_or_else(|_| root.clone());
            if !real.starts_with(root) {
                return Err(outside());
            }
        }
        Ok(())
    }

    /// Deletes one object; a missing object is not an error.
    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        self.check_inside("delete", rel)?;
        self.drill_guard("delete", rel)?;
        match self.inner.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", rel, e)),
        }
    }

    /// Deletes everything under `rel_dir/` (an interrupted snapshot's orphans). Returns how
    /// many objects were removed.
    pub async fn remove_dir(&self, rel_dir: &str) -> Result<usize, StoreError> {
        self.check_inside("delete", rel_dir)?;
        let objects = self.list(rel_dir).await?;
        for (rel, _) in &objects {
            match self.inner.delete(&self.key(rel)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", rel, e)),
            }
        }
        if let Some(root) = &self.local_root {
            // Staging files of a killed multipart upload are invisible to `list`.
            let dir = root.join(rel_dir);
            if dir.exists() && std::fs::canonicalize(&dir).is_ok_and(|d| d.starts_with(root)) {
                std::fs::remove_dir_all(&dir).map_err(|e| StoreError::Unavailable {
                    store: self.name.clone(),
                    url: self.url.clone(),
                    op: "delete",
                    key: rel_dir.to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(objects.len())
    }
}

/// What a completed write created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The object version (S3 with versioning, which Object Lock implies); `None` elsewhere.
    pub version: Option<String>,
}

impl Written {
    fn new(version: Option<String>) -> Written {
        Written {
            version: real_version(version),
        }
    }
}

/// A version id that names one version: S3 (and look-alikes) answer `null` for objects of
/// a bucket without versioning, which is no version to read back.
fn real_version(version: Option<String>) -> Option<String> {
    version.filter(|v| !v.is_empty() && v != "null")
}

/// A multipart upload in progress. Dropping it without [`Upload::finish`] leaves no object
/// (parts already sent are cleaned up by [`Upload::abort`], or by the bucket's
/// AbortIncompleteMultipartUpload lifecycle rule if the process dies).
pub struct Upload {
    store: Store,
    rel: String,
    writer: WriteMultipart,
}

impl Upload {
    pub async fn put(&mut self, bytes: Bytes) -> Result<(), StoreError> {
        self.writer
            .wait_for_capacity(self.store.upload_concurrency)
            .await
            .map_err(|e| self.store.err("upload part", &self.rel, e))?;
        self.writer.put(bytes);
        Ok(())
    }

    /// Waits until every part sent so far has been stored.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        self.writer
            .wait_for_capacity(0)
            .await
            .map_err(|e| self.store.err("upload part", &self.rel, e))
    }

    /// Completes the object; returns the version the store created (`None` on unversioned
    /// stores).
    pub async fn finish(self) -> Result<Written, StoreError> {
        let Upload { store, rel, writer } = self;
        writer
            .finish()
            .await
            .map(|r| Written::new(r.version))
            .map_err(|e| store.err("complete upload", &rel, e))
    }

    pub async fn abort(self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(store = %self.store.name, key = %self.rel, cause = %e, "could not abort multipart upload; a bucket lifecycle rule (AbortIncompleteMultipartUpload) will reclaim its parts");
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_faults_parse_per_store_and_round_trip() {
        let env = "a=unavailable,b=corrupt:src/id1/,c=hide:src/id2/,d=bogus";
        assert_eq!(DrillFault::parse(env, "a"), Some(DrillFault::Unavailable));
        assert_eq!(
            DrillFault::parse(env, "b"),
            Some(DrillFault::Corrupt("src/id1/".into()))
        );
        assert_eq!(
            DrillFault::parse(env, "c"),
            Some(DrillFault::Hide("src/id2/".into()))
        );
        assert_eq!(DrillFault::parse(env, "d"), None);
        assert_eq!(DrillFault::parse(env, "e"), None);
        for f in [
            DrillFault::Unavailable,
            DrillFault::Corrupt("x/1/".into()),
            DrillFault::Hide("x/2/".into()),
        ] {
            assert_eq!(DrillFault::parse(&f.env_value("s"), "s"), Some(f));
        }
        let b = Bytes::from(vec![0u8; 200]);
        let c = corrupted(b.clone());
        assert_eq!(c.len(), b.len());
        assert_ne!(c, b);
        assert_eq!(&c[..16], &b[..16]);
    }
}
