//! The Redis side of the wire: connection URLs (`redis://[[user]:password@]host[:port]`),
//! authentication, and a minimal blocking RESP2 client, with the `INFO` parsing the kind
//! needs. Public so the integration tests drive their servers with this client rather than
//! a copy of it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A command, or a read of the RDB stream, that gets no answer for this long fails.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks the form of a Redis URL.
pub fn check_url(url: &str) -> Result<(), String> {
    Conn::parse(url).map(|_| ())
}

/// A connection URL split into what may be shown and the credentials.
#[derive(Clone)]
pub struct Conn {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    /// The URL without its password: for messages.
    pub(super) public: String,
}

impl Conn {
    /// Parses `redis://[[user]:password@]host[:port][/0]`; the error is safe to show.
    pub fn parse(url: &str) -> Result<Conn, String> {
        let shown = crate::model::redact::url(url);
        const FORM: &str = "write redis://[:PASSWORD@]HOST[:PORT]";
        let mut parsed =
            url::Url::parse(url).map_err(|e| format!("`{shown}` is not a URL ({e}); {FORM}"))?;
        match parsed.scheme() {
            "redis" => {}
            "rediss" => {
                return Err(format!(
                    "`{shown}`: TLS (rediss://) is not supported yet; reach the server over a trusted network or a TLS tunnel and {FORM}"
                ));
            }
            _ => return Err(format!("`{shown}` is not a Redis URL; {FORM}")),
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(format!("`{shown}` names no host; {FORM}")),
        };
        let db = parsed.path().trim_start_matches('/');
        if !(db.is_empty() || db == "0") {
            return Err(format!(
                "`{shown}` selects database `{db}`, but lifeboat backs up and restores every database of a server, each under its own number; drop the `/{db}`"
            ));
        }
        let username = Some(percent_decode(parsed.username())).filter(|u| !u.is_empty());
        let password = parsed.password().map(percent_decode);
        let _ = parsed.set_password(None);
        Ok(Conn {
            port: parsed.port().unwrap_or(6379),
            host,
            username,
            password,
            public: parsed.to_string(),
        })
    }

    pub(super) fn secrets(&self) -> Vec<&str> {
        self.password.iter().map(String::as_str).collect()
    }

    pub(super) fn scrub(&self, text: &str) -> String {
        crate::model::redact::scrub(text, &self.secrets())
    }

