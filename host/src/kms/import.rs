//! BYOK: importing key material into `Origin=EXTERNAL` keys.
//!
//! `GetParametersForImport` makes a fresh wrapping key pair per call and a random import
//! token, valid 24 hours and single use. Only the token's SHA-256 is stored, with the sealed
//! wrapping private key. `ImportKeyMaterial` checks the token against the key, unwraps inside
//! Arca, checks the length, and binds the key to that material by a keyed fingerprint: a later
//! import (after `DeleteKeyMaterial` or expiry) must bring the same material, so old
//! ciphertexts keep opening.

use std::sync::Arc;

use base64::Engine;

use super::model::{ImportTokenRecord, KeySpec, KeyState, Origin, ProtectionLevel, VersionRecord};
use super::{CAS_RETRIES, Caller, Error, Kms, encode};
use crate::crypto::asymmetric::{self, EncryptAlgorithm, KeyKind};
use crate::crypto::{constant_time_eq, sha256_hex};
use crate::ids::KeyRef;
use crate::keystore::Token;
use crate::keystore::hsm::{HsmError, Unwrapping};
use crate::keystore::software;
use crate::kms::Field;
use crate::secret::SecretBytes;
use crate::store::{Batch, StoreError, Table};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How long an import token is valid.
pub const TOKEN_LIFETIME: i64 = 24 * 3600;

/// The wrapping algorithms for symmetric material (spec §6.6).
pub const WRAPPING: &[(&str, KeySpec)] = &[
    ("RSAES_PKCS1_V1_5", KeySpec::Rsa2048),
    ("RSAES_OAEP_SHA_1", KeySpec::Rsa2048),
    ("RSAES_OAEP_SHA_256", KeySpec::Rsa2048),
    ("SM2PKE", KeySpec::EcSm2),
];

/// The envelope formats for asymmetric material (spec §6.6; see `crypto::wrap`): RSA and EC
/// private keys as PKCS#8 under the RSA envelope, SM2 keys as their 32-byte scalar under the SM2
/// envelope.
pub const ENVELOPES: &[(&str, KeySpec)] = &[
    ("RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD", KeySpec::Rsa2048),
    ("SM2PKE_SM4_ECB", KeySpec::EcSm2),
];

/// What GetParametersForImport hands out.
#[derive(Debug)]
pub struct ImportParameters {
    /// The key.
    pub key_id: crate::ids::KeyId,
    /// Base64 token for ImportKeyMaterial.
    pub token: crate::secret::SecretString,
    /// DER SubjectPublicKeyInfo of the wrapping key.
    pub public_key_der: Vec<u8>,
    /// Unix seconds.
    pub expires: i64,
}

/// Imported material as the store keeps it.
struct Imported {
    /// The keyed fingerprint that ties re-imports to the first material.
    fingerprint: String,
    /// The material sealed under the root key, base64; empty when it is in the HSM.
    sealed_material: String,
    /// The material is in the HSM.
    hsm: bool,
}

fn token_identity(hash: &str) -> String {
    format!("import-token/{hash}")
}

/// `CKA_ID` of an import's wrapping key pair in the HSM.
pub(super) fn wrapping_id(hash: &str) -> String {
    format!("arca-import/{hash}")
}

/// The wire name of a way to unwrap.
fn unwrapping_name(u: Unwrapping) -> &'static str {
    match u {
        Unwrapping::RsaOaepSha1 => "RSAES_OAEP_SHA_1",
        Unwrapping::RsaOaepSha256 => "RSAES_OAEP_SHA_256",
        Unwrapping::RsaPkcs1 => "RSAES_PKCS1_V1_5",
    }
}

