//! Moving traffic: a DNS record is changed only if it still holds what lifeboat expects
//! (compare-and-swap), then the change is proven by asking every authoritative nameserver
//! directly, and the time that took is measured (it is part of a failover's RTO).
//!
//! # Layout
//! - this file: the vocabulary ([`Target`], [`RRset`], [`Expect`], [`Desired`], [`Change`]),
//!   the [`Provider`] trait, and the library API the CLI and the failover controller call:
//!   [`plan`] → [`apply`] → [`verify::verify`]; [`switch`] does the three in order.
//! - [`error`]: [`DnsError`], each message saying what to do, each variant with its
//!   [`ErrorKind`](crate::model::ErrorKind).
//! - [`wire`]: one exchange with one server (UDP, TCP on truncation, RD=0, TSIG, EDNS Client
//!   Subnet for GeoDNS answers).
//! - [`verify`]: what each nameserver answers, and polling them until they all agree.
//! - [`nameservers`]: a record's default nameservers, the zone's NS.
//! - [`rfc2136`], [`powerdns`], [`route53`], [`cloudflare`]: the providers, one file each.
//! - [`routing`]: the rules of Route53 routing policies (failover, weighted, geolocation), as
//!   pure functions.
//! - [`config`]: the `dns:` config section, and [`config::build`] for a running provider.
//!
//! # Guarantees
//! - With an expectation ([`Expect::Values`] / [`Expect::Absent`]) a change is applied only if
//!   the provider holds exactly the expected RRset (values, not TTL). RFC 2136 (one UPDATE with
//!   a prerequisite), Route53 (one batch deleting exactly what was read) and Cloudflare (one
//!   batch deleting the read record ids) make this atomic: two racing controllers cannot both
//!   win. The PowerDNS API cannot (read, compare, then PATCH; see [`powerdns`]).
//! - Verification asks each configured nameserver itself (RD=0, no resolver, no cache) and
//!   succeeds only when all of them answer, in one round, exactly the new RRset with the AA
//!   flag and (where the provider reports one) a SOA serial at least the new one.
//! - Secrets (TSIG secrets, API keys) never reach `Debug`, `Display`, errors or logs.
//!
//! # Caveats
//! - `Debug` of [`crate::model::SecretString`] shows non-URL values as they are; the types here
//!   print their secrets as `***` themselves.
//! - Agreement of the authoritative servers is not agreement of the world's resolvers: they
//!   may keep the old answer for its TTL (and an NXDOMAIN for the SOA minimum).

pub mod cloudflare;
pub mod config;
pub mod error;
pub mod nameservers;
pub mod powerdns;
pub mod rfc2136;
pub mod route53;
pub mod routing;
pub mod verify;
pub mod wire;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use config::{DnsConfig, ProviderConfig, RecordConfig};
pub use error::{Disagreement, DnsError};
pub use verify::{Agreement, Answer, VerifyOptions};

/// Record types lifeboat moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
    /// PowerDNS LUA records (GeoDNS); the content is `TYPE "lua snippet"`.
    #[serde(rename = "LUA")]
    Lua,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Lua => "LUA",
        }
    }

    /// `value` in the one spelling lifeboat compares (addresses canonical, names lowercase
    /// and absolute), or why it is not a value of this type.
    pub fn normalize(self, value: &str) -> Result<String, DnsError> {
        let invalid = |reason: &str| DnsError::InvalidValue {
            value: value.to_string(),
            rtype: self.as_str().to_string(),
            reason: reason.to_string(),
        };
        let v = value.trim();
        match self {
            RecordType::A => v
                .parse::<Ipv4Addr>()
                .map(|a| a.to_string())
                .map_err(|_| invalid("write an IPv4 address such as 192.0.2.10")),
            RecordType::Aaaa => v
                .parse::<Ipv6Addr>()
                .map(|a| a.to_string())
                .map_err(|_| invalid("write an IPv6 address such as 2001:db8::10")),
            RecordType::Cname => {
                let name = fqdn(v);
                hickory_proto::rr::Name::from_ascii(&name)
                    .map(|_| name)
                    .map_err(|e| {
                        invalid(&format!("{e}; write a host name such as www.example.test."))
                    })
            }
            RecordType::Lua => {
                if v.split_once(' ').is_some_and(|(t, rest)| {
                    t.chars().all(|c| c.is_ascii_uppercase()) && !rest.trim().is_empty()
                }) {
                    Ok(v.to_string())
                } else {
                    Err(invalid(
                        "write the answered type then the snippet, e.g. A \"pickclosest({'192.0.2.10','198.51.100.20'})\"",
                    ))
                }
            }
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `name` lowercase and absolute (with its trailing dot).
pub fn fqdn(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

/// Which RRset: a name, its zone, a type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub name: String,
    pub zone: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
}

impl Target {
    /// Names made absolute and lowercase; fails if `name` is not inside `zone`.
    pub fn new(name: &str, zone: &str, rtype: RecordType) -> Result<Target, DnsError> {
        let (name, zone) = (fqdn(name), fqdn(zone));
        if !in_zone(&name, &zone) {
            return Err(DnsError::OutsideZone { name, zone });
        }
        Ok(Target { name, zone, rtype })
    }
}

/// Whether absolute `name` is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    zone == "." || name == zone || name.ends_with(&format!(".{zone}"))
}

/// The records of one name and type: a TTL and values, kept sorted and without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RRset {
    pub ttl: u32,
    pub values: Vec<String>,
}

