//! Asymmetric keys behind one trait, [`AsymmetricCipher`]: RSA and ECDSA P-256 through
//! aws-lc-rs, secp256k1 through RustCrypto `k256` (faster there), SM2 through RustCrypto `sm2`. aws-lc's RSA private-key operations are constant time and blinded, so
//! they are not exposed to the Marvin timing attack on the `rsa` crate (RUSTSEC-2023-0071);
//! they are also about 6x faster here. SM2 (`sm2`, RustCrypto) implements the same trait.
//!
//! Private keys are PKCS#8 DER while sealed at rest, and only ever unsealed into memory.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};

use crate::secret::SecretBytes;

/// Why an asymmetric operation failed. Deliberately coarse: callers map these to parameter
/// errors, and a failed decryption says nothing about why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AsymmetricError {
    /// The algorithm does not fit this key.
    #[error("the algorithm does not fit this key")]
    WrongAlgorithm,
    /// The digest has the wrong length for the algorithm.
    #[error("the digest must be 32 bytes")]
    BadDigest,
    /// A caller-supplied public key is not a key of the named kind.
    #[error("the public key is malformed or not of the named spec")]
    BadPublicKey,
    /// The plaintext is too long for the key and padding.
    #[error("the plaintext is too long for this key and algorithm")]
    TooLong,
    /// Decryption failed, or the key material is unusable.
    #[error("the asymmetric operation failed")]
    Failed,
}

/// The kinds of asymmetric key Arca generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this many bits (2048, 3072, 4096).
    Rsa(usize),
    /// NIST P-256.
    P256,
    /// secp256k1.
    P256K,
    /// SM2 (GB/T 32918).
    Sm2,
}

/// Signature algorithms (`Algorithm` of AsymmetricSign/Verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAlgorithm {
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32.
    RsaPssSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// ECDSA over a SHA-256 digest, DER-encoded signature.
    EcdsaSha256,
    /// SM2 signature over the caller's SM3(Z‖M) digest, DER-encoded.
    Sm2Dsa,
}

impl SignAlgorithm {
    /// The algorithm by its API name (`RSA_PSS_SHA_256`, `RSA_PKCS1_SHA_256`,
    /// `ECDSA_SHA_256`, `SM2DSA`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RSA_PSS_SHA_256" => Some(SignAlgorithm::RsaPssSha256),
            "RSA_PKCS1_SHA_256" => Some(SignAlgorithm::RsaPkcs1Sha256),
            "ECDSA_SHA_256" => Some(SignAlgorithm::EcdsaSha256),
            "SM2DSA" => Some(SignAlgorithm::Sm2Dsa),
            _ => None,
        }
    }
}

/// Encryption algorithms (`Algorithm` of AsymmetricEncrypt/Decrypt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptAlgorithm {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    RsaOaepSha256,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1.
    RsaOaepSha1,
    /// SM2 public-key encryption (C1C3C2).
    Sm2Pke,
}

