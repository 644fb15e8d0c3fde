//! The sections of the config file as validated types (`ServerConfig`,
//! `TokensConfig`, ...; every section type ends in `Config`), their defaults
//! (SPEC 2), and the readers that build them from the YAML tree, one file of
//! `sections/` per group of sections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_json::Value;

use super::reader::{Node, Problems};
use crate::names::Alg;

mod admin;
mod network;
mod policy;
mod redis;
mod sessions;
mod tokens;
mod webhook;

use admin::read_admin;
use network::{read_server, read_upstream};
use policy::{
    read_identity_headers, read_login, read_rate_limits, read_routes, read_security_events,
};
use sessions::{read_revocation, read_sessions, read_store};
use tokens::read_tokens;

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    /// Things that work but should not be left so (`check` prints them,
    /// `run` logs them).
    pub warnings: Vec<String>,
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub tokens: TokensConfig,
    pub sessions: SessionsConfig,
    pub store: StoreConfig,
    pub revocation: RevocationConfig,
    pub login: Option<LoginConfig>,
    pub identity_headers: IdentityHeadersConfig,
    pub routes: Vec<RouteConfig>,
    pub rate_limits: RateLimitsConfig,
    pub security_events: SecurityEventsConfig,
    pub admin: AdminConfig,
    /// Every file the config names (key files, TLS certificate and key,
    /// `ca_file`, the admin token file): a change to one reloads (SPEC 1).
    pub files: Vec<PathBuf>,
}

/// The operator API (SPEC 9): off unless a token is configured.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub token: Option<SecretString>,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub shutdown_grace: Duration,
    /// Worker threads for the proxy; 0 in the file means "number of CPUs".
    pub threads: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_auth_body_bytes: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<TlsConfig>,
    /// A client's whole request head (and TLS handshake) must arrive within this.
    pub header_read_timeout: Duration,
    /// Also accept HTTP/2: ALPN `h2` with TLS, prior-knowledge h2c without.
    pub http2: bool,
}

#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    /// The response header the upstream sets to revoke sessions (SPEC 10);
    /// `None` (`null` in the file) disables it.
    pub revoke_header: Option<HeaderName>,
}

#[derive(Clone, Debug)]
pub struct TokensConfig {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub leeway: Duration,
    /// First signs, all verify; `auth::keys` builds them.
    pub keys: Vec<KeySpec>,
    pub verified_cache_entries: u64,
}

/// One `tokens.keys` entry as the file gives it: its material is read but
/// not parsed. `auth::keys::build` turns it into a signing key, and a
/// problem there is reported at [`KeySpec::material_key`].
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub kid: String,
    pub alg: Alg,
    pub material: KeyMaterial,
    /// The key path of the material (`tokens.keys[0].private_key_file`).
    pub material_key: String,
}

#[derive(Clone, Debug)]
pub enum KeyMaterial {
    /// `private_key_file`: the file, and the PEM bytes read from it.
    Pem { file: PathBuf, pem: SecretSlice<u8> },
    /// `secret` (HS256): its bytes are the key.
    Secret(SecretString),
}

#[derive(Clone, Debug)]
pub struct SessionsConfig {
    pub idle_timeout: Duration,
    pub absolute_lifetime: Duration,
    pub reuse_grace: Duration,
    pub refresh_cookie: Option<RefreshCookieConfig>,
    pub cleanup_interval: Duration,
    /// A login beyond this many active sessions of one user ends the least
    /// recently active one (`sessions.max_per_user`, 1 or more).
    pub max_per_user: usize,
}

#[derive(Clone, Debug)]
pub struct RefreshCookieConfig {
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
pub enum StoreConfig {
    Sqlite { path: PathBuf },
    Redis(RedisConfig),
}

#[derive(Clone, Debug)]
pub struct RedisConfig {
    pub nodes: RedisNodes,
    pub key_prefix: String,
    /// For `rediss://` URLs (sentinels included); `None` = system roots, no client certificate.
    pub tls: Option<RedisTlsConfig>,
    /// The data nodes' password when their URL has none (`store.redis.password`).
    pub password: Option<SecretString>,
}

/// Where the data lives. Every URL may carry a password: they are secrets.
#[derive(Clone, Debug)]
pub enum RedisNodes {
    /// One URL = one server; two or more = the seed nodes of a Redis Cluster.
    Servers(Vec<SecretString>),
    /// The master that these sentinels name `master_name`, found again after a failover.
    Sentinel {
        master_name: String,
        urls: Vec<SecretString>,
    },
}

impl RedisNodes {
    /// The URLs to reach, servers or sentinels.
    pub fn urls(&self) -> &[SecretString] {
        match self {
            RedisNodes::Servers(urls) | RedisNodes::Sentinel { urls, .. } => urls,
        }
    }

