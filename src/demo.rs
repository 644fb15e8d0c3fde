//! `sessiongate demo`: sessiongate plus a small legacy-style upstream (hyper)
//! on loopback, with a temporary SQLite store and a fresh EdDSA key.

mod upstream;

use std::net::TcpListener;

use anyhow::Context;

pub use upstream::spawn as spawn_upstream;

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Creates `path` readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

pub fn run() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("sessiongate-demo-")
        .tempdir()?;
    let key =
        crate::auth::keys::generate(crate::auth::keys::Alg::EdDSA).map_err(anyhow::Error::msg)?;
    write_private(&dir.path().join("k1.pem"), key.as_bytes())?;
    let upstream_addr = upstream::spawn()?;
    let (port, admin) = (free_port()?, free_port()?);
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  shutdown_grace: 2s\n\
         upstream:\n  url: http://{upstream_addr}\n\
         tokens:\n  keys:\n    - {{kid: k1, alg: EdDSA, private_key_file: k1.pem}}\n\
         store:\n  sqlite:\n    path: demo.db\n\
         login: {{}}\n"
    );
    let path = dir.path().join("sessiongate.yaml");
    std::fs::write(&path, yaml)?;
    let config = crate::config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = crate::auth::keys::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = format!("http://127.0.0.1:{port}");
    println!(
        r#"
sessiongate demo: proxy on {base}, admin on http://127.0.0.1:{admin}, demo upstream on {upstream_addr}
store and key in {dir}. Ctrl-C stops.

Try it (needs curl and jq):

  # 1. log in (the demo upstream accepts any user with password "demo")
  TOKENS=$(curl -s -X POST {base}/v1/auth/login -H 'Content-Type: application/json' \
      -d '{{"username":"alice","password":"demo"}}')
  ACCESS=$(echo "$TOKENS" | jq -r .access_token); REFRESH=$(echo "$TOKENS" | jq -r .refresh_token)

  # 2. call the protected API: the upstream sees X-Auth-User-Id
  curl -s {base}/api/hello -H "Authorization: Bearer $ACCESS"
  curl -s -i {base}/api/hello                    # 401 missing_token

  # 3. rotate the refresh token
  TOKENS=$(curl -s -X POST {base}/v1/auth/refresh -d "{{\"refresh_token\":\"$REFRESH\"}}")
  ACCESS=$(echo "$TOKENS" | jq -r .access_token)

  # 4. list sessions, then sign out everywhere
  curl -s {base}/v1/auth/sessions -H "Authorization: Bearer $ACCESS"
  curl -s -X POST {base}/v1/auth/sessions/revoke-all -H "Authorization: Bearer $ACCESS"
  curl -s {base}/api/hello -H "Authorization: Bearer $ACCESS"   # 401 session_revoked

  # reusing the first refresh token is detected:
  curl -s -X POST {base}/v1/auth/refresh -d "{{\"refresh_token\":\"$REFRESH\"}}"

  curl -s http://127.0.0.1:{admin}/metrics | grep ^sessiongate_
"#,
        dir = dir.path().display()
    );
    // The store and key outlive the server: it returns once drained.
    let ran = crate::app::run(config, keys).context("running the demo");
    let path = dir.path().to_owned();
    if let Err(e) = dir.close() {
        eprintln!("sessiongate: could not remove {}: {e}", path.display());
    }
    ran
}
