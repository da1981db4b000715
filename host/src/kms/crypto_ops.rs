//! The symmetric data plane: Encrypt, Decrypt, ReEncrypt and data keys.

use std::sync::Arc;

use base64::Engine;

use super::envelope::{Blob, EncryptionContext, aad};
use super::model::{KeyRecord, KeyState, KeyUsage, VersionRecord};
use super::{Caller, Error, Kms, LoadedVersion, Prepared};
use crate::crypto::AeadKey;
use crate::crypto::aead::NONCE_LEN;
use crate::crypto::asymmetric;
use crate::crypto::fill_random;
use crate::ids::{AccountId, KeyId, KeyRef, KeyVersionId};
use crate::keystore::software;
use crate::kms::Field;
use crate::secret::{SecretBytes, SecretString};
use crate::store::Table;

/// Largest Encrypt plaintext, in bytes (spec: 6 KiB).
pub const MAX_PLAINTEXT: usize = 6 * 1024;

/// A ciphertext and the key version that made it.
#[derive(Debug)]
pub struct Sealed {
    /// The key.
    pub key_id: KeyId,
    /// The version that sealed it.
    pub version: KeyVersionId,
    /// The base64 blob.
    pub blob: String,
}

/// A decrypted plaintext and the key version that opened it.
#[derive(Debug)]
pub struct Opened {
    /// The key.
    pub key_id: KeyId,
    /// The version that opened it.
    pub version: KeyVersionId,
    /// The plaintext as the SDK expects it back: the UTF-8 string that was encrypted.
    pub plaintext: SecretString,
}

/// A data key: its plaintext (base64 text, as the SDKs return it) and its ciphertext.
#[derive(Debug)]
pub struct DataKey {
    /// The ciphertext of the base64 text of the key.
    pub sealed: Sealed,
    /// base64 of the raw key bytes.
    pub plaintext_b64: SecretString,
}

/// How long a data key is: `NumberOfBytes` (1–1024) or a `KeySpec` (`AES_256`, `AES_128`).
#[derive(Debug, Clone, Copy)]
pub struct DataKeyLen(pub usize);

impl DataKeyLen {
    /// Validates `NumberOfBytes`.
    pub fn bytes(n: usize) -> Result<Self, Error> {
        if (1..=1024).contains(&n) {
            Ok(Self(n))
        } else {
            Err(Error::invalid(
                Field::NumberOfBytes,
                "must be between 1 and 1024",
            ))
        }
    }

    /// Validates `KeySpec`.
    pub fn spec(spec: &str) -> Result<Self, Error> {
        match spec {
            "AES_256" => Ok(Self(32)),
            "AES_128" => Ok(Self(16)),
            _ => Err(Error::invalid(Field::KeySpec, "must be AES_256 or AES_128")),
        }
    }
}

fn usable_for_encryption(key: &KeyRecord) -> Result<(), Error> {
    match key.state {
        KeyState::Enabled => {}
        other => return Err(Error::KeyState(other)),
    }
    if key.usage != KeyUsage::EncryptDecrypt || key.spec.symmetric().is_none() {
        return Err(Error::Unsupported(
            "the key is not a symmetric ENCRYPT/DECRYPT key",
        ));
    }
    Ok(())
}

/// The two cryptographic domains a symmetric key serves. The shared gateway makes blobs with
/// server-chosen IVs and AADs of its own shape (version ‖ canonical context); the instance
/// data plane takes the caller's IV and raw AAD, as Alibaba's instance API does. Sealing both
/// under one key would let a data-plane caller replay a blob's IV for its keystream, or choose
/// an AAD that mints a gateway blob. So the instance domain uses a second key derived from the
/// material (software keys) and, always, AADs behind a tag no gateway AAD starts with; an HSM
/// key, whose material cannot be derived from, takes no caller-chosen IV there
/// (`dataplane::ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    /// Blobs of the shared gateway (and of services' server-side encryption).
    Gateway,
    /// Raw ciphertexts and Advance blobs of a KMS instance's data plane.
    Instance,
}

/// The HKDF info naming a software key's instance-domain key.
const INSTANCE_KEY_INFO: &[u8] = b"arca/kms-instance-data-plane/v1";
/// What every instance-domain AAD starts with: a gateway AAD starts with a key version id.
const INSTANCE_AAD_TAG: &[u8] = b"\0arca-instance/1\0";

impl Domain {
    fn aad(self, aad: Vec<u8>) -> Vec<u8> {
        match self {
            Domain::Gateway => aad,
            Domain::Instance => [INSTANCE_AAD_TAG, &aad].concat(),
        }
    }
}