    /// Connects and authenticates. The error is scrubbed and says what failed.
    pub fn connect(&self) -> Result<Client, String> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?;
        let mut last = format!("{} resolves to no address", self.host);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                    let mut client = Client::new(Box::new(stream)).map_err(|e| e.to_string())?;
                    self.auth(&mut client)?;
                    return Ok(client);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(self.scrub(&last))
    }

    fn auth(&self, client: &mut Client) -> Result<(), String> {
        let reply = match (&self.username, &self.password) {
            (Some(user), Some(pass)) => client.cmd(&["AUTH", user, pass]),
            (None, Some(pass)) => client.cmd(&["AUTH", pass]),
            // No password: the server's default user, if it needs none. PING proves it.
            _ => client.cmd(&["PING"]),
        };
        match reply {
            Ok(Reply::Error(e)) => Err(format!(
                "authentication failed: {}; check the user and password in the URL",
                self.scrub(&e)
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(self.scrub(&e.to_string())),
        }
    }
}

/// `%XX` sequences decoded (URL user info); anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// A minimal RESP2 client (blocking; run from blocking threads)
// ---------------------------------------------------------------------------

pub(super) trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: arrays joined with spaces, a nil as the empty string.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => String::new(),
            Reply::Array(Some(items)) => {
                items.iter().map(Reply::text).collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// RESP encoding of one command.
fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

pub(super) fn bad_data(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

pub(super) fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad_data("a reply line does not end in CRLF"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

pub(super) fn parse_int(b: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_data(format!("`{}` is not a number", String::from_utf8_lossy(b))))
}

fn read_reply(r: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > 16 {
        return Err(bad_data("reply nested too deeply"));
    }
    let line = read_line(r)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| bad_data("an empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    Ok(match kind {
        b'+' => Reply::Status(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Int(parse_int(rest)?),
        b'$' => match parse_int(rest)? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut data = vec![0u8; n as usize + 2];
                r.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(bad_data("a bulk string does not end in CRLF"));
                }
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
        },
        b'*' => match parse_int(rest)? {
            n if n < 0 => Reply::Array(None),
            n => {
                let items = (0..n)
                    .map(|_| read_reply(r, depth + 1))
                    .collect::<io::Result<Vec<_>>>()?;
                Reply::Array(Some(items))
            }
        },
        other => {
            return Err(bad_data(format!(
                "unexpected reply type `{}`",
                char::from(*other)
            )));
        }
    })
}

/// A connection to one server (blocking; run it from a blocking thread).
pub struct Client {
    pub(super) conn: BufReader<Box<dyn Stream>>,
}

impl Client {
    pub(super) fn new(stream: Box<dyn Stream>) -> io::Result<Client> {
        Ok(Client {
            conn: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    /// Sends one command without reading its reply.
    pub fn send_bytes(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::new();
        encode(args, &mut out);
        self.conn.get_mut().write_all(&out)
    }

    /// One command and its reply (an error reply is an `Ok`).
    pub fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_bytes(&args)
    }

    /// [`Client::cmd`] with binary arguments.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send_bytes(args)?;
        self.read()
    }

    /// Reads the next reply.
    pub fn read(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.conn, 0)
    }

    /// Sends all `cmds` at once, then reads their replies in order.
    pub fn pipeline(&mut self, cmds: &[Vec<&[u8]>]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for c in cmds {
            encode(c, &mut out);
        }
        self.conn.get_mut().write_all(&out)?;
        cmds.iter().map(|_| self.read()).collect()
    }

    /// A command that must not answer with an error; the error says which command failed.
    pub fn must(&mut self, args: &[&str]) -> Result<Reply, String> {
        match self.cmd(args) {
            Ok(Reply::Error(e)) => Err(format!("`{}`: {e}", args[0])),
            Ok(r) => Ok(r),
            Err(e) => Err(format!("`{}`: {e}", args[0])),
        }
    }

    /// `INFO section` as key → value.
    pub fn info(&mut self, section: &str) -> Result<Vec<(String, String)>, String> {
        let reply = self.must(&["INFO", section])?;
        Ok(parse_info(&reply.text()))
    }
}

pub(super) fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub(super) fn field<'a>(info: &'a [(String, String)], key: &str) -> Option<&'a str> {
    info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Databases of `INFO keyspace` (`db0:keys=1,expires=0,avg_ttl=0`): (index, keys, expires).
pub(super) fn keyspace(info: &[(String, String)]) -> Vec<(u32, u64, u64)> {
    let mut dbs: Vec<(u32, u64, u64)> = info
        .iter()
        .filter_map(|(k, v)| {
            let db = k.strip_prefix("db")?.parse().ok()?;
            let get = |name: &str| {
                v.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0)
            };
            Some((db, get("keys"), get("expires")))
        })
        .collect();
    dbs.sort();
    dbs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = Conn::parse("redis://:s%2Bcr%40t@cache:6380").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("cache", 6380));
        assert_eq!(c.password.as_deref(), Some("s+cr@t"));
        assert_eq!(c.username, None);
        assert!(!c.public.contains("cr"), "{}", c.public);
        let c = Conn::parse("redis://backup:pw@10.0.0.1/0").unwrap();
        assert_eq!(c.username.as_deref(), Some("backup"));
        assert_eq!(c.port, 6379);
        for (bad, says) in [
            ("rediss://h", "TLS"),
            ("http://h", "not a Redis URL"),
            ("redis://h/3", "every database"),
            ("nonsense", "not a URL"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = check_url("rediss://:hunter22@h").unwrap_err();
        assert!(!e.contains("hunter22"), "{e}");
    }

    #[test]
    fn replies_parse() {
        let raw = b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n*0\r\n*-1\r\n";
        let mut r = &raw[..];
        let got: Vec<Reply> = (0..7).map(|_| read_reply(&mut r, 0).unwrap()).collect();
        assert_eq!(
            got,
            vec![
                Reply::Status("OK".into()),
                Reply::Error("ERR bad".into()),
                Reply::Int(42),
                Reply::Bulk(Some(b"a\r\n".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"x".to_vec())),
                    Reply::Array(Some(vec![]))
                ])),
                Reply::Array(None),
            ]
        );
        assert!(read_reply(&mut &b""[..], 0).is_err());
        assert!(read_reply(&mut &b"$5\r\nab"[..], 0).is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("p+q"), "p+q");
    }
}
