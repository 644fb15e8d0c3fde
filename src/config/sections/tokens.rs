//! Section `tokens`: claims, lifetimes and the signing keys.

use std::path::Path;

use secrecy::SecretString;
use serde_json::Value;

use super::{resolve, valid_kid, KeyMaterial, KeySpec, TokensConfig, MAX_COUNT, SECS};
use crate::config::reader::{Node, Problems};
use crate::names::Alg;

pub(super) fn read_tokens(root: &Node, base: &Path, p: &mut Problems) -> TokensConfig {
    let n = root.child(
        "tokens",
        &[
            "issuer",
            "audience",
            "access_ttl",
            "leeway",
            "keys",
            "verified_cache_entries",
        ],
        p,
    );
    let mut keys: Vec<KeySpec> = Vec::new();
    match n.list("keys", p) {
        None => p.add(&n.key_path("keys"), "is required: at least one signing key"),
        Some(items) if items.is_empty() => {
            p.add(&n.key_path("keys"), "is required: at least one signing key")
        }
        Some(items) => {
            for (path, v) in items {
                if let Some(k) = read_key(v, path, base, p) {
                    if keys.iter().any(|o| o.kid == k.kid) {
                        p.add(
                            &n.key_path("keys"),
                            format_args!("kid `{}` is used twice", k.kid),
                        );
                    }
                    keys.push(k);
                }
            }
        }
    }
    let access_ttl = n.duration("access_ttl", SECS(900), p);
    if access_ttl < SECS(1) || access_ttl > SECS(86_400) {
        p.add(&n.key_path("access_ttl"), "must be from 1s to 24h");
    }
    let leeway = n.duration("leeway", SECS(30), p);
    if leeway > SECS(600) {
        p.add(&n.key_path("leeway"), "must be at most 10m");
    }
    let issuer = n.string("issuer", "sessiongate", p);
    let audience = n.string("audience", "upstream", p);
    for (key, v) in [("issuer", &issuer), ("audience", &audience)] {
        if v.is_empty() {
            p.add(&n.key_path(key), "must not be empty");
        }
    }
    TokensConfig {
        issuer,
        audience,
        access_ttl,
        leeway,
        keys,
        verified_cache_entries: n.number("verified_cache_entries", 100_000, (0, MAX_COUNT), p),
    }
}

pub(super) fn read_key(v: &Value, path: String, base: &Path, p: &mut Problems) -> Option<KeySpec> {
    let n = Node::open(
        Some(v),
        path,
        &["kid", "alg", "private_key_file", "secret"],
        p,
    );
    let kid = n.opt_string("kid", p);
    let alg = n.opt_string("alg", p);
    let kid = match kid {
        Some(k) if valid_kid(&k) => k,
        Some(_) => {
            p.add(
                &n.key_path("kid"),
                "must be 1-64 characters of A-Z a-z 0-9 . _ -",
            );
            return None;
        }
        None => {
            p.add(&n.key_path("kid"), "is required");
            return None;
        }
    };
    let alg = match alg.as_deref().map(Alg::from_name) {
        Some(Some(a)) => a,
        Some(None) => {
            p.add(
                &n.key_path("alg"),
                "must be one of EdDSA, ES256, RS256, HS256",
            );
            return None;
        }
        None => {
            p.add(
                &n.key_path("alg"),
                "is required (EdDSA, ES256, RS256 or HS256)",
            );
            return None;
        }
    };
    let file = n.opt_string("private_key_file", p);
    let secret = n.opt_string("secret", p);
    let material = match (alg, file, secret) {
        (Alg::HS256, None, Some(secret)) => Ok((
            n.key_path("secret"),
            KeyMaterial::Secret(SecretString::from(secret)),
        )),
        (Alg::HS256, _, None) => Err((n.key_path("secret"), "is required for HS256".into())),
        (Alg::HS256, Some(_), Some(_)) => Err((
            n.key_path("private_key_file"),
            "HS256 takes `secret`, not a key file".into(),
        )),
        (_, _, Some(_)) => Err((
            n.key_path("secret"),
            format!("{} takes `private_key_file`, not a secret", alg.name()),
        )),
        (_, None, None) => Err((n.key_path("private_key_file"), "is required".into())),
        (_, Some(file), None) => {
            let path = resolve(base, &file);
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("example-"))
            {
                p.warn(
                    &n.key_path("private_key_file"),
                    "this is the example key committed to the sessiongate repository: anyone can sign tokens with it; generate your own with `sessiongate keygen`",
                );
            }
            match std::fs::read(&path) {
                Ok(pem) => Ok((
                    n.key_path("private_key_file"),
                    KeyMaterial::Pem {
                        file: path,
                        pem: pem.into(),
                    },
                )),
                Err(e) => Err((
                    n.key_path("private_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
    };
    let (material_key, material) = material.map_err(|(path, e)| p.add(&path, e)).ok()?;
    Some(KeySpec {
        kid,
        alg,
        material,
        material_key,
    })
}