impl RRset {
    /// Values normalized for `rtype` (see [`RecordType::normalize`]), sorted, deduplicated.
    pub fn new(rtype: RecordType, ttl: u32, values: &[String]) -> Result<RRset, DnsError> {
        let mut values = values
            .iter()
            .map(|v| rtype.normalize(v))
            .collect::<Result<Vec<_>, _>>()?;
        values.sort();
        values.dedup();
        if values.is_empty() {
            return Err(DnsError::InvalidValue {
                value: String::new(),
                rtype: rtype.as_str().into(),
                reason: "an RRset needs at least one value (to remove the record, delete it)"
                    .into(),
            });
        }
        if rtype == RecordType::Cname && values.len() > 1 {
            return Err(DnsError::InvalidValue {
                value: values.join(" "),
                rtype: "CNAME".into(),
                reason: "a name has at most one CNAME".into(),
            });
        }
        Ok(RRset { ttl, values })
    }
}

impl fmt::Display for RRset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (ttl {})", self.values.join(", "), self.ttl)
    }
}

/// What the caller believes the provider holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "expect", content = "values")]
pub enum Expect {
    /// No expectation: replace whatever is there.
    Anything,
    /// The RRset must not exist.
    Absent,
    /// The RRset must hold exactly these values (normalized, sorted; TTL not compared).
    Values(Vec<String>),
}

impl Expect {
    /// `values` normalized for `rtype`.
    pub fn values(rtype: RecordType, values: &[String]) -> Result<Expect, DnsError> {
        let mut v = values
            .iter()
            .map(|v| rtype.normalize(v))
            .collect::<Result<Vec<_>, _>>()?;
        v.sort();
        v.dedup();
        Ok(Expect::Values(v))
    }

    /// Whether `current` is what is expected.
    pub fn holds(&self, current: Option<&RRset>) -> bool {
        match (self, current) {
            (Expect::Anything, _) => true,
            (Expect::Absent, None) => true,
            (Expect::Absent, Some(_)) => false,
            (Expect::Values(v), Some(c)) => &c.values == v,
            (Expect::Values(_), None) => false,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Anything => f.write_str("anything"),
            Expect::Absent => f.write_str("nothing (no such record)"),
            Expect::Values(v) => f.write_str(&v.join(", ")),
        }
    }
}

/// What the RRset should become.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Present(RRset),
    Absent,
}

impl fmt::Display for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Desired::Present(r) => r.fmt(f),
            Desired::Absent => f.write_str("nothing (deleted)"),
        }
    }
}

/// One change of one RRset.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub target: Target,
    pub expect: Expect,
    pub desired: Desired,
}

/// What a provider did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// The zone's SOA serial after the change, where the provider has one: verification then
    /// also waits for every nameserver to serve at least this serial.
    pub serial: Option<u32>,
}

/// A place records are changed: a DNS primary taking RFC 2136 updates, an HTTP API.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider's config name and where it is, for messages (`bind (rfc2136 at 127.0.0.1:5353)`).
    fn describe(&self) -> String;

    /// The provider's own DNS server, where it has one (an RFC 2136 primary): asked for the
    /// zone's NS when a record lists no nameservers.
    fn dns_server(&self) -> Option<SocketAddr> {
        None
    }

    /// What the provider holds now for `target` (`None`: no such RRset).
    async fn read(&self, target: &Target) -> Result<Option<RRset>, DnsError>;

    /// Applies `change` if the provider holds what `change.expect` says, else fails with
    /// [`DnsError::Conflict`] naming what it holds, changing nothing.
    async fn apply(&self, change: &Change) -> Result<Applied, DnsError>;
}

/// What [`plan`] found and will do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub change: Change,
    /// What the provider held when planned.
    pub current: Option<RRset>,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Replace,
    Delete,
    /// The provider already holds the desired RRset: nothing to send (still verified).
    Nothing,
}

/// The conflict error for `change` when the provider holds `held`.
pub fn conflict(provider: &dyn Provider, change: &Change, held: Option<&RRset>) -> DnsError {
    DnsError::Conflict {
        provider: provider.describe(),
        name: change.target.name.clone(),
        rtype: change.target.rtype.to_string(),
        expected: change.expect.to_string(),
        held: held.map_or_else(
            || "nothing (no such record)".to_string(),
            |r| r.values.join(", "),
        ),
    }
}

