//! Proof that a change is served: what each authoritative nameserver answers right now
//! ([`observe`]), and polling them all until they agree on the new RRset ([`verify`]).
//!
//! # Guarantees
//! - Each nameserver is asked itself, RD=0, UDP with TCP fallback ([`super::wire`]): no
//!   resolver and no cache can hide an old answer.
//! - [`verify`] succeeds only in a round where every nameserver answers with the AA flag,
//!   exactly the desired RRset (values and TTL; NXDOMAIN or NODATA for a deletion), and, when
//!   a minimum serial is given, a SOA serial at least that (RFC 1982 order).
//! - On timeout the error names each nameserver that still disagrees and what it answers.
//!
//! # Caveats
//! - LUA records are computed per query: for them agreement means an authoritative, non-empty
//!   answer of the LUA record's type and the serial, not particular values.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType as WireType};
use serde::Serialize;

use super::wire::{self, Subnet};
use super::{Desired, Disagreement, DnsError, RRset, RecordType, Target};

/// How to verify: which nameservers, how long in all, how often.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub nameservers: Vec<SocketAddr>,
    /// Give up (with [`DnsError::NotAgreed`]) after this long.
    pub timeout: Duration,
    /// Pause between rounds.
    pub poll: Duration,
    /// How long one query may take before that nameserver counts as not answering.
    pub query_timeout: Duration,
    /// Ask on behalf of clients in this subnet (EDNS Client Subnet): GeoDNS answers.
    pub client_subnet: Option<Subnet>,
}

impl VerifyOptions {
    pub fn new(nameservers: Vec<SocketAddr>, timeout: Duration) -> VerifyOptions {
        VerifyOptions {
            nameservers,
            timeout,
            poll: Duration::from_millis(100),
            query_timeout: Duration::from_secs(1),
            client_subnet: None,
        }
    }
}

/// What one nameserver answered for one RRset (and its zone's SOA).
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub nameserver: SocketAddr,
    /// `NOERROR`, `NXDOMAIN`, ...; `None` when it did not answer.
    pub rcode: Option<String>,
    /// The AA flag: the server answers from its own copy of the zone.
    pub authoritative: bool,
    /// The records of the name and type (`None`: none).
    pub rrset: Option<RRset>,
    /// The zone's SOA serial as this server has it.
    pub serial: Option<u32>,
    /// Why there is no answer (timeout, refused connection, undecodable reply).
    pub error: Option<String>,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.error {
            return write!(f, "nothing ({e})");
        }
        match &self.rrset {
            Some(r) => write!(f, "{r}")?,
            None => f.write_str("no records")?,
        }
        write!(
            f,
            " [{}{}",
            self.rcode.as_deref().unwrap_or("?"),
            if self.authoritative {
                ", AA"
            } else {
                ", not authoritative"
            }
        )?;
        match self.serial {
            Some(s) => write!(f, ", serial {s}]"),
            None => f.write_str("]"),
        }
    }
}

/// The wire type asked for `target`: for a LUA record, the type its content answers with.
fn wire_type(target: &Target, desired: Option<&Desired>) -> WireType {
    match target.rtype {
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
        RecordType::Cname => WireType::CNAME,
        RecordType::Lua => match desired {
            Some(Desired::Present(r)) => r
                .values
                .first()
                .and_then(|v| v.split_whitespace().next())
                .and_then(|t| t.parse::<WireType>().ok())
                .unwrap_or(WireType::A),
            _ => WireType::A,
        },
    }
}

/// What each of `nameservers` answers for `target` now (for clients in `subnet`, when given),
/// asked concurrently.
pub async fn observe(
    nameservers: &[SocketAddr],
    target: &Target,
    desired: Option<&Desired>,
    query_timeout: Duration,
    subnet: Option<Subnet>,
) -> Vec<Answer> {
    let wtype = wire_type(target, desired);
    futures::future::join_all(
        nameservers
            .iter()
            .map(|ns| observe_one(*ns, target, wtype, query_timeout, subnet)),
    )
    .await
}

