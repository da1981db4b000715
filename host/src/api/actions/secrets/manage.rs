//! Describing and changing secrets: update, version stages, listing, describing.

use serde::Serialize;

use super::super::keys::date;
use super::super::{Action, Ctx, wrap};
use crate::api::params::{Page, Params};
use crate::error::ApiError;
use crate::ids::{SecretRef, SecretVersionId, secret_arn};
use crate::kms::secrets::{SecretFilter, SecretRecord, SecretType};

use super::{RotationFields, StageList, resource, secret_ref, tag_list};

/// The reply of actions that answer only with the secret's name.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NameReply {
    pub(super) secret_name: String,
}

pub(super) fn name_reply(s: &SecretRecord) -> NameReply {
    NameReply {
        secret_name: s.name.to_string(),
    }
}

/// `UpdateSecret`: description and `ExtendedConfig.CustomData`.
#[derive(Debug)]
pub(crate) struct UpdateSecret {
    pub(super) secret: SecretRef,
    pub(super) description: Option<String>,
    pub(super) custom_data: Option<serde_json::Value>,
}

impl Action for UpdateSecret {
    const NAME: &'static str = "UpdateSecret";
    type Response = NameReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        // The current SDK flattens the model: `ExtendedConfig.CustomData.<key>=<value>`; a JSON
        // `ExtendedConfig` with a `CustomData` object is taken too (the legacy SDK's form).
        let mut custom = serde_json::Map::new();
        for (k, v) in p.pairs() {
            if let Some(field) = k.strip_prefix("ExtendedConfig.CustomData.") {
                custom.insert(field.to_owned(), serde_json::Value::String(v.clone()));
            }
        }
        let mut custom_data = (!custom.is_empty()).then_some(serde_json::Value::Object(custom));
        // The legacy SDK sends `ExtendedConfig.CustomData` as one JSON object string.
        if let Some(raw) = p.optional("ExtendedConfig.CustomData") {
            custom_data = Some(match serde_json::from_str(raw) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => {
                    return Err(ApiError::invalid(
                        "ExtendedConfig.CustomData",
                        "must be a JSON object",
                    ));
                }
            });
        }
        if let Some(raw) = p.optional("ExtendedConfig") {
            let v: serde_json::Value = serde_json::from_str(raw)
                .map_err(|_| ApiError::invalid("ExtendedConfig", "must be a JSON object"))?;
            custom_data = Some(v.get("CustomData").cloned().ok_or_else(|| {
                ApiError::invalid("ExtendedConfig", "only CustomData can change")
            })?);
        }
        Ok(Self {
            secret: secret_ref(p)?,
            description: p.optional("Description").map(str::to_owned),
            custom_data,
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<NameReply, ApiError> {
        let s = ctx
            .kms
            .update_secret(
                &ctx.caller,
                &self.secret,
                self.description,
                self.custom_data,
            )
            .await?;
        Ok(name_reply(&s))
    }
}

/// `UpdateSecretVersionStage`.
#[derive(Debug)]
pub(crate) struct UpdateSecretVersionStage {
    pub(super) secret: SecretRef,
    pub(super) stage: String,
    pub(super) remove_from: Option<SecretVersionId>,
    pub(super) move_to: Option<SecretVersionId>,
}

impl Action for UpdateSecretVersionStage {
    const NAME: &'static str = "UpdateSecretVersionStage";
    type Response = NameReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            secret: secret_ref(p)?,
            stage: p.required("VersionStage")?.to_owned(),
            remove_from: p.optional_as("RemoveFromVersion")?,
            move_to: p.optional_as("MoveToVersion")?,
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<NameReply, ApiError> {
        let s = ctx
            .kms
            .update_secret_version_stage(
                &ctx.caller,
                &self.secret,
                &self.stage,
                self.remove_from.as_ref(),
                self.move_to.as_ref(),
            )
            .await?;
        Ok(name_reply(&s))
    }
}

/// `ListSecrets`.
#[derive(Debug)]
pub(crate) struct ListSecrets {
    pub(super) page: Page,
    pub(super) filters: Vec<SecretFilter>,
    pub(super) fetch_tags: bool,
}

pub(super) fn parse_filters(raw: &str) -> Result<Vec<SecretFilter>, ApiError> {
    super::super::keys::wire_filters(raw)?
        .into_iter()
        .map(|f| {
            Ok(match f.key.as_str() {
                "SecretName" => SecretFilter::Name(f.values),
                "Description" => SecretFilter::Description(f.values),
                "TagKey" => SecretFilter::TagKey(f.values),
                "TagValue" => SecretFilter::TagValue(f.values),
                "Creator" => SecretFilter::Creator(f.values),
                "SecretType" => SecretFilter::Type(
                    f.values
                        .iter()
                        .map(|v| SecretType::parse(v).map_err(ApiError::from))
                        .collect::<Result<_, _>>()?,
                ),
                "DKMSInstanceId" => SecretFilter::Instance(f.values),
                other => {
                    return Err(ApiError::invalid(
                        "Filters",
                        format!("unsupported filter key {other:?}"),
                    ));
                }
            })
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListSecretsReply {
    pub(super) secret_list: serde_json::Value,
    pub(super) total_count: usize,
    pub(super) page_number: u64,
    pub(super) page_size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SecretEntry {
    pub(super) secret_name: String,
    pub(super) secret_type: &'static str,
    pub(super) create_time: String,
    pub(super) update_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) planned_delete_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tags: Option<serde_json::Value>,
}

impl Action for ListSecrets {
    const NAME: &'static str = "ListSecrets";
    type Response = ListSecretsReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            page: Page::parse(p)?,
            filters: match p.structured("Filters")? {
                Some(raw) => parse_filters(&raw)?,
                None => Vec::new(),
            },
            fetch_tags: p.bool("FetchTags")?.unwrap_or(false),
        })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ListSecretsReply, ApiError> {
        let all = ctx.kms.list_secrets(&ctx.caller, &self.filters)?;
        let total_count = all.len();
        let entries: Vec<SecretEntry> = self
            .page
            .slice(all)
            .iter()
            .map(|s| SecretEntry {
                secret_name: s.name.to_string(),
                secret_type: s.secret_type.as_str(),
                create_time: date(s.created),
                update_time: date(s.updated),
                planned_delete_time: s.planned_delete.map(date),
                tags: self.fetch_tags.then(|| tag_list(s)),
            })
            .collect();
        Ok(ListSecretsReply {
            secret_list: wrap("Secret", entries),
            total_count,
            page_number: self.page.number,
            page_size: self.page.size,
        })
    }
}

/// `ListSecretVersionIds`.
#[derive(Debug)]
pub(crate) struct ListSecretVersionIds {
    pub(super) secret: SecretRef,
    pub(super) include_deprecated: bool,
    pub(super) page: Page,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VersionIdsReply {
    pub(super) secret_name: String,
    pub(super) version_ids: serde_json::Value,
    pub(super) total_count: usize,
    pub(super) page_number: u64,
    pub(super) page_size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct VersionEntry {
    pub(super) version_id: String,
    pub(super) create_time: String,
    pub(super) version_stages: StageList,
}

impl Action for ListSecretVersionIds {
    const NAME: &'static str = "ListSecretVersionIds";
    type Response = VersionIdsReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let mut page = Page::parse(p)?;
        if p.optional("PageSize").is_none() {
            page.size = 20;
        }
        Ok(Self {
            secret: secret_ref(p)?,
            include_deprecated: p.bool("IncludeDeprecated")?.unwrap_or(false),
            page,
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<VersionIdsReply, ApiError> {
        let (s, versions) =
            ctx.kms
                .list_secret_versions(&ctx.caller, &self.secret, self.include_deprecated)?;
        let total_count = versions.len();
        let entries: Vec<VersionEntry> = self
            .page
            .slice(versions)
            .into_iter()
            .map(|v| VersionEntry {
                version_id: v.version_id.to_string(),
                create_time: date(v.created),
                version_stages: StageList { stages: v.stages },
            })
            .collect();
        Ok(VersionIdsReply {
            secret_name: s.name.to_string(),
            version_ids: wrap("VersionId", entries),
            total_count,
            page_number: self.page.number,
            page_size: self.page.size,
        })
    }
}

/// `DescribeSecret`.
#[derive(Debug)]
pub(crate) struct DescribeSecret {
    pub(super) secret: SecretRef,
    pub(super) fetch_tags: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeSecretReply {
    pub(super) arn: String,
    pub(super) secret_name: String,
    pub(super) secret_type: &'static str,
    pub(super) description: String,
    pub(super) encryption_key_id: String,
    #[serde(rename = "DKMSInstanceId", skip_serializing_if = "Option::is_none")]
    pub(super) dkms_instance_id: Option<String>,
    pub(super) create_time: String,
    pub(super) update_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) planned_delete_time: Option<String>,
    #[serde(flatten)]
    pub(super) rotation: RotationFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) extended_config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tags: Option<serde_json::Value>,
}

impl Action for DescribeSecret {
    const NAME: &'static str = "DescribeSecret";
    type Response = DescribeSecretReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            secret: secret_ref(p)?,
            fetch_tags: p.bool("FetchTags")?.unwrap_or(false),
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<DescribeSecretReply, ApiError> {
        let s = ctx.kms.secret(&ctx.caller, &self.secret)?;
        Ok(DescribeSecretReply {
            arn: secret_arn(ctx.kms.region(), &s.account_id, &s.name),
            secret_name: s.name.to_string(),
            secret_type: s.secret_type.as_str(),
            description: s.description.clone(),
            encryption_key_id: s.encryption_key.to_string(),
            dkms_instance_id: s.instance.as_ref().map(ToString::to_string),
            create_time: date(s.created),
            update_time: date(s.updated),
            planned_delete_time: s.planned_delete.map(date),
            rotation: RotationFields::new(&s),
            extended_config: s.extended_config.clone(),
            tags: self.fetch_tags.then(|| tag_list(&s)),
        })
    }
}
