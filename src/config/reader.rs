//! A typed walk over the parsed YAML tree that records every problem with its
//! key path instead of stopping at the first one.

use serde_json::{Map, Value};
use std::fmt::Display;
use std::time::Duration;

use super::values::parse_duration;

/// Collects problems (the config is refused) and warnings (it is used, but
/// an operator should know) as `key.path: message` lines.
#[derive(Default)]
pub struct Problems {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Problems {
    pub fn add(&mut self, path: &str, msg: impl Display) {
        let path = if path.is_empty() { "(document)" } else { path };
        self.errors.push(format!("{path}: {msg}"));
    }

    pub fn warn(&mut self, path: &str, msg: impl Display) {
        self.warnings.push(format!("{path}: {msg}"));
    }
}

/// One mapping of the config, with the key path that leads to it.
pub struct Node<'a> {
    map: Option<&'a Map<String, Value>>,
    pub path: String,
}

impl<'a> Node<'a> {
    /// Opens `value` as a mapping with exactly the `known` keys.
    /// Absent or `null` gives an empty node (every key takes its default).
    pub fn open(value: Option<&'a Value>, path: String, known: &[&str], p: &mut Problems) -> Self {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                for key in m.keys() {
                    if !known.contains(&key.as_str()) {
                        p.add(
                            &join(&path, key),
                            format_args!("unknown key (expected one of: {})", known.join(", ")),
                        );
                    }
                }
                Some(m)
            }
            Some(other) => {
                p.add(
                    &path,
                    format_args!("expected a mapping, found {}", kind(other)),
                );
                None
            }
        };
        Node { map, path }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.is_some_and(|m| m.contains_key(key))
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn child(&self, key: &str, known: &[&str], p: &mut Problems) -> Node<'a> {
        Node::open(self.get(key), self.key_path(key), known, p)
    }

    pub fn string(&self, key: &str, default: &str, p: &mut Problems) -> String {
        self.opt_string(key, p)
            .unwrap_or_else(|| default.to_owned())
    }

    pub fn opt_string(&self, key: &str, p: &mut Problems) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                p.add(
                    &self.key_path(key),
                    format_args!("expected a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    pub fn duration(&self, key: &str, default: Duration, p: &mut Problems) -> Duration {
        match self.opt_string(key, p) {
            None => default,
            Some(s) => parse_duration(&s).unwrap_or_else(|e| {
                p.add(&self.key_path(key), e);
                default
            }),
        }
    }

    pub fn number(&self, key: &str, default: u64, range: (u64, u64), p: &mut Problems) -> u64 {
        let path = self.key_path(key);
        let n = match self.get(key) {
            None => return default,
            Some(Value::Number(n)) => n.as_u64(),
            // A `${VAR}` expands to a string: accept digits.
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(other) => {
                p.add(
                    &path,
                    format_args!("expected a number, found {}", kind(other)),
                );
                return default;
            }
        };
        match n {
            Some(n) if n >= range.0 && n <= range.1 => n,
            _ => {
                p.add(
                    &path,
                    format_args!("expected a whole number from {} to {}", range.0, range.1),
                );
                default
            }
        }
    }

    pub fn boolean(&self, key: &str, default: bool, p: &mut Problems) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(other) => {
                p.add(
                    &self.key_path(key),
                    format_args!("expected true or false, found {}", kind(other)),
                );
                default
            }
        }
    }

    /// The items of a list, each with its path (`key[i]`).
    pub fn list(&self, key: &str, p: &mut Problems) -> Option<Vec<(String, &'a Value)>> {
        let path = self.key_path(key);
        match self.get(key)? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{path}[{i}]"), v))
                    .collect(),
            ),
            other => {
                p.add(
                    &path,
                    format_args!("expected a list, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of strings (a single string is taken as a one-item list).
    pub fn string_list(&self, key: &str, p: &mut Problems) -> Option<Vec<(String, String)>> {
        if let Some(Value::String(s)) = self.get(key) {
            return Some(vec![(self.key_path(key), s.clone())]);
        }
        let items = self.list(key, p)?;
        let mut out = Vec::with_capacity(items.len());
        for (path, v) in items {
            match v {
                Value::String(s) => out.push((path, s.clone())),
                other => p.add(
                    &path,
                    format_args!("expected a string, found {}", kind(other)),
                ),
            }
        }
        Some(out)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
