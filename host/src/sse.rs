//! Server-side encryption for integrated services: an SSE integration plugin (the
//! `sse-integration` world) decides, per request, which key protects a service's data (its
//! service key `acs/<service>`, made on first use, or a customer CMK) and what context binds the
//! data key to the resource; the data keys themselves come from the ordinary key operations.
//!
//! A service adds itself to Arca by shipping such a component; nothing here names a service.

use crate::error::ApiError;
use crate::ids::KeyRef;
use crate::kms::envelope::EncryptionContext;
use crate::kms::{Caller, Kms};
use crate::plugin::{KeyChoice, KeyRequest, PluginError, PluginHost};

/// What a service asks to protect or open.
#[derive(Debug)]
pub struct SseRequest<'a> {
    /// The service code (`oss`, `ecs`, ...).
    pub service: &'a str,
    /// The resource, in the service's terms (`bucket/object`, a disk id, ...).
    pub resource: &'a str,
    /// The operation, in the service's terms (`put-object`, `get-object`, ...).
    pub operation: &'a str,
    /// A customer CMK the request names, if any.
    pub key: Option<&'a str>,
    /// The context the service attached.
    pub context: &'a EncryptionContext,
}

/// The key to use, the caller to use it as, and the full context to bind.
#[derive(Debug)]
pub struct SseProtection {
    /// The key.
    pub key: KeyRef,
    /// The account, acting through the service.
    pub caller: Caller,
    /// The service's context plus the integration's binding.
    pub context: EncryptionContext,
    /// Whether the service key was chosen.
    pub service_key: bool,
}

fn plugin_error(e: PluginError) -> ApiError {
    match e {
        PluginError::Failed { message, kind, .. } if kind == "invalid-argument" => {
            ApiError::invalid("Resource", message)
        }
        PluginError::Failed { message, .. } => ApiError::Denied(message),
        other => ApiError::Unavailable(format!("server-side-encryption integration: {other}")),
    }
}

/// Asks the integration for `req.service` how to protect `req` for `caller`'s account.
pub async fn protection(
    kms: &Kms,
    plugins: &PluginHost,
    caller: &Caller,
    req: &SseRequest<'_>,
) -> Result<SseProtection, ApiError> {
    let (plugin, info) = plugins.sse_integration(req.service).ok_or_else(|| {
        ApiError::invalid(
            "Service",
            format!(
                "no server-side-encryption integration for `{}` is loaded",
                req.service
            ),
        )
    })?;
    let chosen = plugins
        .choose_key(
            &plugin,
            &KeyRequest {
                account: caller.account.to_string(),
                region: kms.region().to_owned(),
                resource_name: req.resource.to_owned(),
                operation: req.operation.to_owned(),
                requested_key_id: req.key.map(str::to_owned),
                context: req.context.string_pairs(),
            },
        )
        .await
        .map_err(plugin_error)?;
    let service_caller = Caller {
        service: Some(info.service_code.clone()),
        ..caller.clone()
    };
    let (key, service_key) = match chosen.key {
        KeyChoice::ServiceKey => {
            let id = kms
                .service_key(&caller.account, &info.service_code, &info.key_policy)
                .await?;
            (KeyRef::Id(id), true)
        }
        KeyChoice::CustomerKey(id) => {
            if !info.allow_customer_keys {
                return Err(ApiError::UnsupportedOperation(
                    format!(
                        "{} protects data with its service key only",
                        info.service_code
                    )
                    .into(),
                ));
            }
            let key = id
                .parse()
                .map_err(|_| ApiError::invalid("KeyId", "not a key id, alias or ARN"))?;
            (key, false)
        }
    };
    let mut context = req.context.clone();
    context.extend(chosen.context);
    Ok(SseProtection {
        key,
        caller: service_caller,
        context,
        service_key,
    })
}
