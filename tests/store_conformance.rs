//! One store conformance suite, run against every store implementation lifeboat supports:
//! `file://` (a temp dir), S3 (moto), Azure Blob (Azurite) and GCS (fake-gcs-server), each a
//! real server on a loopback port started fresh for the test.
//!
//! Every case is one function taking a [`Fixture`]; `suite!` turns each (implementation,
//! case) pair into a `#[test]` named `<impl>::<case>` (`cargo test --test store_conformance
//! azure::` runs one implementation, `-- multipart` one case everywhere).

mod common;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use common::azurite::{self, Azurite};
use common::gcs::GcsServer;
use common::*;
use futures::TryStreamExt;
use lifeboat::config::StoreConfig;
use lifeboat::store::{Store, StoreError};

/// Multipart part size every fixture configures (lifeboat's minimum).
const PART: usize = 5 * 1024 * 1024;

const GCS_BUCKET: &str = "lifeboat-conformance";

// GCS: lifeboat writes through the JSON upload API (src/store/gcs.rs), which the emulator
// implements; object_store's XML-API writes (which no emulator installable here takes) are
// not used.

/// A store under test: its config entry, what the `lifeboat` CLI needs to reach it, and the
/// server behind it (kept alive as long as the fixture).
struct Fixture {
    kind: &'static str,
    /// The store's `stores:` entry (a YAML flow mapping), self-contained (credentials
    /// included): what the in-process cases open.
    entry: String,
    /// The entry the CLI's config gets: credentials come from `cli_env` instead.
    cli_entry: String,
    cli_env: Vec<(String, String)>,
    /// Values that must never show in lifeboat's output or errors.
    secrets: Vec<String>,
    _dir: tempfile::TempDir,
    _server: Server,
}

#[allow(dead_code)] // the servers are only held, to be killed on drop
enum Server {
    None,
    Moto(MotoServer),
    Azurite(Azurite),
    Gcs(GcsServer),
}

impl Fixture {
    fn new(kind: &'static str, entry: String, server: Server, dir: tempfile::TempDir) -> Self {
        Fixture {
            kind,
            cli_entry: entry.clone(),
            entry,
            cli_env: Vec::new(),
            secrets: Vec::new(),
            _dir: dir,
            _server: server,
        }
    }

    fn file() -> Fixture {
        let dir = scratch();
        let entry = format!(
            "{{ url: \"file://{}/store\", part_size: 5MiB }}",
            dir.path().display()
        );
        Fixture::new("file", entry, Server::None, dir)
    }

    fn s3() -> Fixture {
        let moto = MotoServer::start();
        moto.create_bucket("lifeboat-conformance");
        let common = format!(
            "url: \"s3://lifeboat-conformance/suite\", region: us-east-1, endpoint: \"{}\", part_size: 5MiB",
            moto.endpoint()
        );
        let mut f = Fixture::new(
            "s3",
            format!(
                "{{ {common}, access_key_id: testing, secret_access_key: testing-secret-key }}"
            ),
            Server::Moto(moto),
            scratch(),
        );
        // `Env::command` gives the CLI moto's credentials as AWS_* variables.
        f.cli_entry = format!("{{ {common} }}");
        f.secrets = vec!["testing-secret-key".into()];
        f
    }

    fn azure() -> Fixture {
        let azurite = Azurite::start();
        azurite.create_container("lifeboat");
        let common = format!(
            "url: \"az://lifeboat/suite\", endpoint: \"{}\", part_size: 5MiB",
            azurite.endpoint()
        );
        let mut f = Fixture::new(
            "azure",
            format!(
                "{{ {common}, options: {{ azure_storage_account_name: {}, azure_storage_account_key: \"{}\" }} }}",
                azurite::ACCOUNT,
                azurite::ACCOUNT_KEY
            ),
            Server::Azurite(azurite),
            scratch(),
        );
        // The CLI reads the account from the environment, as in production.
        f.cli_entry = format!("{{ {common} }}");
        f.cli_env = vec![
            ("AZURE_STORAGE_ACCOUNT_NAME".into(), azurite::ACCOUNT.into()),
            (
                "AZURE_STORAGE_ACCOUNT_KEY".into(),
                azurite::ACCOUNT_KEY.into(),
            ),
        ];
        f.secrets = vec![azurite::ACCOUNT_KEY.into()];
        f
    }

