//! Step 5 of the request path: one exchange with the upstream over a
//! worker's pooled connections, for proxied requests and login alike.

use std::rc::Rc;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::{Body, Outgoing};
use super::pool::{Conn, Pool};
use super::respond::upstream_failure;
use super::upstream::{ConnectError, Upstream};
use crate::errors::ApiError;

#[derive(Clone)]
pub struct Forwarder {
    pool: Rc<Pool>,
    upstream: Arc<Upstream>,
}

impl Forwarder {
    pub fn new(upstream: Arc<Upstream>) -> Forwarder {
        Forwarder {
            pool: Pool::new(upstream.clone()),
            upstream,
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Whether this forwarder connects to `upstream` (the same one, not an equal one).
    pub fn serves(&self, upstream: &Arc<Upstream>) -> bool {
        Arc::ptr_eq(&self.upstream, upstream)
    }

    pub fn pool(&self) -> &Rc<Pool> {
        &self.pool
    }

    /// Sends `req` and waits for the response head, within `upstream.request_timeout`.
    pub async fn exchange(
        &self,
        req: Request<Outgoing>,
    ) -> Result<(Response<Incoming>, Conn), ApiError> {
        tokio::time::timeout(self.upstream.timeout(), self.send(req))
            .await
            .map_err(|_| ApiError::UpstreamTimeout)?
    }

    async fn send(
        &self,
        mut req: Request<Outgoing>,
    ) -> Result<(Response<Incoming>, Conn), ApiError> {
        loop {
            let mut conn = self.pool.checkout().await.map_err(|e| {
                if !matches!(e, ConnectError::Unresolved) {
                    tracing::warn!(error = ?e, "cannot connect to the upstream");
                }
                unavailable()
            })?;
            match conn.sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    // A kept-alive connection the upstream closed meanwhile:
                    // the request was not sent, so another connection may have it.
                    Some(unsent) if conn.reused => req = unsent,
                    _ => {
                        let err = upstream_failure(e.error());
                        if err.status() >= 500 {
                            tracing::warn!(error = %e.error(), "the upstream exchange failed");
                        }
                        return Err(err);
                    }
                },
            }
        }
    }

    /// The upstream's response with its body streamed to the client; the
    /// connection returns to the pool when the body has been read.
    pub fn stream(&self, resp: Response<Incoming>, conn: Conn) -> Response<Body> {
        resp.map(|b| Body::Upstream(self.pool.body(b, conn)))
    }
}

pub fn unavailable() -> ApiError {
    ApiError::UpstreamUnavailable("The upstream service is unavailable.".into())
}

/// Joins the client's and the upstream's connections once both have
/// switched protocols (a WebSocket), on this worker.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::task::spawn_local(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "an upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "an upgraded connection ended");
        }
    });
}
