//! Opening a data directory: root key, store, root-key check, first account, credentials file.
//!
//! First start on an empty directory creates `arca.redb`, a 256-bit `root.key` (mode 0600,
//! unless the key comes from `--root-key-file` or `ARCA_ROOT_KEY`), an admin account with one
//! AccessKey, and `credentials.json` (mode 0600). Later starts reuse all of it, and refuse a
//! root key that does not match the store.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::audit::AuditLog;
use crate::clock::{Clock, SystemClock};
use crate::keystore::{RootKey, RootKeyError};
use crate::kms::Kms;
use crate::secret::SecretString;
use crate::store::{Batch, RedbStore, Store, StoreError, Table};

/// Where the root key comes from, in order of precedence.
#[derive(Debug)]
pub enum RootKeySource {
    /// `--root-key-file PATH`.
    File(PathBuf),
    /// `ARCA_ROOT_KEY` (hex or base64).
    Env(SecretString),
    /// `DATA_DIR/root.key`, created on first start.
    DataDir,
    /// `DATA_DIR/root.key.hsm`, wrapped by a key in this HSM (`--root-key-hsm`).
    Hsm(Arc<dyn crate::keystore::Token>),
}

impl RootKeySource {
    /// Loads an existing root key (never creates one): for tools such as backup and restore.
    pub fn load_existing(&self, data_dir: &Path) -> Result<RootKey, StartupError> {
        match self {
            RootKeySource::File(path) => Ok(RootKey::load(path)?),
            RootKeySource::Env(text) => Ok(RootKey::parse(text, "ARCA_ROOT_KEY")?),
            RootKeySource::DataDir => {
                let path = data_dir.join("root.key");
                if path.exists() {
                    Ok(RootKey::load(&path)?)
                } else {
                    Err(StartupError::RootKeyMissing(data_dir.display().to_string()))
                }
            }
            RootKeySource::Hsm(hsm) => Ok(RootKey::in_hsm(
                hsm.as_ref(),
                &data_dir.join("root.key.hsm"),
                &data_dir.join("root.key"),
                false,
            )?),
        }
    }
}

/// What `arca serve` needs to open its data.
#[derive(Debug)]
pub struct ServeConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The region this server answers for.
    pub region: String,
    /// The root key.
    pub root_key: RootKeySource,
}

/// An opened data directory, ready to serve.
#[derive(Debug)]
pub struct DataDir {
    /// The domain service over the store.
    pub kms: Arc<Kms>,
    /// The audit trail writer.
    pub audit: AuditLog,
    /// Where the admin credentials were written.
    pub credentials_path: PathBuf,
    /// Where the replay cache keeps its nonces across restarts.
    pub replay_journal: crate::api::auth::NonceJournal,
}

/// Why the data directory could not be opened. Messages are for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A root key problem (missing, malformed, mismatched).
    #[error(transparent)]
    RootKey(#[from] RootKeyError),
    /// The store refused to open.
    #[error("store {path}: {source}")]
    Store {
        /// The store file.
        path: String,
        /// Why.
        source: StoreError,
    },
    /// A file in the data dir could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store exists but no root key was given and `root.key` is gone.
    #[error(
        "{0} holds a store but no root key: restore root.key, or pass --root-key-file / ARCA_ROOT_KEY"
    )]
    RootKeyMissing(String),
    /// Anything else while bootstrapping.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StartupError + '_ {
    move |source| StartupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The seal identity of the root-key check value.
const ROOT_CHECK: &str = "meta/root-check";

/// The contents of `credentials.json`.
#[derive(Serialize)]
struct CredentialsFile<'a> {
    access_key_id: &'a str,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    access_key_secret: &'a SecretString,
    account_id: &'a str,
    region_id: &'a str,
}

/// Opens (creating on first start) the data directory described by `config`.
pub async fn open(config: ServeConfig) -> Result<DataDir, StartupError> {
    open_with_clock(config, Arc::new(SystemClock)).await
}

