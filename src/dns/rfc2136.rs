//! RFC 2136 dynamic updates signed with TSIG (RFC 8945), to any primary that takes them
//! (BIND 9, Knot, PowerDNS with `dnsupdate=yes`).
//!
//! # Guarantees
//! - A change is one UPDATE message: the prerequisite ("the RRset exists with exactly these
//!   values", or "does not exist"), the deletion of the RRset and the new records. The server
//!   applies all of it or nothing, so of two controllers racing from the same expectation
//!   exactly one wins; the other gets NXRRSET (or YXRRSET) and a [`DnsError::Conflict`]
//!   naming what the record holds now.
//! - Every update is TSIG-signed and its reply verified with the same key; an unsigned error
//!   reply (bad secret, unknown key) is an authentication error.
//! - The TSIG secret is held decoded inside the signer only; `Debug` shows the key name.
//!
//! # Caveats
//! - Reads (and the serial after a change) are plain queries to the same server, not signed:
//!   the prerequisite, not the read, is what protects the change.
//! - LUA records are a PowerDNS API feature and are refused here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType as WireType, TSigner};

use super::wire;
use super::{Applied, Change, Desired, DnsError, Expect, Provider, RRset, RecordType, Target};
use crate::model::{Clock, SecretString};

/// The TSIG algorithms lifeboat signs with (config spelling).
pub const ALGORITHMS: &[&str] = &["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// A primary that takes signed RFC 2136 updates.
pub struct Rfc2136 {
    name: String,
    server: SocketAddr,
    key_name: String,
    signer: TSigner,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("key_name", &self.key_name)
            .field("secret", &"***")
            .finish()
    }
}

/// The algorithm named `name` in config spelling.
pub fn algorithm(name: &str) -> Result<TsigAlgorithm, String> {
    match name.to_ascii_lowercase().as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        _ => Err(format!(
            "`{name}` is not a TSIG algorithm lifeboat signs with; write one of {}",
            ALGORITHMS.join(", ")
        )),
    }
}

/// The secret's bytes: the base64 text `tsig-keygen` / `keymgr` print.
pub fn decode_secret(secret: &SecretString) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.expose().trim())
        .map_err(|_| {
            "is not base64; copy the `secret` from the key file `tsig-keygen -a hmac-sha256 NAME` printed"
                .to_string()
        })
}

impl Rfc2136 {
    /// `name`: the provider's config name; `server`: the primary's address.
    pub fn new(
        name: &str,
        server: SocketAddr,
        key_name: &str,
        algorithm_name: &str,
        secret: &SecretString,
        clock: Arc<dyn Clock>,
    ) -> Result<Rfc2136, DnsError> {
        let config = |m: String| DnsError::Config(format!("dns.providers.{name}.tsig: {m}"));
        let alg = algorithm(algorithm_name).map_err(config)?;
        let key = decode_secret(secret).map_err(|m| config(format!("secret {m}")))?;
        let key_name_wire = wire::name(key_name)?;
        let signer = TSigner::new(key, alg, key_name_wire, 300)
            .map_err(|e| config(format!("cannot sign with this key: {e}")))?;
        Ok(Rfc2136 {
            name: name.to_string(),
            server,
            key_name: key_name.to_string(),
            signer,
            clock,
            timeout: Duration::from_secs(5),
        })
    }

    fn wire_type(&self, t: RecordType) -> Result<WireType, DnsError> {
        match t {
            RecordType::A => Ok(WireType::A),
            RecordType::Aaaa => Ok(WireType::AAAA),
            RecordType::Cname => Ok(WireType::CNAME),
            RecordType::Lua => Err(DnsError::Config(format!(
                "provider `{}` (rfc2136) cannot hold LUA records; use a powerdns provider for them",
                self.name
            ))),
        }
    }

    /// Records of `values` for `name` (values already normalized).
    fn records(
        &self,
        target: &Target,
        ttl: u32,
        values: &[String],
    ) -> Result<Vec<Record>, DnsError> {
        let name = wire::name(&target.name)?;
        values
            .iter()
            .map(|v| {
                let bad = |reason: String| DnsError::InvalidValue {
                    value: v.clone(),
                    rtype: target.rtype.to_string(),
                    reason,
                };
                let data = match target.rtype {
                    RecordType::A => RData::A(A(v.parse().map_err(|e| bad(format!("{e}")))?)),
                    RecordType::Aaaa => {
                        RData::AAAA(AAAA(v.parse().map_err(|e| bad(format!("{e}")))?))
                    }
                    RecordType::Cname => RData::CNAME(CNAME(wire::name(v)?)),
                    RecordType::Lua => return Err(bad("LUA needs a powerdns provider".into())),
                };
                Ok(Record::from_rdata(name.clone(), ttl, data))
            })
            .collect()
    }

