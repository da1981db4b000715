//! Secret values: create, read (one or a batch) and put.

use std::borrow::Cow;

use serde::Serialize;

use super::super::keys::date;
use super::super::{Action, Ctx};
use crate::api::params::Params;
use crate::error::ApiError;
use crate::ids::{SecretName, SecretRef, SecretVersionId, secret_arn};
use crate::kms::lifecycle::parse_interval;
use crate::kms::secrets::{DataType, NewSecret, NewValue, SecretType, SecretValue};
use crate::secret::SecretString;

use super::{RotationFields, StageList, resource, secret_ref, version_id};

/// `CreateSecret`.
#[derive(Debug)]
pub(crate) struct CreateSecret(NewSecret);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateSecretReply {
    pub(super) arn: String,
    pub(super) secret_name: String,
    pub(super) secret_type: &'static str,
    pub(super) version_id: String,
    #[serde(flatten)]
    pub(super) rotation: RotationFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) extended_config: Option<String>,
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
                Some(raw) => super::super::tags::parse_tags_json(&raw)?,
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
    pub(super) secret_name: String,
    pub(super) secret_type: &'static str,
    pub(super) version_id: String,
    pub(super) create_time: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    pub(super) secret_data: SecretString,
    pub(super) secret_data_type: &'static str,
    pub(super) version_stages: StageList,
    #[serde(flatten)]
    pub(super) rotation: RotationFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) extended_config: Option<String>,
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
    pub(super) secret: SecretRef,
    pub(super) version: Option<SecretVersionId>,
    pub(super) stage: Option<String>,
    pub(super) fetch_extended_config: bool,
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
pub(super) struct WireItem {
    #[serde(rename = "SecretName")]
    pub(super) name: String,
    #[serde(rename = "VersionId", default)]
    pub(super) version: Option<String>,
    #[serde(rename = "VersionStage", default)]
    pub(super) stage: Option<String>,
    #[serde(rename = "FetchExtendedConfig", default)]
    pub(super) fetch: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BatchReply {
    pub(super) secret_values: Vec<ValueReply>,
    pub(super) errors: Vec<BatchError>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct BatchError {
    pub(super) secret_name: String,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) http_status: u16,
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
    pub(super) secret: SecretRef,
    pub(super) version: SecretVersionId,
    pub(super) value: NewValue,
    pub(super) stages: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutReply {
    pub(super) secret_name: String,
    pub(super) version_id: String,
    pub(super) version_stages: StageList,
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
