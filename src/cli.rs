//! The command line (SPEC 1): `run`, `check`, `keygen`, `demo`; `--config`
//! alone means `run`. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::auth::keys::{self, Alg, TokenKey};
use crate::config::{self, Config, ConfigError, PathMatch, StoreConfig};
use crate::logging::redis_target;

mod sessions;

pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "sessiongate",
    version,
    about = "Reverse-proxy authentication sidecar"
)]
pub struct Cli {
    /// Config file (default: $SESSIONGATE_CONFIG, else config/sessiongate.yaml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the sidecar.
    Run,
    /// Validate the config and keys, print a summary, exit 0 (valid) or 2.
    Check,
    /// Print a new private key: PEM for EdDSA/ES256/RS256, a base64url secret for HS256.
    Keygen {
        #[arg(long, value_parser = ["EdDSA", "ES256", "RS256", "HS256"])]
        alg: String,
        /// Only echoed in a hint on stderr; the key file itself carries no kid.
        #[arg(long)]
        kid: Option<String>,
    },
    /// Run sessiongate and a demo upstream on loopback with a temporary store and key.
    Demo,
    /// List or revoke a user's sessions in the configured store.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Security events of any user in the configured store, newest first.
    Events(sessions::EventsArgs),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let config_path = cli.config.clone().unwrap_or_else(config::default_path);
    match cli.command.unwrap_or(Command::Run) {
        Command::Keygen { alg, kid } => keygen(&alg, kid.as_deref()),
        Command::Check => match load(&config_path) {
            Ok((c, _)) => {
                print!("{}", summary(&c));
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                0
            }
            Err(e) => {
                eprint!("sessiongate: {e}");
                EXIT_CONFIG
            }
        },
        Command::Run => {
            crate::logging::init();
            match load(&config_path) {
                Ok((c, keys)) => {
                    for w in &c.warnings {
                        tracing::warn!("config: {w}");
                    }
                    serve(c, keys)
                }
                Err(e) => {
                    eprint!("sessiongate: {e}");
                    tracing::error!(file = %e.file.display(), problems = ?e.problems, "invalid config");
                    EXIT_CONFIG
                }
            }
        }
        Command::Sessions(cmd) => sessions::run(&config_path, cmd),
        Command::Events(args) => sessions::events(&config_path, args),
        Command::Demo => {
            crate::logging::init();
            match crate::demo::run() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("sessiongate demo: {e:#}");
                    EXIT_RUNTIME
                }
            }
        }
    }
}

/// The config at `path` and the keys it names: a key that does not load is
/// a config problem (exit code 2) like any other.
fn load(path: &Path) -> Result<(Config, Vec<Arc<TokenKey>>), ConfigError> {
    let config = config::load(path)?;
    let keys = keys::load(&config)?;
    Ok((config, keys))
}

pub fn serve(c: Config, keys: Vec<Arc<TokenKey>>) -> i32 {
    match crate::app::run(c, keys) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sessiongate could not start");
            eprintln!("sessiongate: {e:#}");
            EXIT_RUNTIME
        }
    }
}

fn keygen(alg: &str, kid: Option<&str>) -> i32 {
    let Some(alg) = Alg::from_name(alg) else {
        eprintln!("sessiongate keygen: --alg must be EdDSA, ES256, RS256 or HS256");
        return EXIT_CONFIG;
    };
    if let Some(kid) = kid.filter(|k| !config::valid_kid(k)) {
        eprintln!(
            "sessiongate keygen: --kid {kid:?}: must be 1-64 characters of A-Z a-z 0-9 . _ -"
        );
        return EXIT_CONFIG;
    }
    match keys::generate(alg) {
        Ok(out) => {
            println!("{}", out.trim_end());
            if let Some(kid) = kid {
                let hint = if alg == Alg::HS256 {
                    "secret: ${...}"
                } else {
                    "private_key_file: <this file>"
                };
                eprintln!(
                    "# tokens.keys entry: {{kid: {kid}, alg: {}, {hint}}}",
                    alg.name()
                );
            }
            0
        }
        Err(e) => {
            eprintln!("sessiongate keygen: {e}");
            EXIT_RUNTIME
        }
    }
}

/// What `check` prints: the effective settings, secrets redacted.
pub fn summary(c: &Config) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "config OK: {}", c.file.display());
    let _ = writeln!(
        s,
        "listen:          {}{}",
        c.server.listen,
        if c.server.tls.is_some() { " (TLS)" } else { "" }
    );
    let _ = writeln!(s, "admin_listen:    {}", c.server.admin_listen);
    let _ = writeln!(s, "threads:         {}", c.server.threads);
    let _ = writeln!(
        s,
        "upstream:        {} (connect {:?}, request {:?})",
        c.upstream.url, c.upstream.connect_timeout, c.upstream.request_timeout
    );
    let _ = writeln!(
        s,
        "tokens:          issuer={} audience={} access_ttl={:?} leeway={:?}",
        c.tokens.issuer, c.tokens.audience, c.tokens.access_ttl, c.tokens.leeway
    );
    for (i, k) in c.tokens.keys.iter().enumerate() {
        let role = if i == 0 {
            "signs + verifies"
        } else {
            "verifies"
        };
        let material = if k.alg == Alg::HS256 {
            "secret [redacted]"
        } else {
            "private key [loaded]"
        };
        let _ = writeln!(
            s,
            "  key {}:        kid={} alg={} {material} ({role})",
            i,
            k.kid,
            k.alg.name()
        );
    }
    let _ = writeln!(
        s,
        "sessions:        idle={:?} absolute={:?} reuse_grace={:?} cookie={}",
        c.sessions.idle_timeout,
        c.sessions.absolute_lifetime,
        c.sessions.reuse_grace,
        c.sessions
            .refresh_cookie
            .as_ref()
            .map_or("off".to_string(), |k| k.name.clone())
    );
    match &c.store {
        StoreConfig::Sqlite { path } => {
            let _ = writeln!(s, "store:           sqlite {}", path.display());
        }
        StoreConfig::Redis(r) => {
            let _ = writeln!(
                s,
                "store:           redis {} prefix={}",
                redis_target(r),
                r.key_prefix
            );
        }
    }
    let _ = writeln!(
        s,
        "login:           {}",
        c.login.as_ref().map_or("disabled".to_string(), |l| format!(
            "{} -> upstream {}",
            l.path, l.upstream_path
        ))
    );
    let _ = writeln!(s, "routes:");
    for r in &c.routes {
        let (kind, p) = match &r.matcher {
            PathMatch::Prefix(p) => ("prefix", p),
            PathMatch::Exact(p) => ("exact", p),
        };
        let methods = r.methods.as_ref().map_or(String::new(), |m| {
            format!(
                " methods={}",
                m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
            )
        });
        let _ = writeln!(s, "  {kind} {p} -> auth {:?}{methods}", r.auth);
    }
    s
}
