//! The asymmetric data plane: AsymmetricSign/Verify/Encrypt/Decrypt and GetPublicKey, each on
//! a named key version.

use std::sync::Arc;

use super::model::{KeyState, KeyUsage};
use super::{Caller, Error, Kms, LoadedVersion, Prepared};
use crate::crypto::asymmetric::{
    AsymmetricCipher, AsymmetricError, EncryptAlgorithm, SignAlgorithm,
};
use crate::ids::{KeyId, KeyRef, KeyVersionId};
use crate::secret::SecretBytes;

pub(super) fn map(e: AsymmetricError) -> Error {
    match e {
        AsymmetricError::WrongAlgorithm => {
            Error::invalid("Algorithm", "the algorithm does not fit this key")
        }
        AsymmetricError::BadDigest => {
            Error::invalid("Digest", "must be the base64 of a 32-byte digest")
        }
        AsymmetricError::BadPublicKey => Error::invalid(
            "PublicKeyBlob",
            "not a DER public key of the named WrappingKeySpec",
        ),
        AsymmetricError::TooLong => {
            Error::invalid("Plaintext", "too long for this key and algorithm")
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

    fn pair(loaded: &LoadedVersion) -> Result<&dyn AsymmetricCipher, Error> {
        match &loaded.cipher {
            Prepared::Asymmetric(k) => Ok(k.as_ref()),
            Prepared::Symmetric(_) | Prepared::Hsm(_) => {
                Err(Error::Unsupported("the key is not an asymmetric key"))
            }
        }
    }

    /// `AsymmetricSign` over a precomputed digest.
    pub fn asymmetric_sign(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: SignAlgorithm,
        digest: &[u8],
    ) -> Result<(KeyId, Vec<u8>), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::SignVerify))?;
        Ok((id, Self::pair(&loaded)?.sign(alg, digest).map_err(map)?))
    }

    /// `AsymmetricVerify`.
    pub fn asymmetric_verify(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: SignAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<(KeyId, bool), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::SignVerify))?;
        Ok((
            id,
            Self::pair(&loaded)?
                .verify(alg, digest, signature)
                .map_err(map)?,
        ))
    }

    /// `AsymmetricEncrypt`.
    pub fn asymmetric_encrypt(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: EncryptAlgorithm,
        plaintext: &SecretBytes,
    ) -> Result<(KeyId, Vec<u8>), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::EncryptDecrypt))?;
        Ok((
            id,
            Self::pair(&loaded)?
                .encrypt(alg, plaintext.expose())
                .map_err(map)?,
        ))
    }

    /// `AsymmetricDecrypt`.
    pub fn asymmetric_decrypt(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
        alg: EncryptAlgorithm,
        ciphertext: &[u8],
    ) -> Result<(KeyId, SecretBytes), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, Some(KeyUsage::EncryptDecrypt))?;
        Ok((
            id,
            Self::pair(&loaded)?.decrypt(alg, ciphertext).map_err(map)?,
        ))
    }

    /// `GetPublicKey`: DER SubjectPublicKeyInfo.
    pub fn public_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
    ) -> Result<(KeyId, Vec<u8>), Error> {
        let (id, loaded) = self.key_pair(caller, key, version, None)?;
        Ok((id, Self::pair(&loaded)?.public_key_der().to_vec()))
    }
}
