//! Key lifecycle actions.

use serde::Serialize;

use super::{Action, Ctx, wrap};
use crate::api::params::{Page, Params};
use crate::clock::format_utc;
use crate::error::ApiError;
use crate::ids::{KeyRef, key_arn};
use crate::kms::keys::{KeyFilter, NewKey};
use crate::kms::lifecycle::{DEFAULT_ROTATION, parse_interval};
use crate::kms::model::{KeyRecord, KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel};

/// `KeyMetadata` as CreateKey and DescribeKey return it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KeyMetadata {
    arn: String,
    automatic_rotation: &'static str,
    creation_date: String,
    creator: String,
    #[serde(rename = "DKMSInstanceId", skip_serializing_if = "Option::is_none")]
    dkms_instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_date: Option<String>,
    deletion_protection: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_protection_description: Option<String>,
    description: String,
    key_id: String,
    key_spec: &'static str,
    key_state: &'static str,
    key_usage: &'static str,
    last_rotation_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    material_expire_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_rotation_date: Option<String>,
    origin: &'static str,
    primary_key_version: String,
    protection_level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_interval: Option<String>,
}

/// Unix seconds as the SDKs' date-time string.
pub(super) fn date(unix: i64) -> String {
    format_utc(
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

impl KeyMetadata {
    fn new(ctx: &Ctx<'_>, k: &KeyRecord) -> Self {
        let automatic_rotation = match (k.automatic_rotation, k.state) {
            (false, _) => "Disabled",
            (true, KeyState::Enabled) => "Enabled",
            // Scheduled rotation waits while the key cannot be used.
            (true, _) => "Suspended",
        };
        Self {
            arn: key_arn(ctx.kms.region(), &k.account_id, &k.key_id),
            automatic_rotation,
            creation_date: date(k.created),
            creator: k.creator.clone(),
            dkms_instance_id: k.instance.as_ref().map(ToString::to_string),
            delete_date: k.delete_date.map(date),
            deletion_protection: if k.deletion_protection.is_some() {
                "Enabled"
            } else {
                "Disabled"
            },
            deletion_protection_description: k
                .deletion_protection
                .clone()
                .filter(|d| !d.is_empty()),
            description: k.description.clone(),
            key_id: k.key_id.to_string(),
            key_spec: k.spec.as_str(),
            key_state: k.state.as_str(),
            key_usage: k.usage.as_str(),
            last_rotation_date: date(k.last_rotation.unwrap_or(k.created)),
            material_expire_time: k.material_expire.map(date),
            next_rotation_date: k.next_rotation.filter(|_| k.automatic_rotation).map(date),
            origin: k.origin.as_str(),
            primary_key_version: k.primary_version.to_string(),
            protection_level: k.protection.as_str(),
            rotation_interval: k.rotation_interval.map(|s| format!("{s}s")),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KeyMetadataReply {
    key_metadata: KeyMetadata,
}

#[derive(Serialize)]
pub(crate) struct Empty {}

fn enum_param<T: std::str::FromStr>(p: &Params, name: &'static str) -> Result<Option<T>, ApiError> {
    p.optional_as::<T>(name)
}

/// `CreateKey`. Without `ProtectionLevel`, a key placed in a KMS instance takes the
/// instance's level.
#[derive(Debug)]
pub(crate) struct CreateKey {
    key: NewKey,
    protection_given: bool,
}

impl Action for CreateKey {
    const NAME: &'static str = "CreateKey";
    type Response = KeyMetadataReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let spec = enum_param::<KeySpec>(p, "KeySpec")?.unwrap_or(KeySpec::Aes256);
        let usage = enum_param::<KeyUsage>(p, "KeyUsage")?;
        let origin = enum_param::<Origin>(p, "Origin")?.unwrap_or(Origin::Kms);
        let given = enum_param::<ProtectionLevel>(p, "ProtectionLevel")?;
        let protection = given.unwrap_or(ProtectionLevel::Software);
        let rotation = match p.bool("EnableAutomaticRotation")? {
            Some(true) => Some(match p.optional("RotationInterval") {
                Some(text) => parse_interval(text)?,
                None => DEFAULT_ROTATION,
            }),
            _ => None,
        };
        Ok(Self {
            protection_given: given.is_some(),
            key: NewKey {
                spec,
                usage,
                origin,
                protection,
                description: p.optional("Description").unwrap_or_default().to_owned(),
                rotation,
                policy: p.optional("Policy").map(str::to_owned),
                tags: match p.structured("Tags")? {
                    Some(raw) => super::tags::parse_tags_json(&raw)?,
                    None => Vec::new(),
                },
                instance: p.optional_as("DKMSInstanceId")?,
            },
        })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<KeyMetadataReply, ApiError> {
        let mut key = self.key;
        if let (Some(id), false) = (&key.instance, self.protection_given) {
            key.protection = ctx.kms.instance(&ctx.caller, id)?.protection;
        }
        let key = ctx.kms.create_key(&ctx.caller, key).await?;
        Ok(KeyMetadataReply {
            key_metadata: KeyMetadata::new(ctx, &key),
        })
    }
}

/// `DescribeKey`.
#[derive(Debug)]
pub(crate) struct DescribeKey(KeyRef);

impl Action for DescribeKey {
    const NAME: &'static str = "DescribeKey";
    type Response = KeyMetadataReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required_as("KeyId")?))
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.0]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<KeyMetadataReply, ApiError> {
        let key = ctx.kms.resolve(&ctx.caller, &self.0)?;
        Ok(KeyMetadataReply {
            key_metadata: KeyMetadata::new(ctx, &key),
        })
    }
}

/// `ListKeys` with paging and `Filters`.
#[derive(Debug)]
pub(crate) struct ListKeys {
    page: Page,
    filters: Vec<KeyFilter>,
}

/// One `{"Key", "Values"}` item of a `Filters` parameter (ListKeys, ListSecrets).
#[derive(serde::Deserialize)]
pub(super) struct WireFilter {
    #[serde(rename = "Key")]
    pub(super) key: String,
    #[serde(rename = "Values", default)]
    pub(super) values: Vec<String>,
}

/// Decodes a `Filters` JSON array of at most 10 items.
pub(super) fn wire_filters(raw: &str) -> Result<Vec<WireFilter>, ApiError> {
    let wire: Vec<WireFilter> = serde_json::from_str(raw)
        .map_err(|_| ApiError::invalid("Filters", "must be a JSON array of {Key, Values}"))?;
    if wire.len() > 10 {
        return Err(ApiError::invalid("Filters", "at most 10 filters"));
    }
    Ok(wire)
}

fn parse_values<T: std::str::FromStr>(values: &[String]) -> Result<Vec<T>, ApiError> {
    values
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::invalid("Filters", format!("unknown value {v:?}")))
        })
        .collect()
}

