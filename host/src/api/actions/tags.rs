//! Tag actions. Tags live on keys; secrets and certificates arrive with their own issues, so a
//! `SecretName`, `CertificateId` or `ResourceType=secret` names nothing that exists yet.

use serde::Serialize;

use super::keys::Empty;
use super::{Action, Ctx, wrap};
use crate::api::params::Params;
use crate::error::ApiError;
use crate::ids::KeyRef;
use crate::kms::tags::Untag;

/// Parses `[{"TagKey":"k","TagValue":"v"}, …]` (TagResource, CreateKey).
pub(super) fn parse_tags_json(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Wire {
        #[serde(rename = "TagKey")]
        key: String,
        #[serde(rename = "TagValue", default)]
        value: String,
    }
    let wire: Vec<Wire> = serde_json::from_str(raw)
        .map_err(|_| ApiError::invalid("Tags", "must be a JSON array of {TagKey, TagValue}"))?;
    Ok(wire.into_iter().map(|w| (w.key, w.value)).collect())
}

/// Parses `TagKeys`: a JSON array (the official example) or a comma-separated list (the doc).
fn parse_tag_keys(raw: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(raw) {
        Ok(keys) => keys,
        Err(_) => raw
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
    }
}

/// The single resource of TagResource / UntagResource / ListResourceTags.
fn one_key(p: &Params) -> Result<KeyRef, ApiError> {
    if let Some(k) = p.optional_as::<KeyRef>("KeyId")? {
        return Ok(k);
    }
    if p.optional("SecretName").is_some() || p.optional("CertificateId").is_some() {
        return Err(ApiError::ResourceNotFound);
    }
    Err(ApiError::MissingParameter("KeyId"))
}

/// `RegionId` + `ResourceType` of the batch actions (only keys exist so far); returns the region.
fn key_resources(p: &Params) -> Result<String, ApiError> {
    let region = p.required("RegionId")?.to_owned();
    match p.required("ResourceType")? {
        "key" => Ok(region),
        "secret" => Err(ApiError::ResourceNotFound),
        _ => Err(ApiError::invalid("ResourceType", "must be key or secret")),
    }
}

fn check_region(ctx: &Ctx<'_>, region: &str) -> Result<(), ApiError> {
    if region == ctx.kms.region() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "RegionId",
            "this server serves another region",
        ))
    }
}

fn key_refs(ids: Vec<&str>) -> Result<Vec<KeyRef>, ApiError> {
    ids.into_iter()
        .map(|id| {
            id.parse()
                .map_err(|_| ApiError::invalid("ResourceId", "not a key id or ARN"))
        })
        .collect()
}

/// `TagResource`.
#[derive(Debug)]
pub(crate) struct TagResource {
    key: KeyRef,
    tags: Vec<(String, String)>,
}

impl Action for TagResource {
    const NAME: &'static str = "TagResource";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: one_key(p)?,
            tags: parse_tags_json(p.required("Tags")?)?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms.tag_key(&ctx.caller, &self.key, &self.tags).await?;
        Ok(Empty {})
    }
}

/// `UntagResource`.
#[derive(Debug)]
pub(crate) struct UntagResource {
    key: KeyRef,
    keys: Vec<String>,
}

impl Action for UntagResource {
    const NAME: &'static str = "UntagResource";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: one_key(p)?,
            keys: parse_tag_keys(p.required("TagKeys")?),
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .untag_key(&ctx.caller, &self.key, &Untag::Keys(self.keys))
            .await?;
        Ok(Empty {})
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyTag {
    key_id: String,
    tag_key: String,
    tag_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TagsReply {
    tags: serde_json::Value,
}

/// `ListResourceTags`.
#[derive(Debug)]
pub(crate) struct ListResourceTags(KeyRef);

impl Action for ListResourceTags {
    const NAME: &'static str = "ListResourceTags";
    type Response = TagsReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required_as("KeyId")?))
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.to_string())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<TagsReply, ApiError> {
        let key = ctx.kms.resolve(&ctx.caller, &self.0)?;
        let tags: Vec<KeyTag> = key
            .tags
            .iter()
            .map(|(k, v)| KeyTag {
                key_id: key.key_id.to_string(),
                tag_key: k.clone(),
                tag_value: v.clone(),
            })
            .collect();
        Ok(TagsReply {
            tags: wrap("Tag", tags),
        })
    }
}

