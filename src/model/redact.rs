//! Keeping secrets out of logs, errors, the catalog and the store.
//!
//! Two layers, neither of which depends on a URL parsing:
//! - [`url`] hides what looks like a credential in any text: the password of every
//!   `scheme://user:password@` (up to the last `@` of the word, so a password holding `/`,
//!   `?`, `#` or `@` is hidden whole) and the value of every `password=`/`secret=`/`token=`
//!   style query parameter;
//! - [`register`] records each secret value the config holds (found by [`secrets_in`]), and
//!   [`scrub_registered`] replaces them wherever they appear, whatever their shape. The log
//!   writer, the CLI's error output and the catalog's error columns go through it.
//!
//! Free text from child processes is also scrubbed of the secrets its run knows ([`scrub`]).

use std::sync::RwLock;

const MASK: &str = "***";

/// Parameter names whose value is a secret (compared lowercase, by substring).
const SECRET_PARAMS: &[&str] = &["password", "passwd", "secret", "token", "credential"];
/// Config keys whose value is a secret: the parameters and `*key*` (but not `*_file`).
const SECRET_KEYS: &[&str] = &["password", "passwd", "secret", "token", "credential", "key"];

/// `s` with the password of every `scheme://user:password@host` and the value of every
/// secret-looking `name=value` parameter replaced by `***`. Works on any text.
pub fn url(s: &str) -> String {
    hide_query_secrets(&hide_userinfo(s))
}

/// The userinfo password of every `://` in `s`: the word after `://` (up to whitespace or a
/// quote) holds userinfo if it has an `@`; everything between the first `:` and its last `@`
/// is the password.
fn hide_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let word_end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        let word = &tail[..word_end];
        match (word.rfind('@'), word.find(':')) {
            (Some(last_at), Some(colon)) if colon < last_at => {
                out.push_str(&word[..=colon]);
                out.push_str(MASK);
                out.push_str(&word[last_at..]);
            }
            _ => out.push_str(word),
        }
        rest = &tail[word_end..];
    }
    out.push_str(rest);
    out
}

/// The value of every `name=value` whose name looks secret, after `?`, `&` or `;`.
fn hide_query_secrets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    let mut name_start = 0;
    while let Some((i, c)) = chars.next() {
        if matches!(c, '?' | '&' | ';') || c.is_whitespace() {
            out.push(c);
            name_start = i + c.len_utf8();
            continue;
        }
        if c == '=' {
            out.push(c);
            // After a value with no separator (`a=b=c`, `x=A}:y{name=`), no name starts.
            let name = s
                .get(name_start..i)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !name.is_empty() && SECRET_PARAMS.iter().any(|p| name.contains(p)) {
                // Skip the value: up to the next separator.
                while let Some(&(_, v)) = chars.peek() {
                    if matches!(v, '&' | ';') || v.is_whitespace() || v == '"' || v == '\'' {
                        break;
                    }
                    chars.next();
                }
                out.push_str(MASK);
            }
            name_start = usize::MAX;
            continue;
        }
        out.push(c);
    }
    out
}

/// `text` with each non-empty secret replaced by `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s, MASK);
    }
    out
}

