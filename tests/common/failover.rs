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
    - {{ name: api.example.test., zone: example.test., type: A, ttl: 30, provider: bind, nameservers: ["{ns}"], verify_timeout: 30s }}
sites:
  - name: primary
    services:
      orders-db: {{ kind: postgres, url: "{primary_url}", source: orders-db }}
    dns: {{ "api.example.test.": ["192.0.2.10"] }}
  - name: secondary
    services:
      orders-db: {{ kind: postgres, url: "{standby_url}", source: orders-db }}
    dns: {{ "api.example.test.": ["192.0.2.20"] }}
failover:
  site: primary
  mode: manual
  order: [primary, secondary]
"#,
        primary_url = primary.url("orders"),
        standby_url = standby.url("orders"),
        ns = ns.addr(),
        kname = key.name,
        ksecret = key.secret,
    ));
    env.ok(&[
        "dns",
        "set",
        "api.example.test.",
        "192.0.2.10",
        "--expect-absent",
    ]);
    Setup {
        env,
        primary,
        standby,
        ns,
    }
}

/// Inserts a row every 50 ms into whichever server takes it (the old primary until it is
/// fenced, then the new one), recording the ids whose INSERT was acknowledged.
pub fn writer(
    urls: [String; 2],
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut id = 0i64;
            let mut conns: [Option<sqlx::PgConnection>; 2] = [None, None];
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
