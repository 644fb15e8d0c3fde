//! The route table: first match wins, no match means `auth: required`.
//! Matching runs on the normalized path, the same path that is forwarded.

use http::Method;

use crate::config::{AuthPolicy, PathMatch, RouteConfig};

pub struct RouteTable {
    routes: Vec<RouteConfig>,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteConfig>) -> Self {
        RouteTable { routes }
    }

    /// The policy of a request whose method may be overridden for the
    /// upstream (`X-HTTP-Method-Override: DELETE` on a GET, `?_method=`): the
    /// stricter of the policies of every method it may be read as, so a
    /// framework that honours the override never runs an unauthenticated
    /// method the table protects. An override that is not a method token
    /// counts as `required`.
    pub fn policy_with_overrides<'a>(
        &self,
        method: &Method,
        overrides: impl IntoIterator<Item = &'a [u8]>,
        path: &str,
    ) -> AuthPolicy {
        overrides
            .into_iter()
            .fold(self.policy(method, path), |acc, raw| {
                let other = Method::from_bytes(raw.trim_ascii().to_ascii_uppercase().as_slice())
                    .map_or(AuthPolicy::Required, |m| self.policy(&m, path));
                stricter(acc, other)
            })
    }

    pub fn policy(&self, method: &Method, path: &str) -> AuthPolicy {
        self.routes
            .iter()
            .find(|r| {
                r.methods.as_ref().is_none_or(|ms| ms.contains(method))
                    && match &r.matcher {
                        PathMatch::Exact(p) => path == p,
                        PathMatch::Prefix(p) => prefix_matches(p, path),
                    }
            })
            .map_or(AuthPolicy::Required, |r| r.auth)
    }
}

fn strictness(p: AuthPolicy) -> u8 {
    match p {
        AuthPolicy::None => 0,
        AuthPolicy::Optional => 1,
        AuthPolicy::Required => 2,
    }
}

fn stricter(a: AuthPolicy, b: AuthPolicy) -> AuthPolicy {
    if strictness(b) > strictness(a) {
        b
    } else {
        a
    }
}

/// A plain string prefix, as nginx and Envoy read `prefix`: `/admin` also
/// covers `/admin.json` and `/adminx`, so a protected prefix never leaks a sibling.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_routes;

    fn rule(prefix: &str, auth: AuthPolicy, methods: Option<Vec<Method>>) -> RouteConfig {
        RouteConfig {
            matcher: PathMatch::Prefix(prefix.into()),
            auth,
            methods,
        }
    }

    #[test]
    fn first_match_wins_and_no_match_requires_auth() {
        let t = RouteTable::new(default_routes());
        assert_eq!(t.policy(&Method::GET, "/public/a"), AuthPolicy::None);
        assert_eq!(t.policy(&Method::GET, "/healthz"), AuthPolicy::None);
        assert_eq!(t.policy(&Method::GET, "/healthz/x"), AuthPolicy::None);
        assert_eq!(t.policy(&Method::GET, "/public"), AuthPolicy::Required);
        assert_eq!(t.policy(&Method::GET, "/api"), AuthPolicy::Required);
        let empty = RouteTable::new(vec![]);
        assert_eq!(empty.policy(&Method::GET, "/"), AuthPolicy::Required);
    }

    #[test]
    fn a_methods_rule_lets_other_methods_fall_through() {
        let t = RouteTable::new(vec![
            rule(
                "/public/",
                AuthPolicy::None,
                Some(vec![Method::GET, Method::HEAD]),
            ),
            rule("/", AuthPolicy::Required, None),
        ]);
        assert_eq!(t.policy(&Method::GET, "/public/x"), AuthPolicy::None);
        assert_eq!(t.policy(&Method::POST, "/public/x"), AuthPolicy::Required);
    }

    #[test]
    fn a_method_override_takes_the_stricter_policy() {
        let t = RouteTable::new(vec![
            rule("/public/", AuthPolicy::None, Some(vec![Method::GET])),
            rule("/", AuthPolicy::Required, None),
        ]);
        let p =
            |ovr: &[&[u8]]| t.policy_with_overrides(&Method::GET, ovr.iter().copied(), "/public/x");
        assert_eq!(p(&[]), AuthPolicy::None);
        assert_eq!(p(&[b"get"]), AuthPolicy::None);
        assert_eq!(p(&[b"DELETE"]), AuthPolicy::Required);
        assert_eq!(p(&[b" delete "]), AuthPolicy::Required);
        assert_eq!(p(&[b"GET", b"POST"]), AuthPolicy::Required);
        assert_eq!(p(&[b"not a method"]), AuthPolicy::Required);
    }

    #[test]
    fn exact_rules_match_only_the_path() {
        let t = RouteTable::new(vec![RouteConfig {
            matcher: PathMatch::Exact("/status".into()),
            auth: AuthPolicy::None,
            methods: None,
        }]);
        assert_eq!(t.policy(&Method::GET, "/status"), AuthPolicy::None);
        assert_eq!(t.policy(&Method::GET, "/status/"), AuthPolicy::Required);
    }
}
