//! Who the client is: the socket peer, or the address a trusted proxy reports.

use std::net::IpAddr;

use ipnet::IpNet;
use pingora::http::RequestHeader;

const MAX_USER_AGENT: usize = 512;

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

    pub fn new(peer_ip: IpAddr, req: &RequestHeader, trusted: &[IpNet]) -> Self {
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
        let peer_ip = canonical(peer_ip);
        let peer_trusted = is_trusted(&peer_ip);
        let mut ip = peer_ip;
        if peer_trusted {
            let hops: Vec<IpAddr> = req
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .collect();
            if let Some(found) = hops
                .iter()
                .rev()
                .map(|ip| canonical(*ip))
                .find(|ip| !is_trusted(ip))
            {
                ip = found;
            } else if let Some(first) = hops.first() {
                ip = canonical(*first);
            }
        }
        ClientInfo {
            peer_ip,
            peer_trusted,
            ip,
        }
    }
}

/// `::ffff:1.2.3.4` is 1.2.3.4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The User-Agent as stored with a session: bounded, printable.
pub fn user_agent(req: &RequestHeader) -> String {
    let ua = req
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    ua.chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT)
        .collect()
}
