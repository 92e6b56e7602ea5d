//! A throwaway `redis-server` on a restored RDB: `dump.rdb` in its own directory, persisting
//! nothing. One launcher for the restore path (it copies the keys out of it into the target)
//! and the verification sandbox (it checks the keys in it).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::client::{Client, IO_TIMEOUT, Reply};
use crate::kinds::process::{Group, ServerError, ServerProcess};

/// A throwaway `redis-server` serving `dump.rdb` from its `--dir`, persisting nothing.
pub const SERVE_RDB_ARGS: [&str; 6] = [
    "--dbfilename",
    "dump.rdb",
    "--save",
    "",
    "--appendonly",
    "no",
];

/// Databases of the server: more than any source is likely to use, so an RDB from a server
/// with extra databases loads.
const DATABASES: &str = "1024";

/// The 0600 config file holding a loopback server's `requirepass`.
const CONFIG_FILE: &str = "redis.conf";

use crate::kinds::scratch::{random_password, write_private};

/// Where the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Only the Unix socket `redis.sock` in its directory (mode 700), no TCP port: nothing
    /// but lifeboat reaches it.
    Socket,
    /// `127.0.0.1:PORT` (protected mode on), for checks that connect by URL, with a random
    /// `requirepass` (given to the server in a 0600 config file, never on its command line):
    /// other local users cannot read what it serves.
    Loopback(u16),
}

/// A running `redis-server` on `DIR/dump.rdb`; its log is `DIR/redis.log`. Dropping it kills
/// the server.
pub struct RedisServer {
    process: ServerProcess,
    addr: Addr,
}

#[derive(Debug, Clone)]
enum Addr {
    Socket(PathBuf),
    Loopback { port: u16, password: String },
}

impl Addr {
    fn connect(&self) -> Result<Client, String> {
        match self {
            Addr::Socket(path) => {
                let stream = UnixStream::connect(path)
                    .map_err(|e| format!("the local redis-server went away: {e}"))?;
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                Client::new(Box::new(stream)).map_err(|e| e.to_string())
            }
            Addr::Loopback { port, password } => {
                super::client::Conn::parse(&format!("redis://:{password}@127.0.0.1:{port}"))?
                    .connect()
            }
        }
    }

    /// Whether the server answers `PING` (it does once it has loaded the RDB).
    fn answers(&self) -> bool {
        self.connect().is_ok_and(
            |mut client| matches!(client.cmd(&["PING"]), Ok(Reply::Status(pong)) if pong == "PONG"),
        )
    }
}

impl RedisServer {
    /// Starts `program` (a `redis-server`) on `dir/dump.rdb`, without waiting for it.
    fn spawn(
        program: &Path,
        dir: &Path,
        listen: Listen,
        group: Group,
    ) -> Result<RedisServer, ServerError> {
        let mut cmd = Command::new(program);
        if let Listen::Loopback(_) = listen {
            // The config file must be the first argument.
            cmd.arg(dir.join(CONFIG_FILE));
        }
        let addr = match listen {
            Listen::Socket => {
                let socket = dir.join("redis.sock");
                cmd.args(["--port", "0", "--unixsocket"])
                    .arg(&socket)
                    .args(["--unixsocketperm", "700"]);
                Addr::Socket(socket)
            }
            Listen::Loopback(port) => {
                let password = random_password();
                write_private(&dir.join(CONFIG_FILE), &format!("requirepass {password}\n"))
                    .map_err(|source| ServerError::Log {
                        path: dir.join(CONFIG_FILE),
                        source,
                    })?;
                cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--protected-mode", "yes"]);
                Addr::Loopback { port, password }
            }
        };
        cmd.arg("--dir").arg(dir).args(SERVE_RDB_ARGS).args([
            "--databases",
            DATABASES,
            "--daemonize",
            "no",
        ]);
        let process = ServerProcess::spawn(cmd, "redis-server", dir.join("redis.log"), group)?;
        Ok(RedisServer { process, addr })
    }

    /// Starts the server and waits (blocking) until it has loaded the RDB, at most `timeout`.
    pub fn start(
        program: &Path,
        dir: &Path,
        listen: Listen,
        group: Group,
        timeout: Duration,
    ) -> Result<RedisServer, ServerError> {
        let mut server = RedisServer::spawn(program, dir, listen, group)?;
        let addr = server.addr.clone();
        server.process.wait_ready(timeout, || addr.answers())?;
        Ok(server)
    }

    /// [`RedisServer::start`] for async callers (the probes run on blocking threads).
    pub async fn start_async(
        program: &Path,
        dir: &Path,
        listen: Listen,
        group: Group,
        timeout: Duration,
    ) -> Result<RedisServer, ServerError> {
        let mut server = RedisServer::spawn(program, dir, listen, group)?;
        let addr = server.addr.clone();
        server
            .process
            .wait_ready_async(timeout, || {
                let addr = addr.clone();
                async move {
                    tokio::task::spawn_blocking(move || addr.answers())
                        .await
                        .unwrap_or(false)
                }
            })
            .await?;
        Ok(server)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT` for a server listening on the loopback interface.
    pub fn url(&self) -> Option<String> {
        match &self.addr {
            Addr::Loopback { port, password } => {
                Some(format!("redis://:{password}@127.0.0.1:{port}"))
            }
            Addr::Socket(_) => None,
        }
    }

    /// A new connection to the server.
    pub fn connect(&self) -> Result<Client, String> {
        self.addr.connect()
    }
}
