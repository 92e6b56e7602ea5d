//! PostgreSQL streaming replication for failover between sites: probe (role, replay
//! position and lag), fence (read-only for every session, other client sessions terminated),
//! promote (`pg_promote()`, then writable).
//!
//! # Guarantees
//! - The fence is `ALTER SYSTEM SET default_transaction_read_only = on` + reload: it lasts
//!   across a restart of the server, and is confirmed on a fresh session before `fence`
//!   returns. Client sessions other than ours are terminated, so no transaction begun before
//!   the fence goes on writing.
//! - `promote` returns only once a fresh session is writable (not in recovery, not read-only).
//! - All three are safe to repeat.
//!
//! # Caveats
//! A client that explicitly asks for `BEGIN READ WRITE` or sets `default_transaction_read_only
//! = off` itself can still write to a fenced primary: revoke such rights from application
//! roles. Terminating sessions needs a superuser or `pg_signal_backend`.

use std::time::{Duration, Instant};

use super::Conn;
use crate::kinds::probe::{Probe, ProbeError, Role, TIMEOUT};

fn shown(url: &str) -> String {
    crate::model::redact::url(url)
}

async fn connect(url: &str) -> Result<(Conn, sqlx::PgConnection), ProbeError> {
    let unreachable = |reason: String| ProbeError::Unreachable {
        service: shown(url),
        reason,
    };
    let conn = Conn::parse(url).map_err(unreachable)?;
    let db = tokio::time::timeout(TIMEOUT, conn.connect())
        .await
        .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
        .map_err(unreachable)?;
    Ok((conn, db))
}

fn failed(url: &str, conn: &Conn, what: &str, e: impl std::fmt::Display) -> ProbeError {
    let secrets = conn.secrets();
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    ProbeError::Failed {
        service: shown(url),
        reason: format!(
            "{what}: {}",
            crate::model::redact::scrub(&e.to_string(), &secrets)
        ),
    }
}

const PROBE: &str = "SELECT pg_is_in_recovery(), \
    current_setting('default_transaction_read_only') = 'on', \
    (CASE WHEN pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0') \
          ELSE pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0') END)::int8, \
    (CASE WHEN NOT pg_is_in_recovery() THEN NULL \
          WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
          ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END)::float8, \
    (SELECT count(*) > 0 FROM pg_stat_wal_receiver WHERE status = 'streaming')";

type Row = (bool, bool, Option<i64>, Option<f64>, bool);

pub(super) async fn probe(url: &str) -> Result<Probe, ProbeError> {
    let (conn, mut db) = connect(url).await?;
    let row: Row = tokio::time::timeout(TIMEOUT, sqlx::query_as(PROBE).fetch_one(&mut db))
        .await
        .map_err(|_| failed(url, &conn, "probe", "no answer in time"))?
        .map_err(|e| failed(url, &conn, "probe", e))?;
    let (in_recovery, read_only, position, lag_seconds, streaming) = row;
    Ok(Probe {
        role: if in_recovery {
            Role::Replica
        } else {
            Role::Primary
        },
        fenced: !in_recovery && read_only,
        position: position.and_then(|p| u64::try_from(p).ok()),
        lag_seconds: lag_seconds.map(|s| s.max(0.0)),
        streaming: in_recovery.then_some(streaming),
    })
}

async fn exec(
    url: &str,
    conn: &Conn,
    db: &mut sqlx::PgConnection,
    sql: &'static str,
) -> Result<(), ProbeError> {
    tokio::time::timeout(TIMEOUT, sqlx::query(sql).execute(&mut *db))
        .await
        .map_err(|_| failed(url, conn, sql, "no answer in time"))?
        .map_err(|e| failed(url, conn, sql, e))?;
    Ok(())
}

/// Polls fresh sessions until `check` holds, up to `wait`.
async fn until(
    url: &str,
    wait: Duration,
    what: &str,
    check: &'static str,
) -> Result<(), ProbeError> {
    let start = Instant::now();
    loop {
        let (conn, mut db) = connect(url).await?;
        let ok: Result<(bool,), _> = sqlx::query_as(check).fetch_one(&mut db).await;
        match ok {
            Ok((true,)) => return Ok(()),
            Ok((false,)) if start.elapsed() >= wait => {
                return Err(failed(url, &conn, what, format!("not done after {wait:?}")));
            }
            Err(e) if start.elapsed() >= wait => return Err(failed(url, &conn, what, e)),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

const FENCED: &str =
    "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'";
const WRITABLE: &str =
    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'";

pub(super) async fn fence(url: &str) -> Result<(), ProbeError> {
    let (conn, mut db) = connect(url).await?;
    let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
        .fetch_one(&mut db)
        .await
        .map_err(|e| failed(url, &conn, "fence", e))?;
    if !in_recovery {
        exec(
            url,
            &conn,
            &mut db,
            "ALTER SYSTEM SET default_transaction_read_only = on",
        )
        .await?;
        exec(url, &conn, &mut db, "SELECT pg_reload_conf()").await?;
        // New sessions read-only first, then the old ones go.
        until(url, Duration::from_secs(10), "fence", FENCED).await?;
        exec(
            url,
            &conn,
            &mut db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .await?;
    }
    until(url, Duration::from_secs(10), "fence", FENCED).await
}

pub(super) async fn unfence(url: &str) -> Result<(), ProbeError> {
    let (conn, mut db) = connect(url).await?;
    exec(
        url,
        &conn,
        &mut db,
        "ALTER SYSTEM RESET default_transaction_read_only",
    )
    .await?;
    exec(url, &conn, &mut db, "SELECT pg_reload_conf()").await
}

pub(super) async fn promote(url: &str, wait: Duration) -> Result<(), ProbeError> {
    let (conn, mut db) = connect(url).await?;
    // A replica made from a fenced primary inherits its postgresql.auto.conf: reset first.
    unfence(url).await?;
    let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
        .fetch_one(&mut db)
        .await
        .map_err(|e| failed(url, &conn, "promote", e))?;
    if in_recovery {
        let secs = i32::try_from(wait.as_secs().max(1)).unwrap_or(i32::MAX);
        let r: Result<(bool,), _> = sqlx::query_as("SELECT pg_promote(true, $1)")
            .bind(secs)
            .fetch_one(&mut db)
            .await;
        if let Err(e) = r {
            // Promoted meanwhile (a repeated call): the check below decides.
            tracing::warn!(error = %failed(url, &conn, "pg_promote()", e), "pg_promote failed");
        }
    }
    until(url, wait, "promote (waiting until writable)", WRITABLE).await
}

pub(super) async fn verify_writable(url: &str) -> Result<(), ProbeError> {
    let (conn, mut db) = connect(url).await?;
    let mut tx = sqlx::Connection::begin(&mut db)
        .await
        .map_err(|e| failed(url, &conn, "write probe", e))?;
    for sql in [
        "CREATE TEMP TABLE lifeboat_write_probe (n int) ON COMMIT DROP",
        "INSERT INTO lifeboat_write_probe VALUES (42)",
    ] {
        sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| failed(url, &conn, "write probe", e))?;
    }
    let (n,): (i32,) = sqlx::query_as("SELECT n FROM lifeboat_write_probe")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| failed(url, &conn, "write probe", e))?;
    let _ = tx.rollback().await;
    let (writable,): (bool,) = sqlx::query_as(WRITABLE)
        .fetch_one(&mut db)
        .await
        .map_err(|e| failed(url, &conn, "write probe", e))?;
    if n != 42 || !writable {
        return Err(failed(
            url,
            &conn,
            "write probe",
            "the server does not take writes",
        ));
    }
    Ok(())
}
