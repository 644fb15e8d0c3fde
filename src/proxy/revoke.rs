//! SPEC 10: the upstream's revoke header on a proxied response. This module
//! reads and removes it; the revocation itself is the session service's.

use http::header::{HeaderMap, HeaderName};

use crate::store::Scope;

/// Removes `name` from the upstream's response headers and says which
/// sessions to end, if the request was authenticated and the header holds
/// exactly one known value (case-insensitive). Anything else is ignored,
/// and logged at warn.
pub fn requested_scope(h: &mut HeaderMap, name: &HeaderName, authenticated: bool) -> Option<Scope> {
    let mut values = h.get_all(name).iter();
    let first = values.next()?;
    let scope = match (values.next(), authenticated) {
        (Some(_), _) => Err("the header came more than once"),
        (None, false) => Err("the request carried no verified token"),
        (None, true) => {
            let v = first.as_bytes().trim_ascii();
            Scope::ALL
                .into_iter()
                .find(|s| v.eq_ignore_ascii_case(s.as_str().as_bytes()))
                .ok_or("the value is not current, others or all")
        }
    };
    h.remove(name);
    match scope {
        Ok(scope) => Some(scope),
        Err(why) => {
            tracing::warn!(header = %name, why, "the upstream's revoke header was ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_of(values: &[&str], authenticated: bool) -> (Option<Scope>, bool) {
        let name = HeaderName::from_static("x-session-revoke");
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&name, v.parse().unwrap());
        }
        let scope = requested_scope(&mut h, &name, authenticated);
        (scope, h.contains_key(&name))
    }

    #[test]
    fn one_known_value_on_an_authenticated_request_is_honoured_and_always_removed() {
        assert_eq!(scope_of(&["current"], true), (Some(Scope::Current), false));
        assert_eq!(scope_of(&[" ALL "], true), (Some(Scope::All), false));
        assert_eq!(scope_of(&["Others"], true), (Some(Scope::Others), false));
        assert_eq!(scope_of(&["all"], false), (None, false));
        assert_eq!(scope_of(&["all, current"], true), (None, false));
        assert_eq!(scope_of(&["all", "all"], true), (None, false));
        assert_eq!(scope_of(&["everything"], true), (None, false));
        assert_eq!(scope_of(&[], true), (None, false));
    }
}
