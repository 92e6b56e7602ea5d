//! Probing, fencing and promoting a live service for failover between sites
//! ([`crate::policy::failover`]): what [`super::Kind::probe`], [`super::Kind::fence`] and
//! [`super::Kind::promote`] answer, and the probe-only kinds (`http`, `tcp`).
//!
//! # Guarantees
//! - Every call is bounded by [`TIMEOUT`]-ish deadlines: a hung server is a failed probe,
//!   never a hung controller.
//! - Errors never carry the URL's password (they are scrubbed).
//!
//! # Caveats
//! A probe says what one vantage point sees; only the quorum's verdict decides anything.

use std::time::Duration;

use serde::Serialize;

/// How long one probe may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A service's role in its replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// Follows a primary.
    Replica,
    /// Probe-only services, and primaries fenced read-only.
    Other,
}

/// What a probe saw of a reachable service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub role: Role,
    /// Primary fenced (read-only).
    pub fenced: bool,
    /// Replication position: the WAL LSN as a number (PostgreSQL: current on a primary,
    /// replayed on a replica), the replication offset (Redis). Lag in bytes is the
    /// primary's position minus the replica's.
    pub position: Option<u64>,
    /// Seconds the replica's replay is behind (0 when it has replayed all it received).
    pub lag_seconds: Option<f64>,
    /// The replica's link to its primary is up (Redis `master_link_status:up`; PostgreSQL a
    /// WAL receiver streaming).
    pub streaming: Option<bool>,
}

impl Probe {
    pub fn up() -> Probe {
        Probe {
            role: Role::Other,
            fenced: false,
            position: None,
            lag_seconds: None,
            streaming: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{service} is unreachable: {reason}")]
    Unreachable { service: String, reason: String },
    #[error("{service}: {reason}")]
    Failed { service: String, reason: String },
    #[error(
        "{kind} services cannot be {what} by lifeboat; use `fence:`/`promote:` actions of the site instead"
    )]
    Unsupported { kind: String, what: &'static str },
}

impl ProbeError {
    pub fn kind(&self) -> crate::model::ErrorKind {
        use crate::model::ErrorKind;
        match self {
            ProbeError::Unreachable { .. } => ErrorKind::Unreachable,
            ProbeError::Failed { .. } => ErrorKind::Conflict,
            ProbeError::Unsupported { .. } => ErrorKind::Config,
        }
    }
}

/// A TCP connect to `tcp://HOST:PORT` (or `HOST:PORT`).
pub async fn tcp(url: &str) -> Result<Probe, ProbeError> {
    let addr = url
        .strip_prefix("tcp://")
        .unwrap_or(url)
        .trim_end_matches('/');
    let fail = |reason: String| ProbeError::Unreachable {
        service: format!("tcp://{addr}"),
        reason,
    };
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(Probe::up()),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no answer within {TIMEOUT:?}"))),
    }
}

/// An HTTP GET answering 2xx.
pub async fn http(url: &str) -> Result<Probe, ProbeError> {
    let shown = crate::model::redact::url(url);
    let fail = |reason: String| ProbeError::Unreachable {
        service: shown.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(crate::model::redact::url(&e.to_string())))?;
    if resp.status().is_success() {
        Ok(Probe::up())
    } else {
        Err(ProbeError::Failed {
            service: shown.clone(),
            reason: format!("answered {}", resp.status()),
        })
    }
}

/// An etcd member's health: `GET URL/health` answering `"health":"true"` (the member has a
/// leader and serves reads). `url` is the member's client URL, e.g. `http://etcd-0:2379`.
pub async fn etcd(url: &str) -> Result<Probe, ProbeError> {
    let base = url.trim_end_matches('/');
    let shown = crate::model::redact::url(base);
    let fail = |reason: String| ProbeError::Unreachable {
        service: shown.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client
        .get(format!("{base}/health"))
        .send()
        .await
        .map_err(|e| fail(crate::model::redact::url(&e.to_string())))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    let healthy = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("health")
                .and_then(|h| h.as_str().map(|s| s == "true"))
        })
        .unwrap_or(false);
    if status.is_success() && healthy {
        Ok(Probe::up())
    } else {
        Err(ProbeError::Failed {
            service: shown.clone(),
            reason: format!(
                "not healthy (answered {status}: {})",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        })
    }
}

/// Whether a replica that replayed up to `replayed` holds everything a primary inserted up to
/// `inserted` (PostgreSQL LSNs as numbers). An insert position just past a WAL page header
/// (24 or 40 bytes into an 8 KiB page) counts as the page boundary a replica's replay stops at.
pub fn caught_up(inserted: u64, replayed: u64) -> bool {
    const PAGE: u64 = 8192;
    const LONG_HEADER: u64 = 40;
    replayed >= inserted
        || (inserted % PAGE <= LONG_HEADER && replayed == inserted - inserted % PAGE)
}

/// Probes a service of `kind` (`postgres`, `redis`, `etcd`, `http`, `tcp`) at `url`.
pub async fn probe(kind: &str, url: &str) -> Result<Probe, ProbeError> {
    match kind {
        "http" => http(url).await,
        "tcp" => tcp(url).await,
        "etcd" => etcd(url).await,
        other => match super::kind(other) {
            Some(k) => k.probe(url).await,
            None => Err(ProbeError::Unsupported {
                kind: other.to_string(),
                what: "probed",
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_allows_only_a_page_header() {
        assert!(caught_up(1000, 1000));
        assert!(caught_up(1000, 1200));
        assert!(!caught_up(1000, 999));
        assert!(caught_up(8192 * 3 + 24, 8192 * 3));
        assert!(caught_up(8192 * 3 + 40, 8192 * 3));
        assert!(!caught_up(8192 * 3 + 64, 8192 * 3));
        assert!(!caught_up(8192 * 3 + 24, 8192 * 3 - 8));
    }

    #[tokio::test]
    async fn tcp_and_http_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        assert_eq!(
            tcp(&format!("tcp://{addr}")).await.expect("tcp up").role,
            Role::Other
        );
        assert!(http(&format!("http://{addr}/healthz")).await.is_ok());
        let e = http(&format!("http://{addr}/nope")).await.expect_err("404");
        assert!(e.to_string().contains("404"), "{e}");
        // A closed port.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        assert!(tcp(&format!("127.0.0.1:{port}")).await.is_err());
        assert!(matches!(
            probe("mongodb", "x").await,
            Err(ProbeError::Unsupported { .. })
        ));
    }
}
