//! Two real sidecar processes on one Redis: refresh rotations per second
//! (clients split across both replicas) and revocation propagation latency
//! (revoke on A, poll B until it answers 401).
//!
//! `cargo bench --bench redis_replicas` — knobs: BENCH_REDIS_URL (else a
//! `redis-server` is started on a free port), BENCH_SECONDS (10),
//! BENCH_CLIENTS (32), BENCH_THREADS (proxy threads per replica, 1),
//! BENCH_ROUNDS (propagation rounds, 50; 0 skips them), BENCH_SIDECAR_BIN
//! (the sidecar binary, else this build's). Everything shares the machine, so
//! the rates are lower bounds; what the sidecars spend per rotation (CPU
//! from /proc over the measured window, both processes) moves much less.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::{call, connect, cpu_seconds, cpu_us_per, login, sidecar_bin, wait_ready};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Children killed when the bench ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn field(body: &[u8], name: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no {name} in {v}"))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let (seconds, clients) = (env_or("BENCH_SECONDS", 10), env_or("BENCH_CLIENTS", 32));
    let (threads, rounds) = (env_or("BENCH_THREADS", 1), env_or("BENCH_ROUNDS", 50));
    let dir = tempfile::tempdir()?;
    let mut procs = Procs(Vec::new());
    let mut redis_pid = None;
    let redis_url = match std::env::var("BENCH_REDIS_URL") {
        Ok(u) => u,
        Err(_) => {
            let port = free_port()?;
            procs.0.push(
                Command::new("redis-server")
                    .args([
                        "--port",
                        &port.to_string(),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .stdout(Stdio::null())
                    .spawn()?,
            );
            redis_pid = procs.0.last().map(Child::id);
            format!("redis://127.0.0.1:{port}/")
        }
    };
    let key = sessiongate::auth::keys::generate(sessiongate::auth::keys::Alg::EdDSA)
        .map_err(anyhow::Error::msg)?;
    std::fs::write(dir.path().join("k1.pem"), key)?;
    let upstream = sessiongate::demo::spawn_upstream()?;
    let (mut replicas, mut sidecars) = (Vec::new(), Vec::new());
    for name in ["a", "b"] {
        let (port, admin) = (free_port()?, free_port()?);
        let yaml = format!(
            "server: {{listen: 127.0.0.1:{port}, admin_listen: 127.0.0.1:{admin}, threads: {threads}}}\n\
             upstream: {{url: http://{upstream}}}\n\
             tokens: {{keys: [{{kid: k1, alg: EdDSA, private_key_file: k1.pem}}]}}\n\
             store: {{backend: redis, redis: {{url: \"{redis_url}\", key_prefix: \"bench:\"}}}}\n\
             login: {{}}\n\
             rate_limits: {{login: {{per_minute: 10000000, burst: 10000000}}, refresh: {{per_minute: 10000000, burst: 10000000}}}}\n"
        );
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml)?;
        procs.0.push(
            Command::new(sidecar_bin())
                .args(["run", "--config"])
                .arg(&path)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?,
        );
        sidecars.extend(procs.0.last().map(Child::id));
        replicas.push((port, admin));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        for (_, admin) in &replicas {
            wait_ready(*admin).await?;
        }

        // Refresh load, clients alternating between the replicas; the window
        // opens once every client has logged in.
        let stop = Arc::new(AtomicBool::new(false));
        let go = Arc::new(tokio::sync::Barrier::new(clients as usize + 1));
        let mut tasks = Vec::new();
        for i in 0..clients {
            let (port, stop, go) = (replicas[i as usize % 2].0, stop.clone(), go.clone());
            tasks.push(tokio::spawn(async move {
                let login = login(("127.0.0.1", port), i).await;
                // Waited for even after a failure, so the window still opens.
                go.wait().await;
                let (mut conn, status, body) = login?;
                anyhow::ensure!(status == 200, "login answered {status}");
                let mut token = field(&body, "refresh_token")?;
                let mut latencies = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let req = format!(r#"{{"refresh_token":"{token}"}}"#);
                    let (status, body) = call(&mut conn, "POST", "/v1/auth/refresh", None, &req).await?;
                    anyhow::ensure!(status == 200, "refresh answered {status}");
                    latencies.push(t.elapsed());
                    token = field(&body, "refresh_token")?;
                }
                Ok(latencies)
            }));
        }
        go.wait().await;
        let (started, cpu_start) = (Instant::now(), cpu_seconds(&sidecars));
        let redis_start = cpu_seconds(redis_pid.as_slice());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_us_per(cpu_start, cpu_seconds(&sidecars), all.len());
        let redis_cpu = cpu_us_per(redis_start, cpu_seconds(redis_pid.as_slice()), all.len());
        all.sort();
        println!(
            "redis refresh: {} rotations in {elapsed:.1}s = {:.0}/s | 2 replicas x {threads} proxy threads, {clients} clients | p50 {:.2} ms, p99 {:.2} ms | sidecar CPU {cpu:.1} µs/rotation{}",
            all.len(),
            all.len() as f64 / elapsed,
            pct(&all, 0.50),
            pct(&all, 0.99),
            match redis_pid {
                Some(_) => format!(", redis-server {redis_cpu:.1} µs/rotation"),
                None => String::new(),
            }
        );
        if rounds == 0 {
            return Ok(());
        }

        // Propagation: revoke on A, poll B (warm cache) until 401.
        let (mut a, mut b) = (connect(("127.0.0.1", replicas[0].0)).await?, connect(("127.0.0.1", replicas[1].0)).await?);
        let mut lat = Vec::new();
        for _ in 0..rounds {
            let login = r#"{"username":"prop","password":"demo"}"#;
            let (_, body) = call(&mut a, "POST", "/v1/auth/login", None, login).await?;
            let (access, sid) = (field(&body, "access_token")?, field(&body, "session_id")?);
            let (warm, _) = call(&mut b, "GET", "/api/x", Some(&access), "").await?;
            anyhow::ensure!(warm != 401 && warm != 503, "warm-up answered {warm}");
            let path = format!("/v1/auth/sessions/{sid}");
            let (del, _) = call(&mut a, "DELETE", &path, Some(&access), "").await?;
            anyhow::ensure!(del == 204, "revoke answered {del}");
            // Clocked from A's answer: the revocation is done there.
            let t = Instant::now();
            loop {
                let (status, _) = call(&mut b, "GET", "/api/x", Some(&access), "").await?;
                if status == 401 {
                    break;
                }
                anyhow::ensure!(t.elapsed() < Duration::from_secs(5), "never revoked on B");
            }
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "redis revocation propagation A -> B over {rounds} rounds: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        );
        Ok::<_, anyhow::Error>(())
    })?;
    drop(procs);
    Ok(())
}
