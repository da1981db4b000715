//! GenerateMac and VerifyMac on HMAC keys.

use super::model::{KeyRecord, KeyState, KeyUsage};
use super::{Caller, Error, Kms, Prepared};
use crate::crypto::mac::MacAlgorithm;
use crate::ids::{KeyRef, KeyVersionId};
use crate::kms::Field;

/// A MAC and what made it.
#[derive(Debug)]
pub struct Mac {
    /// The key.
    pub key: KeyRecord,
    /// The version that made it (the primary).
    pub version: KeyVersionId,
    /// The MAC.
    pub tag: Vec<u8>,
}

impl Kms {
    /// The caller's HMAC key `key`, Enabled, whose algorithm is `alg` (`None`: its own).
    fn mac_key(
        &self,
        caller: &Caller,
        key: &KeyRef,
        alg: Option<MacAlgorithm>,
    ) -> Result<KeyRecord, Error> {
        let record = self.resolve(caller, key)?;
        let own = match (record.usage, record.spec.mac()) {
            (KeyUsage::GenerateVerifyMac, Some(own)) => own,
            _ => return Err(Error::Unsupported("the key is not an HMAC key")),
        };
        if alg.is_some_and(|a| a != own) {
            return Err(Error::invalid(
                Field::Algorithm,
                format!("this {} key computes {}", record.spec, own.name()),
            ));
        }
        if record.state != KeyState::Enabled {
            return Err(Error::KeyState(record.state));
        }
        Ok(record)
    }

    fn mac_with<T>(
        &self,
        key: &KeyRecord,
        version: &KeyVersionId,
        f: impl FnOnce(&crate::crypto::mac::MacKey) -> T,
    ) -> Result<T, Error> {
        match &self.load_version(&key.account_id, version)?.cipher {
            Prepared::Mac(k) => Ok(f(k)),
            _ => Err(Error::Unsupported("the key is not an HMAC key")),
        }
    }

    /// `GenerateMac`: the MAC of `message` under the key's primary version.
    pub fn generate_mac(
        &self,
        caller: &Caller,
        key: &KeyRef,
        alg: Option<MacAlgorithm>,
        message: &[u8],
    ) -> Result<Mac, Error> {
        let key = self.mac_key(caller, key, alg)?;
        let version = key.primary_version.clone();
        let tag = self.mac_with(&key, &version, |k| k.sign(message))?;
        Ok(Mac { key, version, tag })
    }

    /// `VerifyMac`: whether `tag` is `message`'s MAC under any version of the key (newest
    /// first, so MACs made before a rotation keep verifying). Returns the version that matched.
    pub fn verify_mac(
        &self,
        caller: &Caller,
        key: &KeyRef,
        alg: Option<MacAlgorithm>,
        message: &[u8],
        tag: &[u8],
    ) -> Result<(KeyRecord, Option<KeyVersionId>), Error> {
        let key = self.mac_key(caller, key, alg)?;
        for version in key.versions.iter().rev() {
            if self.mac_with(&key, version, |k| k.verify(message, tag))? {
                let version = version.clone();
                return Ok((key, Some(version)));
            }
        }
        Ok((key, None))
    }
}
