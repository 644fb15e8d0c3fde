//! One real `sessiongate run` process with its own temp dir, config, key,
//! SQLite file, free ports and captured stdout/stderr; SIGTERM on drop.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::client::{Request, Response};
use super::yaml::{deep_merge, to_yaml};

pub const BIN: &str = env!("CARGO_BIN_EXE_sessiongate");
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A free TCP port on 127.0.0.1 (the listener is closed before it is used),
/// picked below the kernel's ephemeral range: tests stop a server and start
/// it again on its port, and a port from the ephemeral range can meanwhile
/// become the source port of some outgoing connection (or of a client
/// connecting to itself on it), which keeps the server from binding again.
pub fn free_port() -> u16 {
    const FLOOR: u16 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    // Never the same port twice in this process: tests run in parallel, and
    // a port is free again between being picked and being bound.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    if ephemeral_low > FLOOR + 1000 {
        let span = u64::from(ephemeral_low - FLOOR);
        for _ in 0..1000 {
            let port = FLOOR + (random_u64() % span) as u16;
            if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.push(port);
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Runs `sessiongate ARGS` to completion, with `SG_*` variables of the
/// shipped config removed from its environment.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SG_LISTEN")
        .env_remove("SG_UPSTREAM")
        .env_remove("SESSIONGATE_CONFIG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the sessiongate binary")
}

/// `sessiongate keygen --alg ALG --kid KID`: the printed key (PEM or secret).
pub fn keygen(alg: &str, kid: &str) -> String {
    let out = run_cli(&["keygen", "--alg", alg, "--kid", kid], &[]);
    assert!(
        out.status.success(),
        "keygen --alg {alg} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("keygen prints text")
}

/// A config written into a temp dir, not yet running.
pub struct SidecarConfig {
    pub dir: TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub config: Value,
    /// Environment for the process: `Some` sets a variable, `None` removes it.
    pub env: Vec<(&'static str, Option<String>)>,
}

impl SidecarConfig {
    /// The test config: an EdDSA key `k1` from `keygen`, SQLite in the temp
    /// dir, free ports, `shutdown_grace: 2s`, `login: {}`, a public prefix and
    /// very high rate limits; `overrides` deep-merged (`null` deletes a key).
    pub fn new(upstream_url: &str, overrides: Value) -> SidecarConfig {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-test-")
            .tempdir()
            .expect("temp dir");
        let pem = keygen("EdDSA", "k1");
        let key_file = dir.path().join("k1.pem");
        std::fs::write(&key_file, pem).expect("write the key");
        let port = free_port();
        // The OS may hand the same free port out twice in a row.
        let admin_port = std::iter::repeat_with(free_port)
            .find(|p| *p != port)
            .expect("a second free port");
        let mut config = json!({
            "server": {
                "listen": format!("127.0.0.1:{port}"),
                "admin_listen": format!("127.0.0.1:{admin_port}"),
                "shutdown_grace": "2s",
                "threads": 2,
            },
            "upstream": {"url": upstream_url, "connect_timeout": "2s", "request_timeout": "10s"},
            "tokens": {
                "keys": [{"kid": "k1", "alg": "EdDSA", "private_key_file": key_file.to_str().expect("utf-8 path")}],
            },
            "store": {"backend": "sqlite", "sqlite": {"path": dir.path().join("sessiongate.db").to_str().expect("utf-8 path")}},
            "login": {},
            "routes": [{"prefix": "/public/", "auth": "none"}, {"prefix": "/", "auth": "required"}],
            "rate_limits": {
                "login": {"per_minute": 600000, "burst": 100000},
                "refresh": {"per_minute": 600000, "burst": 100000},
            },
        });
        deep_merge(&mut config, overrides);
        SidecarConfig {
            dir,
            port,
            admin_port,
            config,
            env: Vec::new(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("sessiongate.yaml")
    }

    /// The PEM of the signing key `k1` written for this sidecar.
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("k1.pem")).expect("read k1.pem")
    }

    /// Writes a key file into the dir and returns its path (for extra keys).
    pub fn write_file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).expect("write a file");
        p.to_str().expect("utf-8 path").to_owned()
    }

    pub fn write(&self) -> PathBuf {
        let p = self.path();
        std::fs::write(&p, to_yaml(&self.config)).expect("write the config");
        p
    }

    pub fn spawn(self) -> Sidecar {
        let mut sc = Sidecar {
            cfg: self,
            child: None,
            exit_code: None,
        };
        sc.launch();
        sc
    }

    /// Starts the process without waiting for `/readyz` (for not-ready states).
    pub fn spawn_unready(self) -> Sidecar {
        let mut sc = Sidecar {
            cfg: self,
            child: None,
            exit_code: None,
        };
        sc.launch_only();
        sc
    }
}

pub struct Sidecar {
    pub cfg: SidecarConfig,
    child: Option<Child>,
    exit_code: Option<Option<i32>>,
}

impl Sidecar {
    pub fn start(upstream: &super::Upstream, overrides: Value) -> Sidecar {
        SidecarConfig::new(&upstream.url(), overrides).spawn()
    }

    pub fn port(&self) -> u16 {
        self.cfg.port
    }

    pub fn admin_port(&self) -> u16 {
        self.cfg.admin_port
    }

    pub fn dir(&self) -> &Path {
        self.cfg.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The process's resident memory in KiB (VmRSS of /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn launch(&mut self) {
        self.launch_only();
        self.wait_ready();
    }

    fn launch_only(&mut self) {
        let config = self.cfg.write();
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir().join("stdout.log"))
            .expect("stdout.log");
        let err = File::options()
            .create(true)
            .append(true)
            .open(self.dir().join("stderr.log"))
            .expect("stderr.log");
        let mut cmd = Command::new(BIN);
        cmd.env_remove("RUST_LOG")
            .env_remove("SESSIONGATE_LOG_FORMAT");
        for (name, value) in &self.cfg.env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        let child = cmd
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn sessiongate");
        self.child = Some(child);
        self.exit_code = None;
    }

    /// Waits (up to 20 s) for `/readyz` 200; panics with the logs otherwise.
    /// A start-up that fails because another process took one of the picked
    /// ports between `free_port` and the bind is retried on fresh ports.
    pub fn wait_ready(&mut self) {
        let mut deadline = Instant::now() + READY_TIMEOUT;
        let mut retries = 0;
        loop {
            if let Ok(r) = Request::get("/readyz").try_send(self.admin_port()) {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                if retries < 3 && self.lost_a_picked_port() {
                    retries += 1;
                    self.repick_ports();
                    self.launch_only();
                    deadline = Instant::now() + READY_TIMEOUT;
                    continue;
                }
                panic!(
                    "sessiongate exited during start-up with {status}\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sessiongate not ready within {READY_TIMEOUT:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `/readyz` (bounded by `timeout`) until it answers `status`; that answer.
    pub fn wait_readyz(&self, status: u16, timeout: Duration) -> Response {
        let deadline = Instant::now() + timeout;
        loop {
            let r = Request::get("/readyz").try_send(self.admin_port());
            match r {
                Ok(r) if r.status == status => return r,
                _ if Instant::now() >= deadline => {
                    panic!("/readyz never answered {status} in {timeout:?}: {r:?}")
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Sends SIGTERM (the `kill` command: no libc in tests).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM failed");
    }

    /// The exit code once the process ended within `timeout`; `None` if still
    /// running (`Some(None)`: ended by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        if let Some(code) = self.exit_code {
            return Some(code);
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.exit_code = Some(status.code());
                return self.exit_code;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait up to 10 s, else SIGKILL. The exit code (`None`: killed).
    /// Panics if the process panicked at any point (see [`Self::assert_no_panic`]).
    pub fn stop(&mut self) -> Option<i32> {
        self.child.as_ref()?;
        // Already gone (e.g. failed at start): nothing to signal.
        self.wait_exit(Duration::ZERO);
        if self.exit_code.is_none() {
            self.sigterm();
        }
        let code = match self.wait_exit(Duration::from_secs(10)) {
            Some(code) => code,
            None => {
                let child = self.child.as_mut().expect("child");
                let _ = child.kill();
                let _ = child.wait();
                self.exit_code = Some(None);
                None
            }
        };
        self.assert_no_panic();
        code
    }

    /// Stops with SIGTERM (expecting exit 0) and starts again on the same
    /// config and SQLite file, on fresh ports.
    pub fn restart(&mut self) {
        let code = self.stop();
        assert_eq!(
            code,
            Some(0),
            "sessiongate did not exit 0 on SIGTERM\n{}",
            self.logs()
        );
        self.repick_ports();
        self.launch();
    }

    /// Whether the last start-up failed to bind a port this harness picked
    /// (the config still listens on it), i.e. a port collision, not a bug.
    fn lost_a_picked_port(&self) -> bool {
        let picked = [self.cfg.port, self.cfg.admin_port].map(|p| format!("127.0.0.1:{p}"));
        let server = &self.cfg.config["server"];
        let ours =
            server["listen"] == picked[0].as_str() && server["admin_listen"] == picked[1].as_str();
        let err = std::fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default()
            + &self.stdout();
        ours && err.contains("cannot listen on") && err.contains("in use")
    }

    /// Fresh ports for both listeners (the config is rewritten at launch).
    fn repick_ports(&mut self) {
        self.cfg.port = free_port();
        self.cfg.admin_port = std::iter::repeat_with(free_port)
            .find(|p| *p != self.cfg.port)
            .expect("a second free port");
        self.cfg.config["server"]["listen"] = json!(format!("127.0.0.1:{}", self.cfg.port));
        self.cfg.config["server"]["admin_listen"] =
            json!(format!("127.0.0.1:{}", self.cfg.admin_port));
    }

    /// Panics if the process's stderr holds a panic message: a handler that
    /// panics must fail the test even when the client saw a plausible answer.
    /// Silent while the thread is already unwinding (no double panic).
    pub fn assert_no_panic(&self) {
        if std::thread::panicking() {
            return;
        }
        let err = std::fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default();
        let out = self.stdout();
        if err.contains("panicked at") || out.contains("panicked at") {
            panic!("sessiongate panicked\n{}", self.logs());
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir().join("stdout.log")).unwrap_or_default()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn logs(&self) -> String {
        let err = std::fs::read_to_string(self.dir().join("stderr.log")).unwrap_or_default();
        let out = self.stdout();
        let tail = |s: &str| s[s.len().saturating_sub(4000)..].to_owned();
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&out),
            tail(&err)
        )
    }

    // ---- HTTP helpers -------------------------------------------------------

    pub fn send(&self, req: Request) -> Response {
        req.send(self.port())
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        let req = Request::get(path);
        self.send(match token {
            Some(t) => req.bearer(t),
            None => req,
        })
    }

    pub fn admin_get(&self, path: &str) -> Response {
        Request::get(path).send(self.admin_port())
    }

    pub fn login_response(&self, user: &str, password: &str) -> Response {
        self.send(
            Request::post("/v1/auth/login").json(&json!({"username": user, "password": password})),
        )
    }

    /// Logs in (password `pw`), asserting 200; the token response.
    pub fn login(&self, user: &str) -> Value {
        let r = self.login_response(user, "pw");
        assert_eq!(r.status, 200, "login as {user}: {}", r.describe());
        r.json()
    }

    pub fn login_with_agent(&self, user: &str, agent: &str) -> Value {
        let r = self.send(
            Request::post("/v1/auth/login")
                .header("User-Agent", agent)
                .json(&json!({"username": user, "password": "pw"})),
        );
        assert_eq!(r.status, 200, "login as {user}: {}", r.describe());
        r.json()
    }

    /// Logs `user` in (password `pw`) as a client behind a proxy that
    /// reports `ip` in X-Forwarded-For, with User-Agent `agent`.
    pub fn login_from(&self, user: &str, ip: &str, agent: &str) -> Value {
        let r = self.send(
            Request::post("/v1/auth/login")
                .header("X-Forwarded-For", ip)
                .header("User-Agent", agent)
                .json(&json!({"username": user, "password": "pw"})),
        );
        assert_eq!(r.status, 200, "login as {user}: {}", r.describe());
        r.json()
    }

    pub fn refresh(&self, refresh_token: &str) -> Response {
        self.send(Request::post("/v1/auth/refresh").json(&json!({"refresh_token": refresh_token})))
    }

    /// Waits (up to 10 s) until the session of token response `tok` has
    /// gone idle: it drops out of its own listing, which reads without
    /// touching `last_active_at`. Instead of sleeping past `idle_timeout`.
    pub fn wait_session_idle(&self, tok: &Value) {
        let access = tok["access_token"].as_str().expect("an access token");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.send(Request::get("/v1/auth/sessions").bearer(access));
            assert_eq!(r.status, 200, "{}", r.describe());
            let listed = r.json()["sessions"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x["id"] == tok["session_id"]));
            if !listed {
                return;
            }
            assert!(Instant::now() < deadline, "the session never went idle");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn metrics(&self) -> String {
        let r = self.admin_get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.describe());
        r.text()
    }

    /// Sum of the samples of `name` whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        super::metrics::value(&self.metrics(), name, labels)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.exit_code.is_none() && self.child.is_some() {
            self.stop();
        } else if self.child.is_some() {
            self.assert_no_panic();
        }
    }
}