/// Reads what the provider holds and decides what `change` does; fails with
/// [`DnsError::Conflict`] already here if the expectation does not hold.
#[tracing::instrument(skip_all, fields(name = %change.target.name, rtype = %change.target.rtype, provider = %provider.describe()))]
pub async fn plan(provider: &dyn Provider, change: Change) -> Result<Plan, DnsError> {
    let current = provider.read(&change.target).await?;
    if !change.expect.holds(current.as_ref()) {
        return Err(conflict(provider, &change, current.as_ref()));
    }
    let action = match (&current, &change.desired) {
        (None, Desired::Absent) => Action::Nothing,
        (Some(_), Desired::Absent) => Action::Delete,
        (None, Desired::Present(_)) => Action::Create,
        (Some(c), Desired::Present(d)) if c == d => Action::Nothing,
        (Some(_), Desired::Present(_)) => Action::Replace,
    };
    Ok(Plan {
        change,
        current,
        action,
    })
}

/// Applies a plan; the provider checks the expectation again (atomically where it can).
#[tracing::instrument(skip_all, fields(name = %plan.change.target.name, action = ?plan.action))]
pub async fn apply(provider: &dyn Provider, plan: &Plan) -> Result<Applied, DnsError> {
    if plan.action == Action::Nothing {
        return Ok(Applied::default());
    }
    provider.apply(&plan.change).await
}

/// A switch done and proven: what was planned, applied, and when every nameserver agreed.
#[derive(Debug, Clone, Serialize)]
pub struct Switched {
    pub plan: Plan,
    pub applied: Applied,
    pub timings: Timings,
    pub agreement: Agreement,
}

/// Milliseconds each step took.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timings {
    pub plan_ms: u128,
    pub apply_ms: u128,
    /// From the end of apply to the round in which every nameserver agreed.
    pub agreement_ms: u128,
    pub total_ms: u128,
}

/// plan → apply → verify: the whole switch, as `lifeboat dns set` and the failover
/// controller do it.
#[tracing::instrument(skip_all, fields(name = %change.target.name, rtype = %change.target.rtype))]
pub async fn switch(
    provider: &dyn Provider,
    change: Change,
    verify_options: &VerifyOptions,
) -> Result<Switched, DnsError> {
    let start = Instant::now();
    let plan = plan(provider, change).await?;
    let planned = start.elapsed();
    let applied = apply(provider, &plan).await?;
    let applied_at = start.elapsed();
    let agreement = verify::verify(
        &plan.change.target,
        &plan.change.desired,
        applied.serial,
        verify_options,
    )
    .await?;
    let total = start.elapsed();
    tracing::info!(
        agreement_ms = agreement.elapsed.as_millis() as u64,
        "every nameserver answers the new RRset"
    );
    Ok(Switched {
        timings: Timings {
            plan_ms: planned.as_millis(),
            apply_ms: (applied_at - planned).as_millis(),
            agreement_ms: agreement.elapsed.as_millis(),
            total_ms: total.as_millis(),
        },
        plan,
        applied,
        agreement,
    })
}

/// Parses `host:port` (or `host`, port 53) of a nameserver given by address.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "`{s}` is not an address; write IP:PORT, e.g. 127.0.0.1:5353 or [2001:db8::53]:53"
    ))
}

/// The default time a verification may take.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_normalized_sorted_and_unique() {
        let r = RRset::new(
            RecordType::A,
            30,
            &[
                "198.51.100.2".into(),
                " 192.0.2.1".into(),
                "198.51.100.2".into(),
            ],
        )
        .unwrap();
        assert_eq!(r.values, vec!["192.0.2.1", "198.51.100.2"]);
        assert!(RRset::new(RecordType::A, 30, &["2001:db8::1".into()]).is_err());
        let c = RRset::new(RecordType::Cname, 30, &["WWW.Example.test".into()]).unwrap();
        assert_eq!(c.values, vec!["www.example.test."]);
        assert!(RRset::new(RecordType::Cname, 30, &["a.test.".into(), "b.test.".into()]).is_err());
    }

    #[test]
    fn names_must_be_inside_their_zone() {
        assert!(Target::new("api.example.test", "example.test.", RecordType::A).is_ok());
        assert!(Target::new("example.test.", "example.test.", RecordType::A).is_ok());
        let e = Target::new("api.otherexample.test.", "example.test.", RecordType::A).unwrap_err();
        assert!(matches!(e, DnsError::OutsideZone { .. }), "{e}");
        assert_eq!(e.kind(), crate::model::ErrorKind::Config);
    }

    #[test]
    fn expectations() {
        let r = RRset::new(RecordType::A, 30, &["192.0.2.1".into()]).unwrap();
        assert!(Expect::Anything.holds(None));
        assert!(Expect::Absent.holds(None));
        assert!(!Expect::Absent.holds(Some(&r)));
        let e = Expect::values(RecordType::A, &["192.0.2.1".into()]).unwrap();
        assert!(e.holds(Some(&r)));
        assert!(!e.holds(None));
        let other = Expect::values(RecordType::A, &["192.0.2.2".into()]).unwrap();
        assert!(!other.holds(Some(&r)));
    }
}
