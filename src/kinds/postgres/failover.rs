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
    // A replica made from a fenced primary inherits its postgresql.auto.conf: reset it, after
    // the promotion. A reload during recovery restarts the WAL receiver's retry cycle, and a
    // promotion requested then waits out `wal_retrieve_retry_interval` (5 s by default).
    unfence(url).await?;
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

/// A libpq conninfo value, quoted.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The conninfo of `primary_url` for `primary_conninfo` (host, port, user, password, and
/// `sslmode` if the URL sets one), and the port.
fn primary_conninfo(primary_url: &str) -> Result<(String, u16), String> {
    let u = url::Url::parse(primary_url).map_err(|e| format!("the new primary's URL: {e}"))?;
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the new primary's URL names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port().unwrap_or(5432);
    let user = match u.username() {
        "" => "postgres".to_string(),
        name => super::percent_decode(name),
    };
    let mut out = format!(
        "host={} port={port} user={} application_name=lifeboat",
        conninfo_value(&host),
        conninfo_value(&user)
    );
    if let Some(p) = u.password() {
        out.push_str(&format!(
            " password={}",
            conninfo_value(&super::percent_decode(p))
        ));
    }
    if let Some((_, mode)) = u.query_pairs().find(|(k, _)| k == "sslmode") {
        out.push_str(&format!(" sslmode={}", conninfo_value(&mode)));
    }
    Ok((out, port))
}

