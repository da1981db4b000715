//! secp256k1 ECDSA through RustCrypto's `k256`, which signs about 7x faster than aws-lc's
//! generic curve code here (shared/research/crypto-hsm-feasibility.md §5). Keys are stored as
//! PKCS#8 (what aws-lc also writes); signatures are DER and low-S.

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use k256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};

use super::asymmetric::{AsymmetricCipher, AsymmetricError, SignAlgorithm};
use crate::secret::SecretBytes;

/// A new private key as PKCS#8 DER.
pub(super) fn generate() -> Result<SecretBytes, AsymmetricError> {
    for _ in 0..64 {
        let candidate = SecretBytes::random(32);
        if let Ok(key) = SigningKey::from_slice(candidate.expose()) {
            let der = key.to_pkcs8_der().map_err(|_| AsymmetricError::Failed)?;
            return Ok(SecretBytes::new(der.as_bytes().to_vec()));
        }
    }
    Err(AsymmetricError::Failed)
}

struct K256Key {
    signing: SigningKey,
    public_der: Vec<u8>,
}

pub(super) fn load(material: &SecretBytes) -> Result<Box<dyn AsymmetricCipher>, AsymmetricError> {
    let signing =
        SigningKey::from_pkcs8_der(material.expose()).map_err(|_| AsymmetricError::Failed)?;
    let verifying: &VerifyingKey = signing.verifying_key();
    let public_der = verifying
        .to_public_key_der()
        .map_err(|_| AsymmetricError::Failed)?
        .as_bytes()
        .to_vec();
    Ok(Box::new(K256Key {
        signing,
        public_der,
    }))
}

impl AsymmetricCipher for K256Key {
    fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    fn sign(&self, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, AsymmetricError> {
        super::asymmetric::expect_prehash(alg, SignAlgorithm::EcdsaSha256, digest)?;
        let sig: Signature = self
            .signing
            .sign_prehash(digest)
            .map_err(|_| AsymmetricError::Failed)?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn verify(
        &self,
        alg: SignAlgorithm,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<bool, AsymmetricError> {
        super::asymmetric::expect_prehash(alg, SignAlgorithm::EcdsaSha256, digest)?;
        let Ok(sig) = Signature::from_der(sig) else {
            return Ok(false);
        };
        // Accept high-S signatures from other signers (e.g. some HSMs) as valid ECDSA.
        let sig = sig.normalize_s();
        Ok(self
            .signing
            .verifying_key()
            .verify_prehash(digest, &sig)
            .is_ok())
    }
}
