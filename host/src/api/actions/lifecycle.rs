//! Key versions, rotation policy, deletion and deletion protection.

use serde::Serialize;

use super::keys::{Empty, date};
use super::{Action, Ctx, wrap};
use crate::api::params::{Page, Params};
use crate::error::ApiError;
use crate::ids::{KeyRef, KeyVersionId};
use crate::kms::lifecycle::parse_interval;
use crate::kms::model::VersionRecord;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyVersion {
    creation_date: String,
    key_id: String,
    key_version_id: String,
}

impl From<&VersionRecord> for KeyVersion {
    fn from(v: &VersionRecord) -> Self {
        Self {
            creation_date: date(v.created),
            key_id: v.key_id.to_string(),
            key_version_id: v.version_id.to_string(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KeyVersionReply {
    key_version: KeyVersion,
}

/// `CreateKeyVersion`: manual rotation; the new version becomes primary.
#[derive(Debug)]
pub(crate) struct CreateKeyVersion(KeyRef);

impl Action for CreateKeyVersion {
    const NAME: &'static str = "CreateKeyVersion";
    type Response = KeyVersionReply;

    fn key_version(reply: &KeyVersionReply) -> Option<&str> {
        Some(&reply.key_version.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required_as("KeyId")?))
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.0]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<KeyVersionReply, ApiError> {
        let v = ctx.kms.create_key_version(&ctx.caller, &self.0).await?;
        Ok(KeyVersionReply {
            key_version: (&v).into(),
        })
    }
}

/// `DescribeKeyVersion`.
#[derive(Debug)]
pub(crate) struct DescribeKeyVersion {
    key: KeyRef,
    version: KeyVersionId,
}

impl Action for DescribeKeyVersion {
    const NAME: &'static str = "DescribeKeyVersion";
    type Response = KeyVersionReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            version: p.required_as("KeyVersionId")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<KeyVersionReply, ApiError> {
        let v = ctx
            .kms
            .describe_key_version(&ctx.caller, &self.key, &self.version)?;
        Ok(KeyVersionReply {
            key_version: (&v).into(),
        })
    }
}

/// `ListKeyVersions`.
#[derive(Debug)]
pub(crate) struct ListKeyVersions {
    key: KeyRef,
    page: Page,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KeyVersionsReply {
    key_versions: serde_json::Value,
    total_count: usize,
    page_number: u64,
    page_size: u64,
}

impl Action for ListKeyVersions {
    const NAME: &'static str = "ListKeyVersions";
    type Response = KeyVersionsReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            page: Page::parse(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<KeyVersionsReply, ApiError> {
        let all = ctx.kms.list_key_versions(&ctx.caller, &self.key)?;
        let total_count = all.len();
        let page: Vec<KeyVersion> = self.page.slice(all).iter().map(KeyVersion::from).collect();
        Ok(KeyVersionsReply {
            key_versions: wrap("KeyVersion", page),
            total_count,
            page_number: self.page.number,
            page_size: self.page.size,
        })
    }
}

/// `UpdateRotationPolicy`.
#[derive(Debug)]
pub(crate) struct UpdateRotationPolicy {
    key: KeyRef,
    enable: bool,
    interval: Option<u64>,
}

impl Action for UpdateRotationPolicy {
    const NAME: &'static str = "UpdateRotationPolicy";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let enable = p
            .bool("EnableAutomaticRotation")?
            .ok_or(ApiError::MissingParameter("EnableAutomaticRotation"))?;
        let interval = p
            .optional("RotationInterval")
            .map(parse_interval)
            .transpose()?;
        if enable && interval.is_none() {
            return Err(ApiError::MissingParameter("RotationInterval"));
        }
        Ok(Self {
            key: p.required_as("KeyId")?,
            enable,
            interval,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .update_rotation_policy(&ctx.caller, &self.key, self.enable, self.interval)
            .await?;
        Ok(Empty {})
    }
}

/// `ScheduleKeyDeletion`: 7–366 days in `PendingDeletion`, then the key is destroyed.
#[derive(Debug)]
pub(crate) struct ScheduleKeyDeletion {
    key: KeyRef,
    days: u64,
}

impl Action for ScheduleKeyDeletion {
    const NAME: &'static str = "ScheduleKeyDeletion";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let days = p
            .int(
                "PendingWindowInDays",
                crate::kms::lifecycle::DELETION_WINDOW_DAYS,
            )?
            .ok_or(ApiError::MissingParameter("PendingWindowInDays"))?;
        Ok(Self {
            key: p.required_as("KeyId")?,
            days,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .schedule_deletion(&ctx.caller, &self.key, self.days)
            .await?;
        Ok(Empty {})
    }
}

/// `SetDeletionProtection`, naming the key by `ProtectedResourceArn` or `KeyId`.
#[derive(Debug)]
pub(crate) struct SetDeletionProtection {
    key: KeyRef,
    enable: bool,
    description: String,
}

impl Action for SetDeletionProtection {
    const NAME: &'static str = "SetDeletionProtection";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let enable = p
            .bool("EnableDeletionProtection")?
            .ok_or(ApiError::MissingParameter("EnableDeletionProtection"))?;
        let key = match p.optional_as::<KeyRef>("ProtectedResourceArn")? {
            Some(k) => k,
            None => p
                .optional_as::<KeyRef>("KeyId")?
                .ok_or(ApiError::MissingParameter("ProtectedResourceArn"))?,
        };
        let description = p
            .optional("DeletionProtectionDescription")
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            key,
            enable,
            description,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .set_deletion_protection(&ctx.caller, &self.key, self.enable, &self.description)
            .await?;
        Ok(Empty {})
    }
}
