//! Reading a snapshot's manifest from a store: the commit point of every snapshot (a
//! snapshot exists once its manifest does, see [`crate::model::snapshot`]).

use crate::model::snapshot::{self, Manifest};
use crate::store::{Store, StoreError};

/// The manifest of `dir`, if it exists, parses, and its data objects are all present with
/// their recorded sizes. Anything less is not a committed snapshot.
pub async fn read_committed(store: &Store, dir: &str) -> Result<Option<Manifest>, StoreError> {
    let Some(manifest) = read_manifest(store, dir).await? else {
        return Ok(None);
    };
    for obj in &manifest.objects {
        let size = store.size(&format!("{dir}/{}", obj.name)).await?;
        if size != Some(obj.stored_bytes) {
            tracing::warn!(store = %store.name, dir, object = %obj.name, "manifest lists an object that is missing or has the wrong size; not a snapshot");
            return Ok(None);
        }
    }
    Ok(Some(manifest))
}

/// The manifest of `dir`, if it exists and parses (its objects are not checked).
pub async fn read_manifest(store: &Store, dir: &str) -> Result<Option<Manifest>, StoreError> {
    let bytes = match store
        .get_bytes(&format!("{dir}/{}", snapshot::MANIFEST))
        .await
    {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            tracing::warn!(store = %store.name, dir, cause = %e, "unreadable manifest; not a snapshot");
            Ok(None)
        }
    }
}
