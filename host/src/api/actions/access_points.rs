//! Application access points, network rules, permission policies and client keys (spec §8).

use base64::Engine;
use serde::Serialize;

use super::keys::{Empty, date};
use super::{Action, Ctx, wrap};
use crate::api::params::{Page, Params};
use crate::error::ApiError;
use crate::ids::{AccountId, InstanceId};
use crate::kms::access_points::{
    AccessPointRecord, AccessPolicyRecord, ClientKeyRecord, NetworkRuleRecord, PolicySpec,
    parse_sources,
};
use crate::secret::SecretString;

fn arn(ctx: &Ctx<'_>, account: &AccountId, kind: &str, name: &str) -> String {
    format!("acs:kms:{}:{account}:{kind}/{name}", ctx.kms.region())
}

/// A parameter holding a JSON array of strings.
fn string_list(p: &Params, name: &'static str) -> Result<Option<Vec<String>>, ApiError> {
    p.structured(name)?
        .map(|text| {
            serde_json::from_str::<Vec<String>>(&text)
                .map_err(|_| ApiError::invalid(name, "must be a JSON array of strings"))
        })
        .transpose()
}

/// `AccessControlRules`: `{"NetworkRules": ["name", …]}`.
fn network_rule_names(p: &Params) -> Result<Option<Vec<String>>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Rules {
        #[serde(rename = "NetworkRules", default)]
        network_rules: Vec<String>,
    }
    p.structured("AccessControlRules")?
        .map(|text| {
            serde_json::from_str::<Rules>(&text)
                .map(|r| r.network_rules)
                .map_err(|_| {
                    ApiError::invalid(
                        "AccessControlRules",
                        r#"must be a JSON object {"NetworkRules": ["<name>", ...]}"#,
                    )
                })
        })
        .transpose()
}

fn rules_json(names: &[String]) -> String {
    serde_json::json!({ "NetworkRules": names }).to_string()
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn description(p: &Params) -> Result<Option<String>, ApiError> {
    match p.optional("Description") {
        Some(d) if d.chars().count() > 1024 => Err(ApiError::invalid(
            "Description",
            "longer than 1024 characters",
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

#[derive(Debug)]
struct Named(String);

impl Named {
    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required("Name")?.to_owned()))
    }
}

/// The reply of a List* action: `{"<Outer>": {"<Item>": [...]}}` with paging fields.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PagedReply {
    #[serde(flatten)]
    list: serde_json::Map<String, serde_json::Value>,
    page_number: u64,
    page_size: u64,
    total_count: usize,
}

impl PagedReply {
    fn new<T: Serialize>(outer: &str, item: &'static str, page: &Page, all: Vec<T>) -> Self {
        let total_count = all.len();
        let mut list = serde_json::Map::new();
        list.insert(outer.to_owned(), wrap(item, page.slice(all)));
        Self {
            list,
            page_number: page.number,
            page_size: page.size,
            total_count,
        }
    }
}

/// The Delete* actions by `Name`, each refused while something refers to the resource.
macro_rules! delete_by_name {
    ($action:ident, $method:ident, $kind:literal) => {
        #[doc = concat!("`", stringify!($action), "`.")]
        #[derive(Debug)]
        pub(crate) struct $action(Named);

        impl Action for $action {
            const NAME: &'static str = stringify!($action);
            type Response = Empty;

            fn parse(p: &Params) -> Result<Self, ApiError> {
                Ok(Self(Named::parse(p)?))
            }

            fn resource(&self) -> Option<String> {
                Some(format!("{}/{}", $kind, self.0.0))
            }

            async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
                ctx.kms.$method(&ctx.caller, &self.0.0).await?;
                Ok(Empty {})
            }
        }
    };
}

delete_by_name!(DeleteNetworkRule, delete_network_rule, "network");
delete_by_name!(DeletePolicy, delete_policy, "policy");
delete_by_name!(
    DeleteApplicationAccessPoint,
    delete_access_point,
    "applicationaccesspoint"
);

