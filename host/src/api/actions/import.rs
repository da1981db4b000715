//! BYOK actions: GetParametersForImport, ImportKeyMaterial, DeleteKeyMaterial.

use base64::Engine;
use serde::Serialize;

use super::keys::{Empty, date};
use super::{Action, Ctx};
use crate::api::params::Params;
use crate::error::ApiError;
use crate::ids::KeyRef;
use crate::kms::model::KeySpec;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `GetParametersForImport`.
#[derive(Debug)]
pub(crate) struct GetParametersForImport {
    key: KeyRef,
    algorithm: String,
    spec: KeySpec,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ParametersReply {
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    import_token: crate::secret::SecretString,
    key_id: String,
    public_key: String,
    token_expire_time: String,
}

impl Action for GetParametersForImport {
    const NAME: &'static str = "GetParametersForImport";
    type Response = ParametersReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            algorithm: p.required("WrappingAlgorithm")?.to_owned(),
            spec: p.required_as("WrappingKeySpec")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ParametersReply, ApiError> {
        let params = ctx
            .kms
            .get_parameters_for_import(&ctx.caller, &self.key, &self.algorithm, self.spec)
            .await?;
        Ok(ParametersReply {
            import_token: params.token,
            key_id: params.key_id.to_string(),
            public_key: B64.encode(params.public_key_der),
            token_expire_time: date(params.expires),
        })
    }
}

/// `ImportKeyMaterial`.
#[derive(Debug)]
pub(crate) struct ImportKeyMaterial {
    key: KeyRef,
    token: crate::secret::SecretString,
    encrypted: Vec<u8>,
    expire_unix: i64,
}

impl Action for ImportKeyMaterial {
    const NAME: &'static str = "ImportKeyMaterial";
    type Response = Empty;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let encrypted = B64
            .decode(p.required("EncryptedKeyMaterial")?.trim())
            .map_err(|_| ApiError::invalid("EncryptedKeyMaterial", "not base64"))?;
        let expire = p
            .int("KeyMaterialExpireUnix", 0..=253_402_300_799)?
            .unwrap_or(0);
        Ok(Self {
            key: p.required_as("KeyId")?,
            token: p.required_secret("ImportToken")?,
            encrypted,
            expire_unix: i64::try_from(expire).unwrap_or(0),
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
            .import_key_material(
                &ctx.caller,
                &self.key,
                self.token.expose(),
                &self.encrypted,
                self.expire_unix,
            )
            .await?;
        Ok(Empty {})
    }
}

/// `DeleteKeyMaterial`.
#[derive(Debug)]
pub(crate) struct DeleteKeyMaterial(KeyRef);

impl Action for DeleteKeyMaterial {
    const NAME: &'static str = "DeleteKeyMaterial";
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
        ctx.kms.delete_key_material(&ctx.caller, &self.0).await?;
        Ok(Empty {})
    }
}
