//! Typed identifiers, parsed once at the edge. Past `api::params` no id is a bare `String`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A parse failure: the value does not have the form of the named identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0}")]
pub struct IdError(pub &'static str);

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The identifier as the SDKs see it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

string_id!(
    /// A customer master key id: `key-<region code><random>` for keys Arca creates; any
    /// `[A-Za-z0-9_-]{1,128}` is accepted so that legacy UUID-style ids stay usable.
    KeyId
);
string_id!(
    /// A key version id. Always a 36-character UUID: ciphertext blobs start with it (spec §6.1).
    KeyVersionId
);
string_id!(
    /// An alias, always with its `alias/` prefix.
    AliasName
);
string_id!(
    /// A numeric account uid (the Alibaba "account id"), also the `Creator` of its keys.
    AccountId
);
string_id!(
    /// An AccessKey id (`LTAI…`).
    AccessKeyId
);

string_id!(
    /// A KMS instance id: `kst-<region code><random>`.
    InstanceId
);

string_id!(
    /// A secret's name: 1–192 of `[A-Za-z0-9_/+=.@-]`, unique in its account (spec §6.9).
    SecretName
);
string_id!(
    /// A secret version's id, chosen by the client (`VersionId`): 1–64 printable ASCII
    /// characters, unique within the secret.
    SecretVersionId
);

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl KeyId {
    /// A fresh key id for `region`, e.g. `key-han1x9…` for `cn-hangzhou`.
    pub fn generate(region: &str) -> Self {
        Self(format!(
            "key-{}{}",
            region_code(region),
            crate::crypto::random_alnum(17)
        ))
    }
}

impl FromStr for KeyId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if !s.is_empty() && s.len() <= 128 && s.chars().all(is_id_char) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError("KeyId"))
        }
    }
}

/// The short code of a region that ids carry, e.g. `han` for `cn-hangzhou`.
fn region_code(region: &str) -> String {
    region
        .rsplit('-')
        .next()
        .unwrap_or("arc")
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(3)
        .collect()
}

impl InstanceId {
    /// A fresh instance id for `region`, e.g. `kst-hanq3…` for `cn-hangzhou`.
    pub fn generate(region: &str) -> Self {
        Self(format!(
            "kst-{}{}",
            region_code(region),
            crate::crypto::random_alnum(17)
        ))
    }
}

impl FromStr for InstanceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s.strip_prefix("kst-") {
            Some(rest) if !rest.is_empty() && rest.len() <= 60 && rest.chars().all(is_id_char) => {
                Ok(Self(s.to_owned()))
            }
            _ => Err(IdError("KmsInstanceId")),
        }
    }
}

impl KeyVersionId {
    /// Length of the textual form, which is also the ciphertext header length.
    pub const LEN: usize = 36;

    /// A fresh random (v4) UUID.
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        crate::crypto::fill_random(&mut b);
        Self(uuid::Builder::from_random_bytes(b).into_uuid().to_string())
    }
}

impl FromStr for KeyVersionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match uuid::Uuid::try_parse(s) {
            Ok(u) if s.len() == Self::LEN => Ok(Self(u.hyphenated().to_string())),
            _ => Err(IdError("KeyVersionId")),
        }
    }
}

impl AliasName {
    /// The prefix every alias carries.
    pub const PREFIX: &'static str = "alias/";

    /// The name without `alias/` (used in alias ARNs).
    pub fn short(&self) -> &str {
        self.0.strip_prefix(Self::PREFIX).unwrap_or(&self.0)
    }

    /// Aliases under `alias/acs` are reserved for service keys.
    pub fn is_reserved(&self) -> bool {
        self.short().starts_with("acs")
    }
}

impl FromStr for AliasName {
    type Err = IdError;
    /// `alias/` followed by 1–249 of `[A-Za-z0-9_/-]` (255 characters in all at most).
    fn from_str(s: &str) -> Result<Self, IdError> {
        let rest = s.strip_prefix(Self::PREFIX).ok_or(IdError("AliasName"))?;
        let valid =
            !rest.is_empty() && s.len() <= 255 && rest.chars().all(|c| is_id_char(c) || c == '/');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError("AliasName"))
        }
    }
}