    /// Whether these URLs use TLS (the reader allows no mix).
    pub fn tls(&self) -> bool {
        self.urls()
            .first()
            .is_some_and(|u| u.expose_secret().starts_with("rediss://"))
    }
}

/// `store.redis.tls`: files read once at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTlsConfig {
    /// Trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key, for mTLS.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Of the files' contents as read (see `store` in the reload's restart-only keys).
    pub digest: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RevocationConfig {
    pub cache_entries: u64,
    pub resync_interval: Duration,
    /// With a shared store (Redis): how old the list's last sync may be before
    /// token-bearing requests are refused with 503 (fail closed).
    pub max_staleness: Duration,
}

#[derive(Clone, Debug)]
pub struct LoginConfig {
    pub path: String,
    pub upstream_path: String,
    pub subject_header: HeaderName,
    pub claims_header: HeaderName,
    /// Whether `upstream_path` may also be reached as an ordinary proxied
    /// route. Off by default: it would be a way around the login rate limit.
    pub allow_direct_upstream_path: bool,
}

#[derive(Clone, Debug)]
pub struct IdentityHeadersConfig {
    pub user_id: HeaderName,
    pub session_id: HeaderName,
    pub claims: HeaderName,
}

#[derive(Clone, Debug)]
pub struct RouteConfig {
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
pub struct RateLimitsConfig {
    pub login: RateLimitConfig,
    pub refresh: RateLimitConfig,
}

#[derive(Clone, Copy, Debug)]
pub struct RateLimitConfig {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Clone, Debug)]
pub struct SecurityEventsConfig {
    pub new_ip: bool,
    pub new_device: bool,
    pub retain: Duration,
    /// Where events are POSTed (SPEC 11); `None` when no `url` is set.
    pub webhook: Option<WebhookConfig>,
}

/// `security_events.webhook` (SPEC 11).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// An `http://` or `https://` URL without credentials.
    pub url: http::Uri,
    /// The HMAC-SHA256 key: the string's bytes, at least 32 of them.
    pub secret: SecretString,
    /// The event types sent (`crate::names::event::KINDS` members).
    pub types: Vec<&'static str>,
    /// No answer within this is a failed attempt.
    pub timeout: Duration,
    /// Undelivered events held at most; beyond it the oldest is dropped.
    pub queue: usize,
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
    "admin",
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
        warnings: Vec::new(),
        server: read_server(&root, base, p),
        upstream: read_upstream(&root, base, p),
        tokens: read_tokens(&root, base, p),
        sessions: read_sessions(&root, p),
        store: read_store(&root, base, p),
        revocation: read_revocation(&root, p),
        routes: read_routes(&root, p),
        rate_limits: read_rate_limits(&root, p),
        security_events: read_security_events(&root, p),
        admin: read_admin(&root, base, p),
        login,
        identity_headers,
        files: Vec::new(),
    };
    cross_checks(&config, p);
    Config {
        files: named_files(tree, base, &config),
        ..config
    }
}

/// The files `tree` names, as [`read`] resolved them.
fn named_files(tree: &Value, base: &Path, config: &Config) -> Vec<PathBuf> {
    let keys = tree["tokens"]["keys"].as_array().into_iter().flatten();
    let named = keys
        .map(|k| &k["private_key_file"])
        .chain([&tree["admin"]["token_file"]])
        .filter_map(Value::as_str)
        .map(|s| resolve(base, s));
    let tls = config
        .server
        .tls
        .iter()
        .flat_map(|t| [t.cert_file.clone(), t.key_file.clone()]);
    let redis_tls = match &config.store {
        StoreConfig::Redis(RedisConfig { tls: Some(t), .. }) => t
            .ca_file
            .iter()
            .chain(t.client.iter().flat_map(|(c, k)| [c, k]))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    named
        .chain(tls)
        .chain(config.upstream.ca_file.clone())
        .chain(redis_tls)
        .collect()
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

/// A key id as `tokens.keys[].kid` accepts it: 1-64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_plain_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.contains("//")
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%' | b'\\'))
        && !s.split('/').any(|seg| seg == "." || seg == "..")
}

pub(super) fn header_name(n: &Node, key: &str, default: &str, p: &mut Problems) -> HeaderName {
    let s = n.string(key, default, p);
    HeaderName::from_bytes(s.as_bytes()).unwrap_or_else(|_| {
        p.add(
            &n.key_path(key),
            format_args!("`{s}` is not a valid header name"),
        );
        HeaderName::from_static("x-invalid")
    })
}

pub fn default_routes() -> Vec<RouteConfig> {
    let r = |prefix: &str, auth| RouteConfig {
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

fn cross_checks(c: &Config, p: &mut Problems) {
    if c.sessions.absolute_lifetime < c.sessions.idle_timeout {
        // Not wrong, but the idle timeout can then never fire: say so plainly.
        p.warn(
            "sessions.absolute_lifetime",
            "is shorter than sessions.idle_timeout, which therefore never applies",
        );
    }
    let (l, a) = (c.server.listen, c.server.admin_listen);
    let overlap = l.ip() == a.ip() || l.ip().is_unspecified() || a.ip().is_unspecified();
    if l.port() == a.port() && overlap {
        p.add(
            "server.admin_listen",
            "must not use the port of server.listen on the same or an overlapping address",
        );
    }
    let hs = [
        &c.identity_headers.user_id,
        &c.identity_headers.session_id,
        &c.identity_headers.claims,
    ];
    // Compared as SPEC 6 compares them when it drops a client's copies.
    let same = |a: &HeaderName, b: &HeaderName| {
        crate::names::same_name(a.as_str().as_bytes(), b.as_str().as_bytes())
    };
    if same(hs[0], hs[1]) || same(hs[0], hs[2]) || same(hs[1], hs[2]) {
        p.add(
            "identity_headers",
            "the three header names must differ (compared case-insensitively, with `_` as `-`)",
        );
    }
    if let Some(login) = &c.login {
        if same(&login.subject_header, &login.claims_header) {
            p.add(
                "login.claims_header",
                "must differ from login.subject_header",
            );
        }
    }
}
