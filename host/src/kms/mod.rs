//! The domain: accounts, keys, versions, aliases, and the cryptographic operations on them.
//!
//! No HTTP, redb or wasmtime types here. Callers pass typed ids; every write goes through
//! [`Store::commit`] (durable before it returns) before the caller replies.

pub mod access_points;
pub mod accounts;
pub mod aliases;
pub mod asymmetric_ops;
pub mod backup;
pub mod crypto_ops;
pub mod envelope;
pub mod error;
pub mod import;
pub mod instances;
pub mod inventory;
pub mod keys;
pub mod lifecycle;
pub mod mac_ops;
pub mod model;
pub mod policy;
pub mod random;
pub mod secrets;
pub mod service_keys;
pub mod tags;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::{Error, Field};

use crate::clock::Clock;
use crate::crypto::AeadKey;
use crate::ids::{AccountId, KeyId, KeyVersionId};
use crate::keystore::Sealer;
use crate::store::{Batch, Store, StoreError, Table};

/// The caller of a domain operation, as authenticated by the API layer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account the request acts for.
    pub account: AccountId,
    /// Whether the account holds Arca admin rights.
    pub admin: bool,
    /// The API action being performed, for key-policy checks on other accounts' keys.
    pub action: String,
    /// The server-side-encryption integration acting for the account (its service code):
    /// only it may use its service key (`acs/<service>`).
    pub service: Option<String>,
}

/// A key version's prepared material, cached because material never changes for a version id.
#[derive(Debug)]
pub(crate) struct LoadedVersion {
    pub(crate) key_id: KeyId,
    pub(crate) account_id: AccountId,
    /// The KMS instance whose quota each use counts against.
    pub(crate) instance: Option<crate::ids::InstanceId>,
    pub(crate) cipher: Prepared,
    /// A symmetric software key's second key, derived from its material, for the instance
    /// data plane ([`crypto_ops::Domain::Instance`]).
    pub(crate) instance_cipher: Option<AeadKey>,
}

/// A version's material, ready to use.
pub(crate) enum Prepared {
    /// A symmetric key with its schedule prepared.
    Symmetric(AeadKey),
    /// An AES key inside the HSM, named by its version id.
    Hsm(Arc<dyn crate::keystore::Token>),
    /// A key pair inside the HSM, named by its version id.
    HsmPair(asymmetric_ops::HsmPair),
    /// A loaded key pair.
    Asymmetric(Box<dyn crate::crypto::asymmetric::AsymmetricCipher>),
    /// An HMAC key.
    Mac(Box<crate::crypto::mac::MacKey>),
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared([REDACTED])")
    }
}

/// A key record and its stored bytes (the compare-and-swap token).
type CachedKey = (model::KeyRecord, Vec<u8>);

/// The KMS service handle shared by every request.
#[derive(Debug)]
pub struct Kms {
    store: Arc<dyn Store>,
    /// Shared so that long sealing work (backups) can move to the blocking pool.
    sealer: Arc<Sealer>,
    clock: Arc<dyn Clock>,
    region: String,
    versions: RwLock<HashMap<KeyVersionId, Arc<LoadedVersion>>>,
    /// Key metadata by store path, with the stored bytes (for compare-and-swap). Write-through:
    /// every key write in this process updates it after its commit. This process is the store's
    /// only writer (redb locks the file); a shared backend must invalidate it from the store's
    /// change feed.
    keys: RwLock<HashMap<String, Arc<CachedKey>>>,
    credentials: RwLock<HashMap<crate::ids::AccessKeyId, Arc<accounts::Credential>>>,
    /// Serialises the making of default keys.
    default_key_lock: tokio::sync::Mutex<()>,
    /// The PKCS#11 token for HSM keys, when one is configured.
    hsm: std::sync::OnceLock<Arc<dyn crate::keystore::Token>>,
    /// Serialises creations in KMS instances, so that their limits hold exactly.
    instance_lock: tokio::sync::Mutex<()>,
    /// Each KMS instance's requests-per-second quota.
    throttle: instances::Throttle,
}

/// How many times a read-modify-write is retried when a concurrent write got there first.
const CAS_RETRIES: usize = 16;

impl Kms {
    /// A service over `store`, sealing secrets with `sealer`.
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Sealer,
        clock: Arc<dyn Clock>,
        region: String,
    ) -> Self {
        Self {
            store,
            sealer: Arc::new(sealer),
            clock,
            region,
            versions: RwLock::default(),
            keys: RwLock::default(),
            credentials: RwLock::default(),
            default_key_lock: tokio::sync::Mutex::new(()),
            hsm: std::sync::OnceLock::new(),
            instance_lock: tokio::sync::Mutex::new(()),
            throttle: instances::Throttle::default(),
        }
    }

    /// The region this server answers for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Makes `ProtectionLevel=HSM` available through `hsm` (once, at start-up).
    pub fn attach_hsm(&self, hsm: Arc<dyn crate::keystore::Token>) {
        let _ = self.hsm.set(hsm);
    }

    /// The HSM, when one is configured.
    pub fn hsm(&self) -> Option<&Arc<dyn crate::keystore::Token>> {
        self.hsm.get()
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, Error> {
        match self.store.get(table, key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn get_raw<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<(T, Vec<u8>)>, Error> {
        match self.store.get(table, key)? {
            Some(bytes) => Ok(Some((serde_json::from_slice(&bytes)?, bytes))),
            None => Ok(None),
        }
    }

    pub(super) fn scan<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
    ) -> Result<Vec<T>, Error> {
        self.store
            .scan(table, prefix)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(Error::from))
            .collect()
    }

    /// Commits on a blocking thread: redb fsyncs, which must not stall the async workers.
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.commit(batch))
            .await
            .map_err(|e| StoreError::Backend(format!("commit task: {e}")))?
    }
}

impl Kms {
    /// Drops a version's prepared material from memory (after its material changed or went).
    pub(crate) fn forget_version(&self, version: &KeyVersionId) {
        if let Ok(mut m) = self.versions.write() {
            m.remove(version);
        }
    }
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, Error> {
    Ok(serde_json::to_vec(record)?)
}

/// A token failure as a domain error: a GCM tag that does not verify is an invalid
/// ciphertext; anything else means the HSM is unavailable.
pub(crate) fn hsm_error(e: crate::keystore::hsm::HsmError) -> Error {
    match e {
        crate::keystore::hsm::HsmError::Rejected => Error::InvalidCiphertext,
        crate::keystore::hsm::HsmError::Unsupported(what) => Error::Unsupported(what),
        other => Error::HsmUnavailable(other.to_string()),
    }
}
