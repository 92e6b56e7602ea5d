//! The canary writer: during a drill, one write of a sequence number every `interval`
//! through the service's own URL (PostgreSQL: a row of `lifeboat_canary`; Redis: a key
//! `lifeboat:canary:<run>:<seq>`), each recorded as
//! acknowledged (with the time), failed, or timed out; after recovery, the sequence numbers
//! that survived. [`crate::policy::drill::measure`] turns both into the actual RPO and RTO.
//!
//! # Guarantees
//! - Writes are sent on a fixed tick, concurrently: a stalled write does not delay the next,
//!   so the resolution stays `interval` while the service is down.
//! - A write that does not answer within `timeout` is recorded as timed out (indeterminate),
//!   never as failed: it may have landed.
//!
//! - With a [`Follow`] (the URL's host is a record of `dns.records`), the host is asked of the
//!   record's nameservers at every write, and a new pool is used once it points elsewhere: a
//!   DNS switch is part of what the canary measures.
//!
//! # Caveats
//! A following canary does not model client DNS caches: clients that honour the record's
//! TTL follow up to a TTL later. The canary table lives in the service's database (`lifeboat_canary`, one row per write,
//! keyed by drill run): the drill needs a role allowed to create and insert into it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::model::Clock;
use crate::policy::drill::{Ack, Canary};

#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error(
        "canary database {url}: {reason}; check canary.url and that the role may create a table"
    )]
    Setup { url: String, reason: String },
    #[error("reading the surviving canaries back from {url}: {reason}")]
    ReadBack { url: String, reason: String },
}

/// Where the canary asks for its host's address: the authoritative nameservers of a record
/// of the config's `dns.records` (what clients see once their caches expire), instead of the
/// system resolver. The host is asked again for every new connection and every write, so a
/// DNS switch moves the canary at once.
#[derive(Debug, Clone)]
pub struct Follow {
    /// The host of the canary's URL (a name in `dns.records`).
    pub name: String,
    pub nameservers: Vec<std::net::SocketAddr>,
}

impl Follow {
    /// The record of `url`'s host in `dns`, with nameservers listed, if there is one.
    pub fn of(url: &str, dns: &crate::dns::config::DnsConfig) -> Option<Follow> {
        let host = url::Url::parse(url).ok()?.host_str()?.to_string();
        if host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        let rec = dns
            .records_named(&host, Some(crate::dns::RecordType::A))
            .into_iter()
            .next()?;
        let nameservers: Vec<std::net::SocketAddr> = rec
            .nameservers
            .iter()
            .filter_map(|s| crate::dns::parse_server(s).ok())
            .collect();
        (!nameservers.is_empty()).then_some(Follow {
            name: host,
            nameservers,
        })
    }

