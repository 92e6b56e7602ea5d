//! The `dns:` config section: `providers:` (where records are changed) and `records:` (what
//! lifeboat may move and which nameservers prove it), validated at load, and [`build`], which
//! turns a provider's config into a running [`Provider`].
//!
//! # Guarantees
//! - Secrets (`api_key`, `api_token`, `tsig.secret`) are [`SecretString`]s and every type here
//!   prints them as `***` in `Debug`.
//! - [`DnsConfig::validate`] rejects, with the key path and what to write: unknown providers,
//!   names outside their zone, LUA records on a provider other than powerdns, nameservers that
//!   are not addresses, TSIG algorithms and secrets that cannot sign, duplicate records.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{DnsError, Provider, RecordType, Target};
use crate::model::{SecretString, Span};

/// `dns:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub records: Vec<RecordConfig>,
}

/// `dns.providers.NAME`, by `kind`.
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderConfig {
    Powerdns(PowerDnsConfig),
    Rfc2136(Rfc2136Config),
    Route53(Route53Config),
    Cloudflare(CloudflareConfig),
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderConfig::Powerdns(c) => c.fmt(f),
            ProviderConfig::Rfc2136(c) => c.fmt(f),
            ProviderConfig::Route53(c) => c.fmt(f),
            ProviderConfig::Cloudflare(c) => c.fmt(f),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerDnsConfig {
    /// e.g. `http://127.0.0.1:8081`.
    pub api_url: String,
    pub api_key: SecretString,
    #[serde(default = "default_server_id")]
    pub server_id: String,
}

fn default_server_id() -> String {
    "localhost".into()
}

impl std::fmt::Debug for PowerDnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerDnsConfig")
            .field("api_url", &self.api_url)
            .field("api_key", &"***")
            .field("server_id", &self.server_id)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The primary taking updates, `IP:PORT`.
    pub server: String,
    pub tsig: TsigConfig,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigConfig {
    pub name: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// base64, as `tsig-keygen` prints it.
    pub secret: SecretString,
}

fn default_algorithm() -> String {
    "hmac-sha256".into()
}

impl std::fmt::Debug for TsigConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigConfig")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"***")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53Config {
    pub hosted_zone_id: String,
    pub region: Option<String>,
    /// Another endpoint than AWS's (moto in tests).
    pub endpoint: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudflareConfig {
    pub zone_id: String,
    pub api_token: SecretString,
    /// Another API base than `https://api.cloudflare.com/client/v4` (a contract fake).
    pub api_url: Option<String>,
}

impl std::fmt::Debug for CloudflareConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareConfig")
            .field("zone_id", &self.zone_id)
            .field("api_token", &"***")
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// `dns.records[i]`: a record lifeboat may move.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    pub name: String,
    pub zone: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    pub provider: String,
    /// Authoritative servers asked to verify a change, `IP:PORT`; none: the zone's NS
    /// (see [`super::nameservers`]).
    #[serde(default)]
    pub nameservers: Vec<String>,
    pub verify_timeout: Option<Span>,
}

fn default_ttl() -> u32 {
    60
}

impl RecordConfig {
    pub fn target(&self) -> Result<Target, DnsError> {
        Target::new(&self.name, &self.zone, self.rtype)
    }

    /// The nameservers as addresses (validated at load); none listed: the zone's NS, asked of
    /// `provider`'s DNS server when it has one.
    pub async fn nameserver_addrs(
        &self,
        provider: &dyn Provider,
    ) -> Result<Vec<SocketAddr>, DnsError> {
        if self.nameservers.is_empty() {
            return super::nameservers::discover(&super::fqdn(&self.zone), provider.dns_server())
                .await;
        }
        self.nameservers
            .iter()
            .map(|s| super::parse_server(s).map_err(DnsError::Config))
            .collect()
    }

    pub fn verify_timeout(&self) -> Duration {
        self.verify_timeout
            .map_or(super::DEFAULT_VERIFY_TIMEOUT, |s| s.0)
    }
}

impl ProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Powerdns(_) => "powerdns",
            ProviderConfig::Rfc2136(_) => "rfc2136",
            ProviderConfig::Route53(_) => "route53",
            ProviderConfig::Cloudflare(_) => "cloudflare",
        }
    }
}

