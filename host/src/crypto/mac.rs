//! HMAC keys (GenerateMac/VerifyMac and the instance data plane's Hmac), through aws-lc-rs,
//! whose verification compares in constant time.

use aws_lc_rs::hmac;

use crate::secret::SecretBytes;

/// An HMAC algorithm, by its API name (`HMAC_SHA_256`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlgorithm {
    /// HMAC-SHA-224.
    Sha224,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

impl MacAlgorithm {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha224 => "HMAC_SHA_224",
            Self::Sha256 => "HMAC_SHA_256",
            Self::Sha384 => "HMAC_SHA_384",
            Self::Sha512 => "HMAC_SHA_512",
        }
    }

    /// The algorithm by its API name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sha224, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// The key length Arca generates: the hash's output length (RFC 2104 §3).
    pub fn key_len(self) -> usize {
        match self {
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    fn aws(self) -> hmac::Algorithm {
        match self {
            Self::Sha224 => hmac::HMAC_SHA224,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// A prepared HMAC key.
pub struct MacKey {
    alg: MacAlgorithm,
    key: hmac::Key,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacKey({}, [REDACTED])", self.alg.name())
    }
}

impl MacKey {
    /// Prepares `material` for `alg`.
    pub fn new(alg: MacAlgorithm, material: &SecretBytes) -> Self {
        Self {
            alg,
            key: hmac::Key::new(alg.aws(), material.expose()),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> MacAlgorithm {
        self.alg
    }

    /// The MAC of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, message).as_ref().to_vec()
    }

    /// Whether `tag` is `message`'s MAC (constant-time comparison).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, message, tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2() {
        // Key "Jefe", data "what do ya want for nothing?".
        let key = MacKey::new(MacAlgorithm::Sha256, &SecretBytes::new(b"Jefe".to_vec()));
        let tag = key.sign(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(key.verify(b"what do ya want for nothing?", &tag));
        assert!(!key.verify(b"what do ya want for nothing!", &tag));
        assert!(!key.verify(b"what do ya want for nothing?", &tag[..31]));
    }
}
