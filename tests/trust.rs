//! Issue 9 "Trust": an attacker with write access to the store, the public age recipient and
//! a copy of the config writes snapshots; nothing they write may restore, verify green,
//! delete outside the store or overwrite what the catalog witnessed.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

/// Writes config `file` in `env`: one `files` source `f` backing up `path` into the shared
/// store `./store`, with its own catalog, and `encryption_extra` lines under `encryption:`.
fn files_config(env: &Env, file: &str, catalog: &str, path: &str, encryption_extra: &str) {
    std::fs::write(
        env.path(file),
        format!(
            "catalog: sqlite://./{catalog}\n\
             stores:\n  local: {{ url: \"file://./store\" }}\n\
             encryption:\n  recipients: [\"{}\"]\n  identity_file: ./age.key\n{encryption_extra}\
             sources:\n  - name: f\n    kind: files\n    path: {path}\n    store: local\n    retention: {{ keep_last: 1 }}\n",
            env.recipient
        ),
    )
    .unwrap();
}

/// `lifeboat keys generate --signing --output FILE`: the key file is 0600; returns the
/// printed public key.
fn signing_key(env: &Env, file: &str) -> String {
    let public = env.ok(&["keys", "generate", "--signing", "--output", file]);
    let public = public.trim().to_string();
    assert!(public.starts_with("lifeboat-ed25519:"), "{public}");
    let mode = std::fs::metadata(env.path(file))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "signing key mode");
    public
}

