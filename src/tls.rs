//! TLS on both sides of the proxy, with rustls (aws-lc-rs).
//!
//! - The client listener (`server.tls`): the certificate chain and key, ALPN
//!   `h2` (when `server.http2`) and `http/1.1`.
//! - An https upstream (SPEC 2): verified against the system's roots plus the
//!   certificates of `upstream.ca_file`, with SNI and hostname verification.
//!
//! Both configurations are built once at start-up; every connection reuses them.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DER certificates of a PEM bundle; an error names what is wrong.
pub fn read_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let blocks =
        pem::parse_many(&text).map_err(|e| format!("{} is not a PEM file: {e}", path.display()))?;
    let mut certs = Vec::new();
    for block in blocks {
        if block.tag() != "CERTIFICATE" {
            return Err(format!(
                "{} holds a {} block; only CERTIFICATE blocks belong in a CA file",
                path.display(),
                block.tag()
            ));
        }
        X509Certificate::from_der(block.contents())
            .map_err(|e| format!("{}: a certificate does not parse: {e}", path.display()))?;
        // What every upstream connection will do with it: fail here instead.
        rustls::RootCertStore::empty()
            .add(CertificateDer::from(block.contents().to_vec()))
            .map_err(|e| {
                format!(
                    "{}: a certificate is not usable as a trust anchor: {e}",
                    path.display()
                )
            })?;
        certs.push(block.into_contents());
    }
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client configuration for an https upstream: system roots plus `ca_file`.
pub fn upstream_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "cannot load some of the system's CA certificates");
    }
    // A system store can hold a certificate rustls rejects: skip it.
    let (system, _skipped) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for der in read_ca_file(path)? {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no trust anchors: the system has no CA certificates and upstream.ca_file is not set"
                .into(),
        );
    }
    tracing::debug!(system, total = roots.len(), "upstream trust anchors");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The upstream speaks HTTP/1.1: say so, so an h2-first server does not pick h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A certificate chain and its private key, from PEM files.
fn read_identity(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file {} holds no certificate",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("key_file {}: {e}", key_file.display()))?;
    Ok((certs, key))
}

/// Checks that a client certificate (mTLS) and its key are readable and go
/// together, the way a connection would use them.
pub fn check_client_identity(cert_file: &Path, key_file: &Path) -> Result<(), String> {
    let (certs, key) = read_identity(cert_file, key_file)?;
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    Ok(())
}

/// The trust anchors for a TLS client that takes one PEM bundle (the Redis
/// client): the system's roots plus the certificates of `ca_file`.
pub fn roots_pem_with(ca_file: &Path) -> Result<Vec<u8>, String> {
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "cannot load some of the system's CA certificates");
    }
    let mut blocks: Vec<pem::Pem> = native
        .certs
        .into_iter()
        // The same filter the upstream's store applies: skip what rustls rejects.
        .filter(|c| rustls::RootCertStore::empty().add(c.clone()).is_ok())
        .map(|c| pem::Pem::new("CERTIFICATE", c.to_vec()))
        .collect();
    for der in read_ca_file(ca_file)? {
        blocks.push(pem::Pem::new("CERTIFICATE", der));
    }
    Ok(pem::encode_many(&blocks).into_bytes())
}

/// The client listener's configuration: `server.tls`'s chain and key, ALPN
/// `h2` first when HTTP/2 is on.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    http2: bool,
) -> Result<rustls::ServerConfig, String> {
    let (certs, key) = read_identity(cert_file, key_file)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}
