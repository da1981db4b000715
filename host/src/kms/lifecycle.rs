//! Key versions, rotation (manual and scheduled), deletion with a waiting window, deletion
//! protection, and the sweep that carries out whatever has come due.
//!
//! Every change is a compare-and-swap batch on the key record, so a rotation racing a
//! deletion (or two hosts' schedulers) cannot both win. The sweep runs at start-up, before
//! anything is served, so a rotation or destruction that came due while the server was down
//! happens first thing.

use super::model::{AliasRecord, KeyRecord, KeyState, VersionRecord};
use super::{CAS_RETRIES, Caller, Error, Kms, encode};
use crate::ids::{KeyRef, KeyVersionId};
use crate::kms::Field;
use crate::metrics::{Rotated, metrics};
use crate::store::{Batch, StoreError, Table};

/// Shortest automatic rotation interval (7 days), in seconds.
pub const MIN_ROTATION: u64 = 7 * 86_400;
/// Longest automatic rotation interval (730 days), in seconds.
pub const MAX_ROTATION: u64 = 730 * 86_400;
/// Interval used when rotation is enabled without one (365 days).
pub const DEFAULT_ROTATION: u64 = 365 * 86_400;
/// Allowed `PendingWindowInDays`.
pub const DELETION_WINDOW_DAYS: std::ops::RangeInclusive<u64> = 7..=366;

