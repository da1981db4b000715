//! Domain errors. Each variant maps to exactly one SDK-visible code in `crate::error`.

use crate::kms::model::KeyState;
use crate::store::StoreError;

/// The input of a domain operation that an [`Error`] is about. The domain names its inputs;
/// which wire parameter carries each is the API's business (`crate::error` maps them), so
/// another front end (another dialect, the data plane) reports them in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    AccessControlRules,
    Algorithm,
    CiphertextBlob,
    Description,
    Digest,
    EncryptionKeyId,
    ExcludeCharacters,
    ExtendedConfig,
    InstanceName,
    KeyMaterialExpireUnix,
    KeyNum,
    KeySpec,
    KeyUsage,
    KmsInstance,
    Name,
    MoveToVersion,
    NotAfter,
    NumberOfBytes,
    PasswordLength,
    PendingWindowInDays,
    Permissions,
    Plaintext,
    Policies,
    Policy,
    ProtectionLevel,
    PublicKeyBlob,
    RecoveryWindowInDays,
    RemoveFromVersion,
    Resources,
    RotationInterval,
    SecretData,
    SecretDataType,
    SecretName,
    SecretNum,
    SecretType,
    ServiceCode,
    SourcePrivateIp,
    Spec,
    TagKey,
    TagValue,
    Tags,
    VersionId,
    VersionStage,
    VersionStages,
    WrappingAlgorithm,
}

/// A failure of a domain operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such key in the caller's account (or it belongs to someone else).
    #[error("key not found")]
    KeyNotFound,
    /// The key's origin does not allow this (BYOK actions on a non-EXTERNAL key).
    #[error("origin not valid for this api")]
    UnsupportedOrigin,
    /// No such version of the key.
    #[error("key version not found")]
    VersionNotFound,
    /// Deletion protection forbids scheduling deletion.
    #[error("key is protected from deletion")]
    DeletionProtected,
    /// BYOK: the import token is unknown or for another key.
    #[error("invalid import token")]
    InvalidImportToken,
    /// BYOK: the import token has expired.
    #[error("expired import token")]
    ExpiredImportToken,
    /// BYOK: the unwrapped material is not valid for the key (or differs from what was
    /// imported before).
    #[error("invalid key material")]
    InvalidKeyMaterial,
    /// No such alias in the caller's account.
    #[error("alias not found")]
    AliasNotFound,
    /// The alias is taken.
    #[error("alias already exists")]
    AliasExists,
    /// The alias name is reserved or not usable here.
    #[error("alias is not valid for this api")]
    AliasReserved,
    /// The key's state forbids the operation.
    #[error("key state {0} forbids this operation")]
    KeyState(KeyState),
    /// The key cannot do this (e.g. Encrypt with a signing key).
    #[error("unsupported operation for this key: {0}")]
    Unsupported(&'static str),
    /// A ciphertext did not open: tampered, wrong context, or not ours. Deliberately vague.
    #[error("invalid ciphertext")]
    InvalidCiphertext,
    /// An input is out of range or malformed.
    #[error("invalid {field:?}: {reason}")]
    InvalidParameter {
        /// Which input.
        field: Field,
        /// What is wrong (never contains secret input).
        reason: String,
    },
    /// The caller may not do this.
    #[error("forbidden")]
    NoPermission,
    /// No such account.
    #[error("account not found")]
    AccountNotFound,
    /// No such secret (or another account's, without a grant).
    #[error("secret not found")]
    SecretNotFound,
    /// No such version or stage of the secret.
    #[error("secret version not found")]
    SecretVersionNotFound,
    /// A secret of that name exists (possibly waiting out its deletion window).
    #[error("secret already exists")]
    SecretExists,
    /// The secret is scheduled for deletion; restore it first.
    #[error("secret is in its deletion window")]
    SecretInDeleteWindow,
    /// A service key, which only its service may use or manage (the creator's service code).
    #[error("service key of {0}")]
    ServiceKey(String),
    /// `ProtectionLevel=HSM` without an HSM configured.
    #[error("no HSM is configured")]
    UnsupportedProtectionLevel,
    /// The HSM cannot do what was asked; the text says what it can do.
    #[error("{0}")]
    HsmCannot(String),
    /// `ProtectionLevel=HSM` for a spec the token cannot hold.
    #[error("the HSM cannot hold {0} keys")]
    NotInHsm(super::model::KeySpec),
    /// The HSM could not be reached or failed; the detail is for the operator's log.
    #[error("HSM: {0}")]
    HsmUnavailable(String),
    /// No such network rule, policy, access point or client key in the caller's account.
    #[error("resource not found")]
    ResourceNotFound,
    /// A network rule, policy or access point of that name exists.
    #[error("resource exists")]
    ResourceExists,
    /// The resource is referred to and cannot go; the text says by what.
    #[error("{0}")]
    InUse(String),
    /// No such KMS instance in the caller's account.
    #[error("KMS instance not found")]
    InstanceNotFound,
    /// The KMS instance is at its key or secret limit.
    #[error("{0}")]
    LimitExceeded(&'static str),
    /// The KMS instance still holds resources.
    #[error("KMS instance holds {keys} keys and {secrets} secrets")]
    InstanceInUse {
        /// Keys not yet pending deletion.
        keys: usize,
        /// Secrets not yet in their recovery window.
        secrets: usize,
    },
    /// The KMS instance is over its requests-per-second quota.
    #[error("throttled")]
    Throttled,
    /// An input that this combination of others requires is absent.
    #[error("missing {0:?}")]
    MissingParameter(Field),
    /// Something failed inside: storage, or sealed data that no longer opens.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn invalid(field: Field, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            field,
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("record encoding: {e}"))
    }
}
