//! Step 4 of the request path: the request as the upstream gets it.
//!
//! - hop-by-hop headers (RFC 9110 7.6.1) go, with every header `Connection`
//!   names; an upgrade the upstream may agree to keeps `Upgrade`;
//! - client copies of the identity headers, rerouting headers and (from an
//!   untrusted peer) forwarding claims go, in any spelling (SPEC 6);
//! - sessiongate's refresh cookie goes;
//! - the identity headers, `X-Forwarded-*`, `Host` and `X-Request-Id` are set.
//!
//! Header names keep the client's spelling (hyper's case map travels in the
//! request's extensions) and the order of the headers that stay is kept.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, COOKIE, EXPECT, HOST,
    TRANSFER_ENCODING, UPGRADE,
};
use http::request::Parts;
use http::{Uri, Version};

use super::client::ClientInfo;
use super::headers::{same_name, NameSet, FORWARDING_CLAIMS, REROUTING};
use super::respond::X_REQUEST_ID;
use crate::auth::Verified;
use crate::config::IdentityHeadersConfig;
use crate::errors::ApiError;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers about one connection, never forwarded (RFC 9110 7.6.1, plus the
/// legacy `Keep-Alive`/`Proxy-Connection` and h2c's `HTTP2-Settings`).
/// `Expect` is answered by sessiongate itself (hyper sends `100 Continue`
/// when the body is first read, i.e. after the request was allowed).
///
/// A `match` on the (lower-case) name rather than a list of `HeaderName`s:
/// it runs for every header of every request and response, and compiles to
/// a switch on the length and one comparison.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "http2-settings"
            | "expect"
    )
}

pub struct Rewrite {
    identity: IdentityHeadersConfig,
    /// The client listener has TLS (`X-Forwarded-Proto`).
    tls: bool,
    /// sessiongate's own refresh cookie, never passed on to the upstream.
    refresh_cookie: Option<String>,
    /// Client copies of the identity headers and the rerouting headers:
    /// dropped from every request.
    dropped: NameSet,
    /// Forwarding claims: dropped unless the peer is a trusted proxy.
    claims: NameSet,
}

/// What the request path decided about one request.
pub struct Decided<'a> {
    pub client: &'a ClientInfo,
    /// The socket peer's address, as `X-Forwarded-For` names it.
    pub peer: &'a HeaderValue,
    pub identity: Option<&'a Verified>,
    pub request_id: &'a HeaderValue,
    /// Forward the client's `Upgrade` (a WebSocket handshake).
    pub upgrade: bool,
    /// The upstream's `host:port`, for a request that names no host.
    pub upstream_authority: &'a HeaderValue,
}

impl Rewrite {
    pub fn new(identity: IdentityHeadersConfig, tls: bool, refresh_cookie: Option<String>) -> Self {
        let dropped = [&identity.user_id, &identity.session_id, &identity.claims]
            .map(|n| n.as_str().as_bytes())
            .into_iter()
            .chain(REROUTING.iter().map(|n| n.as_bytes()));
        Rewrite {
            dropped: NameSet::new(dropped),
            claims: NameSet::new(FORWARDING_CLAIMS.iter().map(|n| n.as_bytes())),
            identity,
            tls,
            refresh_cookie,
        }
    }

