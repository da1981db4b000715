//! Types for bytes that must never leak: key material, plaintext, AccessKey secrets, the root key.
//!
//! They zeroize on drop, print `[REDACTED]` under `Debug`, and have no `Display`, `PartialEq`,
//! `Serialize` or `Clone`: the only way out is an explicit, grep-able [`SecretBytes::expose`].

use std::fmt;

use zeroize::Zeroizing;

/// Secret bytes (key material, plaintext, a data key).
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when this value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// `len` bytes from the system CSPRNG.
    pub fn random(len: usize) -> Self {
        let mut bytes = vec![0u8; len];
        crate::crypto::fill_random(&mut bytes);
        Self::new(bytes)
    }

    /// The secret itself. Every caller is a place where the secret is used on purpose.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Mutable access, for decrypting in place into the secret's own buffer.
    pub fn expose_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An explicit copy; each call site should say why it needs a second copy.
    pub fn duplicate(&self) -> Self {
        Self::new(self.0.to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

/// A secret string (an AccessKey secret, a request `Plaintext`).
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `s`; it is wiped when this value drops.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Converts into secret bytes without a copy left behind.
    pub fn into_bytes(mut self) -> SecretBytes {
        let s = std::mem::take(&mut *self.0);
        SecretBytes::new(s.into_bytes())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}

/// Serializes a secret string as plain text. The one way a secret leaves its type: into a
/// response body the caller asked for (`#[serde(serialize_with = "…")]`).
pub fn serialize_exposed<S: serde::Serializer>(
    s: &SecretString,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let b = SecretBytes::new(b"hunter2-material".to_vec());
        let s = SecretString::new("hunter2-secret".to_owned());
        let out = format!("{b:?} {s:?}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("REDACTED"));
    }

    #[test]
    fn string_into_bytes_keeps_content() {
        let s = SecretString::new("abc".to_owned());
        assert_eq!(s.into_bytes().expose(), b"abc");
    }
}
