// Throwaway authoritative DNS servers for the DNS provider tests, each on free 127.0.0.1
// ports in its own temp dir, in its own process group, killed (and reaped) on drop:
//   * `DnsServer::bind`          - BIND 9 primary of `example.test`, RFC 2136 updates with a
//                                  TSIG key, optionally NOTIFYing a secondary;
//   * `DnsServer::knot`          - Knot primary taking the same updates;
//   * `DnsServer::knot_secondary`- Knot secondary of a primary (NOTIFY + AXFR over TSIG);
//   * `PdnsServer::start`        - PowerDNS Authoritative (gsqlite3) with its HTTP API and the
//                                  zone created through it.
// Readiness is an authoritative SOA answer from `dig` (bind9-dnsutils, see scripts/setup.sh).
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use tempfile::TempDir;

use super::servers::{Emulator, bin_on_path, free_port};

pub const ZONE: &str = "example.test.";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: u32 = 3;

/// A TSIG key: its name and base64 secret.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub secret: String,
}

impl TsigKey {
    /// A fresh random hmac-sha256 key called `lifeboat-key`.
    pub fn random() -> TsigKey {
        let bytes: [u8; 32] = rand::random();
        TsigKey {
            name: "lifeboat-key".into(),
            secret: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// The zone file every server starts from: SOA serial 1, one NS, `seed` A 192.0.2.1.
pub fn zone_file() -> String {
    "$TTL 60\n\
     @ IN SOA ns1.example.test. hostmaster.example.test. 1 60 60 600 60\n\
     @ IN NS ns1.example.test.\n\
     ns1 IN A 127.0.0.1\n\
     seed 30 IN A 192.0.2.1\n"
        .to_string()
}

fn program(bin: &str, package: &str) -> PathBuf {
    bin_on_path(bin)
        .or_else(|| Some(PathBuf::from("/usr/sbin").join(bin)).filter(|p| p.exists()))
        .unwrap_or_else(|| {
            panic!(
                "`{bin}` is not installed (Debian package {package}); run `eval \"$(bash scripts/setup.sh)\"`"
            )
        })
}

/// One DNS server process (BIND or Knot) on 127.0.0.1:port.
pub struct DnsServer {
    pub what: &'static str,
    port: u16,
    child: Option<Child>,
    log_file: PathBuf,
    dir: TempDir,
}

impl DnsServer {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A BIND 9 primary of `example.test` granting `key` updates of the whole zone; with
    /// `notify`, it NOTIFYs that port (a secondary) after each change.
    pub fn bind(key: &TsigKey, notify: Option<u16>) -> DnsServer {
        let named = program("named", "bind9");
        Self::start("bind", |port, dir| {
            let d = dir.display();
            fs::write(dir.join("example.test.db"), zone_file()).expect("write the zone file");
            fs::write(
                dir.join("tsig.key"),
                format!(
                    "key \"{}\" {{ algorithm hmac-sha256; secret \"{}\"; }};\n",
                    key.name, key.secret
                ),
            )
            .expect("write the key file");
            let notify = match notify {
                Some(p) => format!(
                    "notify explicit; also-notify {{ 127.0.0.1 port {p} key {}; }};",
                    key.name
                ),
                None => "notify no;".into(),
            };
            fs::write(
                dir.join("named.conf"),
                format!(
                    "include \"{d}/tsig.key\";\n\
                     options {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; session-keyfile \"{d}/session.key\";\n\
                       listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n\
                       recursion no; dnssec-validation no; notify no; allow-transfer {{ key {k}; }}; }};\n\
                     controls {{ }};\n\
                     zone \"example.test\" {{ type primary; file \"{d}/example.test.db\"; {notify}\n\
                       update-policy {{ grant {k} zonesub ANY; }}; }};\n",
                    k = key.name
                ),
            )
            .expect("write named.conf");
            let mut cmd = Command::new(&named);
            cmd.arg("-g").arg("-c").arg(dir.join("named.conf"));
            cmd
        })
    }

    /// A Knot primary of `example.test` granting `key` updates.
    pub fn knot(key: &TsigKey) -> DnsServer {
        Self::knot_with(key, None, None)
    }

    /// A Knot secondary on `port` of the primary at 127.0.0.1:`primary` (NOTIFY + AXFR with
    /// `key`); it is ready once it has transferred the zone.
    pub fn knot_secondary(key: &TsigKey, primary: u16, port: u16) -> DnsServer {
        Self::knot_with(key, Some(primary), Some(port))
    }

    fn knot_with(key: &TsigKey, primary: Option<u16>, port: Option<u16>) -> DnsServer {
        let knotd = program("knotd", "knot");
        Self::start_on("knot", port, |port, dir| {
            let d = dir.display();
            fs::create_dir_all(dir.join("db")).expect("create knot's database dir");
            let (remote, acl, zone) = match primary {
                None => {
                    fs::write(dir.join("example.test.zone"), zone_file())
                        .expect("write the zone file");
                    (
                        String::new(),
                        format!(
                            "  - id: lifeboat_update\n    key: {}\n    action: update\n",
                            key.name
                        ),
                        "  - domain: example.test\n    acl: lifeboat_update\n".to_string(),
                    )
                }
                Some(p) => (
                    format!(
                        "remote:\n  - id: primary\n    address: 127.0.0.1@{p}\n    key: {}\n",
                        key.name
                    ),
                    format!(
                        "  - id: primary_notify\n    key: {}\n    action: notify\n",
                        key.name
                    ),
                    "  - domain: example.test\n    master: primary\n    acl: primary_notify\n"
                        .to_string(),
                ),
            };
            fs::write(
                dir.join("knot.conf"),
                format!(
                    "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n\
                     log:\n  - target: stderr\n    any: info\n\
                     database:\n  storage: \"{d}/db\"\n\
                     control:\n  listen: \"{d}/knot.sock\"\n\
                     key:\n  - id: {k}\n    algorithm: hmac-sha256\n    secret: \"{s}\"\n\
                     {remote}\
                     acl:\n{acl}\
                     template:\n  - id: default\n    storage: \"{d}\"\n    file: \"%s.zone\"\n\
                     zone:\n{zone}",
                    k = key.name,
                    s = key.secret
                ),
            )
            .expect("write knot.conf");
            let mut cmd = Command::new(&knotd);
            cmd.arg("-c").arg(dir.join("knot.conf"));
            cmd
        })
    }

    fn start(what: &'static str, prepare: impl Fn(u16, &Path) -> Command) -> DnsServer {
        Self::start_on(what, None, prepare)
    }

    fn start_on(
        what: &'static str,
        fixed_port: Option<u16>,
        prepare: impl Fn(u16, &Path) -> Command,
    ) -> DnsServer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lifeboat-{what}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("create a temp dir for {what}: {e}"));
        let mut server = DnsServer {
            what,
            port: 0,
            child: None,
            log_file: dir.path().join("server.log"),
            dir,
        };
        let mut attempt = 1;
        loop {
            server.port = fixed_port.unwrap_or_else(free_port);
            let mut cmd = prepare(server.port, server.dir.path());
            match server.spawn_and_wait(&mut cmd) {
                Ok(()) => return server,
                Err(why) => {
                    server.stop();
                    let log = server.log_tail();
                    if attempt < START_ATTEMPTS && log.contains("in use") {
                        attempt += 1;
                        continue;
                    }
                    panic!(
                        "{what} failed to start on port {} (attempt {attempt}): {why}\n--- log ---\n{log}",
                        server.port
                    );
                }
            }
        }
    }

    fn spawn_and_wait(&mut self, cmd: &mut Command) -> Result<(), String> {
        let log = fs::File::create(&self.log_file).expect("create the server log");
        let log_err = log.try_clone().expect("duplicate the log handle");
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .current_dir(self.dir.path())
            .process_group(0);
        self.child = Some(
            cmd.spawn()
                .map_err(|e| format!("could not spawn {cmd:?}: {e}"))?,
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("child was just stored");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("process exited early: {status}"));
            }
            if soa_serial(self.addr()).is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no authoritative SOA answer within {READY_TIMEOUT:?}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process group and reaps the process. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `dig` at `server` (RD=0), short output lines.
pub fn dig(server: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new(program("dig", "bind9-dnsutils"))
        .args([
            "+norec",
            "+short",
            "+time=1",
            "+tries=1",
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            name,
            rtype,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run dig");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

/// The SOA serial of `example.test` at `server`, if it answers one.
pub fn soa_serial(server: SocketAddr) -> Option<u32> {
    dig(server, ZONE, "SOA")
        .first()
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok())
}

/// The Python that has `mmdb-writer` (scripts/setup.sh's venv): `$LIFEBOAT_PYTHON`, else the
/// `python` beside `$LIFEBOAT_MOTO_SERVER`.
fn venv_python() -> PathBuf {
    if let Some(p) = std::env::var_os("LIFEBOAT_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("LIFEBOAT_MOTO_SERVER")
        .map(PathBuf::from)
        .and_then(|m| m.parent().map(|d| d.join("python")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("no Python with mmdb-writer: run `eval \"$(bash scripts/setup.sh)\"` (it exports LIFEBOAT_PYTHON)")
        })
}

/// A GeoIP2-City database at `path` (made with PyPI `mmdb-writer`): each network with its
/// country, continent and location (latitude, longitude), accuracy radius 10 km.
pub fn write_mmdb(path: &Path, networks: &[(&str, &str, &str, f64, f64)]) {
    let mut script = String::from(
        "import sys\nfrom mmdb_writer import MMDBWriter\nfrom netaddr import IPSet\n\
         w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type='GeoIP2-City', languages=['en'])\n",
    );
    for (net, country, continent, lat, lon) in networks {
        script.push_str(&format!(
            "w.insert_network(IPSet(['{net}']), {{'country': {{'iso_code': '{country}'}}, 'continent': {{'code': '{continent}'}}, 'location': {{'latitude': {lat}, 'longitude': {lon}, 'accuracy_radius': 10}}}})\n"
        ));
    }
    script.push_str("w.to_db_file(sys.argv[1])\n");
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(&script)
        .arg(path)
        .output()
        .expect("run python for mmdb-writer");
    assert!(
        out.status.success(),
        "mmdb-writer failed (pip install mmdb-writer netaddr, see scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PowerDNS Authoritative with the gsqlite3 backend, its HTTP API, and `example.test`
/// created through the API (serial from the API, NS ns1.example.test.).
pub struct PdnsServer {
    api: Emulator,
    dns_port: u16,
    pub api_key: String,
    _dir: TempDir,
}

impl PdnsServer {
    pub fn start() -> PdnsServer {
        Self::start_with(&[])
    }

    /// With LUA records, the GeoIP backend reading `mmdb`, EDNS Client Subnet processing and
    /// 1 s health checks (`ifurlup`, `ifurlextup`).
    pub fn start_geo(mmdb: &Path) -> PdnsServer {
        let zones = mmdb.with_extension("zones.yaml");
        fs::write(&zones, "domains: []\n").expect("write the geoip zones file");
        let files = format!("geoip-database-files=mmdb:{}", mmdb.display());
        let zones = format!("geoip-zones-file={}", zones.display());
        Self::start_with(&[
            "enable-lua-records=yes",
            "launch+=geoip",
            &files,
            &zones,
            "edns-subnet-processing=yes",
            "lua-health-checks-interval=1",
        ])
    }

    /// With extra `key=value` lines in pdns.conf.
    pub fn start_with(extra: &[&str]) -> PdnsServer {
        let pdns = program("pdns_server", "pdns-server");
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pdns-")
            .tempdir()
            .expect("create a temp dir for PowerDNS");
        let d = dir.path();
        let db = d.join("pdns.sqlite3");
        let schema = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";
        let out = Command::new(program("sqlite3", "sqlite3"))
            .arg(&db)
            .stdin(fs::File::open(schema).unwrap_or_else(|e| {
                panic!("{schema}: {e}; install pdns-backend-sqlite3 (scripts/setup.sh)")
            }))
            .output()
            .expect("run sqlite3");
        assert!(
            out.status.success(),
            "sqlite3 schema: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let api_key = format!("pdns-{}", rand::random::<u64>());
        let dns_port = free_port();
        fs::write(
            d.join("pdns.conf"),
            format!(
                "launch=gsqlite3\ngsqlite3-database={}\nlocal-address=127.0.0.1\n\
                 api=yes\napi-key={api_key}\nwebserver-address=127.0.0.1\n\
                 webserver-allow-from=127.0.0.0/8\nsocket-dir={}\ndaemon=no\nguardian=no\n\
                 write-pid=no\ndisable-syslog=yes\nsecurity-poll-suffix=\n{}\n",
                db.display(),
                d.display(),
                extra.join("\n")
            ),
        )
        .expect("write pdns.conf");
        let config_dir = d.to_path_buf();
        let api = Emulator::start(
            "pdns",
            &pdns,
            move |port, _| {
                vec![
                    format!("--config-dir={}", config_dir.display()),
                    format!("--webserver-port={port}"),
                    format!("--local-port={dns_port}"),
                ]
            },
            "/api/v1/servers",
        );
        let server = PdnsServer {
            api,
            dns_port,
            api_key,
            _dir: dir,
        };
        let (status, body) = server.request(
            "POST",
            "/api/v1/servers/localhost/zones",
            &serde_json::json!({
                "name": ZONE, "kind": "Native", "nameservers": ["ns1.example.test."],
                "rrsets": [
                    {"name": "ns1.example.test.", "type": "A", "ttl": 60,
                     "records": [{"content": "127.0.0.1", "disabled": false}]},
                    {"name": "seed.example.test.", "type": "A", "ttl": 30,
                     "records": [{"content": "192.0.2.1", "disabled": false}]}
                ]
            })
            .to_string(),
        );
        assert_eq!(
            status,
            201,
            "create the zone: {body}\n{}",
            server.api.log_tail()
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        while soa_serial(server.addr()).is_none() {
            assert!(
                Instant::now() < deadline,
                "PowerDNS answers no SOA:\n{}",
                server.api.log_tail()
            );
            thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The DNS address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dns_port))
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api.port())
    }

    /// One API request with the key; (status, body).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.api.request(
            method,
            path,
            &[
                ("X-API-Key", self.api_key.clone()),
                ("Content-Type", "application/json".into()),
            ],
            body.as_bytes(),
        )
    }

    pub fn log_tail(&self) -> String {
        self.api.log_tail()
    }
}
