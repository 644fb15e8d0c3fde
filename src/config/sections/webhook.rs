//! Section `security_events.webhook`: where and how events are POSTed (SPEC 11).

use std::time::Duration;

use secrecy::SecretString;

use super::{WebhookConfig, SECS};
use crate::config::reader::{Node, Problems};

/// A shorter HMAC key could be guessed; SPEC 2 asks for at least 32 bytes.
const MIN_SECRET_BYTES: usize = 32;
const MAX_QUEUE: u64 = 1_000_000;

pub(super) fn read_webhook(events: &Node, p: &mut Problems) -> Option<WebhookConfig> {
    let n = events.child(
        "webhook",
        &["url", "secret", "types", "timeout", "queue"],
        p,
    );
    let Some(url) = n.opt_string("url", p) else {
        if n.has("secret") || n.has("types") {
            p.warn(&n.key_path("url"), "is not set: no event is sent");
        }
        return None;
    };
    // The URL may carry a token in its query: never echo it.
    let url = match url.parse::<http::Uri>() {
        Ok(u)
            if matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some_and(|h| !h.is_empty())
                && !u.authority().is_some_and(|a| a.as_str().contains('@')) =>
        {
            Some(u)
        }
        _ => {
            p.add(
                &n.key_path("url"),
                "must be an http:// or https:// URL with a host and no credentials",
            );
            None
        }
    };
    let secret = match n.opt_string("secret", p) {
        Some(s) if s.len() >= MIN_SECRET_BYTES => Some(SecretString::from(s)),
        Some(_) => {
            p.add(
                &n.key_path("secret"),
                format_args!("must be at least {MIN_SECRET_BYTES} bytes"),
            );
            None
        }
        None => {
            p.add(&n.key_path("secret"), "is required with a url");
            None
        }
    };
    let types = read_types(&n, p);
    let timeout = n.duration("timeout", SECS(5), p);
    if timeout < Duration::from_millis(100) {
        p.add(&n.key_path("timeout"), "must be at least 100ms");
    }
    let queue = n.number("queue", 10_000, (1, MAX_QUEUE), p) as usize;
    Some(WebhookConfig {
        url: url?,
        secret: secret?,
        types,
        timeout,
        queue,
    })
}

/// `types`: known event types; by default every type but `login`.
fn read_types(n: &Node, p: &mut Problems) -> Vec<&'static str> {
    let kinds = crate::names::event::KINDS;
    let Some(list) = n.string_list("types", p) else {
        return kinds
            .iter()
            .copied()
            .filter(|k| *k != crate::names::event::LOGIN)
            .collect();
    };
    if list.is_empty() {
        p.add(
            &n.key_path("types"),
            "names no event type (leave the webhook out instead)",
        );
    }
    let mut types = Vec::new();
    for (path, t) in list {
        match kinds.iter().find(|k| **k == t) {
            Some(k) if !types.contains(k) => types.push(*k),
            Some(_) => {}
            None => p.add(
                &path,
                format_args!("`{t}`: expected one of {}", kinds.join(", ")),
            ),
        }
    }
    types
}
