//! Snapshot ids and manifests: the commit protocol.
//!
//! A snapshot lives under `<store prefix>/<source>/<snapshot id>/`: its data object(s) first,
//! then `manifest.json`, written **last**. The manifest is the commit record: a directory
//! without one is not a snapshot (it is an interrupted run, and its objects are orphans to be
//! removed), and a manifest is never written before every object it lists is complete.
//! Because the manifest carries everything the catalog knows of a snapshot, the catalog can
//! be rebuilt from the stores alone.
//!
//! Snapshot ids are UTC timestamps with milliseconds and a random suffix
//! (`20261125T111622.123Z-9f3a`), so they sort by creation time and never collide.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "manifest.json";
pub const DATA_OBJECT: &str = "data.zst.age";
pub const FORMAT: &str = "lifeboat.snapshot/v1";

pub fn new_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u16>()
    )
}

/// The creation time encoded in an id, if it is one of ours.
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Store-relative directory of a snapshot.
pub fn dir(source: &str, id: &str) -> String {
    format!("{source}/{id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub id: String,
    pub source: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Bytes produced by the source (the dump).
    pub raw_bytes: u64,
    /// Bytes after zstd.
    pub compressed_bytes: u64,
    /// Bytes written to the store (after age), summed over the objects.
    pub stored_bytes: u64,
    /// SHA-256 of the stored data object (the only one, in format v1).
    pub sha256: String,
    pub objects: Vec<ObjectEntry>,
    pub compression: Compression,
    pub encryption: Encryption,
    /// Kind-specific facts recorded at backup time (tool and server versions, ...).
    #[serde(default)]
    pub facts: serde_json::Map<String, serde_json::Value>,
    pub lifeboat_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Relative to the snapshot directory.
    pub name: String,
    pub stored_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    pub algorithm: String,
    /// Public keys only.
    pub recipients: Vec<String>,
}

impl Manifest {
    pub fn data_object(&self) -> Option<&ObjectEntry> {
        self.objects.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let t1 = DateTime::parse_from_rfc3339("2026-11-25T09:59:59.999Z")
            .unwrap()
            .with_timezone(&Utc);
        let t2 = t1 + chrono::Duration::milliseconds(1);
        let (a, b) = (new_id(t1), new_id(t2));
        assert!(a < b, "{a} < {b}");
        assert_eq!(id_time(&a), Some(t1));
        assert_eq!(id_time("garbage"), None);
    }
}
