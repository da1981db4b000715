//! SOFTWARE protection: material generated from the CSPRNG, stored sealed under the root key,
//! and unsealed only in memory.

use crate::crypto::asymmetric;
use crate::ids::KeyVersionId;
use crate::kms::model::KeySpec;
use crate::secret::SecretBytes;

use super::{Sealer, UnsealError};

/// The seal identity of a key version's material.
fn identity(version: &KeyVersionId) -> String {
    format!("key-version/{version}")
}

/// Generates fresh material for `spec`. RSA key generation can take a second, so async
/// callers run this on the blocking pool.
pub fn generate_material(spec: KeySpec) -> Result<SecretBytes, UnsealError> {
    match (spec.symmetric(), spec.asymmetric(), spec.mac()) {
        (Some(alg), _, _) => Ok(SecretBytes::random(alg.key_len())),
        (None, Some(kind), _) => asymmetric::generate(kind).map_err(|_| UnsealError),
        (None, None, Some(mac)) => Ok(SecretBytes::random(mac.key_len())),
        (None, None, None) => Err(UnsealError),
    }
}

/// Seals given material (imported by BYOK) for `version`.
pub fn seal_material(
    sealer: &Sealer,
    version: &KeyVersionId,
    material: &SecretBytes,
) -> Result<Vec<u8>, UnsealError> {
    sealer.seal(&identity(version), material.expose())
}

/// Unseals `version`'s material.
pub fn open_sealed(
    sealer: &Sealer,
    version: &KeyVersionId,
    sealed: &[u8],
) -> Result<SecretBytes, UnsealError> {
    sealer.open(&identity(version), sealed)
}
