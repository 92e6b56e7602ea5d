//! Checks: recorded facts (from the manifest, taken at backup time) against what the sandbox
//! shows after the restore. Pure: facts in, a list of [`Check`]s out. A fact the snapshot
//! does not carry (a backup older than verification) is reported as skipped, not failed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kinds::Facts;
use crate::kinds::files::TreeFacts;

/// One check and its outcome, as recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            passed: true,
            detail: detail.into(),
        }
    }
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            passed: false,
            detail: detail.into(),
        }
    }
    fn skipped(name: impl Into<String>, what: &str) -> Check {
        Check::pass(
            name,
            format!("skipped: the snapshot records no {what} (taken before lifeboat recorded it)"),
        )
    }
}

fn counts(v: Option<&Value>) -> Option<BTreeMap<String, i64>> {
    v?.as_object().map(|m| {
        m.iter()
            .filter_map(|(k, v)| v.as_i64().map(|n| (k.clone(), n)))
            .collect()
    })
}

/// Compares two name → count maps: one check that the names are equal (`list_name`) and one
/// per recorded name (`"{what} {name}"`).
fn compare_counts(
    list_name: &str,
    what: &str,
    recorded: &BTreeMap<String, i64>,
    observed: &BTreeMap<String, i64>,
    zero_is_absent: bool,
) -> Vec<Check> {
    let present = |m: &BTreeMap<String, i64>, k: &String| {
        m.get(k).is_some_and(|n| !(zero_is_absent && *n == 0))
    };
    let missing: Vec<&String> = recorded
        .keys()
        .filter(|k| present(recorded, k) && !present(observed, k))
        .collect();
    let extra: Vec<&String> = observed
        .keys()
        .filter(|k| present(observed, k) && !present(recorded, k))
        .collect();
    let mut out = Vec::new();
    if missing.is_empty() && extra.is_empty() {
        out.push(Check::pass(
            list_name,
            format!("{} as recorded", recorded.len()),
        ));
    } else {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "missing after restore: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !extra.is_empty() {
            parts.push(format!(
                "not recorded at backup time: {}",
                extra
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push(Check::fail(list_name, parts.join("; ")));
    }
    for (name, want) in recorded {
        let got = observed.get(name).copied().unwrap_or(0);
        let check = format!("{what} {name}");
        if got == *want {
            out.push(Check::pass(check, format!("{got}, as recorded")));
        } else {
            out.push(Check::fail(
                check,
                format!("{name}: {got} after restore, {want} recorded at backup time"),
            ));
        }
    }
    out
}

/// PostgreSQL: the table list and each table's row count (`facts.tables`).
pub fn postgres(recorded: &Facts, observed: &BTreeMap<String, i64>) -> Vec<Check> {
    match counts(recorded.get("tables")) {
        Some(tables) => compare_counts("tables", "rows", &tables, observed, false),
        None => vec![Check::skipped("tables", "table list or row counts")],
    }
}

/// Redis: the key count of every database (`facts.keys`, e.g. `{"db0": 12}`).
pub fn redis(recorded: &Facts, observed: &BTreeMap<String, i64>) -> Vec<Check> {
    match counts(recorded.get("keys")) {
        Some(keys) => compare_counts("databases", "keys", &keys, observed, true),
        None => vec![Check::skipped("keys", "key counts")],
    }
}

/// etcd: revision and live key count. When the backup could not pin them exactly
/// (`revision_exact: false`) the revision must lie in `[revision, revision_max]` and the key
/// count is not compared.
pub fn etcd(recorded: &Facts, revision: i64, keys: i64) -> Vec<Check> {
    let mut out = Vec::new();
    let exact = recorded
        .get("revision_exact")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    match recorded.get("revision").and_then(Value::as_i64) {
        None => out.push(Check::skipped("revision", "revision")),
        Some(want) if exact => out.push(if want == revision {
            Check::pass("revision", format!("{revision}, as recorded"))
        } else {
            Check::fail(
                "revision",
                format!("revision {revision} after restore, {want} recorded at backup time"),
            )
        }),
        Some(low) => {
            let high = recorded
                .get("revision_max")
                .and_then(Value::as_i64)
                .unwrap_or(low);
            out.push(if (low..=high).contains(&revision) {
                Check::pass("revision", format!("{revision}, within {low}..={high}"))
            } else {
                Check::fail(
                    "revision",
                    format!("revision {revision} after restore, outside {low}..={high} recorded at backup time"),
                )
            });
        }
    }
    match recorded.get("keys").and_then(Value::as_i64) {
        None => out.push(Check::skipped("keys", "key count")),
        Some(_) if !exact => out.push(Check::pass(
            "keys",
            format!("{keys}; not compared: etcd was written while the backup started"),
        )),
        Some(want) => out.push(if want == keys {
            Check::pass("keys", format!("{keys}, as recorded"))
        } else {
            Check::fail(
                "keys",
                format!("key count {keys} after restore, {want} recorded at backup time"),
            )
        }),
    }
    out
}

/// Directory trees: file count, total bytes and the tree hash.
pub fn files(recorded: &Facts, observed: &TreeFacts) -> Vec<Check> {
    let num = |k: &str| recorded.get(k).and_then(Value::as_u64);
    let mut out = Vec::new();
    let mut compare = |name: &str, want: Option<u64>, got: u64| match want {
        None => out.push(Check::skipped(name, name)),
        Some(w) if w == got => out.push(Check::pass(name, format!("{got}, as recorded"))),
        Some(w) => out.push(Check::fail(
            name,
            format!("{name}: {got} after restore, {w} recorded at backup time"),
        )),
    };
    compare("files", num("files"), observed.files);
    compare("bytes", num("bytes"), observed.bytes);
    match recorded.get("tree_sha256").and_then(Value::as_str) {
        None => out.push(Check::skipped("tree hash", "tree hash")),
        Some(w) if w == observed.tree_sha256 => {
            out.push(Check::pass("tree hash", "equal to the recorded SHA-256"))
        }
        Some(w) => out.push(Check::fail(
            "tree hash",
            format!(
                "tree SHA-256 {} after restore, {w} recorded (paths, modes, sizes or contents differ)",
                observed.tree_sha256
            ),
        )),
    }
    out
}

/// An expected value of a user check: `42`, `"> 0"`, `">= 10"`, `"< 5"`, `"!= 0"`, or any
/// other text, compared as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Cmp(Op, f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Expect {
    pub fn parse(s: &str) -> Expect {
        let s = s.trim();
        for (prefix, op) in [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if let Some(rest) = s.strip_prefix(prefix)
                && let Ok(n) = rest.trim().parse::<f64>()
            {
                return Expect::Cmp(op, n);
            }
        }
        match s.parse::<f64>() {
            Ok(n) => Expect::Cmp(Op::Eq, n),
            Err(_) => Expect::Text(s.to_string()),
        }
    }

    /// Whether `observed` meets the expectation.
    pub fn matches(&self, observed: &str) -> bool {
        let observed = observed.trim();
        match self {
            Expect::Text(t) => observed == t,
            Expect::Cmp(op, want) => {
                let Ok(got) = observed.parse::<f64>() else {
                    return false;
                };
                match op {
                    Op::Eq => got == *want,
                    Op::Ne => got != *want,
                    Op::Gt => got > *want,
                    Op::Ge => got >= *want,
                    Op::Lt => got < *want,
                    Op::Le => got <= *want,
                }
            }
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Text(t) => write!(f, "{t:?}"),
            Expect::Cmp(op, n) => {
                let op = match op {
                    Op::Eq => "=",
                    Op::Ne => "!=",
                    Op::Gt => ">",
                    Op::Ge => ">=",
                    Op::Lt => "<",
                    Op::Le => "<=",
                };
                write!(f, "{op} {n}")
            }
        }
    }
}

/// A user check's outcome from its observed value.
pub fn expectation(name: &str, expect: Option<&Expect>, observed: &str) -> Check {
    match expect {
        None => Check::pass(name, format!("returned {:?}", observed.trim())),
        Some(e) if e.matches(observed) => {
            Check::pass(name, format!("{:?} is {e}", observed.trim()))
        }
        Some(e) => Check::fail(
            name,
            format!("returned {:?}, expected {e}", observed.trim()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(v: Value) -> Facts {
        v.as_object().cloned().unwrap_or_default()
    }

    fn observed(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn postgres_row_counts_name_the_table_that_differs() {
        let rec = facts(json!({"tables": {"public.orders": 200, "public.customers": 50}}));
        let ok = postgres(
            &rec,
            &observed(&[("public.orders", 200), ("public.customers", 50)]),
        );
        assert!(ok.iter().all(|c| c.passed), "{ok:?}");
        let bad = postgres(
            &rec,
            &observed(&[("public.orders", 199), ("public.customers", 50)]),
        );
        let failed: Vec<_> = bad.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0]
                .detail
                .contains("public.orders: 199 after restore, 200 recorded")
        );
        let dropped = postgres(&rec, &observed(&[("public.customers", 50)]));
        assert!(dropped.iter().any(|c| c.name == "tables"
            && !c.passed
            && c.detail.contains("missing after restore: public.orders")));
    }

    #[test]
    fn old_snapshots_skip_what_they_do_not_record() {
        let checks = postgres(&Facts::new(), &observed(&[("public.x", 1)]));
        assert!(
            checks
                .iter()
                .all(|c| c.passed && c.detail.starts_with("skipped"))
        );
        assert!(redis(&Facts::new(), &BTreeMap::new())[0].passed);
        assert!(etcd(&Facts::new(), 5, 5).iter().all(|c| c.passed));
    }

    #[test]
    fn redis_ignores_empty_databases() {
        let rec = facts(json!({"keys": {"db0": 3, "db2": 0}}));
        assert!(
            redis(&rec, &observed(&[("db0", 3)]))
                .iter()
                .all(|c| c.passed)
        );
        let bad = redis(&rec, &observed(&[("db0", 2)]));
        assert!(
            bad.iter()
                .any(|c| !c.passed && c.detail.contains("db0: 2 after restore, 3 recorded"))
        );
    }

    #[test]
    fn etcd_revision_exact_and_range() {
        let exact = facts(json!({"revision": 10, "keys": 4, "revision_exact": true}));
        assert!(etcd(&exact, 10, 4).iter().all(|c| c.passed));
        assert!(
            etcd(&exact, 10, 3)
                .iter()
                .any(|c| !c.passed && c.name == "keys")
        );
        let range =
            facts(json!({"revision": 10, "revision_max": 12, "keys": 4, "revision_exact": false}));
        assert!(etcd(&range, 11, 9).iter().all(|c| c.passed));
        assert!(!etcd(&range, 13, 4)[0].passed);
    }

    #[test]
    fn files_compare_counts_and_hash() {
        let tree = TreeFacts {
            files: 2,
            dirs: 1,
            symlinks: 0,
            bytes: 10,
            tree_sha256: "ab".into(),
        };
        let rec = tree.clone().into_facts();
        assert!(files(&rec, &tree).iter().all(|c| c.passed));
        let other = TreeFacts {
            tree_sha256: "cd".into(),
            ..tree
        };
        assert!(
            files(&rec, &other)
                .iter()
                .any(|c| !c.passed && c.name == "tree hash")
        );
    }

    #[test]
    fn expectations() {
        assert!(Expect::parse("> 0").matches("3"));
        assert!(!Expect::parse("> 0").matches("0"));
        assert!(Expect::parse("42").matches(" 42 "));
        assert!(Expect::parse(">= 1.5").matches("1.5"));
        assert!(Expect::parse("!= 0").matches("2"));
        assert!(Expect::parse("PONG").matches("PONG"));
        assert!(!Expect::parse("< 5").matches("abc"));
        let c = expectation("orders", Some(&Expect::parse("> 0")), "0");
        assert!(!c.passed && c.detail.contains("expected > 0"), "{c:?}");
    }
}