/// A loaded asymmetric key pair: the seam every backend implements.
pub trait AsymmetricCipher: Send + Sync {
    /// The public key as DER SubjectPublicKeyInfo.
    fn public_key_der(&self) -> &[u8];
    /// Signs a precomputed 32-byte digest.
    fn sign(&self, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, AsymmetricError>;
    /// Verifies a signature over a precomputed digest; `Ok(false)` for a wrong signature.
    fn verify(
        &self,
        alg: SignAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, AsymmetricError>;
    /// Encrypts to the public key. Signing-only keys keep this default.
    fn encrypt(
        &self,
        _alg: EncryptAlgorithm,
        _plaintext: &[u8],
    ) -> Result<Vec<u8>, AsymmetricError> {
        Err(AsymmetricError::WrongAlgorithm)
    }
    /// Decrypts with the private key. Signing-only keys keep this default.
    fn decrypt(
        &self,
        _alg: EncryptAlgorithm,
        _ciphertext: &[u8],
    ) -> Result<SecretBytes, AsymmetricError> {
        Err(AsymmetricError::WrongAlgorithm)
    }
}

/// Checks that `alg` is the one a key signs with and that `digest` is 32 bytes.
pub(super) fn expect_prehash(
    alg: SignAlgorithm,
    want: SignAlgorithm,
    digest: &[u8],
) -> Result<(), AsymmetricError> {
    if alg != want {
        return Err(AsymmetricError::WrongAlgorithm);
    }
    if digest.len() != 32 {
        return Err(AsymmetricError::BadDigest);
    }
    Ok(())
}

/// Generates a private key of `kind`, returned as its storage encoding.
pub fn generate(kind: KeyKind) -> Result<SecretBytes, AsymmetricError> {
    let der = match kind {
        KeyKind::Rsa(bits) => {
            let size = match bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                _ => return Err(AsymmetricError::WrongAlgorithm),
            };
            let key = PrivateDecryptingKey::generate(size).map_err(|_| AsymmetricError::Failed)?;
            key.as_der()
                .map_err(|_| AsymmetricError::Failed)?
                .as_ref()
                .to_vec()
        }
        KeyKind::P256K => return super::secp256k1::generate(),
        KeyKind::P256 => {
            let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
                .map_err(|_| AsymmetricError::Failed)?;
            key.to_pkcs8v1()
                .map_err(|_| AsymmetricError::Failed)?
                .as_ref()
                .to_vec()
        }
        KeyKind::Sm2 => return super::sm2::generate(),
    };
    Ok(SecretBytes::new(der))
}

/// Loads a private key of `kind` from its storage encoding.
pub fn load(
    kind: KeyKind,
    material: &SecretBytes,
) -> Result<Box<dyn AsymmetricCipher>, AsymmetricError> {
    Ok(match kind {
        KeyKind::Rsa(bits) => {
            let key = RsaKey::load(material)?;
            // Imported material must have the size the key spec promises.
            if key.signing.public_modulus_len() * 8 != bits {
                return Err(AsymmetricError::WrongAlgorithm);
            }
            Box::new(key)
        }
        KeyKind::P256 => Box::new(EcKey::load(material)?),
        KeyKind::P256K => super::secp256k1::load(material)?,
        KeyKind::Sm2 => super::sm2::load(material)?,
    })
}

fn sha256_digest(digest: &[u8]) -> Result<aws_lc_rs::digest::Digest, AsymmetricError> {
    aws_lc_rs::digest::Digest::import_less_safe(digest, &aws_lc_rs::digest::SHA256)
        .map_err(|_| AsymmetricError::BadDigest)
}

struct RsaKey {
    signing: signature::RsaKeyPair,
    decrypting: OaepPrivateDecryptingKey,
    public_der: Vec<u8>,
}

impl RsaKey {
    fn load(material: &SecretBytes) -> Result<Self, AsymmetricError> {
        let signing = signature::RsaKeyPair::from_pkcs8(material.expose())
            .map_err(|_| AsymmetricError::Failed)?;
        let private = PrivateDecryptingKey::from_pkcs8(material.expose())
            .map_err(|_| AsymmetricError::Failed)?;
        let public_der = private
            .public_key()
            .as_der()
            .map_err(|_| AsymmetricError::Failed)?
            .as_ref()
            .to_vec();
        let decrypting =
            OaepPrivateDecryptingKey::new(private).map_err(|_| AsymmetricError::Failed)?;
        Ok(Self {
            signing,
            decrypting,
            public_der,
        })
    }

    fn oaep(
        alg: EncryptAlgorithm,
    ) -> Result<&'static aws_lc_rs::rsa::OaepAlgorithm, AsymmetricError> {
        match alg {
            EncryptAlgorithm::RsaOaepSha256 => Ok(&OAEP_SHA256_MGF1SHA256),
            EncryptAlgorithm::RsaOaepSha1 => Ok(&OAEP_SHA1_MGF1SHA1),
            EncryptAlgorithm::Sm2Pke => Err(AsymmetricError::WrongAlgorithm),
        }
    }
}

impl AsymmetricCipher for RsaKey {
    fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    fn sign(&self, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, AsymmetricError> {
        let padding: &'static dyn signature::RsaEncoding = match alg {
            SignAlgorithm::RsaPssSha256 => &signature::RSA_PSS_SHA256,
            SignAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
            _ => return Err(AsymmetricError::WrongAlgorithm),
        };
        let digest = sha256_digest(digest)?;
        let mut sig = vec![0u8; self.signing.public_modulus_len()];
        self.signing
            .sign_digest(padding, &digest, &mut sig)
            .map_err(|_| AsymmetricError::Failed)?;
        Ok(sig)
    }

