//! SOFTWARE protection: material generated from the CSPRNG, stored sealed under the root key,
//! and unsealed into a prepared [`AeadKey`] only in memory.

use crate::crypto::{AeadKey, SymmetricAlgorithm};
use crate::ids::KeyVersionId;
use crate::secret::SecretBytes;

use super::{Sealer, UnsealError};

/// The seal identity of a key version's material.
fn identity(version: &KeyVersionId) -> String {
    format!("key-version/{version}")
}

/// Generates fresh material for `alg` and returns it sealed for `version`.
pub fn generate_sealed(
    sealer: &Sealer,
    alg: SymmetricAlgorithm,
    version: &KeyVersionId,
) -> Result<Vec<u8>, UnsealError> {
    let material = SecretBytes::random(alg.key_len());
    sealer.seal(&identity(version), material.expose())
}

/// Unseals `version`'s material and prepares it for `alg`.
pub fn open_sealed(
    sealer: &Sealer,
    alg: SymmetricAlgorithm,
    version: &KeyVersionId,
    sealed: &[u8],
) -> Result<AeadKey, UnsealError> {
    let material = sealer.open(&identity(version), sealed)?;
    AeadKey::new(alg, &material).map_err(|_| UnsealError)
}
