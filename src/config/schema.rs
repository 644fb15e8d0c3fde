//! The validated configuration types, their defaults (SPEC 2), and the reader
//! that builds them from the YAML tree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use ipnet::IpNet;
use secrecy::SecretString;
use serde_json::Value;

use super::reader::{Node, Problems};
use crate::auth::keys::{Alg, TokenKey};

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub server: Server,
    pub upstream: Upstream,
    pub tokens: Tokens,
    pub sessions: Sessions,
    pub store: Store,
    pub revocation: Revocation,
    pub login: Option<Login>,
    pub identity_headers: IdentityHeaders,
    pub routes: Vec<Route>,
    pub rate_limits: RateLimits,
    pub security_events: SecurityEvents,
}

#[derive(Clone, Debug)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub shutdown_grace: Duration,
    /// Worker threads for the proxy; 0 in the file means "number of CPUs".
    pub threads: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_auth_body_bytes: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<Tls>,
}

#[derive(Clone, Debug)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Upstream {
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Tokens {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub leeway: Duration,
    /// First signs, all verify.
    pub keys: Vec<Arc<TokenKey>>,
    pub verified_cache_entries: u64,
}

#[derive(Clone, Debug)]
pub struct Sessions {
    pub idle_timeout: Duration,
    pub absolute_lifetime: Duration,
    pub reuse_grace: Duration,
    pub refresh_cookie: Option<RefreshCookie>,
    pub cleanup_interval: Duration,
}

#[derive(Clone, Debug)]
pub struct RefreshCookie {
    pub name: String,
    pub path: String,
    pub secure: bool,
    pub same_site: SameSite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite { path: PathBuf },
    Redis(RedisStore),
}

#[derive(Clone, Debug)]
pub struct RedisStore {
    /// One URL, or several for Redis Cluster. They may carry a password.
    pub urls: Vec<SecretString>,
    pub key_prefix: String,
}

#[derive(Clone, Debug)]
pub struct Revocation {
    pub cache_entries: u64,
    pub resync_interval: Duration,
    /// With a shared store (Redis): how old the list's last sync may be before
    /// token-bearing requests are refused with 503 (fail closed).
    pub max_staleness: Duration,
}

#[derive(Clone, Debug)]
pub struct Login {
    pub path: String,
    pub upstream_path: String,
    pub subject_header: HeaderName,
    pub claims_header: HeaderName,
}

#[derive(Clone, Debug)]
pub struct IdentityHeaders {
    pub user_id: HeaderName,
    pub session_id: HeaderName,
    pub claims: HeaderName,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub matcher: PathMatch,
    pub auth: AuthPolicy,
    /// `None` = every method.
    pub methods: Option<Vec<Method>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthPolicy {
    Required,
    Optional,
    None,
}

#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    pub login: RateLimit,
    pub refresh: RateLimit,
}

#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct SecurityEvents {
    pub new_ip: bool,
    pub new_device: bool,
    pub retain: Duration,
}

const TOP: &[&str] = &[
    "server",
    "upstream",
    "tokens",
    "sessions",
    "store",
    "revocation",
    "login",
    "identity_headers",
    "routes",
    "rate_limits",
    "security_events",
];

const SECS: fn(u64) -> Duration = Duration::from_secs;
const MAX_COUNT: u64 = 1 << 32;

pub(super) fn read(tree: &Value, base: &Path, p: &mut Problems) -> Config {
    let root = Node::open(Some(tree), String::new(), TOP, p);
    if tree.is_null() {
        p.add("(file)", "the config is empty");
    }
    let identity_headers = read_identity_headers(&root, p);
    let login = read_login(&root, p);
    let config = Config {
        file: PathBuf::new(),
        server: read_server(&root, base, p),
        upstream: read_upstream(&root, base, p),
        tokens: read_tokens(&root, base, p),
        sessions: read_sessions(&root, p),
        store: read_store(&root, base, p),
        revocation: read_revocation(&root, p),
        routes: read_routes(&root, p),
        rate_limits: read_rate_limits(&root, p),
        security_events: read_security_events(&root, p),
        login,
        identity_headers,
    };
    cross_checks(&config, p);
    config
}