impl DnsConfig {
    /// The records called `name` (absolute or not), of `rtype` when given.
    pub fn records_named(&self, name: &str, rtype: Option<RecordType>) -> Vec<&RecordConfig> {
        let name = super::fqdn(name);
        self.records
            .iter()
            .filter(|r| super::fqdn(&r.name) == name && rtype.is_none_or(|t| t == r.rtype))
            .collect()
    }

    /// Load-time checks; `Err((key path, message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, p) in &self.providers {
            let at = |k: &str| format!("dns.providers.{name}.{k}");
            match p {
                ProviderConfig::Powerdns(c) => {
                    let ok = url::Url::parse(&c.api_url)
                        .is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https");
                    if !ok {
                        return Err((
                            at("api_url"),
                            format!(
                                "`{}` is not an http(s) URL; write the API's base, e.g. http://127.0.0.1:8081",
                                c.api_url
                            ),
                        ));
                    }
                    if c.api_key.expose().is_empty() {
                        return Err((
                            at("api_key"),
                            "is empty; set it to the server's api-key (e.g. \"${PDNS_API_KEY}\")"
                                .into(),
                        ));
                    }
                }
                ProviderConfig::Rfc2136(c) => {
                    super::parse_server(&c.server).map_err(|m| (at("server"), m))?;
                    super::rfc2136::algorithm(&c.tsig.algorithm)
                        .map_err(|m| (at("tsig.algorithm"), m))?;
                    super::rfc2136::decode_secret(&c.tsig.secret)
                        .map_err(|m| (at("tsig.secret"), m))?;
                    if hickory_proto::rr::Name::from_ascii(&c.tsig.name).is_err()
                        || c.tsig.name.is_empty()
                    {
                        return Err((
                            at("tsig.name"),
                            format!(
                                "`{}` is not a key name; write the name the server knows the key by, e.g. lifeboat-key",
                                c.tsig.name
                            ),
                        ));
                    }
                }
                ProviderConfig::Route53(c) => {
                    if c.hosted_zone_id.trim().is_empty() {
                        return Err((
                            at("hosted_zone_id"),
                            "is empty; write the hosted zone's id, e.g. Z0123456789ABC".into(),
                        ));
                    }
                }
                ProviderConfig::Cloudflare(c) => {
                    if c.zone_id.trim().is_empty() {
                        return Err((
                            at("zone_id"),
                            "is empty; write the zone's id from the Cloudflare dashboard".into(),
                        ));
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, r) in self.records.iter().enumerate() {
            let at = |k: &str| format!("dns.records[{i}].{k}");
            let Some(p) = self.providers.get(&r.provider) else {
                return Err((
                    at("provider"),
                    format!(
                        "no provider named `{}`; use one of: {}",
                        r.provider,
                        if self.providers.is_empty() {
                            "(none: add one under dns.providers)".to_string()
                        } else {
                            self.providers
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ));
            };
            r.target().map_err(|e| (at("name"), e.to_string()))?;
            if r.rtype == RecordType::Lua && !matches!(p, ProviderConfig::Powerdns(_)) {
                return Err((
                    at("type"),
                    format!(
                        "LUA records need a powerdns provider; `{}` is {}",
                        r.provider,
                        p.kind()
                    ),
                ));
            }
            if r.ttl > i32::MAX as u32 {
                return Err((at("ttl"), "must be at most 2147483647 seconds".into()));
            }
            for (j, ns) in r.nameservers.iter().enumerate() {
                super::parse_server(ns)
                    .map_err(|m| (format!("dns.records[{i}].nameservers[{j}]"), m))?;
            }
            if r.verify_timeout.is_some_and(|t| t.0.is_zero()) {
                return Err((
                    at("verify_timeout"),
                    "must be more than 0s; write e.g. 60s".into(),
                ));
            }
            if !seen.insert((super::fqdn(&r.name), r.rtype)) {
                return Err((
                    at("name"),
                    format!(
                        "{} {} is listed twice; list each name and type once",
                        super::fqdn(&r.name),
                        r.rtype
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A running provider for `dns.providers.NAME`.
pub fn build(name: &str, config: &ProviderConfig) -> Result<Arc<dyn Provider>, DnsError> {
    match config {
        ProviderConfig::Powerdns(c) => Ok(Arc::new(super::powerdns::PowerDns::new(
            name,
            &c.api_url,
            &c.server_id,
            c.api_key.clone(),
        )?)),
        ProviderConfig::Rfc2136(c) => Ok(Arc::new(super::rfc2136::Rfc2136::new(
            name,
            super::parse_server(&c.server).map_err(DnsError::Config)?,
            &c.tsig.name,
            &c.tsig.algorithm,
            &c.tsig.secret,
            crate::model::clock::system(),
        )?)),
        ProviderConfig::Route53(c) => Ok(Arc::new(super::route53::Route53::new(
            name,
            &c.hosted_zone_id,
            c.region.clone(),
            c.endpoint.clone(),
        ))),
        ProviderConfig::Cloudflare(c) => Ok(Arc::new(super::cloudflare::Cloudflare::new(
            name,
            &c.zone_id,
            c.api_url.as_deref(),
            c.api_token.clone(),
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<DnsConfig, String> {
        let c: DnsConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map_err(|(p, m)| format!("{p}: {m}"))?;
        Ok(c)
    }

    const GOOD: &str = r#"
providers:
  pdns: { kind: powerdns, api_url: "http://127.0.0.1:8081", api_key: "k3y-s3cret" }
  bind: { kind: rfc2136, server: "127.0.0.1:5353", tsig: { name: lifeboat-key, algorithm: hmac-sha256, secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQ=" } }
  r53:  { kind: route53, hosted_zone_id: Z123, region: us-east-1, endpoint: "http://127.0.0.1:5000" }
  cf:   { kind: cloudflare, zone_id: "abc", api_token: "t0ken-s3cret" }
records:
  - name: api.example.test.
    zone: example.test.
    type: A
    ttl: 30
    provider: bind
    nameservers: ["127.0.0.1:5353", "127.0.0.1:5354"]
    verify_timeout: 60s
"#;

    #[test]
    fn the_issue_example_parses_and_hides_secrets() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.records[0].verify_timeout(), Duration::from_secs(60));
        let debug = format!("{c:?}");
        for secret in ["k3y-s3cret", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "t0ken-s3cret"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn bad_configs_say_what_to_write() {
        let cases = [
            (
                "provider: bind",
                "provider: nope",
                "dns.records[0].provider: no provider named `nope`",
            ),
            (
                "name: api.example.test.",
                "name: api.other.test.",
                "dns.records[0].name: `api.other.test.` is not inside zone",
            ),
            (
                "type: A",
                "type: LUA",
                "LUA records need a powerdns provider",
            ),
            ("type: A", "type: MX", "unknown variant `MX`"),
            (
                "\"127.0.0.1:5354\"",
                "\"ns2.example.test\"",
                "dns.records[0].nameservers[1]: `ns2.example.test` is not an address",
            ),
            (
                "algorithm: hmac-sha256",
                "algorithm: hmac-md4",
                "dns.providers.bind.tsig.algorithm",
            ),
            (
                "secret: \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\"",
                "secret: \"not base64!\"",
                "dns.providers.bind.tsig.secret is not base64",
            ),
            ("kind: rfc2136", "kind: bind9", "unknown variant `bind9`"),
            (
                "verify_timeout: 60s",
                "verify_timeout: 0s",
                "must be more than 0s",
            ),
            (
                "api_url: \"http://127.0.0.1:8081\"",
                "api_url: \"127.0.0.1:8081\"",
                "dns.providers.pdns.api_url",
            ),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let err = parse(&GOOD.replace(from, to)).unwrap_err();
            let err = err.replace(
                "providers.bind.tsig.secret: is",
                "providers.bind.tsig.secret is",
            );
            assert!(err.contains(want), "{to}: {err}");
            assert!(
                !err.contains("k3y-s3cret") && !err.contains("t0ken-s3cret"),
                "{err}"
            );
        }
        let unknown_key = parse(&GOOD.replace("ttl: 30", "ttl: 30\n    weight: 3")).unwrap_err();
        assert!(
            unknown_key.contains("unknown field `weight`"),
            "{unknown_key}"
        );
    }
}