/// The attacker's tree: a root-owned-looking setuid binary.
fn evil_tree(env: &Env) {
    std::fs::create_dir_all(env.path("evil")).unwrap();
    std::fs::write(env.path("evil/sh"), "#!/bin/sh\nid\n").unwrap();
    std::fs::set_permissions(env.path("evil/sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
}

/// Backs up `f` with config `file`; returns the new snapshot id (the store's newest).
fn backup_with(env: &Env, file: &str) -> String {
    let out = env.ok(&["-c", file, "backup", "f"]);
    out.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no id in {out}"))
        .to_string()
}

fn victim_env() -> Env {
    let env = Env::new();
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/a.txt"), "genuine").unwrap();
    evil_tree(&env);
    env
}

#[test]
fn forged_snapshots_are_refused_by_restore_verify_and_rebuild() {
    let env = victim_env();
    let public = signing_key(&env, "signing.key");
    files_config(
        &env,
        "lifeboat.yaml",
        "catalog.db",
        "./data",
        "  signing_key_file: ./signing.key\n",
    );
    let genuine = backup_with(&env, "lifeboat.yaml");
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path(&format!("store/f/{genuine}/manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(m["signature"]["signer"], public.as_str(), "{m:#}");
    let out = env.ok(&["verify", &genuine]);
    assert!(out.contains("PASSED"), "{out}");

    // The attacker: same store and recipient, their own catalog, no signing key.
    files_config(&env, "attacker.yaml", "attacker.db", "./evil", "");
    let unsigned = backup_with(&env, "attacker.yaml");
    // ... and one signed with a key of their own.
    signing_key(&env, "attacker.key");
    files_config(
        &env,
        "attacker-signed.yaml",
        "attacker.db",
        "./evil",
        "  signing_key_file: ./attacker.key\n",
    );
    let foreign = backup_with(&env, "attacker-signed.yaml");

    for (id, why) in [
        (&unsigned, "not signed"),
        (&foreign, "not in encryption.trusted_signers"),
    ] {
        let err = env.fails(&["verify", id]);
        assert!(err.contains(why), "verify {id}: {err}");
        let err = env.fails(&["restore", id, "--to-dir", "out"]);
        assert!(err.contains(why), "restore {id}: {err}");
        assert!(!env.path("out").exists());
    }
    // A signed manifest altered afterwards.
    let path = env.path(&format!("store/f/{genuine}/manifest.json"));
    let mut tampered = m.clone();
    tampered["facts"]["files"] = 7.into();
    std::fs::write(&path, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let err = env.fails(&["restore", &genuine, "--to-dir", "out"]);
    assert!(err.contains("altered after it was signed"), "{err}");
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();

    // A fresh catalog rebuilt from the store records the genuine snapshot only.
    let out = env.run(&["--catalog", "sqlite://./rebuilt.db", "catalog", "rebuild"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1 snapshot(s) recorded"), "{stdout}");
    assert!(
        stderr.contains(&unsigned) && stderr.contains(&foreign),
        "{stderr}"
    );

    // A restore-only config trusting the public key (no signing key) accepts the genuine one.
    files_config(
        &env,
        "restore.yaml",
        "restore.db",
        "./data",
        &format!("  trusted_signers: [\"{public}\"]\n"),
    );
    env.ok(&["-c", "restore.yaml", "restore", &genuine, "--to-dir", "ok"]);
    assert_eq!(
        std::fs::read_to_string(env.path("ok/a.txt")).unwrap(),
        "genuine"
    );
    env.fails(&["-c", "restore.yaml", "restore", &unsigned, "--to-dir", "no"]);

    // A Kubernetes verification Job has the config but not the signing key: it trusts the
    // public keys handed to it in LIFEBOAT_TRUSTED_SIGNERS.
    files_config(
        &env,
        "job.yaml",
        "job.db",
        "./data",
        "  signing_key_file: ./not-in-the-job.key\n",
    );
    let err = env.fails(&["-c", "job.yaml", "restore", &genuine, "--to-dir", "job1"]);
    assert!(err.contains("not in encryption.trusted_signers"), "{err}");
    let out = env
        .command(&["-c", "job.yaml", "restore", &genuine, "--to-dir", "job2"])
        .env("LIFEBOAT_TRUSTED_SIGNERS", &public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    // --allow-unsigned is for snapshots made before signing: it says loudly what it skips,
    // and still refuses a foreign signature.
    let out = env.run(&[
        "--allow-unsigned",
        "restore",
        &unsigned,
        "--to-dir",
        "legacy",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("UNSIGNED"),
        "{}",
        text(&out.stderr)
    );
    let err = env.fails(&["--allow-unsigned", "restore", &foreign, "--to-dir", "x"]);
    assert!(err.contains("not in encryption.trusted_signers"), "{err}");
}

#[test]
fn config_check_warns_without_signing_and_rejects_a_bad_signer() {
    let env = victim_env();
    files_config(&env, "lifeboat.yaml", "catalog.db", "./data", "");
    let out = env.run(&["config", "check"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("no manifest signing configured"),
        "{}",
        text(&out.stderr)
    );
    files_config(
        &env,
        "lifeboat.yaml",
        "catalog.db",
        "./data",
        "  trusted_signers: [\"age1notakey\"]\n",
    );
    let err = env.fails(&["config", "check"]);
    assert!(err.contains("encryption.trusted_signers[0]"), "{err}");
}

#[test]
fn the_catalog_is_a_witness_of_what_was_backed_up() {
    // No signing configured (a legacy setup): the catalog still catches a replaced snapshot.
    let env = victim_env();
    files_config(&env, "lifeboat.yaml", "catalog.db", "./data", "");
    let genuine = backup_with(&env, "lifeboat.yaml");
    files_config(&env, "attacker.yaml", "attacker.db", "./evil", "");
    let forged = backup_with(&env, "attacker.yaml");
    // The attacker moves their snapshot into the genuine one's place, fixing up the id.
    let (gdir, fdir) = (
        env.path(&format!("store/f/{genuine}")),
        env.path(&format!("store/f/{forged}")),
    );
    std::fs::copy(fdir.join("data.zst.age"), gdir.join("data.zst.age")).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fdir.join("manifest.json")).unwrap()).unwrap();
    let real: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gdir.join("manifest.json")).unwrap()).unwrap();
    m["id"] = genuine.clone().into();
    m["created_at"] = real["created_at"].clone();
    std::fs::write(gdir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();

    let err = env.fails(&["restore", &genuine, "--to-dir", "out"]);
    assert!(err.contains("the catalog records SHA-256"), "{err}");
    assert!(!env.path("out").exists());
    let out = env.run(&["verify", &genuine]);
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("FAILED") || text(&out.stdout).contains("failed"));

    // rebuild keeps the witnessed row and reports the conflict.
    let before = env.snapshots();
    let out = env.run(&["catalog", "rebuild"]);
    assert!(
        text(&out.stderr).contains(&format!("CONFLICT {genuine}")),
        "{}",
        text(&out.stderr)
    );
    let after = env.snapshots();
    let sha = |rows: &[serde_json::Value]| {
        rows.iter()
            .find(|r| r["id"] == genuine.as_str())
            .map(|r| r["sha256"].clone())
    };
    assert_eq!(sha(&before), sha(&after));
    assert_eq!(sha(&after).unwrap(), real["sha256"]);

    // created_at must be the id's time.
    m["created_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(fdir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    m["id"] = forged.clone().into();
    std::fs::write(fdir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let err = env.fails(&["restore", &forged, "--to-dir", "out2"]);
    assert!(err.contains("not the time its id"), "{err}");
}

#[test]
fn a_planted_manifest_never_deletes_outside_the_store() {
    let env = victim_env();
    files_config(&env, "lifeboat.yaml", "catalog.db", "./data", "");
    // What the attacker wants gone: a directory next to the store.
    std::fs::create_dir_all(env.path("victim")).unwrap();
    std::fs::write(env.path("victim/precious"), "keep me").unwrap();
    let genuine = backup_with(&env, "lifeboat.yaml");
    // A manifest claiming to be `../../victim`, in a directory named like a snapshot.
    let planted_id = "20200101T000000.000Z-0bad";
    let gdir = env.path(&format!("store/f/{genuine}"));
    let pdir = env.path(&format!("store/f/{planted_id}"));
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::copy(gdir.join("data.zst.age"), pdir.join("data.zst.age")).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gdir.join("manifest.json")).unwrap()).unwrap();
    m["id"] = "../../victim".into();
    std::fs::write(pdir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();

    let err = env.fails(&["verify", planted_id]);
    assert!(err.contains("not a snapshot id"), "{err}");
    env.fails(&["restore", "../../victim", "--to-dir", "out"]);
    env.ok(&["catalog", "rebuild"]);
    assert!(
        env.snapshots().iter().all(|s| s["id"] == genuine.as_str()),
        "{:?}",
        env.snapshots()
    );
    backup_with(&env, "lifeboat.yaml");
    env.ok(&["prune"]);
    assert_eq!(
        std::fs::read_to_string(env.path("victim/precious")).unwrap(),
        "keep me"
    );
}

#[test]
fn store_deletes_stay_inside_the_store() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("victim")).unwrap();
    std::fs::write(env.path("victim/precious"), "keep me").unwrap();
    std::fs::create_dir_all(env.path("store/f")).unwrap();
    std::os::unix::fs::symlink(env.path("victim"), env.path("store/f/link")).unwrap();
    let cfg: lifeboat::store::StoreConfig =
        serde_yaml::from_str(&format!("url: \"file://{}\"", env.path("store").display())).unwrap();
    let store = lifeboat::store::Store::open("local", &cfg).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for rel in [
        "f/../../victim",
        "../victim",
        "f/./x",
        "/etc",
        "f//x",
        "f/link",
        "f/link/precious",
    ] {
        let e = rt.block_on(store.remove_dir(rel)).unwrap_err();
        assert_eq!(e.kind(), lifeboat::model::ErrorKind::Corrupt, "{rel}: {e}");
        assert!(e.to_string().contains("refusing"), "{e}");
        assert!(rt.block_on(store.delete(rel)).is_err(), "{rel}");
    }
    assert!(env.path("victim/precious").exists());
}

#[test]
fn once_signing_is_on_copy_and_prune_refuse_unsigned_snapshots_unless_allowed() {
    let env = victim_env();
    let yaml = |signing: &str| {
        format!(
            "catalog: sqlite://./catalog.db\n\
             stores:\n  local: {{ url: \"file://./store\" }}\n  dr: {{ url: \"file://./dr\" }}\n\
             encryption:\n  recipients: [\"{}\"]\n  identity_file: ./age.key\n{signing}\
             sources:\n  - name: f\n    kind: files\n    path: ./data\n    store: local\n    copies: [dr]\n    retention: {{ keep_last: 1 }}\n",
            env.recipient
        )
    };
    // Two snapshots made before signing (and before `copies:` was added).
    std::fs::write(
        env.path("lifeboat.yaml"),
        yaml("").replace("    copies: [dr]\n", ""),
    )
    .unwrap();
    let old = backup_with(&env, "lifeboat.yaml");
    backup_with(&env, "lifeboat.yaml");
    signing_key(&env, "signing.key");
    std::fs::write(
        env.path("lifeboat.yaml"),
        yaml("  signing_key_file: ./signing.key\n"),
    )
    .unwrap();
    // Signing on: the unsigned snapshots are neither copied nor pruned.
    let err = env.fails(&["copy"]);
    assert!(err.contains("not signed"), "{err}");
    assert!(!env.path(&format!("dr/f/{old}/manifest.json")).exists());
    let out = env.ok(&["prune"]);
    assert!(out.contains(&format!("skipped {old}")), "{out}");
    assert!(out.contains("not signed"), "{out}");
    assert!(env.path(&format!("store/f/{old}/manifest.json")).exists());
    // --allow-unsigned: the operator vouches for them.
    env.ok(&["--allow-unsigned", "copy"]);
    assert!(env.path(&format!("dr/f/{old}/manifest.json")).exists());
    let out = env.ok(&["--allow-unsigned", "prune"]);
    assert!(out.contains("pruned 1 snapshot(s)"), "{out}");
}

#[test]
fn prune_never_follows_a_catalog_row_with_an_escaping_id() {
    // A catalog written before ids were checked may hold a planted row: prune skips it.
    let env = victim_env();
    files_config(&env, "lifeboat.yaml", "catalog.db", "./data", "");
    std::fs::create_dir_all(env.path("victim")).unwrap();
    std::fs::write(env.path("victim/precious"), "keep me").unwrap();
    let genuine = backup_with(&env, "lifeboat.yaml");
    let mut m: lifeboat::model::snapshot::Manifest = serde_json::from_slice(
        &std::fs::read(env.path(&format!("store/f/{genuine}/manifest.json"))).unwrap(),
    )
    .unwrap();
    m.id = "../../victim".into();
    m.created_at -= chrono::Duration::days(1);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = format!("sqlite://{}", env.path("catalog.db").display());
        let catalog = lifeboat::catalog::Catalog::open(&lifeboat::config::SecretString::new(url))
            .await
            .unwrap();
        catalog.record_complete("local", &m).await.unwrap();
        catalog.close().await;
    });
    backup_with(&env, "lifeboat.yaml");
    let out = env.ok(&["prune"]);
    assert!(
        out.contains("skipped ../../victim: not a snapshot id"),
        "{out}"
    );
    assert!(env.path("victim/precious").exists());
}
