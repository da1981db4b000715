//! `GenerateMac` and `VerifyMac` on HMAC keys (`HMAC_SHA224/256/384/512`).

use base64::Engine;
use serde::Serialize;

use super::asymmetric::b64_param;
use super::{Action, Ctx};
use crate::api::params::Params;
use crate::crypto::mac::MacAlgorithm;
use crate::error::ApiError;
use crate::ids::KeyRef;

fn algorithm(p: &Params) -> Result<MacAlgorithm, ApiError> {
    MacAlgorithm::from_name(p.required("Algorithm")?).ok_or_else(|| {
        ApiError::invalid(
            "Algorithm",
            "must be HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384 or HMAC_SHA_512",
        )
    })
}

/// `GenerateMac`.
#[derive(Debug)]
pub(crate) struct GenerateMac {
    key: KeyRef,
    alg: MacAlgorithm,
    message: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MacReply {
    key_id: String,
    key_version_id: String,
    algorithm: &'static str,
    mac: String,
}

impl Action for GenerateMac {
    const NAME: &'static str = "GenerateMac";
    type Response = MacReply;

    fn key_version(reply: &MacReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            alg: algorithm(p)?,
            message: b64_param(p, "Message")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<MacReply, ApiError> {
        let mac = ctx
            .kms
            .generate_mac(&ctx.caller, &self.key, Some(self.alg), &self.message)?;
        Ok(MacReply {
            key_id: mac.key.key_id.to_string(),
            key_version_id: mac.version.to_string(),
            algorithm: self.alg.name(),
            mac: base64::engine::general_purpose::STANDARD.encode(mac.tag),
        })
    }
}

/// `VerifyMac`: `Value` is a JSON boolean.
#[derive(Debug)]
pub(crate) struct VerifyMac {
    key: KeyRef,
    alg: MacAlgorithm,
    message: Vec<u8>,
    mac: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VerifyMacReply {
    key_id: String,
    algorithm: &'static str,
    value: bool,
    /// The version whose MAC matched, for the audit trail; not on the wire.
    #[serde(skip)]
    used_version: Option<String>,
}

impl Action for VerifyMac {
    const NAME: &'static str = "VerifyMac";
    type Response = VerifyMacReply;

    fn key_version(reply: &VerifyMacReply) -> Option<&str> {
        reply.used_version.as_deref()
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            alg: algorithm(p)?,
            message: b64_param(p, "Message")?,
            mac: b64_param(p, "Mac")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<VerifyMacReply, ApiError> {
        let (key, version) = ctx.kms.verify_mac(
            &ctx.caller,
            &self.key,
            Some(self.alg),
            &self.message,
            &self.mac,
        )?;
        Ok(VerifyMacReply {
            key_id: key.key_id.to_string(),
            algorithm: self.alg.name(),
            value: version.is_some(),
            used_version: version.map(|v| v.to_string()),
        })
    }
}
