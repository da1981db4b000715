//! Every API action, and the one pipeline they all run through.
//!
//! Adding an action is one `impl Action` (in the file of its area) and one line in
//! [`actions!`]. Authentication, the account scope, `DryRun`, the audit record, the `RequestId`
//! and error mapping happen once, in [`crate::api::handle`] and [`run`], never in an action.

mod access_points;
mod account;
mod admin;
mod aliases;
mod asymmetric;
mod crypto;
mod import;
mod instances;
mod keys;
mod lifecycle;
mod mac;
mod secrets;
mod sse;
mod tags;

use std::future::Future;

use serde::Serialize;

use crate::error::ApiError;
use crate::ids::AccountId;
use crate::ids::{KeyRef, key_arn};
use crate::kms::{Caller, Kms};
use crate::plugin::{AccessRequest, Decision, PluginHost, Principal, PrincipalKind};

use super::params::Params;

/// What an action sees of its request besides its parameters.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) kms: &'a Kms,
    pub(crate) plugins: &'a std::sync::Arc<PluginHost>,
    pub(crate) rotations: &'a crate::rotation::Rotations,
    /// The KMS instances' data planes (started and stopped with their instances).
    pub(crate) dataplane: &'a std::sync::Arc<crate::dataplane::DataPlane>,
    pub(crate) caller: Caller,
    /// The server-wide access policy to ask before every non-admin action, if configured.
    pub(crate) gate: Option<Gate<'a>>,
}

/// What an access-policy check needs besides the action.
#[derive(Debug)]
pub(crate) struct Gate<'a> {
    /// The policy plugin.
    pub(crate) policy: &'a str,
    /// The AccessKey that signed the request.
    pub(crate) access_key_id: String,
    /// The client's address.
    pub(crate) source_ip: String,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        kms: &'a Kms,
        plugins: &'a std::sync::Arc<PluginHost>,
        rotations: &'a crate::rotation::Rotations,
        dataplane: &'a std::sync::Arc<crate::dataplane::DataPlane>,
        caller: Caller,
        gate: Option<Gate<'a>>,
    ) -> Self {
        Self {
            kms,
            plugins,
            rotations,
            dataplane,
            caller,
            gate,
        }
    }

    /// Asks the access policy, if one is configured, whether this call may proceed.
    /// Admin actions (`Arca*`, but not the services' `ArcaSse*`) are exempt so an operator can
    /// always repair a bad policy.
    /// A policy that fails (traps, times out) denies: access control fails closed.
    async fn check_access(&self, action: &str, resource: Option<&str>) -> Result<(), ApiError> {
        let Some(gate) = &self.gate else {
            return Ok(());
        };
        if action.starts_with("Arca") && !action.starts_with("ArcaSse") {
            return Ok(());
        }
        let req = AccessRequest {
            principal: Principal {
                kind: PrincipalKind::AccessKey,
                account: self.caller.account.to_string(),
                id: gate.access_key_id.clone(),
                application: None,
            },
            action: action.to_string(),
            resource_arn: resource
                .map(|r| resource_arn(self.kms.region(), &self.caller.account, r)),
            source_ip: gate.source_ip.clone(),
            instance: None,
            policies: Vec::new(),
        };
        match self.plugins.decide(gate.policy, &req).await {
            Ok(Decision::Allow(_)) => Ok(()),
            Ok(Decision::Deny(reason)) => Err(ApiError::Denied(reason)),
            Err(e) => {
                tracing::error!(error = %e, "access policy failed; denying");
                Err(ApiError::PolicyUnavailable(e.to_string()))
            }
        }
    }
}

/// One SDK-visible action; the type's `NAME` is the `Action` / `x-acs-action` value.
pub(crate) trait Action: Sized + Send {
    /// The wire name.
    const NAME: &'static str;
    /// The success body (without `RequestId`, which the pipeline adds).
    type Response: Serialize + Send;
    /// Parses and validates parameters: `MissingParameter` / `InvalidParameter` come from here.
    fn parse(p: &Params) -> Result<Self, ApiError>;
    /// The resource the request names, for the audit trail (never secret input).
    fn resource(&self) -> Option<String> {
        None
    }
    /// The keys the request names (`KeyId` and the like). Before the action runs, the
    /// pipeline resolves each (an alias to its key) for the access policy, and pins an alias
    /// to the key the policy saw, so that moving the alias meanwhile changes nothing.
    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        Vec::new()
    }
    /// Ciphertext blobs the request opens: the policy sees the key that sealed each.
    fn blobs(&self) -> Vec<&str> {
        Vec::new()
    }
    /// The key version the action used, read from its reply: the audit event records it.
    fn key_version(_reply: &Self::Response) -> Option<&str> {
        None
    }
    /// Does the work through `ctx.kms`.
    fn handle(self, ctx: &Ctx<'_>)
    -> impl Future<Output = Result<Self::Response, ApiError>> + Send;
}

