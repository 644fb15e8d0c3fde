//! A real `redis-server` on a free port in a temp dir, no persistence;
//! killed on drop. `stop` + `start` restart it on the same port (outage tests);
//! `cluster` makes it a one-node Redis Cluster holding every slot, which is
//! enough to make Redis refuse any command whose keys span two slots.
//!
//! Also: `tls` (a `--tls-port` with a test CA, optionally requiring client
//! certificates), `Cluster3` (three masters joined by `redis-cli --cluster
//! create`, append-only so a killed node comes back with its data) and
//! `SentinelSet` (a master, a replica and three sentinels).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    options: Options,
    child: Option<Child>,
    extra_dirs: Vec<TempDir>,
}

/// How a server is started besides its port and dir.
#[derive(Clone, Default)]
pub struct Options {
    pub cluster: bool,
    /// Append-only file, fsync'd on every write: a killed server keeps its data.
    pub durable: bool,
    /// `(tls port, cert, key, ca, require client certificates)`.
    pub tls: Option<(u16, PathBuf, PathBuf, PathBuf, bool)>,
    /// Appended to the command line (e.g. `--replicaof`).
    pub args: Vec<String>,
    /// A config file, which redis-server wants as its first argument.
    pub conf: Option<PathBuf>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::launch(Options::default())
    }

    pub fn with(options: Options) -> RedisServer {
        Self::launch(options)
    }

    /// A server that also listens with TLS, its certificate signed by `ca`;
    /// with `client_auth`, a TLS client must present a certificate `ca` signed.
    /// The test certificates are written to the server's dir.
    pub fn tls(ca: &super::tls::TestCa, client_auth: bool) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-redis-tls-")
            .tempdir()
            .expect("temp dir");
        let cert = ca.server_cert();
        let (c, k, a) = (
            dir.path().join("server.crt"),
            dir.path().join("server.key"),
            dir.path().join("ca.crt"),
        );
        std::fs::write(&c, &cert.cert_pem).unwrap();
        std::fs::write(&k, &cert.key_pem).unwrap();
        std::fs::write(&a, &ca.pem).unwrap();
        let mut server = Self::launch(Options {
            tls: Some((super::free_port(), c, k, a, client_auth)),
            ..Options::default()
        });
        // Kept alive with the server: its files are read on every TLS handshake.
        server.extra_dirs.push(dir);
        server
    }

    /// `rediss://localhost:<tls port>/` (the certificate names localhost).
    pub fn tls_url(&self) -> String {
        let (port, ..) = self.options.tls.as_ref().expect("a TLS server");
        format!("rediss://localhost:{port}/")
    }

    /// A one-node cluster with all 16384 slots.
    pub fn cluster() -> RedisServer {
        let server = Self::launch(Options {
            cluster: true,
            ..Options::default()
        });
        assert!(server
            .command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
            .starts_with("+OK"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server
            .command(&["CLUSTER", "INFO"])
            .contains("cluster_state:ok")
        {
            assert!(
                Instant::now() < deadline,
                "the one-node cluster did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn launch(options: Options) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-redis-")
            .tempdir()
            .expect("temp dir");
        let mut server = RedisServer {
            port: 0,
            dir,
            options,
            child: None,
            extra_dirs: Vec::new(),
        };
        // A port taken between picking and binding: try another.
        for _ in 0..5 {
            server.port = super::free_port();
            if server.try_start() {
                return server;
            }
        }
        panic!("redis-server did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn try_start(&mut self) -> bool {
        let mut cmd = Command::new(BIN);
        if let Some(conf) = &self.options.conf {
            cmd.arg(conf);
        }
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            if self.options.durable { "yes" } else { "no" },
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.options.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]);
        }
        if let Some((port, cert, key, ca, auth)) = &self.options.tls {
            cmd.arg("--tls-port")
                .arg(port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .arg("--tls-auth-clients")
                .arg(if *auth { "yes" } else { "no" });
        }
        cmd.args(&self.options.args);
        let mut child = cmd.spawn().expect("spawn /usr/bin/redis-server");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self
                .try_command(&["PING"])
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                self.child = Some(child);
                return true;
            }
            if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (an outage); its data is gone (no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        // The port can stay busy for a moment after the kill.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.try_start() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come back on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One command over RESP; the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).expect("redis-server answers")
    }

    fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        conn.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 16384];
        let n = conn.read(&mut buf).ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `store.redis` config for these URLs (one = a server, more = a Cluster).
pub fn config(urls: Vec<String>, prefix: &str) -> sessiongate::config::RedisConfig {
    sessiongate::config::RedisConfig {
        nodes: sessiongate::config::RedisNodes::Servers(urls.into_iter().map(Into::into).collect()),
        key_prefix: prefix.into(),
        tls: None,
        password: None,
    }
}

/// Waits until `check` holds, or panics with `what` after `secs`.
fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three masters sharing the 16384 slots (no replicas), made by
/// `redis-cli --cluster create`; append-only, so a killed node restarted on
/// its port comes back with its slots and its data.
pub struct Cluster3 {
    pub nodes: Vec<RedisServer>,
}

impl Cluster3 {
    pub fn start() -> Cluster3 {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::with(Options {
                    cluster: true,
                    durable: true,
                    ..Options::default()
                })
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("/usr/bin/redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster3 { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Every node sees the cluster as whole (all slots served).
    pub fn wait_ok(&self) {
        wait_for(20, "the 3-node cluster did not come up", || {
            self.nodes.iter().all(|n| {
                n.try_command(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            })
        });
    }

    /// The seed URLs (`store.redis.url` as a list).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// One master, one replica and three sentinels watching it as `mymaster`,
/// all on loopback. A master that stops answering for 1 s is failed over.
pub struct SentinelSet {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

pub const MASTER_NAME: &str = "mymaster";

impl SentinelSet {
    pub fn start() -> SentinelSet {
        let master = RedisServer::start();
        let replica = RedisServer::with(Options {
            args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
            ..Options::default()
        });
        wait_for(10, "the replica did not sync", || {
            replica
                .try_command(&["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        });
        let sentinels = (0..3).map(|_| Self::sentinel(master.port)).collect();
        let set = SentinelSet {
            master,
            replica,
            sentinels,
        };
        wait_for(
            20,
            "the sentinels did not find each other and the replica",
            || {
                set.sentinels.iter().all(|s| {
                    s.try_command(&["SENTINEL", "MASTER", MASTER_NAME])
                        .is_some_and(|i| {
                            // RESP2: field and value are bulk strings.
                            i.contains("num-other-sentinels\r\n$1\r\n2")
                                && i.contains("num-slaves\r\n$1\r\n1")
                        })
                })
            },
        );
        set
    }

    fn sentinel(master_port: u16) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-sentinel-")
            .tempdir()
            .expect("temp dir");
        let mut server = RedisServer {
            port: 0,
            dir,
            options: Options::default(),
            child: None,
            extra_dirs: Vec::new(),
        };
        for _ in 0..5 {
            server.port = super::free_port();
            // Sentinel rewrites its config file: one per sentinel, in its dir.
            let conf = server.dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 4000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n"
                ),
            )
            .unwrap();
            server.options.conf = Some(conf);
            server.options.args = vec!["--sentinel".into()];
            if server.try_start() {
                return server;
            }
        }
        panic!("redis sentinel did not start");
    }

    /// `store.redis.sentinel.urls`.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> Option<u16> {
        let reply =
            self.sentinels[0].try_command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])?;
        reply.lines().filter_map(|l| l.parse().ok()).next_back()
    }

    /// Waits until the replica has every write the master acknowledged.
    pub fn wait_replicated(&self) {
        wait_for(10, "the replica did not catch up", || {
            let offset = |s: &RedisServer, key: &str| {
                s.try_command(&["INFO", "replication"]).and_then(|i| {
                    i.lines()
                        .find_map(|l| l.strip_prefix(key))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
            };
            let m = offset(&self.master, "master_repl_offset:");
            let r = offset(&self.replica, "slave_repl_offset:");
            m.is_some() && m == r
        });
    }
}
