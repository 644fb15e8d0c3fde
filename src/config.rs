//! The YAML configuration (SPEC 2): read, expand `${VAR}`, validate every key
//! with its path, and turn it into the typed [`Config`] the rest of the code uses.

mod reader;
mod sections;
pub mod values;

pub use sections::*;

use std::path::{Path, PathBuf};

use reader::Problems;

/// Why a config could not be loaded: every problem, each naming its key path.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid config {}:", self.file.display())?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the config at `path`, with `${VAR}` taken from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<String>| ConfigError {
        file: path.to_owned(),
        problems,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(vec![format!("cannot read the config file: {e}")]))?;
    // A config file is small: a few thousand replayed alias events is plenty,
    // and the cap keeps an alias bomb from eating the CPU.
    let options = serde_saphyr::options! {
        alias_limits: serde_saphyr::alias_limits! { max_total_replayed_events: 10_000 },
    };
    let mut tree: serde_json::Value = serde_saphyr::from_str_with_options(&text, options)
        .map_err(|e| fail(vec![format!("YAML syntax error: {}", syntax_error(&e))]))?;
    let mut problems = Problems::default();
    expand_strings(&mut tree, String::from("(document)"), env, &mut problems);
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    let mut config = sections::read(&tree, &base_dir, &mut problems);
    if problems.errors.is_empty() {
        config.file = path.to_owned();
        config.warnings = problems.warnings;
        Ok(config)
    } else {
        Err(fail(problems.errors))
    }
}

/// serde-saphyr's message carries the line and column; keep it on one line
/// and make sure the words "line" and "column" appear for a reader in a hurry.
/// The parser's message on one line: its first line when that names the
/// line and column (the rest is a source snippet pointing at the same
/// place), without the library's advice on its own options.
fn syntax_error(e: &serde_saphyr::Error) -> String {
    let msg = e.to_string();
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let first = lines.first().copied().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let said = if first.contains("line ") && first.contains("column ") {
        first.to_owned()
    } else {
        lines.join(" | ")
    };
    said.replace(
        ", set DuplicateKeyPolicy in Options if acceptable",
        " (a key may appear once in a mapping)",
    )
}

fn expand_strings(
    v: &mut serde_json::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match v {
        serde_json::Value::String(s) => match values::expand_env(s, env) {
            Ok(expanded) => *s = expanded,
            Err(e) => problems.add(&path, e),
        },
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_strings(item, format!("{path}[{i}]"), env, problems);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let p = if path.is_empty() || path == "(document)" {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand_strings(item, p, env, problems);
            }
        }
        _ => {}
    }
}

/// The config path when none is given: `$SESSIONGATE_CONFIG`, else `config/sessiongate.yaml`.
pub fn default_path() -> PathBuf {
    std::env::var_os("SESSIONGATE_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config/sessiongate.yaml"))
}
