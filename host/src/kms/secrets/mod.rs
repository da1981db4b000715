//! Secrets Manager: named, versioned secrets whose values are envelope-encrypted under a CMK.
//!
//! A secret is one record (`Table::Secrets`, at `account/name`) holding its metadata and the
//! stage → version map; each version is a record of its own (`Table::SecretVersions`, at
//! `secret id/version id`) holding the value sealed under a fresh data key. Every change to
//! a secret is a compare-and-swap on its record, so concurrent writers never lose a stage move.
//! Versions hang off an internal secret id rather than the name, so a name deleted and made
//! again never sees the old secret's versions.

pub mod rotation;
pub mod stages;
mod values;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use values::{NewValue, SecretValue, VersionInfo};

use super::model::{KeyState, KeyUsage};
use super::{CAS_RETRIES, Caller, Error, Kms, encode};
use crate::ids::{AccountId, KeyId, KeyRef, SecretName, SecretRef, SecretVersionId};
use crate::kms::Field;
use crate::store::{Batch, StoreError, Table};

/// Largest `SecretData`, in bytes (spec: 30 KB).
pub const MAX_SECRET_DATA: usize = 30 * 1024;
/// Longest `ExtendedConfig`, in characters.
pub const MAX_EXTENDED_CONFIG: usize = 1024;
/// Longest `Description`.
pub const MAX_DESCRIPTION: usize = 8192;
/// Versions kept per secret; beyond it the oldest version without a stage is dropped.
pub const MAX_VERSIONS: usize = 100;
/// Shortest and longest automatic rotation interval for secrets: 6 h – 8760 h.
pub const ROTATION_RANGE: std::ops::RangeInclusive<u64> = 6 * 3600..=8760 * 3600;
/// `RecoveryWindowInDays` bounds and default.
pub const RECOVERY_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
/// The recovery window when none is given.
pub const DEFAULT_RECOVERY_DAYS: u32 = 30;

/// What kind of secret, which decides the value's shape and which rotator handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecretType {
    /// Any value; the client rotates it, or the generic rotator makes random values.
    Generic,
    /// Database credentials (PostgreSQL here): `{"AccountName", "AccountPassword"}`.
    Rds,
    /// Redis credentials.
    Redis,
    /// An AccessKey pair of an Arca account.
    #[serde(rename = "RAMCredentials")]
    RamCredentials,
    /// ECS credentials.
    #[serde(rename = "ECS")]
    Ecs,
    /// PolarDB credentials.
    #[serde(rename = "PolarDB")]
    PolarDb,
}

impl SecretType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "Generic",
            Self::Rds => "Rds",
            Self::Redis => "Redis",
            Self::RamCredentials => "RAMCredentials",
            Self::Ecs => "ECS",
            Self::PolarDb => "PolarDB",
        }
    }

    /// Parses the wire name (case-insensitively: filters use `RDS`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        [
            Self::Generic,
            Self::Rds,
            Self::Redis,
            Self::RamCredentials,
            Self::Ecs,
            Self::PolarDb,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            Error::invalid(
                Field::SecretType,
                "one of Generic, Rds, Redis, RAMCredentials, ECS, PolarDB",
            )
        })
    }

    /// Managed types hold credentials of another system; their values are JSON text.
    pub fn managed(self) -> bool {
        self != Self::Generic
    }
}

/// `text` or `binary` (base64 on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// UTF-8 text.
    Text,
    /// Bytes, base64 on the wire.
    Binary,
}

impl DataType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Binary => "binary",
        }
    }

    /// Parses `SecretDataType`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(Self::Text),
            "binary" => Ok(Self::Binary),
            _ => Err(Error::invalid(Field::SecretDataType, "text or binary")),
        }
    }
}

