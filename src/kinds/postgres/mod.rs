//! PostgreSQL: `pg_dump -Fc -Z0` out (lifeboat compresses), `pg_restore --single-transaction`
//! in, so an interrupted or failed restore commits nothing. The password in the URL is passed
//! to the tools through `PGPASSWORD`, never on a command line.

mod failover;
pub mod scratch;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use async_trait::async_trait;
use sqlx::Connection;

use super::process::Process;
use super::{Dump, Facts, RestoreOptions, Sink, Source, SourceError, Target};
use serde::Deserialize;

use crate::model::SecretString;

/// Checks the form of a PostgreSQL URL at config load time.
pub fn check_url(url: &str) -> Result<(), String> {
    let shown = crate::model::redact::url(url);
    let parsed = url::Url::parse(url).map_err(|e| {
        format!("`{shown}` is not a URL ({e}); write postgres://USER@HOST:PORT/DATABASE")
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "`{shown}` is not a PostgreSQL URL; write postgres://USER@HOST:PORT/DATABASE"
        ));
    }
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err(format!(
            "`{shown}` names no database; write postgres://USER@HOST:PORT/DATABASE"
        ));
    }
    Ok(())
}

/// A connection URL split into what may be shown and the password.
struct Conn {
    /// Full URL, password included: only for sqlx.
    full: String,
    /// URL without the password: for command lines and messages.
    public: String,
    password: Option<String>,
}

impl Conn {
    fn parse(url: &str) -> Result<Conn, String> {
        check_url(url)?;
        let mut parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let mut password = parsed.password().map(percent_decode);
        let _ = parsed.set_password(None);
        // `?password=` (libpq accepts it) moves to PGPASSWORD too: never on a command line.
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        if pairs.iter().any(|(k, _)| k == "password") {
            let kept: Vec<&(String, String)> =
                pairs.iter().filter(|(k, _)| k != "password").collect();
            if password.is_none() {
                password = pairs
                    .iter()
                    .find(|(k, _)| k == "password")
                    .map(|(_, v)| v.clone());
            }
            if kept.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
        Ok(Conn {
            full: url.to_string(),
            public: parsed.to_string(),
            password,
        })
    }

    fn command(&self, bin_dir: Option<&Path>, program: &str) -> Command {
        let mut cmd = Command::new(tool(bin_dir, program));
        cmd.env_remove("PGPASSWORD");
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p);
        }
        cmd
    }

    fn secrets(&self) -> Vec<String> {
        self.password.iter().cloned().collect()
    }

    async fn connect(&self) -> Result<sqlx::PgConnection, String> {
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        sqlx::PgConnection::connect(&self.full)
            .await
            .map_err(|e| crate::model::redact::scrub(&e.to_string(), &secrets))
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn tool(bin_dir: Option<&Path>, program: &str) -> PathBuf {
    match bin_dir {
        Some(dir) => dir.join(program),
        None => PathBuf::from(program),
    }
}

fn tool_version(bin_dir: Option<&Path>, program: &str) -> Result<String, SourceError> {
    let out = Command::new(tool(bin_dir, program))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| super::ProcessError::Spawn {
            program: program.to_string(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub struct Postgres {
    name: String,
    conn: Result<Conn, String>,
    bin_dir: Option<PathBuf>,
}

impl Postgres {
    pub fn new(name: &str, spec: &PostgresSpec) -> Self {
        Postgres {
            name: name.to_string(),
            conn: Conn::parse(spec.url.expose()),
            bin_dir: spec.bin_dir.clone(),
        }
    }

    fn conn(&self) -> Result<&Conn, SourceError> {
        self.conn
            .as_ref()
            .map_err(|reason| SourceError::Unreachable {
                source_name: self.name.clone(),
                reason: reason.clone(),
            })
    }
}

#[async_trait]
impl Source for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn preflight(&self) -> Result<Facts, SourceError> {
        let conn = self.conn()?;
        let pg_dump_version = tool_version(self.bin_dir.as_deref(), "pg_dump")?;
        let unreachable = |reason: String| SourceError::Unreachable {
            source_name: self.name.clone(),
            reason: format!("{} ({reason})", conn.public),
        };
        let mut db = conn.connect().await.map_err(unreachable)?;
        let (server_version,): (String,) = sqlx::query_as("SHOW server_version")
            .fetch_one(&mut db)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = db.close().await;
        let mut facts = Facts::new();
        facts.insert("pg_dump_version".into(), pg_dump_version.into());
        facts.insert("server_version".into(), server_version.into());
        Ok(facts)
    }

    async fn dump(&self) -> Result<Dump, SourceError> {
        let conn = self.conn()?;
        let unreachable = |reason: String| SourceError::Unreachable {
            source_name: self.name.clone(),
            reason: format!("{} ({reason})", conn.public),
        };
        // One REPEATABLE READ transaction exports its snapshot; pg_dump imports it
        // (`--snapshot`), so the row counts taken in this transaction are exactly the rows
        // in the dump. The transaction stays open until pg_dump has finished.
        let mut db = conn.connect().await.map_err(unreachable)?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut db)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (snapshot,): (String,) = sqlx::query_as("SELECT pg_export_snapshot()")
            .fetch_one(&mut db)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut cmd = conn.command(self.bin_dir.as_deref(), "pg_dump");
        cmd.args(["--format=custom", "--compress=0", "--no-password"])
            .arg(format!("--snapshot={snapshot}"))
            .arg(format!("--dbname={}", conn.public))
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut proc = Process::spawn(cmd, conn.secrets())?;
        let stdout = proc.take_stdout()?;
        let stop = proc.stopper();
        // Count while pg_dump streams; release the snapshot once pg_dump is done (`done`).
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (facts_tx, facts_rx) = tokio::sync::oneshot::channel();
        let secrets = conn.secrets();
        tokio::spawn(async move {
            let counted = row_counts(&mut db).await.map_err(|e| {
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                crate::model::redact::scrub(&e.to_string(), &secrets)
            });
            let _ = facts_tx.send(counted);
            let _ = done_rx.await;
            let _ = sqlx::query("ROLLBACK").execute(&mut db).await;
            let _ = db.close().await;
        });
        let name = self.name.clone();
        Ok(Dump {
            reader: Box::new(stdout),
            finish: Box::new(move || {
                // pg_dump has its own connection and snapshot import: once it exited, the
                // exporting transaction may end (after the counts, which run meanwhile).
                proc.wait()?;
                let counted = facts_rx.blocking_recv();
                drop(done_tx);
                let tables = match counted {
                    Ok(Ok(tables)) => tables,
                    Ok(Err(reason)) => {
                        return Err(SourceError::Unreachable {
                            source_name: name,
                            reason: format!("counting rows for the snapshot's facts: {reason}"),
                        });
                    }
                    Err(_) => serde_json::Map::new(),
                };
                let mut facts = Facts::new();
                facts.insert("tables".into(), tables.into());
                Ok(facts)
            }),
            stop: Some(stop),
        })
    }
}

/// The user tables (`schema.table`) of the connected database: what a restore must hold.
pub const USER_TABLES: &str = "SELECT schemaname::text, tablename::text FROM pg_tables \
     WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
     AND schemaname NOT LIKE 'pg_toast%' AND schemaname NOT LIKE 'pg_temp%' ORDER BY 1, 2";

/// `{"schema.table": rows}` for every user table, in the connection's current transaction.
pub async fn row_counts(
    db: &mut sqlx::PgConnection,
) -> Result<serde_json::Map<String, serde_json::Value>, sqlx::Error> {
    let tables: Vec<(String, String)> = sqlx::query_as(USER_TABLES).fetch_all(&mut *db).await?;
    let mut counts = serde_json::Map::new();
    for (schema, table) in tables {
        // Identifiers quoted by `quote_ident`: safe to splice.
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.{}",
            quote_ident(&schema),
            quote_ident(&table)
        )))
        .fetch_one(&mut *db)
        .await?;
        counts.insert(format!("{schema}.{table}"), n.into());
    }
    Ok(counts)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub struct PostgresTarget {
    conn: Conn,
    opts: RestoreOptions,
}

