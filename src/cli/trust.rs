//! `config check` for trust settings that need the network: a store with `object_lock` must
//! lock objects in the request that writes them (a bucket default retention at least as
//! strong as the config's), or the config is refused.
//!
//! Guarantees: only stores with `object_lock` are contacted (one GetObjectLockConfiguration
//! each); every failing store is named with what to set. Caveat: an unreachable store fails
//! the check too (it cannot be proven locked).

use anyhow::{Result, bail};

use crate::config::Config;
use crate::store::Store;

/// Checks every store with `object_lock`; an error lists each one that falls short.
pub async fn check_object_lock(config: &Config) -> Result<()> {
    let mut problems = Vec::new();
    for (name, cfg) in &config.stores {
        if cfg.object_lock.is_none() {
            continue;
        }
        let checked = match Store::open(name, cfg) {
            Ok(store) => store.check_lock().await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            problems.push(e.to_string());
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}