/// Whether a data-plane AAD may be tried as the data plane sealed before the domains were
/// split: not when it has a gateway blob's shape (this version's id, then a context), which
/// would let the data plane open gateway blobs. An Advance blob's AAD (the version, then
/// `arca-raw/1`) is the data plane's own.
fn legacy_instance_aad(version: &KeyVersionId, aad: &[u8]) -> bool {
    match aad.strip_prefix(version.as_str().as_bytes()) {
        None => true,
        Some(rest) => rest.starts_with(super::envelope::RAW_AAD_TAG),
    }
}

impl Kms {
    /// A version's prepared material, unsealed once and then served from memory.
    ///
    /// A version of `owner`'s destroyed key answers "key not found"; anything that is not
    /// `owner`'s, or does not exist, answers "invalid ciphertext", so that another account's
    /// ciphertexts are indistinguishable from garbage.
    pub(super) fn load_version(
        &self,
        owner: &AccountId,
        version: &KeyVersionId,
    ) -> Result<Arc<LoadedVersion>, Error> {
        if let Some(v) = self
            .versions
            .read()
            .ok()
            .and_then(|m| m.get(version).cloned())
        {
            if v.account_id != *owner {
                return Err(Error::InvalidCiphertext);
            }
            if let Some(i) = &v.instance {
                self.admit(i)?;
            }
            return Ok(v);
        }
        let Some(record) = self.get::<VersionRecord>(Table::KeyVersions, version.as_str())? else {
            return Err(Error::InvalidCiphertext);
        };
        if record.account_id != *owner {
            return Err(Error::InvalidCiphertext);
        }
        if record.destroyed {
            return Err(Error::KeyNotFound);
        }
        let key_path = super::keys::key_path(&record.account_id, &record.key_id);
        let (key, _) = self.key_at(&key_path)?.ok_or(Error::KeyNotFound)?;
        if let Some(i) = &key.instance {
            self.admit(i)?;
        }
        if record.hsm {
            if key.state == KeyState::PendingImport {
                return Err(Error::KeyState(key.state));
            }
            // The material is in the token; only its handle is ever loaded.
            let hsm = self.hsm().ok_or_else(|| {
                Error::HsmUnavailable(format!(
                    "key version {version} lives in an HSM, and none is configured"
                ))
            })?;
            let cipher = match super::keys::token_key(key.spec)? {
                super::keys::TokenKey::Aes(_) => Prepared::Hsm(Arc::clone(hsm)),
                super::keys::TokenKey::Pair(spec) => Prepared::HsmPair(
                    super::asymmetric_ops::HsmPair::new(Arc::clone(hsm), version.clone(), spec),
                ),
            };
            let loaded = Arc::new(LoadedVersion {
                key_id: record.key_id,
                account_id: record.account_id,
                instance: key.instance.clone(),
                cipher,
                instance_cipher: None,
            });
            if let Ok(mut m) = self.versions.write() {
                m.insert(version.clone(), Arc::clone(&loaded));
            }
            return Ok(loaded);
        }
        if record.sealed_material.is_empty() {
            // Imported material was deleted or expired: the key waits for it again.
            return Err(match key.state {
                KeyState::Enabled => {
                    Error::Internal(format!("key version {version} has no material"))
                }
                other => Error::KeyState(other),
            });
        }
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&record.sealed_material)
            .map_err(|e| Error::Internal(format!("version record: {e}")))?;
        let material = software::open_sealed(&self.sealer, version, &sealed)
            .map_err(|e| Error::Internal(format!("key version {version}: {e}")))?;
        let unusable = |_| Error::Internal(format!("key version {version}: material unusable"));
        let mut instance_cipher = None;
        let cipher = match (key.spec.symmetric(), key.spec.asymmetric(), key.spec.mac()) {
            (Some(alg), _, _) => {
                let derived = crate::crypto::derive_key(material.expose(), INSTANCE_KEY_INFO);
                let derived = SecretBytes::new(
                    derived
                        .expose()
                        .get(..alg.key_len())
                        .ok_or_else(|| unusable(()))?
                        .to_vec(),
                );
                instance_cipher = Some(AeadKey::new(alg, &derived).map_err(|_| unusable(()))?);
                Prepared::Symmetric(AeadKey::new(alg, &material).map_err(|_| unusable(()))?)
            }
            (None, Some(kind), _) => {
                Prepared::Asymmetric(asymmetric::load(kind, &material).map_err(|_| unusable(()))?)
            }
            (None, None, Some(alg)) => {
                Prepared::Mac(Box::new(crate::crypto::mac::MacKey::new(alg, &material)))
            }
            (None, None, None) => return Err(unusable(())),
        };
        let loaded = Arc::new(LoadedVersion {
            key_id: record.key_id,
            account_id: record.account_id,
            instance: key.instance,
            cipher,
            instance_cipher,
        });
        if let Ok(mut m) = self.versions.write() {
            m.insert(version.clone(), Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// The account and key of a version, from memory when it is loaded.
    fn version_owner(&self, version: &KeyVersionId) -> Result<Option<(AccountId, KeyId)>, Error> {
        if let Some(v) = self
            .versions
            .read()
            .ok()
            .and_then(|m| m.get(version).cloned())
        {
            return Ok(Some((v.account_id.clone(), v.key_id.clone())));
        }
        Ok(self
            .get::<VersionRecord>(Table::KeyVersions, version.as_str())?
            .map(|r| (r.account_id, r.key_id)))
    }

    async fn seal_with(
        &self,
        key: &KeyRecord,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, Error> {
        usable_for_encryption(key)?;
        let version = &key.primary_version;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let buf = self
            .gcm_seal(
                key,
                version,
                Domain::Gateway,
                nonce,
                aad(version, context),
                plaintext,
            )
            .await?;
        let blob = Blob {
            version: version.clone(),
            nonce,
            sealed: buf,
        };
        Ok(Sealed {
            key_id: key.key_id.clone(),
            version: version.clone(),
            blob: blob.to_base64(),
        })
    }

    /// The key of `version`, when it is `caller`'s (the instance data plane's Advance blobs
    /// name only the version).
    pub(crate) fn key_of_version(
        &self,
        caller: &Caller,
        version: &KeyVersionId,
    ) -> Result<Option<KeyRecord>, Error> {
        match self.version_owner(version)? {
            Some((owner, key_id)) if owner == caller.account => Ok(self
                .key_at(&super::keys::key_path(&owner, &key_id))?
                .map(|(k, _)| k)),
            _ => Ok(None),
        }
    }

    /// AES/SM4-GCM under `version` of `key` in `domain`: where every symmetric sealing
    /// happens, for blobs and for the instance data plane's raw ciphertexts. Returns
    /// ciphertext ‖ tag.
    pub(crate) async fn gcm_seal(
        &self,
        key: &KeyRecord,
        version: &KeyVersionId,
        domain: Domain,
        nonce: [u8; NONCE_LEN],
        aad: Vec<u8>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let loaded = self.load_version(&key.account_id, version)?;
        let aad = domain.aad(aad);
        match (&loaded.cipher, domain, &loaded.instance_cipher) {
            (Prepared::Symmetric(cipher), Domain::Gateway, _)
            | (Prepared::Symmetric(_), Domain::Instance, Some(cipher)) => {
                let mut buf = plaintext.to_vec();
                if cipher.seal(&nonce, &aad, &mut buf).is_err() {
                    // The buffer still holds plaintext: wipe it before reporting.
                    drop(SecretBytes::new(buf));
                    return Err(Error::Internal("seal failed".into()));
                }
                Ok(buf)
            }
            (Prepared::Hsm(hsm), _, _) => {
                let (v, input) = (version.clone(), SecretBytes::new(plaintext.to_vec()));
                hsm.run(move |h| h.gcm_seal(&v, &nonce, &aad, input.expose()))
                    .await
                    .map_err(super::hsm_error)
            }
            (Prepared::Symmetric(_), Domain::Instance, None) => {
                Err(Error::Internal("no instance key was derived".into()))
            }
            (Prepared::Asymmetric(_) | Prepared::HsmPair(_) | Prepared::Mac(_), _, _) => Err(
                Error::Unsupported("the key is not a symmetric ENCRYPT/DECRYPT key"),
            ),
        }
    }

    /// Opens what [`Kms::gcm_seal`] sealed, after checking that `key` is usable.
    ///
    /// In the instance domain, a ciphertext that does not open under the instance key is tried
    /// once more as the data plane sealed before the domains were split (under the version's
    /// own key, with the caller's AAD as it is), unless its AAD has a gateway blob's shape: so
    /// old data-plane ciphertexts keep opening, and no gateway blob opens here.
    pub(crate) async fn gcm_open(
        &self,
        key: &KeyRecord,
        version: &KeyVersionId,
        domain: Domain,
        nonce: [u8; NONCE_LEN],
        aad: Vec<u8>,
        sealed: Vec<u8>,
    ) -> Result<(Arc<LoadedVersion>, SecretBytes), Error> {
        let loaded = self.load_version(&key.account_id, version)?;
        match key.state {
            KeyState::Enabled => {}
            other => return Err(Error::KeyState(other)),
        }
        let out = match (&loaded.cipher, domain, &loaded.instance_cipher) {
            (Prepared::Symmetric(cipher), Domain::Gateway, _) => {
                let mut out = SecretBytes::new(sealed);
                cipher
                    .open(&nonce, &aad, out.expose_mut())
                    .map_err(|_| Error::InvalidCiphertext)?;
                out
            }
            (Prepared::Symmetric(gateway), Domain::Instance, Some(cipher)) => {
                let mut out = SecretBytes::new(sealed.clone());
                if cipher
                    .open(&nonce, &domain.aad(aad.clone()), out.expose_mut())
                    .is_ok()
                {
                    out
                } else if legacy_instance_aad(version, &aad) {
                    let mut out = SecretBytes::new(sealed);
                    gateway
                        .open(&nonce, &aad, out.expose_mut())
                        .map_err(|_| Error::InvalidCiphertext)?;
                    out
                } else {
                    return Err(Error::InvalidCiphertext);
                }
            }
            (Prepared::Hsm(hsm), _, _) => {
                let (v, tagged) = (version.clone(), domain.aad(aad.clone()));
                let first = sealed.clone();
                let opened = hsm
                    .run(move |h| h.gcm_open(&v, &nonce, &tagged, &first))
                    .await
                    .map_err(super::hsm_error);
                match opened {
                    // As for software keys: a data-plane ciphertext sealed before the split.
                    Err(Error::InvalidCiphertext)
                        if domain == Domain::Instance && legacy_instance_aad(version, &aad) =>
                    {
                        let v = version.clone();
                        hsm.run(move |h| h.gcm_open(&v, &nonce, &aad, &sealed))
                            .await
                            .map_err(super::hsm_error)?
                    }
                    other => other?,
                }
            }
            // A symmetric blob header naming an asymmetric key's version: not ours to open.
            (
                Prepared::Symmetric(_)
                | Prepared::Asymmetric(_)
                | Prepared::HsmPair(_)
                | Prepared::Mac(_),
                _,
                _,
            ) => {
                return Err(Error::InvalidCiphertext);
            }
        };
        Ok((loaded, out))
    }

    /// `Encrypt`: seals `plaintext` (at most 6 KiB) under the key's primary version.
    pub async fn encrypt(
        &self,
        caller: &Caller,
        key: &KeyRef,
        plaintext: &SecretBytes,
        context: &EncryptionContext,
    ) -> Result<Sealed, Error> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::invalid(Field::Plaintext, "longer than 6144 bytes"));
        }
        let key = self.resolve(caller, key)?;
        self.seal_with(&key, plaintext.expose(), context).await
    }

