//! CMK lifecycle: create, describe, list, enable, disable, describe-update; and resolving the
//! three ways a request names a key.

use std::sync::Arc;

use base64::Engine;

use super::model::{
    AliasRecord, KeyRecord, KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel, VersionRecord,
};
use super::{CAS_RETRIES, Caller, Error, Kms, encode};
use crate::ids::{KeyId, KeyRef, KeyVersionId};
use crate::keystore::hsm::PairSpec;
use crate::keystore::software;
use crate::kms::Field;
use crate::store::{Batch, StoreError, Table};

/// What CreateKey asks for, validated by the API layer.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The spec.
    pub spec: KeySpec,
    /// The usage; `None` takes the spec's default.
    pub usage: Option<KeyUsage>,
    /// Where material comes from.
    pub origin: Origin,
    /// Where material lives.
    pub protection: ProtectionLevel,
    /// Free text.
    pub description: String,
    /// `Some(seconds)`: rotate automatically at this interval (7–730 days).
    pub rotation: Option<u64>,
    /// Tags to start with.
    pub tags: Vec<(String, String)>,
    /// A key policy to start with (validated).
    pub policy: Option<String>,
    /// The KMS instance to place the key in (`DKMSInstanceId`).
    pub instance: Option<crate::ids::InstanceId>,
}

/// Longest description CreateKey and UpdateKeyDescription accept.
pub const MAX_DESCRIPTION: usize = 8192;

/// A ListKeys filter: a field and the values that match it (OR); filters combine with AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFilter {
    /// `KeyState`.
    State(Vec<KeyState>),
    /// `KeySpec`.
    Spec(Vec<KeySpec>),
    /// `KeyUsage`.
    Usage(Vec<KeyUsage>),
    /// `ProtectionLevel`.
    Protection(Vec<ProtectionLevel>),
    /// `Creator` (account uid or service code).
    Creator(Vec<String>),
    /// `CreatorType`: `User` or `Service`.
    CreatorType(Vec<String>),
    /// `TagKey`: carries any of these tag keys.
    TagKey(Vec<String>),
    /// `TagValue`: carries a tag with any of these values.
    TagValue(Vec<String>),
    /// `DKMSInstanceId`: placed in any of these KMS instances.
    Instance(Vec<String>),
}

impl KeyFilter {
    fn matches(&self, k: &KeyRecord) -> bool {
        match self {
            Self::State(v) => v.contains(&k.state),
            Self::Spec(v) => v.contains(&k.spec),
            Self::Usage(v) => v.contains(&k.usage),
            Self::Protection(v) => v.contains(&k.protection),
            Self::Creator(v) => v.contains(&k.creator),
            Self::CreatorType(v) => {
                let kind = if k.creator == k.account_id.as_str() {
                    "User"
                } else {
                    "Service"
                };
                v.iter().any(|x| x == kind)
            }
            Self::TagKey(v) => v.iter().any(|t| k.tags.contains_key(t)),
            Self::TagValue(v) => k.tags.values().any(|t| v.contains(t)),
            Self::Instance(v) => k
                .instance
                .as_ref()
                .is_some_and(|i| v.iter().any(|x| x == i.as_str())),
        }
    }
}

/// Runs key generation on the blocking pool: RSA generation takes up to a second and must
/// not stall the request workers.
pub(super) async fn generate_off_runtime<E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<crate::secret::SecretBytes, E> + Send + 'static,
) -> Result<crate::secret::SecretBytes, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("key generation task: {e}")))?
        .map_err(|e| Error::Internal(format!("key generation: {e}")))
}

/// What the token holds for an HSM key.
#[derive(Debug, Clone, Copy)]
pub(super) enum TokenKey {
    /// An AES key of this many bytes.
    Aes(usize),
    /// A key pair.
    Pair(PairSpec),
}

