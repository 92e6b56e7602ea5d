//! Keeping secrets out of logs, errors, the catalog and the store.
//!
//! URLs are shown without their password (`postgres://app:***@db/orders`); free text from
//! child processes is scrubbed of every secret the run knows about before it is kept.

/// A URL with any password replaced by `***`. Strings that are not URLs pass unchanged.
pub fn url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            // set_password only fails for URLs that cannot have a password, excluded above.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}

/// `text` with each non-empty secret replaced by `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_in_urls() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(url("postgres://app@db/orders"), "postgres://app@db/orders");
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn scrubs_known_secrets() {
        assert_eq!(
            scrub("auth failed for s3cret", &["s3cret", ""]),
            "auth failed for ***"
        );
    }
}
