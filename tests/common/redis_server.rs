//! A real `redis-server` on a free port in a temp dir, no persistence;
//! killed on drop. `stop` + `start` restart it on the same port (outage tests);
//! `cluster` makes it a one-node Redis Cluster holding every slot, which is
//! enough to make Redis refuse any command whose keys span two slots.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const BIN: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    cluster: bool,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::launch(false)
    }

    /// A one-node cluster with all 16384 slots.
    pub fn cluster() -> RedisServer {
        let server = Self::launch(true);
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

    fn launch(cluster: bool) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-redis-")
            .tempdir()
            .expect("temp dir");
        let mut server = RedisServer {
            port: 0,
            dir,
            cluster,
            child: None,
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
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
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
