//! PowerDNS Authoritative through its HTTP API (`/api/v1/servers/{id}/zones/{zone}`):
//! RRsets are read from the zone and replaced or deleted with one PATCH.
//!
//! # Guarantees
//! - A change reads the zone, compares the RRset with the expectation and only then PATCHes
//!   it (`changetype: REPLACE` or `DELETE`); a mismatch is a [`DnsError::Conflict`] naming
//!   what the record holds, and nothing is sent.
//! - The API key travels in the `X-API-Key` header only, never in a URL, message or log.
//! - After the PATCH the zone's SOA serial is read back, so verification waits for it.
//!
//! # Caveats
//! - The API has no atomic precondition: between the read and the PATCH another writer can
//!   change the RRset, and the PATCH then overwrites it. The window is one HTTP round trip;
//!   where two controllers may race, elect one (lifeboat's leader election) or use the RFC 2136
//!   provider against PowerDNS (`dnsupdate=yes`), whose prerequisite is atomic.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{Applied, Change, Desired, DnsError, Provider, RRset, RecordType, Target};
use crate::model::SecretString;

/// A PowerDNS Authoritative server's HTTP API.
pub struct PowerDns {
    name: String,
    api_url: String,
    server_id: String,
    api_key: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for PowerDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDns")
            .field("name", &self.name)
            .field("api_url", &self.api_url)
            .field("api_key", &"***")
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Zone {
    #[serde(default)]
    serial: Option<u32>,
    #[serde(default)]
    rrsets: Vec<ApiRRset>,
}

#[derive(Debug, Deserialize)]
struct ApiRRset {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    records: Vec<ApiRecord>,
}

#[derive(Debug, Deserialize)]
struct ApiRecord {
    content: String,
    #[serde(default)]
    disabled: bool,
}

impl PowerDns {
    pub fn new(
        name: &str,
        api_url: &str,
        server_id: &str,
        api_key: SecretString,
    ) -> Result<PowerDns, DnsError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DnsError::Internal {
                context: "building an HTTP client".into(),
                detail: e.to_string(),
            })?;
        Ok(PowerDns {
            name: name.to_string(),
            api_url: api_url.trim_end_matches('/').to_string(),
            server_id: server_id.to_string(),
            api_key,
            http,
        })
    }

    fn zone_url(&self, zone: &str) -> String {
        format!(
            "{}/api/v1/servers/{}/zones/{}",
            self.api_url,
            self.server_id,
            percent_encoding::utf8_percent_encode(zone, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> DnsError {
        DnsError::Unreachable {
            server: format!("the PowerDNS API at {}", self.api_url),
            detail: e.to_string(),
        }
    }

    /// Maps a non-success reply to the error that says what to do.
    fn status_error(&self, zone: &str, name: Option<&str>, status: u16, body: &[u8]) -> DnsError {
        let detail = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
        match status {
            401 | 403 => DnsError::Forbidden {
                provider: self.describe(),
                api: format!("the PowerDNS API at {}", self.api_url),
                status,
                detail: if status == 401 {
                    "the api_key does not match the server's api-key".into()
                } else {
                    detail
                },
            },
            404 => DnsError::UnknownZone {
                provider: self.describe(),
                zone: zone.to_string(),
            },
            422 if detail.contains("out of zone") => DnsError::OutsideZone {
                name: name.map_or(detail, str::to_string),
                zone: zone.to_string(),
            },
            422 | 400 => DnsError::Rejected {
                provider: self.describe(),
                detail: format!("{status}: {detail}"),
            },
            429 => DnsError::Throttled {
                provider: self.describe(),
                retry_after: None,
            },
            _ => self.unreachable(format!("HTTP {status}: {detail}")),
        }
    }

    async fn zone(&self, zone: &str) -> Result<Zone, DnsError> {
        let resp = self
            .http
            .get(self.zone_url(zone))
            .header("X-API-Key", self.api_key.expose())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if status != 200 {
            return Err(self.status_error(zone, None, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| DnsError::BadReply {
            server: self.api_url.clone(),
            detail: format!("the zone is not the JSON PowerDNS sends: {e}"),
        })
    }

    fn api_type(t: RecordType) -> &'static str {
        t.as_str()
    }
}

#[async_trait::async_trait]
impl Provider for PowerDns {
    fn describe(&self) -> String {
        format!("{} (powerdns at {})", self.name, self.api_url)
    }

    #[tracing::instrument(skip_all, fields(provider = %self.name, name = %target.name))]
    async fn read(&self, target: &Target) -> Result<Option<RRset>, DnsError> {
        let zone = self.zone(&target.zone).await?;
        let found = zone.rrsets.into_iter().find(|r| {
            super::fqdn(&r.name) == target.name && r.rtype == Self::api_type(target.rtype)
        });
        let Some(found) = found else { return Ok(None) };
        let values: Vec<String> = found
            .records
            .into_iter()
            .filter(|r| !r.disabled)
            .map(|r| r.content)
            .collect();
        if values.is_empty() {
            return Ok(None);
        }
        RRset::new(target.rtype, found.ttl, &values).map(Some)
    }

    #[tracing::instrument(skip_all, fields(provider = %self.name, name = %change.target.name, rtype = %change.target.rtype))]
    async fn apply(&self, change: &Change) -> Result<Applied, DnsError> {
        let target = &change.target;
        // No atomic precondition in the API: compare right before the PATCH (module caveat).
        let current = self.read(target).await?;
        if !change.expect.holds(current.as_ref()) {
            return Err(super::conflict(self, change, current.as_ref()));
        }
        let rrset = match &change.desired {
            Desired::Present(r) => json!({
                "name": target.name,
                "type": Self::api_type(target.rtype),
                "ttl": r.ttl,
                "changetype": "REPLACE",
                "records": r.values.iter().map(|v| json!({"content": v, "disabled": false})).collect::<Vec<_>>(),
            }),
            Desired::Absent => json!({
                "name": target.name,
                "type": Self::api_type(target.rtype),
                "changetype": "DELETE",
            }),
        };
        let body =
            serde_json::to_vec(&json!({ "rrsets": [rrset] })).map_err(|e| DnsError::Internal {
                context: "encoding a PowerDNS PATCH".into(),
                detail: e.to_string(),
            })?;
        let resp = self
            .http
            .patch(self.zone_url(&target.zone))
            .header("X-API-Key", self.api_key.expose())
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let reply = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !(200..300).contains(&status) {
            return Err(self.status_error(&target.zone, Some(&target.name), status, &reply));
        }
        let serial = self.zone(&target.zone).await?.serial;
        tracing::info!(serial, "rrset patched");
        Ok(Applied { serial })
    }
}
