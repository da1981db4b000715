//! Secrets Manager actions (spec §6.9, §10 "Secrets Manager").

use std::borrow::Cow;

use serde::Serialize;

use super::keys::{Empty, PolicyReply, date, policy_name};
use super::{Action, Ctx, wrap};
use crate::api::params::{Page, Params};
use crate::error::ApiError;
use crate::ids::{SecretName, SecretRef, SecretVersionId, secret_arn};
use crate::kms::lifecycle::parse_interval;
use crate::kms::secrets::{
    DEFAULT_RECOVERY_DAYS, DataType, NewSecret, NewValue, SecretFilter, SecretRecord, SecretType,
    SecretValue,
};
use crate::secret::SecretString;

/// The required `VersionId`: 1–64 printable ASCII characters.
fn version_id(p: &Params) -> Result<SecretVersionId, ApiError> {
    p.required("VersionId")?
        .parse()
        .map_err(|_| ApiError::invalid("VersionId", "1-64 printable characters"))
}

fn secret_ref(p: &Params) -> Result<SecretRef, ApiError> {
    p.required_as("SecretName")
}

/// The audit and access-check form of a secret: `secret/<name>` (the pipeline makes it an ARN
/// in the caller's account) or the ARN as given.
fn resource(secret: &SecretRef) -> Option<String> {
    Some(match secret {
        SecretRef::Name(n) => format!("secret/{n}"),
        arn @ SecretRef::Arn { .. } => arn.to_string(),
    })
}

/// `VersionStages.VersionStage[]`.
#[derive(Serialize)]
struct StageList {
    #[serde(rename = "VersionStage")]
    stages: Vec<String>,
}

/// Seconds as the SDKs show intervals: `604800s`.
fn interval(seconds: Option<u64>) -> Option<String> {
    seconds.map(|s| format!("{s}s"))
}

/// Rotation fields shared by CreateSecret, GetSecretValue and DescribeSecret.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RotationFields {
    automatic_rotation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_rotation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_rotation_date: Option<String>,
}

impl RotationFields {
    fn new(s: &SecretRecord) -> Self {
        Self {
            automatic_rotation: s.rotation_status(),
            rotation_interval: interval(
                s.automatic_rotation
                    .then_some(s.rotation_interval)
                    .flatten(),
            ),
            next_rotation_date: s
                .automatic_rotation
                .then_some(s.next_rotation)
                .flatten()
                .map(date),
            last_rotation_date: s.last_rotation.map(date),
        }
    }
}

fn tag_list(s: &SecretRecord) -> serde_json::Value {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Tag<'a> {
        tag_key: &'a str,
        tag_value: &'a str,
    }
    wrap(
        "Tag",
        s.tags
            .iter()
            .map(|(k, v)| Tag {
                tag_key: k,
                tag_value: v,
            })
            .collect(),
    )
}

/// `CreateSecret`.
#[derive(Debug)]
pub(crate) struct CreateSecret(NewSecret);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateSecretReply {
    arn: String,
    secret_name: String,
    secret_type: &'static str,
    version_id: String,
    #[serde(flatten)]
    rotation: RotationFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    extended_config: Option<String>,
}

