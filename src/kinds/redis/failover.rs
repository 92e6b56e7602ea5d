//! Redis replication for failover between sites: the probe (role, `master_link_status`,
//! replication offset).
//!
//! # Caveats
//! Fencing and promotion of Redis (`CLIENT PAUSE WRITE`, `REPLICAOF NO ONE`) are not done yet:
//! [`crate::kinds::Kind::fence`] and `promote` answer "not supported" for redis.

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
        client.info("replication").map_err(|e| ProbeError::Failed {
            service: shown2.clone(),
            reason: conn.scrub(&e),
        })
    })
    .await
    .map_err(|e| ProbeError::Failed {
        service: shown.clone(),
        reason: e.to_string(),
    })??;
    let num = |key: &str| field(&info, key).and_then(|v| v.parse::<u64>().ok());
    match field(&info, "role") {
        Some("master") => Ok(Probe {
            role: Role::Primary,
            fenced: false,
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
