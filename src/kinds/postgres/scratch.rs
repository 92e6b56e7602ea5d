//! PostgreSQL's scratch: a throwaway cluster the snapshot is restored into (as a non-superuser)
//! and whose row counts are compared with the facts. See [`crate::kinds::scratch`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use async_trait::async_trait;
use sqlx::Connection;

use crate::kinds::checks::{self, Check};
use crate::kinds::scratch::{
    Scratch, ScratchError, ScratchOptions, UserTarget, belongs_to, free_port, is_root, pid_of,
    random_password, run, write_private,
};
use crate::kinds::{Facts, RestoreOptions, RestoreTo};

/// The role snapshots are restored as.
const VERIFY_ROLE: &str = "lifeboat_verify";

/// The scratch of one verification.
pub struct PostgresScratch {
    server: LocalPostgres,
    bin_dir: Option<PathBuf>,
}

impl PostgresScratch {
    pub async fn start(dir: &Path, opts: &ScratchOptions) -> Result<PostgresScratch, ScratchError> {
        let server = LocalPostgres::start(dir, opts.postgres_bin_dir.as_deref()).await?;
        Ok(PostgresScratch {
            server,
            bin_dir: opts.postgres_bin_dir.clone(),
        })
    }
}

#[async_trait]
impl Scratch for PostgresScratch {
    fn restore_to(&self) -> (RestoreTo, RestoreOptions) {
        let options = RestoreOptions {
            no_owner: true,
            no_privileges: true,
            bin_dir: self.bin_dir.clone(),
            ..RestoreOptions::default()
        };
        (RestoreTo::Url(self.server.url()), options)
    }

    async fn check(&mut self, facts: &Facts) -> Result<Vec<Check>, ScratchError> {
        let observed = counts(&self.server.url())
            .await
            .map_err(|e| ScratchError::Server {
                what: "counting rows in the restored database".into(),
                detail: e.to_string(),
            })?;
        Ok(checks::postgres(facts, &observed))
    }

    fn user_target(&self) -> UserTarget {
        let url = self.server.url();
        UserTarget {
            sql_url: Some(url.clone()),
            ..UserTarget::url(&url)
        }
    }
}

/// Row count of every user table of the database at `url`.
async fn counts(url: &str) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let mut db = sqlx::PgConnection::connect(url).await?;
    let counts = super::row_counts(&mut db).await?;
    let _ = db.close().await;
    Ok(counts
        .into_iter()
        .filter_map(|(k, v)| v.as_i64().map(|n| (k, n)))
        .collect())
}

/// 0700: the Unix socket and the server's files are the server's alone.
fn restrict(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Where `initdb`/`pg_ctl` live: the configured directory, PATH, or the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps server binaries off PATH).
pub fn postgres_bin_dir(configured: Option<&Path>) -> Result<PathBuf, ScratchError> {
    if let Some(dir) = configured {
        return Ok(dir.to_path_buf());
    }
    if let Some(p) =
        crate::kinds::find_program(None, "initdb").and_then(|p| p.parent().map(Path::to_path_buf))
    {
        return Ok(p);
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, bin)| bin)
        .ok_or_else(|| ScratchError::Missing {
            program: "initdb".into(),
            hint: "install the PostgreSQL server package or set sandbox.postgres_bin_dir".into(),
        })
}

/// A throwaway PostgreSQL cluster on 127.0.0.1 that lets no one in without a password:
/// scram-sha-256 for TCP and the Unix socket (in the sandbox directory, 0700), random
/// passwords for the superuser `postgres` and for the non-superuser `lifeboat_verify`, which
/// owns the `verify` database that snapshots are restored into.
pub struct LocalPostgres {
    bin_dir: PathBuf,
    root: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    port: u16,
    superuser_password: String,
    verify_password: String,
}

impl LocalPostgres {
    /// initdb + pg_ctl start inside `dir` (which must outlive the server).
    pub async fn start(dir: &Path, bin_dir: Option<&Path>) -> Result<LocalPostgres, ScratchError> {
        let bin_dir = postgres_bin_dir(bin_dir)?;
        let as_postgres = is_root();
        let root = dir.join("pg");
        let data = root.join("data");
        std::fs::create_dir_all(&data).map_err(|source| ScratchError::Dir {
            dir: data.clone(),
            source,
        })?;
        let server = LocalPostgres {
            bin_dir,
            root,
            data,
            as_postgres,
            port: free_port()?,
            superuser_password: random_password(),
            verify_password: random_password(),
        };
        // initdb reads the superuser's password from a 0600 file, removed once it has run.
        let pwfile = server.root.join("initdb.pw");
        write_private(&pwfile, &server.superuser_password).map_err(|source| ScratchError::Dir {
            dir: pwfile.clone(),
            source,
        })?;
        restrict(&server.root).map_err(|source| ScratchError::Dir {
            dir: server.root.clone(),
            source,
        })?;
        if as_postgres {
            let mut chown = tokio::process::Command::new("chown");
            chown.arg("-R").arg("postgres:postgres").arg(dir);
            run(chown, "chown to postgres").await?;
        }
        let mut initdb = server.server_cmd("initdb");
        initdb.arg(format!("--pwfile={}", pwfile.display()));
        initdb.arg("-D").arg(&server.data).args([
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        let initialized = run(initdb, "initdb").await;
        let _ = std::fs::remove_file(&pwfile);
        initialized?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            server.port,
            server.root.display()
        );
        let mut start = server.server_cmd("pg_ctl");
        start
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(&server.data)
            .arg("-l")
            .arg(server.root.join("postgres.log"))
            .arg("-o")
            .arg(options);
        if let Err(e) = run(start, "PostgreSQL start").await {
            let log = std::fs::read_to_string(server.root.join("postgres.log")).unwrap_or_default();
            return Err(ScratchError::Server {
                what: "PostgreSQL start".into(),
                detail: format!("{e}; log: {}", log.trim()),
            });
        }
        let mut db = sqlx::PgConnection::connect(&server.superuser_url("postgres"))
            .await
            .map_err(|e| ScratchError::Server {
                what: "PostgreSQL connect".into(),
                detail: e.to_string(),
            })?;
        // Restores run as a role that cannot read or write the server's files or run
        // programs (`COPY ... TO PROGRAM`): a forged dump can only harm its own database.
        for sql in [
            format!(
                "CREATE ROLE {VERIFY_ROLE} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD '{}'",
                server.verify_password
            ),
            format!("CREATE DATABASE verify OWNER {VERIFY_ROLE}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut db)
                .await
                .map_err(|e| ScratchError::Server {
                    what: "PostgreSQL setup".into(),
                    detail: e.to_string(),
                })?;
        }
        let _ = db.close().await;
        Ok(server)
    }

    /// The `verify` database, as the non-superuser role that owns it.
    pub fn url(&self) -> String {
        format!(
            "postgres://{VERIFY_ROLE}:{}@127.0.0.1:{}/verify",
            self.verify_password, self.port
        )
    }

    fn superuser_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.superuser_password, self.port
        )
    }