impl PostgresTarget {
    pub fn new(target: &str, opts: &RestoreOptions) -> Result<Self, SourceError> {
        let conn = Conn::parse(target).map_err(|reason| SourceError::Target {
            target: crate::model::redact::url(target),
            reason,
        })?;
        Ok(PostgresTarget {
            conn,
            opts: opts.clone(),
        })
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Target {
            target: self.conn.public.clone(),
            reason,
        }
    }
}

#[async_trait]
impl Target for PostgresTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        tool_version(self.opts.bin_dir.as_deref(), "pg_restore")?;
        let mut db = self.conn.connect().await.map_err(|e| {
            self.fail(format!(
                "cannot connect ({e}); the database must exist (create it with `createdb`)"
            ))
        })?;
        let (tables,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','p','v','m','S') \
             AND n.nspname NOT IN ('pg_catalog','information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%'",
        )
        .fetch_one(&mut db)
        .await
        .map_err(|e| self.fail(e.to_string()))?;
        let _ = db.close().await;
        if tables > 0 {
            return Err(self.fail(format!(
                "the database is not empty ({tables} tables, views or sequences); restore into a new, empty database so nothing is overwritten"
            )));
        }
        Ok(())
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        let mut cmd = self
            .conn
            .command(self.opts.bin_dir.as_deref(), "pg_restore");
        cmd.args(["--single-transaction", "--exit-on-error", "--no-password"])
            .arg(format!("--dbname={}", self.conn.public))
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        if self.opts.no_owner {
            cmd.arg("--no-owner");
        }
        if self.opts.no_privileges {
            cmd.arg("--no-privileges");
        }
        let mut proc = Process::spawn(cmd, self.conn.secrets())?;
        let stdin = proc.take_stdin()?;
        Ok(Sink {
            writer: Box::new(stdin),
            finish: Box::new(move || proc.wait().map(|_| ()).map_err(SourceError::from)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_split_out_and_decoded() {
        let c = Conn::parse("postgres://app:p%40ss+w%2Frd@db:5432/orders?sslmode=require").unwrap();
        assert_eq!(c.password.as_deref(), Some("p@ss+w/rd"));
        assert_eq!(c.public, "postgres://app@db:5432/orders?sslmode=require");
        assert!(check_url("postgres://db/").is_err());
        assert!(check_url("mysql://db/x").is_err());
        // `?password=` never reaches a command line either.
        let c =
            Conn::parse("postgres://app@db/orders?sslmode=require&password=q%2Fw%3F%23e").unwrap();
        assert_eq!(c.password.as_deref(), Some("q/w?#e"));
        assert_eq!(c.public, "postgres://app@db/orders?sslmode=require");
        let c = Conn::parse("postgres://app@db/orders?password=x1y2z3").unwrap();
        assert_eq!(c.public, "postgres://app@db/orders");
        // A password with a raw `/`, `?` or `#` is no URL: the error does not show it.
        for pw in ["pa/ss123", "pa?ss123", "pa#ss123"] {
            let e = check_url(&format!("postgres://app:{pw}@db:5432/orders")).unwrap_err();
            assert!(!e.contains(pw), "{e}");
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// `postgres://user[:password]@host[:port]/database`
    pub url: SecretString,
    /// Directory holding `pg_dump`/`pg_restore`; PATH is searched when unset.
    pub bin_dir: Option<PathBuf>,
}

/// PostgreSQL, through `pg_dump` / `pg_restore`.
pub struct PostgresKind;
pub static KIND: PostgresKind = PostgresKind;

impl super::Spec for PostgresSpec {
    fn kind(&self) -> &'static dyn super::Kind {
        &KIND
    }
    fn validate(&self) -> Result<(), super::SpecError> {
        check_url(self.url.expose()).map_err(|m| super::SpecError::new("url", m))
    }
    fn source(
        &self,
        name: &str,
        _kube: std::sync::Arc<dyn crate::kube::KubeApi>,
    ) -> Box<dyn Source> {
        Box::new(Postgres::new(name, self))
    }
}

#[async_trait]
impl super::Kind for PostgresKind {
    async fn scratch(
        &self,
        dir: &Path,
        opts: &super::scratch::ScratchOptions,
    ) -> Result<Option<Box<dyn super::scratch::Scratch>>, super::scratch::ScratchError> {
        Ok(Some(Box::new(
            scratch::PostgresScratch::start(dir, opts).await?,
        )))
    }
    fn name(&self) -> &'static str {
        "postgres"
    }
    async fn probe(&self, url: &str) -> Result<super::probe::Probe, super::probe::ProbeError> {
        failover::probe(url).await
    }
    async fn fence(&self, url: &str) -> Result<(), super::probe::ProbeError> {
        failover::fence(url).await
    }
    async fn unfence(&self, url: &str) -> Result<(), super::probe::ProbeError> {
        failover::unfence(url).await
    }
    async fn promote(
        &self,
        url: &str,
        wait: std::time::Duration,
    ) -> Result<(), super::probe::ProbeError> {
        failover::promote(url, wait).await
    }
    async fn repoint(
        &self,
        url: &str,
        primary_url: &str,
        wait: std::time::Duration,
    ) -> Result<(), super::probe::ProbeError> {
        failover::repoint(url, primary_url, wait).await
    }

    async fn rejoin(
        &self,
        url: &str,
        primary_url: &str,
        data_dir: Option<&std::path::Path>,
        wait: std::time::Duration,
    ) -> Result<String, super::probe::ProbeError> {
        failover::rejoin(url, primary_url, data_dir, wait).await
    }

    async fn verify_writable(&self, url: &str) -> Result<(), super::probe::ProbeError> {
        failover::verify_writable(url).await
    }
    fn target(
        &self,
        to: &super::RestoreTo,
        opts: &RestoreOptions,
        _source: Option<&super::SourceSpec>,
        _kube: std::sync::Arc<dyn crate::kube::KubeApi>,
    ) -> Result<Box<dyn Target>, SourceError> {
        match to {
            super::RestoreTo::Url(url) => Ok(Box::new(PostgresTarget::new(url, opts)?)),
            _ => Err(super::unsupported(
                to,
                "postgres snapshots restore into --target postgres://... (or --to-file for the raw pg_dump archive)",
            )),
        }
    }
}
