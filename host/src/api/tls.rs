//! TLS for the HTTP edges: the API (`arca serve --tls-cert/--tls-key`, PEM files of the
//! operator's) and each KMS instance's data plane (a certificate its own CA issued). One
//! rustls configuration for both: aws-lc's provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS acceptor for a listener (its certificates are not shown by `Debug`).
#[derive(Clone)]
pub struct Acceptor(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor(..)")
    }
}

/// A server configuration for `chain` (leaf first) and its private `key`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An acceptor for the certificate chain in the PEM file `cert` and the private key (PKCS#8,
/// PKCS#1 or SEC1) in the PEM file `key`. Errors name the file, never its contents.
pub fn acceptor_from_pem(cert: &Path, key: &Path) -> Result<Acceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let config = server_config(chain, key_der).map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(Acceptor(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}
