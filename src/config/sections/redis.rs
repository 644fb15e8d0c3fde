//! `store.redis`: one server, a Redis Cluster or a Sentinel-managed master,
//! over TCP or TLS. URLs and the password are secrets: a problem names the key
//! path, never the value.

use std::path::Path;

use secrecy::SecretString;

use super::{resolve, RedisConfig, RedisNodes, RedisTlsConfig};
use crate::config::reader::{Node, Problems};

/// The keys `store.redis` knows.
pub(super) const KEYS: &[&str] = &["url", "key_prefix", "tls", "sentinel", "password"];

const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";

pub(super) fn read_redis(store: &Node, base: &Path, p: &mut Problems) -> RedisConfig {
    let n = store.child("redis", KEYS, p);
    let key_prefix = n.string("key_prefix", "sg:", p);
    if key_prefix.contains(['{', '}']) {
        p.add(
            &n.key_path("key_prefix"),
            "must not contain { or } (used for hash tags)",
        );
    }
    let nodes = read_nodes(&n, p);
    let tls = n.get("tls").map(|_| read_tls(&n, base, p));
    if tls.is_some() && !nodes.tls() {
        p.add(
            &n.key_path("tls"),
            "applies to rediss:// URLs only; these URLs are redis://",
        );
    }
    let password = n.opt_string("password", p).map(|s| {
        if s.is_empty() {
            p.add(&n.key_path("password"), "is empty");
        }
        SecretString::from(s)
    });
    RedisConfig {
        nodes,
        key_prefix,
        tls,
        password,
    }
}

fn read_nodes(n: &Node, p: &mut Problems) -> RedisNodes {
    let url = n.string_list("url", p);
    if n.get("sentinel").is_none() {
        let urls = url.unwrap_or_else(|| vec![(n.key_path("url"), DEFAULT_URL.into())]);
        if urls.is_empty() {
            p.add(&n.key_path("url"), "needs at least one URL");
        }
        return RedisNodes::Servers(checked_urls(urls, p));
    }
    if url.is_some() {
        p.add(
            &n.key_path("sentinel"),
            "set either url or sentinel, not both",
        );
    }
    let s = n.child("sentinel", &["master_name", "urls"], p);
    let master_name = s.opt_string("master_name", p).unwrap_or_default();
    if master_name.is_empty() {
        p.add(&s.key_path("master_name"), "is required");
    } else if master_name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        p.add(
            &s.key_path("master_name"),
            "may not contain spaces or control characters",
        );
    }
    let urls = s.string_list("urls", p).unwrap_or_default();
    if urls.is_empty() {
        p.add(&s.key_path("urls"), "needs at least one sentinel URL");
    }
    RedisNodes::Sentinel {
        master_name,
        urls: checked_urls(urls, p),
    }
}

/// Checks each URL's scheme (never echoing a URL: it may hold a password) and
/// that they do not mix TCP and TLS.
fn checked_urls(urls: Vec<(String, String)>, p: &mut Problems) -> Vec<SecretString> {
    let tls = urls
        .iter()
        .filter(|(_, u)| u.starts_with("rediss://"))
        .count();
    for (path, url) in &urls {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            p.add(path, "must start with redis:// or rediss://");
        } else if tls > 0 && tls < urls.len() && url.starts_with("redis://") {
            p.add(
                path,
                "is redis:// while others are rediss://: use one scheme for all",
            );
        }
    }
    urls.into_iter()
        .map(|(_, u)| SecretString::from(u))
        .collect()
}

fn read_tls(n: &Node, base: &Path, p: &mut Problems) -> RedisTlsConfig {
    let t = n.child("tls", &["ca_file", "cert_file", "key_file"], p);
    let file = |key: &str, p: &mut Problems| t.opt_string(key, p).map(|s| resolve(base, &s));
    let ca_file = file("ca_file", p);
    if let Some(path) = &ca_file {
        if let Err(e) = crate::tls::read_ca_file(path) {
            p.add(&t.key_path("ca_file"), e);
        }
    }
    let client = match (file("cert_file", p), file("key_file", p)) {
        (Some(cert), Some(key)) => {
            if let Err(e) = crate::tls::check_client_identity(&cert, &key) {
                p.add(&t.key_path("cert_file"), e);
            }
            Some((cert, key))
        }
        (None, None) => None,
        (Some(_), None) => {
            p.add(&t.key_path("key_file"), "is required with cert_file");
            None
        }
        (None, Some(_)) => {
            p.add(&t.key_path("cert_file"), "is required with key_file");
            None
        }
    };
    let digest = digest_of(
        ca_file
            .iter()
            .chain(client.iter().flat_map(|(c, k)| [c, k])),
    );
    RedisTlsConfig {
        ca_file,
        client,
        digest,
    }
}

/// SHA-256 over the files' contents: a changed certificate is a changed
/// config, which takes a restart (the client reads them once).
fn digest_of<'a>(files: impl Iterator<Item = &'a std::path::PathBuf>) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for f in files {
        ctx.update(&std::fs::read(f).unwrap_or_default());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref().to_vec()
}
