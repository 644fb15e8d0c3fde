//! Logs: `tracing` to stdout, JSON when stdout is not a terminal or
//! `SESSIONGATE_LOG_FORMAT=json`, human text otherwise; level from `RUST_LOG`.
//!
//! Lines go into a 64 KiB buffer that a background thread flushes every
//! 100 ms (and that flushes itself when full), so a request pays for
//! formatting its access-log line, not for a write syscall or a thread
//! wake-up. [`flush`] writes out the rest and must run before the process
//! exits; a crash can lose at most the last 100 ms of lines.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

mod access;
pub use access::{access, AccessRecord};

const DEFAULT_FILTER: &str = "info";
const BUFFER_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

static OUT: OnceLock<Arc<Mutex<BufWriter<Stdout>>>> = OnceLock::new();
/// Set when the installed logger writes JSON lines to [`OUT`]: the access log
/// then writes its lines there itself.
static JSON_OUT: OnceLock<Arc<Mutex<BufWriter<Stdout>>>> = OnceLock::new();

fn json_out() -> Option<&'static Mutex<BufWriter<Stdout>>> {
    JSON_OUT.get().map(|out| &**out)
}

/// Hands the formatter a locked view of the shared buffer.
#[derive(Clone)]
struct Buffered(Arc<Mutex<BufWriter<Stdout>>>);

struct Locked<'a>(MutexGuard<'a, BufWriter<Stdout>>);

impl Write for Locked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // The background thread flushes; a line does not.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffered {
    type Writer = Locked<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Locked(self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = std::io::stdout().is_terminal();
    let json = match std::env::var("SESSIONGATE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !terminal,
    };
    let out = OUT
        .get_or_init(|| {
            Arc::new(Mutex::new(BufWriter::with_capacity(
                BUFFER_BYTES,
                std::io::stdout(),
            )))
        })
        .clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Buffered(out.clone()))
        .with_ansi(!json && terminal)
        .with_target(true);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() {
        if json {
            let _ = JSON_OUT.set(out.clone());
        }
        let _ = std::thread::Builder::new()
            .name("sessiongate-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let _ = out.lock().unwrap_or_else(|p| p.into_inner()).flush();
            });
    }
}

/// Writes out every buffered line. Call before `std::process::exit`.
pub fn flush() {
    if let Some(out) = OUT.get() {
        let _ = out.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
}

/// Where a Redis store is, for a log line or `check-config`: URLs redacted,
/// the password and certificates only named.
pub fn redis_target(r: &crate::config::RedisConfig) -> String {
    use secrecy::ExposeSecret;
    let urls = |urls: &[secrecy::SecretString]| {
        urls.iter()
            .map(|u| redact_url(u.expose_secret()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = match &r.nodes {
        crate::config::RedisNodes::Servers(u) if u.len() > 1 => format!("cluster {}", urls(u)),
        crate::config::RedisNodes::Servers(u) => urls(u),
        crate::config::RedisNodes::Sentinel {
            master_name,
            urls: u,
        } => {
            format!("sentinel master {master_name} via {}", urls(u))
        }
    };
    if r.password.is_some() {
        out.push_str(" password=[redacted]");
    }
    if let Some(t) = &r.tls {
        out.push_str(if t.client.is_some() {
            " tls=mutual"
        } else {
            " tls"
        });
    }
    out
}

/// `redis://user:pw@host` -> `redis://user:[redacted]@host`; query values
/// whose name looks like a credential (`?password=`) are redacted too.
pub fn redact_url(url: &str) -> String {
    // The userinfo ends at the last `@` (a password may hold `?`, `/` or `@`
    // once `${VAR}` is substituted); the query starts after it.
    let (mut out, rest) = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            (
                format!("{}{user}:[redacted]@", &url[..scheme_end + 3]),
                &url[at + 1..],
            )
        }
        _ => (String::new(), url),
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    out.push_str(base);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_credential_name(name) => format!("{name}=[redacted]"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "auth", "key"]
        .iter()
        .any(|w| name.contains(w))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            super::redact_url("redis://:s3cret@db:6379/0"),
            "redis://:[redacted]@db:6379/0"
        );
        assert_eq!(
            super::redact_url("rediss://u:p@h"),
            "rediss://u:[redacted]@h"
        );
        assert_eq!(super::redact_url("redis://db:6379"), "redis://db:6379");
        assert_eq!(
            super::redact_url("redis://db:6379/0?password=s3cret&protocol=resp3"),
            "redis://db:6379/0?password=[redacted]&protocol=resp3"
        );
        assert_eq!(
            super::redact_url("redis://:a@db/0?Auth_Token=x"),
            "redis://:[redacted]@db/0?Auth_Token=[redacted]"
        );
        // Raw `?`, `/`, `@` in a substituted password never leak.
        for pw in ["pa?ss", "a/b?c=d", "x@y?password=1"] {
            let out = super::redact_url(&format!("redis://:{pw}@redis:6379/0"));
            assert_eq!(out, "redis://:[redacted]@redis:6379/0", "{pw}");
        }
    }
}