// ---- network rules ----

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NetworkRuleView {
    arn: String,
    name: String,
    r#type: &'static str,
    source_private_ip: String,
    description: String,
}

impl NetworkRuleView {
    fn new(ctx: &Ctx<'_>, r: &NetworkRuleRecord) -> Self {
        Self {
            arn: arn(ctx, &r.account_id, "network", &r.name),
            name: r.name.clone(),
            r#type: "Private",
            source_private_ip: json_list(&r.source_private_ips),
            description: r.description.clone(),
        }
    }
}

/// `CreateNetworkRule`.
#[derive(Debug)]
pub(crate) struct CreateNetworkRule {
    name: String,
    sources: Vec<String>,
    description: String,
}

impl Action for CreateNetworkRule {
    const NAME: &'static str = "CreateNetworkRule";
    type Response = NetworkRuleView;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        if p.required("Type")? != "Private" {
            return Err(ApiError::invalid("Type", "only Private is supported"));
        }
        Ok(Self {
            name: p.required("Name")?.to_owned(),
            sources: parse_sources(p.required("SourcePrivateIp")?)?,
            description: description(p)?.unwrap_or_default(),
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("network/{}", self.name))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<NetworkRuleView, ApiError> {
        let r = ctx
            .kms
            .create_network_rule(&ctx.caller, &self.name, self.sources, self.description)
            .await?;
        Ok(NetworkRuleView::new(ctx, &r))
    }
}

/// `DescribeNetworkRule`.
#[derive(Debug)]
pub(crate) struct DescribeNetworkRule(Named);

impl Action for DescribeNetworkRule {
    const NAME: &'static str = "DescribeNetworkRule";
    type Response = NetworkRuleView;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Named::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<NetworkRuleView, ApiError> {
        let r = ctx.kms.network_rule(&ctx.caller, &self.0.0)?;
        Ok(NetworkRuleView::new(ctx, &r))
    }
}

/// `ListNetworkRules`.
#[derive(Debug)]
pub(crate) struct ListNetworkRules(Page);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TypedName {
    name: String,
    r#type: &'static str,
}

impl Action for ListNetworkRules {
    const NAME: &'static str = "ListNetworkRules";
    type Response = PagedReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Page::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PagedReply, ApiError> {
        let all: Vec<TypedName> = ctx
            .kms
            .network_rules(&ctx.caller)?
            .into_iter()
            .map(|r| TypedName {
                name: r.name,
                r#type: "Private",
            })
            .collect();
        Ok(PagedReply::new("NetworkRules", "NetworkRule", &self.0, all))
    }
}

/// `UpdateNetworkRule`.
#[derive(Debug)]
pub(crate) struct UpdateNetworkRule {
    name: String,
    sources: Option<Vec<String>>,
    description: Option<String>,
}

impl Action for UpdateNetworkRule {
    const NAME: &'static str = "UpdateNetworkRule";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            name: p.required("Name")?.to_owned(),
            sources: p
                .optional("SourcePrivateIp")
                .map(parse_sources)
                .transpose()?,
            description: description(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("network/{}", self.name))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .update_network_rule(&ctx.caller, &self.name, self.sources, self.description)
            .await?;
        Ok(Empty {})
    }
}

// ---- policies ----

/// `CreatePolicy`'s reply: the lists as the JSON text they came in.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PolicyCreated {
    arn: String,
    name: String,
    kms_instance: String,
    permissions: String,
    resources: String,
    access_control_rules: String,
    description: String,
}

/// `DescribePolicy`'s reply: the lists as JSON arrays (the SDK models them as `List[str]`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PolicyView {
    arn: String,
    name: String,
    kms_instance: String,
    permissions: Vec<String>,
    resources: Vec<String>,
    access_control_rules: String,
    description: String,
}

