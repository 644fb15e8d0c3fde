//! JSON request bodies (the session API's and the operator API's): each is
//! an object or nothing.

use serde::de::DeserializeOwned;

/// `body` as `T`: `T::default()` when it is empty or only whitespace, else
/// a JSON object of `T`'s shape. `None` for anything else.
///
/// The object is checked by its first byte because serde's derived
/// `Deserialize` also reads a struct from a JSON array, field by field in
/// order: `["<refresh token>"]` would pass for `{"refresh_token": ...}`.
pub fn object_or_empty<T: DeserializeOwned + Default>(body: &[u8]) -> Option<T> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Some(T::default()),
        Some(b'{') => serde_json::from_slice(body).ok(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        token: Option<String>,
        keep: Option<bool>,
    }

    #[test]
    fn only_an_object_or_nothing_is_a_body() {
        let parse = |s: &str| object_or_empty::<Body>(s.as_bytes());
        assert_eq!(parse(""), Some(Body::default()));
        assert_eq!(parse(" \n"), Some(Body::default()));
        assert_eq!(parse("{}"), Some(Body::default()));
        let full = Body {
            token: Some("t".into()),
            keep: Some(true),
        };
        assert_eq!(parse(r#" {"token": "t", "keep": true}"#), Some(full));
        for bad in [
            r#"["t", true]"#,
            "[]",
            "null",
            "5",
            r#""t""#,
            "true",
            "{",
            r#"{"x": 1}"#,
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