/// Parses `integer[unit]` with unit `d`, `h`, `m` or `s` (none: seconds), e.g. `30d`, `604800s`.
pub fn parse_interval(text: &str) -> Result<u64, Error> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = digits.parse().map_err(|_| {
        Error::invalid(
            Field::RotationInterval,
            "must be an integer with unit d, h, m or s",
        )
    })?;
    let scale = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => {
            return Err(Error::invalid(
                Field::RotationInterval,
                "unit must be d, h, m or s",
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| Error::invalid(Field::RotationInterval, "too large"))
}

/// Checks an interval against the 7–730 day range.
pub fn check_rotation_interval(seconds: u64) -> Result<(), Error> {
    if (MIN_ROTATION..=MAX_ROTATION).contains(&seconds) {
        Ok(())
    } else {
        Err(Error::invalid(
            Field::RotationInterval,
            "must be between 7d and 730d",
        ))
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Keys rotated because their schedule came due.
    pub rotated: usize,
    /// Keys destroyed because their deletion window ended.
    pub destroyed: usize,
    /// Imported key material removed because it expired.
    pub expired: usize,
    /// Import tokens dropped unused after their 24 hours.
    pub tokens_purged: usize,
    /// Secrets deleted because their recovery window ended.
    pub secrets_deleted: usize,
}

fn key_path(k: &KeyRecord) -> String {
    super::keys::key_path(&k.account_id, &k.key_id)
}

impl Kms {
    /// `CreateKeyVersion`: a new primary version now (manual rotation).
    pub async fn create_key_version(
        &self,
        caller: &Caller,
        key: &KeyRef,
    ) -> Result<VersionRecord, Error> {
        let record = self.resolve(caller, key)?;
        self.rotate(&key_path(&record), false)
            .await?
            .ok_or(Error::KeyNotFound)
    }

    /// Rotates the key at `path`. With `only_if_due`, does nothing unless its automatic
    /// rotation has come due (checked again inside the compare-and-swap loop).
    async fn rotate(&self, path: &str, only_if_due: bool) -> Result<Option<VersionRecord>, Error> {
        for _ in 0..CAS_RETRIES {
            let Some((mut key, raw)) = self.key_at(path)? else {
                return Err(Error::KeyNotFound);
            };
            let now = self.now();
            if only_if_due
                && !(key.state == KeyState::Enabled
                    && due(key.next_rotation, now)
                    && key.automatic_rotation)
            {
                return Ok(None);
            }
            if key.state != KeyState::Enabled {
                return Err(Error::KeyState(key.state));
            }
            if key.origin == super::model::Origin::External {
                return Err(Error::Unsupported(
                    "keys with imported material cannot rotate",
                ));
            }
            let version = self
                .new_version(
                    &key.key_id,
                    &key.account_id,
                    key.spec,
                    key.usage,
                    key.protection,
                )
                .await?;
            key.primary_version = version.version_id.clone();
            key.versions.push(version.version_id.clone());
            key.last_rotation = Some(now);
            if key.automatic_rotation {
                key.next_rotation = key
                    .rotation_interval
                    .map(|i| now.saturating_add_unsigned(i));
            }
            let new_raw = encode(&key)?;
            let batch = Batch::new()
                .expect(Table::Keys, path, Some(raw))
                .expect(Table::KeyVersions, version.version_id.as_str(), None)
                .put(Table::Keys, path, new_raw.clone())
                .put(
                    Table::KeyVersions,
                    version.version_id.as_str(),
                    encode(&version)?,
                );
            match self.commit(batch).await {
                Ok(()) => {
                    self.remember_key(path, key, new_raw);
                    metrics().rotation(Rotated::Key, true);
                    return Ok(Some(version));
                }
                Err(StoreError::Conflict) => self.forget_key(path),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("key rotation kept conflicting".into()))
    }

    /// `ListKeyVersions`: every version, oldest first.
    pub fn list_key_versions(
        &self,
        caller: &Caller,
        key: &KeyRef,
    ) -> Result<Vec<VersionRecord>, Error> {
        let key = self.resolve(caller, key)?;
        key.versions
            .iter()
            .map(|v| {
                self.get::<VersionRecord>(Table::KeyVersions, v.as_str())?
                    .ok_or(Error::VersionNotFound)
            })
            .collect()
    }

    /// `DescribeKeyVersion`: the version must belong to the named key.
    pub fn describe_key_version(
        &self,
        caller: &Caller,
        key: &KeyRef,
        version: &KeyVersionId,
    ) -> Result<VersionRecord, Error> {
        let key = self.resolve(caller, key)?;
        if !key.versions.contains(version) {
            return Err(Error::VersionNotFound);
        }
        self.get(Table::KeyVersions, version.as_str())?
            .ok_or(Error::VersionNotFound)
    }

    /// `UpdateRotationPolicy`. Enabling (re)starts the schedule from now.
    pub async fn update_rotation_policy(
        &self,
        caller: &Caller,
        key: &KeyRef,
        enable: bool,
        interval: Option<u64>,
    ) -> Result<KeyRecord, Error> {
        if let Some(i) = interval {
            check_rotation_interval(i)?;
        }
        let now = self.now();
        self.update_key(caller, key, |k| {
            if k.state == KeyState::PendingDeletion {
                return Err(Error::KeyState(k.state));
            }
            if enable
                && (k.spec.asymmetric().is_some() || k.origin == super::model::Origin::External)
            {
                return Err(Error::Unsupported(
                    "asymmetric keys rotate only manually (CreateKeyVersion)",
                ));
            }
            if let Some(i) = interval {
                k.rotation_interval = Some(i);
            }
            k.automatic_rotation = enable;
            k.next_rotation = if enable {
                let i = *k.rotation_interval.get_or_insert(DEFAULT_ROTATION);
                Some(now.saturating_add_unsigned(i))
            } else {
                None
            };
            Ok(())
        })
        .await
    }

    /// `ScheduleKeyDeletion`: `PendingDeletion` until `now + days`, then destroyed.
    pub async fn schedule_deletion(
        &self,
        caller: &Caller,
        key: &KeyRef,
        days: u64,
    ) -> Result<KeyRecord, Error> {
        if !DELETION_WINDOW_DAYS.contains(&days) {
            return Err(Error::invalid(
                Field::PendingWindowInDays,
                "must be between 7 and 366",
            ));
        }
        let now = self.now();
        self.update_key(caller, key, |k| {
            if k.deletion_protection.is_some() {
                return Err(Error::DeletionProtected);
            }
            if k.state == KeyState::PendingDeletion {
                return Err(Error::KeyState(k.state));
            }
            k.state = KeyState::PendingDeletion;
            k.delete_date = Some(now.saturating_add_unsigned(days * 86_400));
            Ok(())
        })
        .await
    }

    /// `CancelKeyDeletion`: back to `Enabled` (Alibaba's rule; AWS would say Disabled).
    pub async fn cancel_deletion(&self, caller: &Caller, key: &KeyRef) -> Result<KeyRecord, Error> {
        self.update_key(caller, key, |k| {
            if k.state != KeyState::PendingDeletion {
                return Err(Error::KeyState(k.state));
            }
            k.state = KeyState::Enabled;
            k.delete_date = None;
            Ok(())
        })
        .await
    }

    /// `SetDeletionProtection`.
    pub async fn set_deletion_protection(
        &self,
        caller: &Caller,
        key: &KeyRef,
        enable: bool,
        description: &str,
    ) -> Result<KeyRecord, Error> {
        let description = description.to_owned();
        self.update_key(caller, key, |k| {
            k.deletion_protection = enable.then(|| description.clone());
            Ok(())
        })
        .await
    }

    /// Destroys the key at `path` if its deletion window has ended: the record and its aliases
    /// go, and each version keeps only a tombstone without material.
    async fn destroy_if_due(&self, path: &str) -> Result<bool, Error> {
        for _ in 0..CAS_RETRIES {
            let Some((key, raw)) = self.key_at(path)? else {
                return Ok(false);
            };
            if key.state != KeyState::PendingDeletion || !due(key.delete_date, self.now()) {
                return Ok(false);
            }
            let mut batch = Batch::new()
                .expect(Table::Keys, path, Some(raw))
                .delete(Table::Keys, path);
            let mut in_token = Vec::new();
            for v in &key.versions {
                if let Some(mut record) =
                    self.get::<VersionRecord>(Table::KeyVersions, v.as_str())?
                {
                    if record.hsm {
                        in_token.push(v.clone());
                    }
                    record.sealed_material.clear();
                    record.destroyed = true;
                    batch = batch.put(Table::KeyVersions, v.as_str(), encode(&record)?);
                }
            }
            let prefix = format!("{}/", key.account_id);
            for (alias_path, alias_raw) in self.store.scan(Table::Aliases, &prefix)? {
                let alias: AliasRecord = serde_json::from_slice(&alias_raw)?;
                if alias.key_id == key.key_id {
                    batch = batch
                        .expect(Table::Aliases, alias_path.clone(), Some(alias_raw))
                        .delete(Table::Aliases, alias_path);
                }
            }
            match self.commit(batch).await {
                Ok(()) => {
                    self.forget_key(path);
                    if let Ok(mut cache) = self.versions.write() {
                        for v in &key.versions {
                            cache.remove(v);
                        }
                    }
                    // The tombstones are durable; now the material goes from the token. A
                    // failure is logged: the object is unreachable through Arca either way.
                    if let Some(hsm) = self.hsm() {
                        for v in in_token {
                            let id = v.clone();
                            if let Err(e) = hsm.run(move |h| h.destroy(&id)).await {
                                tracing::error!(version = %v, error = %e, "destroying an HSM key object failed");
                            }
                        }
                    }
                    return Ok(true);
                }
                Err(StoreError::Conflict) => self.forget_key(path),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("key destruction kept conflicting".into()))
    }

    /// Carries out every rotation and destruction that has come due, across all accounts.
    /// A failure on one key is logged and does not stop the others.
    pub async fn sweep(&self) -> Result<Sweep, Error> {
        let now = self.now();
        let mut done = Sweep::default();
        for (path, raw) in self.store.scan(Table::Keys, "")? {
            let key: KeyRecord = serde_json::from_slice(&raw)?;
            let result = if key.material_expire.is_some_and(|t| t <= now) {
                self.drop_material(&path, true)
                    .await
                    .map(|d| done.expired += usize::from(d))
            } else if key.state == KeyState::PendingDeletion && due(key.delete_date, now) {
                self.destroy_if_due(&path)
                    .await
                    .map(|d| done.destroyed += usize::from(d))
            } else if key.automatic_rotation
                && key.state == KeyState::Enabled
                && due(key.next_rotation, now)
            {
                self.rotate(&path, true)
                    .await
                    .map(|v| done.rotated += usize::from(v.is_some()))
                    .inspect_err(|_| metrics().rotation(Rotated::Key, false))
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::error!(key = %key.key_id, error = %e, "scheduled key maintenance failed");
            }
        }
        done.tokens_purged = self.purge_import_tokens(now).await?;
        done.secrets_deleted = self.sweep_secrets(now).await?;
        Ok(done)
    }
}

impl Kms {
    /// Drops import tokens past their expiry: unused ones would otherwise stay forever.
    async fn purge_import_tokens(&self, now: i64) -> Result<usize, Error> {
        let mut batch = Batch::new();
        let mut purged = 0;
        let mut in_hsm = Vec::new();
        for (hash, raw) in self.store.scan(Table::ImportTokens, "")? {
            let token: super::model::ImportTokenRecord = serde_json::from_slice(&raw)?;
            if token.expires <= now {
                if token.hsm {
                    in_hsm.push(super::import::wrapping_id(&hash));
                }
                batch = batch
                    .expect(Table::ImportTokens, hash.clone(), Some(raw))
                    .delete(Table::ImportTokens, hash);
                purged += 1;
            }
        }
        if purged > 0 {
            match self.commit(batch).await {
                // An import used a token meanwhile; the next sweep takes the rest.
                Err(StoreError::Conflict) => return Ok(0),
                other => other?,
            }
            if let Some(hsm) = self.hsm() {
                for id in in_hsm {
                    if let Err(e) = hsm.run(move |h| h.destroy_wrapping_pair(&id)).await {
                        tracing::warn!(error = %e, "destroying an expired wrapping key in the HSM failed");
                    }
                }
            }
        }
        Ok(purged)
    }
}

fn due(at: Option<i64>, now: i64) -> bool {
    at.is_some_and(|t| t <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::clock::ManualClock;
    use crate::ids::AliasName;
    use crate::kms::envelope::EncryptionContext;
    use crate::kms::keys::NewKey;
    use crate::kms::model::{KeySpec, Origin, ProtectionLevel};
    use crate::secret::SecretBytes;
    use crate::startup::{RootKeySource, ServeConfig, open_with_clock};

    const DAY: i64 = 86_400;

    async fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> (Arc<Kms>, Caller) {
        let config = ServeConfig {
            data_dir: dir.to_path_buf(),
            region: "cn-hangzhou".into(),
            root_key: RootKeySource::DataDir,
        };
        let opened = open_with_clock(config, Arc::clone(clock) as Arc<dyn crate::clock::Clock>)
            .await
            .unwrap();
        let account = opened.kms.bootstrap_account().unwrap().unwrap();
        (
            opened.kms,
            Caller {
                account,
                admin: true,
                action: String::new(),
                service: None,
            },
        )
    }

    fn new_key(rotation: Option<u64>) -> NewKey {
        NewKey {
            spec: KeySpec::Aes256,
            usage: None,
            origin: Origin::Kms,
            protection: ProtectionLevel::Software,
            description: String::new(),
            rotation,
            tags: Vec::new(),
            policy: None,
            instance: None,
        }
    }

    #[tokio::test]
    async fn a_rotation_due_while_down_happens_at_start_and_old_ciphertexts_still_open() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_700_000_000);
        let (kms, caller) = open(tmp.path(), &clock).await;
        let key = kms
            .create_key(&caller, new_key(Some(MIN_ROTATION)))
            .await
            .unwrap();
        let kref = KeyRef::Id(key.key_id.clone());
        let ctx = EncryptionContext::default();
        let old = kms
            .encrypt(&caller, &kref, &SecretBytes::new(b"before".to_vec()), &ctx)
            .await
            .unwrap();
        assert_eq!(
            kms.sweep().await.unwrap(),
            Sweep::default(),
            "nothing due yet"
        );
        drop(kms);

        clock.advance(8 * DAY);
        let (kms, caller) = open(tmp.path(), &clock).await;
        let rotated = kms.resolve(&caller, &kref).unwrap();
        assert_eq!(rotated.versions.len(), 2);
        assert_ne!(rotated.primary_version, key.primary_version);
        assert_eq!(rotated.last_rotation, Some(1_700_000_000 + 8 * DAY));
        assert_eq!(rotated.next_rotation, Some(1_700_000_000 + 15 * DAY));
        let new = kms
            .encrypt(&caller, &kref, &SecretBytes::new(b"after".to_vec()), &ctx)
            .await
            .unwrap();
        assert_eq!(new.version, rotated.primary_version);
        assert_eq!(
            kms.decrypt(&caller, &old.blob, &ctx)
                .await
                .unwrap()
                .plaintext
                .expose(),
            "before"
        );
        assert_eq!(
            kms.sweep().await.unwrap().rotated,
            0,
            "not due again until the next interval"
        );
        clock.advance(7 * DAY);
        assert_eq!(kms.sweep().await.unwrap().rotated, 1);
        // A disabled key's schedule waits.
        kms.disable_key(&caller, &kref).await.unwrap();
        clock.advance(8 * DAY);
        assert_eq!(kms.sweep().await.unwrap().rotated, 0);
        assert_eq!(kms.list_key_versions(&caller, &kref).unwrap().len(), 3);
    }

    #[tokio::test]
    async fn deletion_waits_out_its_window_then_destroys_material_and_aliases() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_700_000_000);
        let (kms, caller) = open(tmp.path(), &clock).await;
        let key = kms.create_key(&caller, new_key(None)).await.unwrap();
        let kref = KeyRef::Id(key.key_id.clone());
        let alias: AliasName = "alias/doomed".parse().unwrap();
        kms.create_alias(&caller, &alias, &kref).await.unwrap();
        let ctx = EncryptionContext::default();
        let blob = kms
            .encrypt(&caller, &kref, &SecretBytes::new(b"x".to_vec()), &ctx)
            .await
            .unwrap()
            .blob;

        kms.set_deletion_protection(&caller, &kref, true, "in use")
            .await
            .unwrap();
        assert!(matches!(
            kms.schedule_deletion(&caller, &kref, 7).await,
            Err(Error::DeletionProtected)
        ));
        kms.set_deletion_protection(&caller, &kref, false, "")
            .await
            .unwrap();
        assert!(matches!(
            kms.schedule_deletion(&caller, &kref, 6).await,
            Err(Error::InvalidParameter { .. })
        ));
        let pending = kms.schedule_deletion(&caller, &kref, 7).await.unwrap();
        assert_eq!(pending.state, KeyState::PendingDeletion);
        assert_eq!(pending.delete_date, Some(1_700_000_000 + 7 * DAY));
        assert!(matches!(
            kms.decrypt(&caller, &blob, &ctx).await,
            Err(Error::KeyState(KeyState::PendingDeletion))
        ));
        kms.cancel_deletion(&caller, &kref).await.unwrap();
        assert_eq!(
            kms.resolve(&caller, &kref).unwrap().state,
            KeyState::Enabled
        );
        kms.schedule_deletion(&caller, &kref, 7).await.unwrap();

        clock.advance(7 * DAY - 1);
        assert_eq!(
            kms.sweep().await.unwrap().destroyed,
            0,
            "not before the window ends"
        );
        clock.advance(1);
        assert_eq!(kms.sweep().await.unwrap().destroyed, 1);
        assert!(matches!(
            kms.resolve(&caller, &kref),
            Err(Error::KeyNotFound)
        ));
        assert!(matches!(
            kms.resolve(&caller, &KeyRef::Alias(alias)),
            Err(Error::KeyNotFound)
        ));
        assert!(
            matches!(
                kms.decrypt(&caller, &blob, &ctx).await,
                Err(Error::KeyNotFound)
            ),
            "a clear error, not garbage"
        );
        drop(kms);
        // Across a restart too (no cache involved).
        let (kms, caller) = open(tmp.path(), &clock).await;
        assert!(matches!(
            kms.decrypt(&caller, &blob, &ctx).await,
            Err(Error::KeyNotFound)
        ));
    }

    #[tokio::test]
    async fn imported_material_and_import_tokens_expire() {
        use crate::crypto::asymmetric::{EncryptAlgorithm, KeyKind, encrypt_to_public_key};
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_700_000_000);
        let (kms, caller) = open(tmp.path(), &clock).await;
        let mut req = new_key(None);
        req.origin = Origin::External;
        let k = KeyRef::Id(kms.create_key(&caller, req).await.unwrap().key_id);
        assert_eq!(
            kms.resolve(&caller, &k).unwrap().state,
            KeyState::PendingImport
        );
        let material = SecretBytes::random(32);
        let wrap = |der: &[u8]| {
            encrypt_to_public_key(
                KeyKind::Rsa(2048),
                EncryptAlgorithm::RsaOaepSha256,
                der,
                material.expose(),
            )
            .unwrap()
        };
        use base64::Engine;
        // A token used after its 24 hours is refused.
        let p = kms
            .get_parameters_for_import(&caller, &k, "RSAES_OAEP_SHA_256", KeySpec::Rsa2048)
            .await
            .unwrap();
        clock.advance(24 * 3600);
        assert!(matches!(
            kms.import_key_material(&caller, &k, p.token.expose(), &wrap(&p.public_key_der), 0)
                .await,
            Err(Error::ExpiredImportToken)
        ));
        // The sweep drops the expired, unused token; after that it is simply unknown.
        assert_eq!(kms.sweep().await.unwrap().tokens_purged, 1);
        assert!(matches!(
            kms.import_key_material(&caller, &k, p.token.expose(), &wrap(&p.public_key_der), 0)
                .await,
            Err(Error::InvalidImportToken)
        ));
        // Material that expires returns the key to PendingImport at the next sweep.
        let p = kms
            .get_parameters_for_import(&caller, &k, "RSAES_OAEP_SHA_256", KeySpec::Rsa2048)
            .await
            .unwrap();
        let expire = 1_700_000_000 + 24 * 3600 + DAY;
        kms.import_key_material(
            &caller,
            &k,
            p.token.expose(),
            &wrap(&p.public_key_der),
            expire,
        )
        .await
        .unwrap();
        let ctx = EncryptionContext::default();
        let blob = kms
            .encrypt(&caller, &k, &SecretBytes::new(b"x".to_vec()), &ctx)
            .await
            .unwrap()
            .blob;
        assert_eq!(kms.sweep().await.unwrap().expired, 0);
        clock.advance(DAY);
        assert_eq!(kms.sweep().await.unwrap().expired, 1);
        assert_eq!(
            kms.resolve(&caller, &k).unwrap().state,
            KeyState::PendingImport
        );
        assert!(matches!(
            kms.decrypt(&caller, &blob, &ctx).await,
            Err(Error::KeyState(KeyState::PendingImport))
        ));
        let p = kms
            .get_parameters_for_import(&caller, &k, "RSAES_OAEP_SHA_256", KeySpec::Rsa2048)
            .await
            .unwrap();
        assert!(
            !p.token.expose().is_empty()
                && base64::engine::general_purpose::STANDARD
                    .decode(p.token.expose())
                    .is_ok()
        );
        kms.import_key_material(&caller, &k, p.token.expose(), &wrap(&p.public_key_der), 0)
            .await
            .unwrap();
        assert_eq!(
            kms.decrypt(&caller, &blob, &ctx)
                .await
                .unwrap()
                .plaintext
                .expose(),
            "x"
        );
    }

    #[tokio::test]
    async fn every_state_transition_and_refusal() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_700_000_000);
        let (kms, caller) = open(tmp.path(), &clock).await;
        let k = KeyRef::Id(kms.create_key(&caller, new_key(None)).await.unwrap().key_id);
        let state = |kms: &Kms| kms.resolve(&caller, &k).unwrap().state;
        // Enabled: enable and disable allowed; cancel refused.
        kms.enable_key(&caller, &k).await.unwrap();
        assert!(matches!(
            kms.cancel_deletion(&caller, &k).await,
            Err(Error::KeyState(KeyState::Enabled))
        ));
        kms.create_key_version(&caller, &k).await.unwrap();
        // Disabled: rotation and crypto refused; scheduling deletion allowed.
        kms.disable_key(&caller, &k).await.unwrap();
        assert_eq!(state(&kms), KeyState::Disabled);
        assert!(matches!(
            kms.create_key_version(&caller, &k).await,
            Err(Error::KeyState(KeyState::Disabled))
        ));
        kms.schedule_deletion(&caller, &k, 30).await.unwrap();
        // PendingDeletion: everything but cancel and describe refused.
        assert!(matches!(
            kms.enable_key(&caller, &k).await,
            Err(Error::KeyState(KeyState::PendingDeletion))
        ));
        assert!(matches!(
            kms.disable_key(&caller, &k).await,
            Err(Error::KeyState(KeyState::PendingDeletion))
        ));
        assert!(matches!(
            kms.schedule_deletion(&caller, &k, 30).await,
            Err(Error::KeyState(KeyState::PendingDeletion))
        ));
        assert!(matches!(
            kms.create_key_version(&caller, &k).await,
            Err(Error::KeyState(KeyState::PendingDeletion))
        ));
        assert!(matches!(
            kms.update_rotation_policy(&caller, &k, true, Some(MIN_ROTATION))
                .await,
            Err(Error::KeyState(KeyState::PendingDeletion))
        ));
        // Cancel returns to Enabled (Alibaba), whatever the state before.
        kms.cancel_deletion(&caller, &k).await.unwrap();
        assert_eq!(state(&kms), KeyState::Enabled);
        assert!(matches!(
            kms.update_rotation_policy(&caller, &k, true, Some(MIN_ROTATION - 1))
                .await,
            Err(Error::InvalidParameter { .. })
        ));
        let r = kms
            .update_rotation_policy(&caller, &k, true, Some(MAX_ROTATION))
            .await
            .unwrap();
        assert_eq!(r.next_rotation, Some(1_700_000_000 + MAX_ROTATION as i64));
        let r = kms
            .update_rotation_policy(&caller, &k, false, None)
            .await
            .unwrap();
        assert!(!r.automatic_rotation && r.next_rotation.is_none());
    }

    #[test]
    fn intervals_parse_with_units() {
        assert_eq!(parse_interval("7d").unwrap(), 604_800);
        assert_eq!(parse_interval("604800s").unwrap(), 604_800);
        assert_eq!(parse_interval("168h").unwrap(), 604_800);
        assert_eq!(parse_interval("10080m").unwrap(), 604_800);
        assert_eq!(parse_interval("604800").unwrap(), 604_800);
        assert!(parse_interval("7w").is_err());
        assert!(parse_interval("d").is_err());
        assert!(check_rotation_interval(parse_interval("6d").unwrap()).is_err());
        assert!(check_rotation_interval(parse_interval("731d").unwrap()).is_err());
        assert!(check_rotation_interval(parse_interval("730d").unwrap()).is_ok());
    }
}
