//! Region and account status.

use serde::Serialize;

use super::{Action, Ctx, wrap};
use crate::api::params::Params;
use crate::error::ApiError;

/// `DescribeRegions`: the one region this server serves.
#[derive(Debug)]
pub(crate) struct DescribeRegions;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RegionsReply {
    regions: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Region {
    region_id: String,
}

impl Action for DescribeRegions {
    const NAME: &'static str = "DescribeRegions";
    type Response = RegionsReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<RegionsReply, ApiError> {
        let region = Region {
            region_id: ctx.kms.region().to_owned(),
        };
        Ok(RegionsReply {
            regions: wrap("Region", vec![region]),
        })
    }
}

/// `DescribeAccountKmsStatus`: every authenticated account has KMS enabled.
#[derive(Debug)]
pub(crate) struct DescribeAccountKmsStatus;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StatusReply {
    account_status: &'static str,
}

impl Action for DescribeAccountKmsStatus {
    const NAME: &'static str = "DescribeAccountKmsStatus";
    type Response = StatusReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, _: &Ctx<'_>) -> Result<StatusReply, ApiError> {
        Ok(StatusReply {
            account_status: "Enabled",
        })
    }
}

/// `GetRandomPassword`.
#[derive(Debug)]
pub(crate) struct GetRandomPassword(crate::kms::random::PasswordRules);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PasswordReply {
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    random_password: crate::secret::SecretString,
}

impl Action for GetRandomPassword {
    const NAME: &'static str = "GetRandomPassword";
    type Response = PasswordReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let defaults = crate::kms::random::PasswordRules::default();
        let length = p
            .int("PasswordLength", 8..=128)?
            .map_or(Ok(defaults.length), usize::try_from);
        Ok(Self(crate::kms::random::PasswordRules {
            length: length.map_err(|_| ApiError::invalid("PasswordLength", "out of range"))?,
            exclude_characters: p.get("ExcludeCharacters").unwrap_or_default().to_owned(),
            exclude_lowercase: p.bool("ExcludeLowercase")?.unwrap_or(false),
            exclude_uppercase: p.bool("ExcludeUppercase")?.unwrap_or(false),
            exclude_numbers: p.bool("ExcludeNumbers")?.unwrap_or(false),
            exclude_punctuation: p.bool("ExcludePunctuation")?.unwrap_or(false),
            require_each_included_type: p
                .bool("RequireEachIncludedType")?
                .unwrap_or(defaults.require_each_included_type),
        }))
    }

    async fn handle(self, _: &Ctx<'_>) -> Result<PasswordReply, ApiError> {
        Ok(PasswordReply {
            random_password: crate::kms::random::random_password(&self.0)?,
        })
    }
}
