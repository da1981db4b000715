//! Tag actions, on keys (`KeyId`, `ResourceType=key`) and secrets (`SecretName`,
//! `ResourceType=secret`). Certificates are not a resource of this server, so a `CertificateId`
//! names nothing.

use serde::Serialize;

use super::keys::Empty;
use super::{Action, Ctx, wrap};
use crate::api::params::Params;
use crate::error::ApiError;
use crate::ids::{KeyRef, SecretRef};
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
#[derive(Debug)]
enum Target {
    Key(KeyRef),
    Secret(SecretRef),
}

impl Target {
    fn audit(&self) -> String {
        match self {
            Self::Key(k) => k.to_string(),
            Self::Secret(SecretRef::Name(n)) => format!("secret/{n}"),
            Self::Secret(arn) => arn.to_string(),
        }
    }
}

fn one_target(p: &Params) -> Result<Target, ApiError> {
    if let Some(k) = p.optional_as::<KeyRef>("KeyId")? {
        return Ok(Target::Key(k));
    }
    if let Some(s) = p.optional("SecretName") {
        return s
            .parse()
            .map(Target::Secret)
            .map_err(|_| ApiError::ResourceNotFound);
    }
    if p.optional("CertificateId").is_some() {
        return Err(ApiError::ResourceNotFound);
    }
    Err(ApiError::MissingParameter("KeyId"))
}

/// The kind of resource the batch actions address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    Secret,
}

/// `RegionId` + `ResourceType` of the batch actions.
fn batch_kind(p: &Params) -> Result<(String, Kind), ApiError> {
    let region = p.required("RegionId")?.to_owned();
    match p.required("ResourceType")? {
        "key" => Ok((region, Kind::Key)),
        "secret" => Ok((region, Kind::Secret)),
        _ => Err(ApiError::invalid("ResourceType", "must be key or secret")),
    }
}

/// The batch actions' resources, parsed for their kind.
#[derive(Debug)]
enum Targets {
    Keys(Vec<KeyRef>),
    Secrets(Vec<SecretRef>),
}