/// `CreatePolicy`.
#[derive(Debug)]
pub(crate) struct CreatePolicy {
    name: String,
    instance: InstanceId,
    spec: PolicySpec,
}

impl Action for CreatePolicy {
    const NAME: &'static str = "CreatePolicy";
    type Response = PolicyCreated;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            name: p.required("Name")?.to_owned(),
            instance: p.required_as("KmsInstance")?,
            spec: PolicySpec {
                permissions: string_list(p, "Permissions")?
                    .ok_or(ApiError::MissingParameter("Permissions"))?,
                resources: string_list(p, "Resources")?
                    .ok_or(ApiError::MissingParameter("Resources"))?,
                network_rules: network_rule_names(p)?
                    .ok_or(ApiError::MissingParameter("AccessControlRules"))?,
                description: description(p)?.unwrap_or_default(),
            },
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("policy/{}", self.name))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PolicyCreated, ApiError> {
        let r: AccessPolicyRecord = ctx
            .kms
            .create_policy(&ctx.caller, &self.name, &self.instance, self.spec)
            .await?;
        Ok(PolicyCreated {
            arn: arn(ctx, &r.account_id, "policy", &r.name),
            permissions: json_list(&r.permissions),
            resources: json_list(&r.resources),
            access_control_rules: rules_json(&r.network_rules),
            name: r.name,
            kms_instance: r.kms_instance,
            description: r.description,
        })
    }
}

/// `DescribePolicy`.
#[derive(Debug)]
pub(crate) struct DescribePolicy(Named);

