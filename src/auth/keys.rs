//! Token keys: building them from the config's key specs (PEM files and
//! HS256 secrets), generating new keys (`keygen`), and the public JWKS. The
//! algorithm of a key is fixed by the config and never taken from a token.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretBox};
use serde_json::json;
use std::sync::Arc;

use crate::config::{Config, ConfigError, KeyMaterial, KeySpec};
pub use crate::names::Alg;

/// One configured key. Private material lives only in `signing` and `refresh_mac_key`.
pub struct TokenKey {
    pub kid: String,
    pub alg: Alg,
    signing: SigningKey,
    pub decoding: DecodingKey,
    /// The public JWK, `None` for HS256 (never published).
    pub jwk: Option<serde_json::Value>,
    /// Key for refresh-token MACs, derived from this key's private material.
    refresh_mac_key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

const MIN_HS256_SECRET: usize = 32;
const MIN_RSA_BYTES: usize = 256;
const MAX_RSA_BYTES: usize = 1024;
/// The longest signature a key makes: an RSA signature of `MAX_RSA_BYTES`.
pub const MAX_SIGNATURE: usize = MAX_RSA_BYTES;

impl TokenKey {
    /// HS256: the secret string's bytes are the key (SPEC 2), at least 32 of them.
    pub fn from_secret(kid: &str, secret: &[u8]) -> Result<TokenKey, String> {
        if secret.len() < MIN_HS256_SECRET {
            return Err(format!(
                "an HS256 secret needs at least {MIN_HS256_SECRET} bytes (this one has {})",
                secret.len()
            ));
        }
        Ok(TokenKey {
            kid: kid.to_owned(),
            alg: Alg::HS256,
            signing: SigningKey::Hs256(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
            decoding: DecodingKey::from_secret(secret),
            jwk: None,
            refresh_mac_key: derive_mac_key(secret, kid),
        })
    }

    /// EdDSA / ES256 / RS256 from a PEM private key: PKCS#8, or SEC1 (EC) / PKCS#1 (RSA).
    pub fn from_pem(kid: &str, alg: Alg, pem_bytes: &[u8]) -> Result<TokenKey, String> {
        let block = pem::parse(pem_bytes).map_err(|_| "not a PEM file".to_string())?;
        let der = block.contents();
        let tag = block.tag();
        let base = |signing, decoding, jwk: serde_json::Value| TokenKey {
            kid: kid.to_owned(),
            alg,
            signing,
            decoding,
            jwk: Some(with_meta(jwk, kid, alg)),
            refresh_mac_key: derive_mac_key(der, kid),
        };
        match (alg, tag) {
            (Alg::EdDSA, "PRIVATE KEY") => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| rejected("an Ed25519 PKCS#8", e))?;
                let x = B64.encode(pair.public_key().as_ref());
                let decoding = DecodingKey::from_ed_components(&x).map_err(|e| e.to_string())?;
                Ok(base(
                    SigningKey::Ed25519(pair),
                    decoding,
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                ))
            }
            (Alg::ES256, "PRIVATE KEY" | "EC PRIVATE KEY") => {
                let pair = EcdsaKeyPair::from_private_key_der(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                )
                .map_err(|e| rejected("a P-256 (ES256)", e))?;
                let point = pair.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err("unexpected P-256 public key encoding".into());
                }
                let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..]));
                let decoding =
                    DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
                Ok(base(
                    SigningKey::Es256(pair),
                    decoding,
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                ))
            }
            (Alg::RS256, "PRIVATE KEY" | "RSA PRIVATE KEY") => {
                let pair = if tag == "PRIVATE KEY" {
                    aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
                } else {
                    aws_lc_rs::rsa::KeyPair::from_der(der)
                }
                .map_err(|e| rejected("an RSA", e))?;
                if pair.public_modulus_len() < MIN_RSA_BYTES {
                    return Err("RSA keys must have at least 2048 bits".into());
                }
                if pair.public_modulus_len() > MAX_RSA_BYTES {
                    return Err("RSA keys must have at most 8192 bits".into());
                }
                let public = pair.public_key();
                let n = public.modulus().big_endian_without_leading_zero();
                let e = public.exponent().big_endian_without_leading_zero();
                let decoding = DecodingKey::from_rsa_raw_components(n, e);
                let jwk = json!({"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)});
                Ok(base(SigningKey::Rs256(pair), decoding, jwk))
            }
            (_, tag) => Err(format!(
                "a `{tag}` PEM block does not hold a {} private key",
                alg.name()
            )),
        }
    }

    pub fn refresh_mac_key(&self) -> &[u8; 32] {
        self.refresh_mac_key.expose_secret()
    }

    /// How many bytes `sign` writes.
    pub fn signature_len(&self) -> usize {
        match &self.signing {
            SigningKey::Hs256(_) => 32,
            SigningKey::Ed25519(_) | SigningKey::Es256(_) => 64,
            SigningKey::Rs256(pair) => pair.public_modulus_len(),
        }
    }

    /// The JWS signature of `input` (`header.claims`) by this key's
    /// algorithm, written to the start of `out`; returns its length.
    pub fn sign(&self, input: &[u8], out: &mut [u8; MAX_SIGNATURE]) -> Result<usize, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut copy = |sig: &[u8]| {
            out[..sig.len()].copy_from_slice(sig);
            sig.len()
        };
        Ok(match &self.signing {
            SigningKey::Hs256(key) => copy(hmac::sign(key, input).as_ref()),
            SigningKey::Ed25519(pair) => copy(pair.sign(input).as_ref()),
            SigningKey::Es256(pair) => {
                let sig = pair.sign(&rng, input).map_err(|_| "ECDSA signing failed")?;
                copy(sig.as_ref())
            }
            SigningKey::Rs256(pair) => {
                // At most MAX_SIGNATURE bytes: `from_pem` refuses larger keys.
                let sig = &mut out[..pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input, sig)
                    .map_err(|_| "RSA signing failed")?;
                sig.len()
            }
        })
    }
}

