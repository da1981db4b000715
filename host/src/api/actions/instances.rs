//! KMS instances: the operator's `ArcaCreateKmsInstance` and the account's instance actions.

use serde::Serialize;

use super::keys::date;
use super::{Action, Ctx};
use crate::api::params::{Page, Params};
use crate::error::ApiError;
use crate::ids::{AccountId, InstanceId};
use crate::kms::instances::{InstanceRecord, NewInstance};
use crate::kms::model::ProtectionLevel;

fn instance_arn(region: &str, i: &InstanceRecord) -> String {
    format!(
        "acs:kms:{region}:{}:keystore/{}",
        i.account_id, i.instance_id
    )
}

/// `GetKmsInstance`'s `KmsInstance`: the SDK model's fields, with the cloud-only ones (VPC
/// bindings, billing) answered as an on-premises deployment has them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InstanceView {
    instance_id: String,
    instance_name: String,
    spec: u32,
    key_num: u32,
    secret_num: String,
    vpc_num: u32,
    status: &'static str,
    create_time: String,
    start_date: String,
    product_type: &'static str,
    product_version: &'static str,
    charge_type: &'static str,
    sale_status: &'static str,
    deletion_protection: bool,
    log: u32,
    log_storage: u32,
    zone_ids: Vec<String>,
    vswitch_ids: Vec<String>,
    bind_vpcs: serde_json::Value,
    /// The CA that signed the data plane's TLS certificate (the instance SDK's `ca`).
    ca_certificate_chain_pem: String,
    /// Arca's addition: where the instance's keys live.
    protection_level: &'static str,
    /// Arca's addition: the data plane's `host:port` (the instance SDK's `endpoint`).
    endpoint: String,
}