    fn server_cmd(&self, program: &str) -> tokio::process::Command {
        let bin = self.bin_dir.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            tokio::process::Command::new(bin)
        };
        cmd.current_dir(&self.root);
        cmd
    }

    fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()
            .and_then(pid_of)
    }
}

impl Drop for LocalPostgres {
    /// `pg_ctl stop -w` waits for the server to exit: off the async runtime's workers (see
    /// [`crate::kinds::process::wait_in_drop`]), and finished before this returns, so the
    /// directory removed next holds no running server.
    fn drop(&mut self) {
        if self.postmaster_pid().is_some() {
            crate::kinds::process::wait_in_drop(|| self.stop());
        }
    }
}

impl LocalPostgres {
    fn stop(&self) {
        let mut stop = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin_dir.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin_dir.join("pg_ctl"))
        };
        let stopped = stop
            .args(["stop", "-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(&self.data)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped
            && let Some(pid) = self.postmaster_pid()
            && belongs_to(pid, &self.root)
        {
            tracing::warn!(pid, "pg_ctl stop failed; killing the sandbox postmaster");
            let _ = crate::kinds::process::sigkill(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// On a runtime with one worker, a task that drops the server and a ticker share that
    /// worker: the ticker runs during the drop only if the drop's wait hands the worker over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_a_sandbox_postgres_on_a_worker_does_not_stall_the_runtime() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let pg = LocalPostgres::start(dir.path(), None)
            .await
            .expect("start PostgreSQL (scripts/setup.sh installs it)");
        let pid_file = pg.data.join("postmaster.pid");
        assert!(pid_file.exists());
        let dropping = Arc::new(AtomicBool::new(false));
        let ran_meanwhile = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (dropping, ran) = (dropping.clone(), ran_meanwhile.clone());
            tokio::spawn(async move {
                loop {
                    if dropping.load(Ordering::SeqCst) {
                        ran.store(true, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let flag = dropping.clone();
        tokio::spawn(async move {
            flag.store(true, Ordering::SeqCst);
            drop(pg);
            flag.store(false, Ordering::SeqCst);
        })
        .await
        .expect("drop task");
        ticker.abort();
        assert!(!pid_file.exists(), "the server is gone once drop returns");
        assert!(
            ran_meanwhile.load(Ordering::SeqCst),
            "the runtime's other tasks ran while PostgreSQL stopped"
        );
    }

    /// Issue 9 (sandboxes let no one in): a local user without the password is refused over
    /// TCP and over the Unix socket, and the restore role cannot run programs on the server.
    #[tokio::test]
    async fn the_scratch_cluster_lets_no_one_in_and_restores_unprivileged() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let pg = LocalPostgres::start(dir.path(), None)
            .await
            .expect("start PostgreSQL (scripts/setup.sh installs it)");
        let bin = postgres_bin_dir(None).expect("bin dir");
        let psql = bin.join("psql");
        let port = pg.port.to_string();
        let socket_dir = pg.root.display().to_string();
        for host in ["127.0.0.1", socket_dir.as_str()] {
            // As another local user where we can switch users (root), else as ourselves:
            // either way no password is given.
            let mut cmd = if is_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "nobody", "--"]).arg(&psql);
                c
            } else {
                std::process::Command::new(&psql)
            };
            let out = cmd
                .args([
                    "-w", "-h", host, "-p", &port, "-U", "postgres", "-d", "verify",
                ])
                .args(["-c", "SELECT 1"])
                .env_remove("PGPASSWORD")
                .output()
                .expect("run psql");
            assert!(
                !out.status.success(),
                "a connection without the password through {host} was let in"
            );
        }
        let mut db = sqlx::PgConnection::connect(&pg.url())
            .await
            .expect("the verify role connects with its password");
        let marker = dir.path().join("pwned");
        let copy = format!("COPY (SELECT 1) TO PROGRAM 'touch {}'", marker.display());
        let refused = sqlx::query(sqlx::AssertSqlSafe(copy))
            .execute(&mut db)
            .await;
        assert!(refused.is_err(), "the restore role ran a program");
        assert!(!marker.exists());
        let _ = db.close().await;
    }
}
