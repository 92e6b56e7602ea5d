//! Restore into a new data directory (`--to-dir`), the way `etcdutl snapshot restore` does
//! (see the kind's doc).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{DEFAULT_NAME, DEFAULT_PEER_URL};
use crate::kinds::process::Process;
use crate::kinds::{RestoreOptions, Sink, SourceError, Target};

/// Restores an etcd snapshot into a new data directory (`--to-dir`).
pub struct EtcdTarget {
    dir: PathBuf,
    name: String,
    peer_url: String,
    bin_dir: Option<PathBuf>,
}

impl EtcdTarget {
    pub fn new(dir: &Path, opts: &RestoreOptions) -> Result<Self, SourceError> {
        let target = EtcdTarget {
            dir: dir.to_path_buf(),
            name: opts
                .etcd_name
                .clone()
                .unwrap_or_else(|| DEFAULT_NAME.into()),
            peer_url: opts
                .etcd_peer_url
                .clone()
                .unwrap_or_else(|| DEFAULT_PEER_URL.into()),
            bin_dir: opts.bin_dir.clone(),
        };
        let name_ok = !target.name.is_empty()
            && !target
                .name
                .contains(|c: char| c == '=' || c == ',' || c.is_whitespace());
        if !name_ok {
            return Err(target.fail(format!(
                "`{}` is not a usable member name (--etcd-name); use letters, digits, `-` or `.`",
                target.name
            )));
        }
        let peer_ok = url::Url::parse(&target.peer_url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        }) && !target.peer_url.contains(',');
        if !peer_ok {
            return Err(target.fail(format!(
                "`{}` is not a peer URL (--etcd-peer-url); write e.g. http://10.0.0.5:2380",
                target.peer_url
            )));
        }
        Ok(target)
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Target {
            target: format!("directory {}", self.dir.display()),
            reason,
        }
    }

    /// `etcdutl` (etcd 3.5+), else `etcdctl` (etcd 3.4 restores with `ETCDCTL_API=3`).
    fn tool(&self) -> Result<(PathBuf, bool), SourceError> {
        for (program, is_etcdutl) in [("etcdutl", true), ("etcdctl", false)] {
            if let Some(path) = crate::kinds::find_program(self.bin_dir.as_deref(), program) {
                return Ok((path, is_etcdutl));
            }
        }
        Err(self.fail(format!(
            "neither etcdutl nor etcdctl was found in {}; install etcd's tools (Debian: etcd-client) or pass --bin-dir",
            match &self.bin_dir {
                Some(d) => d.display().to_string(),
                None => "PATH".into(),
            }
        )))
    }

    /// `DIR`'s parent and file name; temporaries go beside `DIR` so the final rename is atomic.
    fn sibling(&self, suffix: &str) -> Result<PathBuf, SourceError> {
        let name = self
            .dir
            .file_name()
            .ok_or_else(|| self.fail("name a directory, not `/` or `..`".into()))?;
        let mut file = std::ffi::OsString::from(".");
        file.push(name);
        file.push(format!(".lifeboat-{}{suffix}", std::process::id()));
        Ok(self.dir.with_file_name(file))
    }

    fn check_dir(&self) -> Result<(), SourceError> {
        crate::kinds::files::check_empty_dir(&self.dir).map_err(|r| self.fail(r))
    }
}

/// Removes the restore's temporaries (snapshot file, unfinished data directory) when dropped.
struct Temporaries {
    file: PathBuf,
    dir: PathBuf,
}

impl Drop for Temporaries {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The snapshot file being written; flushes and fsyncs when dropped (the end of input) and
/// records a failure there for `finish` to report.
struct SnapshotFile {
    file: BufWriter<File>,
    failed: Arc<AtomicBool>,
}

impl Write for SnapshotFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let synced = self
            .file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all());
        if synced.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Target for EtcdTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        self.check_dir()?;
        self.sibling("")?;
        self.tool()?;
        Ok(())
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        self.check_dir()?;
        let (tool, is_etcdutl) = self.tool()?;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| self.fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let temps = Temporaries {
            file: self.sibling(".snapshot.db")?,
            dir: self.sibling(".data")?,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temps.file)
            .map_err(|e| self.fail(format!("cannot create {}: {e}", temps.file.display())))?;
        let failed = Arc::new(AtomicBool::new(false));
        let writer = SnapshotFile {
            file: BufWriter::with_capacity(1 << 20, file),
            failed: failed.clone(),
        };
        let dir = self.dir.clone();
        let name = self.name.clone();
        let peer_url = self.peer_url.clone();
        Ok(Sink {
            writer: Box::new(writer),
            finish: Box::new(move || {
                let fail = |reason: String| SourceError::Target {
                    target: format!("directory {}", dir.display()),
                    reason,
                };
                // The writer was dropped (flushed and synced) before finish is called.
                if failed.load(Ordering::SeqCst) {
                    return Err(fail(format!(
                        "writing the snapshot to {} failed; check free space there",
                        temps.file.display()
                    )));
                }
                let mut cmd = Command::new(&tool);
                if !is_etcdutl {
                    cmd.env("ETCDCTL_API", "3");
                }
                cmd.args(["snapshot", "restore"])
                    .arg(&temps.file)
                    .arg("--data-dir")
                    .arg(&temps.dir)
                    .arg("--name")
                    .arg(&name)
                    .arg("--initial-cluster")
                    .arg(format!("{name}={peer_url}"))
                    .arg("--initial-advertise-peer-urls")
                    .arg(&peer_url)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null());
                Process::spawn(cmd, Vec::new())?.wait()?;
                crate::kinds::files::move_into_place(&temps.dir, &dir).map_err(fail)?;
                drop(temps);
                Ok(())
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_options() {
        let dir = Path::new("/tmp/x");
        assert!(EtcdTarget::new(dir, &RestoreOptions::default()).is_ok());
        let bad_name = RestoreOptions {
            etcd_name: Some("a=b".into()),
            ..Default::default()
        };
        assert!(EtcdTarget::new(dir, &bad_name).is_err());
        let bad_peer = RestoreOptions {
            etcd_peer_url: Some("localhost:2380".into()),
            ..Default::default()
        };
        assert!(EtcdTarget::new(dir, &bad_peer).is_err());
    }
}