/// A rotation in progress: which version it is making and how far it got. Persisted after
/// every step, so a crash or a failing plugin leaves a rotation that resumes (or is abandoned)
/// with ACSCurrent untouched until the last step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationState {
    /// The version being made (it carries ACSPending once created).
    pub version: SecretVersionId,
    /// The last step that completed (`None`: not even create-pending).
    pub done: Option<String>,
    /// Unix seconds when the rotation started.
    pub started: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure, for DescribeSecret and the operator.
    pub last_error: Option<String>,
    /// Unix seconds before which no new attempt starts (back-off after a failure).
    pub retry_after: i64,
}

/// A secret's metadata (the value lives in its versions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Internal id binding versions to this secret (names can be reused after deletion).
    pub secret_id: String,
    /// The owner.
    pub account_id: AccountId,
    /// The name.
    pub name: SecretName,
    /// The kind of secret.
    pub secret_type: SecretType,
    /// Free text.
    pub description: String,
    /// The CMK whose data keys seal the versions.
    pub encryption_key: KeyId,
    /// JSON text: type-specific settings (`SecretSubType`, accounts, `CustomData`, the rotator).
    pub extended_config: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last change.
    pub updated: i64,
    /// Whether scheduled rotation is on.
    pub automatic_rotation: bool,
    /// Seconds between rotations.
    pub rotation_interval: Option<u64>,
    /// Unix seconds of the last completed rotation.
    pub last_rotation: Option<i64>,
    /// Unix seconds when the next scheduled rotation is due.
    pub next_rotation: Option<i64>,
    /// Set while the secret waits out its recovery window.
    pub planned_delete: Option<i64>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The secret policy (`None`: the owner only).
    pub policy: Option<String>,
    /// Stage → version.
    pub stages: stages::Stages,
    /// A rotation in progress.
    #[serde(default)]
    pub rotation: Option<RotationState>,
    /// The KMS instance the secret was placed in (`DKMSInstanceId`), if any.
    #[serde(default)]
    pub instance: Option<crate::ids::InstanceId>,
}

impl SecretRecord {
    /// Refuses while the secret waits to be deleted (spec: `Rejected.ResourceInDeleteWindow`).
    pub fn live(&self) -> Result<(), Error> {
        if self.planned_delete.is_some() {
            Err(Error::SecretInDeleteWindow)
        } else {
            Ok(())
        }
    }

    /// The `AutomaticRotation` field.
    pub fn rotation_status(&self) -> &'static str {
        match (self.automatic_rotation, &self.rotation) {
            (false, _) => "Disabled",
            // Repeated failures: rotation cannot proceed until someone looks.
            (true, Some(r)) if r.attempts >= MAX_ROTATION_ATTEMPTS => "Invalid",
            (true, _) => "Enabled",
        }
    }
}

/// Failed attempts after which a rotation is reported `Invalid` (it keeps retrying, slower).
pub const MAX_ROTATION_ATTEMPTS: u32 = 5;

/// What CreateSecret asks for, validated by the API layer where it can be.
#[derive(Debug)]
pub struct NewSecret {
    /// The name (`$Auto` already expanded for RAM secrets).
    pub name: SecretName,
    /// The kind.
    pub secret_type: SecretType,
    /// The first version's id.
    pub version: SecretVersionId,
    /// The first value.
    pub value: NewValue,
    /// Free text.
    pub description: String,
    /// The CMK to use; `None`: the account's default key.
    pub encryption_key: Option<KeyRef>,
    /// Type-specific settings (JSON object text).
    pub extended_config: Option<String>,
    /// `Some(seconds)`: rotate on this schedule.
    pub rotation: Option<u64>,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// A secret policy.
    pub policy: Option<String>,
    /// The KMS instance to place the secret in (`DKMSInstanceId`); its CMK must be a key of
    /// the same instance.
    pub instance: Option<crate::ids::InstanceId>,
}

