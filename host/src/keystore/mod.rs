//! Where key material lives, and the root of the key hierarchy.
//!
//! ```text
//! root key (root.key, ARCA_ROOT_KEY or --root-key-file; 256 bits)
//!   └─ HKDF("arca/store-seal/v1") = storage KEK
//!        └─ AES-256-GCM seal of every stored secret, AAD = the record's identity
//!             ├─ CMK version material   (AAD "key-version/<version id>")
//!             └─ AccessKey secrets      (AAD "access-key/<AccessKey id>")
//! ```
//! Binding the record identity as AAD means a sealed blob copied onto another record does not
//! open. With `--root-key-hsm` the root key itself is kept wrapped by a non-extractable AES key
//! in the PKCS#11 token (`root.key.hsm`), so the data directory alone opens nothing. SOFTWARE protection is this module; the HSM keystore (PKCS#11) comes with issue 7 and
//! slots in beside [`software`].

pub mod hsm;
pub mod software;
mod token;

pub use token::Token;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;

use crate::crypto::{self, AeadKey, SymmetricAlgorithm};
use crate::secret::{SecretBytes, SecretString};

/// Length of the root key in bytes.
pub const ROOT_KEY_LEN: usize = 32;

/// Why the root key could not be loaded or does not fit the store.
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    /// The key source exists but does not hold 32 bytes in hex or base64.
    #[error("the root key from {0} is not 32 bytes of hex or base64")]
    Malformed(String),
    /// Reading or writing the key file failed.
    #[error("root key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The HSM that wraps the root key could not unwrap or wrap it.
    #[error("root key in the HSM: {0}")]
    Hsm(String),
    /// The store was sealed under a different root key.
    #[error(
        "the root key does not match this data directory (it was created with a different key); \
         refusing to start"
    )]
    Mismatch,
}

/// The root key. Lives only in memory, zeroized on drop.
#[derive(Debug)]
pub struct RootKey(SecretBytes);

impl RootKey {
    /// Parses 64 hex characters or base64 of 32 bytes (whitespace around is ignored).
    pub fn parse(text: &SecretString, source: &str) -> Result<Self, RootKeyError> {
        let t = text.expose().trim();
        let bytes = if t.len() == 2 * ROOT_KEY_LEN {
            hex::decode(t).ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(t).ok()
        };
        match bytes {
            Some(b) if b.len() == ROOT_KEY_LEN => Ok(Self(SecretBytes::new(b))),
            Some(b) => {
                drop(SecretBytes::new(b));
                Err(RootKeyError::Malformed(source.to_owned()))
            }
            None => Err(RootKeyError::Malformed(source.to_owned())),
        }
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, RootKeyError> {
        let text = fs::read_to_string(path).map_err(|source| RootKeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&SecretString::new(text), &path.display().to_string())
    }

    /// Generates a new key and writes it (hex) to `path` with mode 0600, failing if it exists.
    pub fn create(path: &Path) -> Result<Self, RootKeyError> {
        let key = SecretBytes::random(ROOT_KEY_LEN);
        let io = |source| RootKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = SecretString::new(format!("{}\n", hex::encode(key.expose())));
        write_new_durably(path, text.expose().as_bytes()).map_err(io)?;
        Ok(Self(key))
    }

    /// The root key wrapped by the HSM (`--root-key-hsm`), kept at `path` (`root.key.hsm`): the
    /// data directory then holds nothing that opens the store without the token.
    ///
    /// An existing wrapped key is unwrapped in the token. Otherwise the key in `plain` (a
    /// `root.key` from before the HSM) is wrapped, written and then removed; or, for a new
    /// data directory (`fresh`), a new key is generated and wrapped.
    pub fn in_hsm(
        hsm: &dyn Token,
        path: &Path,
        plain: &Path,
        fresh: bool,
    ) -> Result<Self, RootKeyError> {
        let io = |source| RootKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let token = |e: hsm::HsmError| RootKeyError::Hsm(e.to_string());
        if path.exists() {
            let blob = fs::read(path).map_err(io)?;
            let key = hsm.open_root_key(&blob).map_err(|e| match e {
                hsm::HsmError::Rejected | hsm::HsmError::Missing(_) => RootKeyError::Hsm(format!(
                    "{} does not open with this token (its root-wrapping key is not the one, or \
                     it has none)",
                    path.display()
                )),
                other => token(other),
            })?;
            if key.len() != ROOT_KEY_LEN {
                return Err(RootKeyError::Malformed(path.display().to_string()));
            }
            return Ok(Self(key));
        }
        let (key, migrated) = if plain.exists() {
            (Self::load(plain)?, true)
        } else if fresh {
            (Self(SecretBytes::random(ROOT_KEY_LEN)), false)
        } else {
            return Err(RootKeyError::Hsm(format!(
                "{} is missing and the data directory is not new",
                path.display()
            )));
        };
        let blob = hsm.seal_root_key(key.0.expose()).map_err(token)?;
        // The wrapped copy must be durable before the plaintext copy goes.
        write_new_durably(path, &blob).map_err(io)?;
        if migrated {
            fs::remove_file(plain).map_err(|source| RootKeyError::Io {
                path: plain.display().to_string(),
                source,
            })?;
            tracing::info!(
                file = %plain.display(),
                "the root key is now wrapped by the HSM; the plaintext root key file was removed"
            );
        }
        Ok(key)
    }

    /// The key that seals the audit trail (`arca audit verify` needs the same root key).
    pub fn audit_key(&self) -> crate::secret::SecretBytes {
        crypto::derive_key(self.0.expose(), b"arca/audit-seal/v1")
    }

    /// The key of the replay cache's digests, so that they are the same after a restart.
    pub fn replay_key(&self) -> crate::secret::SecretBytes {
        crypto::derive_key(self.0.expose(), b"arca/replay-cache/v1")
    }

    /// The sealer for stored secrets, derived from this root key.
    pub fn sealer(&self) -> Sealer {
        let kek = crypto::derive_key(self.0.expose(), b"arca/store-seal/v1");
        Sealer {
            // A 32-byte key always fits AES-256-GCM.
            key: AeadKey::new(SymmetricAlgorithm::Aes256Gcm, &kek).ok(),
            mac_key: crypto::derive_key(self.0.expose(), b"arca/fingerprint/v1"),
        }
    }
}

/// Writes a new file (mode 0600, never over an existing one) and syncs it to disk.
fn write_new_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Seals and opens stored secrets under the storage KEK.
#[derive(Debug)]
pub struct Sealer {
    key: Option<AeadKey>,
    mac_key: SecretBytes,
}

/// A sealed value did not open: wrong root key, or the record was tampered with or moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a sealed record did not open")]
pub struct UnsealError;

impl Sealer {
    /// `nonce ‖ AES-256-GCM(secret) ‖ tag`, with `identity` as AAD.
    pub fn seal(&self, identity: &str, secret: &[u8]) -> Result<Vec<u8>, UnsealError> {
        let key = self.key.as_ref().ok_or(UnsealError)?;
        let mut nonce = [0u8; 12];
        crypto::fill_random(&mut nonce);
        let mut buf = secret.to_vec();
        let sealed = key.seal(&nonce, identity.as_bytes(), &mut buf);
        let out = sealed.map(|()| {
            let mut out = Vec::with_capacity(12 + buf.len());
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&buf);
            out
        });
        // On failure `buf` still holds the plaintext; wipe it either way.
        drop(SecretBytes::new(buf));
        out.map_err(|_| UnsealError)
    }

