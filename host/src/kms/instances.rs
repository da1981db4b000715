//! KMS instances: dedicated tenancy units inside an account.
//!
//! An operator (admin) provisions an instance for an account with a performance quota
//! (cryptographic requests per second) and limits on its keys and secrets. `DKMSInstanceId` on
//! CreateKey/CreateSecret places a resource in it. Every use of an instance's key (all
//! cryptographic calls and secret reads pass through [`Kms::load_version`]) takes a token from
//! the instance's bucket, so one instance over its quota answers `Rejected.Throttling` while the
//! others, and keys outside instances, are unaffected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;

use serde::{Deserialize, Serialize};

use super::model::{KeyRecord, KeyState, ProtectionLevel};
use super::secrets::SecretRecord;
use super::{Caller, Error, Kms, encode};
use crate::ids::{AccountId, InstanceId, KeyRef, SecretRef};
use crate::kms::Field;
use crate::store::{Batch, Table};

fn tls_identity(id: &InstanceId) -> String {
    format!("instance-tls/{id}")
}

/// A KMS instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceRecord {
    /// The id (`kst-…`).
    pub instance_id: InstanceId,
    /// The owning account.
    pub account_id: AccountId,
    /// A name for people.
    pub name: String,
    /// Where the instance's keys live: SOFTWARE, or HSM when the server has a token.
    pub protection: ProtectionLevel,
    /// The performance quota: cryptographic requests per second (the `Spec` field).
    pub spec: u32,
    /// How many keys the instance may hold.
    pub key_quota: u32,
    /// How many secrets the instance may hold.
    pub secret_quota: u32,
    /// Unix seconds.
    pub created: i64,
    /// Where the instance's data plane listens (`host:port`).
    pub endpoint: String,
    /// The data plane's TLS identity.
    pub tls: InstanceTlsRecord,
}

/// An instance's TLS identity as stored: its CA certificate, and the server certificate with
/// its key sealed under the root key (identity `instance-tls/<id>`). The CA's own key was
/// discarded after signing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceTlsRecord {
    /// The CA certificate, PEM (`CaCertificateChainPem`).
    pub ca_pem: String,
    /// The server certificate, DER, base64.
    pub server_cert: String,
    /// The server key (PKCS#8 DER), sealed, base64.
    pub sealed_server_key: String,
}

/// What `ArcaCreateKmsInstance` asks for.
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// The account the instance is for.
    pub account: AccountId,
    /// A name for people (defaults to the id).
    pub name: Option<String>,
    /// SOFTWARE or HSM.
    pub protection: ProtectionLevel,
    /// Requests per second.
    pub spec: u32,
    /// Key limit.
    pub key_quota: u32,
    /// Secret limit.
    pub secret_quota: u32,
    /// Where its data plane listens (already bound by the caller).
    pub endpoint: std::net::SocketAddr,
}

/// How much of an instance's key and secret limits is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Keys placed in the instance (pending deletion included: they still hold material).
    pub keys: u32,
    /// Secrets placed in the instance (in their recovery window included).
    pub secrets: u32,
}

/// Limits an instance may be created with.
pub const SPEC_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;
/// Key and secret limits an instance may be created with.
pub const QUOTA_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

/// A token bucket: `rate` tokens a second, holding at most one second's worth.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The per-instance request buckets, made on an instance's first use.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    buckets: std::sync::RwLock<HashMap<InstanceId, Arc<Mutex<Bucket>>>>,
}

impl Throttle {
    fn forget(&self, id: &InstanceId) {
        if let Ok(mut m) = self.buckets.write() {
            m.remove(id);
        }
    }
}

