//! Trust anchors for an https upstream.
//!
//! SPEC 2: an https upstream is verified against the system's roots plus the
//! certificates of `upstream.ca_file`. pingora's connector takes either its
//! `ca_file` or the system roots, never both, so the combined list is built
//! here once and set on the upstream peer (pingora's per-peer CA list).

use std::path::Path;
use std::sync::Arc;

use pingora::utils::tls::WrappedX509;
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
        // What pingora will do with it on every connection: fail here instead.
        pingora::tls::RootCertStore::empty()
            .add(pingora::tls::CertificateDer::from(
                block.contents().to_vec(),
            ))
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

/// The system's roots followed by the certificates of `ca_file`.
///
/// pingora builds a trust store from this list for every new upstream TLS
/// connection (roughly the cost of parsing the ~150 roots); connections are
/// pooled and reused, so that is paid per connection, not per request.
pub fn upstream_trust_anchors(ca_file: &Path) -> Result<Arc<[WrappedX509]>, String> {
    let extra = read_ca_file(ca_file)?;
    let system: Vec<Vec<u8>> = match pingora::tls::load_native_certs() {
        Ok(certs) => certs.into_iter().map(|c| c.as_ref().to_vec()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the system's CA certificates; the upstream is verified against upstream.ca_file only");
            Vec::new()
        }
    };
    let system_count = system.len();
    let anchors: Vec<WrappedX509> = system
        .into_iter()
        .chain(extra)
        .filter_map(|der| {
            // A system store can hold a certificate x509-parser rejects: skip it.
            WrappedX509::try_new(der, |d| X509Certificate::from_der(d).map(|(_, cert)| cert)).ok()
        })
        .collect();
    tracing::debug!(
        system = system_count,
        total = anchors.len(),
        "upstream trust anchors"
    );
    Ok(anchors.into())
}