/// A ListSecrets filter (values OR, filters AND).
#[derive(Debug, Clone)]
pub enum SecretFilter {
    /// `SecretName`: exact names.
    Name(Vec<String>),
    /// `Description`: substrings.
    Description(Vec<String>),
    /// `TagKey`.
    TagKey(Vec<String>),
    /// `TagValue`.
    TagValue(Vec<String>),
    /// `SecretType`.
    Type(Vec<SecretType>),
    /// `Creator`: the owner's uid.
    Creator(Vec<String>),
    /// `DKMSInstanceId`: placed in any of these KMS instances.
    Instance(Vec<String>),
}

impl SecretFilter {
    fn matches(&self, s: &SecretRecord) -> bool {
        match self {
            Self::Name(v) => v.iter().any(|n| n == s.name.as_str()),
            Self::Description(v) => v.iter().any(|d| s.description.contains(d.as_str())),
            Self::TagKey(v) => v.iter().any(|k| s.tags.contains_key(k)),
            Self::TagValue(v) => s.tags.values().any(|t| v.contains(t)),
            Self::Type(v) => v.contains(&s.secret_type),
            Self::Creator(v) => v.iter().any(|c| c == s.account_id.as_str()),
            Self::Instance(v) => s
                .instance
                .as_ref()
                .is_some_and(|i| v.iter().any(|x| x == i.as_str())),
        }
    }
}

pub(super) fn secret_path(account: &AccountId, name: &SecretName) -> String {
    format!("{account}/{name}")
}

fn version_path(secret_id: &str, version: &SecretVersionId) -> String {
    format!("{secret_id}/{version}")
}

