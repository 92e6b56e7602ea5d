//! S3 Object Lock for a store with `object_lock: { mode, days }`.
//!
//! Guarantees:
//! - objects are locked **in the request that writes them**: the bucket must have a default
//!   retention (`GetObjectLockConfiguration`) at least as strong as the configured one
//!   ([`ObjectLocker::check_default`], asked by `config check` and before every backup or
//!   copy writes anything), so S3 itself locks each new object version;
//! - belt and braces, after a backup writes an object [`ObjectLocker::lock`] also gives that
//!   exact version an explicit retention (mode, retain-until = now + days), and `settle`
//!   re-applies it when a crash came in between;
//! - retentions are set and read on an object *version* when one is known, so an attacker's
//!   newer version (or delete marker) does not hide the locked one; prune asks
//!   [`ObjectLocker::locked_until`] before deleting.
//!
//! `object_store` cannot set retentions, so this talks to the bucket with `aws-sdk-s3`, built
//! from the same store config (region, endpoint, keys; otherwise the standard AWS
//! environment, profile and instance credentials). The client is made on first use.
//!
//! Caveat: Object Lock needs a bucket created with Object Lock enabled (hence versioned).
//! Deleting a locked object without a version id only adds a delete marker, and deleting
//! an expired one leaves a noncurrent version: a lifecycle rule (NoncurrentVersionExpiration)
//! is what finally reclaims the space.

use std::fmt;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::DateTime as AwsDateTime;
use aws_sdk_s3::types::{ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

use super::{ObjectLockConfig, StoreConfig};
use crate::model::values::LockMode;
use crate::policy::retention::Lock;

/// Sets and reads Object Lock retentions in one bucket.
pub struct ObjectLocker {
    pub config: ObjectLockConfig,
    bucket: String,
    store: StoreConfig,
    client: OnceCell<Client>,
}

impl fmt::Debug for ObjectLocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The store config holds credentials: show only what identifies the lock.
        f.debug_struct("ObjectLocker")
            .field("bucket", &self.bucket)
            .field("config", &self.config)
            .finish()
    }
}

/// Why a retention could not be set or read (the store adds its name and URL).
#[derive(Debug)]
pub struct LockFailure(pub String);

impl ObjectLocker {
    pub fn new(bucket: &str, config: ObjectLockConfig, store: &StoreConfig) -> ObjectLocker {
        ObjectLocker {
            config,
            bucket: bucket.to_string(),
            store: store.clone(),
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let cfg = &self.store;
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = &cfg.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint) = &cfg.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                if let (Some(key), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
                    loader = loader.credentials_provider(Credentials::new(
                        key.expose(),
                        secret.expose(),
                        None,
                        None,
                        "lifeboat store config",
                    ));
                }
                let sdk = loader.load().await;
                let mut b = aws_sdk_s3::config::Builder::from(&sdk)
                    .retry_config(
                        aws_sdk_s3::config::retry::RetryConfig::standard()
                            .with_max_attempts(cfg.retry.max_retries as u32 + 1),
                    )
                    .timeout_config(
                        aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                            .operation_timeout(cfg.retry.timeout.0)
                            .build(),
                    );
                if sdk.region().is_none() {
                    b = b.region(Region::new("us-east-1"));
                }
                // As object_store does: path-style requests for custom endpoints (MinIO,
                // moto, ...), virtual-hosted style for AWS itself.
                if cfg.endpoint.is_some() {
                    b = b.force_path_style(true);
                }
                Client::from_conf(b.build())
            })
            .await
    }

    /// Checks that the bucket's default retention (applied by S3 in the write request itself)
    /// is at least the configured `object_lock`; says what to set otherwise.
    pub async fn check_default(&self) -> Result<(), LockFailure> {
        let out = self
            .client()
            .await
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| LockFailure(describe(&e)))?;
        let rule = out
            .object_lock_configuration()
            .and_then(|c| c.rule())
            .and_then(|r| r.default_retention());
        let default = rule.map(|d| {
            let mode = match d.mode() {
                Some(ObjectLockRetentionMode::Compliance) => LockMode::Compliance,
                _ => LockMode::Governance,
            };
            let days = i64::from(d.days().unwrap_or(0)) + 365 * i64::from(d.years().unwrap_or(0));
            (mode, days)
        });
        default_covers(&self.config, default).map_err(|why| {
            LockFailure(format!(
                "{why}; objects would be written unlocked until a second request locks them. Set the bucket's default retention, e.g. `aws s3api put-object-lock-configuration --bucket {} --object-lock-configuration '{{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{{\"DefaultRetention\":{{\"Mode\":\"{}\",\"Days\":{}}}}}}}'`",
                self.bucket,
                match self.config.mode {
                    LockMode::Compliance => "COMPLIANCE",
                    LockMode::Governance => "GOVERNANCE",
                },
                self.config.days
            ))
        })
    }

    /// Sets the configured retention on `key` (a full object key; `version`, when known, is
    /// the exact version locked); returns its end.
    pub async fn lock(
        &self,
        key: &str,
        version: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, LockFailure> {
        let until = now + chrono::Duration::days(i64::from(self.config.days));
        let mode = match self.config.mode {
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
            LockMode::Governance => ObjectLockRetentionMode::Governance,
        };
        let retention = ObjectLockRetention::builder()
            .mode(mode)
            .retain_until_date(AwsDateTime::from_secs(until.timestamp()))
            .build();
        self.client()
            .await
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .retention(retention)
            .send()
            .await
            .map_err(|e| LockFailure(describe(&e)))?;
        Ok(until)
    }

    /// The retention on `key`, if it has one (expired or not). Read from HeadObject, which
    /// reports it (`x-amz-object-lock-*` headers) when the caller may s3:GetObjectRetention;
    /// some S3 look-alikes implement that but not GetObjectRetention itself.
    pub async fn locked_until(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Lock>, LockFailure> {
        let out = match self
            .client()
            .await
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) => return Err(LockFailure(describe(&e))),
        };
        let Some(until) = out
            .object_lock_retain_until_date()
            .and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()))
        else {
            return Ok(None);
        };
        let mode = match out.object_lock_mode() {
            Some(ObjectLockMode::Governance) => LockMode::Governance,
            _ => LockMode::Compliance,
        };
        Ok(Some(Lock { mode, until }))
    }
}

