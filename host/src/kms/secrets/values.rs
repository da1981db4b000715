//! Secret values: sealing under a fresh data key, and reading and writing versions.
//!
//! Each version gets its own 256-bit data key from the secret's CMK (`GenerateDataKey` with an
//! EncryptionContext naming the secret id and version), and the value is sealed with AES-256-GCM
//! under it, with the same identity as AAD. Only the data key's ciphertext is stored, so every
//! read goes through the CMK: disabling it stops reads, enabling it restores them, and a
//! version record moved to another secret or version does not open.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::stages;
use super::{DataType, MAX_SECRET_DATA, MAX_VERSIONS, SecretRecord, secret_path, version_path};
use crate::crypto::aead::{NONCE_LEN, SymmetricAlgorithm};
use crate::crypto::{AeadKey, fill_random};
use crate::ids::{KeyRef, SecretRef, SecretVersionId};
use crate::kms::Field;
use crate::kms::crypto_ops::DataKeyLen;
use crate::kms::envelope::EncryptionContext;
use crate::kms::{CAS_RETRIES, Caller, Error, Kms, encode};
use crate::secret::{SecretBytes, SecretString};
use crate::store::{Batch, StoreError, Table};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A value to store: its bytes and how the wire carries it.
#[derive(Debug)]
pub struct NewValue {
    /// `text` or `binary`.
    pub data_type: DataType,
    /// The bytes (UTF-8 for text; decoded for binary).
    pub bytes: SecretBytes,
}

impl NewValue {
    /// A value from the wire: text as it is, binary as base64.
    pub fn from_wire(data: SecretString, data_type: DataType) -> Result<Self, Error> {
        let bytes = match data_type {
            DataType::Text => data.into_bytes(),
            DataType::Binary => SecretBytes::new(
                B64.decode(data.expose().trim())
                    .map_err(|_| Error::invalid(Field::SecretData, "binary data must be base64"))?,
            ),
        };
        if bytes.len() > MAX_SECRET_DATA {
            return Err(Error::invalid(Field::SecretData, "longer than 30720 bytes"));
        }
        Ok(Self { data_type, bytes })
    }
}

/// One stored version: its value sealed under a data key that the CMK sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VersionRecord {
    pub(super) secret_id: String,
    pub(super) version_id: SecretVersionId,
    pub(super) created: i64,
    pub(super) data_type: DataType,
    /// The data key's ciphertext blob (a CMK blob, as GenerateDataKey returns it).
    data_key: String,
    /// base64 of the 12-byte nonce.
    nonce: String,
    /// base64 of the value's ciphertext and tag.
    sealed: String,
}

/// A version as ListSecretVersionIds shows it.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    /// The id.
    pub version_id: SecretVersionId,
    /// Unix seconds.
    pub created: i64,
    /// Its stages.
    pub stages: Vec<String>,
}

/// GetSecretValue's answer.
#[derive(Debug)]
pub struct SecretValue {
    /// The secret.
    pub secret: SecretRecord,
    /// The version read.
    pub version_id: SecretVersionId,
    /// Unix seconds the version was made.
    pub created: i64,
    /// Its stages.
    pub stages: Vec<String>,
    /// `text` or `binary`.
    pub data_type: DataType,
    /// The value as the wire carries it (binary as base64).
    pub data: SecretString,
}

fn context(secret_id: &str, version: &SecretVersionId) -> EncryptionContext {
    EncryptionContext::from_pairs([
        ("arca:secret-id".to_owned(), secret_id.to_owned()),
        ("arca:secret-version".to_owned(), version.to_string()),
    ])
}

fn aad(secret_id: &str, version: &SecretVersionId) -> Vec<u8> {
    format!("arca-secret\0{secret_id}\0{version}").into_bytes()
}

/// The owner, acting on its own key for the envelope (never another account's grant).
fn owner(record: &SecretRecord, action: &str) -> Caller {
    Caller {
        account: record.account_id.clone(),
        admin: false,
        action: action.to_owned(),
        service: None,
    }
}

fn data_key(b64: &SecretString) -> Result<AeadKey, Error> {
    let raw = SecretBytes::new(
        B64.decode(b64.expose())
            .map_err(|_| Error::Internal("data key is not base64".into()))?,
    );
    AeadKey::new(SymmetricAlgorithm::Aes256Gcm, &raw)
        .map_err(|_| Error::Internal("data key has the wrong length".into()))
}

