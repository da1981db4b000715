//! Server-side encryption for integrated services (Arca actions, not part of the Alibaba API):
//! a service acting for an account asks for a data key to protect a resource, and to open one.
//! Which key protects it, and the context that binds it, come from the service's integration
//! plugin ([`crate::sse`]).

use serde::Serialize;

use super::crypto::{context, data_key_len};
use super::{Action, Ctx};
use crate::api::params::Params;
use crate::error::ApiError;
use crate::kms::crypto_ops::DataKeyLen;
use crate::kms::envelope::EncryptionContext;
use crate::secret::SecretString;
use crate::sse::{SseRequest, protection};

/// The parameters every SSE action takes.
#[derive(Debug)]
struct Target {
    service: String,
    resource: String,
    operation: String,
    key: Option<String>,
    context: EncryptionContext,
}

impl Target {
    fn parse(p: &Params, default_operation: &str) -> Result<Self, ApiError> {
        Ok(Self {
            service: p.required("Service")?.to_owned(),
            resource: p.required("Resource")?.to_owned(),
            operation: p
                .optional("Operation")
                .unwrap_or(default_operation)
                .to_owned(),
            key: p
                .optional("KeyId")
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            context: context(p, "EncryptionContext")?,
        })
    }

    fn request(&self) -> SseRequest<'_> {
        SseRequest {
            service: &self.service,
            resource: &self.resource,
            operation: &self.operation,
            key: self.key.as_deref(),
            context: &self.context,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SseDataKeyReply {
    key_id: String,
    key_version_id: String,
    ciphertext_blob: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    plaintext: SecretString,
    service_key: bool,
}

/// `ArcaSseGenerateDataKey`: a data key for a service to protect `Resource` with.
#[derive(Debug)]
pub(crate) struct ArcaSseGenerateDataKey {
    target: Target,
    len: DataKeyLen,
}

impl Action for ArcaSseGenerateDataKey {
    const NAME: &'static str = "ArcaSseGenerateDataKey";
    type Response = SseDataKeyReply;

    fn key_version(reply: &SseDataKeyReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            target: Target::parse(p, "put")?,
            len: data_key_len(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("{}:{}", self.target.service, self.target.resource))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<SseDataKeyReply, ApiError> {
        let chosen = protection(ctx.kms, ctx.plugins, &ctx.caller, &self.target.request()).await?;
        let caller = crate::kms::Caller {
            action: "GenerateDataKey".into(),
            ..chosen.caller
        };
        let dk = ctx
            .kms
            .generate_data_key(&caller, &chosen.key, self.len, &chosen.context)
            .await?;
        Ok(SseDataKeyReply {
            key_id: dk.sealed.key_id.to_string(),
            key_version_id: dk.sealed.version.to_string(),
            ciphertext_blob: dk.sealed.blob,
            plaintext: dk.plaintext_b64,
            service_key: chosen.service_key,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SseDecryptReply {
    key_id: String,
    key_version_id: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    plaintext: SecretString,
}

/// `ArcaSseDecrypt`: opens the data key a service stored with `Resource`.
#[derive(Debug)]
pub(crate) struct ArcaSseDecrypt {
    target: Target,
    blob: String,
}

impl Action for ArcaSseDecrypt {
    const NAME: &'static str = "ArcaSseDecrypt";
    type Response = SseDecryptReply;

    fn key_version(reply: &SseDecryptReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            target: Target::parse(p, "get")?,
            blob: p.required("CiphertextBlob")?.to_owned(),
        })
    }

    fn resource(&self) -> Option<String> {
        Some(format!("{}:{}", self.target.service, self.target.resource))
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<SseDecryptReply, ApiError> {
        let chosen = protection(ctx.kms, ctx.plugins, &ctx.caller, &self.target.request()).await?;
        let caller = crate::kms::Caller {
            action: "Decrypt".into(),
            ..chosen.caller
        };
        let opened = ctx
            .kms
            .decrypt(&caller, &self.blob, &chosen.context)
            .await?;
        Ok(SseDecryptReply {
            key_id: opened.key_id.to_string(),
            key_version_id: opened.version.to_string(),
            plaintext: opened.plaintext,
        })
    }
}