impl AccountId {
    /// A fresh 16-digit numeric uid.
    pub fn generate() -> Self {
        let mut digits = String::with_capacity(16);
        let mut b = [0u8; 16];
        crate::crypto::fill_random(&mut b);
        for (i, byte) in b.iter().enumerate() {
            let d = if i == 0 { 1 + byte % 9 } else { byte % 10 };
            digits.push(char::from(b'0' + d));
        }
        Self(digits)
    }
}

impl FromStr for AccountId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError("AccountId"))
        }
    }
}

impl AccessKeyId {
    /// A fresh id in Alibaba's shape: `LTAI` + 20 characters.
    pub fn generate() -> Self {
        Self(format!("LTAI{}", crate::crypto::random_alnum(20)))
    }
}

impl FromStr for AccessKeyId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError("AccessKeyId"))
        }
    }
}

impl FromStr for SecretName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_/+=.@-".contains(c);
        if !s.is_empty() && s.len() <= 192 && s.chars().all(allowed) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError("SecretName"))
        }
    }
}

impl SecretName {
    /// Names under `acs/` belong to managed secrets (RAM, ECS) and are made by the service.
    pub fn is_managed(&self) -> bool {
        self.0.starts_with("acs/")
    }
}

impl FromStr for SecretVersionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError("VersionId"))
        }
    }
}

impl SecretVersionId {
    /// A fresh id for versions the service makes itself (rotation without a client id).
    pub fn generate() -> Self {
        Self(KeyVersionId::generate().0)
    }
}

/// How a request names a secret: by name in the caller's account, or by ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A name in the caller's account.
    Name(SecretName),
    /// `acs:kms:<region>:<account>:secret/<name>`.
    Arn {
        /// Region named in the ARN.
        region: String,
        /// Owner named in the ARN.
        account: AccountId,
        /// The secret.
        name: SecretName,
    },
}

impl FromStr for SecretRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if let Some(rest) = s.strip_prefix("acs:kms:") {
            let mut parts = rest.splitn(3, ':');
            let (Some(region), Some(account), Some(resource)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(IdError("SecretName"));
            };
            let name = resource
                .strip_prefix("secret/")
                .ok_or(IdError("SecretName"))?;
            return Ok(Self::Arn {
                region: region.to_owned(),
                account: account.parse().map_err(|_| IdError("SecretName"))?,
                name: name.parse()?,
            });
        }
        s.parse().map(Self::Name)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => n.fmt(f),
            Self::Arn {
                region,
                account,
                name,
            } => f.write_str(&secret_arn(region, account, name)),
        }
    }
}

/// The ARN of a secret: `acs:kms:<region>:<account>:secret/<name>`.
pub fn secret_arn(region: &str, account: &AccountId, name: &SecretName) -> String {
    format!("acs:kms:{region}:{account}:secret/{name}")
}

/// The ARN of a key: `acs:kms:<region>:<account>:key/<id>`.
pub fn key_arn(region: &str, account: &AccountId, key: &KeyId) -> String {
    format!("acs:kms:{region}:{account}:key/{key}")
}

/// The ARN of an alias: `acs:kms:<region>:<account>:alias/<name without prefix>`.
pub fn alias_arn(region: &str, account: &AccountId, alias: &AliasName) -> String {
    format!("acs:kms:{region}:{account}:alias/{}", alias.short())
}

/// How a request names a key: by id, by alias, or by ARN (of a key or of an alias).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A bare key id.
    Id(KeyId),
    /// `alias/…`, resolved in the caller's account.
    Alias(AliasName),
    /// `acs:kms:<region>:<account>:key/<id>`.
    KeyArn {
        /// Region named in the ARN.
        region: String,
        /// Owner named in the ARN.
        account: AccountId,
        /// The key.
        key: KeyId,
    },
    /// `acs:kms:<region>:<account>:alias/<name>`.
    AliasArn {
        /// Region named in the ARN.
        region: String,
        /// Owner named in the ARN.
        account: AccountId,
        /// The alias.
        alias: AliasName,
    },
}

