//! Deletion, restore, rotation and secret policies.

use serde::Serialize;

use super::super::keys::{Empty, PolicyReply, date, policy_name};
use super::super::{Action, Ctx};
use crate::api::params::Params;
use crate::error::ApiError;
use crate::ids::{SecretRef, SecretVersionId, secret_arn};
use crate::kms::lifecycle::parse_interval;
use crate::kms::secrets::DEFAULT_RECOVERY_DAYS;

use super::manage::{NameReply, name_reply};
use super::{resource, secret_ref, version_id};

/// `DeleteSecret`.
#[derive(Debug)]
pub(crate) struct DeleteSecret {
    pub(super) secret: SecretRef,
    pub(super) force: bool,
    pub(super) window: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeleteSecretReply {
    pub(super) secret_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) planned_delete_time: Option<String>,
}

impl Action for DeleteSecret {
    const NAME: &'static str = "DeleteSecret";
    type Response = DeleteSecretReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let window = match p.int("RecoveryWindowInDays", 7..=30)? {
            Some(d) => u32::try_from(d).unwrap_or(DEFAULT_RECOVERY_DAYS),
            None => DEFAULT_RECOVERY_DAYS,
        };
        Ok(Self {
            secret: secret_ref(p)?,
            force: p.bool("ForceDeleteWithoutRecovery")?.unwrap_or(false),
            window,
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<DeleteSecretReply, ApiError> {
        let planned = ctx
            .kms
            .delete_secret(&ctx.caller, &self.secret, self.force, self.window)
            .await?;
        let name = match &self.secret {
            SecretRef::Name(n) | SecretRef::Arn { name: n, .. } => n.to_string(),
        };
        Ok(DeleteSecretReply {
            secret_name: name,
            planned_delete_time: planned.map(date),
        })
    }
}

/// `RestoreSecret`.
#[derive(Debug)]
pub(crate) struct RestoreSecret(SecretRef);

impl Action for RestoreSecret {
    const NAME: &'static str = "RestoreSecret";
    type Response = NameReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(secret_ref(p)?))
    }

    fn resource(&self) -> Option<String> {
        resource(&self.0)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<NameReply, ApiError> {
        let s = ctx.kms.restore_secret(&ctx.caller, &self.0).await?;
        Ok(name_reply(&s))
    }
}

/// `UpdateSecretRotationPolicy`.
#[derive(Debug)]
pub(crate) struct UpdateSecretRotationPolicy {
    pub(super) secret: SecretRef,
    pub(super) enable: bool,
    pub(super) interval: Option<u64>,
}

impl Action for UpdateSecretRotationPolicy {
    const NAME: &'static str = "UpdateSecretRotationPolicy";
    type Response = NameReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let enable = p
            .bool("EnableAutomaticRotation")?
            .ok_or(ApiError::MissingParameter("EnableAutomaticRotation"))?;
        Ok(Self {
            secret: secret_ref(p)?,
            enable,
            interval: p
                .optional("RotationInterval")
                .map(parse_interval)
                .transpose()?,
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<NameReply, ApiError> {
        let s = ctx
            .kms
            .update_secret_rotation_policy(&ctx.caller, &self.secret, self.enable, self.interval)
            .await?;
        Ok(name_reply(&s))
    }
}

/// `RotateSecret`: rotates now through the secret's rotator plugin. `VersionId` names the new
/// version and makes the call idempotent; a failed step answers 503 and resumes later.
#[derive(Debug)]
pub(crate) struct RotateSecret {
    pub(super) secret: SecretRef,
    pub(super) version: SecretVersionId,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RotateReply {
    pub(super) arn: String,
    pub(super) secret_name: String,
    pub(super) version_id: String,
}

impl Action for RotateSecret {
    const NAME: &'static str = "RotateSecret";
    type Response = RotateReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            secret: secret_ref(p)?,
            version: version_id(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<RotateReply, ApiError> {
        let s = ctx
            .rotations
            .rotate_now(&ctx.caller, &self.secret, &self.version)
            .await?;
        Ok(RotateReply {
            arn: secret_arn(ctx.kms.region(), &s.account_id, &s.name),
            secret_name: s.name.to_string(),
            version_id: self.version.to_string(),
        })
    }
}

/// `GetSecretPolicy`.
#[derive(Debug)]
pub(crate) struct GetSecretPolicy(SecretRef);

impl Action for GetSecretPolicy {
    const NAME: &'static str = "GetSecretPolicy";
    type Response = PolicyReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        policy_name(p)?;
        Ok(Self(secret_ref(p)?))
    }

    fn resource(&self) -> Option<String> {
        resource(&self.0)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PolicyReply, ApiError> {
        Ok(PolicyReply {
            policy: ctx.kms.get_secret_policy(&ctx.caller, &self.0)?,
        })
    }
}

/// `SetSecretPolicy`.
#[derive(Debug)]
pub(crate) struct SetSecretPolicy {
    pub(super) secret: SecretRef,
    pub(super) policy: String,
}

impl Action for SetSecretPolicy {
    const NAME: &'static str = "SetSecretPolicy";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        policy_name(p)?;
        Ok(Self {
            secret: secret_ref(p)?,
            policy: p.required("Policy")?.to_owned(),
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .set_secret_policy(&ctx.caller, &self.secret, &self.policy)
            .await?;
        Ok(Empty {})
    }
}
