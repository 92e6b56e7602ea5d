// A planned-switchover setup shared by the failover tests and the failover report tests: a
// PostgreSQL primary with a streaming standby (pg_basebackup -R) on loopback, DNS on a real
// BIND, and a config with two sites.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::dns::{DnsServer, TsigKey};
use super::servers::PgServer;
use super::{Env, wait_until};

pub struct Setup {
    pub env: Env,
    pub primary: PgServer,
    pub standby: PgServer,
    pub ns: DnsServer,
}

pub fn setup() -> Setup {
    setup_with(
        "api.example.test.",
        ["192.0.2.10", "192.0.2.20"],
        "primary",
        30,
    )
}

/// [`setup`] with the DNS `record`, each site's `values` (the primary's set), the site this
/// config runs at (`here`) and the record's `ttl`.
pub fn setup_with(record: &str, values: [&str; 2], here: &str, ttl: u32) -> Setup {
    let primary = PgServer::start();
    primary.create_db("orders");
    primary.psql(
        "orders",
        "CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
    );
    let standby = PgServer::standby_of(&primary);
    wait_until("the standby streams", Duration::from_secs(60), || {
        standby.psql(
            "orders",
            "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
        ) == "1"
    });
    let key = TsigKey::random();
    let ns = DnsServer::bind(&key, None);
    let env = Env::new();
    env.write_config(&format!(
        r#"
catalog: sqlite://./catalog.db
stores:
  local: {{ url: "file://./store" }}
encryption:
  recipients: ["{{recipient}}"]
sources:
  - {{ name: orders-db, kind: postgres, url: "{primary_url}", store: local, objectives: {{ rpo: 1m, rto: 5m }} }}
dns:
  providers:
    bind: {{ kind: rfc2136, server: "{ns}", tsig: {{ name: {kname}, algorithm: hmac-sha256, secret: "{ksecret}" }} }}
  records:
    - {{ name: {record}, zone: example.test., type: A, ttl: {ttl}, provider: bind, nameservers: ["{ns}"], verify_timeout: 30s }}
sites:
  - name: primary
    services:
      orders-db: {{ kind: postgres, url: "{primary_url}", source: orders-db }}
    dns: {{ "{record}": ["{v0}"] }}
  - name: secondary
    services:
      orders-db: {{ kind: postgres, url: "{standby_url}", source: orders-db }}
    dns: {{ "{record}": ["{v1}"] }}
failover:
  site: {here}
  mode: manual
  order: [primary, secondary]
"#,
        primary_url = primary.url("orders"),
        standby_url = standby.url("orders"),
        ns = ns.addr(),
        kname = key.name,
        ksecret = key.secret,
        v0 = values[0],
        v1 = values[1],
    ));
    env.ok(&["dns", "set", record, values[0], "--expect-absent"]);
    Setup {
        env,
        primary,
        standby,
        ns,
    }
}

/// Inserts a row every 50 ms into whichever server takes it (the old primary until it is
/// fenced, then the new one), recording the ids whose INSERT was acknowledged.
/// Ids start after `first_id`.
pub fn writer(
    urls: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
    first_id: i64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut id = first_id;
            let mut conns: Vec<Option<sqlx::PgConnection>> = urls.iter().map(|_| None).collect();
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                for (i, url) in urls.iter().enumerate() {
                    if conns[i].is_none() {
                        conns[i] = sqlx::PgConnection::connect(url).await.ok();
                    }
                    let Some(c) = conns[i].as_mut() else { continue };
                    match sqlx::query("INSERT INTO acked (id) VALUES ($1)")
                        .bind(id)
                        .execute(&mut *c)
                        .await
                    {
                        Ok(_) => {
                            acked.lock().expect("lock").push(id);
                            break;
                        }
                        Err(_) => conns[i] = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    })
}

/// Three sites (`primary`, `secondary`, `dr`), each with its own lifeboat config and SQLite
/// catalog (an `Env`) and daemon port, a PostgreSQL primary with two streaming standbys and a
/// real BIND serving `record` with each site's `values` (set to the primary's). The
/// controllers run in `mode` with `probe_interval 1s`, `unhealthy_after 3`, `fence_after 3s`
/// and the peer token [`SITES_TOKEN`]. (The same shape as tests/failover_controller.rs.)
pub struct Sites {
    pub envs: Vec<Env>,
    pub ports: Vec<u16>,
    pub pgs: Vec<PgServer>,
    pub ns: DnsServer,
}

pub const SITE_NAMES: [&str; 3] = ["primary", "secondary", "dr"];
pub const SITES_TOKEN: &str = "peer-s3cret-token";