impl ObjectLocker {
    /// The version ids of `key`, newest first (delete markers left out).
    pub async fn versions(&self, key: &str) -> Result<Vec<String>, LockFailure> {
        Ok(self
            .list_versions(key)
            .await?
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect())
    }

    /// (key, version id) of every version under `prefix`, newest first per key (delete
    /// markers left out): keys hidden behind a delete marker included.
    pub async fn list_versions(&self, prefix: &str) -> Result<Vec<(String, String)>, LockFailure> {
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client()
                .await
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| LockFailure(describe(&e)))?;
            out.extend(
                page.versions()
                    .iter()
                    .filter_map(|v| Some((v.key()?.to_string(), v.version_id()?.to_string()))),
            );
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Whether a bucket default retention (`None`: the bucket has none) locks every new object
/// at least as `want` would: the same or a stronger mode (compliance covers governance) and
/// at least as many days. Says what falls short otherwise.
pub fn default_covers(
    want: &ObjectLockConfig,
    default: Option<(LockMode, i64)>,
) -> Result<(), String> {
    let Some((mode, days)) = default else {
        return Err("the bucket has no default Object Lock retention".to_string());
    };
    if want.mode == LockMode::Compliance && mode != LockMode::Compliance {
        return Err(format!(
            "the bucket's default retention is {} but object_lock.mode is compliance",
            mode_name(mode)
        ));
    }
    if days < i64::from(want.days) {
        return Err(format!(
            "the bucket's default retention is {days} day(s), shorter than object_lock.days ({})",
            want.days
        ));
    }
    Ok(())
}

fn mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Compliance => "compliance",
        LockMode::Governance => "governance",
    }
}

/// The S3 error code and message (or the transport error), without the raw response.
fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: fmt::Debug,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("(no message)")
            )
        }
        other => super::error_chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(mode: LockMode, days: u32) -> ObjectLockConfig {
        ObjectLockConfig { mode, days }
    }

    #[test]
    fn a_bucket_default_must_be_as_strong_as_the_config() {
        let c = LockMode::Compliance;
        let g = LockMode::Governance;
        assert!(default_covers(&want(c, 30), None).is_err());
        assert!(default_covers(&want(c, 30), Some((c, 30))).is_ok());
        assert!(default_covers(&want(c, 30), Some((c, 365))).is_ok());
        let short = default_covers(&want(c, 30), Some((c, 29))).unwrap_err();
        assert!(short.contains("29 day(s)"), "{short}");
        let weak = default_covers(&want(c, 30), Some((g, 30))).unwrap_err();
        assert!(weak.contains("governance"), "{weak}");
        assert!(default_covers(&want(g, 7), Some((c, 7))).is_ok());
        assert!(default_covers(&want(g, 7), Some((g, 7))).is_ok());
    }
}