impl Kms {
    /// `GetParametersForImport`.
    pub async fn get_parameters_for_import(
        &self,
        caller: &Caller,
        key: &KeyRef,
        algorithm: &str,
        wrapping_spec: KeySpec,
    ) -> Result<ImportParameters, Error> {
        let record = self.resolve(caller, key)?;
        let allowed = if record.spec.symmetric().is_some() {
            WRAPPING
        } else {
            ENVELOPES
        };
        if !allowed.contains(&(algorithm, wrapping_spec)) {
            return Err(Error::invalid(
                Field::WrappingAlgorithm,
                format!(
                    "not a supported WrappingAlgorithm/WrappingKeySpec pair for {} keys",
                    record.spec
                ),
            ));
        }
        if record.origin != Origin::External {
            return Err(Error::UnsupportedOrigin);
        }
        if record.state == KeyState::PendingDeletion {
            return Err(Error::KeyState(record.state));
        }
        let token = SecretBytes::random(32);
        let hash = sha256_hex(token.expose());
        let in_hsm = record.protection == ProtectionLevel::Hsm;
        let (sealed_private_key, public_key_der) = if in_hsm {
            let hsm = Arc::clone(self.hsm().ok_or(Error::UnsupportedProtectionLevel)?);
            self.hsm_unwrapping(&hsm, algorithm).await?;
            let id = wrapping_id(&hash);
            let der = hsm
                .run(move |h| h.generate_wrapping_pair(&id))
                .await
                .map_err(super::hsm_error)?;
            (String::new(), der)
        } else {
            let kind = wrapping_spec
                .asymmetric()
                .ok_or(Error::Internal("wrapping spec".into()))?;
            let private = asymmetric::generate(kind)
                .map_err(|_| Error::Internal("wrapping key generation".into()))?;
            let public_key_der = asymmetric::load(kind, &private)
                .map_err(|_| Error::Internal("wrapping key".into()))?
                .public_key_der()
                .to_vec();
            let sealed = self
                .sealer
                .seal(&token_identity(&hash), private.expose())
                .map_err(|e| Error::Internal(e.to_string()))?;
            (B64.encode(sealed), public_key_der)
        };
        let expires = self.now() + TOKEN_LIFETIME;
        let entry = ImportTokenRecord {
            key_path: super::keys::key_path(&record.account_id, &record.key_id),
            wrapping_key_spec: wrapping_spec,
            wrapping_algorithm: algorithm.to_owned(),
            sealed_private_key,
            expires,
            hsm: in_hsm,
        };
        self.commit(
            Batch::new()
                .expect(Table::ImportTokens, hash.clone(), None)
                .put(Table::ImportTokens, hash, encode(&entry)?),
        )
        .await?;
        Ok(ImportParameters {
            key_id: record.key_id,
            token: crate::secret::SecretString::new(B64.encode(token.expose())),
            public_key_der,
            expires,
        })
    }

