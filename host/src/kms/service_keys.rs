//! Service keys: CMKs that a server-side-encryption integration owns in a customer's account.
//!
//! A service key is made on the integration's first use in each account, as an
//! `Aliyun_AES_256` key with alias `alias/acs/<service>`, `Creator` = the service code and the
//! integration's key policy. The account may describe and list it, as the cloud services'
//! managed keys; it may not disable, delete, re-point or use it: only the integration acting
//! for the account (a [`Caller`] with that `service`) can.

use super::model::{KeyRecord, KeySpec, Origin, ProtectionLevel};
use super::{Caller, Error, Kms};
use crate::ids::{AccountId, AliasName, KeyId, KeyRef};
use crate::kms::Field;

/// Actions an account may take on its service keys: looking, not touching.
const READ_ONLY: &[&str] = &[
    "DescribeKey",
    "ListKeys",
    "ListKeyVersions",
    "DescribeKeyVersion",
    "ListAliases",
    "ListAliasesByKeyId",
    "ListResourceTags",
    "GetKeyPolicy",
    "ListKeyPolicies",
];

/// Whether `key` belongs to a service rather than to its account's users.
pub fn is_service_key(key: &KeyRecord) -> bool {
    key.creator != key.account_id.as_str()
}

/// Refuses `caller` anything but looking at a service key, unless it is that service.
pub(super) fn guard(caller: &Caller, key: &KeyRecord) -> Result<(), Error> {
    if !is_service_key(key)
        || caller.service.as_deref() == Some(key.creator.as_str())
        || READ_ONLY.contains(&caller.action.as_str())
    {
        return Ok(());
    }
    Err(Error::ServiceKey(key.creator.clone()))
}

/// The alias of `service`'s key: `alias/acs/<service>`.
pub fn service_alias(service: &str) -> Result<AliasName, Error> {
    format!("alias/acs/{service}")
        .parse()
        .map_err(|_| Error::invalid(Field::ServiceCode, "not a valid service code"))
}

impl Kms {
    /// The key of `service` in `account`, made on first use with `policy` as its key policy.
    pub async fn service_key(
        &self,
        account: &AccountId,
        service: &str,
        policy: &str,
    ) -> Result<KeyId, Error> {
        let alias = service_alias(service)?;
        let caller = Caller {
            account: account.clone(),
            admin: false,
            action: "CreateKey".into(),
            service: Some(service.to_owned()),
        };
        // One maker at a time, so two first uses do not both create a key.
        let _one = self.default_key_lock.lock().await;
        if let Ok(key) = self.resolve(&caller, &KeyRef::Alias(alias.clone())) {
            return Ok(key.key_id);
        }
        let key = self
            .create_key(
                &caller,
                super::keys::NewKey {
                    spec: KeySpec::Aes256,
                    usage: None,
                    origin: Origin::Kms,
                    protection: ProtectionLevel::Software,
                    description: format!(
                        "Service key of {service} (made by Arca on the service's first use)"
                    ),
                    rotation: Some(365 * 86_400),
                    tags: Vec::new(),
                    policy: Some(policy.to_owned()),
                    instance: None,
                },
            )
            .await?;
        self.put_alias(&caller, &alias, &key.key_id).await?;
        Ok(key.key_id)
    }
}