async fn observe_one(
    ns: SocketAddr,
    target: &Target,
    wtype: WireType,
    query_timeout: Duration,
    subnet: Option<Subnet>,
) -> Answer {
    let mut answer = Answer {
        nameserver: ns,
        rcode: None,
        authoritative: false,
        rrset: None,
        serial: None,
        error: None,
    };
    let (name, zone) = match (wire::name(&target.name), wire::name(&target.zone)) {
        (Ok(n), Ok(z)) => (n, z),
        (Err(e), _) | (_, Err(e)) => {
            answer.error = Some(e.to_string());
            return answer;
        }
    };
    let (records, soa) = tokio::join!(
        wire::query_from(ns, name.clone(), wtype, query_timeout, subnet),
        wire::query(ns, zone.clone(), WireType::SOA, query_timeout)
    );
    match records {
        Ok(m) => {
            answer.rcode = Some(wire::rcode_name(m.metadata.response_code));
            answer.authoritative = m.metadata.authoritative;
            answer.rrset = rrset_of(&m, &name, wtype);
        }
        Err(e) => {
            answer.error = Some(e.to_string());
            return answer;
        }
    }
    if let Ok(m) = soa
        && m.metadata.response_code == ResponseCode::NoError
    {
        answer.serial = m.answers.iter().find_map(|r| match &r.data {
            RData::SOA(soa) if r.name == zone => Some(soa.serial),
            _ => None,
        });
    }
    answer
}

/// The records of `name`/`wtype` in a reply's answer section, as an [`RRset`].
pub(crate) fn rrset_of(
    m: &Message,
    name: &hickory_proto::rr::Name,
    wtype: WireType,
) -> Option<RRset> {
    let mut ttl = u32::MAX;
    let mut values: Vec<String> = m
        .answers
        .iter()
        .filter(|r| &r.name == name && r.record_type() == wtype)
        .map(|r| {
            ttl = ttl.min(r.ttl);
            match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                RData::CNAME(c) => super::fqdn(&c.0.to_ascii()),
                other => other.to_string(),
            }
        })
        .collect();
    values.sort();
    values.dedup();
    (!values.is_empty()).then_some(RRset { ttl, values })
}