    /// The address the first nameserver that answers gives now (the lowest of its A values).
    pub async fn resolve(&self, timeout: Duration) -> Result<String, String> {
        use hickory_proto::rr::RecordType as WireType;
        let name = crate::dns::wire::name(&self.name).map_err(|e| e.to_string())?;
        let mut last = format!("no nameserver answered for {}", self.name);
        for ns in &self.nameservers {
            match crate::dns::wire::query(*ns, name.clone(), WireType::A, timeout).await {
                Ok(m) => match crate::dns::verify::rrset_of(&m, &name, WireType::A) {
                    Some(r) => {
                        if let Some(v) = r.values.first() {
                            return Ok(v.clone());
                        }
                    }
                    None => last = format!("{ns} has no A record for {}", self.name),
                },
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// A PostgreSQL canary for one drill run.
pub struct PgCanary {
    options: PgConnectOptions,
    follow: Option<Follow>,
    timeout: Duration,
    /// The pool for the address the host resolves to now (with `follow`), else the URL's.
    current: tokio::sync::Mutex<Option<(String, PgPool)>>,
    run: String,
    shown_url: String,
}

impl PgCanary {
    /// Connects (the service must answer now) and makes sure the table exists.
    pub async fn connect(url: &str, run: &str, timeout: Duration) -> Result<PgCanary, CanaryError> {
        PgCanary::connect_following(url, None, run, timeout).await
    }

    /// [`PgCanary::connect`], asking `follow`'s nameservers for the host at every write.
    pub async fn connect_following(
        url: &str,
        follow: Option<Follow>,
        run: &str,
        timeout: Duration,
    ) -> Result<PgCanary, CanaryError> {
        let shown_url = crate::model::redact::url(url);
        let setup = |reason: String| CanaryError::Setup {
            url: shown_url.clone(),
            reason,
        };
        let options: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| setup(e.to_string()))?;
        let canary = PgCanary {
            options,
            follow,
            timeout,
            current: tokio::sync::Mutex::new(None),
            run: run.to_string(),
            shown_url: shown_url.clone(),
        };
        let pool = canary.pool().await.map_err(setup)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS lifeboat_canary (run TEXT NOT NULL, seq BIGINT NOT NULL, \
             sent_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (run, seq))",
        )
        .execute(&pool)
        .await
        .map_err(|e| setup(e.to_string()))?;
        Ok(canary)
    }

    /// The pool for where the host points now (a new one when it moved).
    async fn pool(&self) -> Result<PgPool, String> {
        let host = match &self.follow {
            Some(f) => f.resolve(self.timeout).await?,
            None => String::new(),
        };
        let mut current = self.current.lock().await;
        if let Some((h, pool)) = current.as_ref()
            && *h == host
        {
            return Ok(pool.clone());
        }
        let options = if host.is_empty() {
            self.options.clone()
        } else {
            self.options.clone().host(&host)
        };
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(self.timeout)
            .connect_lazy_with(options);
        if let Some((old, p)) = current.replace((host.clone(), pool.clone())) {
            tracing::info!(from = %old, to = %host, "canary host moved");
            tokio::spawn(async move { p.close().await });
        }
        Ok(pool)
    }

    async fn write(&self, seq: u64) -> Result<(), String> {
        let pool = self.pool().await?;
        sqlx::query("INSERT INTO lifeboat_canary (run, seq) VALUES ($1, $2)")
            .bind(&self.run)
            .bind(seq as i64)
            .execute(&pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The sequence numbers of this run found in the table now.
    pub async fn survivors(&self) -> Result<BTreeSet<u64>, CanaryError> {
        let read_back = |reason: String| CanaryError::ReadBack {
            url: self.shown_url.clone(),
            reason,
        };
        let pool = self.pool().await.map_err(read_back)?;
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT seq FROM lifeboat_canary WHERE run = $1 ORDER BY seq")
                .bind(&self.run)
                .fetch_all(&pool)
                .await
                .map_err(|e| read_back(e.to_string()))?;
        Ok(rows.into_iter().map(|s| s as u64).collect())
    }

    pub async fn close(&self) {
        if let Some((_, pool)) = self.current.lock().await.take() {
            pool.close().await;
        }
    }
}

/// A Redis canary for one drill run: each write is `SET lifeboat:canary:<run>:<seq> <ms>`
/// (kept 7 days) on the service's URL; the survivors are the keys of the run found after
/// recovery (`SCAN ... MATCH lifeboat:canary:<run>:*`). Acknowledged means the server
/// answered `OK`: in its memory, not necessarily on its disk (what a kill then loses is the
/// measured RPO).
pub struct RedisCanary {
    url: String,
    follow: Option<Follow>,
    timeout: Duration,
    /// Connections not in use, with the address they were made to.
    idle: std::sync::Mutex<Vec<(String, crate::kinds::redis::client::Client)>>,
    run: String,
    shown_url: String,
}

/// How long a Redis canary key is kept.
const REDIS_KEY_TTL_SECS: &str = "604800";

impl RedisCanary {
    /// Connects (the service must answer now) and checks that a key can be written.
    pub async fn connect(
        url: &str,
        follow: Option<Follow>,
        run: &str,
        timeout: Duration,
    ) -> Result<RedisCanary, CanaryError> {
        let shown_url = crate::model::redact::url(url);
        crate::kinds::redis::client::Conn::parse(url).map_err(|reason| CanaryError::Setup {
            url: shown_url.clone(),
            reason,
        })?;
        let canary = RedisCanary {
            url: url.to_string(),
            follow,
            timeout,
            idle: std::sync::Mutex::new(Vec::new()),
            run: run.to_string(),
            shown_url: shown_url.clone(),
        };
        let key = format!("lifeboat:canary:{run}:setup");
        match tokio::time::timeout(
            timeout,
            canary.cmd(vec![
                "SET".into(),
                key,
                "0".into(),
                "EX".into(),
                REDIS_KEY_TTL_SECS.into(),
            ]),
        )
        .await
        {
            Ok(Ok(_)) => Ok(canary),
            Ok(Err(reason)) => Err(CanaryError::Setup {
                url: shown_url,
                reason,
            }),
            Err(_) => Err(CanaryError::Setup {
                url: shown_url,
                reason: format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// Runs one command on an idle connection to where the host points now (or a new one);
    /// an error reply is an `Err`.
    async fn cmd(&self, args: Vec<String>) -> Result<crate::kinds::redis::client::Reply, String> {
        use crate::kinds::redis::client::{Conn, Reply};
        let host = match &self.follow {
            Some(f) => Some(f.resolve(self.timeout).await?),
            None => None,
        };
        let url = match &host {
            Some(h) => {
                let mut u = url::Url::parse(&self.url).map_err(|e| e.to_string())?;
                u.set_host(Some(h)).map_err(|e| e.to_string())?;
                u.to_string()
            }
            None => self.url.clone(),
        };
        let addr = host.unwrap_or_default();
        let reused = {
            let mut idle = self
                .idle
                .lock()
                .map_err(|_| "canary connections poisoned".to_string())?;
            idle.retain(|(a, _)| *a == addr);
            idle.pop().map(|(_, c)| c)
        };
        let (client, reply) = tokio::task::spawn_blocking(move || {
            let mut client = match reused {
                Some(c) => c,
                None => Conn::parse(&url)?.connect()?,
            };
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            let reply = client.cmd(&words).map_err(|e| e.to_string())?;
            Ok::<_, String>((client, reply))
        })
        .await
        .map_err(|e| e.to_string())??;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((addr, client));
        }
        match reply {
            Reply::Error(e) => Err(e),
            r => Ok(r),
        }
    }

    /// The sequence numbers of this run found on the server now.
    pub async fn survivors(&self) -> Result<BTreeSet<u64>, CanaryError> {
        use crate::kinds::redis::client::Reply;
        let prefix = format!("lifeboat:canary:{}:", self.run);
        let mut out = BTreeSet::new();
        let mut cursor = "0".to_string();
        loop {
            let reply = self
                .cmd(vec![
                    "SCAN".into(),
                    cursor.clone(),
                    "MATCH".into(),
                    format!("{prefix}*"),
                    "COUNT".into(),
                    "1000".into(),
                ])
                .await
                .map_err(|reason| CanaryError::ReadBack {
                    url: self.shown_url.clone(),
                    reason,
                })?;
            let Reply::Array(Some(parts)) = reply else {
                return Err(CanaryError::ReadBack {
                    url: self.shown_url.clone(),
                    reason: "SCAN answered no array".into(),
                });
            };
            let mut parts = parts.into_iter();
            cursor = parts.next().map(|c| c.text()).unwrap_or_default();
            if let Some(Reply::Array(Some(keys))) = parts.next() {
                out.extend(
                    keys.iter()
                        .filter_map(|k| k.text().strip_prefix(&prefix)?.parse::<u64>().ok()),
                );
            }
            if cursor == "0" || cursor.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// What a drill's canary writes to: one `write` per sequence number.
pub trait Writer: Send + Sync + 'static {
    fn write(&self, seq: u64) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

impl Writer for PgCanary {
    async fn write(&self, seq: u64) -> Result<(), String> {
        PgCanary::write(self, seq).await
    }
}

impl Writer for RedisCanary {
    async fn write(&self, seq: u64) -> Result<(), String> {
        let key = format!("lifeboat:canary:{}:{seq}", self.run);
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        self.cmd(vec![
            "SET".into(),
            key,
            ms.to_string(),
            "EX".into(),
            REDIS_KEY_TTL_SECS.into(),
        ])
        .await
        .map(|_| ())
    }
}

/// A drill's canary, by the scheme of its URL.
pub enum AnyCanary {
    Pg(Box<PgCanary>),
    Redis(RedisCanary),
}

impl AnyCanary {
    /// `redis://` → [`RedisCanary`], else [`PgCanary`].
    pub async fn connect(
        url: &str,
        follow: Option<Follow>,
        run: &str,
        timeout: Duration,
    ) -> Result<AnyCanary, CanaryError> {
        if url.starts_with("redis://") {
            RedisCanary::connect(url, follow, run, timeout)
                .await
                .map(AnyCanary::Redis)
        } else {
            PgCanary::connect_following(url, follow, run, timeout)
                .await
                .map(|c| AnyCanary::Pg(Box::new(c)))
        }
    }

    /// Where the canaries are, for the journal's evidence.
    pub fn describe(&self, run: &str, shown_url: &str) -> String {
        match self {
            AnyCanary::Pg(_) => {
                format!("canary rows of run {run} in lifeboat_canary at {shown_url}")
            }
            AnyCanary::Redis(_) => {
                format!("canary keys lifeboat:canary:{run}:<seq> at {shown_url} (kept 7 days)")
            }
        }
    }

    pub async fn survivors(&self) -> Result<BTreeSet<u64>, CanaryError> {
        match self {
            AnyCanary::Pg(c) => c.survivors().await,
            AnyCanary::Redis(c) => c.survivors().await,
        }
    }

    pub async fn close(&self) {
        if let AnyCanary::Pg(c) = self {
            c.close().await;
        }
    }
}

impl Writer for AnyCanary {
    async fn write(&self, seq: u64) -> Result<(), String> {
        match self {
            AnyCanary::Pg(c) => c.write(seq).await,
            AnyCanary::Redis(c) => Writer::write(c, seq).await,
        }
    }
}

/// Writes a canary every `interval` until `stop`, then waits for the writes in flight (each
/// bounded by `timeout`); every write's outcome, in sequence order.
pub async fn write_until<C: Writer>(
    canary: Arc<C>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
) -> Vec<Canary> {
    let (acks, _) = tokio::sync::watch::channel(None);
    write_observed(canary, clock, interval, timeout, stop, acks).await
}

/// [`write_until`], publishing the send time of the newest acknowledged write on `acks` as
/// it happens (the drill runner waits on it for the service to be back).
pub async fn write_observed<C: Writer>(
    canary: Arc<C>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
    acks: tokio::sync::watch::Sender<Option<chrono::DateTime<chrono::Utc>>>,
) -> Vec<Canary> {
    let acks = Arc::new(acks);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (canary, clock, acks) = (canary.clone(), clock.clone(), acks.clone());
        let n = seq;
        seq += 1;
        tasks.spawn(async move {
            let sent_at = clock.now();
            let ack = match tokio::time::timeout(timeout, canary.write(n)).await {
                Ok(Ok(())) => {
                    acks.send_modify(|newest| {
                        if newest.is_none_or(|t| t < sent_at) {
                            *newest = Some(sent_at);
                        }
                    });
                    Ack::Acknowledged { at: clock.now() }
                }
                Ok(Err(e)) => {
                    tracing::debug!(seq = n, cause = %e, "canary write failed");
                    Ack::Failed
                }
                Err(_) => Ack::Timeout,
            };
            Canary {
                seq: n,
                sent_at,
                ack,
            }
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(c) = done {
            out.push(c);
        }
    }
    out.sort_by_key(|c| c.seq);
    out
}
