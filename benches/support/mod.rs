//! Shared by the load benchmarks: a minimal HTTP/1.1 keep-alive client,
//! so the client side costs as little CPU as possible.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A keep-alive connection with Nagle off.
pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> anyhow::Result<TcpStream> {
    let c = TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    Ok(c)
}

/// Connects and logs in as bench user `i` (the demo upstream's password);
/// the connection and the login's (status, body).
pub async fn login(
    addr: impl tokio::net::ToSocketAddrs,
    i: u64,
) -> anyhow::Result<(TcpStream, u16, Vec<u8>)> {
    let mut conn = connect(addr).await?;
    let body = format!(r#"{{"username":"bench{i}","password":"demo"}}"#);
    let (status, answer) = call(&mut conn, "POST", "/v1/auth/login", None, &body).await?;
    Ok((conn, status, answer))
}

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

/// The sidecar binary the load benchmarks start: `BENCH_SIDECAR_BIN` (e.g.
/// an older build, to compare in one run) or this build's.
pub fn sidecar_bin() -> std::path::PathBuf {
    std::env::var_os("BENCH_SIDECAR_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sessiongate").into())
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (utime + stime, every thread) the processes `pids` have used
/// so far, from /proc/<pid>/stat, as bench/compare.py reads them. A process
/// that is gone counts 0.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which may hold spaces and parentheses).
            let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / clock_ticks()
}

/// Sidecar CPU over a measured window: µs per rotation.
pub fn cpu_us_per(cpu_before: f64, cpu_after: f64, rotations: usize) -> f64 {
    (cpu_after - cpu_before) * 1e6 / rotations.max(1) as f64
}
