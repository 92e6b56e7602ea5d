// S3 Object Lock in tests, through aws-sdk-s3 against a `MotoServer`: buckets created with
// Object Lock enabled, and the retention of an object as the bucket reports it.
#![allow(dead_code)]

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::MotoServer;

/// An S3 client for `moto`, with the test credentials `Env::command` passes to lifeboat.
pub struct S3 {
    client: Client,
    rt: tokio::runtime::Runtime,
}

/// An object's Object Lock retention: mode (`COMPLIANCE`/`GOVERNANCE`) and its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    pub mode: String,
    pub until: chrono::DateTime<chrono::Utc>,
}

impl S3 {
    pub fn new(moto: &MotoServer) -> S3 {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new(
                "testing",
                "testing-secret-key",
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build();
        S3 {
            client: Client::from_conf(conf),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
        }
    }

    /// Creates `bucket` with Object Lock enabled (`x-amz-bucket-object-lock-enabled: true`;
    /// S3 then turns versioning on).
    pub fn create_locked_bucket(&self, bucket: &str) {
        self.rt
            .block_on(
                self.client
                    .create_bucket()
                    .bucket(bucket)
                    .object_lock_enabled_for_bucket(true)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("create locked bucket {bucket}: {e:?}"));
    }

    /// The retention of `key` (from HeadObject's `x-amz-object-lock-*` headers: moto 5
    /// answers GetObjectRetention with the object itself), `None` if it has none.
    pub fn retention(&self, bucket: &str, key: &str) -> Option<Retention> {
        let out = self
            .rt
            .block_on(self.client.head_object().bucket(bucket).key(key).send())
            .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
        let until = out.object_lock_retain_until_date()?;
        Some(Retention {
            mode: out.object_lock_mode()?.as_str().to_string(),
            until: chrono::DateTime::from_timestamp(until.secs(), 0)?,
        })
    }

    /// The body of `key`, as lifeboat's own credentials read it.
    pub fn get_text(&self, bucket: &str, key: &str) -> String {
        self.rt.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
            let bytes = out
                .body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("read {key}: {e:?}"));
            String::from_utf8_lossy(&bytes.into_bytes()).into_owned()
        })
    }

    /// Every version id of `key` (a locked bucket is versioned).
    pub fn versions(&self, bucket: &str, key: &str) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .list_object_versions()
                    .bucket(bucket)
                    .prefix(key)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("list versions of {key}: {e:?}"));
        out.versions()
            .iter()
            .filter(|v| v.key() == Some(key))
            .filter_map(|v| v.version_id().map(str::to_string))
            .collect()
    }

    /// Tries to destroy one version of `key` for good, as ransomware holding the
    /// orchestrator's keys would; the error text if S3 refuses.
    pub fn delete_version(&self, bucket: &str, key: &str, version: &str) -> Result<(), String> {
        self.rt
            .block_on(
                self.client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .version_id(version)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    /// Sets `bucket`'s default retention (`mode` COMPLIANCE/GOVERNANCE, `days`): S3 then
    /// locks every object version in the request that writes it.
    pub fn set_default_retention(&self, bucket: &str, mode: &str, days: i32) {
        use aws_sdk_s3::types::{
            DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
            ObjectLockRule,
        };
        let conf = ObjectLockConfiguration::builder()
            .object_lock_enabled(ObjectLockEnabled::Enabled)
            .rule(
                ObjectLockRule::builder()
                    .default_retention(
                        DefaultRetention::builder()
                            .mode(ObjectLockRetentionMode::from(mode))
                            .days(days)
                            .build(),
                    )
                    .build(),
            )
            .build();
        self.rt
            .block_on(
                self.client
                    .put_object_lock_configuration()
                    .bucket(bucket)
                    .object_lock_configuration(conf)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("default retention of {bucket}: {e:?}"));
    }

    /// The retention of one version of `key`, `None` if it has none.
    pub fn retention_at(&self, bucket: &str, key: &str, version: &str) -> Option<Retention> {
        let out = self
            .rt
            .block_on(
                self.client
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .version_id(version)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("head {key}@{version}: {e:?}"));
        let until = out.object_lock_retain_until_date()?;
        Some(Retention {
            mode: out.object_lock_mode()?.as_str().to_string(),
            until: chrono::DateTime::from_timestamp(until.secs(), 0)?,
        })
    }

    /// The attacker overwrites `key` with `body` (a new current version; with a checksum,
    /// as S3 requires in a bucket with a default retention).
    pub fn overwrite(&self, bucket: &str, key: &str, body: &[u8]) {
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                    .body(body.to_vec().into())
                    .send(),
            )
            .unwrap_or_else(|e| panic!("overwrite {key}: {e:?}"));
    }

    /// The attacker "deletes" `key` without a version id: S3 adds a delete marker, the key
    /// then reads as missing.
    pub fn delete_marker(&self, bucket: &str, key: &str) {
        self.rt
            .block_on(self.client.delete_object().bucket(bucket).key(key).send())
            .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
    }
}
