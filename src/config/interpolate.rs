//! `${VAR}` and `${VAR:-default}` references in config string values, so that secrets stay
//! out of the file. `$$` is a literal `$`. An unset variable without a default is an error
//! that names it (never its value).

use serde_yaml::Value;

/// Replaces references in every string of `value`. `path` is the key path so far (for errors).
pub fn interpolate(
    value: &mut Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        Value::String(s) => {
            *s = expand(s, lookup).map_err(|m| (path.clone(), m))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate(item, path, lookup)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k.as_str().unwrap_or("?"));
                interpolate(v, path, lookup)?;
                path.truncate(len);
            }
        }
        Value::Tagged(t) => interpolate(&mut t.value, path, lookup)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                "unterminated `${`; write `${VAR}`, `${VAR:-default}`, or `$$` for a literal `$`"
                    .to_string()
            })?;
            let reference = &body[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (reference, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference; names are letters, digits and `_`"
                ));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set; set it, or write `${{{name}:-default}}` to give a default"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references_defaults_and_escapes() {
        assert_eq!(
            expand("pg://${HOST}/x", &env).unwrap(),
            "pg://db.internal/x"
        );
        assert_eq!(expand("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fallback}", &env).unwrap(), "");
        assert_eq!(expand("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
    }

    #[test]
    fn unset_variable_is_named() {
        let err = expand("${S3_ENDPOINT}", &env).unwrap_err();
        assert!(err.contains("S3_ENDPOINT is not set"), "{err}");
    }

    #[test]
    fn bad_references_are_rejected() {
        assert!(expand("${", &env).unwrap_err().contains("unterminated"));
        assert!(expand("${A-B}", &env).unwrap_err().contains("not a valid"));
    }

    #[test]
    fn error_carries_key_path() {
        let mut v: Value =
            serde_yaml::from_str("stores:\n  s3:\n    endpoint: ${MISSING}\n").unwrap();
        let (path, _) = interpolate(&mut v, &mut String::new(), &env).unwrap_err();
        assert_eq!(path, "stores.s3.endpoint");
    }
}
