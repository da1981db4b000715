//! The SDK-visible errors: every HTTP status, `Code` and `Message` Arca sends is decided here,
//! in one place (shared/spec/alibaba/alibaba-api.md §4).

use std::borrow::Cow;

use http::StatusCode;

use crate::kms;
use crate::kms::model::KeyState;

/// An error as the official SDKs see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `InvalidParameter`: a parameter is malformed or out of range.
    #[error("invalid parameter {name}")]
    InvalidParameter {
        /// The wire name of the parameter.
        name: Cow<'static, str>,
        /// What is wrong; never echoes secret input.
        reason: Cow<'static, str>,
    },
    /// 400 `MissingParameter`: a required parameter is absent.
    #[error("missing parameter {0}")]
    MissingParameter(&'static str),
    /// 400 `IncompleteSignature`: the signature headers or parameters are malformed.
    #[error("incomplete signature: {0}")]
    IncompleteSignature(&'static str),
    /// 400 `SignatureDoesNotMatch`. May carry the server's string-to-sign, which clients
    /// compare with their own to tell a wrong secret from a canonicalisation bug. Only a
    /// string-to-sign free of request values may be echoed (V3's is a hash): V1's contains
    /// every parameter, `Plaintext` and `SecretData` included, and SDKs log this message.
    #[error("signature does not match")]
    SignatureDoesNotMatch(Option<String>),
    /// 400 `IllegalTimestamp`: the request time is missing or unparseable.
    #[error("illegal timestamp")]
    IllegalTimestamp,
    /// 400 `InvalidTimeStamp.Expired`: the request time is more than 15 minutes off.
    #[error("timestamp outside the allowed window")]
    TimestampExpired,
    /// 400 `SignatureNonceUsed`: a replayed request.
    #[error("nonce reused")]
    NonceUsed,
    /// 404 `InvalidAccessKeyId.NotFound`.
    #[error("unknown access key")]
    InvalidAccessKeyId,
    /// 403 `UnsupportedHTTPMethod`.
    #[error("unsupported http method")]
    UnsupportedHttpMethod,
    /// 400 `InvalidVersion`: not the 2016-01-20 API.
    #[error("invalid version")]
    InvalidVersion,
    /// 404 `InvalidApi.NotFound`: no such action.
    #[error("unknown action")]
    UnknownAction,
    /// 413 `RequestEntityTooLarge`: the body exceeds the server's limit.
    #[error("request body too large")]
    BodyTooLarge,
    /// 408 `RequestTimeout`: the body did not arrive in time (a slow or stalled client).
    #[error("request body timed out")]
    BodyTimeout,
    /// 400 `DryRunOperationError`: `DryRun=true` and the request would have succeeded.
    #[error("dry run")]
    DryRun,
    /// 403 `Forbidden.NoPermission`.
    #[error("no permission")]
    NoPermission,
    /// 403 `Forbidden.NoPermission`, denied by an access policy, with its reason.
    #[error("denied by access policy")]
    Denied(String),
    /// 503 `ServiceUnavailableTemporary`: the access policy could not decide (it trapped or
    /// timed out); the request is refused, never let through.
    #[error("access policy unavailable")]
    PolicyUnavailable(String),
    /// 404 `Forbidden.KeyNotFound`.
    #[error("key not found")]
    KeyNotFound,
    /// 404 `Forbidden.KeyVersionNotFound`.
    #[error("key version not found")]
    KeyVersionNotFound,
    /// 403 `Forbidden.DeletionProtection`: ScheduleKeyDeletion on a protected key.
    #[error("deletion protection")]
    DeletionProtected,
    /// 400 `InvalidImportToken`.
    #[error("invalid import token")]
    InvalidImportToken,
    /// 400 `ExpiredImportToken`.
    #[error("expired import token")]
    ExpiredImportToken,
    /// 400 `InvalidKeyMaterial`.
    #[error("invalid key material")]
    InvalidKeyMaterial,
    /// 404 `Forbidden.AliasNotFound`.
    #[error("alias not found")]
    AliasNotFound,
    /// 404 `Forbidden.ResourceNotFound` (accounts and other non-key resources).
    #[error("resource not found")]
    ResourceNotFound,
    /// 400 `AliasAlreadyExists`.
    #[error("alias already exists")]
    AliasAlreadyExists,
    /// 400 `Unsupported.Alias`: reserved alias names.
    #[error("alias not valid")]
    UnsupportedAlias,
    /// 400 `Unsupported.ProtectionLevel`.
    #[error("unsupported protection level")]
    UnsupportedProtectionLevel(Cow<'static, str>),
    /// 400 `Unsupported.Origin`.
    #[error("unsupported origin")]
    UnsupportedOrigin,
    /// 409 `Rejected.Disabled` / `Rejected.PendingDeletion` / `Rejected.PendingImport`.
    #[error("key state {0}")]
    KeyState(KeyState),
    /// 409 `Rejected.ResourceExist`: a secret of that name exists.
    #[error("resource exists")]
    ResourceExists,
    /// 409 `Rejected.ResourceInDeleteWindow`: the secret is scheduled for deletion.
    #[error("resource in delete window")]
    ResourceInDeleteWindow,
    /// 400 `Rejected.UnsupportedOperation`, with what is unsupported.
    #[error("unsupported operation")]
    UnsupportedOperation(Cow<'static, str>),
    /// 400 `InvalidCiphertext`: the blob did not open (tampered, wrong context, not this
    /// account's). Deliberately one code for all of these.
    #[error("invalid ciphertext")]
    InvalidCiphertext,
    /// 503 `ServiceUnavailableTemporary` with what to wait for (a rotation step that failed
    /// and will resume, a rotation another request is driving).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 429 `Rejected.Throttling`: a KMS instance is over its requests-per-second quota. The
    /// SDKs retry this code.
    #[error("throttled")]
    Throttled,
    /// 409 `Rejected.LimitExceeded`: a KMS instance holds as many keys or secrets as allowed.
    #[error("limit exceeded")]
    LimitExceeded(Cow<'static, str>),
    /// 409 `Rejected.ResourceInUse`: a KMS instance still holds keys or secrets.
    #[error("resource in use")]
    ResourceInUse(String),
    /// 500 `InternalFailure`. The detail is logged with the request id, never sent.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for [`ApiError::InvalidParameter`].
    pub fn invalid(
        name: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::InvalidParameter {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidParameter { .. }
            | Self::MissingParameter(_)
            | Self::IncompleteSignature(_)
            | Self::SignatureDoesNotMatch(_)
            | Self::IllegalTimestamp
            | Self::TimestampExpired
            | Self::NonceUsed
            | Self::InvalidVersion
            | Self::DryRun
            | Self::AliasAlreadyExists
            | Self::UnsupportedAlias
            | Self::UnsupportedProtectionLevel(_)
            | Self::UnsupportedOrigin
            | Self::UnsupportedOperation(_)
            | Self::InvalidCiphertext
            | Self::InvalidImportToken
            | Self::ExpiredImportToken
            | Self::InvalidKeyMaterial => StatusCode::BAD_REQUEST,
            Self::UnsupportedHttpMethod
            | Self::NoPermission
            | Self::Denied(_)
            | Self::DeletionProtected => StatusCode::FORBIDDEN,
            Self::PolicyUnavailable(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidAccessKeyId
            | Self::UnknownAction
            | Self::KeyNotFound
            | Self::KeyVersionNotFound
            | Self::AliasNotFound
            | Self::ResourceNotFound => StatusCode::NOT_FOUND,
            Self::KeyState(_)
            | Self::ResourceExists
            | Self::ResourceInDeleteWindow
            | Self::LimitExceeded(_)
            | Self::ResourceInUse(_) => StatusCode::CONFLICT,
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `Code` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidParameter { .. } => "InvalidParameter",
            Self::MissingParameter(_) => "MissingParameter",
            Self::IncompleteSignature(_) => "IncompleteSignature",
            Self::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            Self::IllegalTimestamp => "IllegalTimestamp",
            Self::TimestampExpired => "InvalidTimeStamp.Expired",
            Self::NonceUsed => "SignatureNonceUsed",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId.NotFound",
            Self::UnsupportedHttpMethod => "UnsupportedHTTPMethod",
            Self::InvalidVersion => "InvalidVersion",
            Self::UnknownAction => "InvalidApi.NotFound",
            Self::BodyTooLarge => "RequestEntityTooLarge",
            Self::BodyTimeout => "RequestTimeout",
            Self::DryRun => "DryRunOperationError",
            Self::NoPermission | Self::Denied(_) => "Forbidden.NoPermission",
            Self::PolicyUnavailable(_) | Self::Unavailable(_) => "ServiceUnavailableTemporary",
            Self::KeyNotFound => "Forbidden.KeyNotFound",
            Self::KeyVersionNotFound => "Forbidden.KeyVersionNotFound",
            Self::DeletionProtected => "Forbidden.DeletionProtection",
            Self::InvalidImportToken => "InvalidImportToken",
            Self::ExpiredImportToken => "ExpiredImportToken",
            Self::InvalidKeyMaterial => "InvalidKeyMaterial",
            Self::AliasNotFound => "Forbidden.AliasNotFound",
            Self::ResourceNotFound => "Forbidden.ResourceNotFound",
            Self::AliasAlreadyExists => "AliasAlreadyExists",
            Self::UnsupportedAlias => "Unsupported.Alias",
            Self::UnsupportedProtectionLevel(_) => "Unsupported.ProtectionLevel",
            Self::UnsupportedOrigin => "Unsupported.Origin",
            Self::KeyState(KeyState::Disabled) => "Rejected.Disabled",
            Self::KeyState(KeyState::PendingDeletion) => "Rejected.PendingDeletion",
            Self::KeyState(KeyState::PendingImport) => "Rejected.PendingImport",
            Self::KeyState(KeyState::Enabled) => "Rejected.StateModifiedFailed",
            Self::UnsupportedOperation(_) => "Rejected.UnsupportedOperation",
            Self::ResourceExists => "Rejected.ResourceExist",
            Self::ResourceInDeleteWindow => "Rejected.ResourceInDeleteWindow",
            Self::InvalidCiphertext => "InvalidCiphertext",
            Self::Throttled => "Rejected.Throttling",
            Self::LimitExceeded(_) => "Rejected.LimitExceeded",
            Self::ResourceInUse(_) => "Rejected.ResourceInUse",
            Self::Internal(_) => "InternalFailure",
        }
    }

    /// The `Message` field.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidParameter { name, reason } => {
                format!("The specified parameter \"{name}\" is not valid: {reason}").into()
            }
            Self::MissingParameter(name) => {
                format!("The parameter \"{name}\" is needed but not provided.").into()
            }
            Self::IncompleteSignature(why) => format!(
                "The request signature does not conform to Alibaba Cloud standards: {why}"
            )
            .into(),
            Self::SignatureDoesNotMatch(Some(sts)) => format!(
                "Specified signature is not matched with our calculation. server string to sign is:{sts}"
            )
            .into(),
            // The legacy SDK splits this message on ':' and fails without one: keep the shape,
            // withhold the value.
            Self::SignatureDoesNotMatch(None) => {
                "Specified signature is not matched with our calculation. server string to sign is:(withheld, it contains request values)".into()
            }
            Self::IllegalTimestamp => {
                "The input parameter \"Timestamp\" that is mandatory for processing this request is not supplied or not valid.".into()
            }
            Self::TimestampExpired => "Specified time stamp or date value is expired.".into(),
            Self::NonceUsed => "Specified signature nonce was used already.".into(),
            Self::InvalidAccessKeyId => {
                "The Access Key ID provided does not exist in our records.".into()
            }
            Self::UnsupportedHttpMethod => "This http method is not supported.".into(),
            Self::InvalidVersion => "Specified parameter Version is not valid.".into(),
            Self::UnknownAction => {
                "Specified api is not found, please check your url and method.".into()
            }
            Self::BodyTooLarge => "The request body is too large.".into(),
            Self::BodyTimeout => "The request body did not arrive in time.".into(),
            Self::DryRun => "Request validation has been passed with DryRun flag set.".into(),
            Self::NoPermission => "This operation is forbidden by permission system.".into(),
            Self::Denied(reason) => {
                format!("This operation is forbidden by permission system: {reason}").into()
            }
            Self::PolicyUnavailable(why) => format!(
                "The access policy could not decide ({why}); the request is refused."
            )
            .into(),
            Self::KeyNotFound => "The specified Key is not found.".into(),
            Self::KeyVersionNotFound => "The specified Key version is not found.".into(),
            Self::DeletionProtected => {
                "The key is protected from deletion; disable deletion protection first.".into()
            }
            Self::InvalidImportToken => "import token is invalid.".into(),
            Self::ExpiredImportToken => "import token is expired.".into(),
            Self::InvalidKeyMaterial => "key material is invalid.".into(),
            Self::AliasNotFound => "The specified Alias is not found.".into(),
            Self::ResourceNotFound => "The resource is not found.".into(),
            Self::AliasAlreadyExists => "AliasName Already Exists.".into(),
            Self::UnsupportedAlias => "Alias is not valid for this api.".into(),
            Self::UnsupportedProtectionLevel(why) => {
                format!("This protection level is not valid for this region: {why}").into()
            }
            Self::UnsupportedOrigin => "This key origin is not valid for this api.".into(),
            Self::KeyState(state) => {
                format!("The request was rejected because the key state is {state}.").into()
            }
            Self::UnsupportedOperation(what) => format!("Unsupported operation: {what}").into(),
            Self::Unavailable(what) => what.clone().into(),
            Self::ResourceExists => "The resource already exists.".into(),
            // Spelled as the service spells it (spec §6.9); clients may match on it.
            Self::ResourceInDeleteWindow => "secret in delete peroid".into(),
            Self::InvalidCiphertext => {
                "The ciphertext is invalid, or does not match the key or the EncryptionContext."
                    .into()
            }
            Self::Throttled => "Request was denied due to request throttling.".into(),
            Self::LimitExceeded(what) => what.clone(),
            Self::ResourceInUse(what) => what.clone().into(),
            Self::Internal(_) => "Internal Failure.".into(),
        }
    }
}

/// The RPC parameter that carries a domain input. Alibaba's names match the domain's today,
/// one for one; another dialect maps the same inputs to its own names.
pub fn wire_name(field: kms::Field) -> &'static str {
    use kms::Field;
    match field {
        Field::AccessControlRules => "AccessControlRules",
        Field::Algorithm => "Algorithm",
        Field::CiphertextBlob => "CiphertextBlob",
        Field::Description => "Description",
        Field::Digest => "Digest",
        Field::EncryptionKeyId => "EncryptionKeyId",
        Field::ExcludeCharacters => "ExcludeCharacters",
        Field::ExtendedConfig => "ExtendedConfig",
        Field::InstanceName => "InstanceName",
        Field::KeyMaterialExpireUnix => "KeyMaterialExpireUnix",
        Field::KeyNum => "KeyNum",
        Field::KeySpec => "KeySpec",
        Field::KeyUsage => "KeyUsage",
        Field::KmsInstance => "KmsInstance",
        Field::Name => "Name",
        Field::MoveToVersion => "MoveToVersion",
        Field::NotAfter => "NotAfter",
        Field::NumberOfBytes => "NumberOfBytes",
        Field::PasswordLength => "PasswordLength",
        Field::PendingWindowInDays => "PendingWindowInDays",
        Field::Permissions => "Permissions",
        Field::Plaintext => "Plaintext",
        Field::Policies => "Policies",
        Field::Policy => "Policy",
        Field::ProtectionLevel => "ProtectionLevel",
        Field::PublicKeyBlob => "PublicKeyBlob",
        Field::RecoveryWindowInDays => "RecoveryWindowInDays",
        Field::RemoveFromVersion => "RemoveFromVersion",
        Field::Resources => "Resources",
        Field::RotationInterval => "RotationInterval",
        Field::SecretData => "SecretData",
        Field::SecretDataType => "SecretDataType",
        Field::SecretName => "SecretName",
        Field::SecretNum => "SecretNum",
        Field::SecretType => "SecretType",
        Field::ServiceCode => "ServiceCode",
        Field::SourcePrivateIp => "SourcePrivateIp",
        Field::Spec => "Spec",
        Field::TagKey => "TagKey",
        Field::TagValue => "TagValue",
        Field::Tags => "Tags",
        Field::VersionId => "VersionId",
        Field::VersionStage => "VersionStage",
        Field::VersionStages => "VersionStages",
        Field::WrappingAlgorithm => "WrappingAlgorithm",
    }
}

impl From<kms::Error> for ApiError {
    fn from(e: kms::Error) -> Self {
        match e {
            kms::Error::KeyNotFound => Self::KeyNotFound,
            kms::Error::AliasNotFound => Self::AliasNotFound,
            kms::Error::InvalidImportToken => Self::InvalidImportToken,
            kms::Error::UnsupportedOrigin => Self::UnsupportedOrigin,
            kms::Error::ExpiredImportToken => Self::ExpiredImportToken,
            kms::Error::InvalidKeyMaterial => Self::InvalidKeyMaterial,
            kms::Error::VersionNotFound => Self::KeyVersionNotFound,
            kms::Error::DeletionProtected => Self::DeletionProtected,
            kms::Error::AliasExists => Self::AliasAlreadyExists,
            kms::Error::AliasReserved => Self::UnsupportedAlias,
            kms::Error::KeyState(s) => Self::KeyState(s),
            kms::Error::Unsupported(what) => Self::UnsupportedOperation(what.into()),
            kms::Error::HsmCannot(what) => Self::UnsupportedOperation(what.into()),
            kms::Error::InvalidCiphertext => Self::InvalidCiphertext,
            kms::Error::InvalidParameter { field, reason } => {
                Self::invalid(wire_name(field), reason)
            }
            kms::Error::NoPermission => Self::NoPermission,
            kms::Error::ServiceKey(service) => Self::Denied(format!(
                "the key is the service key of {service}: it can be described and listed, and \
                 only {service} uses and manages it"
            )),
            kms::Error::AccountNotFound
            | kms::Error::SecretNotFound
            | kms::Error::SecretVersionNotFound => Self::ResourceNotFound,
            kms::Error::SecretExists => Self::ResourceExists,
            kms::Error::SecretInDeleteWindow => Self::ResourceInDeleteWindow,
            kms::Error::MissingParameter(field) => Self::MissingParameter(wire_name(field)),
            kms::Error::InstanceNotFound | kms::Error::ResourceNotFound => Self::ResourceNotFound,
            kms::Error::ResourceExists => Self::ResourceExists,
            kms::Error::InUse(what) => Self::ResourceInUse(what),
            kms::Error::LimitExceeded(what) => Self::LimitExceeded(what.into()),
            kms::Error::InstanceInUse { keys, secrets } => Self::ResourceInUse(format!(
                "The KMS instance still holds {keys} keys and {secrets} secrets: delete them, \
                 or release it with ForceDeleteWithoutBackup=true once it is backed up \
                 (its keys and secrets then wait out a 7-day recovery window)."
            )),
            kms::Error::Throttled => Self::Throttled,
            kms::Error::UnsupportedProtectionLevel => {
                Self::UnsupportedProtectionLevel("no HSM is configured".into())
            }
            kms::Error::NotInHsm(spec) => Self::UnsupportedProtectionLevel(
                format!(
                    "the HSM cannot hold {spec} keys (it holds Aliyun_AES_256/192/128, \
                     RSA_2048/3072/4096, EC_P256 and EC_P256K)"
                )
                .into(),
            ),
            kms::Error::HsmUnavailable(detail) => {
                tracing::error!(%detail, "HSM call failed");
                Self::Unavailable("The HSM is temporarily unavailable; try again.".into())
            }
            kms::Error::Internal(detail) => Self::Internal(detail),
        }
    }
}

impl From<crate::rotation::RotationError> for ApiError {
    fn from(e: crate::rotation::RotationError) -> Self {
        use crate::rotation::RotationError;
        match e {
            RotationError::Kms(e) => e.into(),
            e @ (RotationError::NoRotator(_) | RotationError::WrongRotator { .. }) => {
                Self::UnsupportedOperation(e.to_string().into())
            }
            e @ (RotationError::Busy | RotationError::Step { .. }) => {
                Self::Unavailable(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_errors_use_the_documented_codes() {
        assert_eq!(
            ApiError::KeyState(KeyState::Disabled).code(),
            "Rejected.Disabled"
        );
        assert_eq!(
            ApiError::KeyState(KeyState::Disabled).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(ApiError::KeyNotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ApiError::KeyNotFound.message(),
            "The specified Key is not found."
        );
    }

    #[test]
    fn internal_details_stay_out_of_the_message() {
        let e = ApiError::Internal("redb: disk on fire at /secret/path".into());
        assert_eq!(e.message(), "Internal Failure.");
    }
}