    /// `Decrypt`: finds the key version from the blob header, checks the key's state, and opens.
    pub async fn decrypt(
        &self,
        caller: &Caller,
        blob: &str,
        context: &EncryptionContext,
    ) -> Result<Opened, Error> {
        let blob =
            Blob::parse(blob).map_err(|e| Error::invalid(Field::CiphertextBlob, e.to_string()))?;
        // Whose key sealed it: the caller's own, or another account's whose key policy grants
        // the caller this action. Anything else is indistinguishable from garbage.
        let (owner, key_id) = self
            .version_owner(&blob.version)?
            .ok_or(Error::InvalidCiphertext)?;
        let Some((key, _)) = self.key_at(&super::keys::key_path(&owner, &key_id))? else {
            // The version outlived its key: the key was destroyed after its deletion window.
            return Err(if owner == caller.account {
                Error::KeyNotFound
            } else {
                Error::InvalidCiphertext
            });
        };
        if super::policy::check(caller, &key).is_err() {
            return Err(Error::InvalidCiphertext);
        }
        super::service_keys::guard(caller, &key)?;
        let aad = aad(&blob.version, context);
        let (loaded, out) = self
            .gcm_open(
                &key,
                &blob.version,
                Domain::Gateway,
                blob.nonce,
                aad,
                blob.sealed,
            )
            .await?;
        let text = std::str::from_utf8(out.expose()).map_err(|_| Error::InvalidCiphertext)?;
        Ok(Opened {
            key_id: loaded.key_id.clone(),
            version: blob.version,
            plaintext: SecretString::new(text.to_owned()),
        })
    }

