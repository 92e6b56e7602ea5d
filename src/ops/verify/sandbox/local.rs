//! The local sandbox: throwaway servers on free loopback ports in a temp directory
//! (`lifeboat-sandbox-*` under `TMPDIR`).
//!
//! # Guarantees
//! Every server is a guard: dropping it stops the server (PostgreSQL: `pg_ctl stop -m
//! immediate`, then SIGKILL of the postmaster if that failed; Redis and etcd: SIGKILL and
//! reap), waiting for it off the async runtime's workers (`block_in_place`), so a verification
//! dropped on a worker never stalls the daemon's other tasks. [`SandboxDir`] removes the directory when dropped, after the servers in it (declare
//! servers before the directory so they drop first). Dropping the verification future (a
//! timeout, Ctrl-C) therefore tears everything down. Servers run in their own process group,
//! so a Ctrl-C at the terminal reaches lifeboat, which stops them, and not the servers.
//!
//! # Caveats
//! PostgreSQL refuses to run as root: as root, `initdb`/`pg_ctl` run through
//! `runuser -u postgres --` with the directory chowned to `postgres`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::kinds::etcd::server::EtcdServer;
use crate::kinds::redis::server::{Listen, RedisServer};
use crate::kinds::{Group, ServerError};

/// Prefix of every sandbox directory: what is left by a crash is recognisable.
pub const DIR_PREFIX: &str = "lifeboat-sandbox-";

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The pid of the lifeboat process that owns a sandbox directory.
const OWNER_FILE: &str = "owner.pid";

/// A pid read from a pid file. PostgreSQL writes a standalone backend's (initdb's) pid
/// negated; anything that is not a pid of a real process (0, 1, garbage) is `None`, so a
/// signal can never reach a process group or, with -1, every process on the machine.
fn pid_of(text: &str) -> Option<u32> {
    text.trim()
        .parse::<i32>()
        .ok()
        .map(i32::unsigned_abs)
        .filter(|&p| p > 1)
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether process `pid` belongs to sandbox `dir` (its command line names it, or it runs in
/// it): a recycled pid must never be killed.
fn belongs_to(pid: u32, dir: &Path) -> bool {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let named = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy());
    let cwd_inside = std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|c| c.starts_with(dir));
    named || cwd_inside
}

/// Removes sandbox directories under `TMPDIR` left by lifeboat processes that died without
/// tearing down (kill -9, OOM), killing the servers still running in them. Returns how many
/// were removed. Directories of live lifeboat processes are left alone.
pub fn sweep_stale() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue; // being created, or not ours
        };
        if pid_of(&owner).is_some_and(alive) {
            continue;
        }
        let mut pids: Vec<u32> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".server-pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| pid_of(&text))
            .collect();
        if let Ok(pm) = std::fs::read_to_string(dir.join("pg/data/postmaster.pid"))
            && let Some(pid) = pm.lines().next().and_then(pid_of)
        {
            pids.push(pid);
        }
        for pid in pids {
            if alive(pid) && belongs_to(pid, &dir) {
                let _ = crate::kinds::process::sigkill(pid);
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::warn!(dir = %dir.display(), "removed a sandbox left by a lifeboat process that died");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), cause = %e, "cannot remove a stale sandbox directory; remove it by hand")
            }
        }
    }
    removed
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "cannot create the sandbox directory under {dir}: {source}; set TMPDIR to a writable directory"
    )]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find {program}: {hint}")]
    Missing { program: String, hint: String },
    #[error("sandbox {what} failed: {detail}")]
    Server { what: String, detail: String },
}

/// The sandbox's temp directory; removed (with everything in it) on drop.
pub struct SandboxDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl SandboxDir {
    pub fn new() -> Result<SandboxDir, LocalError> {
        let parent = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&parent)
            .map_err(|source| LocalError::Dir {
                dir: parent.clone(),
                source,
            })?;
        let path = dir.path().to_path_buf();
        // Who owns it: `sweep_stale` removes directories whose owner died (SIGKILL, OOM).
        let _ = std::fs::write(path.join(OWNER_FILE), std::process::id().to_string());
        Ok(SandboxDir {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SandboxDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        // A server that was just stopped may still be finishing its last writes (a file
        // appearing during the removal fails it with "directory not empty"): try again.
        let path = &self.path;
        let result = crate::kinds::process::wait_in_drop(|| {
            let mut result = dir.close();
            for _ in 0..20 {
                if result.is_ok() || !path.exists() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
                result = std::fs::remove_dir_all(path);
            }
            result
        });
        if let Err(e) = result {
            tracing::warn!(dir = %self.path.display(), cause = %e, "could not remove the sandbox directory; remove it by hand");
        }
    }
}

pub fn free_port() -> Result<u16, LocalError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LocalError::Server {
            what: "port".into(),
            detail: format!("no free loopback port: {e}"),
        })
}

/// Where `initdb`/`pg_ctl` live: the configured directory, PATH, or the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps server binaries off PATH).
pub fn postgres_bin_dir(configured: Option<&Path>) -> Result<PathBuf, LocalError> {
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
        .ok_or_else(|| LocalError::Missing {
            program: "initdb".into(),
            hint: "install the PostgreSQL server package or set sandbox.postgres_bin_dir".into(),
        })
}

