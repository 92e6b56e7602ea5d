//! The command kind's scratch: the restore command runs with a scratch directory as
//! `$LIFEBOAT_TARGET`. lifeboat knows nothing of what it restores, so only the user's checks
//! look at the result. See [`crate::kinds::scratch`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::kinds::checks::Check;
use crate::kinds::scratch::{Scratch, ScratchError, UserTarget};
use crate::kinds::{Facts, RestoreOptions, RestoreTo};

pub struct CommandScratch {
    target: PathBuf,
}

impl CommandScratch {
    pub fn new(dir: &Path) -> Result<CommandScratch, ScratchError> {
        let target = dir.join("target");
        std::fs::create_dir_all(&target).map_err(|source| ScratchError::Dir {
            dir: target.clone(),
            source,
        })?;
        Ok(CommandScratch { target })
    }
}

#[async_trait]
impl Scratch for CommandScratch {
    fn restore_to(&self) -> (RestoreTo, RestoreOptions) {
        (
            RestoreTo::Url(self.target.display().to_string()),
            RestoreOptions::default(),
        )
    }

    async fn check(&mut self, _facts: &Facts) -> Result<Vec<Check>, ScratchError> {
        Ok(Vec::new())
    }

    fn user_target(&self) -> UserTarget {
        UserTarget::path(&self.target)
    }
}
