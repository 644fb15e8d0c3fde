//! Hand-made JWTs: any header, any claims, any signature, so that hostile
//! tokens are exactly what a test says they are. Signing uses aws-lc-rs.

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap_or_else(|e| panic!("not base64url ({e}): {s}"))
}

/// `(header, claims)` of a compact JWS, unverified.
pub fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWT: {token}");
    let part = |s: &str| serde_json::from_slice(&b64_decode(s)).expect("JSON segment");
    (part(parts[0]), part(parts[1]))
}

/// `base64url(header).base64url(claims)`: the bytes a signature covers.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    let enc = |v: &Value| b64(serde_json::to_string(v).expect("serializes").as_bytes());
    format!("{}.{}", enc(header), enc(claims))
}

pub fn with_signature(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}", signing_input(header, claims), b64(signature))
}

/// An Ed25519 key read from the PKCS#8 PEM `sessiongate keygen` wrote.
pub struct EdKey(Ed25519KeyPair);

impl EdKey {
    pub fn from_pem(pem_text: &str) -> EdKey {
        let der = pem::parse(pem_text).expect("a PEM").into_contents();
        EdKey(Ed25519KeyPair::from_pkcs8(&der).expect("an Ed25519 PKCS#8 key"))
    }

    /// The raw 32-byte public key.
    pub fn public(&self) -> Vec<u8> {
        self.0.public_key().as_ref().to_vec()
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let sig = self.0.sign(signing_input(header, claims).as_bytes());
        with_signature(header, claims, sig.as_ref())
    }
}

pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input(header, claims).as_bytes());
    with_signature(header, claims, tag.as_ref())
}

/// Checks a compact JWS against a JWK from the JWKS (OKP Ed25519 or EC P-256).
pub fn verify_with_jwk(token: &str, jwk: &Value) -> bool {
    let (si, sig) = token.rsplit_once('.').expect("a JWS");
    let sig = b64_decode(sig);
    match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("OKP"), Some("Ed25519")) => {
            let x = b64_decode(jwk["x"].as_str().unwrap_or_default());
            UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(si.as_bytes(), &sig)
                .is_ok()
        }
        (Some("EC"), Some("P-256")) => {
            let mut point = vec![4u8];
            point.extend(b64_decode(jwk["x"].as_str().unwrap_or_default()));
            point.extend(b64_decode(jwk["y"].as_str().unwrap_or_default()));
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(si.as_bytes(), &sig)
                .is_ok()
        }
        _ => false,
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
