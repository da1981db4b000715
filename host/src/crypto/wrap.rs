//! BYOK envelopes for asymmetric key material (spec §6.6): an ephemeral symmetric key wrapped
//! to Arca's public wrapping key, followed by the private key encrypted with it in ECB mode with
//! PKCS#7 padding.
//!
//! * `RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD`: RSA-OAEP-SHA-256(AES-256 key), 256 bytes for
//!   RSA-2048, then AES-256-ECB(PKCS#8 DER private key).
//! * `SM2PKE_SM4_ECB`: SM2PKE(SM4 key), DER (self-delimiting), then SM4-ECB(32-byte scalar d).
//!
//! ECB is the format's choice, not ours: the outer layer is what protects the material, and the
//! unwrapped key is checked before it is used.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, KeyInit};

use super::asymmetric::{AsymmetricCipher, AsymmetricError, EncryptAlgorithm};
use crate::secret::SecretBytes;

fn ecb_decrypt<C>(key: &SecretBytes, body: &[u8]) -> Result<SecretBytes, AsymmetricError>
where
    C: aes::cipher::BlockCipherDecrypt + KeyInit,
{
    let mode =
        ecb::Decryptor::<C>::new_from_slice(key.expose()).map_err(|_| AsymmetricError::Failed)?;
    let mut buf = SecretBytes::new(body.to_vec());
    let len = mode
        .decrypt_padded::<Pkcs7>(buf.expose_mut())
        .map_err(|_| AsymmetricError::Failed)?
        .len();
    buf.expose_mut().truncate(len);
    Ok(buf)
}

/// Length of a DER element starting at `data[0]` (tag, length, contents).
fn der_len(data: &[u8]) -> Option<usize> {
    let first = usize::from(*data.get(1)?);
    if first < 0x80 {
        return Some(2 + first);
    }
    let n = first & 0x7F;
    if n == 0 || n > 2 {
        return None;
    }
    let len = data
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some(2 + n + len)
}

/// `RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD` with Arca's RSA wrapping key.
pub fn unwrap_rsa_aes(
    wrapping: &dyn AsymmetricCipher,
    modulus_len: usize,
    data: &[u8],
) -> Result<SecretBytes, AsymmetricError> {
    let (head, body) = data
        .split_at_checked(modulus_len)
        .ok_or(AsymmetricError::Failed)?;
    let aes_key = wrapping.decrypt(EncryptAlgorithm::RsaOaepSha256, head)?;
    if aes_key.len() != 32 {
        return Err(AsymmetricError::Failed);
    }
    ecb_decrypt::<aes::Aes256>(&aes_key, body)
}

/// `SM2PKE_SM4_ECB` with Arca's SM2 wrapping key.
pub fn unwrap_sm2_sm4(
    wrapping: &dyn AsymmetricCipher,
    data: &[u8],
) -> Result<SecretBytes, AsymmetricError> {
    let split = der_len(data).ok_or(AsymmetricError::Failed)?;
    let (head, body) = data
        .split_at_checked(split)
        .ok_or(AsymmetricError::Failed)?;
    let sm4_key = wrapping.decrypt(EncryptAlgorithm::Sm2Pke, head)?;
    if sm4_key.len() != 16 {
        return Err(AsymmetricError::Failed);
    }
    ecb_decrypt::<sm4::Sm4>(&sm4_key, body)
}