impl Kms {
    /// `ArcaCreateKmsInstance`: provisions an instance for an account. Admins only.
    pub async fn create_instance(
        &self,
        caller: &Caller,
        req: NewInstance,
    ) -> Result<InstanceRecord, Error> {
        if !caller.admin {
            return Err(Error::NoPermission);
        }
        if !SPEC_RANGE.contains(&req.spec) {
            return Err(Error::invalid(
                Field::Spec,
                "must be 1–100000 requests per second",
            ));
        }
        if !QUOTA_RANGE.contains(&req.key_quota) {
            return Err(Error::invalid(Field::KeyNum, "must be 1–1000000"));
        }
        if !QUOTA_RANGE.contains(&req.secret_quota) {
            return Err(Error::invalid(Field::SecretNum, "must be 1–1000000"));
        }
        if req.protection == ProtectionLevel::Hsm && self.hsm().is_none() {
            return Err(Error::UnsupportedProtectionLevel);
        }
        if self
            .get::<super::model::AccountRecord>(Table::Accounts, req.account.as_str())?
            .is_none()
        {
            return Err(Error::AccountNotFound);
        }
        let instance_id = InstanceId::generate(&self.region);
        let name = match req.name {
            Some(n) if n.is_empty() || n.chars().count() > 128 => {
                return Err(Error::invalid(
                    Field::InstanceName,
                    "must be 1–128 characters",
                ));
            }
            Some(n) => n,
            None => instance_id.to_string(),
        };
        let names = vec![
            req.endpoint.ip().to_string(),
            "localhost".to_owned(),
            format!("{instance_id}.cryptoservice.kms.aliyuncs.com"),
        ];
        let id = instance_id.to_string();
        let tls = tokio::task::spawn_blocking(move || crate::pki::instance_tls(&id, names))
            .await
            .map_err(|e| Error::Internal(format!("certificate task: {e}")))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let sealed_key = self
            .sealer
            .seal(&tls_identity(&instance_id), tls.server_key_der.expose())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let record = InstanceRecord {
            instance_id: instance_id.clone(),
            account_id: req.account,
            name,
            protection: req.protection,
            spec: req.spec,
            key_quota: req.key_quota,
            secret_quota: req.secret_quota,
            created: self.now(),
            endpoint: req.endpoint.to_string(),
            tls: InstanceTlsRecord {
                ca_pem: tls.ca_pem,
                server_cert: b64.encode(&tls.server_cert_der),
                sealed_server_key: b64.encode(sealed_key),
            },
        };
        let batch = Batch::new()
            .expect(Table::Instances, instance_id.as_str(), None)
            .put(Table::Instances, instance_id.as_str(), encode(&record)?);
        self.commit(batch).await?;
        Ok(record)
    }

    /// The caller's instance `id`; another account's is indistinguishable from none.
    pub fn instance(&self, caller: &Caller, id: &InstanceId) -> Result<InstanceRecord, Error> {
        match self.get::<InstanceRecord>(Table::Instances, id.as_str())? {
            Some(i) if i.account_id == caller.account => Ok(i),
            _ => Err(Error::InstanceNotFound),
        }
    }

    /// Every instance of every account (for starting their data planes).
    pub fn all_instances(&self) -> Result<Vec<InstanceRecord>, Error> {
        self.scan::<InstanceRecord>(Table::Instances, "")
    }

    /// An instance by id alone (the data plane knows which instance it serves, not for whom).
    pub fn instance_by_id(&self, id: &InstanceId) -> Result<Option<InstanceRecord>, Error> {
        self.get::<InstanceRecord>(Table::Instances, id.as_str())
    }