    /// `ImportKeyMaterial`. `expire_unix` 0 means the material never expires.
    pub async fn import_key_material(
        &self,
        caller: &Caller,
        key: &KeyRef,
        token: &str,
        encrypted: &[u8],
        expire_unix: i64,
    ) -> Result<(), Error> {
        let token = B64
            .decode(token.trim())
            .map_err(|_| Error::InvalidImportToken)?;
        let hash = sha256_hex(&token);
        let (entry, entry_raw) = self
            .get_raw::<ImportTokenRecord>(Table::ImportTokens, &hash)?
            .ok_or(Error::InvalidImportToken)?;
        let record = self.resolve(caller, key)?;
        let path = super::keys::key_path(&record.account_id, &record.key_id);
        if entry.key_path != path {
            return Err(Error::InvalidImportToken);
        }
        let now = self.now();
        if entry.expires <= now {
            return Err(Error::ExpiredImportToken);
        }
        if expire_unix != 0 && expire_unix <= now {
            return Err(Error::invalid(
                Field::KeyMaterialExpireUnix,
                "must be 0 or in the future",
            ));
        }
        if entry.hsm {
            return self
                .import_into_hsm(&record, &hash, &entry, entry_raw, encrypted, expire_unix)
                .await;
        }
        let private = self
            .sealer
            .open(
                &token_identity(&hash),
                &B64.decode(&entry.sealed_private_key)
                    .map_err(|_| Error::InvalidImportToken)?,
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
        let material = open_envelope(&entry.wrapping_algorithm, &private, encrypted)?;
        let usable = match (record.spec.symmetric(), record.spec.asymmetric()) {
            (Some(alg), _) => material.len() == alg.key_len(),
            (None, Some(kind)) => asymmetric::load(kind, &material).is_ok(),
            (None, None) => false,
        };
        if !usable {
            return Err(Error::InvalidKeyMaterial);
        }
        let fingerprint = hex::encode(
            self.sealer
                .fingerprint(&format!("key/{path}"), material.expose()),
        );
        let version_id = record.primary_version.clone();
        let sealed = software::seal_material(&self.sealer, &version_id, &material)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.commit_import(
            &path,
            &hash,
            entry_raw,
            Imported {
                fingerprint,
                sealed_material: B64.encode(sealed),
                hsm: false,
            },
            expire_unix,
        )
        .await
    }

    /// The HSM half of `ImportKeyMaterial`: the material is unwrapped inside the token, never
    /// seen by Arca; a key check value computed in the token stands in for it in the
    /// fingerprint that ties re-imports to the first material.
    async fn import_into_hsm(
        &self,
        record: &super::model::KeyRecord,
        hash: &str,
        entry: &ImportTokenRecord,
        entry_raw: Vec<u8>,
        encrypted: &[u8],
        expire_unix: i64,
    ) -> Result<(), Error> {
        let hsm = Arc::clone(self.hsm().ok_or_else(|| {
            Error::HsmUnavailable("this import token's wrapping key is in an HSM".into())
        })?);
        let how = self.hsm_unwrapping(&hsm, &entry.wrapping_algorithm).await?;
        let bytes = record
            .spec
            .symmetric()
            .map(|a| a.key_len())
            .ok_or(Error::InvalidKeyMaterial)?;
        let path = super::keys::key_path(&record.account_id, &record.key_id);
        let version = record.primary_version.clone();
        let (id, v, wrapped) = (wrapping_id(hash), version.clone(), encrypted.to_vec());
        let check = hsm
            .run(move |h| h.unwrap_aes(&id, how, &wrapped, &v, bytes))
            .await
            .map_err(|e| match e {
                HsmError::Rejected => Error::InvalidKeyMaterial,
                other => super::hsm_error(other),
            })?;
        let fingerprint = hex::encode(self.sealer.fingerprint(&format!("key/{path}"), &check));
        let done = self
            .commit_import(
                &path,
                hash,
                entry_raw,
                Imported {
                    fingerprint,
                    sealed_material: String::new(),
                    hsm: true,
                },
                expire_unix,
            )
            .await;
        if done.is_err() {
            // The key still waits for its material: the object unwrapped for it must not stay.
            let v = version.clone();
            if let Err(e) = hsm.run(move |h| h.destroy(&v)).await {
                tracing::error!(version = %version, error = %e, "removing a refused import from the HSM failed");
            }
        } else {
            let id = wrapping_id(hash);
            if let Err(e) = hsm.run(move |h| h.destroy_wrapping_pair(&id)).await {
                tracing::warn!(error = %e, "destroying a used wrapping key in the HSM failed");
            }
        }
        done
    }

    /// How the HSM unwraps material wrapped with `algorithm`, or a refusal naming the
    /// algorithms this token can unwrap.
    pub(super) async fn hsm_unwrapping(
        &self,
        hsm: &Arc<dyn Token>,
        algorithm: &str,
    ) -> Result<Unwrapping, Error> {
        let offered = hsm
            .run(|h| h.unwrappings())
            .await
            .map_err(super::hsm_error)?;
        let wanted = Unwrapping::ALL
            .into_iter()
            .find(|u| unwrapping_name(*u) == algorithm);
        match wanted {
            Some(u) if offered.contains(&u) => Ok(u),
            _ => {
                let names: Vec<&str> = offered.iter().map(|u| unwrapping_name(*u)).collect();
                Err(Error::HsmCannot(format!(
                    "this HSM token cannot unwrap key material wrapped with {algorithm}; it \
                     unwraps {} (WrappingKeySpec RSA_2048)",
                    names.join(", ")
                )))
            }
        }
    }

    /// Binds a key to imported material: the version record, the key back to `Enabled`, and
    /// the import token used up, in one commit.
    async fn commit_import(
        &self,
        path: &str,
        hash: &str,
        entry_raw: Vec<u8>,
        material: Imported,
        expire_unix: i64,
    ) -> Result<(), Error> {
        let Imported {
            fingerprint,
            sealed_material,
            hsm,
        } = material;
        let now = self.now();
        for _ in 0..CAS_RETRIES {
            let Some((mut key, raw)) = self.key_at(path)? else {
                return Err(Error::KeyNotFound);
            };
            if key.state != KeyState::PendingImport {
                return Err(Error::KeyState(key.state));
            }
            if let Some(known) = &key.material_fingerprint
                && !constant_time_eq(known.as_bytes(), fingerprint.as_bytes())
            {
                return Err(Error::InvalidKeyMaterial);
            }
            let version_id = key.primary_version.clone();
            let version = VersionRecord {
                version_id: version_id.clone(),
                key_id: key.key_id.clone(),
                account_id: key.account_id.clone(),
                created: now,
                sealed_material: sealed_material.clone(),
                destroyed: false,
                hsm,
            };
            key.state = KeyState::Enabled;
            key.material_fingerprint = Some(fingerprint.clone());
            key.material_expire = (expire_unix != 0).then_some(expire_unix);
            let new_raw = encode(&key)?;
            let batch = Batch::new()
                .expect(Table::Keys, path, Some(raw))
                .expect(Table::ImportTokens, hash, Some(entry_raw.clone()))
                .put(Table::Keys, path, new_raw.clone())
                .put(Table::KeyVersions, version_id.as_str(), encode(&version)?)
                .delete(Table::ImportTokens, hash);
            match self.commit(batch).await {
                Ok(()) => {
                    self.remember_key(path, key, new_raw);
                    self.forget_version(&version_id);
                    return Ok(());
                }
                Err(StoreError::Conflict) => self.forget_key(path),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("key import kept conflicting".into()))
    }

    /// `DeleteKeyMaterial` (and expiry): the key returns to `PendingImport`, its material gone.
    pub async fn delete_key_material(&self, caller: &Caller, key: &KeyRef) -> Result<(), Error> {
        let record = self.resolve(caller, key)?;
        if record.origin != Origin::External {
            return Err(Error::UnsupportedOrigin);
        }
        self.drop_material(
            &super::keys::key_path(&record.account_id, &record.key_id),
            false,
        )
        .await
        .map(|_| ())
    }

    /// Removes an EXTERNAL key's material; with `only_if_expired`, only once it has expired.
    pub(super) async fn drop_material(
        &self,
        path: &str,
        only_if_expired: bool,
    ) -> Result<bool, Error> {
        for _ in 0..CAS_RETRIES {
            let Some((mut key, raw)) = self.key_at(path)? else {
                return Err(Error::KeyNotFound);
            };
            if only_if_expired && key.material_expire.is_none_or(|t| t > self.now()) {
                return Ok(false);
            }
            match key.state {
                KeyState::Enabled | KeyState::Disabled => {}
                KeyState::PendingImport => return Ok(false),
                other => return Err(Error::KeyState(other)),
            }
            key.state = KeyState::PendingImport;
            key.material_expire = None;
            let new_raw = encode(&key)?;
            let mut batch = Batch::new().expect(Table::Keys, path, Some(raw)).put(
                Table::Keys,
                path,
                new_raw.clone(),
            );
            for v in &key.versions {
                if let Some(mut version) =
                    self.get::<VersionRecord>(Table::KeyVersions, v.as_str())?
                {
                    version.sealed_material.clear();
                    batch = batch.put(Table::KeyVersions, v.as_str(), encode(&version)?);
                }
            }
            match self.commit(batch).await {
                Ok(()) => {
                    for v in &key.versions {
                        self.forget_version(v);
                    }
                    if key.protection == ProtectionLevel::Hsm
                        && let Some(hsm) = self.hsm()
                    {
                        // The material goes from the token too; a re-import unwraps it again.
                        for v in key.versions.clone() {
                            if let Err(e) = hsm.run(move |h| h.destroy(&v)).await {
                                tracing::error!(error = %e, "removing imported material from the HSM failed");
                            }
                        }
                    }
                    self.remember_key(path, key, new_raw);
                    return Ok(true);
                }
                Err(StoreError::Conflict) => self.forget_key(path),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal(
            "key material removal kept conflicting".into(),
        ))
    }
}

/// Opens a BYOK envelope (`EncryptedKeyMaterial`) wrapped with `wrapping_algorithm` under the
/// import token's private key. Everything in `encrypted` is the client's: lengths, DER and
/// padding are checked, never trusted (fuzzed in tests/fuzz).
pub fn open_envelope(
    wrapping_algorithm: &str,
    private: &SecretBytes,
    encrypted: &[u8],
) -> Result<SecretBytes, Error> {
    let bad = |_| Error::InvalidKeyMaterial;
    match wrapping_algorithm {
        "RSAES_PKCS1_V1_5" => asymmetric::rsa_pkcs1_decrypt(private, encrypted).map_err(bad),
        "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD" => {
            let key = asymmetric::load(KeyKind::Rsa(2048), private)
                .map_err(|_| Error::Internal("wrapping key".into()))?;
            crate::crypto::wrap::unwrap_rsa_aes(key.as_ref(), 256, encrypted).map_err(bad)
        }
        "SM2PKE_SM4_ECB" => {
            let key = asymmetric::load(KeyKind::Sm2, private)
                .map_err(|_| Error::Internal("wrapping key".into()))?;
            crate::crypto::wrap::unwrap_sm2_sm4(key.as_ref(), encrypted).map_err(bad)
        }
        other => {
            let (kind, alg) = match other {
                "RSAES_OAEP_SHA_1" => (KeyKind::Rsa(2048), EncryptAlgorithm::RsaOaepSha1),
                "RSAES_OAEP_SHA_256" => (KeyKind::Rsa(2048), EncryptAlgorithm::RsaOaepSha256),
                "SM2PKE" => (KeyKind::Sm2, EncryptAlgorithm::Sm2Pke),
                _ => return Err(Error::InvalidImportToken),
            };
            let key = asymmetric::load(kind, private)
                .map_err(|_| Error::Internal("wrapping key".into()))?;
            key.decrypt(alg, encrypted).map_err(bad)
        }
    }
}