    fn gcs() -> Fixture {
        let gcs = GcsServer::start();
        gcs.create_bucket(GCS_BUCKET);
        // The emulator checks no credentials. A service account with `disable_oauth` sends
        // an empty token and never asks a metadata server or Google for one
        // (`google_skip_signature` still fetches one for uploads).
        let entry = format!(
            "{{ url: \"gs://{GCS_BUCKET}/suite\", endpoint: \"{}\", part_size: 5MiB, \
             options: {{ google_service_account_key: '{{\"disable_oauth\": true, \"client_email\": \"\", \"private_key\": \"\", \"private_key_id\": \"\"}}' }} }}",
            gcs.endpoint()
        );
        Fixture::new("gcs", entry, Server::Gcs(gcs), scratch())
    }

    /// Writes the object at `rel` (relative to the store's prefix) for a case that tests
    /// reading, listing or deleting, through lifeboat's own `put_bytes`.
    async fn seed(&self, store: &Store, rel: &str, body: Vec<u8>) {
        store
            .put_bytes(rel, Bytes::from(body))
            .await
            .unwrap_or_else(|e| panic!("put {rel}: {e}"));
    }

    fn store(&self) -> Store {
        let cfg: StoreConfig = serde_yaml::from_str(&self.entry)
            .unwrap_or_else(|e| panic!("{} store entry {}: {e}", self.kind, self.entry));
        assert!(cfg.part_size.0 == PART, "{}", self.entry);
        Store::open(self.kind, &cfg).unwrap_or_else(|e| panic!("open {} store: {e}", self.kind))
    }

    /// Panics if `text` (output or an error) shows one of the fixture's secrets.
    fn assert_no_secret(&self, what: &str, text: &str) {
        for secret in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a secret: {text}"
            );
        }
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lifeboat-conformance-")
        .tempdir()
        .expect("create temp dir")
}

/// Runs `fut` on a runtime of its own, bounded in time (a hung emulator fails the test).
fn block_on<T>(fut: impl Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(180), fut)
            .await
            .expect("store operation timed out after 180 s")
    })
}

/// `len` deterministic, incompressible bytes (xorshift), different for each `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

/// A small object (and an empty one) round trips; a second put replaces the first.
fn put_get_small(f: &Fixture) {
    let store = f.store();
    block_on(async {
        store.check().await.expect("check");
        let body = "hello, lifeboat — ünïcødé ✓\n";
        store
            .put_bytes("objects/small.txt", Bytes::from(body))
            .await
            .expect("put small");
        let got = store.get_bytes("objects/small.txt").await.expect("get");
        assert_eq!(got, body.as_bytes());
        assert_eq!(
            store.size("objects/small.txt").await.expect("size"),
            Some(body.len() as u64)
        );

        store
            .put_bytes("objects/small.txt", Bytes::from_static(b"replaced"))
            .await
            .expect("overwrite");
        assert_eq!(
            store.get_bytes("objects/small.txt").await.expect("get"),
            &b"replaced"[..]
        );

        store
            .put_bytes("objects/empty", Bytes::new())
            .await
            .expect("put empty");
        assert_eq!(
            store.get_bytes("objects/empty").await.expect("get").len(),
            0
        );
        assert_eq!(store.size("objects/empty").await.expect("size"), Some(0));
    });
}

