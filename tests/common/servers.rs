// Shared integration-test harness for lifeboat.
//
// Owns the throwaway external services the tests run against:
//   * `PgServer`   - a private PostgreSQL cluster (initdb + pg_ctl) in a temp dir,
//                    run as the `postgres` OS user when the tests run as root;
//   * `MotoServer` - a moto S3 mock server, spoken to with raw HTTP/1.1;
//   * `Emulator`   - any other throwaway HTTP server process (Azurite, the GCS
//                    emulator: see azurite.rs and gcs.rs), killed on drop;
//   * `free_port`, `bin_on_path` - small helpers used by both.
// Depends on nothing but std and the `tempfile` crate, so it can be copied
// verbatim to `tests/common/mod.rs`.
#![allow(dead_code)]

use std::env;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How many times a server start is tried when its port was taken meanwhile.
const START_ATTEMPTS: u32 = 3;
/// How long `MotoServer::start` waits for the mock to answer HTTP.
const MOTO_READY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, drop).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
    listener
        .local_addr()
        .expect("read the local address of the port-probe listener")
        .port()
}

/// The first executable file called `name` in a directory of `$PATH`.
pub fn bin_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Whether this process runs with effective uid 0.
fn is_root() -> bool {
    // "Uid:\t<real>\t<effective>\t<saved>\t<fs>"
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
        && let Some(euid) = line.split_whitespace().nth(2)
    {
        return euid == "0";
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The last `lines` lines of a text file, or a note saying why it can't be read.
fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<could not read {}: {e}>", path.display()),
    }
}

