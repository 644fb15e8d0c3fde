//! `sessiongate sessions list|revoke` (SPEC 1): an operator acts on the
//! configured store from `kubectl exec`, while `run` is running. A revocation
//! goes the way the operator API's does; running sidecars obey it within a
//! second (Redis: broadcast; SQLite: they read the store's recent
//! revocations twice a second).

use std::path::Path;
use std::sync::Arc;

use clap::Subcommand;

use super::{EXIT_CONFIG, EXIT_RUNTIME};
use crate::config::{self, Config};
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::revocation::RevocationList;
use crate::sessions::{valid_reason, Client, SessionView, Sessions};

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// A user's active sessions, newest first (a table; --json for scripts).
    List {
        #[arg(long)]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke every session of a user (--user, optional --reason), or one (--session).
    Revoke {
        #[arg(long, conflicts_with = "session", required_unless_present = "session")]
        user: Option<String>,
        /// 1-64 characters of a-z, 0-9 and _ (e.g. password_changed).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        session: Option<String>,
    },
}

/// Runs one `sessions` command; returns the exit code (SPEC 1: 0 done,
/// 1 store unreachable or `--session` unknown, 2 usage or config).
pub fn run(config_path: &Path, cmd: SessionsCommand) -> i32 {
    if let SessionsCommand::Revoke {
        reason: Some(r),
        user,
        ..
    } = &cmd
    {
        if user.is_none() {
            eprintln!("sessiongate sessions revoke: --reason goes with --user");
            return EXIT_CONFIG;
        }
        if !valid_reason(r) {
            eprintln!(
                "sessiongate sessions revoke: --reason must be 1-64 characters of a-z, 0-9 and _"
            );
            return EXIT_CONFIG;
        }
    }
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("sessiongate: {e}");
            return EXIT_CONFIG;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sessiongate: cannot start a runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    runtime.block_on(async {
        let sessions = match open(&config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sessiongate: {e:#}");
                return EXIT_RUNTIME;
            }
        };
        match execute(&sessions, cmd).await {
            Ok(()) => 0,
            Err(ApiError::NotFound) => {
                eprintln!("sessiongate: no such active session");
                EXIT_RUNTIME
            }
            Err(ApiError::StoreUnavailable) => {
                eprintln!("sessiongate: the session store is unreachable");
                EXIT_RUNTIME
            }
            Err(e) => {
                eprintln!("sessiongate: {}", e.message());
                EXIT_RUNTIME
            }
        }
    })
}

fn open(config: &Config) -> anyhow::Result<Sessions> {
    let (store, _) = crate::app::open_store(config, false)?;
    let lifetime = config.tokens.access_ttl + config.tokens.leeway;
    // This process serves no tokens: its own list only carries the writes.
    let revocations = Arc::new(RevocationList::new(1024, lifetime));
    Ok(Sessions::new(
        config,
        store,
        revocations,
        Arc::new(Metrics::new()),
    ))
}

async fn execute(sessions: &Sessions, cmd: SessionsCommand) -> Result<(), ApiError> {
    let me = Client {
        ip: "cli".into(),
        user_agent: format!("sessiongate-cli/{}", env!("CARGO_PKG_VERSION")),
    };
    match cmd {
        SessionsCommand::List { user, json } => {
            let mut all = Vec::new();
            let mut before = None;
            loop {
                let page = sessions.admin_list(&user, 200, before.as_deref()).await?;
                all.extend(page.sessions);
                match page.next {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
            if json {
                let out = serde_json::json!({ "sessions": all });
                println!("{out}");
            } else {
                print!("{}", table(&all));
            }
        }
        SessionsCommand::Revoke {
            user: Some(user),
            reason,
            ..
        } => {
            let n = sessions
                .admin_revoke_all(&user, reason.as_deref(), &me)
                .await?;
            println!("{n} sessions revoked");
        }
        SessionsCommand::Revoke {
            session: Some(id), ..
        } => {
            sessions.admin_revoke_one(&id, &me).await?;
            println!("session {id} revoked");
        }
        SessionsCommand::Revoke { .. } => unreachable!("clap requires --user or --session"),
    }
    Ok(())
}

/// A plain table, one session a row; control characters are already gone
/// from stored user agents.
fn table(rows: &[SessionView]) -> String {
    let mut out = format!(
        "{:<24} {:<24} {:<24} {:<24} {:<39} {}\n",
        "ID", "CREATED", "LAST ACTIVE", "EXPIRES", "IP", "USER AGENT"
    );
    for s in rows {
        out.push_str(&format!(
            "{:<24} {:<24} {:<24} {:<24} {:<39} {}\n",
            s.id, s.created_at, s.last_active_at, s.expires_at, s.ip, s.user_agent
        ));
    }
    out.push_str(&format!("{} active sessions\n", rows.len()));
    out
}