/// A request's resource as an ARN: ARNs as they are, typed resources (`alias/…`, `secret/…`,
/// `keystore/…`, …) and key ids in the caller's account.
pub(crate) fn resource_arn(region: &str, account: &AccountId, resource: &str) -> String {
    if resource.starts_with("acs:") {
        resource.to_string()
    } else if resource.contains('/') {
        format!("acs:kms:{region}:{account}:{resource}")
    } else {
        format!("acs:kms:{region}:{account}:key/{resource}")
    }
}

/// The success body: `RequestId` plus the action's fields.
#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "RequestId")]
    request_id: &'a str,
    #[serde(flatten)]
    body: T,
}

/// What the pipeline learned about a call, for the audit record.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) resource: Option<String>,
    pub(crate) key_version: Option<String>,
}

async fn run<A: Action>(
    params: &Params,
    ctx: &Ctx<'_>,
    request_id: &str,
    outcome: &mut Outcome,
) -> Result<Vec<u8>, ApiError> {
    let mut action = A::parse(params)?;
    outcome.resource = action.resource();
    // The policy sees the resource as named (an alias, say), then every key the request
    // touches, resolved: the key an alias names, and the key that sealed a blob.
    ctx.check_access(A::NAME, outcome.resource.as_deref())
        .await?;
    if ctx.gate.is_some() {
        let mut records = Vec::new();
        for key in action.key_refs() {
            let record = ctx.kms.resolve(&ctx.caller, key)?;
            if matches!(key, KeyRef::Alias(_) | KeyRef::AliasArn { .. }) {
                // Pinned: the action uses the key the policy saw, even if the alias moves.
                *key = KeyRef::Id(record.key_id.clone());
            }
            records.push(record);
        }
        for blob in action.blobs() {
            // A blob whose key the caller cannot see fails in the action, as garbage.
            records.extend(ctx.kms.key_of_blob(&ctx.caller, blob)?);
        }
        let keys: Vec<String> = records
            .iter()
            .map(|r| key_arn(ctx.kms.region(), &r.account_id, &r.key_id))
            .collect();
        let named = outcome
            .resource
            .as_deref()
            .map(|r| resource_arn(ctx.kms.region(), &ctx.caller.account, r));
        for key in keys.iter().filter(|k| Some(*k) != named.as_ref()) {
            ctx.check_access(A::NAME, Some(key)).await?;
        }
    }
    if params.bool("DryRun")? == Some(true) {
        return Err(ApiError::DryRun);
    }
    let body = action.handle(ctx).await?;
    outcome.key_version = A::key_version(&body).map(str::to_owned);
    serde_json::to_vec(&Envelope { request_id, body })
        .map_err(|e| ApiError::Internal(format!("response encoding: {e}")))
}

macro_rules! actions {
    ($($module:ident :: $action:ident),* $(,)?) => {
        /// Every action this server answers.
        pub const NAMES: &[&str] = &[$(<$module::$action as Action>::NAME),*];

        /// Runs the action called `name`.
        pub(crate) async fn dispatch(
            name: &str,
            params: &Params,
            ctx: &Ctx<'_>,
            request_id: &str,
            outcome: &mut Outcome,
        ) -> Result<Vec<u8>, ApiError> {
            $(
                if name == <$module::$action as Action>::NAME {
                    return run::<$module::$action>(params, ctx, request_id, outcome).await;
                }
            )*
            Err(ApiError::UnknownAction)
        }
    };
}