impl FromStr for KeyRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.starts_with(AliasName::PREFIX) {
            return s.parse().map(Self::Alias);
        }
        if let Some(rest) = s.strip_prefix("acs:kms:") {
            let mut parts = rest.splitn(3, ':');
            let (Some(region), Some(account), Some(resource)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(IdError("KeyId"));
            };
            let region = region.to_owned();
            let account: AccountId = account.parse().map_err(|_| IdError("KeyId"))?;
            if let Some(id) = resource.strip_prefix("key/") {
                return Ok(Self::KeyArn {
                    region,
                    account,
                    key: id.parse()?,
                });
            }
            if resource.starts_with("alias/") {
                return Ok(Self::AliasArn {
                    region,
                    account,
                    alias: resource.parse()?,
                });
            }
            return Err(IdError("KeyId"));
        }
        s.parse().map(Self::Id)
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Alias(a) => a.fmt(f),
            Self::KeyArn {
                region,
                account,
                key,
            } => f.write_str(&key_arn(region, account, key)),
            Self::AliasArn {
                region,
                account,
                alias,
            } => f.write_str(&alias_arn(region, account, alias)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_refs_parse_every_form() {
        assert!(matches!("key-hzz123".parse::<KeyRef>(), Ok(KeyRef::Id(_))));
        assert!(matches!(
            "alias/my-key".parse::<KeyRef>(),
            Ok(KeyRef::Alias(_))
        ));
        let arn: KeyRef = "acs:kms:cn-hangzhou:1234:key/key-abc".parse().unwrap();
        assert_eq!(arn.to_string(), "acs:kms:cn-hangzhou:1234:key/key-abc");
        let alias_arn: KeyRef = "acs:kms:cn-hangzhou:1234:alias/x".parse().unwrap();
        assert!(
            matches!(alias_arn, KeyRef::AliasArn { ref alias, .. } if alias.as_str() == "alias/x")
        );
        assert!("acs:kms:cn:notnum:key/k".parse::<KeyRef>().is_err());
        assert!("bad id!".parse::<KeyRef>().is_err());
        assert!("alias/".parse::<KeyRef>().is_err());
    }

    #[test]
    fn generated_ids_have_their_shapes() {
        let v = KeyVersionId::generate();
        assert_eq!(v.as_str().len(), KeyVersionId::LEN);
        assert_eq!(v.as_str().parse::<KeyVersionId>().unwrap(), v);
        assert!(
            KeyId::generate("cn-hangzhou")
                .as_str()
                .starts_with("key-han")
        );
        assert_eq!(AccountId::generate().as_str().len(), 16);
        assert!(AccessKeyId::generate().as_str().starts_with("LTAI"));
    }

    #[test]
    fn secret_refs_parse_names_and_arns() {
        let r: SecretRef = "db/prod/password".parse().unwrap();
        assert!(matches!(r, SecretRef::Name(ref n) if n.as_str() == "db/prod/password"));
        let arn = "acs:kms:cn-hangzhou:1234:secret/db/prod";
        let r: SecretRef = arn.parse().unwrap();
        assert!(matches!(r, SecretRef::Arn { ref name, .. } if name.as_str() == "db/prod"));
        assert_eq!(r.to_string(), arn);
        assert!("has space".parse::<SecretRef>().is_err());
        assert!("acs:kms:cn:1:key/k".parse::<SecretRef>().is_err());
        assert!("x".repeat(193).parse::<SecretName>().is_err());
        assert!("v 1".parse::<SecretVersionId>().is_err());
        assert!("v1".parse::<SecretVersionId>().is_ok());
    }

    #[test]
    fn alias_rules() {
        let a: AliasName = "alias/acs/oss".parse().unwrap();
        assert!(a.is_reserved());
        assert_eq!(a.short(), "acs/oss");
        assert!("alias/ok_name-1/x".parse::<AliasName>().is_ok());
        assert!("alias/bad name".parse::<AliasName>().is_err());
        assert!("noprefix".parse::<AliasName>().is_err());
    }
}
