//! Property harness for the config loader: `config::load_with_env` on the
//! seed files of `fuzz/corpus/config/` and on random mutations of them never
//! panics, never hangs, and every problem it reports is a YAML syntax error
//! with a line, or names the key path it is about.

mod fuzz_support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sessiongate::auth::keys::{generate, Alg};
use sessiongate::config::load_with_env;
use tempfile::TempDir;

/// A temp dir holding `keys/k1.pem`, shared by every case.
fn workdir() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("keys")).expect("keys dir");
        let pem = generate(Alg::EdDSA).expect("a key");
        std::fs::write(dir.path().join("keys/k1.pem"), pem).expect("write the key");
        dir
    })
    .path()
}

fn env(name: &str) -> Option<String> {
    (name == "SG_SET").then(|| "value".to_owned())
}

/// Loads `yaml` from a file of its own and checks the error contract.
fn check(name: &str, yaml: &[u8]) -> Result<(), String> {
    let path: PathBuf = workdir().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let result = load_with_env(&path, &env);
    let _ = std::fs::remove_file(&path);
    // serde-saphyr caps alias replay at 1M events: the alias-bomb seed takes
    // a few seconds in a debug build, never longer.
    if t0.elapsed() > Duration::from_secs(20) {
        return Err(format!("took {:?}", t0.elapsed()));
    }
    let Err(e) = result else { return Ok(()) };
    if e.problems.is_empty() {
        return Err("an error with no problem listed".into());
    }
    for p in &e.problems {
        let ok = if let Some(rest) = p.strip_prefix("YAML syntax error") {
            rest.contains("line")
        } else if p.starts_with("cannot read the config file") {
            true
        } else {
            // `key.path[0].x: message`; the document itself is the empty path.
            // The key path must lead somewhere in the document (or to a key
            // missing from a mapping that is there): `x: y` is not enough.
            match p.split_once(": ") {
                Some((key, msg)) => {
                    !msg.trim().is_empty()
                        && (!key.is_empty() || msg.contains("mapping") || !root_is_mapping(yaml))
                        && (key.is_empty()
                            || key == "(document)"
                            || key == "(file)"
                            || parsed(yaml).is_none_or(|doc| leads_into(&doc, key)))
                }
                None => false,
            }
        };
        if !ok {
            return Err(format!("problem without a key path or line: {p:?}"));
        }
    }
    Ok(())
}

/// The document as plain data, when it is one (no tags, aliases, env).
fn parsed(yaml: &[u8]) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(yaml).ok()?;
    if text.contains('$') || text.contains('&') || text.contains('!') || text.contains("<<") {
        return None;
    }
    serde_saphyr::from_str::<serde_json::Value>(text).ok()
}

/// Whether key path `key` (`a.b[0].c`) names a value in `doc`, or a last
/// key that is absent from where it belongs. Keys may themselves hold `.` or
/// `[`, so every split is tried.
fn leads_into(doc: &serde_json::Value, key: &str) -> bool {
    leads_into_under(doc, key, "")
}

/// Keys whose value is a list in the config schema (SPEC 2).
const LIST_KEYS: [&str; 6] = [
    "keys",
    "routes",
    "trusted_proxies",
    "methods",
    "urls",
    "url",
];

