//! Asymmetric actions. Digests, signatures, plaintexts and ciphertexts are base64 of raw bytes
//! here (unlike symmetric `Encrypt`, whose plaintext is taken as text; spec §6.1).

use base64::Engine;
use serde::Serialize;

use super::{Action, Ctx};
use crate::api::params::Params;
use crate::crypto::asymmetric::{EncryptAlgorithm, SignAlgorithm, public_key_pem};
use crate::error::ApiError;
use crate::ids::{KeyRef, KeyVersionId};
use crate::secret::{SecretBytes, SecretString};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub(super) fn b64_param(p: &Params, name: &'static str) -> Result<Vec<u8>, ApiError> {
    B64.decode(p.required(name)?.trim())
        .map_err(|_| ApiError::invalid(name, "not base64"))
}

fn sign_algorithm(p: &Params) -> Result<SignAlgorithm, ApiError> {
    SignAlgorithm::from_name(p.required("Algorithm")?)
        .ok_or_else(|| ApiError::invalid("Algorithm", "unknown signature algorithm"))
}

fn encrypt_algorithm(p: &Params) -> Result<EncryptAlgorithm, ApiError> {
    encrypt_algorithm_named(p, "Algorithm")
}

/// An encryption algorithm named by parameter `name`.
pub(super) fn encrypt_algorithm_named(
    p: &Params,
    name: &'static str,
) -> Result<EncryptAlgorithm, ApiError> {
    match p.required(name)? {
        "RSAES_OAEP_SHA_256" => Ok(EncryptAlgorithm::RsaOaepSha256),
        "RSAES_OAEP_SHA_1" => Ok(EncryptAlgorithm::RsaOaepSha1),
        "SM2PKE" => Ok(EncryptAlgorithm::Sm2Pke),
        _ => Err(ApiError::invalid(
            "Algorithm",
            "unknown encryption algorithm",
        )),
    }
}

/// The key and version every asymmetric action names.
#[derive(Debug)]
struct Target {
    key: KeyRef,
    version: KeyVersionId,
}

impl Target {
    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            key: p.required_as("KeyId")?,
            version: p.required_as("KeyVersionId")?,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SignReply {
    key_id: String,
    key_version_id: String,
    value: String,
}

/// `AsymmetricSign`.
#[derive(Debug)]
pub(crate) struct AsymmetricSign {
    target: Target,
    alg: SignAlgorithm,
    digest: Vec<u8>,
}

impl Action for AsymmetricSign {
    const NAME: &'static str = "AsymmetricSign";
    type Response = SignReply;