/// Runs `cmd` to completion, capturing its output; panics if it cannot be spawned.
fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {what} ({cmd:?}): {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// The directory holding the PostgreSQL binaries: `$LIFEBOAT_PG_BIN_DIR`, else the
/// highest version under /usr/lib/postgresql/*/bin, else `None` (use `$PATH`).
fn pg_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = env::var_os("LIFEBOAT_PG_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        // Fail loudly rather than silently fall back to other binaries.
        assert!(
            is_executable(&dir.join("pg_ctl")),
            "LIFEBOAT_PG_BIN_DIR={} has no executable pg_ctl",
            dir.display()
        );
        return Some(dir);
    }
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            // Directory names are versions such as "15" or "9.6"; compare numerically.
            let name = entry.file_name().into_string().ok()?;
            let version: Vec<u32> = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            is_executable(&bin.join("pg_ctl")).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// A throwaway PostgreSQL cluster listening on 127.0.0.1, user `postgres`, trust auth.
/// Dropping it stops the server (immediate mode) and deletes its files.
pub struct PgServer {
    port: u16,
    bin_dir: Option<PathBuf>,
    /// Server-side commands run through `runuser -u postgres --` (we are root).
    as_postgres: bool,
    data_dir: PathBuf,
    log_file: PathBuf,
    /// Addresses it listens on besides 127.0.0.1 (see [`PgServer::listen_also`]).
    extra_listen: Vec<String>,
    /// `None` once `kill` has removed the files.
    dir: Option<TempDir>,
}

impl PgServer {
    /// Creates a fresh cluster in a temp dir and starts it on a free port.
    pub fn start() -> PgServer {
        let as_postgres = is_root();
        // Always under /tmp: the `postgres` user must be able to traverse it, and
        // the Unix socket path inside it must stay short (< 108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pg-")
            .tempdir_in("/tmp")
            .expect("create a temp dir for PostgreSQL under /tmp");
        let data_dir = dir.path().join("data");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&data_dir)
            .unwrap_or_else(|e| panic!("create data dir {}: {e}", data_dir.display()));
        if as_postgres {
            let out = run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(dir.path()),
                "chown",
            );
            assert!(
                out.status.success(),
                "chown -R postgres:postgres {} failed:\n{}",
                dir.path().display(),
                describe(&out)
            );
        }
        let mut server = PgServer {
            port: 0,
            bin_dir: pg_bin_dir(),
            as_postgres,
            log_file: dir.path().join("postgres.log"),
            data_dir,
            extra_listen: Vec::new(),
            dir: Some(dir),
        };
        server.initdb();

        server.start_on_a_free_port("PostgreSQL");
        server
    }

    /// A streaming-replication standby of `primary` (`pg_basebackup -R`, run as `postgres`
    /// when we are root), started on a free port. The default pg_hba of initdb lets
    /// 127.0.0.1 replicate with trust.
    pub fn standby_of(primary: &PgServer) -> PgServer {
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pgstandby-")
            .tempdir_in("/tmp")
            .expect("create a temp dir for the standby under /tmp");
        let data_dir = dir.path().join("data");
        if as_postgres {
            let out = run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(dir.path()),
                "chown",
            );
            assert!(out.status.success(), "chown: {}", describe(&out));
        }
        let mut server = PgServer {
            port: 0,
            bin_dir: pg_bin_dir(),
            as_postgres,
            log_file: dir.path().join("postgres.log"),
            data_dir,
            extra_listen: Vec::new(),
            dir: Some(dir),
        };
        let mut cmd = server.server_cmd("pg_basebackup");
        cmd.arg("-D")
            .arg(&server.data_dir)
            .args([
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &primary.port.to_string()]);
        let out = run(&mut cmd, "pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup -R failed:\n{}",
            describe(&out)
        );
        server.start_on_a_free_port("standby");
        server
    }

    /// `pg_ctl start` on a free port, trying another port when one was taken between
    /// `free_port()` and bind; panics with the log's tail otherwise.
    fn start_on_a_free_port(&mut self, what: &str) {
        let mut attempt = 1;
        loop {
            self.port = free_port();
            // A fresh log per attempt, so a failure shows only its own lines.
            let _ = fs::remove_file(&self.log_file);
            let out = self.pg_ctl_start();
            if out.status.success() {
                return;
            }
            let log = tail(&self.log_file, 40);
            if attempt < START_ATTEMPTS && log.contains("already in use") {
                attempt += 1;
                continue;
            }
            panic!(
                "{what} failed to start on port {} (attempt {attempt}):\n{}\n\
                 --- tail of {} ---\n{log}",
                self.port,
                describe(&out),
                self.log_file.display()
            );
        }
    }

    /// Makes the server listen on `addr` too (an address that exists now, e.g. one a
    /// [`super::netns::Lab`] added) and trust connections from `trust_cidr`: restarts it.
    pub fn listen_also(&mut self, addr: &str, trust_cidr: &str) {
        use std::io::Write as _;
        let mut hba = fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir.join("pg_hba.conf"))
            .expect("open pg_hba.conf");
        writeln!(
            hba,
            "host all all {trust_cidr} trust\nhost replication all {trust_cidr} trust"
        )
        .expect("append to pg_hba.conf");
        self.extra_listen.push(addr.to_string());
        self.stop();
        self.restart();
    }

    /// Connection URL for database `db` at `addr` (one given to [`PgServer::listen_also`]).
    pub fn url_at(&self, addr: &str, db: &str) -> String {
        format!("postgres://postgres@{addr}:{}/{db}", self.port)
    }

    /// Starts again a server that was `stop`ped (same port and files).
    pub fn restart(&mut self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start failed:\n{}\n{}",
            describe(&out),
            tail(&self.log_file, 40)
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for database `db`, e.g. `postgres://postgres@127.0.0.1:5432/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of a PostgreSQL client or server binary (`pg_dump`, `psql`, ...) of the
    /// same installation as the server.
    pub fn bin(&self, name: &str) -> PathBuf {
        if let Some(dir) = &self.bin_dir {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return candidate;
            }
        }
        bin_on_path(name).unwrap_or_else(|| PathBuf::from(name))
    }

    /// `CREATE DATABASE name`.
    pub fn create_db(&self, name: &str) {
        let quoted = name.replace('"', "\"\"");
        self.psql("postgres", &format!("CREATE DATABASE \"{quoted}\""));
    }

    /// Runs `sql` with psql against database `db`; returns trimmed stdout in
    /// unaligned, tuples-only form (`-At`). Panics with stderr on any error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let mut cmd = Command::new(self.bin("psql"));
        cmd.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &port, "-U", "postgres", "-d", db, "-c", sql]);
        let out = run(&mut cmd, "psql");
        assert!(
            out.status.success(),
            "psql failed on db {db:?} running {sql:?}:\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Clean shutdown (`pg_ctl stop -m fast`). The files stay until drop/`kill`.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let out = self.pg_ctl_stop("fast");
        assert!(
            out.status.success(),
            "pg_ctl stop -m fast failed:\n{}\n--- tail of server log ---\n{}",
            describe(&out),
            tail(&self.log_file, 40)
        );
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`) and deletes its files.
    /// Idempotent; never panics (it runs from `Drop`).
    pub fn kill(&mut self) {
        if self.is_running() {
            let out = self.pg_ctl_stop("immediate");
            if !out.status.success() {
                eprintln!(
                    "harness: pg_ctl stop -m immediate failed:\n{}",
                    describe(&out)
                );
            }
        }
        if let Some(dir) = self.dir.take() {
            // We are root or the owner, so files owned by `postgres` can go too.
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("harness: could not remove {}: {e}", path.display());
            }
        }
    }

    /// The postmaster's process id (first line of postmaster.pid), while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the postmaster.
    pub fn signal(&self, signal: &str) {
        let pid = self.postmaster_pid().expect("the server runs");
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{signal} {pid}");
    }

    /// `kill -9` of the postmaster (a crash: no checkpoint, no clean shutdown); waits until
    /// it and its backends are gone. The files stay: `restart` starts it again (crash
    /// recovery).
    pub fn kill9(&mut self) {
        let Some(pid) = self.postmaster_pid() else {
            return;
        };
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let until = std::time::Instant::now() + Duration::from_secs(30);
        // The backends exit when they notice the postmaster is gone; the port is then free.
        while std::time::Instant::now() < until {
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            let port_busy = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if !alive && !port_busy {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    /// A postmaster.pid file exists while the postmaster runs; pg_ctl -w waits for it.
    fn is_running(&self) -> bool {
        self.dir.is_some() && self.data_dir.join("postmaster.pid").exists()
    }

    /// A command for a server-side binary, run as `postgres` when we are root.
    fn server_cmd(&self, name: &str) -> Command {
        let bin = self.bin(name);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(bin);
            cmd
        } else {
            Command::new(bin)
        };
        // Our own cwd may not be readable by `postgres`.
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir.path());
        }
        cmd
    }

    fn initdb(&self) {
        let mut failures = Vec::new();
        for locale in ["--locale=C.UTF-8", "--no-locale"] {
            let mut cmd = self.server_cmd("initdb");
            cmd.arg("-D").arg(&self.data_dir).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                locale,
            ]);
            // initdb empties the (pre-created) data dir again when it fails.
            let out = run(&mut cmd, "initdb");
            if out.status.success() {
                return;
            }
            failures.push(format!("initdb {locale}:\n{}", describe(&out)));
        }
        panic!("initdb failed:\n{}", failures.join("\n\n"));
    }

    /// The argv that starts this server again (`runuser -u postgres -- pg_ctl start ...` when
    /// we are root): what a drill's `restart:` runs to bring a killed server back.
    pub fn start_argv(&self) -> Vec<String> {
        let cmd = self.pg_ctl_start_cmd();
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn pg_ctl_start(&self) -> Output {
        run(&mut self.pg_ctl_start_cmd(), "pg_ctl start")
    }

    fn pg_ctl_start_cmd(&self) -> Command {
        let socket_dir = self.data_dir.parent().expect("data dir has a parent");
        let options = format!(
            "-c listen_addresses='{}' -c port={} -c unix_socket_directories='{}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            std::iter::once("127.0.0.1")
                .chain(self.extra_listen.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(","),
            self.port,
            socket_dir.display()
        );
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .arg("-o")
            .arg(options);
        cmd
    }

    fn pg_ctl_stop(&self, mode: &str) -> Output {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
            .arg(&self.data_dir);
        run(&mut cmd, "pg_ctl stop")
    }
}

impl Drop for PgServer {
    /// `pg_ctl stop -w` waits for the server: on a tokio worker that wait goes through
    /// `block_in_place`, so the runtime's other tasks go on meanwhile; the server and its
    /// files are still gone when `drop` returns.
    fn drop(&mut self) {
        wait_in_drop(|| self.kill());
    }
}

/// Runs a blocking wait from a `Drop`: on a thread of a multi-thread tokio runtime through
/// `block_in_place` (the worker's other tasks move to another thread meanwhile), elsewhere
/// directly (a current-thread runtime cannot hand its thread over). Finished on return.
fn wait_in_drop<R>(wait: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

// ---------------------------------------------------------------------------
// moto (S3 mock)
// ---------------------------------------------------------------------------

/// A moto S3 mock server on 127.0.0.1. Dropping it kills the process.
pub struct MotoServer {
    port: u16,
    child: Option<Child>,
    log_file: PathBuf,
    /// Holds the log file; removed on drop.
    _dir: TempDir,
}

impl MotoServer {
    /// Starts moto on a free port and waits until it answers HTTP.
    /// Executable: `$LIFEBOAT_MOTO_SERVER`, else `moto_server` on `$PATH`,
    /// else `python3 -m moto.server`.
    pub fn start() -> MotoServer {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-moto-")
            .tempdir()
            .expect("create a temp dir for the moto log");
        let mut server = MotoServer {
            port: 0,
            child: None,
            log_file: dir.path().join("moto.log"),
            _dir: dir,
        };
        let mut attempt = 1;
        loop {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(why) => {
                    server.stop();
                    let log = tail(&server.log_file, 40);
                    if attempt < START_ATTEMPTS && log.contains("already in use") {
                        attempt += 1;
                        continue;
                    }
                    panic!(
                        "moto server failed to start on port {} (attempt {attempt}): {why}\n\
                         --- tail of {} ---\n{log}",
                        server.port,
                        server.log_file.display()
                    );
                }
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name` (path-style `PUT /name`); panics unless moto says 200.
    pub fn create_bucket(&self, name: &str) {
        let path = format!("/{}", percent_encode(name, false));
        self.request_ok("PUT", &path, b"");
    }

    /// Stores `body` as object `key` in `bucket`; panics unless moto says 200.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let path = format!(
            "/{}/{}",
            percent_encode(bucket, false),
            percent_encode(key, true)
        );
        self.request_ok("PUT", &path, body);
    }

    /// Keys in `bucket` starting with `prefix` (first page of ListObjectsV2, i.e. up
    /// to 1000 keys).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let path = format!(
            "/{}?list-type=2&prefix={}",
            percent_encode(bucket, false),
            percent_encode(prefix, false)
        );
        let body = self.request_ok("GET", &path, b"");
        xml_values(&body, "Key")
    }

    /// Kills the moto process (and its process group); afterwards the endpoint is
    /// down. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The child leads its own process group (see spawn_and_wait); kill the
        // group first, while the child is unreaped so its pid cannot be reused.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        if let Err(e) = child.wait() {
            eprintln!("harness: waiting for the moto process failed: {e}");
        }
        // The kernel closes the listening socket with the process; make sure.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && connect(self.port).is_ok() {
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = fs::File::create(&self.log_file)
            .unwrap_or_else(|e| panic!("create {}: {e}", self.log_file.display()));
        let log_err = log.try_clone().expect("duplicate the moto log file handle");
        let mut cmd = moto_command();
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Own process group, so stop() also reaches any helper processes.
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not spawn {cmd:?}: {e}"))?;
        self.child = Some(child);

        let deadline = Instant::now() + MOTO_READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("child was just stored");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("process exited early: {status}"));
            }
            if http_request(self.port, "GET", "/", b"").is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no HTTP answer within {} s",
                    MOTO_READY_TIMEOUT.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a request and returns the body; panics unless the status is 200.
    fn request_ok(&self, method: &str, path: &str, body: &[u8]) -> String {
        let response = http_request(self.port, method, path, body)
            .unwrap_or_else(|e| panic!("moto {method} {path} failed: {e}"));
        assert_eq!(
            response.status, 200,
            "moto {method} {path} answered {}:\n{}",
            response.status, response.body
        );
        response.body
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn moto_command() -> Command {
    if let Some(exe) = env::var_os("LIFEBOAT_MOTO_SERVER").filter(|v| !v.is_empty()) {
        return Command::new(exe);
    }
    if let Some(exe) = bin_on_path("moto_server") {
        return Command::new(exe);
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "moto.server"]);
    cmd
}

// ---------------------------------------------------------------------------
// Any other emulator process (Azurite, the GCS emulator)
// ---------------------------------------------------------------------------

/// How long `Emulator::start` waits for a server to answer HTTP.
const EMULATOR_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A server process on a free 127.0.0.1 port with its own temp dir (data and log), in its
/// own process group. Dropping it kills the group with SIGKILL and reaps the process: no
/// graceful shutdown to wait for, so a drop never stalls (a tokio worker included).
pub struct Emulator {
    what: &'static str,
    port: u16,
    child: Option<Child>,
    log_file: PathBuf,
    dir: TempDir,
}

impl Emulator {
    /// Finds `what`'s program: the path in `$env_var`, else `bin` on `$PATH`; panics with a
    /// message naming scripts/setup.sh when neither exists (the tests must not skip).
    pub fn program(what: &str, env_var: &str, bin: &str) -> PathBuf {
        if let Some(exe) = env::var_os(env_var).filter(|v| !v.is_empty()) {
            let exe = PathBuf::from(exe);
            assert!(
                is_executable(&exe),
                "{env_var}={} is not an executable file; install {what} with \
                 `eval \"$(bash scripts/setup.sh)\"`",
                exe.display()
            );
            return exe;
        }
        bin_on_path(bin).unwrap_or_else(|| {
            panic!(
                "{what} is not installed: neither ${env_var} nor `{bin}` on $PATH; run \
                 `eval \"$(bash scripts/setup.sh)\"` (it installs {what} and exports {env_var})"
            )
        })
    }

    /// Starts `program` with `args(port, data_dir)` and waits until `GET ready_path` gets
    /// any HTTP answer. Retries on another port if the chosen one was taken meanwhile.
    pub fn start(
        what: &'static str,
        program: &Path,
        args: impl Fn(u16, &Path) -> Vec<String>,
        ready_path: &str,
    ) -> Emulator {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lifeboat-{what}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("create a temp dir for {what}: {e}"));
        let data = dir.path().join("data");
        fs::create_dir_all(&data).unwrap_or_else(|e| panic!("create {}: {e}", data.display()));
        let mut server = Emulator {
            what,
            port: 0,
            child: None,
            log_file: dir.path().join("server.log"),
            dir,
        };
        let mut attempt = 1;
        loop {
            server.port = free_port();
            let mut cmd = Command::new(program);
            cmd.args(args(server.port, &data))
                .current_dir(server.dir.path());
            match server.spawn_and_wait(cmd, ready_path) {
                Ok(()) => return server,
                Err(why) => {
                    server.stop();
                    let log = tail(&server.log_file, 40);
                    if attempt < START_ATTEMPTS
                        && (log.contains("already in use") || log.contains("EADDRINUSE"))
                    {
                        attempt += 1;
                        continue;
                    }
                    panic!(
                        "{what} failed to start on port {} (attempt {attempt}): {why}\n\
                         --- tail of {} ---\n{log}",
                        server.port,
                        server.log_file.display()
                    );
                }
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log_file, 40)
    }

    /// Sends one request with extra headers; returns (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, String) {
        let response = http_request_with(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{} {method} {path} failed: {e}", self.what));
        (response.status, response.body)
    }

    /// Kills the process group and reaps the process. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The group first, while the child is unreaped so its pid cannot be reused.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        if let Err(e) = child.wait() {
            eprintln!("harness: waiting for the {} process failed: {e}", self.what);
        }
    }

    fn spawn_and_wait(&mut self, mut cmd: Command, ready_path: &str) -> Result<(), String> {
        let log = fs::File::create(&self.log_file)
            .unwrap_or_else(|e| panic!("create {}: {e}", self.log_file.display()));
        let log_err = log.try_clone().expect("duplicate the log file handle");
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not spawn {cmd:?}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + EMULATOR_READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("child was just stored");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("process exited early: {status}"));
            }
            if http_request(self.port, "GET", ready_path, b"").is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no HTTP answer within {} s",
                    EMULATOR_READY_TIMEOUT.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client (one request per connection, `Connection: close`)