/// Checks `ExtendedConfig`: a JSON object of at most 1024 characters.
pub fn validate_extended_config(text: &str) -> Result<(), Error> {
    if text.chars().count() > MAX_EXTENDED_CONFIG {
        return Err(Error::invalid(
            Field::ExtendedConfig,
            "longer than 1024 characters",
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(Error::invalid(
            Field::ExtendedConfig,
            "must be a JSON object",
        )),
    }
}

/// Checks a rotation interval in seconds against 6 h – 8760 h.
pub fn check_rotation_interval(seconds: u64) -> Result<(), Error> {
    if ROTATION_RANGE.contains(&seconds) {
        Ok(())
    } else {
        Err(Error::invalid(
            Field::RotationInterval,
            "must be between 6 hours and 8760 hours (365 days)",
        ))
    }
}

impl Kms {
    /// Finds a secret by name or ARN. Another account's secret is visible only where its
    /// policy grants the caller the current action.
    pub fn secret(&self, caller: &Caller, secret: &SecretRef) -> Result<SecretRecord, Error> {
        self.secret_raw(caller, secret).map(|(s, _)| s)
    }

    fn secret_raw(
        &self,
        caller: &Caller,
        secret: &SecretRef,
    ) -> Result<(SecretRecord, Vec<u8>), Error> {
        let (account, name) = match secret {
            SecretRef::Name(n) => (&caller.account, n),
            SecretRef::Arn {
                region,
                account,
                name,
            } => {
                if *region != self.region {
                    return Err(Error::SecretNotFound);
                }
                (account, name)
            }
        };
        let (record, raw) = self
            .get_raw::<SecretRecord>(Table::Secrets, &secret_path(account, name))?
            .ok_or(Error::SecretNotFound)?;
        if record.account_id != caller.account {
            let granted = record
                .policy
                .as_deref()
                .and_then(|p| super::policy::KeyPolicy::parse(p).ok())
                .is_some_and(|p| p.allows(&caller.account, &caller.action));
            if !granted {
                return Err(Error::NoPermission);
            }
        }
        Ok((record, raw))
    }

    /// Applies `change` to a secret with compare-and-swap, retrying when another write raced
    /// it. `change` sees the current record each time.
    pub(crate) async fn update_secret_record(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        mut change: impl FnMut(&mut SecretRecord) -> Result<(), Error>,
    ) -> Result<SecretRecord, Error> {
        for _ in 0..CAS_RETRIES {
            let (mut record, raw) = self.secret_raw(caller, secret)?;
            change(&mut record)?;
            record.updated = self.now();
            let path = secret_path(&record.account_id, &record.name);
            let batch = Batch::new()
                .expect(Table::Secrets, path.clone(), Some(raw))
                .put(Table::Secrets, path, encode(&record)?);
            match self.commit(batch).await {
                Ok(()) => return Ok(record),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("secret update kept conflicting".into()))
    }

    /// The CMK a secret will be sealed under: the named one (own, symmetric, enabled), or the
    /// account's default key.
    async fn secret_key(
        &self,
        caller: &Caller,
        key: Option<&KeyRef>,
        instance: Option<&crate::ids::InstanceId>,
    ) -> Result<KeyId, Error> {
        let Some(key) = key else {
            if instance.is_some() {
                return Err(Error::MissingParameter(Field::EncryptionKeyId));
            }
            return self.default_key(&caller.account).await;
        };
        let k = self.resolve(caller, key)?;
        if k.instance.as_ref() != instance {
            return Err(Error::invalid(
                Field::EncryptionKeyId,
                "must be a key of the same KMS instance as the secret (or, outside instances, a \
                 key outside them)",
            ));
        }
        if k.account_id != caller.account {
            return Err(Error::invalid(
                Field::EncryptionKeyId,
                "must be a key of the secret's own account",
            ));
        }
        if k.spec.asymmetric().is_some() || k.usage != KeyUsage::EncryptDecrypt {
            return Err(Error::invalid(
                Field::EncryptionKeyId,
                "must be a symmetric ENCRYPT/DECRYPT key",
            ));
        }
        if k.state != KeyState::Enabled {
            return Err(Error::KeyState(k.state));
        }
        Ok(k.key_id)
    }

    /// `CreateSecret`: the secret and its first version (ACSCurrent), in one durable write.
    pub async fn create_secret(
        &self,
        caller: &Caller,
        req: NewSecret,
    ) -> Result<SecretRecord, Error> {
        if req.description.chars().count() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                Field::Description,
                "longer than 8192 characters",
            ));
        }
        if let Some(c) = &req.extended_config {
            validate_extended_config(c)?;
        }
        if req.secret_type.managed() && req.value.data_type != DataType::Text {
            return Err(Error::invalid(
                Field::SecretDataType,
                "managed secrets hold text values",
            ));
        }
        if let Some(interval) = req.rotation {
            check_rotation_interval(interval)?;
        }
        if let Some(p) = &req.policy {
            super::policy::KeyPolicy::parse(p)?;
        }
        let mut tags = BTreeMap::new();
        super::tags::merge(&mut tags, &req.tags)?;
        let path = secret_path(&caller.account, &req.name);
        if self
            .get_raw::<SecretRecord>(Table::Secrets, &path)?
            .is_some()
        {
            return Err(Error::SecretExists);
        }
        let placement = match &req.instance {
            Some(id) => Some(self.place_in_instance(caller, id, true).await?.1),
            None => None,
        };
        let encryption_key = self
            .secret_key(caller, req.encryption_key.as_ref(), req.instance.as_ref())
            .await?;
        let now = self.now();
        let mut record = SecretRecord {
            secret_id: crate::ids::KeyVersionId::generate().to_string(),
            account_id: caller.account.clone(),
            name: req.name,
            secret_type: req.secret_type,
            description: req.description,
            encryption_key,
            extended_config: req.extended_config,
            created: now,
            updated: now,
            automatic_rotation: req.rotation.is_some(),
            rotation_interval: req.rotation,
            last_rotation: None,
            next_rotation: req.rotation.map(|i| now.saturating_add_unsigned(i)),
            planned_delete: None,
            tags,
            policy: req.policy,
            stages: stages::Stages::new(),
            rotation: None,
            instance: req.instance,
        };
        stages::attach(&mut record.stages, stages::CURRENT, &req.version);
        let version = self.seal_version(&record, &req.version, &req.value).await?;
        let batch = Batch::new()
            .expect(Table::Secrets, path.clone(), None)
            .put(Table::Secrets, path, encode(&record)?)
            .put(
                Table::SecretVersions,
                version_path(&record.secret_id, &req.version),
                encode(&version)?,
            );
        let committed = self.commit(batch).await;
        drop(placement);
        match committed {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict) => Err(Error::SecretExists),
            Err(e) => Err(e.into()),
        }
    }

    /// `ListSecrets`: the caller's secrets passing every filter, by creation time.
    pub fn list_secrets(
        &self,
        caller: &Caller,
        filters: &[SecretFilter],
    ) -> Result<Vec<SecretRecord>, Error> {
        let mut all: Vec<SecretRecord> = self
            .scan::<SecretRecord>(Table::Secrets, &format!("{}/", caller.account))?
            .into_iter()
            .filter(|s| filters.iter().all(|f| f.matches(s)))
            .collect();
        all.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(all)
    }

    /// `UpdateSecret`: the description and/or `ExtendedConfig.CustomData`.
    pub async fn update_secret(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        description: Option<String>,
        custom_data: Option<serde_json::Value>,
    ) -> Result<SecretRecord, Error> {
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            return Err(Error::invalid(
                Field::Description,
                "longer than 8192 characters",
            ));
        }
        self.update_secret_record(caller, secret, |s| {
            s.live()?;
            if let Some(d) = &description {
                s.description.clone_from(d);
            }
            if let Some(data) = &custom_data {
                let mut config = match s.extended_config.as_deref().map(serde_json::from_str) {
                    Some(Ok(serde_json::Value::Object(m))) => m,
                    _ => serde_json::Map::new(),
                };
                config.insert("CustomData".into(), data.clone());
                let text = serde_json::Value::Object(config).to_string();
                validate_extended_config(&text)?;
                s.extended_config = Some(text);
            }
            Ok(())
        })
        .await
    }

    /// `UpdateSecretRotationPolicy`.
    pub async fn update_secret_rotation_policy(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        enable: bool,
        interval: Option<u64>,
    ) -> Result<SecretRecord, Error> {
        if enable {
            match interval {
                Some(i) => check_rotation_interval(i)?,
                None => return Err(Error::MissingParameter(Field::RotationInterval)),
            }
        }
        let now = self.now();
        self.update_secret_record(caller, secret, |s| {
            s.live()?;
            s.automatic_rotation = enable;
            if enable {
                s.rotation_interval = interval;
                let from = s.last_rotation.unwrap_or(now).max(now);
                s.next_rotation = interval.map(|i| from.saturating_add_unsigned(i));
            } else {
                s.next_rotation = None;
            }
            Ok(())
        })
        .await
    }

    /// `DeleteSecret`: at once (`force`), or after a recovery window. Returns the planned time.
    pub async fn delete_secret(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        force: bool,
        window_days: u32,
    ) -> Result<Option<i64>, Error> {
        if !RECOVERY_DAYS.contains(&window_days) {
            return Err(Error::invalid(
                Field::RecoveryWindowInDays,
                "must be between 7 and 30",
            ));
        }
        if force {
            let record = self.secret(caller, secret)?;
            if record.account_id != caller.account {
                return Err(Error::NoPermission);
            }
            self.destroy_secret(&record).await?;
            return Ok(None);
        }
        let at = self.now() + i64::from(window_days) * 86_400;
        let record = self
            .update_secret_record(caller, secret, |s| {
                if s.account_id != caller.account {
                    return Err(Error::NoPermission);
                }
                s.live()?;
                s.planned_delete = Some(at);
                Ok(())
            })
            .await?;
        Ok(record.planned_delete)
    }

    /// `RestoreSecret`: cancels a pending deletion.
    pub async fn restore_secret(
        &self,
        caller: &Caller,
        secret: &SecretRef,
    ) -> Result<SecretRecord, Error> {
        self.update_secret_record(caller, secret, |s| {
            if s.planned_delete.is_none() {
                return Err(Error::invalid(
                    Field::SecretName,
                    "the secret is not pending deletion",
                ));
            }
            s.planned_delete = None;
            Ok(())
        })
        .await
    }

    /// Removes a secret and every version of it in one write.
    async fn destroy_secret(&self, record: &SecretRecord) -> Result<(), Error> {
        let path = secret_path(&record.account_id, &record.name);
        for _ in 0..CAS_RETRIES {
            let Some((current, raw)) = self.get_raw::<SecretRecord>(Table::Secrets, &path)? else {
                return Ok(());
            };
            if current.secret_id != record.secret_id {
                return Ok(());
            }
            let mut batch = Batch::new()
                .expect(Table::Secrets, path.clone(), Some(raw))
                .delete(Table::Secrets, path.clone());
            for (key, _) in self
                .store
                .scan(Table::SecretVersions, &format!("{}/", record.secret_id))?
            {
                batch = batch.delete(Table::SecretVersions, key);
            }
            match self.commit(batch).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("secret deletion kept conflicting".into()))
    }

    /// Deletes every secret whose recovery window has ended; returns how many.
    pub(super) async fn sweep_secrets(&self, now: i64) -> Result<usize, Error> {
        let mut deleted = 0;
        for (_, raw) in self.store.scan(Table::Secrets, "")? {
            let s: SecretRecord = serde_json::from_slice(&raw)?;
            if s.planned_delete.is_some_and(|t| t <= now) {
                match self.destroy_secret(&s).await {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::error!(secret = %s.name, error = %e, "secret deletion failed");
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Every secret of every account with automatic rotation due, or a rotation under way
    /// whose back-off has passed (for the rotation engine).
    pub fn secrets_due_for_rotation(&self, now: i64) -> Result<Vec<SecretRecord>, Error> {
        Ok(self
            .scan::<SecretRecord>(Table::Secrets, "")?
            .into_iter()
            .filter(|s| s.planned_delete.is_none())
            .filter(|s| match &s.rotation {
                Some(r) => r.retry_after <= now,
                None => s.automatic_rotation && s.next_rotation.is_some_and(|t| t <= now),
            })
            .collect())
    }

    /// `GetSecretPolicy`.
    pub fn get_secret_policy(&self, caller: &Caller, secret: &SecretRef) -> Result<String, Error> {
        let s = self.secret(caller, secret)?;
        Ok(s.policy
            .unwrap_or_else(|| super::policy::default_policy(&s.account_id)))
    }

    /// `SetSecretPolicy`: the owner only.
    pub async fn set_secret_policy(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        policy: &str,
    ) -> Result<SecretRecord, Error> {
        if policy.len() > 32_768 {
            return Err(Error::invalid(Field::Policy, "longer than 32768 bytes"));
        }
        super::policy::KeyPolicy::parse(policy)?;
        self.update_secret_record(caller, secret, |s| {
            if s.account_id != caller.account {
                return Err(Error::NoPermission);
            }
            s.live()?;
            s.policy = Some(policy.to_owned());
            Ok(())
        })
        .await
    }

    /// `TagResource` on a secret.
    pub async fn tag_secret(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        tags: &[(String, String)],
    ) -> Result<SecretRecord, Error> {
        self.update_secret_record(caller, secret, |s| {
            s.live()?;
            super::tags::merge(&mut s.tags, tags)
        })
        .await
    }

    /// `UntagResource` on a secret.
    pub async fn untag_secret(
        &self,
        caller: &Caller,
        secret: &SecretRef,
        untag: &super::tags::Untag,
    ) -> Result<SecretRecord, Error> {
        self.update_secret_record(caller, secret, |s| {
            s.live()?;
            match untag {
                super::tags::Untag::Keys(keys) => {
                    for k in keys {
                        s.tags.remove(k);
                    }
                }
                super::tags::Untag::All => s.tags.clear(),
            }
            Ok(())
        })
        .await
    }
}