/// A streaming upload of more than two parts (not a multiple of the part size) reads back
/// identical, whole and streamed.
fn multipart_large(f: &Fixture) {
    let store = f.store();
    assert_eq!(store.part_size, PART);
    let data = noise(2 * PART + PART / 2 + 12_345, 1);
    block_on(async {
        let mut up = store.upload("big/data.bin").await.expect("start upload");
        for chunk in data.chunks(1024 * 1024 + 7) {
            up.put(Bytes::copy_from_slice(chunk))
                .await
                .expect("put part");
        }
        up.finish().await.expect("finish upload");

        assert_eq!(
            store.size("big/data.bin").await.expect("size"),
            Some(data.len() as u64)
        );
        let streamed: Vec<u8> = store
            .get_stream("big/data.bin")
            .await
            .expect("get stream")
            .try_fold(Vec::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await
            .expect("read stream");
        assert!(
            streamed == data,
            "streamed object differs from what was uploaded"
        );
        let whole = store.get_bytes("big/data.bin").await.expect("get");
        assert!(whole == data, "object differs from what was uploaded");
    });
}

/// An upload that is aborted (or never finished) leaves no object behind.
fn aborted_upload_leaves_nothing(f: &Fixture) {
    let store = f.store();
    block_on(async {
        let mut up = store
            .upload("aborted/data.bin")
            .await
            .expect("start upload");
        up.put(Bytes::from(noise(PART + 1, 2))).await.expect("put");
        up.flush().await.expect("flush");
        up.abort().await;
        assert_eq!(store.size("aborted/data.bin").await.expect("size"), None);
        assert_eq!(store.list("aborted").await.expect("list"), vec![]);
    });
}

/// Objects already in the store read back whole, streamed and by size.
fn get_existing(f: &Fixture) {
    let store = f.store();
    let big = noise(PART + 4321, 4);
    block_on(async {
        f.seed(&store, "read/small", b"small object".to_vec()).await;
        f.seed(&store, "read/big.bin", big.clone()).await;
        assert_eq!(
            store.get_bytes("read/small").await.expect("get"),
            &b"small object"[..]
        );
        assert_eq!(store.size("read/small").await.expect("size"), Some(12));
        assert_eq!(
            store.size("read/big.bin").await.expect("size"),
            Some(big.len() as u64)
        );
        let streamed: Vec<u8> = store
            .get_stream("read/big.bin")
            .await
            .expect("get stream")
            .try_fold(Vec::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await
            .expect("read stream");
        assert!(
            streamed == big,
            "streamed object differs from what was stored"
        );
    });
}

/// Listing a prefix gives exactly the objects under it (as whole path segments), with sizes,
/// relative to the store's own prefix and sorted.
fn list_prefix(f: &Fixture) {
    let store = f.store();
    block_on(async {
        for (key, len) in [
            ("snap/a/1", 1),
            ("snap/a/2", 22),
            ("snap/b/1", 333),
            ("snapshot-other/x", 4),
            ("other/y", 5),
        ] {
            f.seed(&store, key, vec![b'x'; len]).await;
        }
        assert_eq!(
            store.list("snap/a").await.expect("list"),
            vec![("snap/a/1".to_string(), 1), ("snap/a/2".to_string(), 22)]
        );
        assert_eq!(
            store
                .list("snap/a/")
                .await
                .expect("list with a trailing slash"),
            store.list("snap/a").await.expect("list")
        );
        let snap: Vec<String> = store
            .list("snap")
            .await
            .expect("list")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(snap, ["snap/a/1", "snap/a/2", "snap/b/1"]);
        assert_eq!(store.list("").await.expect("list all").len(), 5);
        assert_eq!(store.list("nothing-here").await.expect("list"), vec![]);
    });
}

/// Deleting removes the object (and a missing one is no error); `remove_dir` empties a
/// prefix and says how many objects it removed.
fn delete(f: &Fixture) {
    let store = f.store();
    block_on(async {
        for key in ["d/1", "d/2", "d/sub/3", "keep/4"] {
            f.seed(&store, key, b"data".to_vec()).await;
        }
        store.delete("d/1").await.expect("delete");
        assert_eq!(store.size("d/1").await.expect("size"), None);
        assert!(matches!(
            store.get_bytes("d/1").await,
            Err(StoreError::NotFound { .. })
        ));
        store
            .delete("d/1")
            .await
            .expect("deleting a missing object");
        assert_eq!(store.list("d").await.expect("list").len(), 2);

        assert_eq!(store.remove_dir("d").await.expect("remove_dir"), 2);
        assert_eq!(store.list("d").await.expect("list"), vec![]);
        assert_eq!(
            store.list("").await.expect("list"),
            vec![("keep/4".to_string(), 4)]
        );
    });
}

/// Reading a missing object is a `NotFound` naming the store and the key, whole or streamed.
fn missing_object_is_not_found(f: &Fixture) {
    let store = f.store();
    block_on(async {
        let err = store
            .get_bytes("no/such/object")
            .await
            .expect_err("get of a missing object");
        match &err {
            StoreError::NotFound {
                store: name, key, ..
            } => {
                assert_eq!(name, f.kind);
                assert_eq!(key, "no/such/object");
            }
            other => panic!("expected NotFound, got: {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("has no object no/such/object"), "{msg}");
        f.assert_no_secret("the not-found error", &msg);
        assert!(matches!(
            store.get_stream("no/such/object").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.size("no/such/object").await.expect("size"), None);
    });
}

/// `lifeboat backup` of a directory into the store and `lifeboat restore --to-dir` from it
/// give back the same tree, byte for byte; the snapshot's objects are in the store.
fn backup_and_restore(f: &Fixture) {
    let mut env = Env::new();
    env.extra_env.extend(f.cli_env.iter().cloned());
    let tree = env.path("tree");
    std::fs::create_dir_all(tree.join("nested/deeper")).expect("mkdir");
    std::fs::write(tree.join("README"), "snapshot me — ✓\n").expect("write");
    std::fs::write(tree.join("nested/empty"), "").expect("write");
    // Incompressible and larger than a part: the encrypted data object is a multipart upload.
    let big = noise(PART + PART / 3, 3);
    std::fs::write(tree.join("nested/deeper/big.bin"), &big).expect("write");
    env.write_config(&format!(
        "stores:\n  remote: {}\ncatalog: sqlite://./catalog.db\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
         sources:\n  - name: tree\n    kind: files\n    path: ./tree\n    store: remote\n",
        f.cli_entry
    ));

    let run = |args: &[&str]| {
        let out = env.run(args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "lifeboat {args:?} against {} failed:\nstdout: {stdout}\nstderr: {stderr}",
            f.kind
        );
        f.assert_no_secret(
            &format!("lifeboat {args:?}"),
            &format!("{stdout}\n{stderr}"),
        );
    };
    run(&["backup", "tree"]);
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["status"], "complete", "{}", snaps[0]);
    let id = snaps[0]["id"].as_str().expect("snapshot id").to_string();

    let objects = block_on(f.store().list(&format!("tree/{id}"))).expect("list snapshot");
    let names: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names.contains(&format!("tree/{id}/manifest.json").as_str()),
        "{names:?}"
    );
    assert!(
        objects.iter().any(|(_, size)| *size as usize > PART),
        "no object larger than a part: {objects:?}"
    );

    run(&["restore", &id, "--to-dir", "restored"]);
    let restored = env.path("restored");
    assert_eq!(files_under(&tree), files_under(&restored));
    for rel in files_under(&tree) {
        let (a, b) = (
            std::fs::read(tree.join(&rel)).expect("read original"),
            std::fs::read(restored.join(&rel)).expect("read restored"),
        );
        assert!(
            a == b,
            "{rel} differs after the round trip through {}",
            f.kind
        );
    }
}

// ---------------------------------------------------------------------------
// Every case against every implementation
// ---------------------------------------------------------------------------

/// `suite! { NAME => FIXTURE; ... }`; `NAME => FIXTURE, #[ATTR];` puts ATTR on the cases
/// that write through lifeboat (see the GCS note at the top).
macro_rules! suite {
    ($($implementation:ident => $fixture:expr;)*) => {$(
        mod $implementation {
            use super::*;

            fn fixture() -> Fixture {
                $fixture
            }

            #[test]
            fn put_get_small() {
                super::put_get_small(&fixture());
            }

            #[test]
            fn multipart_large() {
                super::multipart_large(&fixture());
            }

            #[test]
            fn aborted_upload_leaves_nothing() {
                super::aborted_upload_leaves_nothing(&fixture());
            }

            #[test]
            fn get_existing() {
                super::get_existing(&fixture());
            }

            #[test]
            fn list_prefix() {
                super::list_prefix(&fixture());
            }

            #[test]
            fn delete() {
                super::delete(&fixture());
            }

            #[test]
            fn missing_object_is_not_found() {
                super::missing_object_is_not_found(&fixture());
            }

            #[test]
            fn backup_and_restore() {
                super::backup_and_restore(&fixture());
            }
        }
    )*};
}

suite! {
    file => Fixture::file();
    s3 => Fixture::s3();
    azure => Fixture::azure();
    gcs => Fixture::gcs();
}

/// gs:// and az:// stores refuse what they would otherwise silently ignore (a misspelt
/// option key, S3 credential keys), without echoing the values.
#[test]
fn gcs_and_azure_reject_unknown_options() {
    for entry in [
        "{ url: \"az://c/p\", options: { azure_storage_acount_key: \"s3cr3t-value\" } }",
        "{ url: \"gs://b/p\", options: { google_service_acount_key: \"s3cr3t-value\" } }",
        "{ url: \"gs://b/p\", access_key_id: a, secret_access_key: \"s3cr3t-value\" }",
    ] {
        let cfg: StoreConfig = serde_yaml::from_str(entry).expect("store entry");
        let err = Store::open("remote", &cfg).expect_err(entry).to_string();
        assert!(err.contains("store `remote`"), "{err}");
        assert!(
            err.contains("acount_key") || err.contains("s3:// stores"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t-value"), "{err}");
    }
    // Option keys are case-insensitive, as object_store's own URL parsing has them.
    let cfg: StoreConfig = serde_yaml::from_str(&format!(
        "{{ url: \"az://c/p\", options: {{ AZURE_STORAGE_ACCOUNT_NAME: {}, Azure_Storage_Account_Key: \"{}\" }} }}",
        azurite::ACCOUNT,
        azurite::ACCOUNT_KEY
    ))
    .expect("store entry");
    Store::open("remote", &cfg).expect("upper-case option keys");
}