/// `TagResources`: the same tags on several keys.
#[derive(Debug)]
pub(crate) struct TagResources {
    region: String,
    keys: Vec<KeyRef>,
    tags: Vec<(String, String)>,
}

fn flattened_tags(p: &Params) -> Vec<(String, String)> {
    p.object_list("Tag")
        .into_iter()
        .map(|fields| {
            let get = |name| {
                fields
                    .iter()
                    .find(|(f, _)| *f == name)
                    .map(|(_, v)| (*v).to_owned())
            };
            (
                get("Key").unwrap_or_default(),
                get("Value").unwrap_or_default(),
            )
        })
        .collect()
}

impl Action for TagResources {
    const NAME: &'static str = "TagResources";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let region = key_resources(p)?;
        let keys = key_refs(p.list("ResourceId"))?;
        let tags = flattened_tags(p);
        if keys.is_empty() {
            return Err(ApiError::MissingParameter("ResourceId"));
        }
        if tags.is_empty() {
            return Err(ApiError::MissingParameter("Tag"));
        }
        Ok(Self { region, keys, tags })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        check_region(ctx, &self.region)?;
        // Check every key exists before changing any.
        for k in &self.keys {
            ctx.kms.resolve(&ctx.caller, k)?;
        }
        for k in &self.keys {
            ctx.kms.tag_key(&ctx.caller, k, &self.tags).await?;
        }
        Ok(Empty {})
    }
}

/// `UntagResources`.
#[derive(Debug)]
pub(crate) struct UntagResources {
    region: String,
    keys: Vec<KeyRef>,
    what: Untag,
}

impl Action for UntagResources {
    const NAME: &'static str = "UntagResources";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let region = key_resources(p)?;
        let keys = key_refs(p.list("ResourceId"))?;
        if keys.is_empty() {
            return Err(ApiError::MissingParameter("ResourceId"));
        }
        let tag_keys: Vec<String> = p.list("TagKey").into_iter().map(str::to_owned).collect();
        let what = match p.bool("All")? {
            Some(true) => Untag::All,
            _ if tag_keys.is_empty() => return Err(ApiError::MissingParameter("TagKey")),
            _ => Untag::Keys(tag_keys),
        };
        Ok(Self { region, keys, what })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        check_region(ctx, &self.region)?;
        for k in &self.keys {
            ctx.kms.resolve(&ctx.caller, k)?;
        }
        for k in &self.keys {
            ctx.kms.untag_key(&ctx.caller, k, &self.what).await?;
        }
        Ok(Empty {})
    }
}

/// Entries per `ListTagResources` page.
const TAG_PAGE: usize = 50;

/// `ListTagResources`, paged by an opaque `NextToken`.
#[derive(Debug)]
pub(crate) struct ListTagResources {
    region: String,
    keys: Vec<KeyRef>,
    filter: Vec<(String, String)>,
    offset: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceEntry {
    resource_id: String,
    resource_type: &'static str,
    tag_key: String,
    tag_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TagResourcesReply {
    tag_resources: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

impl Action for ListTagResources {
    const NAME: &'static str = "ListTagResources";
    type Response = TagResourcesReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let region = key_resources(p)?;
        let offset = match p.optional("NextToken") {
            Some(t) => t
                .parse()
                .map_err(|_| ApiError::invalid("NextToken", "not a token from a previous page"))?,
            None => 0,
        };
        Ok(Self {
            region,
            keys: key_refs(p.list("ResourceId"))?,
            filter: flattened_tags(p),
            offset,
        })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<TagResourcesReply, ApiError> {
        check_region(ctx, &self.region)?;
        let all = ctx
            .kms
            .list_key_tags(&ctx.caller, &self.keys, &self.filter)?;
        let total = all.len();
        let page: Vec<TagResourceEntry> = all
            .into_iter()
            .skip(self.offset)
            .take(TAG_PAGE)
            .map(|(k, tag_key, tag_value)| TagResourceEntry {
                resource_id: k.key_id.to_string(),
                resource_type: "key",
                tag_key,
                tag_value,
            })
            .collect();
        let next = self.offset + page.len();
        Ok(TagResourcesReply {
            tag_resources: wrap("TagResource", page),
            next_token: (next < total).then(|| next.to_string()),
        })
    }
}
