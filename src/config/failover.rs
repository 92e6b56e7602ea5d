//! The `sites:` and `failover:` config sections: where the services run, how each site is
//! fenced and promoted, which DNS values point at it, and how the controller decides
//! (see [`crate::policy::failover`]).
//!
//! # Guarantees
//! - Service URLs (they hold passwords) and `peer_token` are [`SecretString`]s.
//! - [`validate`] rejects, with the key path and what to write: duplicate or invalid site and
//!   service names, unknown service kinds, services naming unknown sources, `order` naming
//!   unknown sites or a site twice, a `failover.site` that is not a site, `dns:` names that
//!   are not in `dns.records`, sites disagreeing on which names they serve, a quorum larger
//!   than the vantage points, zero intervals, peers without a `peer_token`, a `data_dir`
//!   on a service that is not PostgreSQL, a `kind: kubernetes` service without `namespace`/
//!   `name` (or with a `url`), and a `kube_scale` of anything but a Deployment/StatefulSet.
//!
//! # Caveats
//! A quorum below the majority is accepted (it must be written explicitly) but warned about:
//! then one vantage point alone can call a site down.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::model::{SecretString, Span};
use crate::policy::failover::{Mode, Params};

/// `sites[i]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    pub region: Option<String>,
    /// This site's lifeboat daemon (its `daemon.listen`), e.g. `http://lifeboat.us-east-1.internal:8080`.
    pub peer: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// DNS name → this site's values (switched to on promotion).
    #[serde(default)]
    pub dns: BTreeMap<String, Vec<String>>,
    /// Extra actions that fence this site (after its primaries are demoted).
    #[serde(default)]
    pub fence: Vec<ActionConfig>,
    /// Extra actions that promote this site (after its primaries are promoted).
    #[serde(default)]
    pub promote: Vec<ActionConfig>,
}

/// What a service is; decides how it is probed, fenced and promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Postgres,
    Redis,
    Etcd,
    /// Probe-only: an HTTP GET answering 2xx.
    Http,
    /// Probe-only: a TCP connect to `host:port`.
    Tcp,
    /// Probe-only: a Deployment/StatefulSet (`workload`, `namespace`, `name`) through the
    /// Kubernetes API, up with at least `min_ready` (default 1) ready replicas. No `url`.
    Kubernetes,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Postgres => "postgres",
            ServiceKind::Redis => "redis",
            ServiceKind::Etcd => "etcd",
            ServiceKind::Http => "http",
            ServiceKind::Tcp => "tcp",
            ServiceKind::Kubernetes => "kubernetes",
        }
    }

    /// Whether the service has a primary to fence and promote.
    pub fn replicated(self) -> bool {
        matches!(self, ServiceKind::Postgres | ServiceKind::Redis)
    }
}

/// `sites[i].services.NAME`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub kind: ServiceKind,
    /// Every kind but `kubernetes` (which is found by `namespace`, `workload`, `name`).
    #[serde(default = "no_url")]
    pub url: SecretString,
    /// The backup source of this service: its RPO gates promotion.
    pub source: Option<String>,
    /// PostgreSQL: the server's data directory on the host that runs `failover rejoin`
    /// (it runs `pg_rewind` or `pg_basebackup` there to make an old primary a standby).
    pub data_dir: Option<std::path::PathBuf>,
    /// `kind: kubernetes`: the workload's namespace.
    pub namespace: Option<String>,
    /// `kind: kubernetes`: `Deployment` (default) or `StatefulSet`.
    pub workload: Option<String>,
    /// `kind: kubernetes`: the workload's name.
    pub name: Option<String>,
    /// `kind: kubernetes`: ready replicas needed to count as up (default 1).
    pub min_ready: Option<u32>,
}

fn no_url() -> SecretString {
    SecretString::new("")
}

/// `sites[i].fence[j]` / `sites[i].promote[j]`: exactly one of `command` or `kube_scale`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Run a program (argv, no shell); must exit 0.
    pub command: Option<Vec<String>>,
    /// Scale a Deployment or StatefulSet.
    pub kube_scale: Option<KubeScale>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeScale {
    #[serde(default = "default_workload")]
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
}

