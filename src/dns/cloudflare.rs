//! Cloudflare DNS through its v4 API (`/zones/{zone_id}/dns_records`, API token).
//!
//! # Guarantees
//! - A change is one call to the batch endpoint (`POST .../dns_records/batch`), which Cloudflare
//!   applies all or nothing: the records read (by id) are deleted and the new ones posted. If a
//!   racer replaced or deleted those records meanwhile, their ids are gone, the delete fails,
//!   nothing changes, and lifeboat reports a [`DnsError::Conflict`] with what is there now.
//! - HTTP 429 is retried after its `retry-after` (at most 3 times, each wait at most 10 s);
//!   what is left is [`DnsError::Throttled`] with the server's delay.
//! - The token travels in the `Authorization` header only; `Debug` shows `***`.
//!
//! # Caveats
//! - The batch's deletes name record ids, not values: a writer that edits a record in place
//!   (PATCH/PUT keep the id) between lifeboat's read and its batch is not detected. lifeboat
//!   itself never edits in place.
//! - Cloudflare has no SOA serial to wait for; proxied records answer with Cloudflare's
//!   addresses, so verify them through names lifeboat does not proxy.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{Applied, Change, Desired, DnsError, Provider, RRset, Target};
use crate::model::SecretString;

/// The public API base.
pub const API: &str = "https://api.cloudflare.com/client/v4";

pub struct Cloudflare {
    name: String,
    zone_id: String,
    api_url: String,
    token: SecretString,
    http: reqwest::Client,
    /// Attempts per request when answered 429.
    pub max_attempts: u32,
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloudflare")
            .field("name", &self.name)
            .field("zone_id", &self.zone_id)
            .field("api_url", &self.api_url)
            .field("api_token", &"***")
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize, Clone)]
struct Record {
    id: String,
    #[serde(rename = "type")]
    rtype: String,
    name: String,
    content: String,
    #[serde(default)]
    ttl: u32,
}

impl Cloudflare {
    pub fn new(
        name: &str,
        zone_id: &str,
        api_url: Option<&str>,
        token: SecretString,
    ) -> Result<Cloudflare, DnsError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| DnsError::Internal {
                context: "building an HTTP client".into(),
                detail: e.to_string(),
            })?;
        Ok(Cloudflare {
            name: name.to_string(),
            zone_id: zone_id.to_string(),
            api_url: api_url.unwrap_or(API).trim_end_matches('/').to_string(),
            token,
            http,
            max_attempts: 3,
        })
    }

    fn records_url(&self) -> String {
        format!("{}/zones/{}/dns_records", self.api_url, self.zone_id)
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> DnsError {
        DnsError::Unreachable {
            server: format!("the Cloudflare API at {}", self.api_url),
            detail: e.to_string(),
        }
    }

    /// One request with the token, retried on 429; the decoded envelope's result.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        zone: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, DnsError> {
        let mut attempt = 1;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url)
                .header("Authorization", format!("Bearer {}", self.token.expose()));
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| self.unreachable(e))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
            if status == 429 {
                if attempt < self.max_attempts {
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(10));
                    tracing::warn!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "Cloudflare answered 429; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                return Err(DnsError::Throttled {
                    provider: self.describe(),
                    retry_after,
                });
            }
            let env: Envelope<T> =
                serde_json::from_slice(&bytes).map_err(|e| DnsError::BadReply {
                    server: self.api_url.clone(),
                    detail: format!("HTTP {status}, not the API's JSON envelope: {e}"),
                })?;
            let detail = env
                .errors
                .iter()
                .map(|m| format!("{} ({})", m.message, m.code))
                .collect::<Vec<_>>()
                .join("; ");
            return match (status, env.success, env.result) {
                (200..=299, true, Some(r)) => Ok(r),
                (401 | 403, _, _) => Err(DnsError::Forbidden {
                    provider: self.describe(),
                    api: format!("the Cloudflare API at {}", self.api_url),
                    status,
                    detail: if detail.is_empty() {
                        "authentication error".into()
                    } else {
                        detail
                    },
                }),
                _ if env.errors.iter().any(|m| m.code == 7003 || m.code == 1001) => {
                    Err(DnsError::UnknownZone {
                        provider: self.describe(),
                        zone: zone.to_string(),
                    })
                }
                (404, _, _) if url.ends_with("/dns_records") || url.contains("/dns_records?") => {
                    Err(DnsError::UnknownZone {
                        provider: self.describe(),
                        zone: zone.to_string(),
                    })
                }
                (500..=599, _, _) => Err(self.unreachable(format!("HTTP {status}: {detail}"))),
                _ => Err(DnsError::Rejected {
                    provider: self.describe(),
                    detail: format!("HTTP {status}: {detail}"),
                }),
            };
        }
    }

    async fn records(&self, target: &Target) -> Result<Vec<Record>, DnsError> {
        let name = target.name.trim_end_matches('.');
        let url = format!(
            "{}?type={}&name={}&per_page=100",
            self.records_url(),
            target.rtype,
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
        );
        let all: Vec<Record> = self
            .call(&target.zone, reqwest::Method::GET, &url, None)
            .await?;
        Ok(all
            .into_iter()
            .filter(|r| super::fqdn(&r.name) == target.name && r.rtype == target.rtype.as_str())
            .collect())
    }
}

