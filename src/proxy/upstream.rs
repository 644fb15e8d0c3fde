//! The upstream: its address (re-resolved in the background so a DNS name
//! such as a Kubernetes Service keeps working), how to open a connection to
//! it (TCP, then TLS with SNI and hostname verification for https), and the
//! timeouts. Shared read-only by every worker; each worker keeps its own
//! idle connections ([`super::pool`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config;

pub struct Upstream {
    cfg: config::UpstreamConfig,
    addr: ArcSwapOption<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    authority: http::HeaderValue,
}

/// A connection to the upstream, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why no connection could be had.
#[derive(Debug)]
pub enum ConnectError {
    Unresolved,
    TimedOut,
    Failed(std::io::Error),
}

impl Upstream {
    /// Fails only when the TLS settings (`ca_file`) cannot be used.
    pub fn new(cfg: &config::UpstreamConfig) -> Result<Arc<Upstream>, String> {
        let tls = if cfg.tls {
            let config = crate::tls::upstream_client_config(cfg.ca_file.as_deref())
                .map_err(|e| format!("upstream.ca_file: {e}"))?;
            let name = ServerName::try_from(cfg.host.clone()).map_err(|e| {
                format!("upstream.url: `{}` is not a TLS server name: {e}", cfg.host)
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let authority = if cfg.host.contains(':') {
            format!("[{}]:{}", cfg.host, cfg.port)
        } else {
            format!("{}:{}", cfg.host, cfg.port)
        };
        let u = Arc::new(Upstream {
            cfg: cfg.clone(),
            addr: ArcSwapOption::empty(),
            tls,
            authority: http::HeaderValue::from_str(&authority)
                .map_err(|_| format!("upstream.url: `{authority}` is not a valid Host"))?,
        });
        if let Err(e) = u.resolve() {
            tracing::warn!(upstream = %cfg.url, error = %e, "cannot resolve the upstream yet; retrying in the background");
        }
        Ok(u)
    }

    /// The address to connect to, if known.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.load().as_deref().copied()
    }

    pub fn timeout(&self) -> Duration {
        self.cfg.request_timeout
    }

    /// `host:port`, the Host of a request that came without one.
    pub fn authority(&self) -> &http::HeaderValue {
        &self.authority
    }

    /// Looks the host up (blocking: call it off the request path) and keeps
    /// its first address.
    pub fn resolve(&self) -> std::io::Result<()> {
        let addr: SocketAddr = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        if self.addr() != Some(addr) {
            self.addr.store(Some(Arc::new(addr)));
        }
        Ok(())
    }

    /// Whether the host is a name that can change address.
    pub fn needs_resolving(&self) -> bool {
        self.cfg.host.parse::<std::net::IpAddr>().is_err()
    }

    /// A new connection, TLS included, within `upstream.connect_timeout`.
    pub async fn connect(&self) -> Result<(Stream, SocketAddr), ConnectError> {
        let addr = self.addr().ok_or(ConnectError::Unresolved)?;
        let open = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(match &self.tls {
                None => Stream::Plain(tcp),
                Some((connector, name)) => {
                    Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
                }
            })
        };
        match tokio::time::timeout(self.cfg.connect_timeout, open).await {
            Ok(Ok(stream)) => Ok((stream, addr)),
            Ok(Err(e)) => Err(ConnectError::Failed(e)),
            Err(_) => Err(ConnectError::TimedOut),
        }
    }
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}