    /// A keyed fingerprint of a secret (HMAC-SHA256 under a root-derived key): lets Arca
    /// recognise material it has seen (BYOK re-import) without storing it in the clear.
    pub fn fingerprint(&self, identity: &str, secret: &[u8]) -> Vec<u8> {
        let mut msg = identity.as_bytes().to_vec();
        msg.push(0);
        msg.extend_from_slice(secret);
        let mac = crypto::hmac_sha256(self.mac_key.expose(), &msg);
        drop(SecretBytes::new(msg));
        mac
    }

    /// Opens what [`Sealer::seal`] made for the same `identity`.
    pub fn open(&self, identity: &str, sealed: &[u8]) -> Result<SecretBytes, UnsealError> {
        let key = self.key.as_ref().ok_or(UnsealError)?;
        let (nonce, body) = sealed.split_first_chunk::<12>().ok_or(UnsealError)?;
        let mut out = SecretBytes::new(body.to_vec());
        key.open(nonce, identity.as_bytes(), out.expose_mut())
            .map_err(|_| UnsealError)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_under_their_identity_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKey::create(&dir.path().join("root.key")).unwrap();
        let sealer = root.sealer();
        let sealed = sealer.seal("key-version/1", b"material").unwrap();
        assert_eq!(
            sealer.open("key-version/1", &sealed).unwrap().expose(),
            b"material"
        );
        assert_eq!(
            sealer.open("key-version/2", &sealed).unwrap_err(),
            UnsealError
        );
        let other = RootKey::parse(&SecretString::new("00".repeat(32)), "test").unwrap();
        assert_eq!(
            other.sealer().open("key-version/1", &sealed).unwrap_err(),
            UnsealError
        );
    }

    #[test]
    fn key_file_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let a = RootKey::create(&path).unwrap();
        let b = RootKey::load(&path).unwrap();
        assert_eq!(a.0.expose(), b.0.expose());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            RootKey::create(&path).is_err(),
            "never overwrites a root key"
        );
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        let err = RootKey::parse(&SecretString::new("abcd".into()), "ARCA_ROOT_KEY").unwrap_err();
        assert!(err.to_string().contains("ARCA_ROOT_KEY"));
        assert!(!err.to_string().contains("abcd"));
    }
}
