//! The asymmetric data plane: AsymmetricSign/Verify/Encrypt/Decrypt and GetPublicKey, each on
//! a named key version, whose key pair is in memory or in the HSM.

use std::sync::{Arc, OnceLock};

use super::model::{KeyState, KeyUsage};
use super::{Caller, Error, Kms, LoadedVersion, Prepared};
use crate::crypto::asymmetric::{
    AsymmetricCipher, AsymmetricError, EncryptAlgorithm, SignAlgorithm,
};
use crate::ids::{KeyId, KeyRef, KeyVersionId};
use crate::keystore::Token;
use crate::keystore::hsm::{HsmError, OaepHash, PairSpec, RsaPadding, SignMechanism};
use crate::kms::Field;
use crate::secret::SecretBytes;

pub(super) fn map(e: AsymmetricError) -> Error {
    match e {
        AsymmetricError::WrongAlgorithm => {
            Error::invalid(Field::Algorithm, "the algorithm does not fit this key")
        }
        AsymmetricError::BadDigest => {
            Error::invalid(Field::Digest, "must be the base64 of a 32-byte digest")
        }
        AsymmetricError::BadPublicKey => Error::invalid(
            Field::PublicKeyBlob,
            "not a DER public key of the named WrappingKeySpec",
        ),
        AsymmetricError::TooLong => {
            Error::invalid(Field::Plaintext, "too long for this key and algorithm")
        }
        // Decryption failures stay opaque.
        AsymmetricError::Failed => Error::InvalidCiphertext,
    }
}

impl Kms {
    /// The named version of an asymmetric key, checked for state and usage (`None`: any usage).
    fn key_pair(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        usage: Option<KeyUsage>,
    ) -> Result<(KeyId, Arc<LoadedVersion>), Error> {
        let record = self.resolve(caller, key)?;
        if record.state != KeyState::Enabled {
            return Err(Error::KeyState(record.state));
        }
        if record.spec.asymmetric().is_none() {
            return Err(Error::Unsupported("the key is not an asymmetric key"));
        }
        if usage.is_some_and(|u| u != record.usage) {
            return Err(Error::Unsupported(
                "the key's usage does not allow this operation",
            ));
        }
        if !record.versions.contains(version) {
            return Err(Error::VersionNotFound);
        }
        let loaded = self.load_version(&record.account_id, version)?;
        Ok((record.key_id, loaded))
    }

    fn pair(loaded: &LoadedVersion) -> Result<Pair<'_>, Error> {
        match &loaded.cipher {
            Prepared::Asymmetric(k) => Ok(Pair::Software(k.as_ref())),
            Prepared::HsmPair(p) => Ok(Pair::Hsm(p)),
            Prepared::Symmetric(_) | Prepared::Hsm(_) | Prepared::Mac(_) => {
                Err(Error::Unsupported("the key is not an asymmetric key"))
            }
        }
    }

    /// `AsymmetricSign` over a precomputed digest.
    pub async fn asymmetric_sign(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: SignAlgorithm,
        digest: &[u8],
    ) -> Result<(KeyId, Vec<u8>), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::SignVerify))?;
        let sig = match Self::pair(&loaded)? {
            Pair::Software(k) => k.sign(alg, digest).map_err(map)?,
            Pair::Hsm(p) => p.sign(alg, digest).await?,
        };
        Ok((id, sig))
    }

    /// `AsymmetricVerify`.
    pub async fn asymmetric_verify(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: SignAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<(KeyId, bool), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::SignVerify))?;
        let ok = match Self::pair(&loaded)? {
            Pair::Software(k) => k.verify(alg, digest, signature).map_err(map)?,
            Pair::Hsm(p) => p.verify(alg, digest, signature).await?,
        };
        Ok((id, ok))
    }

    /// `AsymmetricEncrypt`.
    pub async fn asymmetric_encrypt(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: EncryptAlgorithm,
        plaintext: &SecretBytes,
    ) -> Result<(KeyId, Vec<u8>), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::EncryptDecrypt))?;
        let ct = match Self::pair(&loaded)? {
            Pair::Software(k) => k.encrypt(alg, plaintext.expose()).map_err(map)?,
            Pair::Hsm(p) => p.encrypt(alg, plaintext).await?,
        };
        Ok((id, ct))
    }

    /// `AsymmetricDecrypt`.
    pub async fn asymmetric_decrypt(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: EncryptAlgorithm,
        ciphertext: &[u8],
    ) -> Result<(KeyId, SecretBytes), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::EncryptDecrypt))?;
        let plain = match Self::pair(&loaded)? {
            Pair::Software(k) => k.decrypt(alg, ciphertext).map_err(map)?,
            Pair::Hsm(p) => p.decrypt(alg, ciphertext).await?,
        };
        Ok((id, plain))
    }

    /// `GetPublicKey`: DER SubjectPublicKeyInfo.
    pub async fn public_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
    ) -> Result<(KeyId, Vec<u8>), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, None)?;
        let der = match Self::pair(&loaded)? {
            Pair::Software(k) => k.public_key_der().to_vec(),
            Pair::Hsm(p) => p.public_key_der().await?,
        };
        Ok((id, der))
    }
}

