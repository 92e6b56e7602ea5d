// What lifeboat's integration tests share: the real servers (`servers`), a scratch working
// directory with a key and a config, and helpers to run the `lifeboat` binary in it.
#![allow(dead_code, unused_imports)]

pub mod azurite;
pub mod browser;
pub mod cloudflare;
pub mod dns;
pub mod etcd;
pub mod failover;
pub mod gcs;
pub mod netns;
pub mod redis;
pub mod route53;
pub mod s3;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use servers::{MotoServer, PgServer};

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// A working directory holding an age key, a config and the local store/catalog.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub recipient: String,
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-test-")
            .tempdir()
            .expect("create temp dir");
        let out = Command::new(BIN)
            .args(["keys", "generate", "--output"])
            .arg(dir.path().join("age.key"))
            .output()
            .expect("run lifeboat keys generate");
        assert!(out.status.success(), "keys generate: {}", text(&out.stderr));
        let recipient = text(&out.stdout).trim().to_string();
        assert!(recipient.starts_with("age1"), "{recipient}");
        Env {
            dir,
            recipient,
            extra_env: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `lifeboat.yaml`; `{recipient}` in `yaml` is replaced by this env's key.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(
            self.path("lifeboat.yaml"),
            yaml.replace("{recipient}", &self.recipient),
        )
        .expect("write config");
    }

    /// A config with one PostgreSQL source `db` writing to `store` (and the stores given).
    pub fn pg_config(&self, catalog: &str, pg_url: &str, store: &str, stores: &str) {
        self.write_config(&format!(
            "catalog: {catalog}\n\
             stores:\n{stores}\n\
             encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
             sources:\n  - name: db\n    kind: postgres\n    url: \"{pg_url}\"\n    store: {store}\n    schedule: \"0 */6 * * *\"\n    objectives: {{ rpo: 6h, rto: 30m }}\n"
        ));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .args(["--log-format", "json"])
            .args(args)
            .env_remove("LIFEBOAT_FAILPOINT")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
            .env("AWS_REGION", "us-east-1");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run lifeboat")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lifeboat {args:?} failed:\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "lifeboat {args:?} should have failed:\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stderr)
    }

    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["snapshots", "list", "--output", "json"]);
        serde_json::from_str(&out).expect("snapshots list json")
    }

    /// Backs up source `db`; returns the new snapshot id.
    pub fn backup(&self) -> String {
        self.ok(&["backup", "db"]);
        let snaps = self.snapshots();
        let last = snaps.last().expect("a snapshot");
        assert_eq!(last["status"], "complete", "{last}");
        last["id"].as_str().expect("id").to_string()
    }

    /// Starts `lifeboat backup db` stalled at failpoint `name`; returns once it got there.
    pub fn backup_stalled_at(&self, name: &str) -> Child {
        self.stalled_at(&["backup", "db"], name)
    }

    /// Runs lifeboat with `args` and failpoint `name` armed; returns once it stalls there.
    pub fn stalled_at(&self, args: &[&str], name: &str) -> Child {
        let mut child = self
            .command(args)
            .env("LIFEBOAT_FAILPOINT", name)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lifeboat");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut seen = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("failpoint") && line.contains("reached") {
                    let _ = tx.send(Ok(()));
                    return;
                }
            }
            let _ = tx.send(Err(seen));
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(())) => child,
            Ok(Err(seen)) => panic!("lifeboat ended before failpoint {name}:\n{seen}"),
            Err(_) => {
                let _ = child.kill();
                panic!("failpoint {name} not reached in time");
            }
        }
    }
}

impl Env {
    /// Writes a committed snapshot (a small data object, then a manifest naming it) into the
    /// local store directory `store`, as a backup at `created_at` would have.
    pub fn write_fake_snapshot(
        &self,
        store: &str,
        source: &str,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let id = lifeboat::model::snapshot::new_id(created_at);
        let dir = self.path(store).join(source).join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let data = format!("not really encrypted: {id}");
        std::fs::write(dir.join(lifeboat::model::snapshot::DATA_OBJECT), &data).unwrap();
        let manifest = lifeboat::model::snapshot::Manifest {
            format: lifeboat::model::snapshot::FORMAT.into(),
            id: id.clone(),
            source: source.into(),
            kind: "postgres".into(),
            created_at,
            finished_at: created_at + chrono::Duration::seconds(42),
            duration_ms: 42_000,
            raw_bytes: 1000,
            compressed_bytes: 100,
            stored_bytes: data.len() as u64,
            sha256: "00".repeat(32),
            objects: vec![lifeboat::model::snapshot::ObjectEntry {
                name: lifeboat::model::snapshot::DATA_OBJECT.into(),
                stored_bytes: data.len() as u64,
                sha256: "00".repeat(32),
                version: None,
            }],
            compression: lifeboat::model::snapshot::Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            encryption: lifeboat::model::snapshot::Encryption {
                algorithm: "age".into(),
                recipients: vec![self.recipient.clone()],
            },
            facts: Default::default(),
            lifeboat_version: "0.1.0".into(),
            signature: None,
        };
        std::fs::write(
            dir.join(lifeboat::model::snapshot::MANIFEST),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        id
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// kill -9 and reap.
pub fn kill9(mut child: Child) {
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

/// Loads a dataset with several tables, a few hundred thousand rows, a bytea column and
/// non-ASCII text into database `db`.
pub fn load_dataset(pg: &PgServer, db: &str, scale: u32) {
    pg.create_db(db);
    pg.psql(
        db,
        &format!(
            "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text);
             INSERT INTO customers SELECT g, 'Kundin Nr. ' || g || ' — Zoë Ærøskøbing 東京 ✓', \
               (ARRAY['Zürich','São Paulo','Łódź','Москва','서울'])[1 + g % 5] \
               FROM generate_series(1, {c}) g;
             CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers, \
               amount numeric(12,2), created_at timestamptz, note text);
             INSERT INTO orders SELECT g, 1 + g % {c}, (g % 100000) / 100.0, \
               timestamptz '2026-01-01' + g * interval '1 minute', md5(g::text) \
               FROM generate_series(1, {o}) g;
             CREATE TABLE blobs (id int PRIMARY KEY, payload bytea NOT NULL);
             INSERT INTO blobs SELECT g, decode(md5(random()::text) || md5(random()::text) || md5(g::text), 'hex') \
               FROM generate_series(1, {b}) g;
             CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 900;",
            c = 50_000 * scale,
            o = 200_000 * scale,
            b = 100_000 * scale,
        ),
    );
}

/// Per-table checksums of the dataset, for comparing a source with its restore.
pub fn dataset_checksums(pg: &PgServer, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(t || '=' || c, ' ' ORDER BY t) FROM ( \
           SELECT 'customers' t, count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) c FROM customers x \
           UNION ALL SELECT 'orders', count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM orders x \
           UNION ALL SELECT 'blobs', count(*) || ':' || md5(string_agg(x::text, '|' ORDER BY id)) FROM blobs x \
           UNION ALL SELECT 'big_orders', count(*)::text FROM big_orders \
         ) s",
    )
}

/// Files under `dir`, recursively, relative (empty if `dir` is missing).
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
