//! `lifeboat dns show|set|delete`, the real binary against a real BIND 9 primary with a Knot
//! secondary (NOTIFY + AXFR over TSIG): compare-and-swap exit codes, waiting until both
//! nameservers agree, naming the ones that do not, JSON timings, and a TSIG secret that never
//! reaches the output.

mod common;

use common::Env;
use common::dns::{DnsServer, TsigKey, dig};

struct World {
    env: Env,
    key: TsigKey,
    bind: DnsServer,
    knot: DnsServer,
    dead: u16,
}

fn world() -> World {
    let key = TsigKey::random();
    let secondary = common::servers::free_port();
    let bind = DnsServer::bind(&key, Some(secondary));
    let knot = DnsServer::knot_secondary(&key, bind.port(), secondary);
    let dead = common::servers::free_port();
    let mut env = Env::new();
    env.extra_env
        .push(("TSIG_SECRET".into(), key.secret.clone()));
    env.write_config(&format!(
        "stores:\n  local: {{ url: \"file://./store\" }}\n\
         encryption:\n  recipients: [\"{{recipient}}\"]\n\
         sources: []\n\
         dns:\n\
         \x20 providers:\n\
         \x20   bind: {{ kind: rfc2136, server: \"127.0.0.1:{b}\", tsig: {{ name: {k}, algorithm: hmac-sha256, secret: \"${{TSIG_SECRET}}\" }} }}\n\
         \x20 records:\n\
         \x20   - name: seed.example.test.\n\
         \x20     zone: example.test.\n\
         \x20     type: A\n\
         \x20     ttl: 30\n\
         \x20     provider: bind\n\
         \x20     nameservers: [\"127.0.0.1:{b}\", \"127.0.0.1:{s}\"]\n\
         \x20     verify_timeout: 60s\n\
         \x20   - name: lost.example.test.\n\
         \x20     zone: example.test.\n\
         \x20     type: A\n\
         \x20     ttl: 30\n\
         \x20     provider: bind\n\
         \x20     nameservers: [\"127.0.0.1:{b}\", \"127.0.0.1:{dead}\"]\n\
         \x20     verify_timeout: 2s\n",
        b = bind.port(),
        s = secondary,
        k = key.name,
    ));
    World {
        env,
        key,
        bind,
        knot,
        dead,
    }
}

fn no_secret(w: &World, out: &std::process::Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(&w.key.secret),
            "the TSIG secret leaked: {text}"
        );
    }
}