/// Points the standby at `url` at the primary at `primary_url`: `ALTER SYSTEM SET
/// primary_conninfo` + reload (PostgreSQL 13 or later restarts its WAL receiver on reload;
/// `recovery_target_timeline = latest`, the default, follows the promotion's new timeline),
/// then waits until it streams from that port.
pub(super) async fn repoint(
    url: &str,
    primary_url: &str,
    wait: Duration,
) -> Result<(), ProbeError> {
    let (conn, mut db) = connect(url).await?;
    let mut secrets = conn.secrets();
    if let Ok(p) = super::Conn::parse(primary_url) {
        secrets.extend(p.secrets());
    }
    let scrub = |e: &dyn std::fmt::Display| {
        let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
        crate::model::redact::scrub(&e.to_string(), &s)
    };
    let (in_recovery,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
        .fetch_one(&mut db)
        .await
        .map_err(|e| failed(url, &conn, "repoint", e))?;
    if !in_recovery {
        return Err(ProbeError::Failed {
            service: shown(url),
            reason: "is not a standby (an old primary?): run `lifeboat failover rejoin SITE` to make it one".into(),
        });
    }
    let (conninfo, port) = primary_conninfo(primary_url).map_err(|reason| ProbeError::Failed {
        service: shown(url),
        reason,
    })?;
    let sql = format!(
        "ALTER SYSTEM SET primary_conninfo = '{}'",
        conninfo.replace('\'', "''")
    );
    // Audited: the conninfo is one SQL string literal with its quotes doubled.
    tokio::time::timeout(
        TIMEOUT,
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut db),
    )
    .await
    .map_err(|_| failed(url, &conn, "repoint", "no answer in time"))?
    .map_err(|e| ProbeError::Failed {
        service: shown(url),
        reason: format!("repoint: {}", scrub(&e)),
    })?;
    exec(url, &conn, &mut db, "SELECT pg_reload_conf()").await?;
    let start = Instant::now();
    loop {
        let r: Result<Option<(bool,)>, _> = sqlx::query_as(
            "SELECT status = 'streaming' AND sender_port = $1 FROM pg_stat_wal_receiver",
        )
        .bind(i32::from(port))
        .fetch_optional(&mut db)
        .await;
        if let Ok(Some((true,))) = r {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(failed(
                url,
                &conn,
                "repoint",
                format!(
                    "not streaming from the new primary after {wait:?} (check its pg_hba.conf for replication, and that this standby did not replay past the promotion: then `lifeboat failover rejoin`)"
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The conninfo of `primary_url` without its password (that goes in `PGPASSWORD`, never on
/// a command line), and the password.
fn conninfo_for_tools(primary_url: &str) -> Result<(String, Option<String>), String> {
    let u = url::Url::parse(primary_url).map_err(|e| format!("the new primary's URL: {e}"))?;
    let password = u.password().map(super::percent_decode);
    let mut without = u.clone();
    let _ = without.set_password(None);
    let (conninfo, _) = primary_conninfo(without.as_str())?;
    Ok((conninfo, password))
}

/// Runs a PostgreSQL tool from `bin` as the owner of `data_dir` (when we are root and it is
/// not), with `PGPASSWORD`; returns its stderr's tail on failure.
fn tool(
    bin: &std::path::Path,
    program: &str,
    args: &[&std::ffi::OsStr],
    data_dir: &std::path::Path,
    password: Option<&str>,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(bin.join(program));
    cmd.args(args)
        .env_remove("PGPASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if data_dir.is_dir() {
        cmd.current_dir(data_dir);
    }
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let owner = std::fs::metadata(data_dir)
        .or_else(|_| std::fs::metadata(data_dir.parent().unwrap_or(data_dir)))
        .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    if me == 0 && owner.uid() != 0 {
        cmd.uid(owner.uid()).gid(owner.gid());
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.join(program).display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

/// `postmaster.opts`: the server binary's directory and the options it was started with
/// (without the binary), to start it again the same way.
fn postmaster_opts(data_dir: &std::path::Path) -> Result<(std::path::PathBuf, String), String> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.opts")).map_err(|e| {
        format!(
            "cannot read {}/postmaster.opts ({e}): has this server ever run from there?",
            data_dir.display()
        )
    })?;
    let text = text.trim();
    let (binary, rest) = match text.strip_prefix('"') {
        Some(t) => t.split_once('"').unwrap_or((t, "")),
        None => text.split_once(' ').unwrap_or((text, "")),
    };
    let bin = std::path::Path::new(binary)
        .parent()
        .ok_or_else(|| format!("postmaster.opts names no server binary: {binary}"))?
        .to_path_buf();
    Ok((bin, rest.trim().to_string()))
}

/// Turns the old primary whose data directory is `data_dir` (on this host) into a standby of
/// the primary at `primary_url`: stops it (`pg_ctl stop -m fast`), `pg_rewind`s it from the
/// new primary, or when that is impossible (no `wal_log_hints`/checksums, WAL gone) moves the
/// directory aside (kept: it may hold writes the new primary never got) and takes a fresh
/// `pg_basebackup`; starts it again with its `postmaster.opts` and repoints it (waits until
/// it streams). A server that already is a standby is only repointed. Returns what it did.
pub(super) async fn rejoin(
    url: &str,
    primary_url: &str,
    data_dir: Option<&std::path::Path>,
    wait: Duration,
) -> Result<String, ProbeError> {
    let fail = |reason: String| ProbeError::Failed {
        service: shown(url),
        reason,
    };
    if let Ok(p) = probe(url).await
        && p.role == Role::Replica
    {
        repoint(url, primary_url, wait).await?;
        return Ok("already a standby: repointed at the primary".into());
    }
    let data_dir = data_dir
        .ok_or_else(|| {
            fail("not a standby, and no `data_dir:` is set for it: set sites[].services.NAME.data_dir (lifeboat runs pg_rewind there, on this host) or rebuild it as a standby by hand".into())
        })?
        .to_path_buf();
    let primary_url_owned = primary_url.to_string();
    let did = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let (bin, opts) = postmaster_opts(&data_dir)?;
        let (conninfo, password) = conninfo_for_tools(&primary_url_owned)?;
        let pw = password.as_deref();
        let d = data_dir.as_os_str();
        if data_dir.join("postmaster.pid").exists() {
            // Fast: a clean shutdown (pg_rewind needs one; a crashed server is recovered by
            // pg_rewind itself first).
            let _ = tool(&bin, "pg_ctl", &["stop".as_ref(), "-w".as_ref(), "-t".as_ref(), "60".as_ref(), "-m".as_ref(), "fast".as_ref(), "-D".as_ref(), d], &data_dir, None);
        }
        let source = format!("--source-server={conninfo}");
        let target = format!("--target-pgdata={}", data_dir.display());
        let how = match tool(
            &bin,
            "pg_rewind",
            &[target.as_ref(), source.as_ref(), "--write-recovery-conf".as_ref()],
            &data_dir,
            pw,
        ) {
            Ok(()) => "pg_rewind from the new primary".to_string(),
            Err(rewind) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = data_dir.with_file_name(format!(
                    "{}.before-rejoin-{stamp}",
                    data_dir.file_name().and_then(|n| n.to_str()).unwrap_or("data")
                ));
                std::fs::rename(&data_dir, &aside).map_err(|e| {
                    format!("pg_rewind failed ({rewind}) and the data directory cannot be moved aside: {e}")
                })?;
                {
                    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&data_dir)
                        .map_err(|e| format!("{}: {e}", data_dir.display()))?;
                    let m = std::fs::metadata(&aside).map_err(|e| e.to_string())?;
                    std::os::unix::fs::chown(&data_dir, Some(m.uid()), Some(m.gid()))
                        .map_err(|e| format!("chown {}: {e}", data_dir.display()))?;
                }
                let dbname = format!("--dbname={conninfo}");
                tool(
                    &bin,
                    "pg_basebackup",
                    &["-D".as_ref(), d, "-R".as_ref(), "-X".as_ref(), "stream".as_ref(), "-c".as_ref(), "fast".as_ref(), dbname.as_ref()],
                    &data_dir,
                    pw,
                )?;
                format!(
                    "a fresh pg_basebackup (pg_rewind was not possible: {rewind}); the old data directory is kept at {} (it may hold writes the new primary never got): remove it when done",
                    aside.display()
                )
            }
        };
        if !data_dir.join("standby.signal").exists() {
            std::fs::write(data_dir.join("standby.signal"), "").map_err(|e| e.to_string())?;
        }
        let _ = std::fs::remove_file(data_dir.join("postmaster.pid"));
        // A log file, so the server holds no pipe of ours.
        let log = data_dir.join("lifeboat-rejoin.log");
        tool(
            &bin,
            "pg_ctl",
            &["start".as_ref(), "-w".as_ref(), "-t".as_ref(), "60".as_ref(), "-D".as_ref(), d, "-l".as_ref(), log.as_os_str(), "-o".as_ref(), opts.as_ref()],
            &data_dir,
            None,
        )?;
        Ok(how)
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| {
        let secrets: Vec<String> = super::Conn::parse(primary_url)
            .map(|c| c.secrets())
            .unwrap_or_default();
        let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
        fail(crate::model::redact::scrub(&e, &s))
    })?;
    repoint(url, primary_url, wait).await?;
    Ok(format!("rejoined as a standby ({did})"))
}
