//! The local sandbox's directory: a temp directory (`lifeboat-sandbox-*` under `TMPDIR`,
//! mode 0700) that a kind's scratch ([`crate::kinds::scratch`]) lives in.
//!
//! # Guarantees
//! [`SandboxDir`] removes the directory when dropped, after the scratch in it (create the
//! scratch after the directory so it drops first). [`sweep_stale`] removes what a lifeboat
//! killed mid-verification left (SIGKILL, OOM), killing the servers still running there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kinds::scratch::{ScratchError, alive, belongs_to, pid_of};

/// Prefix of every sandbox directory: what is left by a crash is recognisable.
pub const DIR_PREFIX: &str = "lifeboat-sandbox-";

/// The pid of the lifeboat process that owns a sandbox directory.
const OWNER_FILE: &str = "owner.pid";

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

/// The sandbox's temp directory; removed (with everything in it) on drop.
pub struct SandboxDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl SandboxDir {
    pub fn new() -> Result<SandboxDir, ScratchError> {
        let parent = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&parent)
            .map_err(|source| ScratchError::Dir {
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
