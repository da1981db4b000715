//! Stored records and the enumerations the SDKs see. Records are JSON in the store; fields added
//! later carry `#[serde(default)]` so older records keep loading.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::crypto::SymmetricAlgorithm;
use crate::ids::{AccessKeyId, AccountId, AliasName, KeyId, KeyVersionId};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The value as the SDKs send and receive it.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }
        }

        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($wire => Ok(Self::$variant),)+ _ => Err(()) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// `KeySpec` of a CMK (spec §6.4).
    KeySpec {
        /// AES-256 (the default).
        Aes256 = "Aliyun_AES_256",
        /// AES-192.
        Aes192 = "Aliyun_AES_192",
        /// AES-128.
        Aes128 = "Aliyun_AES_128",
        /// SM4.
        Sm4 = "Aliyun_SM4",
        /// RSA 2048.
        Rsa2048 = "RSA_2048",
        /// RSA 3072.
        Rsa3072 = "RSA_3072",
        /// RSA 4096.
        Rsa4096 = "RSA_4096",
        /// NIST P-256.
        EcP256 = "EC_P256",
        /// secp256k1.
        EcP256K = "EC_P256K",
        /// SM2.
        EcSm2 = "EC_SM2",
        /// HMAC-SHA-224 (GenerateMac/VerifyMac).
        HmacSha224 = "HMAC_SHA224",
        /// HMAC-SHA-256.
        HmacSha256 = "HMAC_SHA256",
        /// HMAC-SHA-384.
        HmacSha384 = "HMAC_SHA384",
        /// HMAC-SHA-512.
        HmacSha512 = "HMAC_SHA512",
    }
);

impl KeySpec {
    /// The asymmetric key kind of an asymmetric spec; `None` for symmetric specs.
    pub fn asymmetric(self) -> Option<crate::crypto::asymmetric::KeyKind> {
        use crate::crypto::asymmetric::KeyKind;
        match self {
            Self::Rsa2048 => Some(KeyKind::Rsa(2048)),
            Self::Rsa3072 => Some(KeyKind::Rsa(3072)),
            Self::Rsa4096 => Some(KeyKind::Rsa(4096)),
            Self::EcP256 => Some(KeyKind::P256),
            Self::EcP256K => Some(KeyKind::P256K),
            Self::EcSm2 => Some(KeyKind::Sm2),
            _ => None,
        }
    }

    /// The usages this spec allows, the default first (signing where supported, as Alibaba
    /// documents).
    pub fn usages(self) -> &'static [KeyUsage] {
        match self {
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 | Self::EcSm2 => {
                &[KeyUsage::SignVerify, KeyUsage::EncryptDecrypt]
            }
            Self::EcP256 | Self::EcP256K => &[KeyUsage::SignVerify],
            Self::HmacSha224 | Self::HmacSha256 | Self::HmacSha384 | Self::HmacSha512 => {
                &[KeyUsage::GenerateVerifyMac]
            }
            _ => &[KeyUsage::EncryptDecrypt],
        }
    }

    /// The MAC algorithm of an HMAC spec; `None` for the others.
    pub fn mac(self) -> Option<crate::crypto::mac::MacAlgorithm> {
        use crate::crypto::mac::MacAlgorithm;
        match self {
            Self::HmacSha224 => Some(MacAlgorithm::Sha224),
            Self::HmacSha256 => Some(MacAlgorithm::Sha256),
            Self::HmacSha384 => Some(MacAlgorithm::Sha384),
            Self::HmacSha512 => Some(MacAlgorithm::Sha512),
            _ => None,
        }
    }

    /// The symmetric algorithm of a symmetric spec; `None` for asymmetric specs.
    pub fn symmetric(self) -> Option<SymmetricAlgorithm> {
        match self {
            Self::Aes256 => Some(SymmetricAlgorithm::Aes256Gcm),
            Self::Aes192 => Some(SymmetricAlgorithm::Aes192Gcm),
            Self::Aes128 => Some(SymmetricAlgorithm::Aes128Gcm),
            Self::Sm4 => Some(SymmetricAlgorithm::Sm4Gcm),
            _ => None,
        }
    }
}

wire_enum!(
    /// `KeyUsage` of a CMK.
    KeyUsage {
        /// Symmetric or asymmetric encryption.
        EncryptDecrypt = "ENCRYPT/DECRYPT",
        /// Signatures.
        SignVerify = "SIGN/VERIFY",
        /// Message authentication codes (HMAC keys).
        GenerateVerifyMac = "GENERATE/VERIFY_MAC",
    }
);

wire_enum!(
    /// `KeyState` of a CMK.
    KeyState {
        /// Usable.
        Enabled = "Enabled",
        /// Kept, but refuses cryptographic use.
        Disabled = "Disabled",
        /// Waiting out its deletion window.
        PendingDeletion = "PendingDeletion",
        /// BYOK key without material.
        PendingImport = "PendingImport",
    }
);

wire_enum!(
    /// Where the key material came from.
    Origin {
        /// Generated by Arca.
        Kms = "Aliyun_KMS",
        /// Imported (BYOK).
        External = "EXTERNAL",
    }
);

