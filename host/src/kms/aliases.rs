//! Aliases: `alias/<name>` pointing at one key of the same account.

use super::model::AliasRecord;
use super::{Caller, Error, Kms, encode};
use crate::ids::{AccountId, AliasName, KeyId, KeyRef};
use crate::store::{Batch, StoreError, Table};

pub(super) fn alias_path(account: &AccountId, alias: &AliasName) -> String {
    format!("{account}/{alias}")
}

impl Kms {
    /// `CreateAlias`.
    pub async fn create_alias(
        &self,
        caller: &Caller,
        alias: &AliasName,
        key: &KeyRef,
    ) -> Result<AliasRecord, Error> {
        if alias.is_reserved() {
            return Err(Error::AliasReserved);
        }
        let target = self.resolve(caller, key)?;
        if target.account_id != caller.account {
            // Aliases name keys of their own account only.
            return Err(Error::NoPermission);
        }
        self.put_alias(caller, alias, &target.key_id).await
    }

    /// Writes a new alias of `key` in the caller's account (also the reserved `acs/` ones that
    /// service keys get).
    pub(super) async fn put_alias(
        &self,
        caller: &Caller,
        alias: &AliasName,
        key: &KeyId,
    ) -> Result<AliasRecord, Error> {
        let record = AliasRecord {
            alias: alias.clone(),
            key_id: key.clone(),
            account_id: caller.account.clone(),
            created: self.now(),
        };
        let path = alias_path(&caller.account, alias);
        let batch = Batch::new().expect(Table::Aliases, path.clone(), None).put(
            Table::Aliases,
            path,
            encode(&record)?,
        );
        match self.commit(batch).await {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict) => Err(Error::AliasExists),
            Err(e) => Err(e.into()),
        }
    }

    /// `UpdateAlias`: re-points an existing alias.
    pub async fn update_alias(
        &self,
        caller: &Caller,
        alias: &AliasName,
        key: &KeyRef,
    ) -> Result<AliasRecord, Error> {
        if alias.is_reserved() {
            return Err(Error::AliasReserved);
        }
        let target = self.resolve(caller, key)?;
        if target.account_id != caller.account {
            return Err(Error::NoPermission);
        }
        let path = alias_path(&caller.account, alias);
        let (mut record, raw) = self
            .get_raw::<AliasRecord>(Table::Aliases, &path)?
            .ok_or(Error::AliasNotFound)?;
        record.key_id = target.key_id;
        let batch = Batch::new()
            .expect(Table::Aliases, path.clone(), Some(raw))
            .put(Table::Aliases, path, encode(&record)?);
        match self.commit(batch).await {
            Ok(()) => Ok(record),
            // Deleted or re-pointed meanwhile: report what the caller would see on a retry.
            Err(StoreError::Conflict) => Err(Error::AliasNotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// `DeleteAlias`.
    pub async fn delete_alias(&self, caller: &Caller, alias: &AliasName) -> Result<(), Error> {
        if alias.is_reserved() {
            return Err(Error::AliasReserved);
        }
        let path = alias_path(&caller.account, alias);
        let (_, raw) = self
            .get_raw::<AliasRecord>(Table::Aliases, &path)?
            .ok_or(Error::AliasNotFound)?;
        let batch = Batch::new()
            .expect(Table::Aliases, path.clone(), Some(raw))
            .delete(Table::Aliases, path);
        match self.commit(batch).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `ListAliases`: every alias of the caller, in name order.
    pub fn list_aliases(&self, caller: &Caller) -> Result<Vec<AliasRecord>, Error> {
        self.scan(Table::Aliases, &format!("{}/", caller.account))
    }

    /// `ListAliasesByKeyId`.
    pub fn list_aliases_for(
        &self,
        caller: &Caller,
        key: &KeyRef,
    ) -> Result<Vec<AliasRecord>, Error> {
        let target: KeyId = self.resolve(caller, key)?.key_id;
        Ok(self
            .list_aliases(caller)?
            .into_iter()
            .filter(|a| a.key_id == target)
            .collect())
    }
}
