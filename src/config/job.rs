//! The part of a config a Kubernetes verification Job gets: least privilege for the sandbox.
//!
//! [`for_verification`] cuts the config text down to what verifying one source's snapshot
//! needs (its stores, the encryption recipients and trusted signers, compression, defaults,
//! the source itself, the sandbox settings; a throwaway catalog URL) and keeps only the
//! `${VAR}` values that text still references.
//!
//! Guarantees: the catalog URL, other sources, other stores, `daemon` (API token), `dns`
//! (provider tokens), `sites`/`failover` and `encryption.signing_key_file` never reach the
//! Job, nor the value of any `${VAR}` only they reference. Caveat: the source's own entry is
//! kept whole (its checks live there), so a `${VAR}` in it (its password) does reach the Job.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::Origin;
use super::interpolate::expand;

/// Top-level keys a verification needs; everything else is left out.
const KEEP: &[&str] = &[
    "stores",
    "encryption",
    "compression",
    "defaults",
    "sources",
    "sandbox",
];

/// `origin` reduced to verifying snapshots of `source`, with `catalog` as its catalog URL;
/// the stores kept are the source's `store` and `copies`, and `also` (where the snapshot is
/// now). A source no longer in the config leaves no source (the snapshot is verified from
/// its manifest). Says what is wrong if the text is not a config.
pub fn for_verification(
    origin: &Origin,
    source: &str,
    also: &[String],
    catalog: &str,
) -> Result<Origin, String> {
    let mut doc: Value = serde_yaml::from_str(&origin.text)
        .map_err(|e| format!("the config text does not parse again: {e}"))?;
    let map = doc.as_mapping_mut().ok_or("the config is not a mapping")?;
    map.retain(|k, _| k.as_str().is_some_and(|k| KEEP.contains(&k)));
    map.insert("catalog".into(), catalog.into());

    let sources = map
        .get_mut("sources")
        .and_then(Value::as_sequence_mut)
        .ok_or("the config has no `sources` list")?;
    sources.retain(|s| s.get("name").and_then(Value::as_str) == Some(source));
    let mut stores: BTreeSet<String> = also.iter().cloned().collect();
    if let Some(entry) = sources.first() {
        if let Some(s) = entry.get("store").and_then(Value::as_str) {
            stores.insert(s.to_string());
        }
        if let Some(copies) = entry.get("copies").and_then(Value::as_sequence) {
            stores.extend(copies.iter().filter_map(Value::as_str).map(str::to_string));
        }
    }
    if let Some(m) = map.get_mut("stores").and_then(Value::as_mapping_mut) {
        m.retain(|k, _| k.as_str().is_some_and(|k| stores.contains(k)));
    }
    if let Some(enc) = map.get_mut("encryption").and_then(Value::as_mapping_mut) {
        // The Job signs nothing; it trusts the signers it is given.
        enc.remove("signing_key_file");
    }

    let mut names = BTreeSet::new();
    references(&doc, &mut names);
    let vars: BTreeMap<String, String> = origin
        .vars
        .iter()
        .filter(|(k, _)| names.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = serde_yaml::to_string(&doc).map_err(|e| format!("cannot write the config: {e}"))?;
    Ok(Origin { text, vars })
}

/// Every `${VAR}` name referenced in a string (or a key) of `v`.
fn references(v: &Value, names: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let seen = std::cell::RefCell::new(Vec::new());
            let _ = expand(s, &|name| {
                seen.borrow_mut().push(name.to_string());
                Some(String::new())
            });
            names.extend(seen.into_inner());
        }
        Value::Sequence(items) => items.iter().for_each(|i| references(i, names)),
        Value::Mapping(m) => m.iter().for_each(|(k, v)| {
            references(k, names);
            references(v, names);
        }),
        Value::Tagged(t) => references(&t.value, names),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
catalog: "postgres://lifeboat:${CATALOG_PASSWORD}@db/catalog"
stores:
  main: { url: "s3://main/lb", secret_access_key: "${MAIN_KEY}" }
  dr: { url: "s3://dr/lb", secret_access_key: "${DR_KEY}" }
  other: { url: "s3://other/lb", secret_access_key: "${OTHER_KEY}" }
encryption:
  recipients: ["age1xyz"]
  identity_file: /etc/lifeboat/age.key
  signing_key_file: /etc/lifeboat/signing.key
sources:
  - name: orders
    kind: postgres
    url: "postgres://app:${ORDERS_PASSWORD}@orders/app"
    store: main
    copies: [dr]
  - name: billing
    kind: postgres
    url: "postgres://app:${BILLING_PASSWORD}@billing/app"
    store: other
daemon:
  api_token: "${LIFEBOAT_API_TOKEN}"
dns:
  providers:
    cf: { kind: cloudflare, api_token: "${CF_TOKEN}" }
"#;

    fn origin() -> Origin {
        let vars = [
            "CATALOG_PASSWORD",
            "MAIN_KEY",
            "DR_KEY",
            "OTHER_KEY",
            "ORDERS_PASSWORD",
            "BILLING_PASSWORD",
            "LIFEBOAT_API_TOKEN",
            "CF_TOKEN",
        ]
        .iter()
        .map(|k| (k.to_string(), format!("value-of-{k}")))
        .collect();
        Origin {
            text: TEXT.to_string(),
            vars,
        }
    }

    #[test]
    fn the_job_gets_only_the_source_its_stores_and_their_vars() {
        let job = for_verification(&origin(), "orders", &[], "sqlite:///tmp/c.db").unwrap();
        let keys: Vec<&str> = job.vars.keys().map(String::as_str).collect();
        assert_eq!(keys, ["DR_KEY", "MAIN_KEY", "ORDERS_PASSWORD"]);
        for gone in [
            "CATALOG_PASSWORD",
            "OTHER_KEY",
            "BILLING_PASSWORD",
            "LIFEBOAT_API_TOKEN",
            "CF_TOKEN",
            "billing",
            "signing_key_file",
            "daemon",
            "dns",
        ] {
            assert!(!job.text.contains(gone), "{gone} in\n{}", job.text);
        }
        assert!(job.text.contains("sqlite:///tmp/c.db"), "{}", job.text);
        assert!(job.text.contains("age1xyz"), "{}", job.text);
        // What the Job gets still loads, with only the vars it was given.
        let vars = job.vars.clone();
        let config = crate::config::Config::parse_with_env(
            &job.text,
            std::path::Path::new("job.yaml"),
            &|k| vars.get(k).cloned(),
        );
        if let Err(e) = &config {
            // Only a missing var would be a least-privilege bug; other validation is not
            // this function's business, but a missing var must never be the cause.
            assert!(!e.to_string().contains("is not set"), "{e}");
        }
    }

    #[test]
    fn a_source_gone_from_the_config_keeps_only_the_snapshots_store() {
        let job = for_verification(&origin(), "gone", &["other".into()], "sqlite:///c.db").unwrap();
        let keys: Vec<&str> = job.vars.keys().map(String::as_str).collect();
        assert_eq!(keys, ["OTHER_KEY"]);
        assert!(!job.text.contains("orders"), "{}", job.text);
    }
}
