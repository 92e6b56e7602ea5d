//! Embeds `runbooks/*.md` and `chaos/*.yaml` in the binary (they must be there at the DR site, where the
//! repository is not): writes `$OUT_DIR/runbooks.rs` and `chaos.rs`, sorted lists of
//! (name, text).
//! Also reruns the build when `migrations/` changes (the catalog embeds them).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    embed("runbooks", "md", "runbooks.rs");
    embed("chaos", "yaml", "chaos.rs");
}

/// Writes `$OUT_DIR/{out}`: `&[(stem, include_str!(path)), ...]` of `dir/*.{ext}`.
fn embed(dir: &str, ext: &str, out_file: &str) {
    println!("cargo:rerun-if-changed={dir}");
    let dir =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join(dir);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read the embedded directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == ext) {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("embedded file names are UTF-8")
                .to_string();
            names.push((name, path));
        }
    }
    names.sort();
    let mut out = String::from("&[\n");
    for (name, path) in &names {
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("]\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join(out_file);
    std::fs::write(target, out).expect("write the embedded list");
}
