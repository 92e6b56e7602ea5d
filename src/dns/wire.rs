//! One DNS exchange with one server, nothing in between: a query with RD=0 over UDP, repeated
//! over TCP when the reply is truncated (TC); a TSIG-signed message over TCP whose reply is
//! verified with the same key.
//!
//! # Guarantees
//! - No resolver and no cache: every call opens its own socket to the given server.
//! - A signed exchange returns a reply only if its TSIG verifies; an unsigned error reply
//!   (what servers send for a bad or unknown key) is an authentication error, never accepted.
//!
//! # Caveats
//! - Replies are matched by message id and source; one attempt per call, the caller polls.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RecordType as WireType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::DnsError;

fn unreachable(server: SocketAddr, detail: impl std::fmt::Display) -> DnsError {
    DnsError::Unreachable {
        server: server.to_string(),
        detail: detail.to_string(),
    }
}

fn bad_reply(server: SocketAddr, detail: impl std::fmt::Display) -> DnsError {
    DnsError::BadReply {
        server: server.to_string(),
        detail: detail.to_string(),
    }
}

/// `name` as a wire name.
pub fn name(s: &str) -> Result<Name, DnsError> {
    Name::from_ascii(super::fqdn(s)).map_err(|e| DnsError::InvalidValue {
        value: s.to_string(),
        rtype: "name".into(),
        reason: e.to_string(),
    })
}

/// A client subnet sent as EDNS Client Subnet (RFC 7871): whom a GeoDNS server answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Subnet {
    pub address: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("`{s}` is not a subnet; write ADDRESS/PREFIX, e.g. 203.0.113.0/24");
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let address: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse().map_err(|_| bad())?
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Subnet { address, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// A query for `name`/`rtype` with RD=0 and EDNS (1232 bytes), as an authoritative check
/// sends; with `subnet`, as asked on behalf of a client there.
pub fn question(name: Name, rtype: WireType, subnet: Option<Subnet>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = false;
    m.metadata.op_code = OpCode::Query;
    m.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232).set_version(0);
    if let Some(s) = subnet {
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(
                s.address, s.prefix, 0,
            )));
    }
    m.set_edns(edns);
    m
}

/// Asks `server` for `name`/`rtype` directly: UDP, then TCP if the reply is truncated.
pub async fn query(
    server: SocketAddr,
    name: Name,
    rtype: WireType,
    timeout: Duration,
) -> Result<Message, DnsError> {
    query_from(server, name, rtype, timeout, None).await
}

/// [`query`] on behalf of a client in `subnet` (EDNS Client Subnet), for GeoDNS answers.
pub async fn query_from(
    server: SocketAddr,
    name: Name,
    rtype: WireType,
    timeout: Duration,
    subnet: Option<Subnet>,
) -> Result<Message, DnsError> {
    exchange(server, question(name, rtype, subnet), timeout).await
}

/// Sends `msg` to `server` (UDP, TCP if truncated) and returns the reply with the same id.
pub async fn exchange(
    server: SocketAddr,
    msg: Message,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let bytes = msg.to_vec().map_err(|e| DnsError::Internal {
        context: "encoding a DNS query".into(),
        detail: e.to_string(),
    })?;
    let reply = tokio::time::timeout(timeout, udp(server, &bytes, msg.metadata.id))
        .await
        .map_err(|_| unreachable(server, format!("no UDP answer within {timeout:?}")))??;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    let raw = tokio::time::timeout(timeout, tcp(server, &bytes))
        .await
        .map_err(|_| unreachable(server, format!("no TCP answer within {timeout:?}")))??;
    let reply = Message::from_vec(&raw).map_err(|e| bad_reply(server, e))?;
    check_id(server, &reply, msg.metadata.id)?;
    Ok(reply)
}

fn check_id(server: SocketAddr, reply: &Message, id: u16) -> Result<(), DnsError> {
    if reply.metadata.id != id {
        return Err(bad_reply(
            server,
            format!(
                "reply id {} does not match query id {id}",
                reply.metadata.id
            ),
        ));
    }
    Ok(())
}