    /// Rewrites `parts` for the upstream. `target`: the origin-form target
    /// to send instead of the client's; `strip`: more headers to drop (login's
    /// control headers).
    pub fn apply(
        &self,
        parts: &mut Parts,
        target: Option<Uri>,
        strip: &[&HeaderName],
        d: &Decided<'_>,
    ) -> Result<(), ApiError> {
        let h2_authority = (parts.version == Version::HTTP_2)
            .then(|| parts.uri.authority().cloned())
            .flatten();
        match target {
            Some(t) => parts.uri = t,
            None if parts.uri.scheme().is_some() => {
                parts.uri = parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .map(Uri::from)
                    .unwrap_or_else(|| Uri::from_static("/"));
            }
            None => {}
        }
        let was_h2 = parts.version == Version::HTTP_2;
        parts.version = Version::HTTP_11;
        self.strip(&mut parts.headers, strip, d);
        if was_h2 {
            join_cookies(&mut parts.headers);
        }
        let h = &mut parts.headers;
        // One growth at most for the headers set below.
        h.reserve(ADDED_LATER);
        if let Some(name) = &self.refresh_cookie {
            strip_cookie(h, name);
        }
        if let Some(id) = d.identity {
            h.insert(self.identity.user_id.clone(), id.user_header.clone());
            h.insert(self.identity.session_id.clone(), id.session_header.clone());
            h.insert(self.identity.claims.clone(), id.claims_header.clone());
        }
        let peer = d.peer.clone();
        if d.client.peer_trusted {
            // Several field lines are one list (RFC 9110 5.3): keep them all.
            // Elements that are empty or not text are dropped, as the
            // client-IP logic drops them.
            let mut xff = String::new();
            let priors = h
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|e| !e.is_empty());
            for prior in priors {
                xff.push_str(prior);
                xff.push_str(", ");
            }
            xff.push_str(peer.to_str().unwrap_or(""));
            let xff = HeaderValue::from_str(&xff).unwrap_or(peer);
            h.insert(X_FORWARDED_FOR, xff);
        } else {
            h.insert(X_FORWARDED_FOR, peer);
        }
        if !d.client.peer_trusted || !h.contains_key(&X_FORWARDED_PROTO) {
            let proto = if self.tls { "https" } else { "http" };
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if !h.contains_key(HOST) {
            // HTTP/2's :authority, else (HTTP/1.0) the upstream's own.
            let host = h2_authority
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .unwrap_or_else(|| d.upstream_authority.clone());
            h.insert(HOST, host);
        }
        if !d.client.peer_trusted || !h.contains_key(&X_FORWARDED_HOST) {
            match h.get(HOST).cloned() {
                Some(host) => {
                    h.insert(X_FORWARDED_HOST, host);
                }
                None => {
                    h.remove(&X_FORWARDED_HOST);
                }
            }
        }
        h.insert(X_REQUEST_ID, d.request_id.clone());
        Ok(())
    }

    /// Removes every header that must not reach the upstream, keeping the
    /// order of the others. Usually nothing matches: then nothing is built.
    fn strip(&self, h: &mut HeaderMap, strip: &[&HeaderName], d: &Decided<'_>) {
        let mut named = connection_named(h);
        // A client cannot have a header sessiongate sets dropped (it is set
        // after this anyway), nor the message's framing, nor `Authorization`
        // (SPEC 6: forwarded unchanged; the upstream may check it too).
        named.retain(|n| {
            !self.sets(n) && !same_name(n, b"content-length") && !same_name(n, b"authorization")
        });
        let untrusted = !d.client.peer_trusted;
        let upgrade = d.upgrade && !offers_h2c(h);
        remove_in_order(h, |k| {
            if upgrade && (k == UPGRADE || k == CONNECTION) {
                return false;
            }
            let kb = k.as_str().as_bytes();
            is_hop_by_hop(k)
                || self.dropped.contains(kb)
                || (untrusted && self.claims.contains(kb))
                || named.iter().any(|n| same_name(kb, n))
                || strip.iter().any(|n| same_name(kb, n.as_str().as_bytes()))
        });
        if upgrade {
            // Only the upgrade itself stays named in Connection.
            h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }

    /// Whether `name` is one of the headers sessiongate sets on every request.
    fn sets(&self, name: &[u8]) -> bool {
        [
            &self.identity.user_id,
            &self.identity.session_id,
            &self.identity.claims,
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_REQUEST_ID,
            &HOST,
        ]
        .iter()
        .any(|n| same_name(name, n.as_str().as_bytes()))
    }
}

/// The header names listed in `Connection` (lower-cased), minus the options
/// `close`, `keep-alive` and `upgrade`.
fn connection_named(h: &HeaderMap) -> Vec<Vec<u8>> {
    let mut named = Vec::new();
    for v in h.get_all(CONNECTION) {
        for token in v.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            let option = [&b"close"[..], b"keep-alive", b"upgrade"]
                .iter()
                .any(|o| token.eq_ignore_ascii_case(o));
            if !token.is_empty() && !option {
                named.push(token.to_ascii_lowercase());
            }
        }
    }
    named
}

