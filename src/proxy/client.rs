//! Who the client is: the socket peer, or the address a trusted proxy reports.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The socket peer of one connection, and its address as a header value
/// (made once per connection, not per request).
pub struct Peer {
    pub ip: IpAddr,
    pub header: http::HeaderValue,
}

impl Peer {
    pub fn new(ip: IpAddr) -> Peer {
        let ip = canonical(ip);
        Peer {
            ip,
            header: http::HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| http::HeaderValue::from_static("0.0.0.0")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub peer_ip: IpAddr,
    pub peer_trusted: bool,
    /// The client's IP: the peer, or for a trusted peer the right-most
    /// untrusted address of its X-Forwarded-For.
    pub ip: IpAddr,
}

impl ClientInfo {
    pub fn unknown() -> Self {
        let ip = IpAddr::from([0, 0, 0, 0]);
        ClientInfo {
            peer_ip: ip,
            peer_trusted: false,
            ip,
        }
    }

    pub fn new(peer_ip: IpAddr, req: &HeaderMap, trusted: &[IpNet]) -> Self {
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
        let peer_ip = canonical(peer_ip);
        let peer_trusted = is_trusted(&peer_ip);
        let mut ip = peer_ip;
        if peer_trusted {
            ip = client_from_forwarded_for(peer_ip, req, &is_trusted);
        }
        ClientInfo {
            peer_ip,
            peer_trusted,
            ip,
        }
    }
}

/// Walks a trusted peer's `X-Forwarded-For` from the right: the client is the
/// first address no trusted proxy owns. An entry that does not parse stops
/// the walk, and the client is then the hop that reported it: never an entry
/// to its left, which whoever wrote the bad entry may have written too.
fn client_from_forwarded_for(
    peer_ip: IpAddr,
    req: &HeaderMap,
    is_trusted: &impl Fn(&IpAddr) -> bool,
) -> IpAddr {
    let entries: Vec<&str> = req
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut reporter = peer_ip;
    for entry in entries.iter().rev() {
        let Some(hop) = parse_hop(entry).map(canonical) else {
            return reporter;
        };
        if !is_trusted(&hop) {
            return hop;
        }
        reporter = hop;
    }
    // Every hop is a trusted proxy: the left-most is where it started.
    reporter
}

/// An X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// `::ffff:1.2.3.4` is 1.2.3.4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The User-Agent as stored with a session: bounded, printable.
pub fn user_agent(req: &HeaderMap) -> String {
    crate::sessions::Client::user_agent_of(req.get(http::header::USER_AGENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(xff: &[&str]) -> IpAddr {
        let mut req = HeaderMap::new();
        for v in xff {
            req.append("x-forwarded-for", v.parse().unwrap());
        }
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        ClientInfo::new("10.0.0.1".parse().unwrap(), &req, &trusted).ip
    }

    #[test]
    fn forwarded_for_entries_with_ports_are_read() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client(&["6.6.6.6, 203.0.113.7:51234"]), ip("203.0.113.7"));
        assert_eq!(client(&["6.6.6.6, [2001:db8::7]:443"]), ip("2001:db8::7"));
        assert_eq!(client(&["6.6.6.6, [2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(
            client(&["6.6.6.6, 203.0.113.7, 10.1.1.1"]),
            ip("203.0.113.7")
        );
        assert_eq!(client(&["6.6.6.6", "203.0.113.7"]), ip("203.0.113.7"));
    }

    #[test]
    fn an_unreadable_entry_stops_the_walk_at_the_hop_that_reported_it() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client(&["6.6.6.6, unknown"]), ip("10.0.0.1"));
        assert_eq!(client(&["6.6.6.6, unknown, 10.2.2.2"]), ip("10.2.2.2"));
        assert_eq!(client(&["6.6.6.6, 203.0.113.7:x"]), ip("10.0.0.1"));
        // All hops trusted: the left-most.
        assert_eq!(client(&["10.3.3.3, 10.2.2.2"]), ip("10.3.3.3"));
        assert_eq!(client(&[]), ip("10.0.0.1"));
    }
}