impl Action for DescribePolicy {
    const NAME: &'static str = "DescribePolicy";
    type Response = PolicyView;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Named::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PolicyView, ApiError> {
        let r = ctx.kms.policy(&ctx.caller, &self.0.0)?;
        Ok(PolicyView {
            arn: arn(ctx, &r.account_id, "policy", &r.name),
            access_control_rules: rules_json(&r.network_rules),
            name: r.name,
            kms_instance: r.kms_instance,
            permissions: r.permissions,
            resources: r.resources,
            description: r.description,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NameOnly {
    name: String,
}

/// `ListPolicies`.
#[derive(Debug)]
pub(crate) struct ListPolicies(Page);

impl Action for ListPolicies {
    const NAME: &'static str = "ListPolicies";
    type Response = PagedReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Page::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PagedReply, ApiError> {
        let all: Vec<NameOnly> = ctx
            .kms
            .policies(&ctx.caller)?
            .into_iter()
            .map(|r| NameOnly { name: r.name })
            .collect();
        Ok(PagedReply::new("Policies", "Policy", &self.0, all))
    }
}

/// `UpdatePolicy`.
#[derive(Debug)]
pub(crate) struct UpdatePolicy {
    name: String,
    permissions: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    network_rules: Option<Vec<String>>,
    description: Option<String>,
}

impl Action for UpdatePolicy {
    const NAME: &'static str = "UpdatePolicy";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            name: p.required("Name")?.to_owned(),
            permissions: string_list(p, "Permissions")?,
            resources: string_list(p, "Resources")?,
            network_rules: network_rule_names(p)?,
            description: description(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("policy/{}", self.name))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .update_policy(
                &ctx.caller,
                &self.name,
                self.permissions,
                self.resources,
                self.network_rules,
                self.description,
            )
            .await?;
        Ok(Empty {})
    }
}

// ---- access points ----

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccessPointView {
    arn: String,
    name: String,
    authentication_method: &'static str,
    policies: String,
    description: String,
}

impl AccessPointView {
    fn new(ctx: &Ctx<'_>, a: &AccessPointRecord) -> Self {
        Self {
            arn: arn(ctx, &a.account_id, "applicationaccesspoint", &a.name),
            name: a.name.clone(),
            authentication_method: "ClientKey",
            policies: json_list(&a.policies),
            description: a.description.clone(),
        }
    }
}

/// `CreateApplicationAccessPoint`.
#[derive(Debug)]
pub(crate) struct CreateApplicationAccessPoint {
    name: String,
    policies: Vec<String>,
    description: String,
}

impl Action for CreateApplicationAccessPoint {
    const NAME: &'static str = "CreateApplicationAccessPoint";
    type Response = AccessPointView;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        if let Some(m) = p.optional("AuthenticationMethod")
            && m != "ClientKey"
        {
            return Err(ApiError::invalid(
                "AuthenticationMethod",
                "only ClientKey is supported",
            ));
        }
        Ok(Self {
            name: p.required("Name")?.to_owned(),
            policies: string_list(p, "Policies")?.ok_or(ApiError::MissingParameter("Policies"))?,
            description: description(p)?.unwrap_or_default(),
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("applicationaccesspoint/{}", self.name))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<AccessPointView, ApiError> {
        let a = ctx
            .kms
            .create_access_point(&ctx.caller, &self.name, self.policies, self.description)
            .await?;
        Ok(AccessPointView::new(ctx, &a))
    }
}

/// `DescribeApplicationAccessPoint`.
#[derive(Debug)]
pub(crate) struct DescribeApplicationAccessPoint(Named);

impl Action for DescribeApplicationAccessPoint {
    const NAME: &'static str = "DescribeApplicationAccessPoint";
    type Response = AccessPointView;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Named::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<AccessPointView, ApiError> {
        let a = ctx.kms.access_point(&ctx.caller, &self.0.0)?;
        Ok(AccessPointView::new(ctx, &a))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AccessPointEntry {
    name: String,
    authentication_method: &'static str,
}

/// `ListApplicationAccessPoints`.
#[derive(Debug)]
pub(crate) struct ListApplicationAccessPoints(Page);

impl Action for ListApplicationAccessPoints {
    const NAME: &'static str = "ListApplicationAccessPoints";
    type Response = PagedReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Page::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PagedReply, ApiError> {
        let all: Vec<AccessPointEntry> = ctx
            .kms
            .access_points(&ctx.caller)?
            .into_iter()
            .map(|a| AccessPointEntry {
                name: a.name,
                authentication_method: "ClientKey",
            })
            .collect();
        Ok(PagedReply::new(
            "ApplicationAccessPoints",
            "ApplicationAccessPoint",
            &self.0,
            all,
        ))
    }
}

/// `UpdateApplicationAccessPoint`.
#[derive(Debug)]
pub(crate) struct UpdateApplicationAccessPoint {
    name: String,
    policies: Option<Vec<String>>,
    description: Option<String>,
}

impl Action for UpdateApplicationAccessPoint {
    const NAME: &'static str = "UpdateApplicationAccessPoint";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            name: p.required("Name")?.to_owned(),
            policies: string_list(p, "Policies")?,
            description: description(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("applicationaccesspoint/{}", self.name))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms
            .update_access_point(&ctx.caller, &self.name, self.policies, self.description)
            .await?;
        Ok(Empty {})
    }
}

// ---- client keys ----

/// The client-key password rule: 8–64 characters of at least two of digits, letters and
/// `~!@#$%^&*?_-`.
fn check_password(pw: &SecretString) -> Result<(), ApiError> {
    let s = pw.expose();
    let classes = [
        s.chars().any(|c| c.is_ascii_digit()),
        s.chars().any(|c| c.is_ascii_alphabetic()),
        s.chars().any(|c| "~!@#$%^&*?_-".contains(c)),
    ];
    let allowed = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "~!@#$%^&*?_-".contains(c));
    if (8..=64).contains(&s.chars().count())
        && allowed
        && classes.iter().filter(|c| **c).count() >= 2
    {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "Password",
            "8-64 characters with at least two of: digits, letters, ~!@#$%^&*?_-",
        ))
    }
}

fn parse_time(name: &'static str, text: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|_| ApiError::invalid(name, "must be yyyy-MM-ddTHH:mm:ssZ"))
}

/// `CreateClientKey`.
#[derive(Debug)]
pub(crate) struct CreateClientKey {
    aap: String,
    password: SecretString,
    validity: Option<(i64, i64)>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ClientKeyCreated {
    client_key_id: String,
    key_algorithm: &'static str,
    not_before: String,
    not_after: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    private_key_data: SecretString,
}

impl Action for CreateClientKey {
    const NAME: &'static str = "CreateClientKey";
    type Response = ClientKeyCreated;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let password = p.required_secret("Password")?;
        check_password(&password)?;
        let validity = match (p.optional("NotBefore"), p.optional("NotAfter")) {
            (None, None) => None,
            (Some(b), Some(a)) => Some((parse_time("NotBefore", b)?, parse_time("NotAfter", a)?)),
            (Some(_), None) => return Err(ApiError::MissingParameter("NotAfter")),
            (None, Some(_)) => return Err(ApiError::MissingParameter("NotBefore")),
        };
        Ok(Self {
            aap: p.required("AapName")?.to_owned(),
            password,
            validity,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("applicationaccesspoint/{}", self.aap))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ClientKeyCreated, ApiError> {
        let (k, pkcs12) = ctx
            .kms
            .create_client_key(&ctx.caller, &self.aap, self.password, self.validity)
            .await?;
        Ok(ClientKeyCreated {
            client_key_id: k.client_key_id,
            key_algorithm: "RSA_2048",
            not_before: date(k.not_before),
            not_after: date(k.not_after),
            private_key_data: SecretString::new(
                base64::engine::general_purpose::STANDARD.encode(pkcs12.expose()),
            ),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ClientKeyView {
    client_key_id: String,
    aap_name: String,
    key_algorithm: &'static str,
    key_origin: &'static str,
    create_time: String,
    not_before: String,
    not_after: String,
    public_key_data: String,
}

impl From<ClientKeyRecord> for ClientKeyView {
    fn from(k: ClientKeyRecord) -> Self {
        Self {
            client_key_id: k.client_key_id,
            aap_name: k.aap_name,
            key_algorithm: "RSA_2048",
            key_origin: "KMS_PROVIDED",
            create_time: date(k.created),
            not_before: date(k.not_before),
            not_after: date(k.not_after),
            public_key_data: k.certificate_pem,
        }
    }
}

/// `GetClientKey`.
#[derive(Debug)]
pub(crate) struct GetClientKey(String);

impl Action for GetClientKey {
    const NAME: &'static str = "GetClientKey";
    type Response = ClientKeyView;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required("ClientKeyId")?.to_owned()))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ClientKeyView, ApiError> {
        Ok(ctx.kms.client_key(&ctx.caller, &self.0)?.into())
    }
}

/// `ListClientKeys`.
#[derive(Debug)]
pub(crate) struct ListClientKeys(Option<String>);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ClientKeysReply {
    client_keys: Vec<ClientKeyView>,
}

impl Action for ListClientKeys {
    const NAME: &'static str = "ListClientKeys";
    type Response = ClientKeysReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.optional("AapName").map(str::to_owned)))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ClientKeysReply, ApiError> {
        let keys = ctx.kms.client_keys(&ctx.caller, self.0.as_deref())?;
        Ok(ClientKeysReply {
            client_keys: keys.into_iter().map(ClientKeyView::from).collect(),
        })
    }
}

/// `DeleteClientKey`.
#[derive(Debug)]
pub(crate) struct DeleteClientKey(String);

impl Action for DeleteClientKey {
    const NAME: &'static str = "DeleteClientKey";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required("ClientKeyId")?.to_owned()))
    }

    fn resource(&self) -> Option<String> {
        Some(format!("clientkey/{}", self.0))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<Empty, ApiError> {
        ctx.kms.delete_client_key(&ctx.caller, &self.0).await?;
        Ok(Empty {})
    }
}
