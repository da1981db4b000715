//! What the store holds, counted for `/metrics` and `arca status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::KeyState;
use super::{Error, Kms};
use crate::store::Table;

/// Counts of stored resources across every account.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Inventory {
    /// CMKs by state, every state listed (zero included).
    pub keys: BTreeMap<&'static str, u64>,
    /// Key versions.
    pub key_versions: u64,
    /// Secrets (including those waiting out a recovery window).
    pub secrets: u64,
    /// KMS instances.
    pub instances: u64,
    /// Accounts.
    pub accounts: u64,
}

/// Just the field the count needs: a key record is parsed no further.
#[derive(Deserialize)]
struct StateOnly {
    state: KeyState,
}

impl Kms {
    /// One cheap read, to show the store answers (readiness).
    pub fn probe_store(&self) -> Result<(), Error> {
        self.store.get(Table::Meta, "root_check")?;
        Ok(())
    }

    /// Counts keys by state, versions, secrets, instances and accounts. It reads the whole key
    /// table, so it is for scrapes and status, not the request path.
    pub fn inventory(&self) -> Result<Inventory, Error> {
        let mut keys: BTreeMap<&'static str, u64> =
            KeyState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for (_, raw) in self.store.scan(Table::Keys, "")? {
            let StateOnly { state } = serde_json::from_slice(&raw)?;
            *keys.entry(state.as_str()).or_default() += 1;
        }
        let count = |table| -> Result<u64, Error> { Ok(self.store.scan(table, "")?.len() as u64) };
        Ok(Inventory {
            keys,
            key_versions: count(Table::KeyVersions)?,
            secrets: count(Table::Secrets)?,
            instances: count(Table::Instances)?,
            accounts: count(Table::Accounts)?,
        })
    }
}