/// The token object(s) for an HSM key of `spec`. SM2 and SM4 are not mechanisms of PKCS#11
/// tokens such as SoftHSM2: those specs are refused, never quietly kept in software.
pub(super) fn token_key(spec: KeySpec) -> Result<TokenKey, Error> {
    Ok(match spec {
        KeySpec::Aes256 => TokenKey::Aes(32),
        KeySpec::Aes192 => TokenKey::Aes(24),
        KeySpec::Aes128 => TokenKey::Aes(16),
        KeySpec::Rsa2048 => TokenKey::Pair(PairSpec::Rsa(2048)),
        KeySpec::Rsa3072 => TokenKey::Pair(PairSpec::Rsa(3072)),
        KeySpec::Rsa4096 => TokenKey::Pair(PairSpec::Rsa(4096)),
        KeySpec::EcP256 => TokenKey::Pair(PairSpec::P256),
        KeySpec::EcP256K => TokenKey::Pair(PairSpec::Secp256k1),
        KeySpec::Sm4
        | KeySpec::EcSm2
        | KeySpec::HmacSha224
        | KeySpec::HmacSha256
        | KeySpec::HmacSha384
        | KeySpec::HmacSha512 => return Err(Error::NotInHsm(spec)),
    })
}

pub(super) fn key_path(account: &crate::ids::AccountId, key: &KeyId) -> String {
    format!("{account}/{key}")
}