fn is_root() -> bool {
    // Without libc (unsafe is forbidden): the effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Kills a process group when dropped (a cancelled `run`): `runuser` forks, so killing
/// only the child we started would leave `initdb` running.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = crate::kinds::process::sigkill_group(pgid);
            // SIGKILL is delivered asynchronously: wait (briefly) until the group is gone,
            // so nothing of it still writes into the directory about to be removed.
            crate::kinds::process::wait_in_drop(|| {
                let deadline = Instant::now() + Duration::from_secs(5);
                while crate::kinds::process::group_alive(pgid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    }
}

/// Runs a setup command in its own process group; a cancelled run kills the whole group.
async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<(), LocalError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = cmd.spawn().map_err(|e| LocalError::Server {
        what: what.into(),
        detail: format!("cannot start it: {e}"),
    })?;
    let mut group = GroupKill(child.id());
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| LocalError::Server {
            what: what.into(),
            detail: format!("waiting for it: {e}"),
        })?;
    group.0 = None;
    if out.status.success() {
        Ok(())
    } else {
        Err(LocalError::Server {
            what: what.into(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// A throwaway PostgreSQL cluster (trust auth, user `postgres`, 127.0.0.1 only).
pub struct LocalPostgres {
    bin_dir: PathBuf,
    root: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    port: u16,
}

impl LocalPostgres {
    /// initdb + pg_ctl start inside `dir` (which must outlive the server).
    pub async fn start(dir: &Path, bin_dir: Option<&Path>) -> Result<LocalPostgres, LocalError> {
        let bin_dir = postgres_bin_dir(bin_dir)?;
        let as_postgres = is_root();
        let root = dir.join("pg");
        let data = root.join("data");
        std::fs::create_dir_all(&data).map_err(|source| LocalError::Dir {
            dir: data.clone(),
            source,
        })?;
        let server = LocalPostgres {
            bin_dir,
            root,
            data,
            as_postgres,
            port: free_port()?,
        };
        if as_postgres {
            let mut chown = tokio::process::Command::new("chown");
            chown.arg("-R").arg("postgres:postgres").arg(dir);
            run(chown, "chown to postgres").await?;
        }
        let mut initdb = server.server_cmd("initdb");
        initdb.arg("-D").arg(&server.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(initdb, "initdb").await?;
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
            return Err(LocalError::Server {
                what: "PostgreSQL start".into(),
                detail: format!("{e}; log: {}", log.trim()),
            });
        }
        let mut db = sqlx::PgConnection::connect(&server.url("postgres"))
            .await
            .map_err(|e| LocalError::Server {
                what: "PostgreSQL connect".into(),
                detail: e.to_string(),
            })?;
        sqlx::query("CREATE DATABASE verify")
            .execute(&mut db)
            .await
            .map_err(|e| LocalError::Server {
                what: "CREATE DATABASE".into(),
                detail: e.to_string(),
            })?;
        let _ = db.close().await;
        Ok(server)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
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

impl From<ServerError> for LocalError {
    fn from(e: ServerError) -> LocalError {
        match e {
            ServerError::Log { path, source } => LocalError::Dir { dir: path, source },
            ServerError::Spawn { what, source, .. } => LocalError::Missing {
                program: what.into(),
                hint: format!("{source}; install it or put it on PATH"),
            },
            ServerError::Exited { what, status, log } => LocalError::Server {
                what: what.into(),
                detail: format!("exited ({status}); log: {}", log.join("\n")),
            },
            ServerError::NotReady { what, waited, log } => LocalError::Server {
                what: what.into(),
                detail: format!("not ready within {waited:?}; log: {}", log.join("\n")),
            },
        }
    }
}

/// `redis-server` on the restored RDB `dir/dump.rdb`, persistence off; returns it and its URL.
pub async fn redis(
    dir: &Path,
    bin_dir: Option<&Path>,
) -> Result<(RedisServer, String), LocalError> {
    let port = free_port()?;
    let program = bin_dir.map_or(PathBuf::from("redis-server"), |d| d.join("redis-server"));
    let server = RedisServer::start_async(
        &program,
        dir,
        Listen::Loopback(port),
        Group::Own,
        READY_TIMEOUT,
    )
    .await?;
    let url = format!("redis://127.0.0.1:{port}");
    Ok((server, url))
}

/// `etcd` on the restored data directory (member `default`, the given peer URL); returns it
/// and its client URL.
pub async fn etcd(
    dir: &Path,
    data: &Path,
    peer_url: &str,
    bin_dir: Option<&Path>,
) -> Result<(EtcdServer, String), LocalError> {
    let port = free_port()?;
    let program = bin_dir.map_or(PathBuf::from("etcd"), |d| d.join("etcd"));
    let server = EtcdServer::start(
        &program,
        dir,
        data,
        crate::kinds::etcd::DEFAULT_NAME,
        peer_url,
        port,
        READY_TIMEOUT,
    )
    .await?;
    let endpoint = server.endpoint().to_string();
    Ok((server, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// On a runtime with one worker, a task that drops the server and a ticker share that
    /// worker: the ticker runs during the drop only if the drop's wait hands the worker over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_a_sandbox_postgres_on_a_worker_does_not_stall_the_runtime() {
        let dir = SandboxDir::new().expect("sandbox dir");
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

    #[test]
    fn pids_from_files_never_address_a_group_or_every_process() {
        assert_eq!(pid_of("4242\n"), Some(4242));
        // A standalone backend (initdb) writes its pid negated. Passed on as `kill -KILL
        // -1511`, procps kill called kill(-1, SIGKILL): every process on the machine.
        assert_eq!(pid_of("-4242"), Some(4242));
        for bad in ["", "0", "1", "-1", "../1", "12abc", " ", "99999999999"] {
            assert_eq!(pid_of(bad), None, "{bad:?}");
        }
    }
}
