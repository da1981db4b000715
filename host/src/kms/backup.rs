//! Backups: a consistent snapshot of the whole store, sealed as one blob under the root key.
//!
//! File: `ARCA-BACKUP\n1\n` followed by `Sealer::seal("backup/v1", JSON entries)`. Secret
//! fields inside are already sealed per record; sealing the whole file on top makes any
//! change (a flipped byte, truncation, a file from another store) fail as a unit before
//! anything is restored. Restoring needs the same root key, and an empty data directory.

use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Caller, Error, Kms};
use crate::keystore::{RootKey, Sealer};
use crate::store::{Batch, RedbStore, Store, StoreError, Table};

const MAGIC: &[u8] = b"ARCA-BACKUP\n1\n";
const IDENTITY: &str = "backup/v1";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Serialize, Deserialize)]
struct Entry {
    table: String,
    key: String,
    value: String,
}

/// Why a backup could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not an Arca backup file at all.
    #[error("not an Arca backup file")]
    NotABackup,
    /// The seal did not open: changed, truncated, or made under another root key.
    #[error(
        "the backup is corrupted or truncated, or was made with another root key; nothing was restored"
    )]
    Corrupt,
    /// The target directory already holds a store.
    #[error("{0} already holds a store; restore only into an empty data directory")]
    NotEmpty(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
}

/// Seals a store snapshot into backup-file bytes.
pub fn seal_snapshot(store: &dyn Store, sealer: &Sealer) -> Result<Vec<u8>, Error> {
    let entries: Vec<Entry> = store
        .snapshot()?
        .into_iter()
        .map(|(t, key, value)| Entry {
            table: t.name().to_owned(),
            key,
            value: B64.encode(value),
        })
        .collect();
    let payload = crate::secret::SecretBytes::new(serde_json::to_vec(&entries)?);
    let sealed = sealer
        .seal(IDENTITY, payload.expose())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens backup-file bytes into store entries, checking everything before returning.
/// Opens a backup file: the magic, the seal under the root key, then the entries.
pub fn open_backup(
    bytes: &[u8],
    sealer: &Sealer,
) -> Result<Vec<(Table, String, Vec<u8>)>, BackupError> {
    let sealed = bytes.strip_prefix(MAGIC).ok_or(BackupError::NotABackup)?;
    let payload = sealer
        .open(IDENTITY, sealed)
        .map_err(|_| BackupError::Corrupt)?;
    parse_entries(payload.expose())
}

/// Parses a backup's unsealed payload. Only a holder of the root key can make one, but a
/// restore must still refuse a malformed one cleanly (fuzzed in tests/fuzz).
pub fn parse_entries(payload: &[u8]) -> Result<Vec<(Table, String, Vec<u8>)>, BackupError> {
    let entries: Vec<Entry> = serde_json::from_slice(payload).map_err(|_| BackupError::Corrupt)?;
    entries
        .into_iter()
        .map(|e| {
            let table = Table::from_name(&e.table).ok_or(BackupError::Corrupt)?;
            let value = B64.decode(e.value).map_err(|_| BackupError::Corrupt)?;
            Ok((table, e.key, value))
        })
        .collect()
}

/// Restores backup bytes into `data_dir`, which must not hold a store yet. `progress` is told
/// how many entries there are and then each one written. Returns the number of entries.
pub fn restore(
    data_dir: &Path,
    root: &RootKey,
    bytes: &[u8],
    progress: impl Fn(u64, u64),
) -> Result<usize, BackupError> {
    let entries = open_backup(bytes, &root.sealer())?;
    let store_path = data_dir.join("arca.redb");
    if store_path.exists() {
        return Err(BackupError::NotEmpty(data_dir.display().to_string()));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| BackupError::Io(e.to_string()))?;
    let total = u64::try_from(entries.len()).unwrap_or(u64::MAX);
    let mut batch = Batch::new();
    for (i, (table, key, value)) in entries.into_iter().enumerate() {
        batch = batch
            .expect(table, key.clone(), None)
            .put(table, key, value);
        progress(u64::try_from(i + 1).unwrap_or(u64::MAX), total);
    }
    let store = RedbStore::open(&store_path).map_err(|e| BackupError::Io(e.to_string()))?;
    // One transaction: either everything is restored or nothing is.
    store.commit(batch).map_err(|e| match e {
        StoreError::Conflict => BackupError::NotEmpty(data_dir.display().to_string()),
        other => BackupError::Io(other.to_string()),
    })?;
    Ok(usize::try_from(total).unwrap_or(usize::MAX))
}

impl Kms {
    /// `ArcaBackup`: the sealed snapshot of the running store (admins only). Reading and
    /// sealing the whole store runs on the blocking pool, off the request workers.
    pub async fn backup(&self, caller: &Caller) -> Result<Vec<u8>, Error> {
        if !caller.admin {
            return Err(Error::NoPermission);
        }
        let (store, sealer) = (
            std::sync::Arc::clone(&self.store),
            std::sync::Arc::clone(&self.sealer),
        );
        tokio::task::spawn_blocking(move || seal_snapshot(store.as_ref(), &sealer))
            .await
            .map_err(|e| Error::Internal(format!("backup task: {e}")))?
    }
}