fn read_server(root: &Node, base: &Path, p: &mut Problems) -> Server {
    let n = root.child(
        "server",
        &[
            "listen",
            "admin_listen",
            "shutdown_grace",
            "threads",
            "max_header_bytes",
            "max_headers",
            "max_auth_body_bytes",
            "trusted_proxies",
            "tls",
        ],
        p,
    );
    let listen = socket_addr(&n, "listen", "0.0.0.0:8080", p);
    let admin_listen = socket_addr(&n, "admin_listen", "127.0.0.1:9090", p);
    let mut trusted_proxies = Vec::new();
    for (path, s) in n.string_list("trusted_proxies", p).unwrap_or_default() {
        let parsed = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net.trunc()),
            Err(_) => p.add(
                &path,
                format_args!("`{s}` is not a CIDR like 10.0.0.0/8 or an IP"),
            ),
        }
    }
    let tls = n.get("tls").map(|_| {
        let t = n.child("tls", &["cert_file", "key_file"], p);
        Tls {
            cert_file: required_file(&t, "cert_file", base, p),
            key_file: required_file(&t, "key_file", base, p),
        }
    });
    let threads = n.number("threads", 0, (0, 1024), p) as usize;
    Server {
        listen,
        admin_listen,
        shutdown_grace: n.duration("shutdown_grace", SECS(10), p),
        threads: if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        },
        max_header_bytes: n.number("max_header_bytes", 16384, (1024, 1 << 20), p) as usize,
        max_headers: n.number("max_headers", 100, (8, 250), p) as usize,
        max_auth_body_bytes: n.number("max_auth_body_bytes", 16384, (256, 1 << 24), p) as usize,
        trusted_proxies,
        tls,
    }
}

fn socket_addr(n: &Node, key: &str, default: &str, p: &mut Problems) -> SocketAddr {
    let s = n.string(key, default, p);
    s.parse().unwrap_or_else(|_| {
        p.add(
            &n.key_path(key),
            format_args!("`{s}` is not an IP:port address"),
        );
        default.parse().expect("default address parses")
    })
}

fn required_file(n: &Node, key: &str, base: &Path, p: &mut Problems) -> PathBuf {
    match n.opt_string(key, p) {
        Some(s) => {
            let path = resolve(base, &s);
            if let Err(e) = std::fs::metadata(&path) {
                p.add(
                    &n.key_path(key),
                    format_args!("cannot read {}: {e}", path.display()),
                );
            }
            path
        }
        None => {
            p.add(&n.key_path(key), "is required");
            PathBuf::new()
        }
    }
}

