//! Accounts and AccessKeys: who may call, and which account a request acts for.

use std::sync::Arc;

use base64::Engine;

use super::model::{AccessKeyRecord, AccountRecord};
use super::{Error, Kms, encode};
use crate::ids::{AccessKeyId, AccountId};
use crate::secret::SecretString;
use crate::store::{Batch, Table};

/// A verified AccessKey's secret and owner, cached in memory after the first unseal.
#[derive(Debug)]
pub struct Credential {
    /// The owning account.
    pub account: AccountId,
    /// Whether that account is an Arca admin.
    pub admin: bool,
    /// The AccessKey secret (HMAC key of the request signatures).
    pub secret: SecretString,
    /// Unix seconds from which the key is refused.
    pub expires: Option<i64>,
}

/// A newly created AccessKey, the only time its secret is shown.
#[derive(Debug)]
pub struct NewAccessKey {
    /// The owning account.
    pub account: AccountId,
    /// The id.
    pub access_key_id: AccessKeyId,
    /// The secret.
    pub secret: SecretString,
}

const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn seal_identity(id: &AccessKeyId) -> String {
    format!("access-key/{id}")
}

impl Kms {
    /// The admin account made at first start, if the store has one.
    pub fn bootstrap_account(&self) -> Result<Option<AccountId>, Error> {
        self.get(Table::Meta, "bootstrap_account")
    }

    /// Makes the first (admin) account and its AccessKey. Called once, on an empty store.
    pub async fn bootstrap(&self) -> Result<NewAccessKey, Error> {
        let account = AccountId::generate();
        let record = AccountRecord {
            account_id: account.clone(),
            created: self.now(),
            admin: true,
            default_key: None,
        };
        let (ak, batch) = self.access_key_batch(&account)?;
        let batch = batch
            .expect(Table::Meta, "bootstrap_account", None)
            .put(Table::Meta, "bootstrap_account", encode(&account)?)
            .put(
                Table::Meta,
                "bootstrap_access_key",
                encode(&ak.access_key_id)?,
            )
            .put(Table::Accounts, account.as_str(), encode(&record)?);
        self.commit(batch).await?;
        Ok(ak)
    }

    /// The admin AccessKey made at first start, with its secret (to rewrite `credentials.json`).
    pub fn bootstrap_access_key(&self) -> Result<NewAccessKey, Error> {
        let id: AccessKeyId = self
            .get(Table::Meta, "bootstrap_access_key")?
            .ok_or(Error::AccountNotFound)?;
        let cred = self.credential(&id)?.ok_or(Error::AccountNotFound)?;
        Ok(NewAccessKey {
            account: cred.account.clone(),
            access_key_id: id,
            secret: SecretString::new(cred.secret.expose().to_owned()),
        })
    }

    /// Creates an account with one AccessKey. Only admins may.
    pub async fn create_account(&self, caller: &super::Caller) -> Result<NewAccessKey, Error> {
        if !caller.admin {
            return Err(Error::NoPermission);
        }
        let account = AccountId::generate();
        let record = AccountRecord {
            account_id: account.clone(),
            created: self.now(),
            admin: false,
            default_key: None,
        };
        let (ak, batch) = self.access_key_batch(&account)?;
        let batch = batch.expect(Table::Accounts, account.as_str(), None).put(
            Table::Accounts,
            account.as_str(),
            encode(&record)?,
        );
        self.commit(batch).await?;
        Ok(ak)
    }

    /// Adds an AccessKey to `account`. Admins may do so for any account, others for their own.
    pub async fn create_access_key(
        &self,
        caller: &super::Caller,
        account: &AccountId,
    ) -> Result<NewAccessKey, Error> {
        if !caller.admin && caller.account != *account {
            return Err(Error::NoPermission);
        }
        if self
            .get::<AccountRecord>(Table::Accounts, account.as_str())?
            .is_none()
        {
            return Err(Error::AccountNotFound);
        }
        let (ak, batch) = self.access_key_batch(account)?;
        self.commit(batch).await?;
        Ok(ak)
    }

    /// Every account (admin view).
    pub fn list_accounts(&self, caller: &super::Caller) -> Result<Vec<AccountRecord>, Error> {
        if !caller.admin {
            return Err(Error::NoPermission);
        }
        self.scan(Table::Accounts, "")
    }

    fn access_key_batch(&self, account: &AccountId) -> Result<(NewAccessKey, Batch), Error> {
        let id = AccessKeyId::generate();
        let secret = SecretString::new(crate::crypto::random_from(SECRET_ALPHABET, 30));
        let sealed = self
            .sealer
            .seal(&seal_identity(&id), secret.expose().as_bytes())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let record = AccessKeyRecord {
            access_key_id: id.clone(),
            account_id: account.clone(),
            sealed_secret: base64::engine::general_purpose::STANDARD.encode(sealed),
            created: self.now(),
            enabled: true,
            expires: None,
        };
        let batch = Batch::new()
            .expect(Table::AccessKeys, id.as_str(), None)
            .put(Table::AccessKeys, id.as_str(), encode(&record)?);
        Ok((
            NewAccessKey {
                account: account.clone(),
                access_key_id: id,
                secret,
            },
            batch,
        ))
    }

    /// The credential behind an AccessKey id, or `None` if it does not exist, is disabled or
    /// has retired.
    pub fn credential(&self, id: &AccessKeyId) -> Result<Option<Arc<Credential>>, Error> {
        let now = self.now();
        Ok(self
            .credential_any(id)?
            .filter(|c| c.expires.is_none_or(|t| now < t)))
    }

