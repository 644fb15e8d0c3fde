//! Shared by the `fuzz_*` suites: the case budget and the checked-in seed
//! corpus (`fuzz/corpus/<target>/`), which every run replays before the
//! random cases. `FUZZ_CASES=N` sets the budget (default small, so that
//! `cargo test` stays fast; CI runs a longer bounded pass).
#![allow(dead_code)]

use std::path::PathBuf;

use proptest::test_runner::{Config, FileFailurePersistence};

/// Random cases per property: `$FUZZ_CASES`, else 64.
pub fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// The proptest config: the case budget, no regression files written
/// (a failure is shrunk and printed; add it to the corpus by hand).
pub fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every file of the corpus as `(name, bytes)`, sorted by name.
pub fn corpus_files(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read a corpus file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// Line-oriented corpora: every non-empty line that is not a `#` comment.
pub fn corpus_lines(target: &str) -> Vec<String> {
    corpus_files(target)
        .into_iter()
        .flat_map(|(_, b)| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}
