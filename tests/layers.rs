//! The module layering of README "Development": a module may use its own
//! layer and the layers below it, never one above. Reads `src/` and fails on
//! any `crate::<module>` path (in `use` or inline, comments excluded) that
//! points upward, so the dependency graph stays one-way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. Every top-level module of `src/` must be in exactly one.
const LAYERS: &[&[&str]] = &[
    &[
        "time", "errors", "names", "json", "metrics", "logging", "tls", "config",
    ],
    &["store"],
    &["revocation", "auth", "events", "shutdown"],
    &["sessions"],
    &["proxy", "admin", "server"],
    &["reload", "app", "cli", "demo"],
];

/// Upward imports not removed yet, each with the reason it is still there.
/// Shrinks, never grows: a new entry needs the same scrutiny as a new layer.
const KNOWN: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None`: lib.rs, main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src/");
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The modules a source text names as `crate::<module>`, outside `//` comments.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = tail;
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut known_seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("src/{module}: not in LAYERS; give it a layer"));
        let text = std::fs::read_to_string(file).expect("read a source file");
        for used in named_modules(&text) {
            let Some(theirs) = layer_of(&used) else {
                continue; // a macro or item at the crate root
            };
            if theirs <= own {
                continue;
            }
            if KNOWN.iter().any(|(a, b, _)| *a == module && *b == used) {
                known_seen.insert((module.clone(), used.clone()));
                continue;
            }
            upward.push(format!(
                "{}: `crate::{used}` (layer {theirs}) from {module} (layer {own})",
                file.strip_prefix(&src).expect("under src/").display()
            ));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up the layers (README, Development):\n{}",
        upward.join("\n")
    );
    for (a, b, why) in KNOWN {
        assert!(
            known_seen.contains(&(a.to_string(), b.to_string())),
            "KNOWN lists {a} -> {b} ({why}), which no longer happens: remove the entry"
        );
    }
}

#[test]
fn the_scan_sees_inline_paths_and_skips_comments() {
    let found = named_modules(
        "use crate::store::{A, B};\nlet x = crate::proxy::headers::same_name(a, b); // crate::app\n/// see `crate::cli`\n",
    );
    let want: BTreeSet<String> = ["store", "proxy"].map(String::from).into();
    assert_eq!(found, want);
}
