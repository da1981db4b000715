//! Certificates Arca issues: client keys for application access points, and each KMS
//! instance's private CA and TLS server certificate.
//!
//! rcgen (over aws-lc-rs) makes the keys and certificates and p12-keystore the PKCS#12 file the
//! instance SDK loads (`PrivateKeyData`), encrypted with PBES2/AES-256-CBC and an HMAC-SHA256
//! MAC, both readable by OpenSSL 1.1 and 3.

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256,
};
use time::OffsetDateTime;

use crate::secret::SecretBytes;

/// Certificate or PKCS#12 generation failed.
#[derive(Debug, thiserror::Error)]
#[error("certificate generation: {0}")]
pub struct PkiError(String);

fn err(e: impl std::fmt::Display) -> PkiError {
    PkiError(e.to_string())
}

/// A client key as issued: what Arca keeps (the certificate) and what it hands out once (the
/// PKCS#12 file with the private key, under the caller's password).
pub struct IssuedClientKey {
    /// The X.509 certificate, PEM (`PublicKeyData`).
    pub certificate_pem: String,
    /// The SubjectPublicKeyInfo, DER: what request signatures are verified with.
    pub public_key_der: Vec<u8>,
    /// The PKCS#12 file (`PrivateKeyData`, base64 on the wire). Holds the private key.
    pub pkcs12: SecretBytes,
}

impl std::fmt::Debug for IssuedClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedClientKey")
            .field("certificate_pem", &self.certificate_pem)
            .finish_non_exhaustive()
    }
}

/// Issues an RSA-2048 client key named `id`, valid from `not_before` to `not_after`, with its
/// private key in a PKCS#12 file protected by `password`. Slow (RSA generation): call it off
/// the async runtime.
pub fn issue_client_key(
    id: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    password: &str,
) -> Result<IssuedClientKey, PkiError> {
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256).map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, id);
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).map_err(err)?;
    let pkcs8 = SecretBytes::new(key.serialize_der());
    let mut store = KeyStore::new();
    let chain = PrivateKeyChain::new(
        id.as_bytes().to_vec(),
        PrivateKey::from_der(pkcs8.expose()).map_err(err)?,
        [Certificate::from_der(cert.der()).map_err(err)?],
    );
    store.add_entry(id, KeyStoreEntry::PrivateKeyChain(chain));
    let pkcs12 = store.writer(password).write().map_err(err)?;
    Ok(IssuedClientKey {
        certificate_pem: cert.pem(),
        public_key_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        pkcs12: SecretBytes::new(pkcs12),
    })
}

/// Whether `signature` is `public_key_der`'s (a SubjectPublicKeyInfo) RSASSA-PKCS1-v1_5 SHA-256
/// signature of `message`: how instance data-plane requests are authenticated. The comparison
/// inside is aws-lc's, which does not branch on secret data.
pub fn verify_rsa_sha256(public_key_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der,
    )
    .verify(message, signature)
    .is_ok()
}

/// A KMS instance's TLS identity: a private CA (whose key is discarded once it has signed, so
/// nothing can issue more certificates in its name) and the server certificate it signed.
pub struct InstanceTls {
    /// The CA certificate, PEM (`CaCertificateChainPem`: what clients trust).
    pub ca_pem: String,
    /// The server certificate, DER.
    pub server_cert_der: Vec<u8>,
    /// The server's private key, PKCS#8 DER.
    pub server_key_der: SecretBytes,
}

impl std::fmt::Debug for InstanceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceTls")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// Makes `instance`'s CA and a server certificate for `names` (host names and IP addresses),
/// both valid for ten years.
pub fn instance_tls(instance: &str, names: Vec<String>) -> Result<InstanceTls, PkiError> {
    let now = OffsetDateTime::now_utc();
    let until = now + time::Duration::days(3650);
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("Arca KMS instance CA {instance}"),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now;
    ca.not_after = until;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut leaf = CertificateParams::new(names).map_err(err)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, instance);
    leaf.not_before = now;
    leaf.not_after = until;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = leaf.signed_by(&server_key, &issuer).map_err(err)?;
    Ok(InstanceTls {
        ca_pem: ca_cert.pem(),
        server_cert_der: server_cert.der().to_vec(),
        server_key_der: SecretBytes::new(server_key.serialize_der()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_key_opens_with_its_password_only() {
        let now = OffsetDateTime::now_utc();
        let issued = issue_client_key(
            "KAAP.test",
            now,
            now + time::Duration::days(1),
            "pass-word-1",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            issued
                .certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let policy = p12_keystore::Pkcs12ImportPolicy::Strict;
        let store = KeyStore::from_pkcs12(issued.pkcs12.expose(), "pass-word-1", policy)
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, chain) = store
            .private_key_chain()
            .unwrap_or_else(|| panic!("no key"));
        assert_eq!(chain.certs().len(), 1);
        assert!(KeyStore::from_pkcs12(issued.pkcs12.expose(), "wrong", policy).is_err());

        // A signature made with the key in the file verifies against the kept public key.
        let pkcs8 = chain.key().as_der();
        let signer = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).unwrap_or_else(|e| panic!("{e}"));
        let mut sig = vec![0u8; signer.public_modulus_len()];
        signer
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                b"POST\n",
                &mut sig,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(verify_rsa_sha256(&issued.public_key_der, b"POST\n", &sig));
        assert!(!verify_rsa_sha256(&issued.public_key_der, b"POST\r", &sig));
    }
}