impl Kms {
    /// Seals `value` as version `version` of `record` under a fresh data key.
    pub(super) async fn seal_version(
        &self,
        record: &SecretRecord,
        version: &SecretVersionId,
        value: &NewValue,
    ) -> Result<VersionRecord, Error> {
        let dk = self
            .generate_data_key(
                &owner(record, "GenerateDataKey"),
                &KeyRef::Id(record.encryption_key.clone()),
                DataKeyLen(32),
                &context(&record.secret_id, version),
            )
            .await?;
        let key = data_key(&dk.plaintext_b64)?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut buf = value.bytes.expose().to_vec();
        key.seal(&nonce, &aad(&record.secret_id, version), &mut buf)
            .map_err(|_| Error::Internal("sealing a secret value failed".into()))?;
        Ok(VersionRecord {
            secret_id: record.secret_id.clone(),
            version_id: version.clone(),
            created: self.now(),
            data_type: value.data_type,
            data_key: dk.sealed.blob,
            nonce: B64.encode(nonce),
            sealed: B64.encode(buf),
        })
    }

    /// Opens a version: the CMK must be usable (a disabled key answers `Rejected.Disabled`).
    pub(super) async fn open_version(
        &self,
        record: &SecretRecord,
        v: &VersionRecord,
    ) -> Result<SecretBytes, Error> {
        let opened = self
            .decrypt(
                &owner(record, "Decrypt"),
                &v.data_key,
                &context(&record.secret_id, &v.version_id),
            )
            .await?;
        let key = data_key(&opened.plaintext)?;
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&v.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| Error::Internal("stored nonce is malformed".into()))?;
        let mut buf = SecretBytes::new(
            B64.decode(&v.sealed)
                .map_err(|_| Error::Internal("stored value is malformed".into()))?,
        );
        key.open(
            &nonce,
            &aad(&record.secret_id, &v.version_id),
            buf.expose_mut(),
        )
        .map_err(|_| Error::Internal("a stored secret value did not open".into()))?;
        Ok(buf)
    }

    pub(super) fn version(
        &self,
        record: &SecretRecord,
        version: &SecretVersionId,
    ) -> Result<Option<VersionRecord>, Error> {
        self.get(
            Table::SecretVersions,
            &version_path(&record.secret_id, version),
        )
    }

    fn versions(&self, record: &SecretRecord) -> Result<Vec<VersionRecord>, Error> {
        let mut all: Vec<VersionRecord> =
            self.scan(Table::SecretVersions, &format!("{}/", record.secret_id))?;
        all.sort_by(|a, b| (a.created, &a.version_id).cmp(&(b.created, &b.version_id)));
        Ok(all)
    }

    /// `GetSecretValue`: by version id, by stage (default ACSCurrent), or both (they must
    /// agree).
    pub async fn get_secret_value(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        version_id: Option<&SecretVersionId>,
        stage: Option<&str>,
    ) -> Result<SecretValue, Error> {
        let record = self.secret(caller, secret)?;
        record.live()?;
        let by_stage = |stage: &str| {
            record
                .stages
                .get(stage)
                .cloned()
                .ok_or(Error::SecretVersionNotFound)
        };
        let id = match (version_id, stage) {
            (Some(v), None) => v.clone(),
            (Some(v), Some(s)) => {
                if by_stage(s)? != *v {
                    return Err(Error::SecretVersionNotFound);
                }
                v.clone()
            }
            (None, s) => by_stage(s.unwrap_or(stages::CURRENT))?,
        };
        let v = self
            .version(&record, &id)?
            .ok_or(Error::SecretVersionNotFound)?;
        let bytes = self.open_version(&record, &v).await?;
        let data = match v.data_type {
            DataType::Text => SecretString::new(
                String::from_utf8(bytes.expose().to_vec())
                    .map_err(|_| Error::Internal("a text secret is not UTF-8".into()))?,
            ),
            DataType::Binary => SecretString::new(B64.encode(bytes.expose())),
        };
        Ok(SecretValue {
            stages: stages::of(&record.stages, &id),
            secret: record,
            version_id: id,
            created: v.created,
            data_type: v.data_type,
            data,
        })
    }

    /// `PutSecretValue`: a new version with the given stages (default ACSCurrent). A version id
    /// that exists already is an idempotent success that changes nothing. Returns the stages of
    /// the version.
    pub async fn put_secret_value(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        version: &SecretVersionId,
        value: &NewValue,
        wanted: Option<Vec<String>>,
    ) -> Result<(SecretRecord, Vec<String>), Error> {
        let wanted = wanted.unwrap_or_else(|| vec![stages::CURRENT.to_owned()]);
        if wanted.len() > stages::MAX_STAGES_PER_PUT {
            return Err(Error::invalid(Field::VersionStages, "at most 10 stages"));
        }
        for s in &wanted {
            stages::validate(s)?;
        }
        let (record, _) = self.secret_raw(caller, secret)?;
        record.live()?;
        if record.secret_type.managed() && value.data_type != DataType::Text {
            return Err(Error::invalid(
                Field::SecretDataType,
                "managed secrets hold text values",
            ));
        }
        let sealed = self.seal_version(&record, version, value).await?;
        self.store_version(caller, secret, sealed, &wanted, |_| Ok(()))
            .await
    }

    /// Writes a sealed version and moves `wanted` stages onto it, with `also` applied to the
    /// record in the same compare-and-swap (the rotation engine records its progress there).
    /// Idempotent by version id: an existing version is left as it is.
    pub(super) async fn store_version(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        sealed: VersionRecord,
        wanted: &[String],
        mut also: impl FnMut(&mut SecretRecord) -> Result<(), Error>,
    ) -> Result<(SecretRecord, Vec<String>), Error> {
        for _ in 0..CAS_RETRIES {
            let (mut record, raw) = self.secret_raw(caller, secret)?;
            record.live()?;
            if record.secret_id != sealed.secret_id {
                return Err(Error::SecretNotFound);
            }
            if self.version(&record, &sealed.version_id)?.is_some() {
                let stages = stages::of(&record.stages, &sealed.version_id);
                return Ok((record, stages));
            }
            for s in wanted {
                stages::attach(&mut record.stages, s, &sealed.version_id);
            }
            also(&mut record)?;
            record.updated = self.now();
            let path = secret_path(&record.account_id, &record.name);
            let vpath = version_path(&record.secret_id, &sealed.version_id);
            let mut batch = Batch::new()
                .expect(Table::Secrets, path.clone(), Some(raw))
                .expect(Table::SecretVersions, vpath.clone(), None)
                .put(Table::Secrets, path, encode(&record)?)
                .put(Table::SecretVersions, vpath, encode(&sealed)?);
            // Keep at most MAX_VERSIONS: drop the oldest versions without a stage.
            let existing = self.versions(&record)?;
            let excess = (existing.len() + 1).saturating_sub(MAX_VERSIONS);
            for old in existing
                .iter()
                .filter(|v| stages::of(&record.stages, &v.version_id).is_empty())
                .take(excess)
            {
                batch = batch.delete(
                    Table::SecretVersions,
                    version_path(&record.secret_id, &old.version_id),
                );
            }
            match self.commit(batch).await {
                Ok(()) => {
                    let stages = stages::of(&record.stages, &sealed.version_id);
                    return Ok((record, stages));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("secret update kept conflicting".into()))
    }

    /// `UpdateSecretVersionStage`.
    pub async fn update_secret_version_stage(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        stage: &str,
        remove_from: Option<&SecretVersionId>,
        move_to: Option<&SecretVersionId>,
    ) -> Result<SecretRecord, Error> {
        let record = self.secret(caller, secret)?;
        record.live()?;
        if let Some(to) = move_to
            && self.version(&record, to)?.is_none()
        {
            return Err(Error::SecretVersionNotFound);
        }
        self.update_secret_record(caller, secret, |s| {
            s.live()?;
            stages::update(&mut s.stages, stage, remove_from, move_to)
        })
        .await
    }

    /// `ListSecretVersionIds`: versions with a stage, or all of them (`include_deprecated`).
    pub fn list_secret_versions(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        include_deprecated: bool,
    ) -> Result<(SecretRecord, Vec<VersionInfo>), Error> {
        let record = self.secret(caller, secret)?;
        record.live()?;
        let versions = self
            .versions(&record)?
            .into_iter()
            .map(|v| VersionInfo {
                stages: stages::of(&record.stages, &v.version_id),
                version_id: v.version_id,
                created: v.created,
            })
            .filter(|v| include_deprecated || !v.stages.is_empty())
            .collect();
        Ok((record, versions))
    }
}
