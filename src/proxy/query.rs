//! The query of a paged listing (SPEC 4.4, 4.8): `limit` (1-200) and
//! `before` (an opaque cursor), nothing else. Anything unexpected is a 400
//! `invalid_request`, never ignored.

use crate::errors::ApiError;

/// The largest page a client can ask for: it bounds every answer's size.
pub const MAX_LIMIT: usize = 200;
/// A cursor is base64url of a few dozen bytes; far longer is not one.
const MAX_CURSOR_CHARS: usize = 512;

#[derive(Debug, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: usize,
    pub before: Option<String>,
}

fn invalid(why: &str) -> ApiError {
    ApiError::InvalidRequest(format!("Bad query: {why}.").into())
}

/// Parses `query` (the part after `?`, if any); `default_limit` when `limit` is absent.
/// Values are taken literally: a cursor or a number never needs percent-encoding.
pub fn page_query(query: Option<&str>, default_limit: usize) -> Result<PageQuery, ApiError> {
    let mut limit = None;
    let mut before = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" if limit.is_none() => {
                let n = (!value.is_empty()
                    && value.len() <= 3
                    && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<usize>().ok())
                .flatten()
                .filter(|n| (1..=MAX_LIMIT).contains(n));
                limit =
                    Some(n.ok_or_else(|| invalid("`limit` must be a whole number from 1 to 200"))?);
            }
            "before" if before.is_none() => {
                let cursor = !value.is_empty()
                    && value.len() <= MAX_CURSOR_CHARS
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !cursor {
                    return Err(invalid(
                        "`before` must be the `next` value of a previous page",
                    ));
                }
                before = Some(value.to_owned());
            }
            "limit" | "before" => return Err(invalid("a parameter appears twice")),
            _ => return Err(invalid("only `limit` and `before` are accepted")),
        }
    }
    Ok(PageQuery {
        limit: limit.unwrap_or(default_limit),
        before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_before_are_read_and_everything_else_is_refused() {
        assert_eq!(
            page_query(None, 100).unwrap(),
            PageQuery {
                limit: 100,
                before: None
            }
        );
        assert_eq!(page_query(Some(""), 100).unwrap().limit, 100);
        let q = page_query(Some("limit=2&before=abc_-9"), 100).unwrap();
        assert_eq!((q.limit, q.before.as_deref()), (2, Some("abc_-9")));
        assert_eq!(page_query(Some("limit=200"), 100).unwrap().limit, 200);
        for bad in [
            "limit=0",
            "limit=201",
            "limit=abc",
            "limit=",
            "limit",
            "limit=-1",
            "limit=+5",
            "limit=0005",
            "limit=1&limit=2",
            "before=",
            "before=a%2Fb",
            "before=a.b",
            "before=a&before=b",
            "offset=3",
            "Limit=3",
        ] {
            let e = page_query(Some(bad), 100).unwrap_err();
            assert_eq!((e.status(), e.code()), (400, "invalid_request"), "{bad}");
        }
    }
}