impl Action for CreateSecret {
    const NAME: &'static str = "CreateSecret";
    type Response = CreateSecretReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let secret_type = match p.optional("SecretType") {
            Some(t) => SecretType::parse(t)?,
            None => SecretType::Generic,
        };
        let extended_config = p.structured("ExtendedConfig")?.map(Cow::into_owned);
        let raw_name = p.required("SecretName")?;
        let name: SecretName = match (secret_type, raw_name) {
            // RAM secrets are named by the service after the account they hold a key of.
            (SecretType::RamCredentials, "$Auto") => {
                let user = extended_config
                    .as_deref()
                    .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
                    .and_then(|c| {
                        c.get("UserName")
                            .and_then(|u| u.as_str())
                            .map(str::to_owned)
                    })
                    .ok_or_else(|| {
                        ApiError::invalid("ExtendedConfig", "RAM secrets need a UserName")
                    })?;
                format!("acs/ram/user/{user}")
                    .parse()
                    .map_err(|_| ApiError::invalid("ExtendedConfig", "UserName is not valid"))?
            }
            _ => raw_name.parse().map_err(|_| {
                ApiError::invalid("SecretName", "1-192 of A-Z a-z 0-9 _ / + = . @ -")
            })?,
        };
        let managed_name = match secret_type {
            SecretType::RamCredentials => name.as_str().starts_with("acs/ram/user/"),
            SecretType::Ecs => name.as_str().starts_with("acs/ecs/"),
            _ => !name.is_managed(),
        };
        if !managed_name {
            return Err(ApiError::invalid(
                "SecretName",
                "names under acs/ are reserved: acs/ram/user/ for RAMCredentials ($Auto), acs/ecs/ for ECS",
            ));
        }
        if secret_type.managed() && extended_config.is_none() {
            return Err(ApiError::MissingParameter("ExtendedConfig"));
        }
        let data_type = match p.optional("SecretDataType") {
            Some(t) => DataType::parse(t)?,
            None => DataType::Text,
        };
        let rotation = match p.bool("EnableAutomaticRotation")? {
            Some(true) => Some(parse_interval(p.required("RotationInterval")?)?),
            _ => None,
        };
        Ok(Self(NewSecret {
            name,
            secret_type,
            version: version_id(p)?,
            value: NewValue::from_wire(p.required_secret("SecretData")?, data_type)?,
            description: p.optional("Description").unwrap_or_default().to_owned(),
            encryption_key: p.optional_as("EncryptionKeyId")?,
            extended_config,
            rotation,
            tags: match p.structured("Tags")? {
                Some(raw) => super::tags::parse_tags_json(&raw)?,
                None => Vec::new(),
            },
            policy: p.optional("Policy").map(str::to_owned),
            instance: p.optional_as("DKMSInstanceId")?,
        }))
    }

    fn resource(&self) -> Option<String> {
        Some(format!("secret/{}", self.0.name))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<CreateSecretReply, ApiError> {
        ctx.rotations
            .check_named(self.0.secret_type, self.0.extended_config.as_deref())
            .map_err(|e| ApiError::invalid("ExtendedConfig", e.to_string()))?;
        let version = self.0.version.to_string();
        let s = ctx.kms.create_secret(&ctx.caller, self.0).await?;
        Ok(CreateSecretReply {
            arn: secret_arn(ctx.kms.region(), &s.account_id, &s.name),
            secret_name: s.name.to_string(),
            secret_type: s.secret_type.as_str(),
            version_id: version,
            rotation: RotationFields::new(&s),
            extended_config: s
                .extended_config
                .clone()
                .filter(|_| s.secret_type.managed()),
        })
    }
}

/// The fields of one value, as GetSecretValue and BatchGetSecretValue return them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ValueReply {
    secret_name: String,
    secret_type: &'static str,
    version_id: String,
    create_time: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    secret_data: SecretString,
    secret_data_type: &'static str,
    version_stages: StageList,
    #[serde(flatten)]
    rotation: RotationFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    extended_config: Option<String>,
}

impl ValueReply {
    fn new(v: SecretValue, fetch_extended_config: bool) -> Self {
        Self {
            secret_name: v.secret.name.to_string(),
            secret_type: v.secret.secret_type.as_str(),
            version_id: v.version_id.to_string(),
            create_time: date(v.created),
            secret_data: v.data,
            secret_data_type: v.data_type.as_str(),
            version_stages: StageList { stages: v.stages },
            rotation: RotationFields::new(&v.secret),
            extended_config: v
                .secret
                .extended_config
                .clone()
                .filter(|_| fetch_extended_config),
        }
    }
}

