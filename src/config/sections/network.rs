//! Sections `server` and `upstream`.

use std::path::Path;

use ipnet::IpNet;

use super::{
    header_name, required_file, resolve, socket_addr, ServerConfig, TlsConfig, UpstreamConfig, SECS,
};
use crate::config::reader::{Node, Problems};

pub(super) fn read_server(root: &Node, base: &Path, p: &mut Problems) -> ServerConfig {
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
            "header_read_timeout",
            "http2",
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
        TlsConfig {
            cert_file: required_file(&t, "cert_file", base, p),
            key_file: required_file(&t, "key_file", base, p),
        }
    });
    let threads = n.number("threads", 0, (0, 1024), p) as usize;
    let header_read_timeout = n.duration("header_read_timeout", SECS(10), p);
    if header_read_timeout.is_zero() {
        p.add(&n.key_path("header_read_timeout"), "must be more than 0s");
    }
    ServerConfig {
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
        header_read_timeout,
        http2: n.boolean("http2", true, p),
    }
}

pub(super) fn read_upstream(root: &Node, base: &Path, p: &mut Problems) -> UpstreamConfig {
    let n = root.child(
        "upstream",
        &[
            "url",
            "connect_timeout",
            "request_timeout",
            "ca_file",
            "revoke_header",
        ],
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
    // Present and null: disabled. Absent: the default name.
    let revoke_header = if n.has("revoke_header") && n.get("revoke_header").is_none() {
        None
    } else {
        let name = header_name(&n, "revoke_header", "X-Session-Revoke", p);
        if crate::names::is_reserved_header(&name) {
            p.add(
                &n.key_path("revoke_header"),
                format_args!("`{name}` is a header sessiongate or HTTP itself uses"),
            );
        }
        Some(name)
    };
    UpstreamConfig {
        url,
        tls,
        host,
        port,
        connect_timeout,
        request_timeout,
        ca_file,
        revoke_header,
    }
}

/// `http[s]://host[:port][/]` — no userinfo, path, query or fragment.
pub(super) fn parse_upstream_url(url: &str) -> Result<(bool, String, u16), String> {
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