impl InstanceView {
    fn new(i: &InstanceRecord) -> Self {
        Self {
            instance_id: i.instance_id.to_string(),
            instance_name: i.name.clone(),
            spec: i.spec,
            key_num: i.key_quota,
            secret_num: i.secret_quota.to_string(),
            vpc_num: 0,
            status: "Connected",
            create_time: date(i.created),
            start_date: date(i.created),
            product_type: match i.protection {
                ProtectionLevel::Software => "arca_software",
                ProtectionLevel::Hsm => "arca_hsm",
            },
            product_version: "3",
            charge_type: "PREPAY",
            sale_status: "normal",
            deletion_protection: false,
            log: 0,
            log_storage: 0,
            zone_ids: Vec::new(),
            vswitch_ids: Vec::new(),
            bind_vpcs: serde_json::json!({ "BindVpc": [] }),
            ca_certificate_chain_pem: i.tls.ca_pem.clone(),
            protection_level: i.protection.as_str(),
            endpoint: i.endpoint.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InstanceReply {
    kms_instance: InstanceView,
}

/// `ArcaCreateKmsInstance`: provisions an instance for an account (admins only) and starts
/// its data plane, on `Endpoint` when given, else on a free port of the data-plane host.
#[derive(Debug)]
pub(crate) struct ArcaCreateKmsInstance {
    instance: NewInstance,
    endpoint: Option<std::net::SocketAddr>,
}

impl Action for ArcaCreateKmsInstance {
    const NAME: &'static str = "ArcaCreateKmsInstance";
    type Response = InstanceReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let int = |name: &'static str, default: u64| -> Result<u32, ApiError> {
            let v = p.int(name, 1..=1_000_000)?.unwrap_or(default);
            u32::try_from(v).map_err(|_| ApiError::invalid(name, "out of range"))
        };
        Ok(Self {
            endpoint: p.optional_as("Endpoint")?,
            instance: NewInstance {
                endpoint: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                account: p.required_as::<AccountId>("AccountId")?,
                name: p.optional("InstanceName").map(str::to_owned),
                protection: p
                    .optional_as::<ProtectionLevel>("ProtectionLevel")?
                    .unwrap_or(ProtectionLevel::Software),
                spec: int("Spec", 1000)?,
                key_quota: int("KeyNum", 1000)?,
                secret_quota: int("SecretNum", 100)?,
            },
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.instance.account.to_string())
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<InstanceReply, ApiError> {
        if !ctx.caller.admin {
            return Err(ApiError::NoPermission);
        }
        let listener = ctx
            .dataplane
            .bind(self.endpoint)
            .await
            .map_err(|e| ApiError::invalid("Endpoint", format!("cannot listen there: {e}")))?;
        let mut new = self.instance;
        new.endpoint = listener
            .local_addr()
            .map_err(|e| ApiError::Internal(format!("listener address: {e}")))?;
        let i = ctx.kms.create_instance(&ctx.caller, new).await?;
        ctx.dataplane.start(&i, listener)?;
        Ok(InstanceReply {
            kms_instance: InstanceView::new(&i),
        })
    }
}

/// `GetKmsInstance`.
#[derive(Debug)]
pub(crate) struct GetKmsInstance(InstanceId);

impl Action for GetKmsInstance {
    const NAME: &'static str = "GetKmsInstance";
    type Response = InstanceReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(p.required_as("KmsInstanceId")?))
    }

    fn resource(&self) -> Option<String> {
        Some(format!("keystore/{}", self.0))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<InstanceReply, ApiError> {
        let i = ctx.kms.instance(&ctx.caller, &self.0)?;
        Ok(InstanceReply {
            kms_instance: InstanceView::new(&i),
        })
    }
}

/// `ListKmsInstances`.
#[derive(Debug)]
pub(crate) struct ListKmsInstances(Page);

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceEntry {
    kms_instance_id: String,
    kms_instance_arn: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListInstancesReply {
    kms_instances: serde_json::Value,
    page_number: u64,
    page_size: u64,
    total_count: usize,
}

impl Action for ListKmsInstances {
    const NAME: &'static str = "ListKmsInstances";
    type Response = ListInstancesReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self(Page::parse(p)?))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ListInstancesReply, ApiError> {
        let all = ctx.kms.list_instances(&ctx.caller)?;
        let total_count = all.len();
        let entries: Vec<InstanceEntry> = self
            .0
            .slice(all)
            .iter()
            .map(|i| InstanceEntry {
                kms_instance_id: i.instance_id.to_string(),
                kms_instance_arn: instance_arn(ctx.kms.region(), i),
            })
            .collect();
        Ok(ListInstancesReply {
            kms_instances: super::wrap("KmsInstance", entries),
            page_number: self.0.number,
            page_size: self.0.size,
            total_count,
        })
    }
}

/// `GetDefaultKmsInstance`: the account's first instance (empty when it has none).
#[derive(Debug)]
pub(crate) struct GetDefaultKmsInstance;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DefaultInstanceReply {
    default_kms_instance_id: String,
}

impl Action for GetDefaultKmsInstance {
    const NAME: &'static str = "GetDefaultKmsInstance";
    type Response = DefaultInstanceReply;

    fn parse(_: &Params) -> Result<Self, ApiError> {
        Ok(Self)
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<DefaultInstanceReply, ApiError> {
        let first = ctx.kms.list_instances(&ctx.caller)?.into_iter().next();
        Ok(DefaultInstanceReply {
            default_kms_instance_id: first.map(|i| i.instance_id.to_string()).unwrap_or_default(),
        })
    }
}

/// `GetKmsInstanceQuotaInfos`: the key, secret and QPS quotas and their use.
#[derive(Debug)]
pub(crate) struct GetKmsInstanceQuotaInfos {
    instance: InstanceId,
    resource_type: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct QuotaInfo {
    resource_type: &'static str,
    resource_quota: u32,
    used_quantity: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QuotaInfosReply {
    kms_instance_id: String,
    kms_instance_quota_infos: Vec<QuotaInfo>,
}

impl Action for GetKmsInstanceQuotaInfos {
    const NAME: &'static str = "GetKmsInstanceQuotaInfos";
    type Response = QuotaInfosReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let resource_type = p.optional("ResourceType").map(str::to_owned);
        if let Some(t) = &resource_type
            && !["key", "secret", "qps", "vpc"].contains(&t.as_str())
        {
            return Err(ApiError::invalid(
                "ResourceType",
                "must be key, secret, qps or vpc",
            ));
        }
        Ok(Self {
            instance: p.required_as("KmsInstanceId")?,
            resource_type,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("keystore/{}", self.instance))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<QuotaInfosReply, ApiError> {
        let i = ctx.kms.instance(&ctx.caller, &self.instance)?;
        let usage = ctx.kms.instance_usage(&i)?;
        let all = [
            QuotaInfo {
                resource_type: "key",
                resource_quota: i.key_quota,
                used_quantity: usage.keys,
            },
            QuotaInfo {
                resource_type: "secret",
                resource_quota: i.secret_quota,
                used_quantity: usage.secrets,
            },
            QuotaInfo {
                resource_type: "qps",
                resource_quota: i.spec,
                used_quantity: 0,
            },
            QuotaInfo {
                resource_type: "vpc",
                resource_quota: 0,
                used_quantity: 0,
            },
        ];
        Ok(QuotaInfosReply {
            kms_instance_id: i.instance_id.to_string(),
            kms_instance_quota_infos: all
                .into_iter()
                .filter(|q| {
                    self.resource_type
                        .as_deref()
                        .is_none_or(|t| t == q.resource_type)
                })
                .collect(),
        })
    }
}

/// `ReleaseKmsInstance`.
#[derive(Debug)]
pub(crate) struct ReleaseKmsInstance {
    instance: InstanceId,
    force: bool,
}

impl Action for ReleaseKmsInstance {
    const NAME: &'static str = "ReleaseKmsInstance";
    type Response = super::keys::Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            instance: p.required_as("KmsInstanceId")?,
            force: p.bool("ForceDeleteWithoutBackup")?.unwrap_or(false),
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("keystore/{}", self.instance))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<super::keys::Empty, ApiError> {
        ctx.kms
            .release_instance(&ctx.caller, &self.instance, self.force)
            .await?;
        ctx.dataplane.stop(&self.instance);
        Ok(super::keys::Empty {})
    }
}