    fn key_version(reply: &SignReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            target: Target::parse(p)?,
            alg: sign_algorithm(p)?,
            digest: b64_param(p, "Digest")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.target.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.target.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<SignReply, ApiError> {
        let t = &self.target;
        let (key_id, sig) = ctx
            .kms
            .asymmetric_sign(&ctx.caller, &t.key, &t.version, self.alg, &self.digest)
            .await?;
        Ok(SignReply {
            key_id: key_id.to_string(),
            key_version_id: t.version.to_string(),
            value: B64.encode(sig),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VerifyReply {
    key_id: String,
    key_version_id: String,
    value: bool,
}

/// `AsymmetricVerify`: `Value` is a JSON boolean.
#[derive(Debug)]
pub(crate) struct AsymmetricVerify {
    target: Target,
    alg: SignAlgorithm,
    digest: Vec<u8>,
    signature: Vec<u8>,
}

impl Action for AsymmetricVerify {
    const NAME: &'static str = "AsymmetricVerify";
    type Response = VerifyReply;

    fn key_version(reply: &VerifyReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            target: Target::parse(p)?,
            alg: sign_algorithm(p)?,
            digest: b64_param(p, "Digest")?,
            signature: b64_param(p, "Value")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.target.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.target.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<VerifyReply, ApiError> {
        let t = &self.target;
        let (key_id, ok) = ctx
            .kms
            .asymmetric_verify(
                &ctx.caller,
                &t.key,
                &t.version,
                self.alg,
                &self.digest,
                &self.signature,
            )
            .await?;
        Ok(VerifyReply {
            key_id: key_id.to_string(),
            key_version_id: t.version.to_string(),
            value: ok,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EncryptReply {
    ciphertext_blob: String,
    key_id: String,
    key_version_id: String,
}

/// `AsymmetricEncrypt`.
#[derive(Debug)]
pub(crate) struct AsymmetricEncrypt {
    target: Target,
    alg: EncryptAlgorithm,
    plaintext: SecretBytes,
}

impl Action for AsymmetricEncrypt {
    const NAME: &'static str = "AsymmetricEncrypt";
    type Response = EncryptReply;

    fn key_version(reply: &EncryptReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            target: Target::parse(p)?,
            alg: encrypt_algorithm(p)?,
            plaintext: SecretBytes::new(b64_param(p, "Plaintext")?),
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.target.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.target.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<EncryptReply, ApiError> {
        let t = &self.target;
        let (key_id, ct) = ctx
            .kms
            .asymmetric_encrypt(&ctx.caller, &t.key, &t.version, self.alg, &self.plaintext)
            .await?;
        Ok(EncryptReply {
            ciphertext_blob: B64.encode(ct),
            key_id: key_id.to_string(),
            key_version_id: t.version.to_string(),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DecryptReply {
    key_id: String,
    key_version_id: String,
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    plaintext: SecretString,
}

/// `AsymmetricDecrypt`.
#[derive(Debug)]
pub(crate) struct AsymmetricDecrypt {
    target: Target,
    alg: EncryptAlgorithm,
    ciphertext: Vec<u8>,
}

impl Action for AsymmetricDecrypt {
    const NAME: &'static str = "AsymmetricDecrypt";
    type Response = DecryptReply;

    fn key_version(reply: &DecryptReply) -> Option<&str> {
        Some(&reply.key_version_id)
    }

    fn parse(p: &Params) -> Result<Self, ApiError> {
        if p.optional("Recipient").is_some() {
            return Err(ApiError::UnsupportedOperation(
                "Recipient (attested decryption)".into(),
            ));
        }
        Ok(Self {
            target: Target::parse(p)?,
            alg: encrypt_algorithm(p)?,
            ciphertext: b64_param(p, "CiphertextBlob")?,
        })
    }

    fn resource(&self) -> Option<String> {
        Some(self.target.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.target.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<DecryptReply, ApiError> {
        let t = &self.target;
        let (key_id, plain) = ctx
            .kms
            .asymmetric_decrypt(&ctx.caller, &t.key, &t.version, self.alg, &self.ciphertext)
            .await?;
        Ok(DecryptReply {
            key_id: key_id.to_string(),
            key_version_id: t.version.to_string(),
            plaintext: SecretString::new(B64.encode(plain.expose())),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PublicKeyReply {
    key_id: String,
    key_version_id: String,
    public_key: String,
}

/// `GetPublicKey`: PEM SubjectPublicKeyInfo.
#[derive(Debug)]
pub(crate) struct GetPublicKey(Target);

impl Action for GetPublicKey {
    const NAME: &'static str = "GetPublicKey";
    type Response = PublicKeyReply;

    fn parse(p: &Params) -> Result<Self, ApiError> {
        Target::parse(p).map(Self)
    }

    fn resource(&self) -> Option<String> {
        Some(self.0.key.to_string())
    }

    fn key_refs(&mut self) -> Vec<&mut KeyRef> {
        vec![&mut self.0.key]
    }

    async fn handle(self, ctx: &Ctx<'_>) -> Result<PublicKeyReply, ApiError> {
        let (key_id, der) = ctx
            .kms
            .public_key(&ctx.caller, &self.0.key, &self.0.version)
            .await?;
        Ok(PublicKeyReply {
            key_id: key_id.to_string(),
            key_version_id: self.0.version.to_string(),
            public_key: public_key_pem(&der),
        })
    }
}