fn parse_filters(raw: &str) -> Result<Vec<KeyFilter>, ApiError> {
    wire_filters(raw)?
        .iter()
        .map(|f| {
            Ok(match f.key.as_str() {
                "KeyState" => KeyFilter::State(parse_values::<KeyState>(&f.values)?),
                "KeySpec" => KeyFilter::Spec(parse_values::<KeySpec>(&f.values)?),
                "KeyUsage" => KeyFilter::Usage(parse_values::<KeyUsage>(&f.values)?),
                "ProtectionLevel" => {
                    KeyFilter::Protection(parse_values::<ProtectionLevel>(&f.values)?)
                }
                "Creator" => KeyFilter::Creator(f.values.clone()),
                "CreatorType" => KeyFilter::CreatorType(f.values.clone()),
                "TagKey" => KeyFilter::TagKey(f.values.clone()),
                "TagValue" => KeyFilter::TagValue(f.values.clone()),
                "DKMSInstanceId" => KeyFilter::Instance(f.values.clone()),
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
pub(crate) struct ListKeysReply {
    keys: serde_json::Value,
    total_count: usize,
    page_number: u64,
    page_size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyEntry {
    key_id: String,
    key_arn: String,
}

impl Action for ListKeys {
    const NAME: &'static str = "ListKeys";
    type Response = ListKeysReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let filters = match p.structured("Filters")? {
            Some(raw) => parse_filters(&raw)?,
            None => Vec::new(),
        };
        Ok(Self {
            page: Page::parse(p)?,
            filters,
        })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ListKeysReply, ApiError> {
        let keys = ctx.kms.list_keys(&ctx.caller, &self.filters)?;
        let total_count = keys.len();
        let entries: Vec<KeyEntry> = self
            .page
            .slice(keys)
            .into_iter()
            .map(|k| KeyEntry {
                key_arn: key_arn(ctx.kms.region(), &k.account_id, &k.key_id),
                key_id: k.key_id.to_string(),
            })
            .collect();
        Ok(ListKeysReply {
            keys: wrap("Key", entries),
            total_count,
            page_number: self.page.number,
            page_size: self.page.size,
        })
    }
}

/// An action that takes only a `KeyId` and changes the key through one `Kms` method.
macro_rules! key_state_action {
    ($(#[$doc:meta])* $name:ident => $method:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name(KeyRef);

        impl Action for $name {
            const NAME: &'static str = stringify!($name);
            type Response = Empty;

            fn parse(p: &Params) -> Result<Self, ApiError> {
                Ok(Self(p.required_as("KeyId")?))
            }

            fn resource(&self) -> Option<String> {
                Some(self.0.to_string())
            }


            fn key_refs(&mut self) -> Vec<&mut KeyRef> {

                vec![&mut self.0]

            }

            async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
                ctx.kms.$method(&ctx.caller, &self.0).await?;
                Ok(Empty {})
            }
        }
    };
}

key_state_action!(
    /// `EnableKey`: Disabled → Enabled.
    EnableKey => enable_key
);
key_state_action!(
    /// `DisableKey`: Enabled → Disabled.
    DisableKey => disable_key
);
key_state_action!(
    /// `CancelKeyDeletion`: PendingDeletion → Enabled.
    CancelKeyDeletion => cancel_deletion
);

/// `UpdateKeyDescription`.
#[derive(Debug)]
pub(crate) struct UpdateKeyDescription {
    key: KeyRef,
    description: String,
}

impl Action for UpdateKeyDescription {
    const NAME: &'static str = "UpdateKeyDescription";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        // The description may legitimately be set to empty, so only its presence is required.
        let description = p
            .get("Description")
            .ok_or(ApiError::MissingParameter("Description"))?;
        Ok(Self {
            key: p.required_as("KeyId")?,
            description: description.to_owned(),
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
            .update_description(&ctx.caller, &self.key, &self.description)
            .await?;
        Ok(Empty {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_reject_unknown_keys() {
        let f = parse_filters(r#"[{"Key":"KeyState","Values":["Enabled","Disabled"]},{"Key":"KeySpec","Values":["Aliyun_SM4"]}]"#).unwrap();
        assert_eq!(f.len(), 2);
        assert!(parse_filters(r#"[{"Key":"Nope","Values":["x"]}]"#).is_err());
        assert!(parse_filters(r#"[{"Key":"KeyState","Values":["Sleepy"]}]"#).is_err());
        assert!(parse_filters("not json").is_err());
    }
}

/// `GetKeyPolicy`.
#[derive(Debug)]
pub(crate) struct GetKeyPolicy(KeyRef);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PolicyReply {
    pub(super) policy: String,
}

/// `PolicyName` of the policy actions (keys and secrets): only `default` exists.
pub(super) fn policy_name(p: &Params) -> Result<(), ApiError> {
    match p.optional("PolicyName") {
        None | Some("default") => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "PolicyName",
            "only the default policy exists",
        )),
    }
}

impl Action for GetKeyPolicy {
    const NAME: &'static str = "GetKeyPolicy";
    type Response = PolicyReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        policy_name(p)?;
        Ok(Self(p.required_as("KeyId")?))
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.0]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PolicyReply, ApiError> {
        Ok(PolicyReply {
            policy: ctx.kms.get_key_policy(&ctx.caller, &self.0)?,
        })
    }
}

/// `SetKeyPolicy`.
#[derive(Debug)]
pub(crate) struct SetKeyPolicy {
    key: KeyRef,
    policy: String,
}

impl Action for SetKeyPolicy {
    const NAME: &'static str = "SetKeyPolicy";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        policy_name(p)?;
        Ok(Self {
            key: p.required_as("KeyId")?,
            policy: p.required("Policy")?.to_owned(),
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
            .set_key_policy(&ctx.caller, &self.key, &self.policy)
            .await?;
        Ok(Empty {})
    }
}
