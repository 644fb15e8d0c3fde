//! Shared by the load benchmarks: a minimal HTTP/1.1 keep-alive client,
//! so the client side costs as little CPU as possible.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request on a keep-alive connection; (status, body).
pub async fn call(
    conn: &mut TcpStream,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok((status, buf[end + 4..end + 4 + len].to_vec()));
    }
}

/// Polls `/readyz` on 127.0.0.1:`admin` until it answers 200 (at most 20 s).
pub async fn wait_ready(admin: u16) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", admin)).await {
            if matches!(call(&mut c, "GET", "/readyz", None, "").await, Ok((200, _))) {
                return Ok(());
            }
        }
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "sessiongate on admin port {admin} not ready within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
