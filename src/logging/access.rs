//! The access log: one line per request, the only log line on the hot path.
//!
//! In JSON mode the line is written straight into the shared log buffer, in
//! the same shape `tracing`'s JSON formatter gives every other line
//! (`timestamp`, `level`, the fields, `target`), without its per-field
//! visitor, `serde_json` and timestamp machinery: that machinery was about a
//! tenth of the proxy's user CPU time (see BENCHMARKS.md). Text mode and
//! processes that did not install the logger go through `tracing`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one access-log line says.
pub struct AccessRecord<'a> {
    pub method: &'a str,
    /// As the client sent it (hostile: escaped on output).
    pub path: &'a str,
    /// 0 when no answer was written (the client went away).
    pub status: u16,
    pub route: &'a str,
    pub duration_ms: f64,
    pub client_ip: IpAddr,
    pub request_id: &'a str,
    pub user_id: Option<&'a str>,
}

/// Logs one request, if `RUST_LOG` lets `access` lines through.
pub fn access(r: &AccessRecord<'_>) {
    if !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return;
    }
    match super::json_out() {
        Some(out) => {
            thread_local! {
                static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
            }
            LINE.with(|line| {
                let mut line = line.borrow_mut();
                line.clear();
                write_json(&mut line, SystemTime::now(), r);
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                let _ = out.write_all(line.as_bytes());
            });
        }
        None => tracing::info!(
            target: "access",
            method = r.method,
            path = r.path,
            status = r.status,
            route = r.route,
            duration_ms = r.duration_ms,
            client_ip = %r.client_ip,
            request_id = r.request_id,
            user_id = r.user_id,
        ),
    }
}

fn write_json(line: &mut String, now: SystemTime, r: &AccessRecord<'_>) {
    line.push_str("{\"timestamp\":\"");
    write_timestamp(line, now);
    line.push_str("\",\"level\":\"INFO\",\"method\":");
    write_str(line, r.method);
    line.push_str(",\"path\":");
    write_str(line, r.path);
    let _ = write!(line, ",\"status\":{},\"route\":", r.status);
    write_str(line, r.route);
    let duration = if r.duration_ms.is_finite() {
        r.duration_ms
    } else {
        0.0
    };
    let _ = write!(
        line,
        ",\"duration_ms\":{duration:.3},\"client_ip\":\"{}\",\"request_id\":",
        r.client_ip
    );
    write_str(line, r.request_id);
    if let Some(user) = r.user_id {
        line.push_str(",\"user_id\":");
        write_str(line, user);
    }
    line.push_str(",\"target\":\"access\"}\n");
}

/// `2026-11-27T20:44:53.996379Z` (UTC, microseconds), like `tracing`'s lines.
fn write_timestamp(line: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let _ = write!(
        line,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_micros()
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn write_str(line: &mut String, s: &str) {
    line.push('"');
    let mut rest = s;
    while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        line.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        match c {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            _ => {
                let _ = write!(line, "\\u{c:04x}");
            }
        }
        rest = &rest[i + 1..];
    }
    line.push_str(rest);
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record<'a>(path: &'a str, user: Option<&'a str>) -> AccessRecord<'a> {
        AccessRecord {
            method: "GET",
            path,
            status: 200,
            route: "proxy",
            duration_ms: 1.23456,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            request_id: "abc",
            user_id: user,
        }
    }

    #[test]
    fn lines_are_json_with_every_field() {
        let mut line = String::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        write_json(&mut line, at, &record("/api/x", Some("user-1")));
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/api/x");
        assert_eq!(v["status"], 200);
        assert_eq!(v["route"], "proxy");
        assert_eq!(v["duration_ms"], 1.235);
        assert_eq!(v["client_ip"], "127.0.0.1");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v["user_id"], "user-1");
        assert_eq!(v["target"], "access");

        line.clear();
        write_json(&mut line, at, &record("/", None));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("user_id").is_none());
    }

    #[test]
    fn hostile_strings_cannot_break_out_of_the_line() {
        let hostile = "/a\"b\\c\nd\re\tf\u{1}g\u{7f}h\u{e9}";
        let mut line = String::new();
        write_json(
            &mut line,
            UNIX_EPOCH,
            &record(hostile, Some("\"},{\"x\":1")),
        );
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], hostile);
        assert_eq!(v["user_id"], "\"},{\"x\":1");
        assert!(v.get("x").is_none());
    }

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_784), (2026, 11, 27));
        // Against the `time` crate over four centuries, leap years included.
        for days in (-146_097..146_097).step_by(37) {
            let d = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(days);
            assert_eq!(
                civil_from_days(days),
                (
                    i64::from(d.year()),
                    u8::from(d.month()) as u32,
                    u32::from(d.day())
                ),
                "{days}"
            );
        }
    }

    #[test]
    fn a_nan_duration_still_gives_valid_json() {
        let mut r = record("/", None);
        r.duration_ms = f64::NAN;
        let mut line = String::new();
        write_json(&mut line, UNIX_EPOCH, &r);
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
    }
}
