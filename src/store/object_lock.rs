//! S3 Object Lock for a store with `object_lock: { mode, days }`: after a backup writes an
//! object, [`ObjectLocker::lock`] gives it a retention (mode, retain-until = now + days), so
//! that nobody holding the orchestrator's own keys can delete it early; prune asks
//! [`ObjectLocker::locked_until`] before deleting.
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

    /// Sets the configured retention on `key` (a full object key); returns its end.
    pub async fn lock(&self, key: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, LockFailure> {
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
            .retention(retention)
            .send()
            .await
            .map_err(|e| LockFailure(describe(&e)))?;
        Ok(until)
    }

    /// The retention on `key`, if it has one (expired or not). Read from HeadObject, which
    /// reports it (`x-amz-object-lock-*` headers) when the caller may s3:GetObjectRetention;
    /// some S3 look-alikes implement that but not GetObjectRetention itself.
    pub async fn locked_until(&self, key: &str) -> Result<Option<Lock>, LockFailure> {
        let out = match self
            .client()
            .await
            .head_object()
            .bucket(&self.bucket)
            .key(key)
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