impl Kms {
    /// Creates a CMK with its first version, durably, and returns its metadata.
    pub async fn create_key(&self, caller: &Caller, req: NewKey) -> Result<KeyRecord, Error> {
        let usages = req.spec.usages();
        let usage = req.usage.unwrap_or(usages[0]);
        if !usages.contains(&usage) {
            return Err(Error::invalid(
                Field::KeyUsage,
                format!("{} keys do not support {usage}", req.spec),
            ));
        }
        if req.rotation.is_some() && req.spec.asymmetric().is_some() {
            return Err(Error::Unsupported(
                "asymmetric keys rotate only manually (CreateKeyVersion)",
            ));
        }
        if req.description.chars().count() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                Field::Description,
                "longer than 8192 characters",
            ));
        }
        if let Some(interval) = req.rotation {
            super::lifecycle::check_rotation_interval(interval)?;
        }
        if let Some(p) = &req.policy {
            super::policy::KeyPolicy::parse(p)?;
        }
        let mut tags = std::collections::BTreeMap::new();
        super::tags::merge(&mut tags, &req.tags)?;
        let external = req.origin == Origin::External;
        if req.protection == ProtectionLevel::Hsm {
            if self.hsm().is_none() {
                return Err(Error::UnsupportedProtectionLevel);
            }
            let in_token = token_key(req.spec)?;
            if external && !matches!(in_token, TokenKey::Aes(_)) {
                return Err(Error::Unsupported(
                    "key material can be imported into the HSM for Aliyun_AES_256/192/128 keys",
                ));
            }
        }
        if external && req.spec.mac().is_some() {
            return Err(Error::Unsupported(
                "HMAC keys are generated by Arca; their material cannot be imported",
            ));
        }
        if external && req.rotation.is_some() {
            return Err(Error::Unsupported(
                "keys with imported material cannot rotate automatically",
            ));
        }
        // Held until the key is stored, so that the instance's key limit holds exactly.
        let placement = match &req.instance {
            Some(id) => {
                let (instance, guard) = self.place_in_instance(caller, id, false).await?;
                if instance.protection != req.protection {
                    return Err(Error::invalid(
                        Field::ProtectionLevel,
                        format!("the KMS instance keeps its keys in {}", instance.protection),
                    ));
                }
                Some(guard)
            }
            None => None,
        };
        let key_id = KeyId::generate(&self.region);
        let now = self.now();
        // An EXTERNAL key reserves its version id; the version record arrives with the material.
        let version = if external {
            None
        } else {
            Some(
                self.new_version(&key_id, &caller.account, req.spec, usage, req.protection)
                    .await?,
            )
        };
        let version_id = version
            .as_ref()
            .map_or_else(KeyVersionId::generate, |v| v.version_id.clone());
        let key = KeyRecord {
            key_id: key_id.clone(),
            account_id: caller.account.clone(),
            creator: caller
                .service
                .clone()
                .unwrap_or_else(|| caller.account.to_string()),
            spec: req.spec,
            usage,
            origin: req.origin,
            protection: req.protection,
            state: if external {
                KeyState::PendingImport
            } else {
                KeyState::Enabled
            },
            description: req.description,
            created: now,
            primary_version: version_id.clone(),
            versions: vec![version_id.clone()],
            automatic_rotation: req.rotation.is_some(),
            rotation_interval: req.rotation,
            last_rotation: None,
            next_rotation: req.rotation.map(|i| now.saturating_add_unsigned(i)),
            delete_date: None,
            deletion_protection: None,
            tags,
            material_fingerprint: None,
            material_expire: None,
            policy: req.policy,
            instance: req.instance,
        };
        let path = key_path(&caller.account, &key_id);
        let raw = encode(&key)?;
        let mut batch = Batch::new()
            .expect(Table::Keys, path.clone(), None)
            .expect(Table::KeyVersions, version_id.as_str(), None)
            .put(Table::Keys, path.clone(), raw.clone());
        if let Some(version) = &version {
            batch = batch.put(Table::KeyVersions, version_id.as_str(), encode(version)?);
        }
        self.commit(batch).await?;
        drop(placement);
        self.remember_key(&path, key.clone(), raw);
        Ok(key)
    }

    /// Fresh material for a new version of `key`, sealed, as a record ready to store.
    pub(super) async fn new_version(
        &self,
        key: &KeyId,
        account: &crate::ids::AccountId,
        spec: KeySpec,
        usage: KeyUsage,
        protection: ProtectionLevel,
    ) -> Result<VersionRecord, Error> {
        let version_id = KeyVersionId::generate();
        if protection == ProtectionLevel::Hsm {
            let hsm = Arc::clone(self.hsm().ok_or(Error::UnsupportedProtectionLevel)?);
            let id = version_id.clone();
            let signing = usage == KeyUsage::SignVerify;
            match token_key(spec)? {
                TokenKey::Aes(bytes) => hsm.run(move |h| h.generate_aes(&id, bytes)).await,
                TokenKey::Pair(pair) => hsm.run(move |h| h.generate_pair(&id, pair, signing)).await,
            }
            .map_err(super::hsm_error)?;
            return Ok(VersionRecord {
                version_id,
                key_id: key.clone(),
                account_id: account.clone(),
                created: self.now(),
                sealed_material: String::new(),
                destroyed: false,
                hsm: true,
            });
        }
        let material = generate_off_runtime(move || software::generate_material(spec)).await?;
        let sealed = software::seal_material(&self.sealer, &version_id, &material)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(VersionRecord {
            version_id,
            key_id: key.clone(),
            account_id: account.clone(),
            created: self.now(),
            sealed_material: base64::engine::general_purpose::STANDARD.encode(sealed),
            destroyed: false,
            hsm: false,
        })
    }

    /// Finds the key a request names, in the caller's account.
    ///
    /// ARNs naming another account or region answer "not found": cross-account use arrives with
    /// key policies, and until then another account's key must be indistinguishable from none.
    pub fn resolve(&self, caller: &Caller, key: &KeyRef) -> Result<KeyRecord, Error> {
        self.resolve_raw(caller, key).map(|(k, _)| k)
    }

    fn resolve_raw(&self, caller: &Caller, key: &KeyRef) -> Result<(KeyRecord, Vec<u8>), Error> {
        let found = self.find_key(caller, key)?;
        super::service_keys::guard(caller, &found.0)?;
        Ok(found)
    }

    fn find_key(&self, caller: &Caller, key: &KeyRef) -> Result<(KeyRecord, Vec<u8>), Error> {
        let key_id = match key {
            KeyRef::Id(id) => id.clone(),
            KeyRef::Alias(alias) => self.alias_target(caller, alias)?,
            KeyRef::KeyArn {
                region,
                account,
                key,
            } => {
                if *region != self.region {
                    return Err(Error::KeyNotFound);
                }
                if *account != caller.account {
                    // Another account's key, by ARN: it must exist, and its policy must grant
                    // this action to the caller.
                    let found = self
                        .key_at(&key_path(account, key))?
                        .ok_or(Error::KeyNotFound)?;
                    super::policy::check(caller, &found.0)?;
                    return Ok(found);
                }
                key.clone()
            }
            KeyRef::AliasArn {
                region,
                account,
                alias,
            } => {
                if *account != caller.account || *region != self.region {
                    return Err(Error::KeyNotFound);
                }
                self.alias_target(caller, alias)?
            }
        };
        self.key_at(&key_path(&caller.account, &key_id))?
            .ok_or(Error::KeyNotFound)
    }

    /// The key stored at `path`, from the cache or the store.
    pub(super) fn key_at(&self, path: &str) -> Result<Option<(KeyRecord, Vec<u8>)>, Error> {
        if let Some(hit) = self.keys.read().ok().and_then(|m| m.get(path).cloned()) {
            return Ok(Some((hit.0.clone(), hit.1.clone())));
        }
        let found = self.get_raw::<KeyRecord>(Table::Keys, path)?;
        if let Some((record, raw)) = &found {
            self.remember_key(path, record.clone(), raw.clone());
        }
        Ok(found)
    }

    pub(super) fn remember_key(&self, path: &str, record: KeyRecord, raw: Vec<u8>) {
        if let Ok(mut m) = self.keys.write() {
            m.insert(path.to_owned(), std::sync::Arc::new((record, raw)));
        }
    }

    pub(super) fn forget_key(&self, path: &str) {
        if let Ok(mut m) = self.keys.write() {
            m.remove(path);
        }
    }

    fn alias_target(&self, caller: &Caller, alias: &crate::ids::AliasName) -> Result<KeyId, Error> {
        let path = super::aliases::alias_path(&caller.account, alias);
        self.get::<AliasRecord>(Table::Aliases, &path)?
            .map(|a| a.key_id)
            // An alias that points nowhere names no key: callers asked for a key.
            .ok_or(Error::KeyNotFound)
    }

    /// The caller's keys that pass every filter, ordered by creation time.
    pub fn list_keys(
        &self,
        caller: &Caller,
        filters: &[KeyFilter],
    ) -> Result<Vec<KeyRecord>, Error> {
        let mut keys: Vec<KeyRecord> = self
            .scan::<KeyRecord>(Table::Keys, &format!("{}/", caller.account))?
            .into_iter()
            .filter(|k| filters.iter().all(|f| f.matches(k)))
            .collect();
        keys.sort_by(|a, b| (a.created, &a.key_id).cmp(&(b.created, &b.key_id)));
        Ok(keys)
    }

    /// Applies `change` to the key with compare-and-swap, retrying if another write raced it.
    pub(super) async fn update_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        change: impl Fn(&mut KeyRecord) -> Result<(), Error>,
    ) -> Result<KeyRecord, Error> {
        for _ in 0..CAS_RETRIES {
            let (mut record, raw) = self.resolve_raw(caller, key)?;
            change(&mut record)?;
            let path = key_path(&record.account_id, &record.key_id);
            let new_raw = encode(&record)?;
            let batch = Batch::new()
                .expect(Table::Keys, path.clone(), Some(raw))
                .put(Table::Keys, path.clone(), new_raw.clone());
            match self.commit(batch).await {
                Ok(()) => {
                    self.remember_key(&path, record.clone(), new_raw);
                    return Ok(record);
                }
                Err(StoreError::Conflict) => {
                    self.forget_key(&path);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("key update kept conflicting".into()))
    }

    /// `EnableKey`: Disabled → Enabled (Enabled stays Enabled).
    pub async fn enable_key(&self, caller: &Caller, key: &KeyRef) -> Result<KeyRecord, Error> {
        self.update_key(caller, key, |k| match k.state {
            KeyState::Enabled | KeyState::Disabled => {
                k.state = KeyState::Enabled;
                Ok(())
            }
            other => Err(Error::KeyState(other)),
        })
        .await
    }

    /// `DisableKey`: Enabled → Disabled (Disabled stays Disabled).
    pub async fn disable_key(&self, caller: &Caller, key: &KeyRef) -> Result<KeyRecord, Error> {
        self.update_key(caller, key, |k| match k.state {
            KeyState::Enabled | KeyState::Disabled => {
                k.state = KeyState::Disabled;
                Ok(())
            }
            other => Err(Error::KeyState(other)),
        })
        .await
    }

    /// `UpdateKeyDescription`.
    pub async fn update_description(
        &self,
        caller: &Caller,
        key: &KeyRef,
        description: &str,
    ) -> Result<KeyRecord, Error> {
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                Field::Description,
                "longer than 8192 characters",
            ));
        }
        self.update_key(caller, key, |k| {
            k.description = description.to_owned();
            Ok(())
        })
        .await
    }
}
