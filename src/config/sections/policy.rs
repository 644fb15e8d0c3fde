//! Sections `login`, `identity_headers`, `routes`, `rate_limits` and `security_events`.

use http::Method;

use super::{
    default_routes, header_name, is_plain_path, AuthPolicy, IdentityHeadersConfig, LoginConfig,
    PathMatch, RateLimitConfig, RateLimitsConfig, RouteConfig, SecurityEventsConfig, SECS,
};
use crate::config::reader::{Node, Problems};

pub(super) fn read_login(root: &Node, p: &mut Problems) -> Option<LoginConfig> {
    // `login` omitted (or null) disables login; `login: {}` takes the defaults.
    if !root.has("login") || root.get("login").is_none() {
        return None;
    }
    let n = root.child(
        "login",
        &[
            "path",
            "upstream_path",
            "subject_header",
            "claims_header",
            "allow_direct_upstream_path",
        ],
        p,
    );
    let path = n.string("path", "/v1/auth/login", p);
    let upstream_path = n.string("upstream_path", "/login", p);
    for (key, v) in [("path", &path), ("upstream_path", &upstream_path)] {
        if !is_plain_path(v) {
            p.add(
                &n.key_path(key),
                "must be a plain path starting with / (no dot segments, ? or #)",
            );
        }
    }
    // The login path must not take one of sessiongate's own routes away.
    let taken = ["/v1/auth/refresh", "/v1/auth/logout", "/v1/auth/sessions"]
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}/")))
        || path == crate::names::JWKS_PATH;
    if taken {
        p.add(
            &n.key_path("path"),
            format_args!("{path} is one of sessiongate's own routes (SPEC 4)"),
        );
    }
    Some(LoginConfig {
        path,
        upstream_path,
        subject_header: header_name(&n, "subject_header", "X-Session-Subject", p),
        claims_header: header_name(&n, "claims_header", "X-Session-Claims", p),
        allow_direct_upstream_path: n.boolean("allow_direct_upstream_path", false, p),
    })
}

pub(super) fn read_identity_headers(root: &Node, p: &mut Problems) -> IdentityHeadersConfig {
    let n = root.child("identity_headers", &["user_id", "session_id", "claims"], p);
    let h = IdentityHeadersConfig {
        user_id: header_name(&n, "user_id", "X-Auth-User-Id", p),
        session_id: header_name(&n, "session_id", "X-Auth-Session-Id", p),
        claims: header_name(&n, "claims", "X-Auth-Claims", p),
    };
    for (key, name) in [
        ("user_id", &h.user_id),
        ("session_id", &h.session_id),
        ("claims", &h.claims),
    ] {
        if crate::names::is_reserved_header(name) {
            p.add(
                &n.key_path(key),
                format_args!("`{name}` is a header sessiongate or HTTP manages"),
            );
        }
    }
    h
}

pub(super) fn read_routes(root: &Node, p: &mut Problems) -> Vec<RouteConfig> {
    let Some(items) = root.list("routes", p) else {
        return default_routes();
    };
    let mut routes = Vec::with_capacity(items.len());
    for (path, v) in items {
        let n = Node::open(Some(v), path, &["prefix", "exact", "auth", "methods"], p);
        let matcher = match (n.opt_string("prefix", p), n.opt_string("exact", p)) {
            (Some(s), None) => PathMatch::Prefix(s),
            (None, Some(s)) => PathMatch::Exact(s),
            _ => {
                p.add(&n.path, "needs exactly one of `prefix` or `exact`");
                continue;
            }
        };
        let (PathMatch::Prefix(s) | PathMatch::Exact(s)) = &matcher;
        if !s.starts_with('/')
            || s.contains("//")
            || s.split('/').any(|seg| seg == "." || seg == "..")
        {
            p.add(
                &n.path,
                format_args!("`{s}` must be a normalized path starting with /"),
            );
        }
        let auth = match n.string("auth", "required", p).as_str() {
            "required" => AuthPolicy::Required,
            "optional" => AuthPolicy::Optional,
            "none" => AuthPolicy::None,
            other => {
                p.add(
                    &n.key_path("auth"),
                    format_args!("`{other}`: expected required, optional or none"),
                );
                AuthPolicy::Required
            }
        };
        // How many were written: a list of only bad names is reported for
        // those, not as an empty list.
        let mut written = 0;
        let methods = n.string_list("methods", p).map(|list| {
            written = list.len();
            list.into_iter()
                .filter_map(|(path, m)| {
                    let upper = m.to_ascii_uppercase();
                    match Method::from_bytes(upper.as_bytes()) {
                        Ok(m) if !upper.is_empty() => Some(m),
                        _ => {
                            p.add(&path, format_args!("`{m}` is not an HTTP method"));
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        if methods.is_some() && written == 0 {
            p.add(
                &n.key_path("methods"),
                "an empty list matches no request; omit `methods` to match every method",
            );
        }
        routes.push(RouteConfig {
            matcher,
            auth,
            methods,
        });
    }
    routes
}

pub(super) fn read_rate_limits(root: &Node, p: &mut Problems) -> RateLimitsConfig {
    let n = root.child("rate_limits", &["login", "refresh"], p);
    let limit = |key: &str, per_minute: u64, burst: u64, p: &mut Problems| {
        let c = n.child(key, &["per_minute", "burst"], p);
        RateLimitConfig {
            per_minute: c.number("per_minute", per_minute, (1, 10_000_000), p) as u32,
            burst: c.number("burst", burst, (1, 10_000_000), p) as u32,
        }
    };
    RateLimitsConfig {
        login: limit("login", 30, 10, p),
        refresh: limit("refresh", 120, 30, p),
    }
}

pub(super) fn read_security_events(root: &Node, p: &mut Problems) -> SecurityEventsConfig {
    let n = root.child(
        "security_events",
        &["new_ip", "new_device", "retain", "webhook"],
        p,
    );
    let retain = n.duration("retain", SECS(30 * 86_400), p);
    if retain < SECS(60) {
        // Kept for less than a minute, the events the API and the CLI list
        // would be gone before anyone could read them.
        p.add(&n.key_path("retain"), "must be at least 1m");
    }
    SecurityEventsConfig {
        new_ip: n.boolean("new_ip", true, p),
        new_device: n.boolean("new_device", true, p),
        retain,
        webhook: super::webhook::read_webhook(&n, p),
    }
}
