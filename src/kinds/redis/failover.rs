//! Redis replication for failover between sites: the probe (role, `master_link_status`,
//! replication offset), fence, promotion (`REPLICAOF NO ONE`) and a write probe.
//!
//! # Guarantees
//! A fenced primary refuses writes with NOREPLICAS (`min-replicas-to-write` set beyond any
//! replica count), confirmed by reading the setting back; `CLIENT PAUSE WRITE` is not used
//! because paused writes are applied later instead of refused.
//!
//! # Caveats
//! The fence survives a restart only where the server has a config file (`CONFIG REWRITE`).

use super::client::{Conn, field};
use crate::kinds::probe::{Probe, ProbeError, Role};

pub(super) async fn probe(url: &str) -> Result<Probe, ProbeError> {
    let shown = crate::model::redact::url(url);
    let url = url.to_string();
    let shown2 = shown.clone();
    let info = tokio::task::spawn_blocking(move || -> Result<_, ProbeError> {
        let conn = Conn::parse(&url).map_err(|reason| ProbeError::Unreachable {
            service: shown2.clone(),
            reason,
        })?;
        let mut client = conn.connect().map_err(|reason| ProbeError::Unreachable {
            service: shown2.clone(),
            reason,
        })?;
        let info = client.info("replication").map_err(|e| ProbeError::Failed {
            service: shown2.clone(),
            reason: conn.scrub(&e),
        })?;
        let fenced = client
            .must(&["CONFIG", "GET", "min-replicas-to-write"])
            .is_ok_and(|r| r.text().split_whitespace().last() == Some(FENCED_MIN_REPLICAS));
        Ok((info, fenced))
    })
    .await
    .map_err(|e| ProbeError::Failed {
        service: shown.clone(),
        reason: e.to_string(),
    })??;
    let (info, fenced) = info;
    let num = |key: &str| field(&info, key).and_then(|v| v.parse::<u64>().ok());
    match field(&info, "role") {
        Some("master") => Ok(Probe {
            role: Role::Primary,
            fenced,
            position: num("master_repl_offset"),
            lag_seconds: None,
            streaming: None,
        }),
        Some("slave") => {
            let up = field(&info, "master_link_status") == Some("up");
            Ok(Probe {
                role: Role::Replica,
                fenced: false,
                position: num("slave_repl_offset"),
                lag_seconds: if up { Some(0.0) } else { None },
                streaming: Some(up),
            })
        }
        other => Err(ProbeError::Failed {
            service: shown,
            reason: format!("unknown replication role {other:?}"),
        }),
    }
}

/// Writes to a fenced primary fail with NOREPLICAS: it waits for more replicas than exist.
const FENCED_MIN_REPLICAS: &str = "2147483647";

/// Runs `f` with a connected client on a blocking thread.
async fn with_client<T: Send + 'static>(
    url: &str,
    what: &'static str,
    f: impl FnOnce(&mut super::client::Client) -> Result<T, String> + Send + 'static,
) -> Result<T, ProbeError> {
    let shown = crate::model::redact::url(url);
    let url = url.to_string();
    let shown2 = shown.clone();
    tokio::task::spawn_blocking(move || -> Result<T, ProbeError> {
        let conn = Conn::parse(&url).map_err(|reason| ProbeError::Unreachable {
            service: shown2.clone(),
            reason,
        })?;
        let mut client = conn.connect().map_err(|reason| ProbeError::Unreachable {
            service: shown2.clone(),
            reason,
        })?;
        f(&mut client).map_err(|e| ProbeError::Failed {
            service: shown2.clone(),
            reason: format!("{what}: {}", conn.scrub(&e)),
        })
    })
    .await
    .map_err(|e| ProbeError::Failed {
        service: shown,
        reason: e.to_string(),
    })?
}

fn role(c: &mut super::client::Client) -> Result<String, String> {
    let info = c.info("replication")?;
    Ok(field(&info, "role").unwrap_or("").to_string())
}

