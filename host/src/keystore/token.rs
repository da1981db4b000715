//! The hardware keystore as the domain sees it: key material made, used and destroyed inside a
//! device it never leaves. [`super::hsm::Hsm`] (PKCS#11) is the one implementation today; `kms`
//! holds an `Arc<dyn Token>` and never names it, so another device (a cloud HSM, an external
//! key manager) is a new implementation, not a change to the domain.
//!
//! Every method blocks (a device call); the domain runs them on the blocking pool through
//! [`run`](dyn Token::run).

use std::sync::Arc;

use super::hsm::{
    HsmError, HsmStatus, KeyObjectReport, OaepHash, PairSpec, SignMechanism, Unwrapping,
};
use crate::crypto::aead::NONCE_LEN;
use crate::ids::KeyVersionId;
use crate::secret::SecretBytes;

/// A device holding non-extractable keys, each named by its key version id.
pub trait Token: Send + Sync + std::fmt::Debug {
    /// The device's name for people (a PKCS#11 token's label).
    fn label(&self) -> &str;
    /// Health and session use, for `/metrics` and `arca status`.
    fn status(&self) -> HsmStatus;
    /// Makes an AES key of `bytes` bytes for `version`, usable only to encrypt and decrypt.
    fn generate_aes(&self, version: &KeyVersionId, bytes: usize) -> Result<(), HsmError>;
    /// Makes a key pair for `version`, for signing or for decryption, as `signing` says.
    fn generate_pair(
        &self,
        version: &KeyVersionId,
        spec: PairSpec,
        signing: bool,
    ) -> Result<(), HsmError>;
    /// The public key of `version`'s pair, as DER SubjectPublicKeyInfo.
    fn public_key_der(&self, version: &KeyVersionId, spec: PairSpec) -> Result<Vec<u8>, HsmError>;
    /// Signs a SHA-256 `digest` with `version`'s private key.
    fn sign(
        &self,
        version: &KeyVersionId,
        mechanism: SignMechanism,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError>;
    /// Whether `signature` is `version`'s over `digest`.
    fn verify(
        &self,
        version: &KeyVersionId,
        mechanism: SignMechanism,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, HsmError>;
    /// RSA-OAEP encryption under `version`'s public key.
    fn rsa_encrypt(
        &self,
        version: &KeyVersionId,
        hash: OaepHash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError>;
    /// RSA-OAEP decryption with `version`'s private key.
    fn rsa_decrypt(
        &self,
        version: &KeyVersionId,
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, HsmError>;
    /// AES-GCM sealing under `version`: ciphertext followed by the tag.
    fn gcm_seal(
        &self,
        version: &KeyVersionId,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError>;
    /// AES-GCM opening under `version`; [`HsmError::Rejected`] when the tag does not verify.
    fn gcm_open(
        &self,
        version: &KeyVersionId,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes, HsmError>;
    /// Seals the root key under the device's own wrapping key (made on first use).
    fn seal_root_key(&self, root: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// Opens what [`Token::seal_root_key`] sealed.
    fn open_root_key(&self, blob: &[u8]) -> Result<SecretBytes, HsmError>;
    /// Destroys every object of `version`.
    fn destroy(&self, version: &KeyVersionId) -> Result<(), HsmError>;
    /// The BYOK unwrappings the device accepts.
    fn unwrappings(&self) -> Result<Vec<Unwrapping>, HsmError>;
    /// Makes the RSA-2048 wrapping key pair `id` for an import; its public key as DER.
    fn generate_wrapping_pair(&self, id: &str) -> Result<Vec<u8>, HsmError>;
    /// Destroys the wrapping key pair `id`.
    fn destroy_wrapping_pair(&self, id: &str) -> Result<(), HsmError>;
    /// Unwraps imported AES material of `bytes` bytes as `version`'s key; its key check value.
    fn unwrap_aes(
        &self,
        wrapping_id: &str,
        how: Unwrapping,
        wrapped: &[u8],
        version: &KeyVersionId,
        bytes: usize,
    ) -> Result<Vec<u8>, HsmError>;
    /// What the device says about `version`'s object, and whether its value can be read or
    /// wrapped out (it must not).
    fn inspect(&self, version: &KeyVersionId) -> Result<KeyObjectReport, HsmError>;
}

impl dyn Token {
    /// Runs `f` on the blocking pool: device calls block, and a device that hangs must not
    /// stall the request workers. (Running fast calls in place with `block_in_place` was
    /// measured: no faster at one connection, and much worse p99 under load.)
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&dyn Token) -> Result<T, HsmError> + Send + 'static,
    ) -> Result<T, HsmError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(me.as_ref()))
            .await
            .map_err(|e| HsmError::Unavailable(format!("HSM task: {e}")))?
    }
}
