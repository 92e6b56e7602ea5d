//! The files kind's scratch: the tree restored into a directory and walked; its digest,
//! file count and size are compared with the facts. See [`crate::kinds::scratch`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::kinds::checks::{self, Check};
use crate::kinds::scratch::{Scratch, ScratchError, UserTarget};
use crate::kinds::{Facts, RestoreOptions, RestoreTo};

pub struct FilesScratch {
    target: PathBuf,
}

impl FilesScratch {
    pub fn new(dir: &Path) -> FilesScratch {
        FilesScratch {
            target: dir.join("files"),
        }
    }
}

#[async_trait]
impl Scratch for FilesScratch {
    fn restore_to(&self) -> (RestoreTo, RestoreOptions) {
        // Special modes are kept (the recorded tree hash covers them) inside the private
        // 0700 sandbox directory, where no other user can reach a setuid file.
        (
            RestoreTo::Dir(self.target.clone()),
            RestoreOptions {
                keep_special_modes: true,
                ..RestoreOptions::default()
            },
        )
    }

    async fn check(&mut self, facts: &Facts) -> Result<Vec<Check>, ScratchError> {
        let walk = self.target.clone();
        let unreadable = |detail: String| ScratchError::Server {
            what: "reading the restored tree".into(),
            detail,
        };
        let tree = tokio::task::spawn_blocking(move || super::tree_facts(&walk))
            .await
            .map_err(|e| unreadable(e.to_string()))?
            .map_err(|e| unreadable(e.to_string()))?;
        Ok(checks::files(facts, &tree))
    }

    fn user_target(&self) -> UserTarget {
        UserTarget::path(&self.target)
    }
}
