//! The route table: first match wins, no match means `auth: required`.
//! Matching runs on the normalized path, the same path that is forwarded.

use http::Method;

use crate::config::{AuthPolicy, PathMatch, Route};

pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable { routes }
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

/// A plain string prefix, as nginx and Envoy read `prefix`: `/admin` also
/// covers `/admin.json` and `/adminx`, so a protected prefix never leaks a sibling.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_routes;

    fn rule(prefix: &str, auth: AuthPolicy, methods: Option<Vec<Method>>) -> Route {
        Route {
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
    fn exact_rules_match_only_the_path() {
        let t = RouteTable::new(vec![Route {
            matcher: PathMatch::Exact("/status".into()),
            auth: AuthPolicy::None,
            methods: None,
        }]);
        assert_eq!(t.policy(&Method::GET, "/status"), AuthPolicy::None);
        assert_eq!(t.policy(&Method::GET, "/status/"), AuthPolicy::Required);
    }
}
