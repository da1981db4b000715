//! Cryptographic primitives behind one internal seam, with the backend chosen per algorithm by
//! measurement (`shared/research/crypto-hsm-feasibility.md` §5): aws-lc-rs for AES-GCM (about
//! 2.5x RustCrypto here, constant time), RustCrypto for SM4 (aws-lc has none).
//!
//! Pure functions and prepared keys only: no I/O, no clock.

pub mod aead;
pub mod asymmetric;
pub mod mac;
mod secp256k1;
mod sm2;
pub mod wrap;

pub use aead::{AeadKey, SymmetricAlgorithm, SymmetricCipher};

use aws_lc_rs::rand::SecureRandom;

/// Fills `buf` from the operating system's CSPRNG (through aws-lc).
pub fn fill_random(buf: &mut [u8]) {
    // SystemRandom only fails if the OS RNG is unavailable; there is no safe way to continue
    // a KMS without randomness, so fail loudly rather than emit predictable keys.
    #[expect(
        clippy::panic,
        reason = "no randomness means no safe key generation at all"
    )]
    if aws_lc_rs::rand::SystemRandom::new().fill(buf).is_err() {
        panic!("the operating system's random number generator failed");
    }
}

/// `len` random characters from `[a-z0-9]`, for identifiers.
pub fn random_alnum(len: usize) -> String {
    random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", len)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols).
pub fn random_from(alphabet: &[u8], len: usize) -> String {
    let n = alphabet.len().clamp(1, 256);
    // Rejection sampling keeps the distribution uniform: accept bytes below the largest
    // multiple of n that fits in a byte.
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill_random(&mut buf);
        for b in buf.iter().map(|b| usize::from(*b)).filter(|b| *b < limit) {
            if out.len() == len {
                break;
            }
            if let Some(c) = alphabet.get(b % n) {
                out.push(char::from(*c));
            }
        }
    }
    out
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// HMAC-SHA256.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&k, msg).as_ref().to_vec()
}

/// HMAC-SHA1, only for Alibaba's V1 request signatures (a MAC, where SHA-1 is still sound).
pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    aws_lc_rs::hmac::sign(&k, msg).as_ref().to_vec()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// HKDF-SHA256 expansion of `ikm` into a 32-byte key for the purpose named by `info`.
pub fn derive_key(ikm: &[u8], info: &[u8]) -> crate::secret::SecretBytes {
    use aws_lc_rs::hkdf;
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = vec![0u8; 32];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"arca/v1").extract(ikm);
    let infos = [info];
    // Expanding 32 bytes from SHA-256 cannot exceed HKDF's 255*32 limit, so these never fail.
    if let Ok(okm) = prk.expand(&infos, Len32) {
        let _ = okm.fill(&mut out);
    }
    crate::secret::SecretBytes::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_alnum_has_length_and_alphabet() {
        let s = random_alnum(40);
        assert_eq!(s.len(), 40);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn hmac_known_answers() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 2202 test case 2.
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn derived_keys_depend_on_purpose() {
        let a = derive_key(b"root", b"a");
        let b = derive_key(b"root", b"b");
        assert_eq!(a.len(), 32);
        assert_ne!(a.expose(), b.expose());
    }
}