async fn udp(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, DnsError> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| unreachable(server, format!("cannot open a UDP socket: {e}")))?;
    socket
        .connect(server)
        .await
        .map_err(|e| unreachable(server, e))?;
    socket
        .send(bytes)
        .await
        .map_err(|e| unreachable(server, e))?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| unreachable(server, e))?;
        // A stray datagram (a late reply to an earlier query) is skipped, not trusted.
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == id => return Ok(m),
            _ => continue,
        }
    }
}

/// One length-prefixed message over a fresh TCP connection; the raw reply bytes.
async fn tcp(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, DnsError> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| unreachable(server, e))?;
    let len = u16::try_from(bytes.len()).map_err(|_| DnsError::Internal {
        context: "sending a DNS message over TCP".into(),
        detail: format!("{} bytes is more than a DNS message can hold", bytes.len()),
    })?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    stream
        .write_all(&out)
        .await
        .map_err(|e| unreachable(server, e))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| unreachable(server, format!("connection closed before a reply: {e}")))?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| unreachable(server, format!("reply cut short: {e}")))?;
    Ok(reply)
}

/// Sends `msg` signed with `signer` (TSIG time `now`, seconds since the epoch) over TCP and
/// returns the verified reply. `provider` names the provider in errors.
pub async fn signed(
    provider: &str,
    server: SocketAddr,
    mut msg: Message,
    signer: &TSigner,
    now: u64,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let id = msg.metadata.id;
    let mut verifier = msg
        .finalize(signer, now)
        .map_err(|e| DnsError::Internal {
            context: "signing a DNS update".into(),
            detail: e.to_string(),
        })?
        .ok_or_else(|| DnsError::Internal {
            context: "signing a DNS update".into(),
            detail: "the signer returned no verifier for the reply".into(),
        })?;
    let bytes = msg.to_vec().map_err(|e| DnsError::Internal {
        context: "encoding a DNS update".into(),
        detail: e.to_string(),
    })?;
    let raw = tokio::time::timeout(timeout, tcp(server, &bytes))
        .await
        .map_err(|_| unreachable(server, format!("no TCP answer within {timeout:?}")))??;
    let reply = Message::from_vec(&raw).map_err(|e| bad_reply(server, e))?;
    check_id(server, &reply, id)?;
    let auth = |detail: String| DnsError::Authentication {
        provider: provider.to_string(),
        server: server.to_string(),
        detail,
    };
    let Some(sig) = reply.signature() else {
        // Servers answer a bad or unknown key with an unsigned error (BIND: NOTAUTH for a
        // wrong secret, REFUSED for an unsigned or unknown-key request).
        return Err(match reply.metadata.response_code {
            ResponseCode::NoError => bad_reply(server, "an unsigned reply to a signed update"),
            rcode => auth(format!("unsigned {} reply", rcode_name(rcode))),
        });
    };
    if let Some(err) = &sig.data.error {
        let what = match err {
            TsigError::BadSig => "BADSIG: the secret differs".to_string(),
            TsigError::BadKey => {
                "BADKEY: the server does not know this key name or algorithm".to_string()
            }
            TsigError::BadTime => "BADTIME: the clocks differ by more than the fudge".to_string(),
            other => format!("TSIG error {other:?}"),
        };
        return Err(auth(what));
    }
    match verifier.verify(&raw) {
        Ok(_) => Ok(reply),
        // hickory's words for an unsigned reply that must have been signed.
        Err(e) if e.to_string().contains("TSIG signature record not found") => {
            Err(auth("TSIG signature record not found on the reply".into()))
        }
        Err(e) => Err(bad_reply(
            server,
            format!("the reply's TSIG does not verify: {e}"),
        )),
    }
}

/// The RFC name of a response code (`NXRRSET`, `NOTAUTH`, ...).
pub fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}