/// The parsed private key, kept from startup: building it per token (what
/// `jsonwebtoken::encode` does from DER) re-derives the public key each
/// time, which cost as much as the signature itself.
enum SigningKey {
    Hs256(Box<hmac::Key>),
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
    Rs256(aws_lc_rs::rsa::KeyPair),
}

/// The keys of `tokens.keys`, in order (the first signs). A key that does not
/// parse is a problem of the config at its key path, as a missing file is.
pub fn load(config: &Config) -> Result<Vec<Arc<TokenKey>>, ConfigError> {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for spec in &config.tokens.keys {
        match build(spec) {
            Ok(k) => keys.push(Arc::new(k)),
            Err(e) => problems.push(format!("{}: {e}", spec.material_key)),
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(ConfigError {
            file: config.file.clone(),
            problems,
        })
    }
}

/// The key a spec describes.
pub fn build(spec: &KeySpec) -> Result<TokenKey, String> {
    match &spec.material {
        KeyMaterial::Secret(secret) => {
            TokenKey::from_secret(&spec.kid, secret.expose_secret().as_bytes())
        }
        KeyMaterial::Pem { file, pem } => {
            TokenKey::from_pem(&spec.kid, spec.alg, pem.expose_secret())
                .map_err(|e| format!("{}: {e}", file.display()))
        }
    }
}

fn with_meta(mut jwk: serde_json::Value, kid: &str, alg: Alg) -> serde_json::Value {
    if let Some(m) = jwk.as_object_mut() {
        m.insert("kid".into(), kid.into());
        m.insert("alg".into(), alg.name().into());
        m.insert("use".into(), "sig".into());
    }
    jwk
}

/// HKDF-SHA256 over the key's private material; `kid` separates keys that share material.
fn derive_mac_key(ikm: &[u8], kid: &str) -> SecretBox<[u8; 32]> {
    use aws_lc_rs::hkdf;
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"sessiongate refresh-token mac v1");
    let prk = salt.extract(ikm);
    let info = [kid.as_bytes()];
    let mut out = Box::new([0u8; 32]);
    prk.expand(&info, Len32)
        .and_then(|okm| okm.fill(&mut out[..]))
        .expect("HKDF output of 32 bytes is always valid");
    SecretBox::new(out)
}

/// `GET /.well-known/jwks.json` body: every public key, never an HS256 secret.
pub fn jwks_json(keys: &[Arc<TokenKey>]) -> Vec<u8> {
    let keys: Vec<&serde_json::Value> = keys.iter().filter_map(|k| k.jwk.as_ref()).collect();
    serde_json::to_vec(&json!({ "keys": keys })).expect("JWKS serializes")
}

/// `sessiongate keygen`: a PKCS#8 PEM private key, or a base64url HS256 secret.
pub fn generate(alg: Alg) -> Result<String, String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der: Vec<u8> = match alg {
        Alg::HS256 => {
            let mut secret = [0u8; 48];
            aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no randomness".to_string())?;
            return Ok(B64.encode(secret));
        }
        Alg::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(|_| "key generation failed".to_string())?
            .as_ref()
            .to_vec(),
        Alg::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| "key generation failed".to_string())?
                .as_ref()
                .to_vec()
        }
        Alg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| "key generation failed".to_string())?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(|_| "key encoding failed".to_string())?;
            der.as_ref().to_vec()
        }
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

/// Why a key file's key was refused, in an operator's words: the library's
/// own reason (e.g. `UnexpectedError`) says little on its own.
fn rejected(kind: &str, e: aws_lc_rs::error::KeyRejected) -> String {
    format!("not {kind} private key: the file holds another kind of key (check `alg`), or a damaged one ({e})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_back_for_every_algorithm() {
        for alg in [Alg::EdDSA, Alg::ES256, Alg::RS256] {
            let pem = generate(alg).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let key = TokenKey::from_pem("k", alg, pem.as_bytes()).unwrap();
            assert_eq!(key.alg, alg);
            assert!(key.jwk.as_ref().unwrap().get("d").is_none());
        }
        let secret = generate(Alg::HS256).unwrap();
        assert!(TokenKey::from_secret("k", secret.as_bytes())
            .unwrap()
            .jwk
            .is_none());
    }

    #[test]
    fn a_key_of_another_algorithm_is_refused() {
        let pem = generate(Alg::EdDSA).unwrap();
        for alg in [Alg::ES256, Alg::RS256] {
            let Err(e) = TokenKey::from_pem("k", alg, pem.as_bytes()) else {
                panic!("an Ed25519 key loaded as {}", alg.name());
            };
            assert!(e.contains("check `alg`"), "{e}");
        }
    }

    #[test]
    fn short_hs256_secrets_are_refused() {
        let err = TokenKey::from_secret("k", b"too short").unwrap_err();
        assert!(err.contains("32"), "{err}");
    }

    #[test]
    fn mac_keys_differ_between_kids_and_keys() {
        let pem = generate(Alg::EdDSA).unwrap();
        let a = TokenKey::from_pem("a", Alg::EdDSA, pem.as_bytes()).unwrap();
        let b = TokenKey::from_pem("b", Alg::EdDSA, pem.as_bytes()).unwrap();
        assert_ne!(a.refresh_mac_key(), b.refresh_mac_key());
    }
}
