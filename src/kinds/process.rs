//! Child processes that dump or restore (pg_dump, pg_restore, ...): started with piped
//! stdio, stderr collected (bounded, secrets scrubbed) on a thread, killed when dropped.
//! And [`ServerProcess`]: a server started on restored data (by a restore, or a verification
//! sandbox), its output in a log file, killed when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Keep at most this much of a child's stderr for error messages.
const STDERR_LIMIT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}; install it or set the kind's bin_dir")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} has no {which} pipe (internal error)")]
    Pipe {
        program: String,
        which: &'static str,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

pub struct Process {
    program: String,
    pid: u32,
    /// Set once the child has been waited for: its pid may then belong to someone else.
    reaped: Arc<AtomicBool>,
    child: Option<Child>,
    stderr: Option<JoinHandle<String>>,
    secrets: Vec<String>,
}

impl Process {
    /// Spawns `cmd` with stdin/stdout as configured by the caller and stderr captured, in a
    /// process group of its own, so stopping it stops what it started too (a `sh -c` and its
    /// children). `secrets` are scrubbed from anything kept of its stderr.
    pub fn spawn(mut cmd: Command, secrets: Vec<String>) -> Result<Process, ProcessError> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let program = Path::new(cmd.get_program())
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child =
            cmd.stderr(Stdio::piped())
                .spawn()
                .map_err(|source| ProcessError::Spawn {
                    program: program.clone(),
                    source,
                })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = STDERR_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                String::from_utf8_lossy(&kept).into_owned()
            })
        });
        Ok(Process {
            program,
            pid: child.id(),
            reaped: Arc::new(AtomicBool::new(false)),
            child: Some(child),
            stderr,
            secrets,
        })
    }

    fn child_mut(&mut self) -> &mut Child {
        // Only `wait` takes the child, and it consumes `self`.
        self.child.as_mut().expect("child present until wait")
    }

    /// A handle that kills the child's process group (SIGKILL) unless the child was already
    /// waited for; for cancelling a run whose reader is blocked on the child (or on a
    /// grandchild holding its stdout).
    pub fn stopper(&self) -> Box<dyn FnOnce() + Send> {
        let (pid, reaped, program) = (self.pid, self.reaped.clone(), self.program.clone());
        Box::new(move || {
            if reaped.load(Ordering::SeqCst) {
                return;
            }
            match sigkill_group(pid) {
                Ok(()) => tracing::info!(program = %program, pid, "stopped the child process"),
                Err(e) => tracing::debug!(program = %program, cause = %e, "child already gone"),
            }
        })
    }

    /// The child's stdout; the command must have been given `Stdio::piped()` for it.
    pub fn take_stdout(&mut self) -> Result<std::process::ChildStdout, ProcessError> {
        let program = self.program.clone();
        self.child_mut().stdout.take().ok_or(ProcessError::Pipe {
            program,
            which: "stdout",
        })
    }

    /// The child's stdin; the command must have been given `Stdio::piped()` for it.
    pub fn take_stdin(&mut self) -> Result<std::process::ChildStdin, ProcessError> {
        let program = self.program.clone();
        self.child_mut().stdin.take().ok_or(ProcessError::Pipe {
            program,
            which: "stdin",
        })
    }

    /// Waits for exit; a non-zero exit is an error carrying (scrubbed) stderr. On success
    /// returns what it wrote to stderr (scrubbed, at most 16 KiB).
    pub fn wait(mut self) -> Result<String, ProcessError> {
        let mut child = self.child.take().expect("child present until wait");
        let status = child.wait().map_err(|source| ProcessError::Wait {
            program: self.program.clone(),
            source,
        });
        self.reaped.store(true, Ordering::SeqCst);
        let status = status?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            let stderr = self.scrub(stderr.trim());
            if !stderr.is_empty() {
                tracing::debug!(program = %self.program, stderr = %stderr, "child stderr");
            }
            Ok(stderr)
        } else {
            Err(ProcessError::Failed {
                program: self.program.clone(),
                status: status.to_string(),
                stderr: self.scrub(stderr.trim()),
            })
        }
    }

    fn scrub(&self, s: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        crate::model::redact::scrub(s, &secrets)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = sigkill_group(self.pid);
            let _ = child.kill();
            let _ = child.wait();
            self.reaped.store(true, Ordering::SeqCst);
        }
    }
}

/// An executable `program`: in `bin_dir` when given, else the first one on `PATH`.
pub fn find_program(bin_dir: Option<&Path>, program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    match bin_dir {
        Some(dir) => Some(dir.join(program)).filter(|p| executable(p)),
        None => std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(program))
            .find(|p| executable(p)),
    }
}