fn default_workload() -> String {
    "Deployment".into()
}

/// `failover.quorum`: `majority` or a number of vantage points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quorum {
    #[default]
    Majority,
    Exactly(usize),
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Quorum::Exactly(n)),
            Raw::S(s) if s == "majority" => Ok(Quorum::Majority),
            Raw::S(s) => s.parse().map(Quorum::Exactly).map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a quorum; write `majority` or a number of vantage points"
                ))
            }),
        }
    }
}

/// `failover:`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Where this instance runs; unset: `$LIFEBOAT_SITE`.
    pub site: Option<String>,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Preference order; unset: the order of `sites:`.
    #[serde(default)]
    pub order: Vec<String>,
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Span,
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
    #[serde(default)]
    pub quorum: Quorum,
    #[serde(default = "default_fence_after")]
    pub fence_after: Span,
    #[serde(default = "default_min_dwell")]
    pub min_dwell: Span,
    pub peer_token: Option<SecretString>,
}

impl std::fmt::Debug for FailoverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverConfig")
            .field("site", &self.site)
            .field("mode", &self.mode)
            .field("order", &self.order)
            .field("probe_interval", &self.probe_interval)
            .field("unhealthy_after", &self.unhealthy_after)
            .field("quorum", &self.quorum)
            .field("fence_after", &self.fence_after)
            .field("min_dwell", &self.min_dwell)
            .field("peer_token", &self.peer_token.as_ref().map(|_| "***"))
            .finish()
    }
}

fn default_mode() -> Mode {
    Mode::Manual
}
fn default_probe_interval() -> Span {
    Span(Duration::from_secs(1))
}
fn default_unhealthy_after() -> u32 {
    3
}
fn default_fence_after() -> Span {
    Span(Duration::from_secs(5))
}
fn default_min_dwell() -> Span {
    Span(Duration::from_secs(600))
}

impl FailoverConfig {
    /// The sites in preference order.
    pub fn order(&self, sites: &[SiteConfig]) -> Vec<String> {
        if self.order.is_empty() {
            sites.iter().map(|s| s.name.clone()).collect()
        } else {
            self.order.clone()
        }
    }

    /// The quorum as a number of vantage points (one per site).
    pub fn quorum(&self, sites: usize) -> usize {
        match self.quorum {
            Quorum::Majority => Params::majority(sites),
            Quorum::Exactly(n) => n,
        }
    }

    /// This instance's site: `failover.site`, else `env("LIFEBOAT_SITE")`.
    pub fn here(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        self.site.clone().or_else(|| env("LIFEBOAT_SITE"))
    }

    /// The decision's parameters; `rpo` is the strictest RPO of the services' sources.
    pub fn params(&self, sites: &[SiteConfig], rpo: Option<Duration>) -> Params {
        Params {
            order: self.order(sites),
            mode: self.mode,
            unhealthy_after: self.unhealthy_after,
            healthy_after: self.unhealthy_after.max(2),
            quorum: self.quorum(sites.len()),
            fence_after: self.fence_after.0,
            // Two probe rounds on top of fence_after: the cut-off primary's last round.
            fence_margin: self.probe_interval.0 * 2,
            min_dwell: self.min_dwell.0,
            rpo,
        }
    }
}

type Invalid = (String, String);