pub fn three_sites(mode: &str, record: &str, values: [&str; 3]) -> Sites {
    let mut primary = PgServer::start();
    // pg_rewind (`failover rejoin`) needs hint bits WAL-logged: the standbys inherit it.
    primary.psql("postgres", "ALTER SYSTEM SET wal_log_hints = on");
    primary.stop();
    primary.restart();
    primary.create_db("orders");
    primary.psql(
        "orders",
        "CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
    );
    let standbys = [
        PgServer::standby_of(&primary),
        PgServer::standby_of(&primary),
    ];
    for s in &standbys {
        wait_until("the standby streams", Duration::from_secs(60), || {
            s.psql(
                "orders",
                "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            ) == "1"
        });
    }
    let [secondary, dr] = standbys;
    let pgs = vec![primary, secondary, dr];
    let services: Vec<String> = pgs
        .iter()
        .map(|pg| {
            format!(
                "orders-db: {{ kind: postgres, url: \"{url}\", source: orders-db, data_dir: \"{data}\" }}",
                url = pg.url("orders"),
                data = pg.data_dir().display(),
            )
        })
        .collect();
    let source = format!(
        "{{ name: orders-db, kind: postgres, url: \"{}\", store: local, objectives: {{ rpo: 1m, rto: 5m }} }}",
        pgs[0].url("orders")
    );
    let (envs, ports, ns) = site_configs(mode, &services, &source, record, values);
    Sites {
        envs,
        ports,
        pgs,
        ns,
    }
}

/// The three sites' configs (one `Env` each, its own SQLite catalog and daemon port) whose
/// `services:` line is `services[i]`, with one `source`, and a real BIND serving `record`
/// with each site's `values` (set to the primary's).
pub fn site_configs(
    mode: &str,
    services: &[String],
    source: &str,
    record: &str,
    values: [&str; 3],
) -> (Vec<Env>, Vec<u16>, DnsServer) {
    let key = TsigKey::random();
    let ns = DnsServer::bind(&key, None);
    let ports: Vec<u16> = SITE_NAMES
        .iter()
        .map(|_| super::servers::free_port())
        .collect();
    let mut sites = String::new();
    for (i, name) in SITE_NAMES.iter().enumerate() {
        sites.push_str(&format!(
            "  - name: {name}\n    peer: \"http://127.0.0.1:{port}\"\n    services:\n      {svc}\n    dns: {{ \"{record}\": [\"{value}\"] }}\n",
            port = ports[i],
            svc = services[i],
            value = values[i],
        ));
    }
    let envs: Vec<Env> = SITE_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let env = Env::new();
            env.write_config(&format!(
                r#"
catalog: sqlite://./catalog.db
stores:
  local: {{ url: "file://./store" }}
encryption:
  recipients: ["{{recipient}}"]
sources:
  - {source}
daemon:
  listen: "127.0.0.1:{port}"
dns:
  providers:
    bind: {{ kind: rfc2136, server: "{ns}", tsig: {{ name: {kname}, algorithm: hmac-sha256, secret: "{ksecret}" }} }}
  records:
    - {{ name: {record}, zone: example.test., type: A, ttl: 1, provider: bind, nameservers: ["{ns}"], verify_timeout: 30s }}
sites:
{sites}failover:
  site: {name}
  mode: {mode}
  order: [primary, secondary, dr]
  probe_interval: 1s
  unhealthy_after: 3
  fence_after: 3s
  min_dwell: 10m
  peer_token: "{SITES_TOKEN}"
"#,
                port = ports[i],
                ns = ns.addr(),
                kname = key.name,
                ksecret = key.secret,
            ));
            env
        })
        .collect();
    envs[0].ok(&["dns", "set", record, values[0], "--expect-absent"]);
    (envs, ports, ns)
}

/// What the daemon at `port` observes (`GET /api/v1/failover/observations`).
pub fn observations_at(port: u16) -> Option<serde_json::Value> {
    let (code, body) =
        super::servers::try_http_get(port, "/api/v1/failover/observations", Some(SITES_TOKEN))
            .ok()?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Starts every site's daemon and waits until each has seen every site up three rounds in a
/// row.
pub fn start_daemons(envs: &[Env], ports: &[u16]) -> Vec<Daemon> {
    let daemons = SITE_NAMES
        .iter()
        .enumerate()
        .map(|(i, s)| Daemon::start(&envs[i], s))
        .collect();
    wait_all_up(ports);
    daemons
}

/// Waits until every daemon has seen every site up three rounds in a row.
pub fn wait_all_up(ports: &[u16]) {
    wait_until(
        "every daemon sees every site up",
        Duration::from_secs(60),
        || {
            ports.iter().all(|p| {
                observations_at(*p).is_some_and(|o| {
                    SITE_NAMES.iter().all(|s| {
                        o["sites"][s]["successes_in_a_row"]
                            .as_u64()
                            .is_some_and(|n| n >= 3)
                    })
                })
            })
        },
    );
}

/// The last lines of each site's daemon log (`<site>.log` in its env).
pub fn log_tails(envs: &[Env]) -> String {
    SITE_NAMES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let log =
                std::fs::read_to_string(envs[i].path(&format!("{s}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(30);
            format!("--- {s} ---\n{}", lines[from..].join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Sites {
    /// What the daemon of site `i` observes.
    pub fn observations(&self, i: usize) -> Option<serde_json::Value> {
        observations_at(self.ports[i])
    }

    /// Starts every site's daemon and waits until each sees every site up.
    pub fn start_daemons(&self) -> Vec<Daemon> {
        start_daemons(&self.envs, &self.ports)
    }

    /// The last lines of each site's daemon log.
    pub fn log_tails(&self) -> String {
        log_tails(&self.envs)
    }
}

/// `lifeboat run` in an env, its stderr in `<name>.log`; killed (SIGKILL) on drop.
pub struct Daemon {
    child: Option<std::process::Child>,
}

impl Daemon {
    pub fn start(env: &Env, name: &str) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.path(&format!("{name}.log")))
            .expect("log file");
        let child = env
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lifeboat run");
        Daemon { child: Some(child) }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
