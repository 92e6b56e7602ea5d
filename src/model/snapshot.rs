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
/// The manifest format written now. v2: every manifest records its kind's facts (a
/// verification without them fails) and may be signed.
pub const FORMAT: &str = "lifeboat.snapshot/v2";
/// The format of manifests that may lack facts (they verify on what can be checked).
pub const FORMAT_V1: &str = "lifeboat.snapshot/v1";

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
    /// The backup side's ed25519 signature over [`Manifest::signed_bytes`] (absent in
    /// snapshots made before signing, or without `encryption.signing_key_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// A manifest's signature: who signed (the public key, `lifeboat-ed25519:<base64>`) and the
/// signature itself (base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub algorithm: String,
    pub signer: String,
    pub value: String,
}

/// What a manifest's signature covers, in a fixed field order.
#[derive(Serialize)]
struct Signed<'a> {
    domain: &'static str,
    format: &'a str,
    id: &'a str,
    source: &'a str,
    kind: &'a str,
    created_at: String,
    sha256: &'a str,
    stored_bytes: u64,
    objects: Vec<(&'a str, u64, &'a str)>,
    recipients: &'a [String],
    facts: serde_json::Value,
    /// (object name, store URL, version id) of every object with a recorded version; left
    /// out when none has one, so manifests signed before versions were recorded still
    /// verify, and one cannot be stripped from a newer manifest without breaking its
    /// signature.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    versions: Vec<(&'a str, &'a str, &'a str)>,
}

/// `v` with every object's keys sorted (whatever order the map kept).
fn canonical(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: std::collections::BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical).collect())
        }
        other => other.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Relative to the snapshot directory.
    pub name: String,
    pub stored_bytes: u64,
    pub sha256: String,
    /// The object version the store created when the backup wrote it (S3 with versioning,
    /// hence Object Lock), and the store it is a version in. Restore and verify read that
    /// version, not whatever the key holds now. Absent in older manifests and on stores
    /// without versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
}

/// One object version in one store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// The store's URL (`s3://bucket/prefix`): a version id means nothing in another store
    /// (a copy has versions of its own).
    pub store: String,
    pub id: String,
}

impl ObjectEntry {
    /// The recorded version of this object, if it is a version in the store at `store_url`.
    pub fn version_in(&self, store_url: &str) -> Option<&str> {
        self.version
            .as_ref()
            .filter(|v| v.store == store_url)
            .map(|v| v.id.as_str())
    }
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

    /// Made before every manifest recorded facts: missing facts are skipped, not failed.
    pub fn predates_facts(&self) -> bool {
        self.format == FORMAT_V1
    }

    /// The canonical encoding a signature covers: id, source, kind, created_at, every
    /// object's name, size, SHA-256 and recorded version, the recipients and the facts (keys
    /// sorted).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let signed = Signed {
            domain: "lifeboat.manifest-signature/v1",
            format: &self.format,
            id: &self.id,
            source: &self.source,
            kind: &self.kind,
            created_at: self
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            sha256: &self.sha256,
            stored_bytes: self.stored_bytes,
            objects: self
                .objects
                .iter()
                .map(|o| (o.name.as_str(), o.stored_bytes, o.sha256.as_str()))
                .collect(),
            recipients: &self.encryption.recipients,
            facts: canonical(&serde_json::Value::Object(self.facts.clone())),
            versions: self
                .objects
                .iter()
                .filter_map(|o| {
                    o.version
                        .as_ref()
                        .map(|v| (o.name.as_str(), v.store.as_str(), v.id.as_str()))
                })
                .collect(),
        };
        // A struct of strings, numbers and JSON values always serializes.
        serde_json::to_vec(&signed).unwrap_or_default()
    }

    /// Whether this manifest may be what directory `dir` (`<source>/<id>`) holds: its id and
    /// source are that directory's, both follow their grammar ([`valid_id`], [`valid_name`]),
    /// and `created_at` is the time its id encodes. Says what is wrong otherwise.
    pub fn check_place(&self, dir: &str) -> Result<(), String> {
        if !valid_name(&self.source) {
            return Err(format!(
                "its source `{}` is not a valid source name",
                self.source.escape_debug()
            ));
        }
        if !valid_id(&self.id) {
            return Err(format!(
                "its id `{}` is not a snapshot id",
                self.id.escape_debug()
            ));
        }
        if self::dir(&self.source, &self.id) != dir {
            return Err(format!(
                "it names {}/{} but was read from {dir}",
                self.source, self.id
            ));
        }
        if id_time(&self.id).map(|t| t.timestamp_millis())
            != Some(self.created_at.timestamp_millis())
        {
            return Err(format!(
                "its created_at {} is not the time its id {} encodes",
                self.created_at.to_rfc3339(),
                self.id
            ));
        }
        for o in &self.objects {
            if !valid_object_name(&o.name) {
                return Err(format!(
                    "it lists an object named `{}`, which is not a plain file name",
                    o.name.escape_debug()
                ));
            }
        }
        Ok(())
    }
}