/// Whether the request asks to switch protocols: an `Upgrade` that its
/// `Connection` names (RFC 9110 7.8); a bare `Upgrade` is a hop-by-hop
/// header like any other.
pub fn asks_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(UPGRADE)
        && h.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// An `Upgrade` offering h2c: never passed on (HTTP/2 to the upstream is not ours to start).
fn offers_h2c(h: &HeaderMap) -> bool {
    h.get_all(UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"h2c"))
}

/// HTTP/2 may split `Cookie` into one field per cookie; HTTP/1.1 wants one
/// line (RFC 9113 8.2.3).
fn join_cookies(h: &mut HeaderMap) {
    if h.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<u8> = h
        .get_all(COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(COOKIE, v);
    }
}

/// Removes the cookie `name` from every Cookie header: the refresh token
/// stays between the browser and sessiongate (a legacy upstream may log
/// cookies). Other cookies pass unchanged.
pub fn strip_cookie(h: &mut HeaderMap, name: &str) {
    let carries = |v: &HeaderValue| {
        v.as_bytes()
            .windows(name.len())
            .any(|w| w == name.as_bytes())
    };
    if !h.get_all(COOKIE).iter().any(carries) {
        return;
    }
    // Bytes, not text: other cookies pass exactly as they came.
    let kept: Vec<Vec<u8>> = h
        .get_all(COOKIE)
        .iter()
        .map(|v| {
            let pairs: Vec<&[u8]> = v
                .as_bytes()
                .split(|b| *b == b';')
                .map(<[u8]>::trim_ascii)
                .filter(|pair| !pair.is_empty())
                .filter(|pair| {
                    let cookie = pair.split(|b| *b == b'=').next().unwrap_or(pair);
                    cookie.trim_ascii() != name.as_bytes()
                })
                .collect();
            pairs.join(&b"; "[..])
        })
        .filter(|v| !v.is_empty())
        .collect();
    h.remove(COOKIE);
    for value in kept {
        // Came from a valid header value minus some bytes: still valid.
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            h.append(COOKIE, value);
        }
    }
}

/// Removes the hop-by-hop headers of an upstream response (and those its
/// `Connection` names), keeping the others in order. A 101 keeps `Upgrade`
/// and `Connection`: they are the switch.
pub fn strip_response(h: &mut HeaderMap, switching: bool) {
    let named = connection_named(h);
    // hyper read the body by its Transfer-Encoding (RFC 9112 6.3: it wins
    // over Content-Length), and re-frames it for the client: a
    // Content-Length sent along must go too (RFC 9112 6.3 asks an
    // intermediary to remove it), or the client would read the body by it,
    // truncated or running into the next response.
    let framed_by_coding = h.contains_key(TRANSFER_ENCODING);
    let doomed = |k: &HeaderName| {
        if switching && (k == UPGRADE || k == CONNECTION) {
            return false;
        }
        (is_hop_by_hop(k) && k != EXPECT)
            || (framed_by_coding && k == CONTENT_LENGTH)
            || named.iter().any(|n| same_name(k.as_str().as_bytes(), n))
    };
    remove_in_order(h, doomed);
}

/// Room for the headers the request path adds after a rebuild (identity,
/// forwarding, request id), so that adding them does not grow the map again.
const ADDED_LATER: usize = 8;

/// Drops the headers `doomed` names, keeping the order of the others.
///
/// `HeaderMap::remove` swaps the map's last header into the gap, so it keeps
/// the order only when every doomed header comes after every kept one (the
/// usual case for a response: `Connection: keep-alive` last). Otherwise the
/// map is rebuilt in order.
fn remove_in_order(h: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let mut kept = 0;
    let mut first_doomed = None;
    for (i, k) in h.keys().enumerate() {
        if doomed(k) {
            first_doomed.get_or_insert(i);
        } else if first_doomed.is_some() {
            return rebuild_in_order(h, doomed);
        } else {
            kept += 1;
        }
    }
    if first_doomed.is_none() {
        return;
    }
    // Only doomed headers from `kept` on: removing one moves another doomed
    // one (the last) into its place, never a kept one.
    while let Some(name) = h.keys().nth(kept).cloned() {
        h.remove(&name);
    }
}

