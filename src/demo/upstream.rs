//! The demo's legacy API: `POST /login` checks a password and names the user in
//! `X-Session-Subject`; every other path echoes what it received as JSON.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Starts the upstream on 127.0.0.1 (a free port) in its own thread.
pub fn spawn() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("demo-upstream".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(handle))
                            .await;
                    });
                }
            });
        })?;
    Ok(addr)
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if parts.method == hyper::Method::POST && parts.uri.path() == "/login" {
        let creds: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let user = creds["username"].as_str().unwrap_or("");
        let ok = !user.is_empty() && user.len() <= 64 && creds["password"] == "demo";
        let resp = if ok {
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("x-session-subject", format!("user-{user}"))
                .header("x-session-claims", r#"{"role":"demo"}"#)
                .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)))
        } else {
            Response::builder()
                .status(401)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(
                    br#"{"error":"bad_credentials"}"#,
                )))
        };
        return Ok(resp.expect("valid response"));
    }
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let echo = serde_json::json!({
        "hello": "from the legacy upstream",
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "x-auth-user-id": header("x-auth-user-id"),
        "x-auth-session-id": header("x-auth-session-id"),
        "x-auth-claims": header("x-auth-claims"),
    });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(echo.to_string())))
        .expect("valid response"))
}