static REGISTERED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers secret values for [`scrub_registered`] (values shorter than 3 characters are
/// not: they would mask ordinary text).
pub fn register<I: IntoIterator<Item = String>>(secrets: I) {
    let Ok(mut all) = REGISTERED.write() else {
        return;
    };
    for s in secrets {
        if s.len() >= 3 && !all.contains(&s) {
            all.push(s);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` through [`url`], then with every registered secret replaced by `***`.
pub fn scrub_registered(text: &str) -> String {
    match REGISTERED.read() {
        Ok(all) => scrub_with(text, &all),
        Err(_) => url(text),
    }
}

/// `text` through [`url`], then with each of `secrets` (longest first) replaced by `***`.
pub fn scrub_with(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 3).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = url(text);
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

/// The secret values in `value` (a parsed config): every string under a key that names a
/// secret (`password`, `token`, `secret`, `key` but not `*_file`, `env:` values), and the
/// password of every URL-looking string (as written and percent-decoded).
pub fn secrets_in(value: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, secret_key: bool, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => {
                if secret_key {
                    out.push(s.clone());
                }
                out.extend(url_secrets(s));
            }
            serde_json::Value::Array(items) => {
                for i in items {
                    walk(i, secret_key, out);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let k = k.to_ascii_lowercase();
                    let secret = k == "env"
                        || (SECRET_KEYS.iter().any(|p| k.contains(p))
                            && !k.ends_with("_file")
                            && !k.ends_with("_files"));
                    walk(v, secret_key || secret, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, false, &mut out);
    out.retain(|s| s.len() >= 3 && s != "none");
    out
}

/// The passwords of a URL-looking string (userinfo, secret query parameters), raw and
/// percent-decoded.
fn url_secrets(s: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(at) = s.find("://") {
        let word = &s[at + 3..];
        if let (Some(last_at), Some(colon)) = (word.rfind('@'), word.find(':'))
            && colon < last_at
        {
            found.push(word[colon + 1..last_at].to_string());
        }
    }
    if let Some(q) = s.find('?') {
        for pair in s[q + 1..].split(['&', ';']) {
            if let Some((name, value)) = pair.split_once('=') {
                let name = name.to_ascii_lowercase();
                if SECRET_PARAMS.iter().any(|p| name.contains(p)) {
                    found.push(value.to_string());
                }
            }
        }
    }
    let decoded: Vec<String> = found
        .iter()
        .map(|f| {
            percent_encoding::percent_decode_str(f)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    found.extend(decoded);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hides_passwords_in_urls() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(url("postgres://app@db/orders"), "postgres://app@db/orders");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(
            url("postgres://app:p/a?s#s@db/orders?sslmode=require"),
            "postgres://app:***@db/orders?sslmode=require"
        );
        assert_eq!(
            url("error: cannot reach postgres://app@db/orders?password=x/y#z&sslmode=off now"),
            "error: cannot reach postgres://app@db/orders?password=***&sslmode=off now"
        );
    }

    #[test]
    fn a_second_equals_sign_after_a_value_is_not_a_name() {
        // A tracing span path: `rtype=A}:apply{name=...` has no separator before `name=`.
        let line = "switch{name=api.example.test. rtype=A}:apply{name=api.example.test. action=Replace}: update applied serial=3";
        assert_eq!(url(line), line);
        assert_eq!(url("a=b=c token=x"), "a=b=c token=***");
    }

    #[test]
    fn scrubs_known_secrets() {
        assert_eq!(
            scrub("auth failed for s3cret", &["s3cret", ""]),
            "auth failed for ***"
        );
    }

    #[test]
    fn finds_the_secrets_of_a_config() {
        let v = serde_json::json!({
            "catalog": "postgres://u:c%2Fat@h/db",
            "stores": {"s3": {"url": "s3://b/p", "secret_access_key": "AKIAXYZ"}},
            "encryption": {"identity_file": "./age.key"},
            "sources": [
                {"url": "redis://h:6379/0?password=r3dis", "env": {"API": "tok-123"}}
            ],
            "daemon": {"api_token": "bearer-1"}
        });
        let found = secrets_in(&v);
        for s in ["c%2Fat", "c/at", "AKIAXYZ", "r3dis", "tok-123", "bearer-1"] {
            assert!(found.iter().any(|f| f == s), "{s} in {found:?}");
        }
        assert!(!found.iter().any(|f| f.contains("age.key")), "{found:?}");
    }

    proptest! {
        /// Any text at all (log lines reach `url` through the log scrubber): never a panic.
        #[test]
        fn any_text_is_scrubbed_without_panicking(s in "[a-z=&;?{}:. @/\\n'\"é]{0,40}") {
            let _ = url(&s);
        }
    }

    proptest! {
        /// Any password, written raw or percent-encoded, in userinfo or as `?password=`, is
        /// hidden by `url` and by `scrub_registered`, inside any surrounding text.
        #[test]
        fn random_passwords_never_show(
            pw in "[a-zA-Z0-9/?#@:%&=+!$*()_.~-]{3,24}",
            before in "[a-z :]{0,12}",
            after in "[a-z ]{0,12}",
        ) {
            let enc = percent_encoding::utf8_percent_encode(&pw, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
            let masked = "postgres://app:***@db:5432/orders";
            for (u, shown) in [
                (format!("postgres://app:{pw}@db:5432/orders"), masked.to_string()),
                (format!("postgres://app:{enc}@db:5432/orders"), masked.to_string()),
                (
                    format!("postgres://app@db:5432/orders?sslmode=require&password={enc}"),
                    "postgres://app@db:5432/orders?sslmode=require&password=***".to_string(),
                ),
            ] {
                prop_assert_eq!(url(&u), shown);
                let text = format!("{before}{u}\n{after}");
                let secrets = secrets_in(&serde_json::json!({ "url": u }));
                let scrubbed = scrub_with(&text, &secrets);
                prop_assert!(!scrubbed.contains(&pw), "{} in {}", pw, scrubbed);
                prop_assert!(!scrubbed.contains(&enc), "{} in {}", enc, scrubbed);
            }
        }
    }
}