    /// The zone's SOA serial as the primary has it, or why not (unknown zone).
    async fn serial(&self, zone: &str) -> Result<u32, DnsError> {
        let m = wire::query(self.server, wire::name(zone)?, WireType::SOA, self.timeout).await?;
        let soa = m.answers.iter().find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        });
        match soa {
            Some(s)
                if m.metadata.authoritative
                    && m.metadata.response_code == ResponseCode::NoError =>
            {
                Ok(s)
            }
            _ => Err(DnsError::UnknownZone {
                provider: self.describe(),
                zone: zone.to_string(),
            }),
        }
    }

    /// The UPDATE message of `change`, unsigned.
    fn message(&self, change: &Change) -> Result<Message, DnsError> {
        let target = &change.target;
        let wtype = self.wire_type(target.rtype)?;
        let name = wire::name(&target.name)?;
        let mut msg = Message::query();
        msg.metadata.op_code = OpCode::Update;
        msg.metadata.recursion_desired = false;
        let mut zone = Query::new();
        zone.set_name(wire::name(&target.zone)?)
            .set_query_class(DNSClass::IN)
            .set_query_type(WireType::SOA);
        msg.add_zone(zone);
        match &change.expect {
            Expect::Anything => {}
            // RFC 2136 2.4.2, value-dependent: the RRset holds exactly these RRs (TTL 0).
            Expect::Values(values) => {
                msg.add_pre_requisites(self.records(target, 0, values)?);
            }
            // 2.4.3: the RRset does not exist (class NONE, no rdata).
            Expect::Absent => {
                let mut r = Record::update0(name.clone(), 0, wtype);
                r.dns_class = DNSClass::NONE;
                msg.add_pre_requisite(r);
            }
        }
        // 2.5.2: delete the whole RRset (class ANY, no rdata), then add the new one.
        let mut delete = Record::update0(name, 0, wtype);
        delete.dns_class = DNSClass::ANY;
        msg.add_update(delete);
        if let Desired::Present(rrset) = &change.desired {
            msg.add_updates(self.records(target, rrset.ttl, &rrset.values)?);
        }
        Ok(msg)
    }
}

#[async_trait::async_trait]
impl Provider for Rfc2136 {
    fn describe(&self) -> String {
        format!("{} (rfc2136 at {})", self.name, self.server)
    }

    fn dns_server(&self) -> Option<SocketAddr> {
        Some(self.server)
    }

    #[tracing::instrument(skip_all, fields(provider = %self.name, name = %target.name))]
    async fn read(&self, target: &Target) -> Result<Option<RRset>, DnsError> {
        let wtype = self.wire_type(target.rtype)?;
        self.serial(&target.zone).await?;
        let name = wire::name(&target.name)?;
        let m = wire::query(self.server, name.clone(), wtype, self.timeout).await?;
        match m.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {
                Ok(super::verify::rrset_of(&m, &name, wtype))
            }
            rcode => Err(DnsError::Unreachable {
                server: self.server.to_string(),
                detail: format!(
                    "reading {} {} answered {}",
                    target.name,
                    target.rtype,
                    wire::rcode_name(rcode)
                ),
            }),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = %self.name, name = %change.target.name, rtype = %change.target.rtype))]
    async fn apply(&self, change: &Change) -> Result<Applied, DnsError> {
        let msg = self.message(change)?;
        let now = self.clock.now().timestamp().max(0) as u64;
        let reply = wire::signed(
            &self.describe(),
            self.server,
            msg,
            &self.signer,
            now,
            self.timeout,
        )
        .await?;
        match reply.metadata.response_code {
            ResponseCode::NoError => {
                let serial = self.serial(&change.target.zone).await?;
                tracing::info!(serial, "update applied");
                Ok(Applied {
                    serial: Some(serial),
                })
            }
            ResponseCode::NXRRSet | ResponseCode::YXRRSet => {
                let held = self.read(&change.target).await?;
                Err(super::conflict(self, change, held.as_ref()))
            }
            ResponseCode::NotZone => Err(DnsError::OutsideZone {
                name: change.target.name.clone(),
                zone: change.target.zone.clone(),
            }),
            ResponseCode::NotAuth => Err(DnsError::UnknownZone {
                provider: self.describe(),
                zone: change.target.zone.clone(),
            }),
            ResponseCode::Refused => Err(DnsError::Rejected {
                provider: self.describe(),
                detail: format!(
                    "REFUSED: the server's update policy does not let key `{}` change {} {}; grant it (BIND: update-policy {{ grant {} zonesub ANY; }}, Knot: an acl with action: update)",
                    self.key_name, change.target.name, change.target.rtype, self.key_name
                ),
            }),
            rcode => Err(DnsError::Rejected {
                provider: self.describe(),
                detail: format!("the server answered {}", wire::rcode_name(rcode)),
            }),
        }
    }
}