/// `a >= b` in serial-number arithmetic (RFC 1982): a serial may wrap around.
pub fn serial_at_least(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Whether `answer` is the agreement wanted, or what is wrong with it.
pub fn agrees(
    answer: &Answer,
    target: &Target,
    desired: &Desired,
    min_serial: Option<u32>,
) -> Result<(), String> {
    if answer.error.is_some() {
        return Err(answer.to_string());
    }
    if !answer.authoritative {
        return Err(format!(
            "{answer}: not authoritative for the zone (AA flag unset)"
        ));
    }
    let rcode = answer.rcode.as_deref().unwrap_or("");
    let values_ok = match desired {
        Desired::Present(_) if target.rtype == RecordType::Lua => {
            rcode == "NOERROR" && answer.rrset.is_some()
        }
        Desired::Present(want) => rcode == "NOERROR" && answer.rrset.as_ref() == Some(want),
        Desired::Absent => (rcode == "NOERROR" || rcode == "NXDOMAIN") && answer.rrset.is_none(),
    };
    if !values_ok {
        return Err(answer.to_string());
    }
    if let Some(min) = min_serial {
        match answer.serial {
            Some(s) if serial_at_least(s, min) => {}
            Some(s) => return Err(format!("{answer}: serial {s} is older than {min}")),
            None => return Err(format!("{answer}: no SOA serial (want at least {min})")),
        }
    }
    Ok(())
}

/// One nameserver in an [`Agreement`].
#[derive(Debug, Clone, Serialize)]
pub struct Agreed {
    /// Since the start of verification, the first round this nameserver answered as wanted.
    pub agreed_after_ms: u128,
    pub answer: Answer,
}

/// Every nameserver answered the desired RRset in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    pub rounds: u32,
    pub nameservers: Vec<Agreed>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// Polls every nameserver of `options` until all answer `desired` (see the module doc).
#[tracing::instrument(skip_all, fields(name = %target.name, rtype = %target.rtype, nameservers = options.nameservers.len()))]
pub async fn verify(
    target: &Target,
    desired: &Desired,
    min_serial: Option<u32>,
    options: &VerifyOptions,
) -> Result<Agreement, DnsError> {
    if options.nameservers.is_empty() {
        return Err(DnsError::Config(format!(
            "no nameservers to verify {} against; list the zone's authoritative servers in the record's `nameservers:`",
            target.name
        )));
    }
    let start = Instant::now();
    let mut first: BTreeMap<SocketAddr, Duration> = BTreeMap::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let answers = observe(
            &options.nameservers,
            target,
            Some(desired),
            options.query_timeout,
            options.client_subnet,
        )
        .await;
        let now = start.elapsed();
        let mut disagreeing = Vec::new();
        for a in &answers {
            match agrees(a, target, desired, min_serial) {
                Ok(()) => {
                    first.entry(a.nameserver).or_insert(now);
                }
                Err(why) => disagreeing.push(Disagreement {
                    nameserver: a.nameserver,
                    answered: why,
                }),
            }
        }
        if disagreeing.is_empty() {
            return Ok(Agreement {
                elapsed: now,
                rounds,
                nameservers: answers
                    .into_iter()
                    .map(|answer| Agreed {
                        agreed_after_ms: first
                            .get(&answer.nameserver)
                            .copied()
                            .unwrap_or(now)
                            .as_millis(),
                        answer,
                    })
                    .collect(),
            });
        }
        if start.elapsed() + options.poll >= options.timeout {
            tracing::warn!(
                disagreeing = disagreeing.len(),
                "nameservers still disagree at the timeout"
            );
            return Err(DnsError::NotAgreed {
                name: target.name.clone(),
                rtype: target.rtype.to_string(),
                timeout: options.timeout,
                total: options.nameservers.len(),
                disagreeing,
            });
        }
        tokio::time::sleep(options.poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rrset: Option<RRset>, aa: bool, rcode: &str, serial: Option<u32>) -> Answer {
        Answer {
            nameserver: "127.0.0.1:53".parse().unwrap(),
            rcode: Some(rcode.into()),
            authoritative: aa,
            rrset,
            serial,
            error: None,
        }
    }

    #[test]
    fn agreement_needs_aa_exact_rrset_and_serial() {
        let t = Target::new("api.example.test.", "example.test.", RecordType::A).unwrap();
        let want = RRset::new(RecordType::A, 30, &["192.0.2.1".into()]).unwrap();
        let d = Desired::Present(want.clone());
        assert!(
            agrees(
                &answer(Some(want.clone()), true, "NOERROR", Some(5)),
                &t,
                &d,
                Some(5)
            )
            .is_ok()
        );
        assert!(
            agrees(
                &answer(Some(want.clone()), false, "NOERROR", Some(5)),
                &t,
                &d,
                Some(5)
            )
            .is_err()
        );
        assert!(
            agrees(
                &answer(Some(want.clone()), true, "NOERROR", Some(4)),
                &t,
                &d,
                Some(5)
            )
            .is_err()
        );
        assert!(
            agrees(
                &answer(Some(want.clone()), true, "NOERROR", None),
                &t,
                &d,
                Some(5)
            )
            .is_err()
        );
        assert!(
            agrees(
                &answer(Some(want.clone()), true, "NOERROR", None),
                &t,
                &d,
                None
            )
            .is_ok()
        );
        let mut other_ttl = want.clone();
        other_ttl.ttl = 300;
        assert!(
            agrees(
                &answer(Some(other_ttl), true, "NOERROR", None),
                &t,
                &d,
                None
            )
            .is_err()
        );
        assert!(
            agrees(
                &answer(None, true, "NXDOMAIN", None),
                &t,
                &Desired::Absent,
                None
            )
            .is_ok()
        );
        assert!(
            agrees(
                &answer(Some(want), true, "NOERROR", None),
                &t,
                &Desired::Absent,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn serials_wrap() {
        assert!(serial_at_least(5, 5));
        assert!(serial_at_least(6, 5));
        assert!(!serial_at_least(4, 5));
        assert!(serial_at_least(1, u32::MAX));
    }
}