/// Relative paths are relative to the config file's folder (SPEC 2).
pub fn resolve(base: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

fn read_upstream(root: &Node, base: &Path, p: &mut Problems) -> Upstream {
    let n = root.child(
        "upstream",
        &["url", "connect_timeout", "request_timeout", "ca_file"],
        p,
    );
    if root.get("upstream").is_none() {
        p.add("upstream", "is required (at least upstream.url)");
    }
    let url = n.opt_string("url", p).unwrap_or_default();
    let (tls, host, port) = match parse_upstream_url(&url) {
        Ok(parts) => parts,
        Err(e) => {
            if root.get("upstream").is_some() {
                p.add(&n.key_path("url"), e);
            }
            (false, String::new(), 0)
        }
    };
    let ca_file = n.opt_string("ca_file", p).map(|s| {
        let path = resolve(base, &s);
        if let Err(e) = crate::tls::read_ca_file(&path) {
            p.add(&n.key_path("ca_file"), e);
        }
        path
    });
    let connect_timeout = n.duration("connect_timeout", SECS(2), p);
    let request_timeout = n.duration("request_timeout", SECS(30), p);
    for (key, d) in [
        ("connect_timeout", connect_timeout),
        ("request_timeout", request_timeout),
    ] {
        if d.is_zero() {
            p.add(&n.key_path(key), "must be more than 0s");
        }
    }
    Upstream {
        url,
        tls,
        host,
        port,
        connect_timeout,
        request_timeout,
        ca_file,
    }
}

/// `http[s]://host[:port][/]` — no userinfo, path, query or fragment.
fn parse_upstream_url(url: &str) -> Result<(bool, String, u16), String> {
    if url.is_empty() {
        return Err("is required, e.g. http://127.0.0.1:3000".into());
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL like http://127.0.0.1:3000"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{url}`: the scheme must be http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}`: credentials in the upstream URL are not supported"
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}`: the upstream URL must not have a path or query (requests keep their own path)"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok((tls, host.to_owned(), port))
}

fn read_tokens(root: &Node, base: &Path, p: &mut Problems) -> Tokens {
    let n = root.child(
        "tokens",
        &[
            "issuer",
            "audience",
            "access_ttl",
            "leeway",
            "keys",
            "verified_cache_entries",
        ],
        p,
    );
    let mut keys: Vec<Arc<TokenKey>> = Vec::new();
    match n.list("keys", p) {
        None => p.add(&n.key_path("keys"), "is required: at least one signing key"),
        Some(items) if items.is_empty() => {
            p.add(&n.key_path("keys"), "is required: at least one signing key")
        }
        Some(items) => {
            for (path, v) in items {
                if let Some(k) = read_key(v, path, base, p) {
                    if keys.iter().any(|o| o.kid == k.kid) {
                        p.add(
                            &n.key_path("keys"),
                            format_args!("kid `{}` is used twice", k.kid),
                        );
                    }
                    keys.push(Arc::new(k));
                }
            }
        }
    }
    let access_ttl = n.duration("access_ttl", SECS(900), p);
    if access_ttl < SECS(1) || access_ttl > SECS(86_400) {
        p.add(&n.key_path("access_ttl"), "must be from 1s to 24h");
    }
    let leeway = n.duration("leeway", SECS(30), p);
    if leeway > SECS(600) {
        p.add(&n.key_path("leeway"), "must be at most 10m");
    }
    let issuer = n.string("issuer", "sessiongate", p);
    let audience = n.string("audience", "upstream", p);
    for (key, v) in [("issuer", &issuer), ("audience", &audience)] {
        if v.is_empty() {
            p.add(&n.key_path(key), "must not be empty");
        }
    }
    Tokens {
        issuer,
        audience,
        access_ttl,
        leeway,
        keys,
        verified_cache_entries: n.number("verified_cache_entries", 100_000, (0, MAX_COUNT), p),
    }
}

fn read_key(v: &Value, path: String, base: &Path, p: &mut Problems) -> Option<TokenKey> {
    let n = Node::open(
        Some(v),
        path,
        &["kid", "alg", "private_key_file", "secret"],
        p,
    );
    let kid = n.opt_string("kid", p);
    let alg = n.opt_string("alg", p);
    let kid = match kid {
        Some(k) if !k.is_empty() && k.len() <= 64 && k.bytes().all(is_kid_byte) => k,
        Some(_) => {
            p.add(
                &n.key_path("kid"),
                "must be 1-64 characters of A-Z a-z 0-9 . _ -",
            );
            return None;
        }
        None => {
            p.add(&n.key_path("kid"), "is required");
            return None;
        }
    };
    let alg = match alg.as_deref().map(Alg::from_name) {
        Some(Some(a)) => a,
        Some(None) => {
            p.add(
                &n.key_path("alg"),
                "must be one of EdDSA, ES256, RS256, HS256",
            );
            return None;
        }
        None => {
            p.add(
                &n.key_path("alg"),
                "is required (EdDSA, ES256, RS256 or HS256)",
            );
            return None;
        }
    };
    let file = n.opt_string("private_key_file", p);
    let secret = n.opt_string("secret", p);
    let result = match (alg, file, secret) {
        (Alg::HS256, None, Some(secret)) => {
            TokenKey::from_secret(&kid, secret.as_bytes()).map_err(|e| (n.key_path("secret"), e))
        }
        (Alg::HS256, _, None) => Err((n.key_path("secret"), "is required for HS256".into())),
        (Alg::HS256, Some(_), Some(_)) => Err((
            n.key_path("private_key_file"),
            "HS256 takes `secret`, not a key file".into(),
        )),
        (_, _, Some(_)) => Err((
            n.key_path("secret"),
            format!("{} takes `private_key_file`, not a secret", alg.name()),
        )),
        (_, None, None) => Err((n.key_path("private_key_file"), "is required".into())),
        (_, Some(file), None) => {
            let path = resolve(base, &file);
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("example-"))
            {
                tracing::warn!(
                    key = %n.key_path("private_key_file"),
                    "this is the example key committed to the sessiongate repository: anyone can sign tokens with it; generate your own with `sessiongate keygen`"
                );
            }
            match std::fs::read(&path) {
                Ok(pem) => TokenKey::from_pem(&kid, alg, &pem).map_err(|e| {
                    (
                        n.key_path("private_key_file"),
                        format!("{}: {e}", path.display()),
                    )
                }),
                Err(e) => Err((
                    n.key_path("private_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
    };
    result.map_err(|(path, e)| p.add(&path, e)).ok()
}

fn is_kid_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn read_sessions(root: &Node, p: &mut Problems) -> Sessions {
    let n = root.child(
        "sessions",
        &[
            "idle_timeout",
            "absolute_lifetime",
            "reuse_grace",
            "refresh_cookie",
            "cleanup_interval",
        ],
        p,
    );
    let refresh_cookie = n.get("refresh_cookie").map(|_| {
        let c = n.child(
            "refresh_cookie",
            &["name", "path", "secure", "same_site"],
            p,
        );
        let name = c.string("name", "sg_refresh", p);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            p.add(&c.key_path("name"), "must be letters, digits, _ or -");
        }
        let path = c.string("path", "/v1/auth", p);
        if !path.starts_with('/') || path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
            p.add(&c.key_path("path"), "must be a path starting with /");
        }
        let same_site = match c.string("same_site", "Strict", p).as_str() {
            "Strict" | "strict" => SameSite::Strict,
            "Lax" | "lax" => SameSite::Lax,
            "None" | "none" => SameSite::None,
            _ => {
                p.add(&c.key_path("same_site"), "must be Strict, Lax or None");
                SameSite::Strict
            }
        };
        let secure = c.boolean("secure", true, p);
        if same_site == SameSite::None && !secure {
            p.add(
                &c.key_path("secure"),
                "same_site: None requires secure: true",
            );
        }
        RefreshCookie {
            name,
            path,
            secure,
            same_site,
        }
    });
    let idle_timeout = n.duration("idle_timeout", SECS(7 * 86_400), p);
    let absolute_lifetime = n.duration("absolute_lifetime", SECS(30 * 86_400), p);
    let cleanup_interval = n.duration("cleanup_interval", SECS(600), p);
    for (key, d) in [
        ("idle_timeout", idle_timeout),
        ("absolute_lifetime", absolute_lifetime),
        ("cleanup_interval", cleanup_interval),
    ] {
        if d < SECS(1) {
            p.add(&n.key_path(key), "must be at least 1s");
        }
    }
    Sessions {
        idle_timeout,
        absolute_lifetime,
        reuse_grace: n.duration("reuse_grace", SECS(10), p),
        refresh_cookie,
        cleanup_interval,
    }
}

fn read_store(root: &Node, base: &Path, p: &mut Problems) -> Store {
    let n = root.child("store", &["backend", "sqlite", "redis"], p);
    let sqlite = n.child("sqlite", &["path"], p);
    let redis = n.child("redis", &["url", "key_prefix"], p);
    let sqlite_path = resolve(base, &sqlite.string("path", "data/sessiongate.db", p));
    let urls: Vec<(String, String)> = redis
        .string_list("url", p)
        .unwrap_or_else(|| vec![(redis.key_path("url"), "redis://127.0.0.1:6379/0".into())]);
    let key_prefix = redis.string("key_prefix", "sg:", p);
    match n.string("backend", "sqlite", p).as_str() {
        "sqlite" => Store::Sqlite { path: sqlite_path },
        "redis" => {
            if urls.is_empty() {
                p.add(&redis.key_path("url"), "needs at least one URL");
            }
            for (path, url) in &urls {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    // The URL may hold a password: never echo it.
                    p.add(path, "must start with redis:// or rediss://");
                }
            }
            if key_prefix.contains(['{', '}']) {
                p.add(
                    &redis.key_path("key_prefix"),
                    "must not contain { or } (used for hash tags)",
                );
            }
            Store::Redis(RedisStore {
                urls: urls
                    .into_iter()
                    .map(|(_, u)| SecretString::from(u))
                    .collect(),
                key_prefix,
            })
        }
        other => {
            p.add(
                &n.key_path("backend"),
                format_args!("`{other}`: expected sqlite or redis"),
            );
            Store::Sqlite { path: sqlite_path }
        }
    }
}

fn read_revocation(root: &Node, p: &mut Problems) -> Revocation {
    let n = root.child(
        "revocation",
        &["cache_entries", "resync_interval", "max_staleness"],
        p,
    );
    let resync_interval = n.duration("resync_interval", SECS(30), p);
    if resync_interval < SECS(1) {
        p.add(&n.key_path("resync_interval"), "must be at least 1s");
    }
    let max_staleness = n.duration("max_staleness", SECS(60), p);
    if max_staleness < SECS(2) {
        // The list is re-confirmed every 500ms; a tighter bound would flap.
        p.add(&n.key_path("max_staleness"), "must be at least 2s");
    }
    Revocation {
        cache_entries: n.number("cache_entries", 1_000_000, (1000, MAX_COUNT), p),
        resync_interval,
        max_staleness,
    }
}

fn read_login(root: &Node, p: &mut Problems) -> Option<Login> {
    // `login` omitted (or null) disables login; `login: {}` takes the defaults.
    if !root.has("login") || root.get("login").is_none() {
        return None;
    }
    let n = root.child(
        "login",
        &["path", "upstream_path", "subject_header", "claims_header"],
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
    Some(Login {
        path,
        upstream_path,
        subject_header: header_name(&n, "subject_header", "X-Session-Subject", p),
        claims_header: header_name(&n, "claims_header", "X-Session-Claims", p),
    })
}

fn is_plain_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.contains("//")
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%' | b'\\'))
        && !s.split('/').any(|seg| seg == "." || seg == "..")
}

fn header_name(n: &Node, key: &str, default: &str, p: &mut Problems) -> HeaderName {
    let s = n.string(key, default, p);
    HeaderName::from_bytes(s.as_bytes()).unwrap_or_else(|_| {
        p.add(
            &n.key_path(key),
            format_args!("`{s}` is not a valid header name"),
        );
        HeaderName::from_static("x-invalid")
    })
}

fn read_identity_headers(root: &Node, p: &mut Problems) -> IdentityHeaders {
    let n = root.child("identity_headers", &["user_id", "session_id", "claims"], p);
    let h = IdentityHeaders {
        user_id: header_name(&n, "user_id", "X-Auth-User-Id", p),
        session_id: header_name(&n, "session_id", "X-Auth-Session-Id", p),
        claims: header_name(&n, "claims", "X-Auth-Claims", p),
    };
    for (key, name) in [
        ("user_id", &h.user_id),
        ("session_id", &h.session_id),
        ("claims", &h.claims),
    ] {
        if crate::proxy::headers::is_reserved(name) {
            p.add(
                &n.key_path(key),
                format_args!("`{name}` is a header sessiongate or HTTP manages"),
            );
        }
    }
    h
}

fn read_routes(root: &Node, p: &mut Problems) -> Vec<Route> {
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
        let methods = n.string_list("methods", p).map(|list| {
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
                .collect()
        });
        routes.push(Route {
            matcher,
            auth,
            methods,
        });
    }
    routes
}

pub fn default_routes() -> Vec<Route> {
    let r = |prefix: &str, auth| Route {
        matcher: PathMatch::Prefix(prefix.into()),
        auth,
        methods: None,
    };
    vec![
        r("/healthz", AuthPolicy::None),
        r("/public/", AuthPolicy::None),
        r("/", AuthPolicy::Required),
    ]
}

fn read_rate_limits(root: &Node, p: &mut Problems) -> RateLimits {
    let n = root.child("rate_limits", &["login", "refresh"], p);
    let limit = |key: &str, per_minute: u64, burst: u64, p: &mut Problems| {
        let c = n.child(key, &["per_minute", "burst"], p);
        RateLimit {
            per_minute: c.number("per_minute", per_minute, (1, 10_000_000), p) as u32,
            burst: c.number("burst", burst, (1, 10_000_000), p) as u32,
        }
    };
    RateLimits {
        login: limit("login", 30, 10, p),
        refresh: limit("refresh", 120, 30, p),
    }
}

fn read_security_events(root: &Node, p: &mut Problems) -> SecurityEvents {
    let n = root.child("security_events", &["new_ip", "new_device", "retain"], p);
    SecurityEvents {
        new_ip: n.boolean("new_ip", true, p),
        new_device: n.boolean("new_device", true, p),
        retain: n.duration("retain", SECS(30 * 86_400), p),
    }
}

fn cross_checks(c: &Config, p: &mut Problems) {
    if c.sessions.absolute_lifetime < c.sessions.idle_timeout {
        // Not wrong, but the idle timeout can then never fire: say so plainly.
        tracing::debug!("sessions.absolute_lifetime is shorter than sessions.idle_timeout");
    }
    if c.server.listen == c.server.admin_listen {
        p.add("server.admin_listen", "must differ from server.listen");
    }
    let hs = [
        &c.identity_headers.user_id,
        &c.identity_headers.session_id,
        &c.identity_headers.claims,
    ];
    if hs[0] == hs[1] || hs[0] == hs[2] || hs[1] == hs[2] {
        p.add("identity_headers", "the three header names must differ");
    }
    if let Some(login) = &c.login {
        if login.subject_header == login.claims_header {
            p.add(
                "login.claims_header",
                "must differ from login.subject_header",
            );
        }
    }
}