fn leads_into_under(doc: &serde_json::Value, key: &str, parent: &str) -> bool {
    use serde_json::Value;
    if let Some(rest) = key.strip_prefix('[') {
        let Some((n, rest)) = rest.split_once(']') else {
            return false;
        };
        let Ok(i) = n.parse::<usize>() else {
            return false;
        };
        let Some(item) = doc.as_array().and_then(|a| a.get(i)) else {
            return false;
        };
        return rest.is_empty()
            || leads_into_under(item, rest.strip_prefix('.').unwrap_or(rest), "");
    }
    // Required keys that are missing (with everything under them), named
    // the way the schema names keys: `tokens.keys` when `tokens` is absent.
    let schema_path = |k: &str| {
        k.split('.').all(|seg| {
            seg.strip_suffix("[0]")
                .unwrap_or(seg)
                .bytes()
                .enumerate()
                .all(|(i, b)| b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit()))
                && !seg.is_empty()
        })
    };
    let Value::Object(map) = doc else {
        // Under something that is not a mapping (that is reported too); but
        // inside a list the schema has (SPEC 2), an item is named by index.
        let needs_index = doc.is_array() && LIST_KEYS.contains(&parent);
        return !needs_index && schema_path(key);
    };
    let head = key.split(['.', '[']).next().unwrap_or(key);
    if !map.contains_key(head) && schema_path(key) {
        return true;
    }
    map.iter().any(|(k, v)| {
        key == k
            || key
                .strip_prefix(k.as_str())
                .and_then(|rest| {
                    rest.strip_prefix('.')
                        .or(rest.starts_with('[').then_some(rest))
                })
                .is_some_and(|rest| leads_into_under(v, rest, k))
    })
}

fn root_is_mapping(yaml: &[u8]) -> bool {
    std::str::from_utf8(yaml)
        .ok()
        .and_then(|t| serde_saphyr::from_str::<serde_json::Value>(t).ok())
        .is_some_and(|v| v.is_object())
}

#[test]
fn the_seed_corpus_loads_or_fails_with_key_paths() {
    for (name, bytes) in fuzz_support::corpus_files("config") {
        if let Err(e) = check("seed", &bytes) {
            panic!("fuzz/corpus/config/{name}: {e}");
        }
    }
    let minimal = std::fs::read(fuzz_support::corpus_dir("config").join("minimal.yaml"))
        .expect("minimal.yaml");
    let path = workdir().join("minimal-ok.yaml");
    std::fs::write(&path, minimal).expect("write");
    assert!(load_with_env(&path, &env).is_ok(), "minimal.yaml must load");
}

#[test]
fn an_unset_variable_in_a_root_scalar_names_where_it_is() {
    let path = workdir().join("root-scalar-env.yaml");
    std::fs::write(&path, "${UNSET}\n").expect("write");
    let e = load_with_env(&path, &env).expect_err("not a config");
    for p in &e.problems {
        assert!(!p.starts_with(": "), "no key path: {p:?}");
    }
}

/// A known mistake at a known place: `(key path, value)` put into
/// minimal.yaml (written as JSON, which is YAML) must be refused, and every
/// problem reported must be at exactly that key path.
fn planted() -> impl Strategy<Value = (String, serde_json::Value)> {
    use serde_json::json;
    let typed = prop::sample::select(vec![
        "server.listen",
        "server.shutdown_grace",
        "server.threads",
        "server.max_headers",
        "upstream.url",
        "upstream.connect_timeout",
        "upstream.request_timeout",
        "tokens.access_ttl",
        "tokens.leeway",
        "tokens.keys[0].kid",
        "tokens.keys[0].alg",
        "sessions.reuse_grace",
        "sessions.idle_timeout",
        "rate_limits.login.per_minute",
        "rate_limits.refresh.burst",
    ]);
    let wrong = prop::sample::select(vec![json!([1, 2]), json!({"a": 1}), json!([])]);
    let unknown_in = prop::sample::select(vec![
        "",
        "server",
        "upstream",
        "tokens",
        "tokens.keys[0]",
        "sessions",
        "rate_limits.login",
    ]);
    prop_oneof![
        (typed, wrong).prop_map(|(k, v)| (k.to_owned(), v)),
        (unknown_in, "zz_[a-z]{1,8}").prop_map(|(at, name)| {
            let key = if at.is_empty() {
                name
            } else {
                format!("{at}.{name}")
            };
            (key, json!(1))
        }),
    ]
}

