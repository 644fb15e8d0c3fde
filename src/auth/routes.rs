//! The route table: first match wins, no match means `auth: required`.
//! Matching runs on the normalized path, the same path that is forwarded,
//! and again on the path as a lenient upstream reads it (see [`lenient`]):
//! the stricter of the two policies applies.

use std::borrow::Cow;

use http::Method;

use crate::config::{AuthPolicy, PathMatch, RouteConfig};

pub struct RouteTable {
    routes: Vec<RouteConfig>,
    /// Each route's pattern in the lenient reading, by index.
    lenient: Vec<PathMatch>,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteConfig>) -> Self {
        let lenient = routes
            .iter()
            .map(|r| match &r.matcher {
                PathMatch::Exact(p) => PathMatch::Exact(lenient(p).into_owned()),
                PathMatch::Prefix(p) => PathMatch::Prefix(p.to_ascii_lowercase()),
            })
            .collect();
        RouteTable { routes, lenient }
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

    /// The stricter of the policies of `path` as sent and as a lenient
    /// upstream reads it. A protected `exact: /public/report` before a public
    /// `prefix: /public/` would otherwise let `/public/report;x` (Tomcat,
    /// Jetty), `/public/report/` (Express, Spring 5) or `/public/REPORT`
    /// (IIS, Express) through to the same handler without a token. Reading
    /// them so only ever makes a request stricter.
    pub fn policy(&self, method: &Method, path: &str) -> AuthPolicy {
        let as_sent = self.first(method, |i| match &self.routes[i].matcher {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => prefix_matches(p, path),
        });
        if as_sent == AuthPolicy::Required {
            return as_sent; // nothing is stricter: the usual proxied request stops here
        }
        let read = lenient(path);
        let as_read = self.first(method, |i| match &self.lenient[i] {
            PathMatch::Exact(p) => *read == **p,
            // `/admin` is `/admin/` to a lenient upstream.
            PathMatch::Prefix(p) => prefix_matches(p, &read) || p.strip_suffix('/') == Some(&*read),
        });
        stricter(as_sent, as_read)
    }

    /// The policy of the first route for `method` whose pattern `hit` takes.
    fn first(&self, method: &Method, hit: impl Fn(usize) -> bool) -> AuthPolicy {
        self.routes
            .iter()
            .enumerate()
            .find(|(i, r)| r.methods.as_ref().is_none_or(|ms| ms.contains(method)) && hit(*i))
            .map_or(AuthPolicy::Required, |(_, r)| r.auth)
    }
}

/// `path` as the most lenient common upstreams read it: every segment's
/// `;parameters` dropped, ASCII letters in lower case, a trailing `/`
/// dropped. Borrowed when that changes nothing.
fn lenient(path: &str) -> Cow<'_, str> {
    let trimmed = match path.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => path,
    };
    if !trimmed.bytes().any(|b| b == b';' || b.is_ascii_uppercase()) {
        return Cow::Borrowed(trimmed);
    }
    let mut read = String::with_capacity(trimmed.len());
    for (i, segment) in trimmed.split('/').enumerate() {
        if i > 0 {
            read.push('/');
        }
        let name = segment.split_once(';').map_or(segment, |(name, _)| name);
        read.extend(name.chars().map(|c| c.to_ascii_lowercase()));
    }
    Cow::Owned(read)
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

    fn exact(path: &str, auth: AuthPolicy) -> RouteConfig {
        RouteConfig {
            matcher: PathMatch::Exact(path.into()),
            auth,
            methods: None,
        }
    }

    #[test]
    fn a_protected_route_is_protected_however_a_lenient_upstream_reads_it() {
        let t = RouteTable::new(vec![
            exact("/public/report", AuthPolicy::Required),
            rule("/public/Admin/", AuthPolicy::Optional, None),
            rule("/public/", AuthPolicy::None, None),
        ]);
        let p = |path: &str| t.policy(&Method::GET, path);
        for path in [
            "/public/report",
            "/public/report;x",
            "/public/report;jsessionid=1",
            "/public/report/",
            "/public/REPORT",
            "/public;x/Report;y/",
        ] {
            assert_eq!(p(path), AuthPolicy::Required, "{path}");
        }
        for path in [
            "/public/admin/x",
            "/public/ADMIN/x",
            "/public/Admin",
            "/public/admin;x/",
        ] {
            assert_eq!(p(path), AuthPolicy::Optional, "{path}");
        }
        // Neighbours stay public, and nothing is ever made less strict.
        for path in [
            "/public/report2",
            "/public/reports/x",
            "/public/report.pdf",
            "/public/x;y",
        ] {
            assert_eq!(p(path), AuthPolicy::None, "{path}");
        }
        // As sent it matches no route at all: required, the stricter.
        assert_eq!(p("/PUBLIC/ADMIN/x"), AuthPolicy::Required);
        let d = RouteTable::new(default_routes());
        assert_eq!(d.policy(&Method::GET, "/PUBLIC/a"), AuthPolicy::Required);
        assert_eq!(d.policy(&Method::GET, "/public"), AuthPolicy::Required);
        assert_eq!(lenient("/a/b"), "/a/b");
        assert!(matches!(lenient("/a/b"), Cow::Borrowed(_)));
        assert_eq!(lenient("/"), "/");
        assert_eq!(lenient("/A;b/c;d/"), "/a/c");
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
