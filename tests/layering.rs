//! Keeps the layout of `src/` true as the code grows (see the crate docs, `# Layout`):
//! - `src/` holds `lib.rs`, `main.rs` and folders only;
//! - a module never names a module of a higher layer, and the top-level modules form no
//!   import cycle;
//! - the wall clock is read in one place (`model/clock.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. Modules on one line share a layer: they may name each other, without a cycle.
const LAYERS: &[&[&str]] = &[
    &["model"],
    &["policy"],
    &["store", "catalog", "kube", "leader", "dns"],
    &["kinds", "pipeline"],
    &["config"],
    &["ops"],
    &["report"],
    &["daemon"],
    &["cli"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file belongs to (`src/ops/backup.rs` → `ops`).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    (rel.components().count() > 1).then(|| first.to_string())
}

/// Code without comments (line and doc comments): doc links may name any module.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules a file names: `crate::X` and `use crate::{X, ...}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            for part in inner[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn src_holds_lib_main_and_folders_only() {
    let mut loose = Vec::new();
    for entry in std::fs::read_dir(src()).expect("read src") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_file() && name != "lib.rs" && name != "main.rs" {
            loose.push(name.to_string());
        }
    }
    assert!(
        loose.is_empty(),
        "loose files at the top of src/: {loose:?}; put them in a layer's folder"
    );
}

#[test]
fn every_module_has_a_layer_and_names_no_higher_one() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut violations = Vec::new();
    for file in &files {
        let Some(from) = module_of(file) else {
            continue;
        };
        let Some(from_layer) = layer_of(&from) else {
            violations.push(format!("src/{from}/ has no layer in tests/layering.rs"));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source file");
        for to in named_modules(&code_of(&text)) {
            if to == from {
                continue;
            }
            let Some(to_layer) = layer_of(&to) else {
                continue;
            };
            if to_layer > from_layer {
                violations.push(format!(
                    "{} names `crate::{to}` (layer {to_layer}) from layer {from_layer}",
                    file.strip_prefix(src()).unwrap_or(file).display()
                ));
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    assert!(
        violations.is_empty(),
        "layering broken:\n{}",
        violations.join("\n")
    );

    // No cycle among top-level modules (same-layer modules may name each other one way).
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            return Some(stack[i..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(cycle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!(
                "import cycle between top-level modules: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_wall_clock_is_read_only_by_the_clock() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let readers: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("model/clock.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("read source file");
            code_of(&text).contains("Utc::now")
        })
        .map(|f| f.strip_prefix(src()).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        readers.is_empty(),
        "Utc::now outside model/clock.rs (use ctx.clock): {readers:?}"
    );
}

#[test]
fn the_layer_test_sees_names() {
    let names = named_modules("use crate::{model::x, ops::y};\nlet a = crate::kinds::build();");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["kinds".to_string(), "model".into(), "ops".into()]
    );
}