    /// The key that sealed `blob`, when the caller could open it (its own, or granted by the
    /// key's policy): what the access policy is asked about before a Decrypt. Opens nothing.
    pub fn key_of_blob(&self, caller: &Caller, blob: &str) -> Result<Option<KeyRecord>, Error> {
        let Ok(blob) = Blob::parse(blob) else {
            return Ok(None);
        };
        let Some((owner, key_id)) = self.version_owner(&blob.version)? else {
            return Ok(None);
        };
        let Some((key, _)) = self.key_at(&super::keys::key_path(&owner, &key_id))? else {
            return Ok(None);
        };
        Ok(super::policy::check(caller, &key).is_ok().then_some(key))
    }

    /// `ReEncrypt`: opens under the source context and seals under the destination key.
    pub async fn re_encrypt(
        &self,
        caller: &Caller,
        blob: &str,
        source_context: &EncryptionContext,
        destination: &KeyRef,
        destination_context: &EncryptionContext,
    ) -> Result<Sealed, Error> {
        let opened = self.decrypt(caller, blob, source_context).await?;
        let key = self.resolve(caller, destination)?;
        self.seal_with(
            &key,
            opened.plaintext.expose().as_bytes(),
            destination_context,
        )
        .await
    }

    /// `GenerateDataKey` (and, dropping the plaintext, `GenerateDataKeyWithoutPlaintext`).
    ///
    /// The blob seals the base64 text of the key, so that `Decrypt` returns exactly the
    /// `Plaintext` field (the Alibaba convention, spec §6.2).
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        len: DataKeyLen,
        context: &EncryptionContext,
    ) -> Result<DataKey, Error> {
        let key = self.resolve(caller, key)?;
        let raw = SecretBytes::random(len.0);
        let b64 = SecretString::new(base64::engine::general_purpose::STANDARD.encode(raw.expose()));
        let sealed = self
            .seal_with(&key, b64.expose().as_bytes(), context)
            .await?;
        Ok(DataKey {
            sealed,
            plaintext_b64: b64,
        })
    }
}