#[test]
fn set_waits_for_primary_and_secondary_and_cas_exits_3() {
    let w = world();
    let env = &w.env;

    // show: both nameservers answer the seed, authoritatively, and agree.
    let out = env.ok(&["dns", "show", "seed.example.test", "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["agree"], true, "{shown}");
    assert_eq!(shown["provider_holds"]["values"][0], "192.0.2.1", "{shown}");
    let ns = shown["nameservers"].as_array().unwrap();
    assert_eq!(ns.len(), 2);
    for n in ns {
        assert_eq!(n["authoritative"], true, "{n}");
        assert_eq!(n["rcode"], "NOERROR", "{n}");
        assert!(n["serial"].as_u64().is_some(), "{n}");
    }
    let table = env.ok(&["dns", "show", "seed.example.test."]);
    assert!(
        table.contains("every nameserver gives the same authoritative answer"),
        "{table}"
    );

    // dry run: says what it would do, changes nothing.
    let out = env.ok(&[
        "dns",
        "set",
        "seed.example.test.",
        "198.51.100.20",
        "--expect-current",
        "192.0.2.1",
        "--dry-run",
    ]);
    assert!(out.contains("dry run") && out.contains("Replace"), "{out}");
    assert_eq!(
        dig(w.bind.addr(), "seed.example.test.", "A"),
        vec!["192.0.2.1"]
    );

    // set with the right expectation: returns once the primary and the secondary agree.
    let run = env.run(&[
        "dns",
        "set",
        "seed.example.test.",
        "198.51.100.20",
        "--expect-current",
        "192.0.2.1",
        "--output",
        "json",
        "--log-level",
        "debug",
    ]);
    no_secret(&w, &run);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(done["timings"]["agreement_ms"].as_u64().is_some(), "{done}");
    assert!(done["timings"]["total_ms"].as_u64().is_some(), "{done}");
    let serial = done["applied"]["serial"].as_u64().unwrap();
    let agreed = done["agreement"]["nameservers"].as_array().unwrap();
    assert_eq!(agreed.len(), 2, "{done}");
    for n in agreed {
        assert!(n["answer"]["serial"].as_u64().unwrap() >= serial, "{n}");
        assert_eq!(n["answer"]["rrset"]["values"][0], "198.51.100.20", "{n}");
    }
    // Right when `dns set` returns, the secondary already serves it.
    assert_eq!(
        dig(w.knot.addr(), "seed.example.test.", "A"),
        vec!["198.51.100.20"]
    );

    // A stale expectation: exit 3, says who holds what, changes nothing.
    let run = env.run(&[
        "dns",
        "set",
        "seed.example.test.",
        "203.0.113.5",
        "--expect-current",
        "192.0.2.1",
    ]);
    no_secret(&w, &run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("holds 198.51.100.20") && stderr.contains("not the expected 192.0.2.1"),
        "{stderr}"
    );
    assert_eq!(
        dig(w.bind.addr(), "seed.example.test.", "A"),
        vec!["198.51.100.20"]
    );

    // Table output prints the time to agreement.
    let out = env.ok(&[
        "dns",
        "set",
        "seed.example.test.",
        "203.0.113.5",
        "--expect-current",
        "198.51.100.20",
    ]);
    assert!(out.contains("time to agreement:"), "{out}");
    assert!(
        out.contains("198.51.100.20 (ttl 30) → 203.0.113.5 (ttl 30)"),
        "{out}"
    );

    // delete.
    let out = env.ok(&[
        "dns",
        "delete",
        "seed.example.test.",
        "--expect-current",
        "203.0.113.5",
    ]);
    assert!(out.contains("nothing (deleted)"), "{out}");
    assert!(dig(w.knot.addr(), "seed.example.test.", "A").is_empty());
}

#[test]
fn a_nameserver_that_never_agrees_is_named_and_exits_non_zero() {
    let w = world();
    let run = w.env.run(&[
        "dns",
        "set",
        "lost.example.test.",
        "192.0.2.44",
        "--output",
        "json",
    ]);
    no_secret(&w, &run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    let dead = format!("127.0.0.1:{}", w.dead);
    assert!(stderr.contains(&dead), "{stderr}");
    assert!(
        !stderr.contains(&format!("127.0.0.1:{} answers", w.bind.port())),
        "the primary agreed: {stderr}"
    );
    let err: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(err["kind"], "interrupted", "{err}");
    assert_eq!(err["disagreeing"][0]["nameserver"], dead, "{err}");
    // The change itself was applied on the primary.
    assert_eq!(
        dig(w.bind.addr(), "lost.example.test.", "A"),
        vec!["192.0.2.44"]
    );
}

#[test]
fn wrong_secret_unknown_record_and_bad_config_say_what_to_do() {
    let mut w = world();
    let err = w
        .env
        .fails(&["dns", "set", "nope.example.test.", "192.0.2.1"]);
    assert!(
        err.contains("no record `nope.example.test.` in dns.records")
            && err.contains("seed.example.test. A"),
        "{err}"
    );

    let wrong = TsigKey::random().secret;
    w.env.extra_env = vec![("TSIG_SECRET".into(), wrong.clone())];
    let run = w
        .env
        .run(&["dns", "set", "seed.example.test.", "192.0.2.9"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rejected the update's authentication") && stderr.contains("tsig.secret"),
        "{stderr}"
    );
    assert!(!stderr.contains(&wrong) && !String::from_utf8_lossy(&run.stdout).contains(&wrong));

    let cfg = std::fs::read_to_string(w.env.path("lifeboat.yaml")).unwrap();
    std::fs::write(
        w.env.path("bad.yaml"),
        cfg.replace("provider: bind", "provider: pdns"),
    )
    .unwrap();
    let err = w.env.fails(&["-c", "bad.yaml", "config", "check"]);
    assert!(
        err.contains("dns.records[0].provider: no provider named `pdns`; use one of: bind"),
        "{err}"
    );
}

/// Two controllers switching the same record from the same expectation at the same moment:
/// exactly one wins (exit 0), the other exits 3 naming the winner's value.
#[test]
fn racing_controllers_cannot_both_win() {
    let w = world();
    let mut current = "192.0.2.1".to_string();
    for round in 0..3 {
        let (a, b) = (
            format!("192.0.2.{}", 100 + round),
            format!("198.51.100.{}", 100 + round),
        );
        let spawn = |value: &str| {
            w.env
                .command(&[
                    "dns",
                    "set",
                    "seed.example.test.",
                    value,
                    "--expect-current",
                    &current,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (spawn(&a), spawn(&b));
        let (oa, ob) = (
            pa.wait_with_output().unwrap(),
            pb.wait_with_output().unwrap(),
        );
        let codes = (oa.status.code(), ob.status.code());
        let (winner, loser) = match codes {
            (Some(0), Some(3)) => (&a, &ob),
            (Some(3), Some(0)) => (&b, &oa),
            _ => panic!(
                "round {round}: want one 0 and one 3, got {codes:?}\n{}\n{}",
                String::from_utf8_lossy(&oa.stderr),
                String::from_utf8_lossy(&ob.stderr)
            ),
        };
        let why = String::from_utf8_lossy(&loser.stderr);
        assert!(
            why.contains(&format!("holds {winner}")),
            "round {round}: {why}"
        );
        assert_eq!(
            dig(w.bind.addr(), "seed.example.test.", "A"),
            vec![winner.clone()]
        );
        current = winner.clone();
    }
}
