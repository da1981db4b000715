//! Symmetric cryptographic actions.

use serde::Serialize;

use super::{Action, Ctx};
use crate::api::params::Params;
use crate::error::ApiError;
use base64::Engine;

use crate::crypto::asymmetric::{EncryptAlgorithm, KeyKind};
use crate::ids::{KeyRef, KeyVersionId};
use crate::kms::crypto_ops::{DataKeyLen, ExportTarget, Sealed};
use crate::kms::envelope::EncryptionContext;
use crate::secret::SecretString;

pub(super) fn context(p: &Params, name: &'static str) -> Result<EncryptionContext, ApiError> {
    EncryptionContext::parse(p.structured(name)?.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::invalid(name, e.to_string()))
}

fn no_recipient(p: &Params) -> Result<(), ApiError> {
    if p.optional("Recipient").is_some() {
        return Err(ApiError::UnsupportedOperation(
            "Recipient (attested decryption)".into(),
        ));
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SealedReply {
    ciphertext_blob: String,
    key_id: String,
    key_version_id: String,
}

impl SealedReply {
    fn new(s: Sealed) -> Self {
        Self {
            ciphertext_blob: s.blob,
            key_id: s.key_id.to_string(),
            key_version_id: s.version.to_string(),
        }
    }
}

/// `Encrypt`. `Plaintext` is sealed as its UTF-8 text, not base64-decoded (spec §6.1).
#[derive(Debug)]
pub(crate) struct Encrypt {
    key: KeyRef,
    plaintext: SecretString,
    context: EncryptionContext,
}

impl Action for Encrypt {
    const NAME: &'static str = "Encrypt";
    type Response = SealedReply;

    fn key_version(reply: &SealedReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            plaintext: p.required_secret("Plaintext")?,
            context: context(p, "EncryptionContext")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<SealedReply, ApiError> {
        let plaintext = self.plaintext.into_bytes();
        let sealed = ctx
            .kms
            .encrypt(&ctx.caller, &self.key, &plaintext, &self.context)
            .await?;
        Ok(SealedReply::new(sealed))
    }
}

/// `Decrypt`: no KeyId; the blob names its key version.
#[derive(Debug)]
pub(crate) struct Decrypt {
    blob: String,
    context: EncryptionContext,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DecryptReply {
    key_id: String,
    key_version_id: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    plaintext: SecretString,
}

impl Action for Decrypt {
    const NAME: &'static str = "Decrypt";
    type Response = DecryptReply;

    fn key_version(reply: &DecryptReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        no_recipient(p)?;
        Ok(Self {
            blob: p.required("CiphertextBlob")?.to_owned(),
            context: context(p, "EncryptionContext")?,
        })
    }

    fn blobs(&self) -> Vec<&str> {
        vec![&self.blob]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<DecryptReply, ApiError> {
        let opened = ctx
            .kms
            .decrypt(&ctx.caller, &self.blob, &self.context)
            .await?;
        Ok(DecryptReply {
            key_id: opened.key_id.to_string(),
            key_version_id: opened.version.to_string(),
            plaintext: opened.plaintext,
        })
    }
}

/// `ReEncrypt` of a symmetric blob.
#[derive(Debug)]
pub(crate) struct ReEncrypt {
    /// For public-key ciphertexts: the key, version and algorithm that decrypt them.
    asymmetric_source: Option<(KeyRef, KeyVersionId, EncryptAlgorithm)>,
    blob: String,
    source_context: EncryptionContext,
    destination: KeyRef,
    destination_context: EncryptionContext,
}

impl Action for ReEncrypt {
    const NAME: &'static str = "ReEncrypt";
    type Response = SealedReply;

    fn key_version(reply: &SealedReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        let asymmetric_source = match p.optional("SourceEncryptionAlgorithm") {
            None => None,
            Some(_) => Some((
                p.required_as::<KeyRef>("SourceKeyId")?,
                p.required_as::<KeyVersionId>("SourceKeyVersionId")?,
                super::asymmetric::encrypt_algorithm_named(p, "SourceEncryptionAlgorithm")?,
            )),
        };
        Ok(Self {
            asymmetric_source,
            blob: p.required("CiphertextBlob")?.to_owned(),
            source_context: context(p, "SourceEncryptionContext")?,
            destination: p.required_as("DestinationKeyId")?,
            destination_context: context(p, "DestinationEncryptionContext")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.destination.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        let mut refs = vec![&mut self.destination];
        if let Some((source, _, _)) = &mut self.asymmetric_source {
            refs.push(source);
        }
        refs
    }

    fn blobs(&self) -> Vec<&str> {
        if self.asymmetric_source.is_some() {
            Vec::new()
        } else {
            vec![&self.blob]
        }
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<SealedReply, ApiError> {
        if let Some((key, version, alg)) = &self.asymmetric_source {
            let ciphertext = B64
                .decode(self.blob.trim())
                .map_err(|_| ApiError::invalid("CiphertextBlob", "not base64"))?;
            let sealed = ctx
                .kms
                .re_encrypt_asymmetric(
                    &ctx.caller,
                    key,
                    version,
                    *alg,
                    &ciphertext,
                    &self.destination,
                    &self.destination_context,
                )
                .await?;
            return Ok(SealedReply::new(sealed));
        }
        let sealed = ctx
            .kms
            .re_encrypt(
                &ctx.caller,
                &self.blob,
                &self.source_context,
                &self.destination,
                &self.destination_context,
            )
            .await?;
        Ok(SealedReply::new(sealed))
    }
}

pub(super) fn data_key_len(p: &Params) -> Result<DataKeyLen, ApiError> {
    // NumberOfBytes wins over KeySpec (spec §6.2).
    if let Some(n) = p.int("NumberOfBytes", 1..=1024)? {
        return usize::try_from(n)
            .map_err(|_| ApiError::invalid("NumberOfBytes", "out of range"))
            .and_then(|n| DataKeyLen::bytes(n).map_err(ApiError::from));
    }
    match p.optional("KeySpec") {
        Some(spec) => DataKeyLen::spec(spec).map_err(ApiError::from),
        None => Ok(DataKeyLen(32)),
    }
}

/// `GenerateDataKey`.
#[derive(Debug)]
pub(crate) struct GenerateDataKey {
    key: KeyRef,
    len: DataKeyLen,
    context: EncryptionContext,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DataKeyReply {
    #[serde(flatten)]
    sealed: SealedReply,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    plaintext: SecretString,
}

impl Action for GenerateDataKey {
    const NAME: &'static str = "GenerateDataKey";
    type Response = DataKeyReply;

    fn key_version(reply: &DataKeyReply) -> Option<&str> {
        Some(&reply.sealed.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        no_recipient(p)?;
        Ok(Self {
            key: p.required_as("KeyId")?,
            len: data_key_len(p)?,
            context: context(p, "EncryptionContext")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<DataKeyReply, ApiError> {
        let dk = ctx
            .kms
            .generate_data_key(&ctx.caller, &self.key, self.len, &self.context)
            .await?;
        Ok(DataKeyReply {
            sealed: SealedReply::new(dk.sealed),
            plaintext: dk.plaintext_b64,
        })
    }
}

/// `GenerateDataKeyWithoutPlaintext`.
#[derive(Debug)]
pub(crate) struct GenerateDataKeyWithoutPlaintext(GenerateDataKey);

impl Action for GenerateDataKeyWithoutPlaintext {
    const NAME: &'static str = "GenerateDataKeyWithoutPlaintext";
    type Response = SealedReply;

    fn key_version(reply: &SealedReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        GenerateDataKey::parse(p).map(Self)
    }

    fn resource(&self) -> Option<String> {
        self.0.resource()
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        self.0.key_refs()
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<SealedReply, ApiError> {
        let g = self.0;
        let dk = ctx
            .kms
            .generate_data_key(&ctx.caller, &g.key, g.len, &g.context)
            .await?;
        Ok(SealedReply::new(dk.sealed))
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `WrappingKeySpec` + `WrappingAlgorithm` + `PublicKeyBlob` of the export actions.
fn export_target(p: &Params) -> Result<ExportTarget, ApiError> {
    let kind = match p.required("WrappingKeySpec")? {
        "RSA_2048" => KeyKind::Rsa(2048),
        "EC_SM2" => KeyKind::Sm2,
        _ => {
            return Err(ApiError::invalid(
                "WrappingKeySpec",
                "must be RSA_2048 or EC_SM2",
            ));
        }
    };
    let algorithm = super::asymmetric::encrypt_algorithm_named(p, "WrappingAlgorithm")?;
    let fits = matches!(
        (kind, algorithm),
        (
            KeyKind::Rsa(_),
            EncryptAlgorithm::RsaOaepSha256 | EncryptAlgorithm::RsaOaepSha1
        ) | (KeyKind::Sm2, EncryptAlgorithm::Sm2Pke)
    );
    if !fits {
        return Err(ApiError::invalid(
            "WrappingAlgorithm",
            "does not fit WrappingKeySpec",
        ));
    }
    let public_der = B64
        .decode(p.required("PublicKeyBlob")?.trim())
        .map_err(|_| ApiError::invalid("PublicKeyBlob", "not base64"))?;
    Ok(ExportTarget {
        kind,
        algorithm,
        public_der,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExportedReply {
    #[serde(flatten)]
    sealed: SealedReply,
    exported_data_key: String,
}

/// `GenerateAndExportDataKey`.
#[derive(Debug)]
pub(crate) struct GenerateAndExportDataKey {
    generate: GenerateDataKey,
    target: ExportTarget,
}

impl Action for GenerateAndExportDataKey {
    const NAME: &'static str = "GenerateAndExportDataKey";
    type Response = ExportedReply;

    fn key_version(reply: &ExportedReply) -> Option<&str> {
        Some(&reply.sealed.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            generate: GenerateDataKey::parse(p)?,
            target: export_target(p)?,
        })
    }

    fn resource(&self) -> Option<String> {
        self.generate.resource()
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        self.generate.key_refs()
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ExportedReply, ApiError> {
        let g = &self.generate;
        let (sealed, exported) = ctx
            .kms
            .generate_and_export_data_key(&ctx.caller, &g.key, g.len, &g.context, &self.target)
            .await?;
        Ok(ExportedReply {
            sealed: SealedReply::new(sealed),
            exported_data_key: B64.encode(exported),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExportReply {
    exported_data_key: String,
    key_id: String,
    key_version_id: String,
}

/// `ExportDataKey`.
#[derive(Debug)]
pub(crate) struct ExportDataKey {
    blob: String,
    context: EncryptionContext,
    target: ExportTarget,
}

impl Action for ExportDataKey {
    const NAME: &'static str = "ExportDataKey";
    type Response = ExportReply;

    fn key_version(reply: &ExportReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            blob: p.required("CiphertextBlob")?.to_owned(),
            context: context(p, "EncryptionContext")?,
            target: export_target(p)?,
        })
    }

    fn blobs(&self) -> Vec<&str> {
        vec![&self.blob]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<ExportReply, ApiError> {
        let (opened, exported) = ctx
            .kms
            .export_data_key(&ctx.caller, &self.blob, &self.context, &self.target)
            .await?;
        Ok(ExportReply {
            exported_data_key: B64.encode(exported),
            key_id: opened.key_id.to_string(),
            key_version_id: opened.version.to_string(),
        })
    }
}