/// A loaded key pair: in memory, or in the HSM.
enum Pair<'a> {
    Software(&'a dyn AsymmetricCipher),
    Hsm(&'a HsmPair),
}

/// A key version whose private key lives in the HSM. The algorithm checks and the wire
/// encodings (DER signatures, SubjectPublicKeyInfo) are the software keys'; every operation
/// with the key runs in the token, on the blocking pool.
#[derive(Debug)]
pub(crate) struct HsmPair {
    hsm: Arc<dyn Token>,
    version: KeyVersionId,
    spec: PairSpec,
    /// Read from the token on first use; public, and never changes for a version.
    public_der: OnceLock<Vec<u8>>,
}

impl HsmPair {
    pub(crate) fn new(hsm: Arc<dyn Token>, version: KeyVersionId, spec: PairSpec) -> Self {
        Self {
            hsm,
            version,
            spec,
            public_der: OnceLock::new(),
        }
    }

    /// The token mechanism for `alg` on this key, with the digest checked.
    fn sign_mechanism(&self, alg: SignAlgorithm, digest: &[u8]) -> Result<SignMechanism, Error> {
        let mechanism = match (self.spec, alg) {
            (PairSpec::Rsa(_), SignAlgorithm::RsaPssSha256) => SignMechanism::Rsa(RsaPadding::Pss),
            (PairSpec::Rsa(_), SignAlgorithm::RsaPkcs1Sha256) => {
                SignMechanism::Rsa(RsaPadding::Pkcs1)
            }
            (PairSpec::P256 | PairSpec::Secp256k1, SignAlgorithm::EcdsaSha256) => {
                SignMechanism::Ecdsa
            }
            _ => return Err(map(AsymmetricError::WrongAlgorithm)),
        };
        if digest.len() != 32 {
            return Err(map(AsymmetricError::BadDigest));
        }
        Ok(mechanism)
    }

    fn oaep(&self, alg: EncryptAlgorithm) -> Result<OaepHash, Error> {
        match (self.spec, alg) {
            (PairSpec::Rsa(_), EncryptAlgorithm::RsaOaepSha1) => Ok(OaepHash::Sha1),
            (PairSpec::Rsa(_), EncryptAlgorithm::RsaOaepSha256) => Ok(OaepHash::Sha256),
            _ => Err(map(AsymmetricError::WrongAlgorithm)),
        }
    }

    async fn sign(&self, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, Error> {
        let mechanism = self.sign_mechanism(alg, digest)?;
        let (v, d) = (self.version.clone(), digest.to_vec());
        let raw = self
            .hsm
            .run(move |h| h.sign(&v, mechanism, &d))
            .await
            .map_err(super::hsm_error)?;
        let failed = || Error::HsmUnavailable("the token returned a malformed signature".into());
        Ok(match self.spec {
            PairSpec::Rsa(_) => raw,
            PairSpec::P256 => p256::ecdsa::Signature::from_slice(&raw)
                .map_err(|_| failed())?
                .to_der()
                .as_bytes()
                .to_vec(),
            // Low-S, as the software secp256k1 keys sign (SoftHSM2 emits high-S half the time).
            PairSpec::Secp256k1 => k256::ecdsa::Signature::from_slice(&raw)
                .map_err(|_| failed())?
                .normalize_s()
                .to_der()
                .as_bytes()
                .to_vec(),
        })
    }

    async fn verify(
        &self,
        alg: SignAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, Error> {
        let mechanism = self.sign_mechanism(alg, digest)?;
        // The token takes ECDSA signatures raw; a signature that is not DER is simply wrong.
        let signature = match self.spec {
            PairSpec::Rsa(_) => signature.to_vec(),
            PairSpec::P256 => match p256::ecdsa::Signature::from_der(signature) {
                Ok(s) => s.to_bytes().to_vec(),
                Err(_) => return Ok(false),
            },
            PairSpec::Secp256k1 => match k256::ecdsa::Signature::from_der(signature) {
                Ok(s) => s.to_bytes().to_vec(),
                Err(_) => return Ok(false),
            },
        };
        let (v, d) = (self.version.clone(), digest.to_vec());
        self.hsm
            .run(move |h| h.verify(&v, mechanism, &d, &signature))
            .await
            .map_err(super::hsm_error)
    }

    async fn encrypt(
        &self,
        alg: EncryptAlgorithm,
        plaintext: &SecretBytes,
    ) -> Result<Vec<u8>, Error> {
        let hash = self.oaep(alg)?;
        // RFC 8017 §7.1.1: at most k - 2·hLen - 2 bytes. Checked here, because tokens report
        // an overlong input in different ways.
        if let PairSpec::Rsa(bits) = self.spec {
            let h_len = if hash == OaepHash::Sha1 { 20 } else { 32 };
            if plaintext.len() + 2 * h_len + 2 > (bits / 8) as usize {
                return Err(map(AsymmetricError::TooLong));
            }
        }
        let (v, p) = (
            self.version.clone(),
            SecretBytes::new(plaintext.expose().to_vec()),
        );
        self.hsm
            .run(move |h| h.rsa_encrypt(&v, hash, p.expose()))
            .await
            .map_err(|e| match e {
                HsmError::Rejected => map(AsymmetricError::TooLong),
                other => super::hsm_error(other),
            })
    }

    async fn decrypt(
        &self,
        alg: EncryptAlgorithm,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, Error> {
        let hash = self.oaep(alg)?;
        let (v, c) = (self.version.clone(), ciphertext.to_vec());
        self.hsm
            .run(move |h| h.rsa_decrypt(&v, hash, &c))
            .await
            .map_err(super::hsm_error)
    }

    async fn public_key_der(&self) -> Result<Vec<u8>, Error> {
        if let Some(der) = self.public_der.get() {
            return Ok(der.clone());
        }
        let (v, spec) = (self.version.clone(), self.spec);
        let der = self
            .hsm
            .run(move |h| h.public_key_der(&v, spec))
            .await
            .map_err(super::hsm_error)?;
        Ok(self.public_der.get_or_init(|| der).clone())
    }
}