/// [`open`] with an injected clock, for tests.
pub async fn open_with_clock(
    config: ServeConfig,
    clock: Arc<dyn Clock>,
) -> Result<DataDir, StartupError> {
    let dir = &config.data_dir;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let store_path = dir.join("arca.redb");
    let fresh = !store_path.exists();
    let root = match config.root_key {
        RootKeySource::File(path) => RootKey::load(&path)?,
        RootKeySource::Env(text) => RootKey::parse(&text, "ARCA_ROOT_KEY")?,
        RootKeySource::DataDir => {
            let path = dir.join("root.key");
            if path.exists() {
                RootKey::load(&path)?
            } else if fresh {
                RootKey::create(&path)?
            } else {
                return Err(StartupError::RootKeyMissing(dir.display().to_string()));
            }
        }
        RootKeySource::Hsm(hsm) => {
            let (wrapped, plain) = (dir.join("root.key.hsm"), dir.join("root.key"));
            tokio::task::spawn_blocking(move || {
                RootKey::in_hsm(hsm.as_ref(), &wrapped, &plain, fresh)
            })
            .await
            .map_err(|e| StartupError::Bootstrap(format!("root key task: {e}")))??
        }
    };
    let store = RedbStore::open(&store_path).map_err(|source| StartupError::Store {
        path: store_path.display().to_string(),
        source,
    })?;
    let sealer = root.sealer();
    let audit_key = root.audit_key();
    let replay_path = dir.join("nonces.journal");
    let replay_journal =
        crate::api::auth::NonceJournal::open(&replay_path, &root.replay_key(), clock.now())
            .map_err(io_err(&replay_path))?;
    check_root_key(&store, &sealer)?;
    let kms = Arc::new(Kms::new(
        Arc::new(store),
        sealer,
        clock,
        config.region.clone(),
    ));
    let credentials_path = dir.join("credentials.json");
    if kms
        .bootstrap_account()
        .map_err(|e| StartupError::Bootstrap(e.to_string()))?
        .is_none()
    {
        let ak = kms
            .bootstrap()
            .await
            .map_err(|e| StartupError::Bootstrap(e.to_string()))?;
        write_credentials(&credentials_path, &ak, &config.region)?;
    } else if !credentials_path.exists() {
        // A crash between the bootstrap commit and the file write, or an operator who deleted
        // the file: the admin key is in the store, so write the file again.
        let ak = kms
            .bootstrap_access_key()
            .map_err(|e| StartupError::Bootstrap(e.to_string()))?;
        write_credentials(&credentials_path, &ak, &config.region)?;
    }
    // Rotations and destructions that came due while the server was down happen before
    // anything is served.
    match kms.sweep().await {
        Ok(done) if done != crate::kms::lifecycle::Sweep::default() => {
            tracing::info!(
                rotated = done.rotated,
                destroyed = done.destroyed,
                expired = done.expired,
                tokens_purged = done.tokens_purged,
                "start-up key maintenance"
            );
        }
        Ok(_) => {}
        Err(e) => return Err(StartupError::Bootstrap(format!("key maintenance: {e}"))),
    }
    let audit_path = dir.join("audit.log");
    let audit = AuditLog::open(&audit_path, audit_key).map_err(io_err(&audit_path))?;
    Ok(DataDir {
        kms,
        audit,
        credentials_path,
        replay_journal,
    })
}

/// Proves the root key is the one the store was sealed with, before anything is served.
fn check_root_key(store: &RedbStore, sealer: &crate::keystore::Sealer) -> Result<(), StartupError> {
    let store_err = |source| StartupError::Store {
        path: "arca.redb".into(),
        source,
    };
    match store.get(Table::Meta, "root_check").map_err(store_err)? {
        Some(sealed) => match sealer.open(ROOT_CHECK, &sealed) {
            Ok(_) => Ok(()),
            Err(_) => Err(RootKeyError::Mismatch.into()),
        },
        None => {
            let sealed = sealer
                .seal(ROOT_CHECK, b"arca root key check v1")
                .map_err(|e| StartupError::Bootstrap(e.to_string()))?;
            store
                .commit(Batch::new().expect(Table::Meta, "root_check", None).put(
                    Table::Meta,
                    "root_check",
                    sealed,
                ))
                .map_err(store_err)
        }
    }
}

/// Writes `credentials.json` with mode 0600: to a temporary file, synced, then renamed.
fn write_credentials(
    path: &Path,
    ak: &crate::kms::accounts::NewAccessKey,
    region: &str,
) -> Result<(), StartupError> {
    let body = serde_json::to_vec_pretty(&CredentialsFile {
        access_key_id: ak.access_key_id.as_str(),
        access_key_secret: &ak.secret,
        account_id: ak.account.as_str(),
        region_id: region,
    })
    .map_err(|e| StartupError::Bootstrap(e.to_string()))?;
    let body = crate::secret::SecretBytes::new(body);
    let tmp = path.with_extension("json.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(body.expose()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}
