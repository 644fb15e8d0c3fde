//! Section `admin`: the operator API's bearer token (SPEC 9).

use std::path::Path;

use secrecy::SecretString;

use super::{resolve, AdminConfig};
use crate::config::reader::{Node, Problems};

/// A shorter token could be guessed; SPEC 9 asks for at least 32 bytes.
const MIN_TOKEN_BYTES: usize = 32;

pub(super) fn read_admin(root: &Node, base: &Path, p: &mut Problems) -> AdminConfig {
    let n = root.child("admin", &["token_file", "token"], p);
    let file = n.opt_string("token_file", p);
    let inline = n.opt_string("token", p);
    let (key, token) = match (file, inline) {
        (None, None) => return AdminConfig { token: None },
        (Some(_), Some(_)) => {
            p.add(
                &n.key_path("token"),
                "set `token` or `token_file`, not both",
            );
            return AdminConfig { token: None };
        }
        (Some(file), None) => {
            let path = resolve(base, &file);
            match std::fs::read(&path) {
                Ok(bytes) => ("token_file", String::from_utf8(bytes).ok()),
                Err(e) => {
                    p.add(
                        &n.key_path("token_file"),
                        format_args!("cannot read {}: {e}", path.display()),
                    );
                    return AdminConfig { token: None };
                }
            }
        }
        (None, Some(token)) => ("token", Some(token)),
    };
    // Surrounding whitespace and the final newline of a file are not part of it.
    let token = token.map(|t| t.trim().to_owned());
    match token {
        Some(t) if t.len() >= MIN_TOKEN_BYTES && !t.bytes().any(|b| b.is_ascii_control()) => {
            AdminConfig {
                token: Some(SecretString::from(t)),
            }
        }
        _ => {
            p.add(
                &n.key_path(key),
                format_args!(
                    "the admin token must be at least {MIN_TOKEN_BYTES} bytes of text without control characters"
                ),
            );
            AdminConfig { token: None }
        }
    }
}