    fn verify(
        &self,
        alg: SignAlgorithm,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<bool, AsymmetricError> {
        let params = match alg {
            SignAlgorithm::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
            SignAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            _ => return Err(AsymmetricError::WrongAlgorithm),
        };
        let digest = sha256_digest(digest)?;
        let public = self.signing.public_key().as_ref();
        Ok(UnparsedPublicKey::new(params, public)
            .verify_digest(&digest, sig)
            .is_ok())
    }

    fn encrypt(&self, alg: EncryptAlgorithm, plaintext: &[u8]) -> Result<Vec<u8>, AsymmetricError> {
        rsa_encrypt_to(&self.public_der, alg, plaintext)
    }

    fn decrypt(
        &self,
        alg: EncryptAlgorithm,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, AsymmetricError> {
        let oaep = Self::oaep(alg)?;
        let mut out = SecretBytes::new(vec![0u8; self.decrypting.min_output_size()]);
        let len = self
            .decrypting
            .decrypt(oaep, ciphertext, out.expose_mut(), None)
            .map_err(|_| AsymmetricError::Failed)?
            .len();
        out.expose_mut().truncate(len);
        Ok(out)
    }
}

/// RSA-OAEP encryption to a DER SubjectPublicKeyInfo.
fn rsa_encrypt_to(
    public_der: &[u8],
    alg: EncryptAlgorithm,
    plaintext: &[u8],
) -> Result<Vec<u8>, AsymmetricError> {
    let oaep = RsaKey::oaep(alg)?;
    let key = aws_lc_rs::rsa::PublicEncryptingKey::from_der(public_der)
        .map_err(|_| AsymmetricError::BadPublicKey)?;
    let public = OaepPublicEncryptingKey::new(key).map_err(|_| AsymmetricError::BadPublicKey)?;
    if plaintext.len() > public.max_plaintext_size(oaep) {
        return Err(AsymmetricError::TooLong);
    }
    let mut out = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(oaep, plaintext, &mut out, None)
        .map_err(|_| AsymmetricError::Failed)?
        .len();
    out.truncate(len);
    Ok(out)
}

/// Encrypts to a caller's public key (data-key export): `RSA_2048` with RSA-OAEP, or `EC_SM2`
/// with SM2PKE.
pub fn encrypt_to_public_key(
    kind: KeyKind,
    alg: EncryptAlgorithm,
    public_der: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, AsymmetricError> {
    match kind {
        KeyKind::Rsa(bits) => {
            let key = aws_lc_rs::rsa::PublicEncryptingKey::from_der(public_der)
                .map_err(|_| AsymmetricError::BadPublicKey)?;
            if key.key_size_bits() != bits {
                return Err(AsymmetricError::BadPublicKey);
            }
            rsa_encrypt_to(public_der, alg, plaintext)
        }
        KeyKind::Sm2 if alg == EncryptAlgorithm::Sm2Pke => {
            super::sm2::encrypt_to(public_der, plaintext)
        }
        _ => Err(AsymmetricError::WrongAlgorithm),
    }
}

/// ECDSA on P-256 through aws-lc-rs.
struct EcKey {
    pair: EcdsaKeyPair,
    verifying: &'static signature::EcdsaVerificationAlgorithm,
    public_der: Vec<u8>,
}

impl EcKey {
    fn load(material: &SecretBytes) -> Result<Self, AsymmetricError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            material.expose(),
        )
        .map_err(|_| AsymmetricError::Failed)?;
        let public_der = pair
            .public_key()
            .as_der()
            .map_err(|_| AsymmetricError::Failed)?
            .as_ref()
            .to_vec();
        Ok(Self {
            pair,
            verifying: &signature::ECDSA_P256_SHA256_ASN1,
            public_der,
        })
    }
}

impl AsymmetricCipher for EcKey {
    fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    fn sign(&self, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, AsymmetricError> {
        if alg != SignAlgorithm::EcdsaSha256 {
            return Err(AsymmetricError::WrongAlgorithm);
        }
        let sig = self
            .pair
            .sign_digest(&sha256_digest(digest)?)
            .map_err(|_| AsymmetricError::Failed)?;
        Ok(sig.as_ref().to_vec())
    }

    fn verify(
        &self,
        alg: SignAlgorithm,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<bool, AsymmetricError> {
        if alg != SignAlgorithm::EcdsaSha256 {
            return Err(AsymmetricError::WrongAlgorithm);
        }
        let digest = sha256_digest(digest)?;
        let public = self.pair.public_key().as_ref();
        Ok(UnparsedPublicKey::new(self.verifying, public)
            .verify_digest(&digest, sig)
            .is_ok())
    }
}

/// RSAES-PKCS1-v1_5 decryption, only for unwrapping BYOK key material (`RSAES_PKCS1_V1_5`).
/// Callers must check the unwrapped length: a padding failure is not reported distinctly.
pub fn rsa_pkcs1_decrypt(
    pkcs8: &SecretBytes,
    ciphertext: &[u8],
) -> Result<SecretBytes, AsymmetricError> {
    let private =
        PrivateDecryptingKey::from_pkcs8(pkcs8.expose()).map_err(|_| AsymmetricError::Failed)?;
    let key = aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey::new(private)
        .map_err(|_| AsymmetricError::Failed)?;
    let mut out = SecretBytes::new(vec![0u8; key.min_output_size()]);
    let len = key
        .decrypt(ciphertext, out.expose_mut())
        .map_err(|_| AsymmetricError::Failed)?
        .len();
    out.expose_mut().truncate(len);
    Ok(out)
}

/// DER SubjectPublicKeyInfo as PEM (`-----BEGIN PUBLIC KEY-----`), as GetPublicKey returns it.
pub fn public_key_pem(der: &[u8]) -> String {
    pem("PUBLIC KEY", der)
}

/// DER as PEM with `label` (RFC 7468), in 64-character lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// A private key of `kind` as PKCS#8 DER (SM2 keys are stored as their bare scalar).
pub fn private_key_pkcs8(
    kind: KeyKind,
    material: &SecretBytes,
) -> Result<SecretBytes, AsymmetricError> {
    match kind {
        KeyKind::Sm2 => super::sm2::pkcs8(material),
        _ => Ok(SecretBytes::new(material.expose().to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(msg: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, msg)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn rsa_signs_verifies_encrypts_and_decrypts() {
        let key = load(KeyKind::Rsa(2048), &generate(KeyKind::Rsa(2048)).unwrap()).unwrap();
        let d = digest(b"message");
        for alg in [SignAlgorithm::RsaPssSha256, SignAlgorithm::RsaPkcs1Sha256] {
            let sig = key.sign(alg, &d).unwrap();
            assert_eq!(sig.len(), 256);
            assert!(key.verify(alg, &d, &sig).unwrap());
            assert!(!key.verify(alg, &digest(b"other"), &sig).unwrap());
        }
        assert_eq!(
            key.sign(SignAlgorithm::EcdsaSha256, &d),
            Err(AsymmetricError::WrongAlgorithm)
        );
        assert_eq!(
            key.sign(SignAlgorithm::RsaPssSha256, b"short"),
            Err(AsymmetricError::BadDigest)
        );
        for alg in [
            EncryptAlgorithm::RsaOaepSha256,
            EncryptAlgorithm::RsaOaepSha1,
        ] {
            let ct = key.encrypt(alg, b"secret").unwrap();
            assert_eq!(key.decrypt(alg, &ct).unwrap().expose(), b"secret");
        }
        let ct = key.encrypt(EncryptAlgorithm::RsaOaepSha256, b"x").unwrap();
        assert!(key.decrypt(EncryptAlgorithm::RsaOaepSha1, &ct).is_err());
        assert_eq!(
            key.encrypt(EncryptAlgorithm::RsaOaepSha256, &[0; 191]),
            Err(AsymmetricError::TooLong)
        );
        key.encrypt(EncryptAlgorithm::RsaOaepSha256, &[0; 190])
            .unwrap();
        assert!(
            public_key_pem(key.public_key_der())
                .starts_with("-----BEGIN PUBLIC KEY-----\nMIIBIjAN")
        );
    }

    #[test]
    fn ecdsa_curves_sign_and_verify() {
        for kind in [KeyKind::P256, KeyKind::P256K] {
            let key = load(kind, &generate(kind).unwrap()).unwrap();
            let d = digest(b"message");
            let sig = key.sign(SignAlgorithm::EcdsaSha256, &d).unwrap();
            assert_eq!(sig.first(), Some(&0x30), "DER");
            assert!(key.verify(SignAlgorithm::EcdsaSha256, &d, &sig).unwrap());
            assert!(
                !key.verify(SignAlgorithm::EcdsaSha256, &digest(b"x"), &sig)
                    .unwrap()
            );
            assert!(key.encrypt(EncryptAlgorithm::RsaOaepSha256, b"x").is_err());
        }
    }
}