/// Sets `value` at `key` (`a.b[0].c`) in `doc`, creating mappings on the way.
fn plant(doc: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    let mut at = doc;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let last = i + 1 == parts.len();
        if last && index.is_none() {
            at[name] = value;
            return;
        }
        if at.get(name).is_none() {
            at[name] = serde_json::json!({});
        }
        at = &mut at[name];
        if let Some(ix) = index {
            at = &mut at[ix];
            if last {
                *at = value;
                return;
            }
        }
    }
}

const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ",",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "~",
    "null",
    "''",
    "\"",
    "${SG_SET}",
    "${UNSET}",
    "${X:-d}",
    "$${",
    "0x10",
    "-1",
    "99999999999999999999",
    "1e999",
    ".inf",
    "10s",
    "0s",
    "? ",
    "|\n  ",
    ">-\n  ",
    "---\n",
    "\u{0}",
    "\u{feff}",
    "é",
    "\r",
    "<<: *a\n",
];

fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        fuzz_support::corpus_files("config")
            .into_iter()
            // The alias bomb is replayed as a seed but not mutated: each
            // variant takes seconds to hit serde-saphyr's replay cap.
            .filter(|(name, b)| !name.starts_with("alias-bomb") && b.len() < 8192)
            .map(|(_, b)| b)
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, usize),
    DuplicateLine(prop::sample::Index),
    SwapLines(prop::sample::Index, prop::sample::Index),
    Byte(prop::sample::Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1usize..12).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<prop::sample::Index>(), 0..TOKENS.len()).prop_map(|(i, t)| Edit::Insert(i, t)),
        any::<prop::sample::Index>().prop_map(Edit::DuplicateLine),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        match e {
            Edit::Delete(i, n) if !b.is_empty() => {
                let at = i.index(b.len());
                b.drain(at..(at + n).min(b.len()));
            }
            Edit::Insert(i, t) => {
                let at = i.index(b.len() + 1);
                b.splice(at..at, TOKENS[*t].bytes());
            }
            Edit::Byte(i, v) if !b.is_empty() => {
                let at = i.index(b.len());
                b[at] = *v;
            }
            Edit::DuplicateLine(i) | Edit::SwapLines(i, _) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|c| *c == b'\n').map(<[u8]>::to_vec).collect();
                let a = i.index(lines.len());
                if let Edit::SwapLines(_, j) = e {
                    let j = j.index(lines.len());
                    lines.swap(a, j);
                } else {
                    lines.insert(a, lines[a].clone());
                }
                b = lines.join(&b'\n');
            }
            _ => {}
        }
    }
    b
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn mutated_configs_never_panic_and_name_their_problems(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let seeds = seeds();
        let yaml = apply(&seeds[seed.index(seeds.len())], &edits);
        if let Err(e) = check("mutated", &yaml) {
            return Err(TestCaseError::fail(format!(
                "{e}\n--- config ---\n{}",
                String::from_utf8_lossy(&yaml)
            )));
        }
    }
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn a_planted_mistake_is_reported_at_exactly_its_key_path((key, value) in planted()) {
        let minimal = std::fs::read_to_string(fuzz_support::corpus_dir("config").join("minimal.yaml"))
            .expect("minimal.yaml");
        let mut doc: serde_json::Value = serde_saphyr::from_str(&minimal).expect("minimal.yaml parses");
        plant(&mut doc, &key, value.clone());
        let path = workdir().join(format!("planted-{}.yaml", std::process::id()));
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("JSON")).expect("write");
        let result = load_with_env(&path, &env);
        let _ = std::fs::remove_file(&path);
        let problems = match result {
            Ok(_) => return Err(TestCaseError::fail(format!("{key}: {value} was accepted"))),
            Err(e) => e.problems,
        };
        let prefix = format!("{key}: ");
        prop_assert!(
            problems.iter().all(|p| p.starts_with(&prefix)),
            "{} = {} should be reported at {:?} only, got {:?}", key, value, key, problems
        );
    }
}
