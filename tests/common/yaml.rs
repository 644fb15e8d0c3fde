//! A small block-style YAML writer for config values built with `json!`,
//! and the deep merge that applies a test's overrides.

use serde_json::Value;

/// Merges `overrides` into `base`: objects recursively, `null` removes the
/// key, anything else replaces.
pub fn deep_merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match v {
                    Value::Null => {
                        b.remove(&k);
                    }
                    Value::Object(_)
                        if b.get(&k).is_some_and(|x| {
                            x.is_object() && !x.as_object().is_some_and(|m| m.is_empty())
                        }) =>
                    {
                        deep_merge(b.get_mut(&k).expect("present"), v);
                    }
                    v => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The YAML text of `v`; strings are written as JSON strings (valid YAML
/// double-quoted scalars), empty collections as `{}` / `[]`.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    write(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn write(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, item) in m {
                if is_block(item) {
                    out.push_str(&format!("{pad}{k}:\n"));
                    write(item, indent + 1, out);
                } else {
                    out.push_str(&format!("{pad}{k}: {}\n", scalar(item)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    // Flow style keeps list items simple and is valid YAML.
                    out.push_str(&format!("{pad}- {item}\n"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}