#[async_trait::async_trait]
impl Provider for Cloudflare {
    fn describe(&self) -> String {
        format!("{} (cloudflare zone {})", self.name, self.zone_id)
    }

    async fn read(&self, target: &Target) -> Result<Option<RRset>, DnsError> {
        let records = self.records(target).await?;
        let Some(first) = records.first() else {
            return Ok(None);
        };
        let values: Vec<String> = records.iter().map(|r| r.content.clone()).collect();
        RRset::new(target.rtype, first.ttl, &values).map(Some)
    }

    #[tracing::instrument(skip_all, fields(provider = %self.name, name = %ch.target.name, rtype = %ch.target.rtype))]
    async fn apply(&self, ch: &Change) -> Result<Applied, DnsError> {
        let target = &ch.target;
        let records = self.records(target).await?;
        let current = match records.first() {
            None => None,
            Some(first) => Some(RRset::new(
                target.rtype,
                first.ttl,
                &records
                    .iter()
                    .map(|r| r.content.clone())
                    .collect::<Vec<_>>(),
            )?),
        };
        if !ch.expect.holds(current.as_ref()) {
            return Err(super::conflict(self, ch, current.as_ref()));
        }
        let deletes: Vec<_> = records.iter().map(|r| json!({ "id": r.id })).collect();
        let posts: Vec<_> = match &ch.desired {
            Desired::Present(r) => r
                .values
                .iter()
                .map(|v| {
                    json!({
                        "type": target.rtype.as_str(),
                        "name": target.name.trim_end_matches('.'),
                        "content": v,
                        "ttl": r.ttl,
                        "proxied": false,
                    })
                })
                .collect(),
            Desired::Absent => Vec::new(),
        };
        let url = format!("{}/batch", self.records_url());
        let result: Result<serde_json::Value, DnsError> = self
            .call(
                &target.zone,
                reqwest::Method::POST,
                &url,
                Some(json!({ "deletes": deletes, "posts": posts })),
            )
            .await;
        match result {
            Ok(_) => Ok(Applied { serial: None }),
            // A delete of an id that is gone: someone replaced the records meanwhile.
            Err(DnsError::Rejected { detail, .. }) => {
                let held = self.read(target).await?;
                if held != current {
                    Err(super::conflict(self, ch, held.as_ref()))
                } else {
                    Err(DnsError::Rejected {
                        provider: self.describe(),
                        detail,
                    })
                }
            }
            Err(e) => Err(e),
        }
    }
}
