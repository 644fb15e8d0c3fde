//! The admin listener (SPEC 7): `/healthz`, `/readyz`, `/metrics`. Nothing of
//! it is served on the client listener.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::revocation::RevocationList;
use crate::shutdown::InFlight;
use crate::store::SessionStore;

const READY_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn SessionStore>,
    pub revocations: Arc<RevocationList>,
    pub inflight: Arc<InFlight>,
}

fn text(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts are valid")
}

impl Admin {
    async fn ready(&self) -> Result<(), String> {
        if self.inflight.draining() {
            return Err("shutting down".into());
        }
        self.revocations
            .check_fresh(crate::time::unix_now_ms())
            .map_err(|stale| stale.to_string())?;
        match tokio::time::timeout(READY_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the session store did not answer within 1s".into()),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        match path.as_str() {
            "/healthz" => text(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => match self.ready().await {
                Ok(()) => text(200, "application/json", br#"{"status":"ready"}"#.to_vec()),
                Err(why) => {
                    let body = serde_json::to_vec(
                        &serde_json::json!({"status": "not ready", "reason": why}),
                    )
                    .unwrap_or_default();
                    text(503, "application/json", body)
                }
            },
            "/metrics" => {
                // A scrape is a good moment to drop harmless entries: it
                // keeps the gauge honest and runs off the request path.
                self.metrics
                    .revocation_entries
                    .set(self.revocations.sweep() as i64);
                self.metrics
                    .revocation_staleness
                    .set(self.revocations.staleness_seconds());
                text(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            _ => text(
                404,
                "application/json",
                br#"{"error":"not_found","message":"No such resource."}"#.to_vec(),
            ),
        }
    }
}