// ---------------------------------------------------------------------------

struct HttpResponse {
    status: u16,
    body: String,
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
}

fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> io::Result<HttpResponse> {
    http_request_with(port, method, path, &[], body)
}

fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut stream = connect(port)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("malformed HTTP status line"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        decode_chunked(rest).ok_or_else(|| bad("malformed chunked body"))?
    } else {
        rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_line = std::str::from_utf8(&data[..line_end]).ok()?;
        let size_hex = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` if `keep_slash`).
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || "-._~".contains(c) || (keep_slash && c == '/') {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The unescaped text of every `<tag>...</tag>` element in `xml`.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else {
            break;
        };
        values.push(xml_unescape(&rest[..end]));
        rest = &rest[end + close.len()..];
    }
    values
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0: one response, never chunked), with a bearer
/// `token` if given; returns the status code and the body.
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    try_http_get(port, path, token).expect("HTTP GET on loopback")
}

/// [`http_get`] that says why it failed instead of panicking (a server not up yet).
pub fn try_http_get(port: u16, path: &str, token: Option<&str>) -> io::Result<(u16, String)> {
    try_http_get_at("127.0.0.1", port, path, token)
}

/// [`try_http_get`] on `host` (an address of a network namespace, say).
pub fn try_http_get_at(
    host: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> io::Result<(u16, String)> {
    http_request_at(host, port, "GET", path, token, None)
}

/// `POST path` with a JSON `body` on 127.0.0.1:`port`, with a bearer `token` if given.
pub fn http_post_json(port: u16, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    http_request_at("127.0.0.1", port, "POST", path, token, Some(body))
        .expect("HTTP POST on loopback")
}

fn http_request_at(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> io::Result<(u16, String)> {
    let addr: std::net::SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| io::Error::other(format!("{host}:{port}: {e}")))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = body
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        })
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{auth}{content}\r\n{}",
        body.unwrap_or_default()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status code in {resp:?}")))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
