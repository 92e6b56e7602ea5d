//! `--to-file PATH`, for every kind: the raw dump (decrypted, decompressed) written to a new
//! file. Written to `PATH.partial` and renamed at the end, so an interrupted restore never
//! leaves a file that looks complete; an existing file is never overwritten.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Sink, SourceError, Target};

pub struct FileTarget {
    path: PathBuf,
}

impl FileTarget {
    pub fn new(path: &Path) -> Self {
        FileTarget {
            path: path.to_path_buf(),
        }
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Target {
            target: format!("file {}", self.path.display()),
            reason,
        }
    }

    fn partial(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".partial");
        PathBuf::from(p)
    }
}

/// Removes the partial file unless the restore finished.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    fn keep(mut self) {
        self.done = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[async_trait]
impl Target for FileTarget {
    async fn preflight(&self) -> Result<(), SourceError> {
        if self.path.exists() {
            return Err(
                self.fail("it already exists; choose a new path (nothing is overwritten)".into())
            );
        }
        Ok(())
    }

    fn restore(&self) -> Result<Sink, SourceError> {
        let partial = self.partial();
        // Decrypted data: readable by its owner only, whatever the umask.
        let file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| self.fail(format!("cannot create {}: {e}", partial.display())))?;
        let guard = Partial {
            path: partial.clone(),
            done: false,
        };
        let writer = SyncOnDrop(BufWriter::with_capacity(1 << 20, file));
        let path = self.path.clone();
        Ok(Sink {
            writer: Box::new(writer),
            finish: Box::new(move || {
                let fail = |reason: String| SourceError::Target {
                    target: format!("file {}", path.display()),
                    reason,
                };
                // The writer was dropped (flushed and synced) before finish is called.
                if path.exists() {
                    return Err(fail(
                        "it appeared while restoring; the restore is left in the .partial file"
                            .into(),
                    ));
                }
                std::fs::rename(&guard.path, &path).map_err(|e| fail(e.to_string()))?;
                guard.keep();
                Ok(())
            }),
        })
    }
}

/// Flushes and fsyncs when dropped (the end of input for a file target).
struct SyncOnDrop(BufWriter<File>);

impl Write for SyncOnDrop {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for SyncOnDrop {
    fn drop(&mut self) {
        if self.0.flush().is_ok() {
            let _ = self.0.get_ref().sync_all();
        }
    }
}
