//! The default nameservers of a record that lists none: the zone's NS records, each name
//! resolved to its addresses, port 53.
//!
//! # Guarantees
//! - Asked of the provider's own DNS server when it has one (the RFC 2136 primary: it holds
//!   the zone's NS and glue), else of the first `nameserver` of `/etc/resolv.conf` (RD=1:
//!   this one question may go through a resolver; the verification itself never does).
//! - An NS name that resolves to nothing is an error naming it, not a silently shorter list.
//!
//! # Caveats
//! - Discovered servers are assumed on port 53; list `nameservers:` for anything else.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType as WireType};

use super::{DnsError, wire};

const TIMEOUT: Duration = Duration::from_secs(2);

/// The first `nameserver` of resolv.conf-formatted `text`, port 53.
pub fn resolv_conf_server(text: &str) -> Option<SocketAddr> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
}

async fn ask(
    server: SocketAddr,
    name: &str,
    rtype: WireType,
    recursive: bool,
) -> Result<Message, DnsError> {
    if !recursive {
        return wire::query(server, wire::name(name)?, rtype, TIMEOUT).await;
    }
    // The one place a resolver is asked: RD=1.
    let mut q = wire::question(wire::name(name)?, rtype, None);
    q.metadata.recursion_desired = true;
    wire::exchange(server, q, TIMEOUT).await
}

/// The zone's nameservers (see the module doc); `via` is the provider's DNS server, if any.
#[tracing::instrument]
pub async fn discover(zone: &str, via: Option<SocketAddr>) -> Result<Vec<SocketAddr>, DnsError> {
    let (server, recursive) = match via {
        Some(s) => (s, false),
        None => {
            let text = tokio::fs::read_to_string("/etc/resolv.conf").await.map_err(|e| {
                DnsError::Config(format!(
                    "cannot read /etc/resolv.conf to find the NS of {zone} ({e}); list the record's nameservers"
                ))
            })?;
            let s = resolv_conf_server(&text).ok_or_else(|| {
                DnsError::Config(format!(
                    "/etc/resolv.conf names no nameserver to find the NS of {zone}; list the record's nameservers"
                ))
            })?;
            (s, true)
        }
    };
    let ns = ask(server, zone, WireType::NS, recursive).await?;
    if ns.metadata.response_code != ResponseCode::NoError {
        return Err(DnsError::Config(format!(
            "{server} answered {} for the NS of {zone}; list the record's nameservers",
            wire::rcode_name(ns.metadata.response_code)
        )));
    }
    let names: Vec<String> = ns
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(super::fqdn(&n.0.to_ascii())),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Err(DnsError::Config(format!(
            "{server} lists no NS for {zone}; list the record's nameservers"
        )));
    }
    let mut out = Vec::new();
    for name in names {
        // Glue in the NS reply first, then A and AAAA questions.
        let mut addrs: Vec<IpAddr> = ns
            .additionals
            .iter()
            .filter(|r| super::fqdn(&r.name.to_ascii()) == name)
            .filter_map(|r| r.data.ip_addr())
            .collect();
        if addrs.is_empty() {
            for t in [WireType::A, WireType::AAAA] {
                if let Ok(m) = ask(server, &name, t, recursive).await {
                    addrs.extend(m.answers.iter().filter_map(|r| r.data.ip_addr()));
                }
            }
        }
        if addrs.is_empty() {
            return Err(DnsError::Config(format!(
                "NS {name} of {zone} has no address (asked {server}); list the record's nameservers"
            )));
        }
        out.extend(addrs.into_iter().map(|ip| SocketAddr::new(ip, 53)));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text = "# generated\nsearch example.test\nnameserver 192.0.2.53 # first\nnameserver 2001:db8::53\n";
        assert_eq!(
            resolv_conf_server(text),
            Some("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(resolv_conf_server("search x\n"), None);
    }
}
