//! The local verification sandbox's side of a kind: a [`Scratch`] is a throwaway instance of
//! the kind (a scratch PostgreSQL cluster, a Redis or etcd server, a directory) that a snapshot
//! is restored into and checked against its facts. Each kind makes its own with
//! [`Kind::scratch`](super::Kind::scratch); `ops::verify` drives every kind the same way:
//! restore into [`Scratch::restore_to`], [`Scratch::serve`], [`Scratch::check`], then the
//! user's checks against [`Scratch::user_target`].
//!
//! # Guarantees
//! Every server is a guard: dropping the scratch stops its servers (waiting off the async
//! runtime's workers), so a dropped verification (timeout, Ctrl-C) tears everything down. The
//! caller owns the directory and removes it after the scratch is dropped. Servers listen on
//! 127.0.0.1 only, in their own process group (a Ctrl-C at the terminal reaches lifeboat, which
//! stops them, not the servers).
//!
//! # Caveats
//! PostgreSQL refuses to run as root: as root, `initdb`/`pg_ctl` run through
//! `runuser -u postgres --` with the directory chowned to `postgres`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::checks::Check;
use super::{Facts, RestoreOptions, RestoreTo, ServerError};

/// How long a scratch server may take to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the verification sandbox is configured with.
#[derive(Debug, Clone, Default)]
pub struct ScratchOptions {
    /// Where `initdb`/`pg_ctl` live (`sandbox.postgres_bin_dir`); default: PATH, then the
    /// newest `/usr/lib/postgresql/*/bin`.
    pub postgres_bin_dir: Option<PathBuf>,
}

/// What the user's checks reach: the environment of `command:` checks (without
/// `LIFEBOAT_SNAPSHOT`, which the caller adds) and the URLs of `sql:` and `redis:` checks.
#[derive(Debug, Clone, Default)]
pub struct UserTarget {
    pub env: Vec<(&'static str, String)>,
    pub sql_url: Option<String>,
    pub redis_url: Option<String>,
}

impl UserTarget {
    /// A service reached by URL: `LIFEBOAT_TARGET` and `LIFEBOAT_TARGET_URL`.
    pub fn url(url: &str) -> UserTarget {
        UserTarget {
            env: vec![
                ("LIFEBOAT_TARGET", url.to_string()),
                ("LIFEBOAT_TARGET_URL", url.to_string()),
            ],
            ..UserTarget::default()
        }
    }

    /// A restored tree: `LIFEBOAT_TARGET` and `LIFEBOAT_TARGET_PATH`.
    pub fn path(path: &Path) -> UserTarget {
        UserTarget {
            env: vec![
                ("LIFEBOAT_TARGET", path.display().to_string()),
                ("LIFEBOAT_TARGET_PATH", path.display().to_string()),
            ],
            ..UserTarget::default()
        }
    }
}

/// A throwaway instance of a kind that one snapshot is restored into and checked.
#[async_trait]
pub trait Scratch: Send {
    /// Where the snapshot is restored, and the restore options this scratch needs.
    fn restore_to(&self) -> (RestoreTo, RestoreOptions);

    /// After the restore: starts what serves the restored data, where that comes after the
    /// restore (Redis loads its RDB at start, etcd its data directory). Counted in the
    /// measured restore time.
    async fn serve(&mut self) -> Result<(), ScratchError> {
        Ok(())
    }

    /// Compares what the restored instance holds with the facts recorded at backup time. An
    /// error means the restored data could not be read at all.
    async fn check(&mut self, facts: &Facts) -> Result<Vec<Check>, ScratchError>;

    /// What the user's checks reach.
    fn user_target(&self) -> UserTarget;
}

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
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

impl From<ServerError> for ScratchError {
    fn from(e: ServerError) -> ScratchError {
        match e {
            ServerError::Log { path, source } => ScratchError::Dir { dir: path, source },
            ServerError::Spawn { what, source, .. } => ScratchError::Missing {
                program: what.into(),
                hint: format!("{source}; install it or put it on PATH"),
            },
            ServerError::Exited { what, status, log } => ScratchError::Server {
                what: what.into(),
                detail: format!("exited ({status}); log: {}", log.join("\n")),
            },
            ServerError::NotReady { what, waited, log } => ScratchError::Server {
                what: what.into(),
                detail: format!("not ready within {waited:?}; log: {}", log.join("\n")),
            },
        }
    }
}

/// A pid read from a pid file. PostgreSQL writes a standalone backend's (initdb's) pid
/// negated; anything that is not a pid of a real process (0, 1, garbage) is `None`, so a
/// signal can never reach a process group or, with -1, every process on the machine.
pub fn pid_of(text: &str) -> Option<u32> {
    text.trim()
        .parse::<i32>()
        .ok()
        .map(i32::unsigned_abs)
        .filter(|&p| p > 1)
}

pub fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether process `pid` belongs to sandbox `dir` (its command line names it, or it runs in
/// it): a recycled pid must never be killed.
pub fn belongs_to(pid: u32, dir: &Path) -> bool {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let named = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy());
    let cwd_inside = std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|c| c.starts_with(dir));
    named || cwd_inside
}

pub fn free_port() -> Result<u16, ScratchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ScratchError::Server {
            what: "port".into(),
            detail: format!("no free loopback port: {e}"),
        })
}

pub(crate) fn is_root() -> bool {
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
pub(crate) async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<(), ScratchError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = cmd.spawn().map_err(|e| ScratchError::Server {
        what: what.into(),
        detail: format!("cannot start it: {e}"),
    })?;
    let mut group = GroupKill(child.id());
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| ScratchError::Server {
            what: what.into(),
            detail: format!("waiting for it: {e}"),
        })?;
    group.0 = None;
    if out.status.success() {
        Ok(())
    } else {
        Err(ScratchError::Server {
            what: what.into(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// A random secret for a scratch server (48 hex digits).
pub fn random_password() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::thread_rng().r#gen();
    hex::encode(bytes)
}

/// Writes `text` to a new file only its owner can read (0600); fails if it exists.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
