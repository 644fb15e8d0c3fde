//! Refresh rotations per second through the real HTTP path on the SQLite
//! store: N clients, each with its own session and keep-alive connection,
//! refresh in a loop (each rotation committed before the answer).
//!
//! `cargo bench --bench refresh_load` — knobs: BENCH_SECONDS (10),
//! BENCH_CLIENTS (32), BENCH_THREADS (proxy worker threads, 1),
//! BENCH_SIDECAR_BIN (the sidecar binary, else this build's). The sidecar
//! runs as its own process, so its CPU per rotation (from /proc over the
//! measured window) is its alone. Client and server share the machine, so
//! the rate is a lower bound.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::{call, cpu_seconds, cpu_us_per, login, sidecar_bin, wait_ready};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn refresh_token(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["refresh_token"].as_str().map(str::to_owned)
}

fn main() -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let clients = env_or("BENCH_CLIENTS", 32);
    let threads = env_or("BENCH_THREADS", 1);
    let dir = tempfile::tempdir()?;
    let key = sessiongate::auth::keys::generate(sessiongate::auth::keys::Alg::EdDSA)
        .map_err(anyhow::Error::msg)?;
    std::fs::write(dir.path().join("k1.pem"), key)?;
    let upstream = sessiongate::demo::spawn_upstream()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let yaml = format!(
        "server: {{listen: 127.0.0.1:{port}, admin_listen: 127.0.0.1:{admin}, threads: {threads}}}\n\
         upstream: {{url: http://{upstream}}}\n\
         tokens: {{keys: [{{kid: k1, alg: EdDSA, private_key_file: k1.pem}}]}}\n\
         store: {{sqlite: {{path: bench.db}}}}\n\
         login: {{}}\n\
         rate_limits: {{login: {{per_minute: 10000000, burst: 10000000}}, refresh: {{per_minute: 10000000, burst: 10000000}}}}\n"
    );
    let path = dir.path().join("sessiongate.yaml");
    std::fs::write(&path, yaml)?;
    let sidecar = Sidecar(
        Command::new(sidecar_bin())
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let pid = [sidecar.0.id()];

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = format!("127.0.0.1:{port}");
        wait_ready(admin).await?;
        // The window opens once every client has logged in.
        let stop = Arc::new(AtomicBool::new(false));
        let go = Arc::new(tokio::sync::Barrier::new(clients as usize + 1));
        let mut tasks = Vec::new();
        for i in 0..clients {
            let (addr, stop, go) = (addr.clone(), stop.clone(), go.clone());
            tasks.push(tokio::spawn(async move {
                let login = login(addr.as_str(), i).await;
                // Waited for even after a failure, so the window still opens.
                go.wait().await;
                let (mut conn, status, body) = login?;
                anyhow::ensure!(status == 200, "login answered {status}");
                let mut token = refresh_token(&body).ok_or_else(|| anyhow::anyhow!("no refresh token"))?;
                let mut latencies = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let (status, body) = call(&mut conn, "POST", "/v1/auth/refresh", None, &format!(r#"{{"refresh_token":"{token}"}}"#)).await?;
                    anyhow::ensure!(status == 200, "refresh answered {status}: {}", String::from_utf8_lossy(&body));
                    latencies.push(t.elapsed());
                    token = refresh_token(&body).ok_or_else(|| anyhow::anyhow!("no refresh token"))?;
                }
                Ok(latencies)
            }));
        }
        go.wait().await;
        let (started, cpu_start) = (Instant::now(), cpu_seconds(&pid));
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_us_per(cpu_start, cpu_seconds(&pid), all.len());
        all.sort();
        let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default();
        println!(
            "refresh_load (sqlite): {} rotations in {elapsed:.1}s = {:.0}/s | clients {clients}, proxy threads {threads} | p50 {:.2} ms, p99 {:.2} ms | sidecar CPU {cpu:.1} µs/rotation",
            all.len(),
            all.len() as f64 / elapsed,
            pct(0.50).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0
        );
        Ok::<_, anyhow::Error>(())
    })?;
    drop(sidecar);
    Ok(())
}

/// The sidecar process, killed when the bench ends.
struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
