//! The lock-file leader: `flock(LOCK_EX | LOCK_NB)` through `std::fs::File::try_lock`. The OS
//! releases it when the process dies, however it dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use async_trait::async_trait;

use super::{Leader, LeaderError};

pub struct FileLock {
    path: PathBuf,
    held: Option<File>,
}

impl FileLock {
    pub fn new(path: PathBuf) -> FileLock {
        FileLock { path, held: None }
    }
}

#[async_trait]
impl Leader for FileLock {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn try_acquire(&mut self) -> Result<bool, LeaderError> {
        if self.held.is_some() {
            return Ok(true);
        }
        let err = |source| LeaderError::File {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {
                self.held = Some(file);
                Ok(true)
            }
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(err(e)),
        }
    }

    async fn renew(&mut self) -> Result<bool, LeaderError> {
        // An flock lasts as long as the open file: nothing to renew.
        Ok(self.held.is_some())
    }

    async fn release(&mut self) {
        if let Some(f) = self.held.take() {
            let _ = f.unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/catalog.db.leader.lock");
        let mut a = FileLock::new(path.clone());
        let mut b = FileLock::new(path);
        assert!(a.try_acquire().await.expect("a"));
        assert!(a.renew().await.expect("renew"));
        assert!(!b.try_acquire().await.expect("b waits"));
        a.release().await;
        assert!(!a.renew().await.expect("released"));
        assert!(b.try_acquire().await.expect("b takes over"));
    }

    #[test]
    fn default_lock_file_sits_next_to_the_sqlite_catalog() {
        assert_eq!(
            super::super::default_lock_file("sqlite://./data/c.db?mode=rwc"),
            Some(PathBuf::from("./data/c.db.leader.lock"))
        );
        assert_eq!(super::super::default_lock_file("sqlite::memory:"), None);
        assert_eq!(super::super::default_lock_file("postgres://x/y"), None);
    }
}