impl Targets {
    fn parse(kind: Kind, ids: Vec<&str>) -> Result<Self, ApiError> {
        Ok(match kind {
            Kind::Key => Self::Keys(key_refs(ids)?),
            Kind::Secret => Self::Secrets(
                ids.into_iter()
                    .map(|id| {
                        id.parse().map_err(|_| {
                            ApiError::invalid("ResourceId", "not a secret name or ARN")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Keys(k) => k.is_empty(),
            Self::Secrets(s) => s.is_empty(),
        }
    }

    /// Checks every resource exists (and is the caller's to see) before anything changes.
    fn check(&self, ctx: &Ctx<'_>) -> Result<(), ApiError> {
        match self {
            Self::Keys(keys) => {
                for k in keys {
                    ctx.kms.resolve(&ctx.caller, k)?;
                }
            }
            Self::Secrets(secrets) => {
                for s in secrets {
                    ctx.kms.secret(&ctx.caller, s)?;
                }
            }
        }
        Ok(())
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
    target: Target,
    tags: Vec<(String, String)>,
}

impl Action for TagResource {
    const NAME: &'static str = "TagResource";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            target: one_target(p)?,
            tags: parse_tags_json(
                &p.structured("Tags")?
                    .ok_or(ApiError::MissingParameter("Tags"))?,
            )?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.target.audit())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        match &self.target {
            Target::Key(k) => drop(ctx.kms.tag_key(&ctx.caller, k, &self.tags).await?),
            Target::Secret(s) => drop(ctx.kms.tag_secret(&ctx.caller, s, &self.tags).await?),
        }
        Ok(Empty {})
    }
}

/// `UntagResource`.
#[derive(Debug)]
pub(crate) struct UntagResource {
    target: Target,
    keys: Vec<String>,
}

impl Action for UntagResource {
    const NAME: &'static str = "UntagResource";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            target: one_target(p)?,
            keys: parse_tag_keys(
                &p.structured("TagKeys")?
                    .ok_or(ApiError::MissingParameter("TagKeys"))?,
            ),
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.target.audit())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        let what = Untag::Keys(self.keys);
        match &self.target {
            Target::Key(k) => drop(ctx.kms.untag_key(&ctx.caller, k, &what).await?),
            Target::Secret(s) => drop(ctx.kms.untag_secret(&ctx.caller, s, &what).await?),
        }
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
pub(crate) struct ListResourceTags(Target);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretTag {
    secret_name: String,
    tag_key: String,
    tag_value: String,
}

impl Action for ListResourceTags {
    const NAME: &'static str = "ListResourceTags";
    type Response = TagsReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        one_target(p).map(Self)
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.audit())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<TagsReply, ApiError> {
        let tags = match &self.0 {
            Target::Key(k) => {
                let key = ctx.kms.resolve(&ctx.caller, k)?;
                let tags: Vec<KeyTag> = key
                    .tags
                    .iter()
                    .map(|(k, v)| KeyTag {
                        key_id: key.key_id.to_string(),
                        tag_key: k.clone(),
                        tag_value: v.clone(),
                    })
                    .collect();
                wrap("Tag", tags)
            }
            Target::Secret(s) => {
                let secret = ctx.kms.secret(&ctx.caller, s)?;
                let tags: Vec<SecretTag> = secret
                    .tags
                    .iter()
                    .map(|(k, v)| SecretTag {
                        secret_name: secret.name.to_string(),
                        tag_key: k.clone(),
                        tag_value: v.clone(),
                    })
                    .collect();
                wrap("Tag", tags)
            }
        };
        Ok(TagsReply { tags })
    }
}

/// `TagResources`: the same tags on several keys or secrets.
#[derive(Debug)]
pub(crate) struct TagResources {
    region: String,
    targets: Targets,
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
        let (region, kind) = batch_kind(p)?;
        let targets = Targets::parse(kind, p.list("ResourceId"))?;
        let tags = flattened_tags(p);
        if targets.is_empty() {
            return Err(ApiError::MissingParameter("ResourceId"));
        }
        if tags.is_empty() {
            return Err(ApiError::MissingParameter("Tag"));
        }
        Ok(Self {
            region,
            targets,
            tags,
        })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        check_region(ctx, &self.region)?;
        self.targets.check(ctx)?;
        match &self.targets {
            Targets::Keys(keys) => {
                for k in keys {
                    ctx.kms.tag_key(&ctx.caller, k, &self.tags).await?;
                }
            }
            Targets::Secrets(secrets) => {
                for s in secrets {
                    ctx.kms.tag_secret(&ctx.caller, s, &self.tags).await?;
                }
            }
        }
        Ok(Empty {})
    }
}

/// `UntagResources`.
#[derive(Debug)]
pub(crate) struct UntagResources {
    region: String,
    targets: Targets,
    what: Untag,
}

impl Action for UntagResources {
    const NAME: &'static str = "UntagResources";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let (region, kind) = batch_kind(p)?;
        let targets = Targets::parse(kind, p.list("ResourceId"))?;
        if targets.is_empty() {
            return Err(ApiError::MissingParameter("ResourceId"));
        }
        let tag_keys: Vec<String> = p.list("TagKey").into_iter().map(str::to_owned).collect();
        let what = match p.bool("All")? {
            Some(true) => Untag::All,
            _ if tag_keys.is_empty() => return Err(ApiError::MissingParameter("TagKey")),
            _ => Untag::Keys(tag_keys),
        };
        Ok(Self {
            region,
            targets,
            what,
        })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        check_region(ctx, &self.region)?;
        self.targets.check(ctx)?;
        match &self.targets {
            Targets::Keys(keys) => {
                for k in keys {
                    ctx.kms.untag_key(&ctx.caller, k, &self.what).await?;
                }
            }
            Targets::Secrets(secrets) => {
                for s in secrets {
                    ctx.kms.untag_secret(&ctx.caller, s, &self.what).await?;
                }
            }
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
    targets: Targets,
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
        let (region, kind) = batch_kind(p)?;
        let offset = match p.optional("NextToken") {
            Some(t) => t
                .parse()
                .map_err(|_| ApiError::invalid("NextToken", "not a token from a previous page"))?,
            None => 0,
        };
        Ok(Self {
            region,
            targets: Targets::parse(kind, p.list("ResourceId"))?,
            filter: flattened_tags(p),
            offset,
        })
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<TagResourcesReply, ApiError> {
        check_region(ctx, &self.region)?;
        let all: Vec<(String, &'static str, String, String)> = match &self.targets {
            Targets::Keys(keys) => ctx
                .kms
                .list_key_tags(&ctx.caller, keys, &self.filter)?
                .into_iter()
                .map(|(k, tk, tv)| (k.key_id.to_string(), "key", tk, tv))
                .collect(),
            Targets::Secrets(wanted) => {
                let secrets = if wanted.is_empty() {
                    ctx.kms.list_secrets(&ctx.caller, &[])?
                } else {
                    wanted
                        .iter()
                        .map(|s| ctx.kms.secret(&ctx.caller, s))
                        .collect::<Result<_, _>>()?
                };
                secrets
                    .into_iter()
                    .flat_map(|s| {
                        let name = s.name.to_string();
                        s.tags
                            .into_iter()
                            .map(move |(k, v)| (name.clone(), "secret", k, v))
                    })
                    .filter(|(_, _, k, v)| {
                        self.filter.is_empty()
                            || self
                                .filter
                                .iter()
                                .any(|(fk, fv)| fk == k && (fv.is_empty() || fv == v))
                    })
                    .collect()
            }
        };
        let total = all.len();
        let page: Vec<TagResourceEntry> = all
            .into_iter()
            .skip(self.offset)
            .take(TAG_PAGE)
            .map(
                |(resource_id, resource_type, tag_key, tag_value)| TagResourceEntry {
                    resource_id,
                    resource_type,
                    tag_key,
                    tag_value,
                },
            )
            .collect();
        let next = self.offset + page.len();
        Ok(TagResourcesReply {
            tag_resources: wrap("TagResource", page),
            next_token: (next < total).then(|| next.to_string()),
        })
    }
}
