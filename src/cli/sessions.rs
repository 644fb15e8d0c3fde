//! `sessiongate sessions list|revoke` (SPEC 1): an operator acts on the
//! configured store from `kubectl exec`, while `run` is running. A revocation
//! goes the way the operator API's does; running sidecars obey it within a
//! second (Redis: broadcast; SQLite: they read the store's recent
//! revocations twice a second).

use std::path::Path;
use std::sync::Arc;

use clap::Subcommand;

use super::{EXIT_CONFIG, EXIT_RUNTIME};
use crate::auth::keys::TokenKey;
use crate::config::Config;
use crate::errors::ApiError;
use crate::metrics::Metrics;
use crate::revocation::RevocationList;
use crate::sessions::{valid_reason, AuditEventView, Client, EventFilter, SessionView, Sessions};

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// A user's active sessions, newest first (a table; --json for scripts).
    List {
        // Ids may start with `-` (base64url): still a value, not a flag.
        #[arg(long, allow_hyphen_values = true)]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke every session of a user (--user, optional --reason), or one (--session).
    Revoke {
        #[arg(
            long,
            allow_hyphen_values = true,
            conflicts_with = "session",
            required_unless_present = "session"
        )]
        user: Option<String>,
        /// 1-64 characters of a-z, 0-9 and _ (e.g. password_changed).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
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
    with_sessions(config_path, |sessions| async move {
        execute(&sessions, cmd).await
    })
}

/// `sessiongate events` (SPEC 1): security events of any user, newest first.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Only this user's events.
    #[arg(long, allow_hyphen_values = true)]
    user: Option<String>,
    /// Only events of this type (login, new_ip, new_device, refresh_token_reuse,
    /// session_revoked, revoke_all, upstream_revoke).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Only events at or after this RFC 3339 time (e.g. 2026-12-01T08:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// At most this many events (1-10000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

/// The most events one `sessiongate events` prints.
const MAX_EVENTS: usize = 10_000;

pub fn events(config_path: &Path, args: EventsArgs) -> i32 {
    let usage = |why: &str| {
        eprintln!("sessiongate events: {why}");
        EXIT_CONFIG
    };
    let kind = match args.kind.as_deref().map(EventFilter::parse_kind) {
        Some(None) => return usage("--type must be one of the event types (see --help)"),
        Some(k) => k,
        None => None,
    };
    let since = match args.since.as_deref().map(EventFilter::parse_since) {
        Some(None) => return usage("--since must be an RFC 3339 time, e.g. 2026-12-01T08:00:00Z"),
        Some(s) => s,
        None => None,
    };
    if !(1..=MAX_EVENTS).contains(&args.limit) {
        return usage("--limit must be from 1 to 10000");
    }
    let filter = EventFilter {
        user_id: args.user,
        kind,
        since,
    };
    let (limit, json) = (args.limit, args.json);
    with_sessions(config_path, |sessions| async move {
        let mut all: Vec<AuditEventView> = Vec::new();
        let mut before = None;
        while all.len() < limit {
            let page = sessions
                .audit_events(&filter, (limit - all.len()).min(200), before.as_deref())
                .await?;
            all.extend(page.events);
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        if json {
            println!("{}", serde_json::json!({ "events": all }));
        } else {
            print!("{}", events_table(&all));
        }
        Ok(())
    })
}

/// Loads the config, opens its store and runs `work` on a runtime of its
/// own; the exit code (SPEC 1: 0 done, 1 store unreachable or not found, 2 config).
fn with_sessions<F, Fut>(config_path: &Path, work: F) -> i32
where
    F: FnOnce(Sessions) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    let (config, keys) = match super::load(config_path) {
        Ok(loaded) => loaded,
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
        let sessions = match open(&config, &keys) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sessiongate: {e:#}");
                return EXIT_RUNTIME;
            }
        };
        match work(sessions).await {
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

fn open(config: &Config, keys: &[Arc<TokenKey>]) -> anyhow::Result<Sessions> {
    let (store, _) = crate::app::open_store(config, false)?;
    let lifetime = config.tokens.access_ttl + config.tokens.leeway;
    // This process serves no tokens: its own list only carries the writes.
    let revocations = Arc::new(RevocationList::new(1024, lifetime));
    Ok(Sessions::new(
        config,
        keys,
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

/// A plain table, one event a row, newest first.
fn events_table(rows: &[AuditEventView]) -> String {
    let mut out = format!(
        "{:<24} {:<20} {:<24} {:<24} {:<39} {:<16} {}\n",
        "AT", "TYPE", "USER", "SESSION", "IP", "BY/SCOPE", "USER AGENT"
    );
    for e in rows {
        let detail = match (e.by, e.scope, e.reason.as_deref()) {
            (Some(by), Some(scope), _) => format!("{by}/{scope}"),
            (Some(by), None, Some(reason)) => format!("{by}:{reason}"),
            (Some(by), None, None) => by.to_owned(),
            (None, _, _) => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<24} {:<20} {:<24} {:<24} {:<39} {:<16} {}\n",
            e.at, e.kind, e.user_id, e.session_id, e.ip, detail, e.user_agent
        ));
    }
    out.push_str(&format!("{} events\n", rows.len()));
    out
}