fn rebuild_in_order(h: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let old = std::mem::take(h);
    h.reserve(old.len() + ADDED_LATER);
    let mut current: Option<HeaderName> = None;
    for (name, value) in old {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = &current {
            if !doomed(name) {
                h.append(name.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies_after(lines: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(COOKIE, HeaderValue::from_bytes(line).unwrap());
        }
        strip_cookie(&mut h, "sg_refresh");
        h.get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn hop_by_hop_names_are_exactly_those_of_rfc_9110_and_ours() {
        use http::header::{CONTENT_LENGTH, TE, TRAILER, TRANSFER_ENCODING};
        let name = HeaderName::from_static;
        for hop in [
            CONNECTION,
            name("keep-alive"),
            name("proxy-connection"),
            TE,
            TRAILER,
            TRANSFER_ENCODING,
            UPGRADE,
            name("http2-settings"),
            EXPECT,
        ] {
            assert!(is_hop_by_hop(&hop), "{hop}");
        }
        for end_to_end in [
            CONTENT_LENGTH,
            HOST,
            COOKIE,
            name("t"),
            name("tes"),
            name("x-connection"),
            name("connections"),
            name("keep_alive"),
        ] {
            assert!(!is_hop_by_hop(&end_to_end), "{end_to_end}");
        }
    }

    #[test]
    fn only_our_cookie_is_removed() {
        assert_eq!(
            cookies_after(&[b"a=1; sg_refresh=t; xsg_refresh=2; sg_refresh_x=3"]),
            [b"a=1; xsg_refresh=2; sg_refresh_x=3".to_vec()]
        );
        assert_eq!(
            cookies_after(&[b" sg_refresh = \"t\" ;;  b=2 ", b"sg_refresh=t"]),
            [b"b=2".to_vec()]
        );
        assert!(cookies_after(&[b"sg_refresh=t"]).is_empty());
        // Bytes that are not UTF-8 in other cookies pass exactly.
        assert_eq!(
            cookies_after(&[b"a=\xe9t\xe9; sg_refresh=t"]),
            [b"a=\xe9t\xe9".to_vec()]
        );
        // No cookie of ours: the headers are left alone, even odd spacing.
        assert_eq!(cookies_after(&[b"a=1;b=2"]), [b"a=1;b=2".to_vec()]);
    }

    fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
        h.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    /// Both ways of removing (from the end in place, or rebuilt) keep the
    /// order of the headers that stay, repeated ones included.
    #[test]
    fn removal_keeps_order_wherever_the_removed_headers_are() {
        let kept = [("x-a", "1"), ("x-b", "2"), ("x-a", "3"), ("x-c", "4")];
        let doomed = [("keep-alive", "timeout=5"), ("te", "x"), ("te", "y")];
        let layouts: [&[(&str, &str)]; 4] = [
            &[
                kept[0], kept[1], kept[2], kept[3], doomed[0], doomed[1], doomed[2],
            ],
            &[
                kept[0], doomed[1], kept[1], doomed[0], kept[2], kept[3], doomed[2],
            ],
            &[
                doomed[0], doomed[1], doomed[2], kept[0], kept[1], kept[2], kept[3],
            ],
            &[kept[0], kept[1], kept[2], kept[3]],
        ];
        for layout in layouts {
            let mut h = HeaderMap::new();
            for (n, v) in layout {
                h.append(*n, HeaderValue::from_static(v));
            }
            remove_in_order(&mut h, |k| k == "keep-alive" || k == http::header::TE);
            // HeaderMap lists a name's values together, at its first place.
            let want = [("x-a", "1"), ("x-a", "3"), ("x-b", "2"), ("x-c", "4")]
                .map(|(n, v)| (n.to_string(), v.to_string()));
            assert_eq!(pairs(&h), want, "{layout:?}");
        }
    }

    #[test]
    fn response_hop_by_hop_headers_go_and_order_stays() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append(CONNECTION, HeaderValue::from_static("close, X-Secret"));
        h.append("x-secret", HeaderValue::from_static("s"));
        h.append("keep-alive", HeaderValue::from_static("timeout=5"));
        h.append("x-b", HeaderValue::from_static("2"));
        h.append("x-c", HeaderValue::from_static("3"));
        strip_response(&mut h, false);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-a", "x-b", "x-c"]);
    }
}