/// Source and store names: 1-63 ASCII letters, digits, `-`, `_`, `.`, not starting with `.`
/// (they become object-key path segments).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.')
}

/// An id as [`new_id`] makes them: `YYYYMMDDTHHMMSS.mmmZ-xxxx` (lowercase hex suffix).
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 25
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..19)
        && b[19] == b'Z'
        && b[20] == b'-'
        && b[21..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        && id_time(id).is_some()
}

/// An object of a snapshot: a plain file name inside its directory.
fn valid_object_name(name: &str) -> bool {
    valid_name(name)
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
        assert!(valid_id(&a), "{a}");
        for bad in [
            "garbage",
            "../../../victim",
            "20261125T095959.999Z-9f3a/..",
            "",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    fn manifest(id: &str, source: &str) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            id: id.into(),
            source: source.into(),
            kind: "files".into(),
            created_at: id_time(id).unwrap_or_default(),
            finished_at: id_time(id).unwrap_or_default(),
            duration_ms: 1,
            raw_bytes: 1,
            compressed_bytes: 1,
            stored_bytes: 1,
            sha256: "00".into(),
            objects: vec![ObjectEntry {
                name: DATA_OBJECT.into(),
                stored_bytes: 1,
                sha256: "00".into(),
                version: None,
            }],
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            encryption: Encryption {
                algorithm: "age".into(),
                recipients: vec![],
            },
            facts: serde_json::json!({"b": 1, "a": {"y": 2, "x": 1}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            lifeboat_version: "0".into(),
            signature: None,
        }
    }

    #[test]
    fn a_manifest_must_be_where_it_claims_and_when_its_id_says() {
        let id = new_id(DateTime::UNIX_EPOCH + chrono::Duration::days(20_000));
        let m = manifest(&id, "db");
        assert_eq!(m.check_place(&dir("db", &id)), Ok(()));
        assert!(m.check_place(&dir("other", &id)).is_err());
        let planted = manifest("../../../victim", "db");
        assert!(planted.check_place("db/../../../victim").is_err());
        let mut late = m.clone();
        late.created_at += chrono::Duration::days(1);
        assert!(late.check_place(&dir("db", &id)).is_err());
        let mut escape = m.clone();
        escape.objects[0].name = "../x".into();
        assert!(escape.check_place(&dir("db", &id)).is_err());
    }

    #[test]
    fn signed_bytes_cover_the_facts_in_any_key_order() {
        let id = new_id(DateTime::UNIX_EPOCH + chrono::Duration::days(20_000));
        let m = manifest(&id, "db");
        let text = serde_json::to_string(&m).unwrap();
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(m.signed_bytes(), back.signed_bytes());
        let mut changed = m.clone();
        changed.facts.insert("b".into(), 2.into());
        assert_ne!(m.signed_bytes(), changed.signed_bytes());
        let mut resized = m.clone();
        resized.objects[0].stored_bytes = 2;
        assert_ne!(m.signed_bytes(), resized.signed_bytes());
    }

    #[test]
    fn versions_are_signed_and_older_manifests_keep_their_signed_bytes() {
        let id = new_id(DateTime::UNIX_EPOCH + chrono::Duration::days(20_000));
        let m = manifest(&id, "db");
        // A manifest without versions encodes exactly as before versions existed (the
        // text below is what a pre-version lifeboat signed), so old signatures still hold.
        let text = String::from_utf8(m.signed_bytes()).unwrap();
        assert!(!text.contains("versions"), "{text}");
        assert!(
            text.ends_with(r#""facts":{"a":{"x":1,"y":2},"b":1}}"#),
            "{text}"
        );
        let old_json = serde_json::to_string(&m).unwrap();
        assert!(!old_json.contains("\"version\""), "{old_json}");
        let mut v = m.clone();
        v.objects[0].version = Some(ObjectVersion {
            store: "s3://b/p".into(),
            id: "v1".into(),
        });
        assert_ne!(m.signed_bytes(), v.signed_bytes());
        let mut other = v.clone();
        other.objects[0].version.as_mut().unwrap().id = "v2".into();
        assert_ne!(v.signed_bytes(), other.signed_bytes());
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert_eq!(v.objects[0].version_in("s3://b/p"), Some("v1"));
        assert_eq!(v.objects[0].version_in("s3://copy/p"), None);
        // An older manifest (no `version` key) still parses.
        let older: Manifest = serde_json::from_str(&old_json).unwrap();
        assert_eq!(older.objects[0].version, None);
    }
}