/// `GetSecretValue`.
#[derive(Debug)]
pub(crate) struct GetSecretValue {
    secret: SecretRef,
    version: Option<SecretVersionId>,
    stage: Option<String>,
    fetch_extended_config: bool,
}

impl Action for GetSecretValue {
    const NAME: &'static str = "GetSecretValue";
    type Response = ValueReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        if p.optional("Recipient").is_some() {
            return Err(ApiError::UnsupportedOperation(
                "Recipient (values encrypted to an enclave) is not supported".into(),
            ));
        }
        Ok(Self {
            secret: secret_ref(p)?,
            version: p.optional_as("VersionId")?,
            stage: p.optional("VersionStage").map(str::to_owned),
            fetch_extended_config: p.bool("FetchExtendedConfig")?.unwrap_or(false),
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ValueReply, ApiError> {
        let v = ctx
            .kms
            .get_secret_value(
                &ctx.caller,
                &self.secret,
                self.version.as_ref(),
                self.stage.as_deref(),
            )
            .await?;
        Ok(ValueReply::new(v, self.fetch_extended_config))
    }
}

/// `BatchGetSecretValue`: up to 20 secrets; failures are listed, not fatal.
#[derive(Debug)]
pub(crate) struct BatchGetSecretValue(Vec<WireItem>);

#[derive(Debug, serde::Deserialize)]
struct WireItem {
    #[serde(rename = "SecretName")]
    name: String,
    #[serde(rename = "VersionId", default)]
    version: Option<String>,
    #[serde(rename = "VersionStage", default)]
    stage: Option<String>,
    #[serde(rename = "FetchExtendedConfig", default)]
    fetch: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BatchReply {
    secret_values: Vec<ValueReply>,
    errors: Vec<BatchError>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchError {
    secret_name: String,
    code: &'static str,
    message: String,
    http_status: u16,
}

impl Action for BatchGetSecretValue {
    const NAME: &'static str = "BatchGetSecretValue";
    type Response = BatchReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let raw = p
            .structured("SecretsList")?
            .ok_or(ApiError::MissingParameter("SecretsList"))?;
        let items: Vec<WireItem> = serde_json::from_str(&raw).map_err(|_| {
            ApiError::invalid(
                "SecretsList",
                "must be a JSON array of {SecretName, VersionId, VersionStage, FetchExtendedConfig}",
            )
        })?;
        if items.is_empty() || items.len() > 20 {
            return Err(ApiError::invalid("SecretsList", "1 to 20 secrets"));
        }
        Ok(Self(items))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<BatchReply, ApiError> {
        let mut reply = BatchReply {
            secret_values: Vec::new(),
            errors: Vec::new(),
        };
        for item in self.0 {
            let fetch = match &item.fetch {
                Some(serde_json::Value::Bool(b)) => *b,
                Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
                _ => false,
            };
            let got = async {
                let secret: SecretRef = item
                    .name
                    .parse()
                    .map_err(|_| ApiError::invalid("SecretName", "not a secret name or ARN"))?;
                let version = item
                    .version
                    .as_deref()
                    .map(|v| {
                        v.parse::<SecretVersionId>()
                            .map_err(|_| ApiError::invalid("VersionId", "not a version id"))
                    })
                    .transpose()?;
                Ok::<SecretValue, ApiError>(
                    ctx.kms
                        .get_secret_value(
                            &ctx.caller,
                            &secret,
                            version.as_ref(),
                            item.stage.as_deref(),
                        )
                        .await?,
                )
            }
            .await;
            match got {
                Ok(v) => reply.secret_values.push(ValueReply::new(v, fetch)),
                Err(e) => reply.errors.push(BatchError {
                    secret_name: item.name,
                    code: e.code(),
                    message: e.message().into_owned(),
                    http_status: e.status().as_u16(),
                }),
            }
        }
        Ok(reply)
    }
}

/// `PutSecretValue`.
#[derive(Debug)]
pub(crate) struct PutSecretValue {
    secret: SecretRef,
    version: SecretVersionId,
    value: NewValue,
    stages: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutReply {
    secret_name: String,
    version_id: String,
    version_stages: StageList,
}

impl Action for PutSecretValue {
    const NAME: &'static str = "PutSecretValue";
    type Response = PutReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let data_type = match p.optional("SecretDataType") {
            Some(t) => DataType::parse(t)?,
            None => DataType::Text,
        };
        let stages = match p.structured("VersionStages")? {
            Some(raw) => Some(serde_json::from_str::<Vec<String>>(&raw).map_err(|_| {
                ApiError::invalid("VersionStages", "must be a JSON array of stage names")
            })?),
            None => None,
        };
        Ok(Self {
            secret: secret_ref(p)?,
            version: version_id(p)?,
            value: NewValue::from_wire(p.required_secret("SecretData")?, data_type)?,
            stages,
        })
    }

    fn resource(&self) -> Option<String> {
        resource(&self.secret)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PutReply, ApiError> {
        let (s, stages) = ctx
            .kms
            .put_secret_value(
                &ctx.caller,
                &self.secret,
                &self.version,
                &self.value,
                self.stages,
            )
            .await?;
        Ok(PutReply {
            secret_name: s.name.to_string(),
            version_id: self.version.to_string(),
            version_stages: StageList { stages },
        })
    }
}

/// The reply of actions that answer only with the secret's name.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NameReply {
    secret_name: String,
}

fn name_reply(s: &SecretRecord) -> NameReply {
    NameReply {
        secret_name: s.name.to_string(),
    }
}

/// `UpdateSecret`: description and `ExtendedConfig.CustomData`.
#[derive(Debug)]
pub(crate) struct UpdateSecret {
    secret: SecretRef,
    description: Option<String>,
    custom_data: Option<serde_json::Value>,
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
    secret: SecretRef,
    stage: String,
    remove_from: Option<SecretVersionId>,
    move_to: Option<SecretVersionId>,
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
    page: Page,
    filters: Vec<SecretFilter>,
    fetch_tags: bool,
}

fn parse_filters(raw: &str) -> Result<Vec<SecretFilter>, ApiError> {
    super::keys::wire_filters(raw)?
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
    secret_list: serde_json::Value,
    total_count: usize,
    page_number: u64,
    page_size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretEntry {
    secret_name: String,
    secret_type: &'static str,
    create_time: String,
    update_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_delete_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<serde_json::Value>,
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
    secret: SecretRef,
    include_deprecated: bool,
    page: Page,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VersionIdsReply {
    secret_name: String,
    version_ids: serde_json::Value,
    total_count: usize,
    page_number: u64,
    page_size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionEntry {
    version_id: String,
    create_time: String,
    version_stages: StageList,
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
    secret: SecretRef,
    fetch_tags: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeSecretReply {
    arn: String,
    secret_name: String,
    secret_type: &'static str,
    description: String,
    encryption_key_id: String,
    #[serde(rename = "DKMSInstanceId", skip_serializing_if = "Option::is_none")]
    dkms_instance_id: Option<String>,
    create_time: String,
    update_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_delete_time: Option<String>,
    #[serde(flatten)]
    rotation: RotationFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    extended_config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<serde_json::Value>,
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

/// `DeleteSecret`.
#[derive(Debug)]
pub(crate) struct DeleteSecret {
    secret: SecretRef,
    force: bool,
    window: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeleteSecretReply {
    secret_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_delete_time: Option<String>,
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
    secret: SecretRef,
    enable: bool,
    interval: Option<u64>,
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
    secret: SecretRef,
    version: SecretVersionId,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RotateReply {
    arn: String,
    secret_name: String,
    version_id: String,
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
    secret: SecretRef,
    policy: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_print_in_seconds() {
        assert_eq!(interval(Some(604_800)).as_deref(), Some("604800s"));
        assert_eq!(interval(None), None);
    }
}
