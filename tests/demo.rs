//! `sessiongate demo` (SPEC 1), as the README's first command runs it: the
//! printed login works against the built-in upstream, Ctrl-C stops it with
//! exit 0, and its temporary key and store are gone afterwards.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// The demo process, killed (SIGKILL) if the test fails before it stops it.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn demo_serves_the_printed_flow_and_cleans_up_on_ctrl_c() {
    let child = Command::new(env!("CARGO_BIN_EXE_sessiongate"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sessiongate demo");
    let mut demo = Demo(child);
    let child = &mut demo.0;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut port, mut admin, mut dir) = (None, None, None);
    while port.is_none() || dir.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the demo prints where it listens");
        if let Some(rest) = line.strip_prefix("sessiongate demo: proxy on http://127.0.0.1:") {
            port = rest.split(',').next().and_then(|p| p.parse::<u16>().ok());
            admin = rest
                .split("admin on http://127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|p| p.parse::<u16>().ok());
        }
        if let Some(rest) = line.strip_prefix("store and key in ") {
            dir = rest
                .strip_suffix(". Ctrl-C stops.")
                .map(std::path::PathBuf::from);
        }
    }
    let (port, admin, dir) = (port.unwrap(), admin.expect("admin port"), dir.unwrap());
    let key = dir.join("k1.pem");
    assert!(key.exists(), "no key in {}", dir.display());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the demo key is readable by others");
    }
    // Ready, then the flow the demo prints.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while Request::get("/readyz").try_send(admin).map(|r| r.status) != Ok(200) {
        assert!(std::time::Instant::now() < deadline, "demo never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let login = Request::post("/v1/auth/login")
        .json(&json!({"username": "alice", "password": "demo"}))
        .send(port);
    assert_eq!(login.status, 200, "{}", login.describe());
    let access = s(&login.json(), "access_token");
    assert_eq!(Request::get("/api/hello").send(port).status, 401);
    let hello = Request::get("/api/hello").bearer(&access).send(port);
    assert_eq!(hello.status, 200, "{}", hello.describe());

    // Ctrl-C: exit 0, scratch directory removed.
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -INT failed");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!dir.exists(), "{} left behind", dir.display());
}
