// Route53 in tests: a hosted zone in a `MotoServer`, and `FaultProxy`, a small HTTP proxy in
// front of moto that answers what moto never does: `Throttling` and `PriorRequestNotComplete`
// errors on ChangeResourceRecordSets, and PENDING on GetChange, a given number of times each.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::MotoServer;

/// What the proxy injects next (counts down) and what it has injected so far.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    pub throttling: u32,
    pub prior_request_not_complete: u32,
    pub pending: u32,
    pub injected_errors: u32,
    pub injected_pending: u32,
    pub forwarded: u32,
}

pub struct FaultProxy {
    port: u16,
    pub faults: Arc<Mutex<Faults>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (faults.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let f = f.clone();
                thread::spawn(move || {
                    let _ = handle(conn, upstream, &f);
                });
            }
        });
        FaultProxy { port, faults, stop }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().unwrap());
    }

    pub fn seen(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port)));
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// One request per connection (`Connection: close` both ways).
fn handle(mut conn: TcpStream, upstream: u16, faults: &Mutex<Faults>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + 4 + length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut request_line = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (
        request_line.next().unwrap_or("").to_string(),
        request_line.next().unwrap_or("").to_string(),
    );
    let injected = {
        let mut f = faults.lock().unwrap();
        if method == "POST" && path.contains("/rrset") && f.throttling > 0 {
            f.throttling -= 1;
            f.injected_errors += 1;
            Some(error_reply("Throttling", "Rate exceeded"))
        } else if method == "POST" && path.contains("/rrset") && f.prior_request_not_complete > 0 {
            f.prior_request_not_complete -= 1;
            f.injected_errors += 1;
            Some(error_reply(
                "PriorRequestNotComplete",
                "The request was rejected because Route 53 was still processing a prior request.",
            ))
        } else if method == "GET" && path.contains("/change/") && f.pending > 0 {
            f.pending -= 1;
            f.injected_pending += 1;
            let id = path.rsplit('/').next().unwrap_or("C1");
            Some(reply(
                200,
                &format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetChangeResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeInfo><Id>/change/{id}</Id><Status>PENDING</Status><SubmittedAt>2026-01-01T00:00:00.000Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
                ),
            ))
        } else {
            f.forwarded += 1;
            None
        }
    };
    let response = match injected {
        Some(r) => r,
        None => forward(&buf[..head_end], &buf[head_end + 4..], upstream)?,
    };
    conn.write_all(&response)?;
    conn.flush()
}

fn forward(head: &[u8], body: &[u8], upstream: u16) -> std::io::Result<Vec<u8>> {
    let head = String::from_utf8_lossy(head);
    let mut out: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], upstream)))?;
    up.set_read_timeout(Some(Duration::from_secs(30)))?;
    up.write_all(out.as_bytes())?;
    up.write_all(body)?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw)?;
    // Tell the client this connection ends here too.
    let Some(end) = find(&raw, b"\r\n\r\n") else {
        return Ok(raw);
    };
    let rhead = String::from_utf8_lossy(&raw[..end]);
    let mut fixed: String = rhead
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    fixed.push_str("Connection: close\r\n\r\n");
    let mut res = fixed.into_bytes();
    res.extend_from_slice(&raw[end + 4..]);
    Ok(res)
}

fn reply(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Bad Request" },
        body.len()
    )
    .into_bytes()
}

fn error_reply(code: &str, message: &str) -> Vec<u8> {
    reply(
        400,
        &format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>lifeboat-fault-proxy</RequestId></ErrorResponse>"
        ),
    )
}

/// Creates hosted zone `zone` in moto; returns its id (without `/hostedzone/`).
pub async fn create_zone(moto: &MotoServer, zone: &str) -> String {
    use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_route53::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new(
            "testing",
            "testing-secret-key",
            None,
            None,
            "test",
        ))
        .build();
    let client = aws_sdk_route53::Client::from_conf(conf);
    let out = client
        .create_hosted_zone()
        .name(zone)
        .caller_reference(format!("lifeboat-{}", rand::random::<u64>()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create hosted zone {zone}: {e:?}"));
    out.hosted_zone()
        .expect("a hosted zone in the reply")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string()
}