    fn credential_any(&self, id: &AccessKeyId) -> Result<Option<Arc<Credential>>, Error> {
        if let Some(c) = self
            .credentials
            .read()
            .ok()
            .and_then(|m| m.get(id).cloned())
        {
            return Ok(Some(c));
        }
        let Some(record) = self.get::<AccessKeyRecord>(Table::AccessKeys, id.as_str())? else {
            return Ok(None);
        };
        if !record.enabled {
            return Ok(None);
        }
        let account = self
            .get::<AccountRecord>(Table::Accounts, record.account_id.as_str())?
            .ok_or(Error::AccountNotFound)?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&record.sealed_secret)
            .map_err(|e| Error::Internal(format!("access key record: {e}")))?;
        let secret = self
            .sealer
            .open(&seal_identity(id), &sealed)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let secret = String::from_utf8(secret.expose().to_vec())
            .map_err(|_| Error::Internal("access key secret is not UTF-8".into()))?;
        let cred = Arc::new(Credential {
            account: record.account_id,
            admin: account.admin,
            secret: SecretString::new(secret),
            expires: record.expires,
        });
        if let Ok(mut m) = self.credentials.write() {
            m.insert(id.clone(), Arc::clone(&cred));
        }
        Ok(Some(cred))
    }
}

impl Kms {
    /// The account's default CMK (`Aliyun_AES_256`, SOFTWARE), made on first use: secrets
    /// created without an `EncryptionKeyId` are sealed under it.
    pub async fn default_key(&self, account: &AccountId) -> Result<crate::ids::KeyId, Error> {
        // One maker at a time, so two first uses do not both create a key.
        let _one = self.default_key_lock.lock().await;
        loop {
            let (mut record, raw) = self
                .get_raw::<AccountRecord>(Table::Accounts, account.as_str())?
                .ok_or(Error::AccountNotFound)?;
            if let Some(key) = record.default_key {
                return Ok(key);
            }
            let caller = super::Caller {
                account: account.clone(),
                admin: false,
                action: "CreateKey".into(),
                service: None,
            };
            let key = self
                .create_key(
                    &caller,
                    super::keys::NewKey {
                        spec: super::model::KeySpec::Aes256,
                        usage: None,
                        origin: super::model::Origin::Kms,
                        protection: super::model::ProtectionLevel::Software,
                        description: "Default key of the account (made by Arca on first use)"
                            .into(),
                        // The service's default-key policy: yearly rotation.
                        rotation: Some(365 * 86_400),
                        tags: Vec::new(),
                        policy: None,
                        instance: None,
                    },
                )
                .await?;
            record.default_key = Some(key.key_id.clone());
            let batch = Batch::new()
                .expect(Table::Accounts, account.as_str(), Some(raw))
                .put(Table::Accounts, account.as_str(), encode(&record)?);
            match self.commit(batch).await {
                Ok(()) => return Ok(key.key_id),
                // The account record changed under us: read it again (the key made here stays
                // an ordinary key of the account).
                Err(crate::store::StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Kms {
    fn may_manage(&self, caller: &super::Caller, account: &AccountId) -> Result<(), Error> {
        let admin = self
            .get::<AccountRecord>(Table::Accounts, caller.account.as_str())?
            .is_some_and(|a| a.admin);
        if admin || caller.account == *account {
            Ok(())
        } else {
            Err(Error::NoPermission)
        }
    }

    /// Creates an AccessKey for `account` on behalf of a rotation acting for `caller`'s account
    /// (its own keys; any account's when it is an admin).
    pub async fn rotate_in_access_key(
        &self,
        caller: &super::Caller,
        account: &AccountId,
    ) -> Result<NewAccessKey, Error> {
        self.may_manage(caller, account)?;
        let admin_view = super::Caller {
            admin: true,
            ..caller.clone()
        };
        self.create_access_key(&admin_view, account).await
    }

    /// Makes AccessKey `id` of `account` stop working at `at` (unix seconds), or earlier if it
    /// already retires earlier.
    pub async fn retire_access_key(
        &self,
        caller: &super::Caller,
        account: &AccountId,
        id: &AccessKeyId,
        at: i64,
    ) -> Result<(), Error> {
        self.may_manage(caller, account)?;
        for _ in 0..super::CAS_RETRIES {
            let (mut record, raw) = self
                .get_raw::<AccessKeyRecord>(Table::AccessKeys, id.as_str())?
                .filter(|(r, _)| r.account_id == *account)
                .ok_or(Error::AccountNotFound)?;
            let at = record.expires.map_or(at, |t| t.min(at));
            if record.expires == Some(at) {
                return Ok(());
            }
            record.expires = Some(at);
            let batch = Batch::new()
                .expect(Table::AccessKeys, id.as_str(), Some(raw))
                .put(Table::AccessKeys, id.as_str(), encode(&record)?);
            match self.commit(batch).await {
                Ok(()) => {
                    if let Ok(mut m) = self.credentials.write() {
                        m.remove(id);
                    }
                    return Ok(());
                }
                Err(crate::store::StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal("access key update kept conflicting".into()))
    }

    /// Whether AccessKey `id` of `account` works now with `secret` (constant-time compare).
    pub fn access_key_works(
        &self,
        account: &AccountId,
        id: &AccessKeyId,
        secret: &str,
    ) -> Result<bool, Error> {
        Ok(self.credential(id)?.is_some_and(|c| {
            c.account == *account
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    c.secret.expose().as_bytes(),
                    secret.as_bytes(),
                )
                .is_ok()
        }))
    }
}
