//! SM2 (GB/T 32918) through RustCrypto's `sm2`: SM2DSA over the caller's SM3(Z‖M) digest with
//! DER signatures, and SM2PKE with DER (GM/T 0009) ciphertexts in C1C3C2 order. aws-lc has no
//! SM2. The private key is stored as its 32-byte scalar.

use sm2::SecretKey;
use sm2::dsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::common::getrandom::SysRng;
use sm2::pkcs8::EncodePublicKey;
use sm2::pke::{DecryptingKey, EncryptingKey};

use super::asymmetric::{AsymmetricCipher, AsymmetricError, EncryptAlgorithm, SignAlgorithm};
use crate::secret::SecretBytes;

/// The distinguishing identifier the SDKs and GB/T 32918 use by default.
const DIST_ID: &str = "1234567812345678";

/// The stored scalar as PKCS#8 DER (for data key pairs handed to callers).
pub(super) fn pkcs8(material: &SecretBytes) -> Result<SecretBytes, AsymmetricError> {
    use sm2::pkcs8::EncodePrivateKey;
    let key = SecretKey::from_slice(material.expose()).map_err(|_| AsymmetricError::Failed)?;
    let der = key.to_pkcs8_der().map_err(|_| AsymmetricError::Failed)?;
    Ok(SecretBytes::new(der.as_bytes().to_vec()))
}

/// A new private scalar, drawn until it is a valid non-zero scalar below the group order.
pub(super) fn generate() -> Result<SecretBytes, AsymmetricError> {
    for _ in 0..64 {
        let candidate = SecretBytes::random(32);
        if SecretKey::from_slice(candidate.expose()).is_ok() {
            return Ok(candidate);
        }
    }
    Err(AsymmetricError::Failed)
}

/// SM2PKE (DER, C1C3C2) to a DER SubjectPublicKeyInfo.
pub(super) fn encrypt_to(public_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AsymmetricError> {
    use sm2::pkcs8::DecodePublicKey;
    let public = sm2::PublicKey::from_public_key_der(public_der)
        .map_err(|_| AsymmetricError::BadPublicKey)?;
    EncryptingKey::new(public)
        .encrypt_der(&mut SysRng, plaintext)
        .map_err(|_| AsymmetricError::Failed)
}

struct Sm2Key {
    signing: SigningKey,
    decrypting: DecryptingKey,
    public_der: Vec<u8>,
}

pub(super) fn load(material: &SecretBytes) -> Result<Box<dyn AsymmetricCipher>, AsymmetricError> {
    let secret = SecretKey::from_slice(material.expose()).map_err(|_| AsymmetricError::Failed)?;
    let signing = SigningKey::new(DIST_ID, &secret).map_err(|_| AsymmetricError::Failed)?;
    let public_der = secret
        .public_key()
        .to_public_key_der()
        .map_err(|_| AsymmetricError::Failed)?
        .as_bytes()
        .to_vec();
    let decrypting = DecryptingKey::new(secret);
    Ok(Box::new(Sm2Key {
        signing,
        decrypting,
        public_der,
    }))
}

impl AsymmetricCipher for Sm2Key {
    fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    fn sign(&self, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, AsymmetricError> {
        super::asymmetric::expect_prehash(alg, SignAlgorithm::Sm2Dsa, digest)?;
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
        super::asymmetric::expect_prehash(alg, SignAlgorithm::Sm2Dsa, digest)?;
        let Ok(sig) = Signature::from_der(sig) else {
            return Ok(false);
        };
        let verifying: &VerifyingKey = self.signing.verifying_key();
        Ok(verifying.verify_prehash(digest, &sig).is_ok())
    }

    fn encrypt(&self, alg: EncryptAlgorithm, plaintext: &[u8]) -> Result<Vec<u8>, AsymmetricError> {
        if alg != EncryptAlgorithm::Sm2Pke {
            return Err(AsymmetricError::WrongAlgorithm);
        }
        if plaintext.len() > 6047 {
            return Err(AsymmetricError::TooLong);
        }
        let encrypting: &EncryptingKey = self.decrypting.encrypting_key();
        encrypting
            .encrypt_der(&mut SysRng, plaintext)
            .map_err(|_| AsymmetricError::Failed)
    }

    fn decrypt(
        &self,
        alg: EncryptAlgorithm,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, AsymmetricError> {
        if alg != EncryptAlgorithm::Sm2Pke {
            return Err(AsymmetricError::WrongAlgorithm);
        }
        self.decrypting
            .decrypt_der(ciphertext)
            .map(SecretBytes::new)
            .map_err(|_| AsymmetricError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::asymmetric::{KeyKind, generate as gen_key, load as load_key};
    use super::*;

    #[test]
    fn sm2_signs_verifies_encrypts_and_decrypts() {
        let key = load_key(KeyKind::Sm2, &gen_key(KeyKind::Sm2).unwrap()).unwrap();
        let digest = [7u8; 32];
        let sig = key.sign(SignAlgorithm::Sm2Dsa, &digest).unwrap();
        assert!(key.verify(SignAlgorithm::Sm2Dsa, &digest, &sig).unwrap());
        assert!(!key.verify(SignAlgorithm::Sm2Dsa, &[8u8; 32], &sig).unwrap());
        let ct = key.encrypt(EncryptAlgorithm::Sm2Pke, b"secret").unwrap();
        assert_eq!(
            key.decrypt(EncryptAlgorithm::Sm2Pke, &ct).unwrap().expose(),
            b"secret"
        );
        assert!(key.encrypt(EncryptAlgorithm::RsaOaepSha256, b"x").is_err());
        // SubjectPublicKeyInfo with the SM2 curve OID 1.2.156.10197.1.301.
        let oid = [0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
        assert!(key.public_key_der().windows(oid.len()).any(|w| w == oid));
    }
}