/// A caller's public key to export a data key to (`WrappingKeySpec`, `WrappingAlgorithm`,
/// `PublicKeyBlob`).
#[derive(Debug, Clone)]
pub struct ExportTarget {
    /// `RSA_2048` or `EC_SM2`.
    pub kind: crate::crypto::asymmetric::KeyKind,
    /// An algorithm that fits `kind`.
    pub algorithm: crate::crypto::asymmetric::EncryptAlgorithm,
    /// DER SubjectPublicKeyInfo.
    pub public_der: Vec<u8>,
}

impl ExportTarget {
    fn wrap(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        asymmetric::encrypt_to_public_key(self.kind, self.algorithm, &self.public_der, plaintext)
            .map_err(super::asymmetric_ops::map)
    }
}

impl Kms {
    /// `GenerateAndExportDataKey`: a new data key, sealed under the CMK and also encrypted to
    /// the caller's public key. The exported plaintext is the base64 text of the key, the same
    /// bytes `Decrypt` returns for the CiphertextBlob.
    pub async fn generate_and_export_data_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        len: DataKeyLen,
        context: &EncryptionContext,
        target: &ExportTarget,
    ) -> Result<(Sealed, Vec<u8>), Error> {
        let dk = self.generate_data_key(caller, key, len, context).await?;
        let exported = target.wrap(dk.plaintext_b64.expose().as_bytes())?;
        Ok((dk.sealed, exported))
    }

    /// `ExportDataKey`: opens a data-key ciphertext and encrypts the data key to the caller's
    /// public key instead of returning it.
    pub async fn export_data_key(
        &self,
        caller: &Caller,
        blob: &str,
        context: &EncryptionContext,
        target: &ExportTarget,
    ) -> Result<(Opened, Vec<u8>), Error> {
        let opened = self.decrypt(caller, blob, context).await?;
        let exported = target.wrap(opened.plaintext.expose().as_bytes())?;
        Ok((opened, exported))
    }
}

impl Kms {
    /// `ReEncrypt` of a public-key ciphertext (AsymmetricEncrypt or an exported data key):
    /// decrypted with the source key version, sealed under the destination key.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per ReEncrypt parameter"
    )]
    pub async fn re_encrypt_asymmetric(
        &self,
        caller: &Caller,
        source: &KeyRef,
        source_version: &KeyVersionId,
        algorithm: asymmetric::EncryptAlgorithm,
        ciphertext: &[u8],
        destination: &KeyRef,
        destination_context: &EncryptionContext,
    ) -> Result<Sealed, Error> {
        let (_, plaintext) = self
            .asymmetric_decrypt(caller, source, source_version, algorithm, ciphertext)
            .await?;
        let key = self.resolve(caller, destination)?;
        self.seal_with(&key, plaintext.expose(), destination_context)
            .await
    }
}