/// SIGKILL to process `pid` ([`sigkill_group`]: to process group `pid`). Only pids above 1
/// are signalled: 0 and negative values address groups, and -1 every process.
pub fn sigkill(pid: u32) -> Result<(), String> {
    rustix::process::kill_process(checked_pid(pid)?, rustix::process::Signal::KILL)
        .map_err(|e| e.to_string())
}

pub fn sigkill_group(pgid: u32) -> Result<(), String> {
    rustix::process::kill_process_group(checked_pid(pgid)?, rustix::process::Signal::KILL)
        .map_err(|e| e.to_string())
}

/// Whether process group `pgid` still has members (zombies not yet reaped included).
pub fn group_alive(pgid: u32) -> bool {
    checked_pid(pgid).is_ok_and(|p| rustix::process::test_kill_process_group(p).is_ok())
}

fn checked_pid(pid: u32) -> Result<rustix::process::Pid, String> {
    i32::try_from(pid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("{pid} is not a process id lifeboat may signal"))
}

/// Runs `wait` (a blocking wait for a process or a file system clean-up, from a `Drop`)
/// without stalling the async runtime: on a thread of a multi-thread tokio runtime through
/// [`tokio::task::block_in_place`], so the worker's other tasks move to another thread while
/// it waits; with no runtime, directly. A current-thread runtime cannot hand its one thread
/// over: there the wait runs directly too (lifeboat's own runtime is multi-thread). Either
/// way `wait` has finished when this returns.
pub fn wait_in_drop<R>(wait: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// Which process group a [`ServerProcess`] runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// lifeboat's own: a Ctrl-C at the terminal stops the server too, even if lifeboat has no
    /// chance to (a restore's helper server, in a temporary directory nothing sweeps).
    Shared,
    /// A group of its own: a Ctrl-C reaches lifeboat, which stops the server, and not the
    /// server (the verification sandbox, whose directory a later run sweeps after a crash).
    Own,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create {}: {source}", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        what: &'static str,
        program: String,
        source: std::io::Error,
    },
    #[error("{what} exited ({status}); log: {}", log.join("\n"))]
    Exited {
        what: &'static str,
        status: String,
        /// The last lines of its log.
        log: Vec<String>,
    },
    #[error("{what} not ready within {waited:?}; log: {}", log.join("\n"))]
    NotReady {
        what: &'static str,
        waited: Duration,
        log: Vec<String>,
    },
}

/// Lines of a server's log kept for an error.
const LOG_TAIL: usize = 15;

/// A server lifeboat starts for itself on restored data (redis-server on an RDB, etcd on a
/// data directory). Its stdout and stderr go to a log file, its pid to the log's name with
/// the extension `server-pid` (so a sandbox sweep finds it after a crash). Dropping it kills
/// the server (SIGKILL) and reaps it: nothing of it is worth saving.
pub struct ServerProcess {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `cmd` (not waiting for it to be ready); `what` names it in errors.
    pub fn spawn(
        mut cmd: Command,
        what: &'static str,
        log: PathBuf,
        group: Group,
    ) -> Result<ServerProcess, ServerError> {
        use std::os::unix::process::CommandExt;
        let log_error = |source| ServerError::Log {
            path: log.clone(),
            source,
        };
        let file = std::fs::File::create(&log).map_err(log_error)?;
        let err = file.try_clone().map_err(log_error)?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        if group == Group::Own {
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|source| ServerError::Spawn {
            what,
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let _ = std::fs::write(log.with_extension("server-pid"), child.id().to_string());
        Ok(ServerProcess { child, what, log })
    }

    /// Waits (blocking) until `ready` says yes, polling every 50 ms; fails if the server
    /// exits or `timeout` passes.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), ServerError> {
        let start = Instant::now();
        loop {
            self.check(start, timeout)?;
            if ready() {
                return Ok(());
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// [`ServerProcess::wait_ready`] for async callers.
    pub async fn wait_ready_async<F, Fut>(
        &mut self,
        timeout: Duration,
        mut ready: F,
    ) -> Result<(), ServerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            self.check(start, timeout)?;
            if ready().await {
                return Ok(());
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// An error if the server exited, or `timeout` passed since `start`.
    fn check(&mut self, start: Instant, timeout: Duration) -> Result<(), ServerError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(ServerError::Exited {
                what: self.what,
                status: status.to_string(),
                log: self.log_tail(),
            });
        }
        if start.elapsed() > timeout {
            return Err(ServerError::NotReady {
                what: self.what,
                waited: timeout,
                log: self.log_tail(),
            });
        }
        Ok(())
    }

    fn log_tail(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }
}

/// How often a starting server is asked whether it is ready.
const READY_POLL: Duration = Duration::from_millis(50);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let child = &mut self.child;
        let _ = wait_in_drop(|| child.wait());
    }
}