    /// The server certificate (DER) and its key (PKCS#8 DER) of `i`'s data plane.
    pub fn instance_tls_identity(
        &self,
        i: &InstanceRecord,
    ) -> Result<(Vec<u8>, crate::secret::SecretBytes), Error> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let bad = |_| Error::Internal(format!("instance {}: TLS record", i.instance_id));
        let cert = b64.decode(&i.tls.server_cert).map_err(bad)?;
        let sealed = b64.decode(&i.tls.sealed_server_key).map_err(bad)?;
        let key = self
            .sealer
            .open(&tls_identity(&i.instance_id), &sealed)
            .map_err(|e| Error::Internal(format!("instance {}: {e}", i.instance_id)))?;
        Ok((cert, key))
    }

    /// The caller's instances, oldest first.
    pub fn list_instances(&self, caller: &Caller) -> Result<Vec<InstanceRecord>, Error> {
        let mut all: Vec<InstanceRecord> = self
            .scan::<InstanceRecord>(Table::Instances, "")?
            .into_iter()
            .filter(|i| i.account_id == caller.account)
            .collect();
        all.sort_by(|a, b| (a.created, &a.instance_id).cmp(&(b.created, &b.instance_id)));
        Ok(all)
    }

    fn instance_keys(&self, i: &InstanceRecord) -> Result<Vec<KeyRecord>, Error> {
        Ok(self
            .scan::<KeyRecord>(Table::Keys, &format!("{}/", i.account_id))?
            .into_iter()
            .filter(|k| k.instance.as_ref() == Some(&i.instance_id))
            .collect())
    }

    fn instance_secrets(&self, i: &InstanceRecord) -> Result<Vec<SecretRecord>, Error> {
        Ok(self
            .scan::<SecretRecord>(Table::Secrets, &format!("{}/", i.account_id))?
            .into_iter()
            .filter(|s| s.instance.as_ref() == Some(&i.instance_id))
            .collect())
    }

    /// How much of `i`'s limits is used.
    pub fn instance_usage(&self, i: &InstanceRecord) -> Result<Usage, Error> {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Usage {
            keys: count(self.instance_keys(i)?.len()),
            secrets: count(self.instance_secrets(i)?.len()),
        })
    }

    /// The instance a new key or secret goes into, checked against its limit. Creations in
    /// instances are serialised (one process writes the store), so the limit is exact.
    pub(super) async fn place_in_instance(
        &self,
        caller: &Caller,
        id: &InstanceId,
        secret: bool,
    ) -> Result<(InstanceRecord, tokio::sync::MutexGuard<'_, ()>), Error> {
        let guard = self.instance_lock.lock().await;
        let instance = self.instance(caller, id)?;
        let usage = self.instance_usage(&instance)?;
        let full = if secret {
            usage.secrets >= instance.secret_quota
        } else {
            usage.keys >= instance.key_quota
        };
        if full {
            return Err(Error::LimitExceeded(if secret {
                "the KMS instance holds as many secrets as its SecretNum allows"
            } else {
                "the KMS instance holds as many keys as its KeyNum allows"
            }));
        }
        Ok((instance, guard))
    }

    /// `ReleaseKmsInstance`. An instance that still holds keys or secrets is released only
    /// with `force` (the caller's word that it has a backup): its keys are then scheduled for
    /// deletion and its secrets deleted, both with the shortest recovery window (7 days),
    /// so a mistaken release can still be undone with CancelKeyDeletion/RestoreSecret.
    pub async fn release_instance(
        &self,
        caller: &Caller,
        id: &InstanceId,
        force: bool,
    ) -> Result<(), Error> {
        let _guard = self.instance_lock.lock().await;
        let instance = self.instance(caller, id)?;
        let keys: Vec<KeyRecord> = self
            .instance_keys(&instance)?
            .into_iter()
            .filter(|k| k.state != KeyState::PendingDeletion)
            .collect();
        let secrets: Vec<SecretRecord> = self
            .instance_secrets(&instance)?
            .into_iter()
            .filter(|s| s.planned_delete.is_none())
            .collect();
        if !keys.is_empty() || !secrets.is_empty() {
            if !force {
                return Err(Error::InstanceInUse {
                    keys: keys.len(),
                    secrets: secrets.len(),
                });
            }
            if keys.iter().any(|k| k.deletion_protection.is_some()) {
                return Err(Error::DeletionProtected);
            }
            let owner = Caller {
                action: "ReleaseKmsInstance".into(),
                ..caller.clone()
            };
            for s in &secrets {
                self.delete_secret(&owner, &SecretRef::Name(s.name.clone()), false, 7)
                    .await?;
            }
            for k in &keys {
                self.schedule_deletion(&owner, &KeyRef::Id(k.key_id.clone()), 7)
                    .await?;
            }
        }
        self.commit(Batch::new().delete(Table::Instances, id.as_str()))
            .await?;
        self.throttle.forget(id);
        Ok(())
    }

    /// Takes one request from `id`'s quota, or refuses with `Rejected.Throttling`.
    pub(super) fn admit(&self, id: &InstanceId) -> Result<(), Error> {
        let found = self
            .throttle
            .buckets
            .read()
            .ok()
            .and_then(|m| m.get(id).cloned());
        let bucket = match found {
            Some(b) => b,
            None => {
                // A released instance no longer limits the keys it leaves pending deletion.
                let Some(i) = self.get::<InstanceRecord>(Table::Instances, id.as_str())? else {
                    return Ok(());
                };
                let made = Arc::new(Mutex::new(Bucket::new(i.spec)));
                match self.throttle.buckets.write() {
                    Ok(mut m) => Arc::clone(m.entry(id.clone()).or_insert(made)),
                    Err(_) => made,
                }
            }
        };
        let admitted = bucket
            .lock()
            .map_err(|_| Error::Internal("throttle lock poisoned".into()))?
            .take();
        if admitted {
            Ok(())
        } else {
            Err(Error::Throttled)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_one_second_and_refills() {
        let mut b = Bucket::new(5);
        assert_eq!((0..10).filter(|_| b.take()).count(), 5);
        b.last -= std::time::Duration::from_millis(400);
        assert_eq!((0..10).filter(|_| b.take()).count(), 2);
        b.last -= std::time::Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take()).count(), 5);
    }
}