actions! {
    // Key lifecycle
    keys::CreateKey,
    keys::DescribeKey,
    keys::ListKeys,
    keys::EnableKey,
    keys::DisableKey,
    keys::UpdateKeyDescription,
    keys::GetKeyPolicy,
    keys::SetKeyPolicy,
    // Versions, rotation, deletion
    lifecycle::CreateKeyVersion,
    lifecycle::DescribeKeyVersion,
    lifecycle::ListKeyVersions,
    lifecycle::UpdateRotationPolicy,
    lifecycle::ScheduleKeyDeletion,
    keys::CancelKeyDeletion,
    lifecycle::SetDeletionProtection,
    // BYOK
    import::GetParametersForImport,
    import::ImportKeyMaterial,
    import::DeleteKeyMaterial,
    // Tags
    tags::TagResource,
    tags::UntagResource,
    tags::ListResourceTags,
    tags::TagResources,
    tags::UntagResources,
    tags::ListTagResources,
    // Aliases
    aliases::CreateAlias,
    aliases::UpdateAlias,
    aliases::DeleteAlias,
    aliases::ListAliases,
    aliases::ListAliasesByKeyId,
    // Symmetric cryptography
    crypto::Encrypt,
    crypto::Decrypt,
    crypto::ReEncrypt,
    crypto::GenerateDataKey,
    crypto::GenerateDataKeyWithoutPlaintext,
    crypto::GenerateAndExportDataKey,
    crypto::ExportDataKey,
    // Asymmetric cryptography
    asymmetric::AsymmetricSign,
    asymmetric::AsymmetricVerify,
    asymmetric::AsymmetricEncrypt,
    asymmetric::AsymmetricDecrypt,
    asymmetric::GetPublicKey,
    // Message authentication codes
    mac::GenerateMac,
    mac::VerifyMac,
    // Secrets Manager
    secrets::CreateSecret,
    secrets::GetSecretValue,
    secrets::BatchGetSecretValue,
    secrets::PutSecretValue,
    secrets::UpdateSecret,
    secrets::UpdateSecretVersionStage,
    secrets::ListSecrets,
    secrets::ListSecretVersionIds,
    secrets::DescribeSecret,
    secrets::DeleteSecret,
    secrets::RestoreSecret,
    secrets::UpdateSecretRotationPolicy,
    secrets::RotateSecret,
    secrets::GetSecretPolicy,
    secrets::SetSecretPolicy,
    // Server-side encryption for integrated services (Arca)
    sse::ArcaSseGenerateDataKey,
    sse::ArcaSseDecrypt,
    // KMS instances
    instances::ListKmsInstances,
    instances::GetKmsInstance,
    instances::GetDefaultKmsInstance,
    instances::GetKmsInstanceQuotaInfos,
    instances::ReleaseKmsInstance,
    // Application access points
    access_points::CreateNetworkRule,
    access_points::DescribeNetworkRule,
    access_points::ListNetworkRules,
    access_points::UpdateNetworkRule,
    access_points::DeleteNetworkRule,
    access_points::CreatePolicy,
    access_points::DescribePolicy,
    access_points::ListPolicies,
    access_points::UpdatePolicy,
    access_points::DeletePolicy,
    access_points::CreateApplicationAccessPoint,
    access_points::DescribeApplicationAccessPoint,
    access_points::ListApplicationAccessPoints,
    access_points::UpdateApplicationAccessPoint,
    access_points::DeleteApplicationAccessPoint,
    access_points::CreateClientKey,
    access_points::GetClientKey,
    access_points::ListClientKeys,
    access_points::DeleteClientKey,
    // Account and region
    account::DescribeRegions,
    account::DescribeAccountKmsStatus,
    account::GetRandomPassword,
    // Arca administration (not part of the Alibaba API)
    admin::ArcaCreateAccount,
    admin::ArcaCreateAccessKey,
    admin::ArcaListAccounts,
    instances::ArcaCreateKmsInstance,
    admin::ArcaBackup,
    admin::ArcaListPlugins,
    admin::ArcaInspectPlugin,
    admin::ArcaReloadPlugins,
}

/// A list wrapped the way the SDK models expect: `{"<Item>": [...]}`.
pub(crate) fn wrap<T: Serialize>(item: &'static str, list: Vec<T>) -> serde_json::Value {
    let list = serde_json::to_value(list).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
    serde_json::json!({ item: list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_unique() {
        let mut names = NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NAMES.len());
    }
}