/// Checks `sites:` and `failover:` against each other, `sources:` and `dns.records`.
pub fn validate(
    sites: &[SiteConfig],
    failover: Option<&FailoverConfig>,
    sources: &BTreeSet<&str>,
    dns_records: &BTreeSet<String>,
) -> Result<(), Invalid> {
    let mut names = BTreeSet::new();
    for (i, site) in sites.iter().enumerate() {
        let at = |key: &str| format!("sites[{i}].{key}");
        super::check_name(&site.name).map_err(|m| (at("name"), m))?;
        if !names.insert(site.name.as_str()) {
            return Err((
                at("name"),
                format!(
                    "duplicate site name `{}`; every site needs its own name",
                    site.name
                ),
            ));
        }
        if let Some(peer) = &site.peer
            && !(peer.starts_with("http://") || peer.starts_with("https://"))
        {
            return Err((
                at("peer"),
                format!(
                    "`{peer}` is not a lifeboat daemon URL; write e.g. `http://lifeboat.{}.internal:8080` (the site's daemon.listen)",
                    site.name
                ),
            ));
        }
        for (name, service) in &site.services {
            super::check_name(name).map_err(|m| (at(&format!("services.{name}")), m))?;
            if let Some(source) = &service.source
                && !sources.contains(source.as_str())
            {
                return Err((
                    at(&format!("services.{name}.source")),
                    format!(
                        "no source is called `{source}`; name one of `sources:` ({}) or remove `source:`",
                        join(sources.iter().copied())
                    ),
                ));
            }
            if service.source.is_some() && !service.kind.replicated() {
                return Err((
                    at(&format!("services.{name}.source")),
                    format!(
                        "a {} service is probe-only and has no data to back up; remove `source:`",
                        service.kind.as_str()
                    ),
                ));
            }
            if service.data_dir.is_some() && service.kind != ServiceKind::Postgres {
                return Err((
                    at(&format!("services.{name}.data_dir")),
                    format!(
                        "only postgres services have a data directory to rewind; remove `data_dir:` from this {} service",
                        service.kind.as_str()
                    ),
                ));
            }
            let kube_fields = service.namespace.is_some()
                || service.workload.is_some()
                || service.name.is_some()
                || service.min_ready.is_some();
            if service.kind == ServiceKind::Kubernetes {
                if !service.url.expose().is_empty() {
                    return Err((
                        at(&format!("services.{name}.url")),
                        "a kubernetes service has no URL; write `namespace:`, `workload: Deployment|StatefulSet` and `name:` instead".into(),
                    ));
                }
                for (key, v) in [("namespace", &service.namespace), ("name", &service.name)] {
                    if v.as_deref().is_none_or(|v| v.trim().is_empty()) {
                        return Err((
                            at(&format!("services.{name}.{key}")),
                            format!(
                                "a kubernetes service needs `{key}:` (of its Deployment or StatefulSet)"
                            ),
                        ));
                    }
                }
                if let Some(w) = &service.workload
                    && !["deployment", "statefulset"].contains(&w.to_ascii_lowercase().as_str())
                {
                    return Err((
                        at(&format!("services.{name}.workload")),
                        format!(
                            "`{w}` is not a workload lifeboat probes; write `Deployment` or `StatefulSet`"
                        ),
                    ));
                }
                continue;
            }
            if kube_fields {
                return Err((
                    at(&format!("services.{name}")),
                    format!(
                        "`namespace`, `workload`, `name` and `min_ready` are for `kind: kubernetes` services; remove them from this {} service",
                        service.kind.as_str()
                    ),
                ));
            }
            if service.url.expose().trim().is_empty() {
                return Err((
                    at(&format!("services.{name}.url")),
                    "empty URL (is its ${VAR} set?)".into(),
                ));
            }
        }
        for (name, values) in &site.dns {
            if !dns_records.contains(&crate::dns::fqdn(name)) {
                return Err((
                    at(&format!("dns.{name}")),
                    format!(
                        "`{name}` is not in `dns.records`; add it there (zone, type, provider) so lifeboat may move it"
                    ),
                ));
            }
            if values.is_empty() {
                return Err((
                    at(&format!("dns.{name}")),
                    "no values; list the addresses this site serves the name with".into(),
                ));
            }
        }
        let actions = site
            .fence
            .iter()
            .enumerate()
            .map(|(j, a)| (format!("fence[{j}]"), a))
            .chain(
                site.promote
                    .iter()
                    .enumerate()
                    .map(|(j, a)| (format!("promote[{j}]"), a)),
            );
        for (key, action) in actions {
            match (&action.command, &action.kube_scale) {
                (Some(argv), None) if argv.first().is_none_or(|p| p.trim().is_empty()) => {
                    return Err((
                        at(&key),
                        "an empty command; write the program and its arguments, e.g. `command: [\"/usr/local/bin/fence.sh\"]`".into(),
                    ));
                }
                (None, Some(k))
                    if !["deployment", "statefulset"]
                        .contains(&k.kind.to_ascii_lowercase().as_str()) =>
                {
                    return Err((
                        at(&format!("{key}.kube_scale.kind")),
                        format!(
                            "`{}` is not a workload lifeboat scales; write `Deployment` or `StatefulSet`",
                            k.kind
                        ),
                    ));
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err((
                        at(&key),
                        "write exactly one of `command: [PROGRAM, ARGS...]` or `kube_scale: { namespace, kind: Deployment|StatefulSet, name, replicas }`".into(),
                    ));
                }
            }
        }
    }
    // Every site serves the same names, or a switch would leave a name behind.
    if let Some(first) = sites.first() {
        let want: BTreeSet<&String> = first.dns.keys().collect();
        for (i, site) in sites.iter().enumerate().skip(1) {
            let have: BTreeSet<&String> = site.dns.keys().collect();
            if have != want {
                return Err((
                    format!("sites[{i}].dns"),
                    format!(
                        "site `{}` lists the names {} but `{}` lists {}; every site gives its values for the same names",
                        site.name,
                        join(have.iter().map(|s| s.as_str())),
                        first.name,
                        join(want.iter().map(|s| s.as_str())),
                    ),
                ));
            }
        }
    }
    let Some(f) = failover else {
        return Ok(());
    };
    if sites.is_empty() {
        return Err((
            "failover".into(),
            "`failover:` needs `sites:`; list at least the primary and one more site".into(),
        ));
    }
    let known = || join(names.iter().copied());
    if let Some(site) = &f.site
        && !names.contains(site.as_str())
    {
        return Err((
            "failover.site".into(),
            format!("no site is called `{site}`; write one of {}", known()),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, site) in f.order.iter().enumerate() {
        if !names.contains(site.as_str()) {
            return Err((
                format!("failover.order[{i}]"),
                format!("no site is called `{site}`; write one of {}", known()),
            ));
        }
        if !seen.insert(site.as_str()) {
            return Err((
                format!("failover.order[{i}]"),
                format!("`{site}` is listed twice; list each site once"),
            ));
        }
    }
    if f.probe_interval.0.is_zero() {
        return Err((
            "failover.probe_interval".into(),
            "must be more than 0s, e.g. `1s`".into(),
        ));
    }
    if f.fence_after.0.is_zero() {
        return Err((
            "failover.fence_after".into(),
            "must be more than 0s, e.g. `5s` (a cut-off primary demotes itself after it)".into(),
        ));
    }
    if f.unhealthy_after == 0 {
        return Err((
            "failover.unhealthy_after".into(),
            "must be at least 1 (3 is the default)".into(),
        ));
    }
    if let Quorum::Exactly(n) = f.quorum {
        if n == 0 || n > sites.len() {
            return Err((
                "failover.quorum".into(),
                format!(
                    "{n} vantage points cannot be had from {} sites; write `majority` or a number from 1 to {}",
                    sites.len(),
                    sites.len()
                ),
            ));
        }
        if n < Params::majority(sites.len()) {
            tracing::warn!(
                quorum = n,
                sites = sites.len(),
                "failover.quorum is below the majority: fewer vantage points than half can call a site down and fail over (split brain is possible in a partition)"
            );
        }
    }
    let peers = sites.iter().filter(|s| s.peer.is_some()).count();
    if peers > 0
        && f.peer_token
            .as_ref()
            .is_none_or(|t| t.expose().trim().is_empty())
    {
        return Err((
            "failover.peer_token".into(),
            "sites have `peer:` daemons but no token authenticates their observations; set `peer_token: \"${LIFEBOAT_PEER_TOKEN}\"` (the same on every site)".into(),
        ));
    }
    Ok(())
}

fn join<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = it.map(|s| format!("`{s}`")).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    const BASE: &str = r#"
stores:
  local: { url: "file://./lifeboat-data/store" }
encryption:
  recipients: ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
sources:
  - { name: orders-db, kind: postgres, url: "postgres://postgres@127.0.0.1:5432/orders", store: local, objectives: { rpo: 1m, rto: 5m } }
dns:
  providers:
    bind: { kind: rfc2136, server: "127.0.0.1:5353", tsig: { name: lifeboat-key, algorithm: hmac-sha256, secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQ=" } }
  records:
    - { name: api.example.test., zone: example.test., type: A, provider: bind, nameservers: ["127.0.0.1:5353"] }
"#;

    /// The issue's example, the `fence:`/`promote:` placeholders filled in.
    const SITES: &str = r#"
sites:
  - name: primary
    region: us-east-1
    peer: "http://lifeboat.us-east-1.internal:8080"
    services:
      orders-db: { kind: postgres, url: "postgres://lifeboat:${PG_PASSWORD}@orders-db.us-east-1.internal:5432/orders", source: orders-db }
      sessions:  { kind: redis, url: "redis://:${REDIS_PASSWORD}@sessions.us-east-1.internal:6379" }
      web:       { kind: http, url: "https://web.us-east-1.internal/healthz" }
    dns: { "api.example.test.": ["192.0.2.10"] }
    fence:   [ { kube_scale: { namespace: shop, name: web, replicas: 0 } } ]
    promote: [ { command: ["/usr/local/bin/promote-hook"] } ]
  - name: secondary
    region: us-west-2
    peer: "http://lifeboat.us-west-2.internal:8080"
    services:
      orders-db: { kind: postgres, url: "postgres://lifeboat:${PG_PASSWORD}@orders-db.us-west-2.internal:5432/orders", source: orders-db }
    dns: { "api.example.test.": ["192.0.2.20"] }
  - name: dr
    region: eu-west-1
    peer: "http://lifeboat.eu-west-1.internal:8080"
    services:
      orders-db: { kind: postgres, url: "postgres://lifeboat:${PG_PASSWORD}@orders-db.eu-west-1.internal:5432/orders", source: orders-db }
    dns: { "api.example.test.": ["192.0.2.30"] }
failover:
  site: primary
  mode: automatic
  order: [primary, secondary, dr]
  probe_interval: 1s
  unhealthy_after: 3
  quorum: majority
  fence_after: 5s
  min_dwell: 10m
  peer_token: "${LIFEBOAT_PEER_TOKEN}"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| match name {
            "PG_PASSWORD" => Some("pg-s3cret".to_string()),
            "REDIS_PASSWORD" => Some("redis-s3cret".to_string()),
            "LIFEBOAT_PEER_TOKEN" => Some("peer-s3cret".to_string()),
            _ => None,
        };
        Config::parse_with_env(text, Path::new("lifeboat.yaml"), &env)
    }

    fn err(sites: &str) -> String {
        parse(&format!("{BASE}{sites}"))
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn issue_example_loads() {
        let c = parse(&format!("{BASE}{SITES}")).expect("the issue's example loads");
        assert_eq!(c.sites.len(), 3);
        let f = c.failover.as_ref().expect("failover");
        assert_eq!(f.mode, crate::policy::failover::Mode::Automatic);
        assert_eq!(f.quorum(c.sites.len()), 2);
        assert_eq!(f.order(&c.sites), ["primary", "secondary", "dr"]);
        assert_eq!(f.min_dwell.0.as_secs(), 600);
        assert_eq!(f.fence_after.0.as_secs(), 5);
        let p = f.params(&c.sites, None);
        assert_eq!((p.quorum, p.unhealthy_after), (2, 3));
        // Secrets never show in Debug.
        let debug = format!("{c:?}");
        for secret in ["pg-s3cret", "redis-s3cret", "peer-s3cret"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert_eq!(
            c.sites[0].services["orders-db"].source.as_deref(),
            Some("orders-db")
        );
    }

    #[test]
    fn bad_sites_are_rejected_with_the_path() {
        let cases = [
            (
                SITES.replace("order: [primary, secondary, dr]", "order: [primary, moon]"),
                "failover.order[1]: no site is called `moon`",
            ),
            (
                SITES.replace("order: [primary, secondary, dr]", "order: [dr, dr]"),
                "`dr` is listed twice",
            ),
            (
                SITES.replace("name: dr", "name: secondary"),
                "duplicate site name `secondary`",
            ),
            (
                SITES.replace(
                    "source: orders-db }\n      sessions",
                    "source: billing }\n      sessions",
                ),
                "sites[0].services.orders-db.source: no source is called `billing`",
            ),
            (SITES.replace("kind: redis", "kind: mongodb"), "mongodb"),
            (
                SITES.replace("site: primary", "site: mars"),
                "failover.site: no site is called `mars`",
            ),
            (
                SITES.replace("quorum: majority", "quorum: 4"),
                "failover.quorum: 4 vantage points cannot be had from 3 sites",
            ),
            (
                SITES.replace("fence_after: 5s", "fence_after: 0s"),
                "failover.fence_after: must be more than 0s",
            ),
            (
                SITES.replace(
                    "\"api.example.test.\": [\"192.0.2.30\"]",
                    "\"www.example.test.\": [\"192.0.2.30\"]",
                ),
                "sites[2].dns.www.example.test.: `www.example.test.` is not in `dns.records`",
            ),
            (
                SITES.replace("  peer_token: \"${LIFEBOAT_PEER_TOKEN}\"\n", ""),
                "failover.peer_token",
            ),
            (
                SITES.replace(
                    "web:       { kind: http, url: \"https://web.us-east-1.internal/healthz\" }",
                    "web: { kind: http, url: \"https://web/healthz\", source: orders-db }",
                ),
                "probe-only",
            ),
            (
                SITES.replace(
                    "web:       { kind: http, url: \"https://web.us-east-1.internal/healthz\" }",
                    "web: { kind: http, url: \"https://web/healthz\", data_dir: /srv/pg }",
                ),
                "sites[0].services.web.data_dir: only postgres services have a data directory",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "want `{want}` in: {e}");
            for secret in ["pg-s3cret", "redis-s3cret", "peer-s3cret"] {
                assert!(!e.contains(secret), "{secret} leaked: {e}");
            }
        }
    }

    /// `kind: kubernetes` services and `kube_scale` actions: what loads and what is refused.
    #[test]
    fn kubernetes_services_and_kube_scale_actions() {
        const WEB: &str =
            "web:       { kind: http, url: \"https://web.us-east-1.internal/healthz\" }";
        let c = parse(&format!(
            "{BASE}{}",
            SITES.replace(
                WEB,
                "web: { kind: kubernetes, namespace: shop, workload: StatefulSet, name: web, min_ready: 2 }"
            )
        ))
        .expect("a kubernetes service loads");
        let web = &c.sites[0].services["web"];
        assert_eq!(web.kind, super::ServiceKind::Kubernetes);
        assert_eq!(
            (
                web.namespace.as_deref(),
                web.workload.as_deref(),
                web.min_ready
            ),
            (Some("shop"), Some("StatefulSet"), Some(2))
        );
        assert_eq!(
            c.sites[0].fence[0]
                .kube_scale
                .as_ref()
                .map(|k| k.kind.as_str()),
            Some("Deployment")
        );
        let cases = [
            (
                SITES.replace(WEB, "web: { kind: kubernetes, name: web }"),
                "sites[0].services.web.namespace: a kubernetes service needs `namespace:`",
            ),
            (
                SITES.replace(
                    WEB,
                    "web: { kind: kubernetes, namespace: shop, name: web, url: \"http://x\" }",
                ),
                "sites[0].services.web.url: a kubernetes service has no URL",
            ),
            (
                SITES.replace(
                    WEB,
                    "web: { kind: kubernetes, namespace: shop, workload: DaemonSet, name: web }",
                ),
                "sites[0].services.web.workload: `DaemonSet` is not a workload",
            ),
            (
                SITES.replace(
                    WEB,
                    "web: { kind: http, url: \"https://web/healthz\", namespace: shop }",
                ),
                "are for `kind: kubernetes` services",
            ),
            (
                SITES.replace(
                    "kube_scale: { namespace: shop, name: web",
                    "kube_scale: { kind: DaemonSet, namespace: shop, name: web",
                ),
                "sites[0].fence[0].kube_scale.kind: `DaemonSet` is not a workload lifeboat scales",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "want `{want}` in: {e}");
        }
    }

    #[test]
    fn explicit_quorum_of_one_is_accepted() {
        let c = parse(&format!(
            "{BASE}{}",
            SITES.replace("quorum: majority", "quorum: 1")
        ))
        .expect("quorum: 1 is allowed (warned)");
        assert_eq!(c.failover.as_ref().map(|f| f.quorum(3)), Some(1));
    }
}
