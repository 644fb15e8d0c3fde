//! The upstream: its address (re-resolved in the background so a DNS name
//! such as a Kubernetes Service keeps working) and the peer settings.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;

use crate::config;

pub struct Upstream {
    cfg: config::Upstream,
    peer: ArcSwapOption<HttpPeer>,
    /// System roots + `ca_file`, when `ca_file` is set (see `crate::tls`).
    ca: Option<Arc<[WrappedX509]>>,
}

impl Upstream {
    /// Fails only when `ca_file` cannot be read or parsed.
    pub fn new(cfg: &config::Upstream) -> Result<Arc<Upstream>, String> {
        let ca = match &cfg.ca_file {
            Some(path) if cfg.tls => Some(
                crate::tls::upstream_trust_anchors(path)
                    .map_err(|e| format!("upstream.ca_file: {e}"))?,
            ),
            _ => None,
        };
        let u = Arc::new(Upstream {
            cfg: cfg.clone(),
            peer: ArcSwapOption::empty(),
            ca,
        });
        if let Err(e) = u.resolve() {
            tracing::warn!(upstream = %cfg.url, error = %e, "cannot resolve the upstream yet; retrying in the background");
        }
        Ok(u)
    }

    /// The peer to connect to, if the upstream's address is known.
    pub fn peer(&self) -> Option<Arc<HttpPeer>> {
        self.peer.load_full()
    }

    pub fn timeout(&self) -> Duration {
        self.cfg.request_timeout
    }

    pub fn authority(&self) -> String {
        if self.cfg.host.contains(':') {
            format!("[{}]:{}", self.cfg.host, self.cfg.port)
        } else {
            format!("{}:{}", self.cfg.host, self.cfg.port)
        }
    }

    /// Looks the host up and installs a peer for its first address.
    pub fn resolve(&self) -> std::io::Result<()> {
        let addr: SocketAddr = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        if self
            .peer
            .load()
            .as_ref()
            .is_some_and(|p| p._address == pingora::protocols::l4::socket::SocketAddr::Inet(addr))
        {
            return Ok(());
        }
        let mut peer = HttpPeer::new(addr, self.cfg.tls, self.cfg.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.cfg.connect_timeout);
        o.total_connection_timeout = Some(self.cfg.connect_timeout);
        o.read_timeout = Some(self.cfg.request_timeout);
        o.write_timeout = Some(self.cfg.request_timeout);
        o.idle_timeout = Some(Duration::from_secs(60));
        o.verify_cert = true;
        o.verify_hostname = true;
        o.ca = self.ca.clone();
        self.peer.store(Some(Arc::new(peer)));
        Ok(())
    }

    /// Whether the host is a name that can change address.
    pub fn needs_resolving(&self) -> bool {
        self.cfg.host.parse::<std::net::IpAddr>().is_err()
    }
}