wire_enum!(
    /// Where the key material is kept.
    ProtectionLevel {
        /// Sealed under the root key.
        Software = "SOFTWARE",
        /// Inside a PKCS#11 token.
        Hsm = "HSM",
    }
);

/// An account (tenant). Each sees only its own keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The numeric uid.
    pub account_id: AccountId,
    /// Unix seconds.
    pub created: i64,
    /// Whether this account may call the Arca admin actions.
    #[serde(default)]
    pub admin: bool,
    /// The account's default CMK (made on first use, e.g. for secrets without a key).
    #[serde(default)]
    pub default_key: Option<crate::ids::KeyId>,
}

/// An AccessKey: an id and a sealed secret bound to an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// The id.
    pub access_key_id: AccessKeyId,
    /// Its owner.
    pub account_id: AccountId,
    /// The secret, sealed under the root key (identity `access-key/<id>`), base64.
    pub sealed_secret: String,
    /// Unix seconds.
    pub created: i64,
    /// Disabled keys are refused.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Unix seconds from which the key is refused (a rotated-out key's grace period ends).
    #[serde(default)]
    pub expires: Option<i64>,
}

fn yes() -> bool {
    true
}

/// A customer master key's metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    /// The key id.
    pub key_id: KeyId,
    /// The owning account.
    pub account_id: AccountId,
    /// Who created it: the account uid, or a service code for service keys.
    pub creator: String,
    /// The spec.
    pub spec: KeySpec,
    /// The usage.
    pub usage: KeyUsage,
    /// Where the material came from.
    pub origin: Origin,
    /// Where the material lives.
    pub protection: ProtectionLevel,
    /// The lifecycle state.
    pub state: KeyState,
    /// Free text, at most 8192 characters.
    #[serde(default)]
    pub description: String,
    /// Unix seconds.
    pub created: i64,
    /// The version new ciphertexts use.
    pub primary_version: KeyVersionId,
    /// Every version, oldest first.
    pub versions: Vec<KeyVersionId>,
    /// Whether the scheduler rotates this key.
    #[serde(default)]
    pub automatic_rotation: bool,
    /// Seconds between automatic rotations (7–730 days).
    #[serde(default)]
    pub rotation_interval: Option<u64>,
    /// Unix seconds of the last rotation (manual or automatic).
    #[serde(default)]
    pub last_rotation: Option<i64>,
    /// Unix seconds at which the scheduler rotates next.
    #[serde(default)]
    pub next_rotation: Option<i64>,
    /// Unix seconds at which a key pending deletion is destroyed.
    #[serde(default)]
    pub delete_date: Option<i64>,
    /// `Some(description)` while deletion protection is on.
    #[serde(default)]
    pub deletion_protection: Option<String>,
    /// Tags, by key.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// BYOK: keyed fingerprint (hex) of the imported material, so that only the same
    /// material can be imported again.
    #[serde(default)]
    pub material_fingerprint: Option<String>,
    /// BYOK: Unix seconds at which the imported material expires (`None`: never).
    #[serde(default)]
    pub material_expire: Option<i64>,
    /// The key policy (JSON) once one is set; `None` means the owner-only default.
    #[serde(default)]
    pub policy: Option<String>,
    /// The KMS instance the key was placed in (`DKMSInstanceId`), if any.
    #[serde(default)]
    pub instance: Option<crate::ids::InstanceId>,
}

/// One version of a key's material.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The version id (also the ciphertext header).
    pub version_id: KeyVersionId,
    /// The key it belongs to.
    pub key_id: KeyId,
    /// The key's account.
    pub account_id: AccountId,
    /// Unix seconds.
    pub created: i64,
    /// The material sealed under the root key (identity `key-version/<id>`), base64. Empty
    /// once the key is destroyed.
    pub sealed_material: String,
    /// The key was deleted: the material is gone and only this tombstone remains, so that old
    /// ciphertexts fail with "key not found" rather than as garbage.
    #[serde(default)]
    pub destroyed: bool,
    /// The material is an object in the HSM (CKA_ID = the version id), not in this record.
    #[serde(default)]
    pub hsm: bool,
}

/// The parameters of one GetParametersForImport call, kept until the import or expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportTokenRecord {
    /// The key (store path) the token is for.
    pub key_path: String,
    /// `RSA_2048` or `EC_SM2`.
    pub wrapping_key_spec: KeySpec,
    /// The wrapping algorithm's wire name.
    pub wrapping_algorithm: String,
    /// The wrapping private key, sealed (identity `import-token/<hash>`), base64. Empty when
    /// the wrapping key is in the HSM.
    pub sealed_private_key: String,
    /// Unix seconds after which the token is refused.
    pub expires: i64,
    /// The wrapping key pair is in the HSM (`CKA_ID` = `arca-import/<hash>`): an HSM key's
    /// material is unwrapped inside the token.
    #[serde(default)]
    pub hsm: bool,
}

/// An alias pointing at a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRecord {
    /// The alias.
    pub alias: AliasName,
    /// The key it points at.
    pub key_id: KeyId,
    /// The owning account.
    pub account_id: AccountId,
    /// Unix seconds.
    pub created: i64,
}