/// Fences a primary: `min-replicas-to-write` beyond any count, confirmed by reading it back
/// (persisted with `CONFIG REWRITE` where the server has a config file).
pub(super) async fn fence(url: &str) -> Result<(), ProbeError> {
    with_client(url, "fence", |c| {
        if role(c)? != "master" {
            return Ok(());
        }
        c.must(&[
            "CONFIG",
            "SET",
            "min-replicas-to-write",
            FENCED_MIN_REPLICAS,
        ])?;
        let _ = c.cmd(&["CONFIG", "REWRITE"]);
        let got = c.must(&["CONFIG", "GET", "min-replicas-to-write"])?.text();
        if got.split_whitespace().last() == Some(FENCED_MIN_REPLICAS) {
            Ok(())
        } else {
            Err(format!("min-replicas-to-write reads back as `{got}`"))
        }
    })
    .await
}

pub(super) async fn unfence(url: &str) -> Result<(), ProbeError> {
    with_client(url, "unfence", |c| {
        c.must(&["CONFIG", "SET", "min-replicas-to-write", "0"])?;
        let _ = c.cmd(&["CONFIG", "REWRITE"]);
        Ok(())
    })
    .await
}

/// `REPLICAOF NO ONE`, then waits until the server answers as a master.
pub(super) async fn promote(url: &str, wait: std::time::Duration) -> Result<(), ProbeError> {
    unfence(url).await?;
    with_client(url, "promote", move |c| {
        c.must(&["REPLICAOF", "NO", "ONE"])?;
        let start = std::time::Instant::now();
        loop {
            if role(c)? == "master" {
                return Ok(());
            }
            if start.elapsed() >= wait {
                return Err(format!("still not a master after {wait:?}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .await
}

/// SET, GET and DEL of a probe key.
pub(super) async fn verify_writable(url: &str) -> Result<(), ProbeError> {
    with_client(url, "write probe", |c| {
        let key = "lifeboat:failover-write-probe";
        c.must(&["SET", key, "42", "PX", "60000"])?;
        let got = c.must(&["GET", key])?.text();
        let _ = c.cmd(&["DEL", key]);
        if got == "42" {
            Ok(())
        } else {
            Err(format!("read back `{got}`"))
        }
    })
    .await
}

/// `REPLICAOF` the primary at `primary_url` (with `masterauth`/`masteruser` from its URL),
/// then waits until `master_link_status:up` to that host and port.
pub(super) async fn repoint(
    url: &str,
    primary_url: &str,
    wait: std::time::Duration,
) -> Result<(), ProbeError> {
    let primary = Conn::parse(primary_url).map_err(|reason| ProbeError::Failed {
        service: crate::model::redact::url(url),
        reason: format!("the new primary's URL: {reason}"),
    })?;
    with_client(url, "repoint", move |c| {
        if let Some(p) = &primary.password {
            c.must(&["CONFIG", "SET", "masterauth", p])
                .map_err(|e| primary.scrub(&e))?;
        }
        if let Some(u) = &primary.username {
            c.must(&["CONFIG", "SET", "masteruser", u])?;
        }
        let port = primary.port.to_string();
        let info = c.info("replication")?;
        let already = field(&info, "master_host") == Some(primary.host.as_str())
            && field(&info, "master_port") == Some(port.as_str());
        if !already {
            c.must(&["REPLICAOF", &primary.host, &port])?;
        }
        let _ = c.cmd(&["CONFIG", "REWRITE"]);
        let start = std::time::Instant::now();
        loop {
            let info = c.info("replication")?;
            if field(&info, "master_host") == Some(primary.host.as_str())
                && field(&info, "master_port") == Some(port.as_str())
                && field(&info, "master_link_status") == Some("up")
            {
                return Ok(());
            }
            if start.elapsed() >= wait {
                return Err(format!(
                    "not linked to {}:{port} after {wait:?}",
                    primary.host
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    })
    .await
}
