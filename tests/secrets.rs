//! Issue 9, secrets: random passwords (any characters, in the URL's userinfo or as
//! `?password=`, in a command's `env:`) never show in any output: `config check`, errors,
//! logs, the catalog (`runs list`, `snapshots list`).

mod common;

use common::*;
use proptest::prelude::*;

fn leaks(out: &std::process::Output, secrets: &[&str]) -> Option<String> {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    secrets
        .iter()
        .find(|s| all.contains(*s))
        .map(|s| format!("`{s}` leaked in:\n{all}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn random_passwords_never_show(pw in "[a-zA-Z0-9/?#@:%&=+!$*_.~-]{8,20}") {
        let env = Env::new();
        let enc = percent_encoding::utf8_percent_encode(&pw, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        let secrets = [pw.as_str(), enc.as_str()];
        let config = |catalog: &str, url: &str| {
            env.write_config(&format!(
                "catalog: \"{catalog}\"\n\
                 stores:\n  local: {{ url: \"file://./store\" }}\n\
                 encryption:\n  recipients: [\"{{recipient}}\"]\n  identity_file: ./age.key\n\
                 sources:\n\
                 \x20 - {{ name: db, kind: postgres, url: \"{url}\", store: local }}\n\
                 \x20 - name: cmd\n    kind: command\n    argv: [\"sh\", \"-c\", \"echo auth $TOKEN failed >&2; exit 1\"]\n    env: {{ TOKEN: \"{}\" }}\n    store: local\n",
                pw.replace('\\', "\\\\").replace('"', "\\\"")
            ))
        };
        for url in [
            format!("postgres://app:{enc}@127.0.0.1:1/orders"),
            format!("postgres://app@127.0.0.1:1/orders?sslmode=disable&password={enc}"),
            // Not a valid URL (raw `/`, `?`, `#`): refused, without showing it.
            format!("postgres://app:{pw}@127.0.0.1:1/orders"),
        ] {
            config(&format!("postgres://lb:{enc}@127.0.0.1:1/catalog"), &url);
            let out = env.run(&["config", "check"]);
            prop_assert!(leaks(&out, &secrets).is_none(), "{:?}", leaks(&out, &secrets));

            config("sqlite://./catalog.db", &url);
            for args in [
                &["backup", "db"][..],
                &["backup", "cmd"],
                &["runs", "list", "--output", "json"],
                &["snapshots", "list", "--output", "json"],
                &["--log-format", "human", "backup", "db"],
            ] {
                let out = env.run(args);
                prop_assert!(leaks(&out, &secrets).is_none(), "{args:?}: {:?}", leaks(&out, &secrets));
            }
        }
    }
}
