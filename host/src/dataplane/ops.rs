//! The instance SDK's operations, each run through [`Kms`] on behalf of the instance's
//! account once the access policy allows it.
//!
//! Ciphertext formats (spec §7.3):
//! - `Encrypt`/`Decrypt`/`GenerateDataKey`: raw `ciphertext ‖ tag`, the IV returned apart and
//!   passed back, the caller's `Aad` as the whole GCM AAD. Decrypt tries the key's versions,
//!   newest first (the tag tells which one sealed).
//! - `GenerateDataKeyPair*`: a fresh key pair whose PKCS#8 private key is sealed like
//!   `Encrypt` (or as an Advance blob), and returned in plaintext unless `…WithoutPlaintext`.
//! - `Advance*`: self-describing `'$' ‖ 0x00 ‖ 0x02 ‖ KeyVersionId ‖ IV ‖ ciphertext ‖ tag`,
//!   whose tail is the shared gateway's blob layout; the AAD binds the version and the
//!   caller's `Aad` ([`crate::kms::envelope::raw_aad`]).
//!
//! Every operation is a method of [`Call`] here, which makes this file longer than the others;
//! they become actions of their own when the data plane joins the gateway's pipeline.

use prost::Message;

use super::proto;
use super::{DataPlane, Failure};
use crate::crypto::aead::NONCE_LEN;
use crate::crypto::asymmetric::SignAlgorithm;
use crate::ids::{KeyRef, KeyVersionId, SecretRef};
use crate::kms::Caller;
use crate::kms::access_points::ClientKeyContext;
use crate::kms::crypto_ops::Domain;
use crate::kms::envelope::{Blob, raw_aad};
use crate::kms::instances::InstanceRecord;
use crate::kms::model::{KeyRecord, KeyState};
use crate::plugin::{
    AccessRequest, AttachedPolicy, Decision, NetworkRule, Principal, PrincipalKind,
};
use crate::secret::SecretBytes;

/// Largest plaintext Encrypt accepts (as the shared gateway).
const MAX_PLAINTEXT: usize = 6 * 1024;

/// Every operation the data plane answers (the `x-kms-apiname` values of [`Call::run`]).
pub(crate) const OPERATIONS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "AdvanceEncrypt",
    "AdvanceDecrypt",
    "AdvanceGenerateDataKey",
    "Sign",
    "Verify",
    "GetPublicKey",
    "GetSecretValue",
    "GenerateRandom",
    "Hmac",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "AdvanceGenerateDataKeyPair",
    "AdvanceGenerateDataKeyPairWithoutPlaintext",
];
/// The Advance ciphertext prefix: `'$'`, cipher version 0 with no padding, AES-GCM.
const ADVANCE_PREFIX: [u8; 3] = [b'$', 0x00, 0x02];

/// A data-key-pair request, in either form.
struct PairRequest {
    key_id: String,
    algorithm: String,
    spec: String,
    format: String,
    aad: Vec<u8>,
}

/// A fresh key pair of `spec` in `format` (`PEM`, the default, or `DER`): (PKCS#8 private
/// key, SubjectPublicKeyInfo).
async fn new_key_pair(spec: &str, format: &str) -> Result<(SecretBytes, Vec<u8>), Failure> {
    use crate::crypto::asymmetric::{load, pem, private_key_pkcs8};
    let bad_spec = || {
        Failure::bad(
            "InvalidParameter",
            "KeyPairSpec must be RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P256K or EC_SM2.",
        )
    };
    let spec: crate::kms::model::KeySpec = spec.parse().map_err(|_| bad_spec())?;
    let kind = spec.asymmetric().ok_or_else(bad_spec)?;
    let pem_format = match format {
        "" | "PEM" => true,
        "DER" => false,
        _ => {
            return Err(Failure::bad(
                "InvalidParameter",
                "KeyFormat must be PEM or DER.",
            ));
        }
    };
    let made = tokio::task::spawn_blocking(move || {
        let material = crate::keystore::software::generate_material(spec).ok()?;
        let public = load(kind, &material).ok()?.public_key_der().to_vec();
        Some((private_key_pkcs8(kind, &material).ok()?, public))
    })
    .await
    .map_err(|e| Failure::internal(format!("key pair task: {e}")))?
    .ok_or_else(|| Failure::internal("key pair generation failed"))?;
    let (private, public) = made;
    if pem_format {
        Ok((
            SecretBytes::new(pem("PRIVATE KEY", private.expose()).into_bytes()),
            pem("PUBLIC KEY", &public).into_bytes(),
        ))
    } else {
        Ok((private, public))
    }
}

/// What Sign and Verify work on.
struct SigningTarget {
    record: KeyRecord,
    key: KeyRef,
    version: KeyVersionId,
    alg: SignAlgorithm,
    digest: Vec<u8>,
}

/// What a request touched, for the audit trail and the key-version reply header.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) account: Option<String>,
    pub(super) resource: Option<String>,
    pub(super) version: Option<KeyVersionId>,
}

/// One authenticated request on one instance.
pub(super) struct Call<'a> {
    plane: &'a DataPlane,
    instance: &'a InstanceRecord,
    key: &'a ClientKeyContext,
    api: &'a str,
    source_ip: String,
    owner: Caller,
}

fn decode<M: Message + Default>(body: &[u8]) -> Result<M, Failure> {
    M::decode(body).map_err(|_| {
        Failure::bad(
            "InvalidParameter",
            "The request body is not a valid protobuf message.",
        )
    })
}

fn reply<M: Message>(m: &M) -> Result<Vec<u8>, Failure> {
    Ok(m.encode_to_vec())
}

fn nonce(iv: &[u8]) -> Result<[u8; NONCE_LEN], Failure> {
    if iv.is_empty() {
        let mut n = [0u8; NONCE_LEN];
        crate::crypto::fill_random(&mut n);
        return Ok(n);
    }
    iv.try_into()
        .map_err(|_| Failure::bad("InvalidParameter", "Iv must be 12 bytes."))
}

/// The IV for a sealing with a caller's `Iv`. An HSM key's instance domain is separated from
/// its gateway domain by the AAD only (its material cannot be derived from), so a chosen IV
/// could reuse a gateway blob's keystream: such keys take server-chosen IVs only.
fn caller_nonce(key: &KeyRecord, iv: &[u8]) -> Result<[u8; NONCE_LEN], Failure> {
    if !iv.is_empty() && key.protection == crate::kms::model::ProtectionLevel::Hsm {
        return Err(Failure::bad(
            "InvalidParameter",
            "Iv cannot be chosen for an HSM key; leave it empty and keep the Iv returned.",
        ));
    }
    nonce(iv)
}

fn data_key_length(n: i32) -> Result<usize, Failure> {
    match n {
        0 => Ok(32),
        1..=1024 => Ok(usize::try_from(n).unwrap_or(32)),
        _ => Err(Failure::bad(
            "InvalidParameter",
            "NumberOfBytes must be 1-1024.",
        )),
    }
}

/// The symmetric algorithm's name for `key`, checking what the request asked for.
fn gcm_name(key: &KeyRecord, asked: &str) -> Result<&'static str, Failure> {
    let name = match key.spec.symmetric() {
        Some(crate::crypto::SymmetricAlgorithm::Sm4Gcm) => "SM4_GCM",
        Some(_) => "AES_GCM",
        None => {
            return Err(Failure::bad(
                "UnsupportedOperation",
                "The key is not a symmetric key.",
            ));
        }
    };
    if asked.is_empty() || asked == name {
        Ok(name)
    } else {
        Err(Failure::bad(
            "UnsupportedOperation",
            format!("This instance encrypts with {name}; CBC and ECB modes are not offered."),
        ))
    }
}

fn utc(unix: i64) -> String {
    crate::clock::format_utc(
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    )
}

fn enabled(key: &KeyRecord) -> Result<(), Failure> {
    match key.state {
        KeyState::Enabled => Ok(()),
        other => Err(crate::kms::Error::KeyState(other).into()),
    }
}

impl<'a> Call<'a> {
    pub(super) fn new(
        plane: &'a DataPlane,
        instance: &'a InstanceRecord,
        key: &'a ClientKeyContext,
        api: &'a str,
        source_ip: String,
    ) -> Self {
        Self {
            plane,
            instance,
            key,
            api,
            source_ip,
            owner: Caller {
                account: instance.account_id.clone(),
                admin: false,
                action: api.to_owned(),
                service: None,
            },
        }
    }

    /// Runs the operation the `x-kms-apiname` header names (one of [`OPERATIONS`]).
    pub(super) async fn run(
        &self,
        body: &[u8],
        request_id: &str,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let rid = request_id.to_owned();
        match self.api {
            "Encrypt" => self.encrypt(decode(body)?, rid, out).await,
            "Decrypt" => self.decrypt(decode(body)?, rid, out).await,
            "GenerateDataKey" => self.generate_data_key(decode(body)?, rid, out).await,
            "AdvanceEncrypt" => self.advance_encrypt(decode(body)?, rid, out).await,
            "AdvanceDecrypt" => self.advance_decrypt(decode(body)?, rid, out).await,
            "AdvanceGenerateDataKey" => {
                self.advance_generate_data_key(decode(body)?, rid, out)
                    .await
            }
            "Sign" => self.sign(decode(body)?, rid, out).await,
            "Verify" => self.verify(decode(body)?, rid, out).await,
            "GetPublicKey" => self.get_public_key(decode(body)?, rid, out).await,
            "GetSecretValue" => self.get_secret_value(decode(body)?, rid, out).await,
            "GenerateRandom" => self.generate_random(decode(body)?, rid).await,
            "Hmac" => self.hmac(decode(body)?, rid, out).await,
            "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
                let req: proto::GenerateDataKeyPairRequest = decode(body)?;
                let pair = PairRequest {
                    key_id: req.key_id,
                    algorithm: req.algorithm,
                    spec: req.key_pair_spec,
                    format: req.key_format,
                    aad: req.aad,
                };
                self.data_key_pair(pair, false, rid, out).await
            }
            "AdvanceGenerateDataKeyPair" | "AdvanceGenerateDataKeyPairWithoutPlaintext" => {
                let req: proto::AdvanceGenerateDataKeyPairRequest = decode(body)?;
                let pair = PairRequest {
                    key_id: req.key_id,
                    algorithm: String::new(),
                    spec: req.key_pair_spec,
                    format: req.key_format,
                    aad: req.aad,
                };
                self.data_key_pair(pair, true, rid, out).await
            }
            other => Err(Failure::bad(
                "InvalidApiName",
                format!("The ApiName \"{other}\" is invalid."),
            )),
        }
    }

    /// Asks the access-policy plugin about this request on `resource_arn`.
    async fn authorize(&self, resource_arn: Option<String>) -> Result<(), Failure> {
        let req = AccessRequest {
            principal: Principal {
                kind: PrincipalKind::ClientKey,
                account: self.instance.account_id.to_string(),
                id: self.key.key.client_key_id.clone(),
                application: Some(self.key.key.aap_name.clone()),
            },
            action: self.api.to_owned(),
            resource_arn,
            source_ip: self.source_ip.clone(),
            instance: Some(self.instance.instance_id.to_string()),
            policies: self
                .key
                .policies
                .iter()
                .map(|(p, rules)| AttachedPolicy {
                    name: p.name.clone(),
                    kms_instance: p.kms_instance.clone(),
                    permissions: p.permissions.clone(),
                    resources: p.resources.clone(),
                    network_rules: rules
                        .iter()
                        .map(|r| NetworkRule {
                            name: r.name.clone(),
                            source_private_ips: r.source_private_ips.clone(),
                        })
                        .collect(),
                })
                .collect(),
        };
        match self.plane.plugins.decide(&self.plane.policy, &req).await {
            Ok(Decision::Allow(_)) => Ok(()),
            Ok(Decision::Deny(reason)) => Err(crate::error::ApiError::Denied(reason).into()),
            Err(e) => {
                tracing::error!(error = %e, policy = %self.plane.policy, "AAP policy failed; denying");
                Err(crate::error::ApiError::PolicyUnavailable(e.to_string()).into())
            }
        }
    }

    fn arn(&self, resource: &str) -> String {
        format!(
            "acs:kms:{}:{}:{resource}",
            self.plane.kms.region(),
            self.instance.account_id
        )
    }

    /// The key `key_id` names, if it is this instance's (others' are not found here), once
    /// the policy allows this request on it.
    async fn key(&self, key_id: &str, out: &mut Outcome) -> Result<KeyRecord, Failure> {
        let r: KeyRef = key_id
            .parse()
            .map_err(|_| Failure::bad("InvalidParameter", "KeyId is not valid."))?;
        let key = self.plane.kms.resolve(&self.owner, &r)?;
        self.admit_key(key, out).await
    }

    async fn admit_key(&self, key: KeyRecord, out: &mut Outcome) -> Result<KeyRecord, Failure> {
        if key.instance.as_ref() != Some(&self.instance.instance_id) {
            return Err(crate::kms::Error::KeyNotFound.into());
        }
        let arn = self.arn(&format!("key/{}", key.key_id));
        out.resource = Some(arn.clone());
        self.authorize(Some(arn)).await?;
        Ok(key)
    }

    async fn encrypt(
        &self,
        req: proto::EncryptRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let algorithm = gcm_name(&key, &req.algorithm)?;
        enabled(&key)?;
        if req.plaintext.len() > MAX_PLAINTEXT {
            return Err(Failure::bad(
                "InvalidParameter",
                "Plaintext is longer than 6144 bytes.",
            ));
        }
        let plaintext = SecretBytes::new(req.plaintext);
        let iv = caller_nonce(&key, &req.iv)?;
        let version = key.primary_version.clone();
        let sealed = self
            .plane
            .kms
            .gcm_seal(
                &key,
                &version,
                Domain::Instance,
                iv,
                req.aad,
                plaintext.expose(),
            )
            .await?;
        out.version = Some(version);
        reply(&proto::EncryptResponse {
            key_id: key.key_id.to_string(),
            ciphertext_blob: sealed,
            iv: iv.to_vec(),
            request_id,
            algorithm: algorithm.into(),
            padding_mode: req.padding_mode,
            key_version_id: String::new(),
        })
    }

    /// Opens a raw ciphertext of `key`, trying its versions newest first.
    async fn open_raw(
        &self,
        key: &KeyRecord,
        iv: &[u8],
        aad: &[u8],
        sealed: &[u8],
        out: &mut Outcome,
    ) -> Result<SecretBytes, Failure> {
        let iv: [u8; NONCE_LEN] = iv.try_into().map_err(|_| {
            Failure::bad(
                "InvalidParameter",
                "Iv must be the 12 bytes Encrypt returned.",
            )
        })?;
        for version in key.versions.iter().rev() {
            match self
                .plane
                .kms
                .gcm_open(
                    key,
                    version,
                    Domain::Instance,
                    iv,
                    aad.to_vec(),
                    sealed.to_vec(),
                )
                .await
            {
                Ok((_, plaintext)) => {
                    out.version = Some(version.clone());
                    return Ok(plaintext);
                }
                Err(crate::kms::Error::InvalidCiphertext) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(crate::kms::Error::InvalidCiphertext.into())
    }

    async fn decrypt(
        &self,
        req: proto::DecryptRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let algorithm = gcm_name(&key, &req.algorithm)?;
        let plaintext = self
            .open_raw(&key, &req.iv, &req.aad, &req.ciphertext_blob, out)
            .await?;
        reply(&proto::DecryptResponse {
            key_id: key.key_id.to_string(),
            plaintext: plaintext.expose().to_vec(),
            request_id,
            algorithm: algorithm.into(),
            padding_mode: req.padding_mode,
            key_version_id: String::new(),
        })
    }

    async fn generate_data_key(
        &self,
        req: proto::GenerateDataKeyRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let algorithm = gcm_name(&key, &req.algorithm)?;
        enabled(&key)?;
        let mut data_key = SecretBytes::new(vec![0; data_key_length(req.number_of_bytes)?]);
        crate::crypto::fill_random(data_key.expose_mut());
        let iv = nonce(&[])?;
        let version = key.primary_version.clone();
        let sealed = self
            .plane
            .kms
            .gcm_seal(
                &key,
                &version,
                Domain::Instance,
                iv,
                req.aad,
                data_key.expose(),
            )
            .await?;
        out.version = Some(version);
        reply(&proto::GenerateDataKeyResponse {
            key_id: key.key_id.to_string(),
            iv: iv.to_vec(),
            plaintext: data_key.expose().to_vec(),
            ciphertext_blob: sealed,
            request_id,
            algorithm: algorithm.into(),
            key_version_id: String::new(),
        })
    }

    /// Seals `plaintext` into an Advance blob; returns (blob, iv, version).
    async fn seal_advance(
        &self,
        key: &KeyRecord,
        iv: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, [u8; NONCE_LEN], KeyVersionId), Failure> {
        enabled(key)?;
        let iv = caller_nonce(key, iv)?;
        let version = key.primary_version.clone();
        let sealed = self
            .plane
            .kms
            .gcm_seal(
                key,
                &version,
                Domain::Instance,
                iv,
                raw_aad(&version, aad),
                plaintext,
            )
            .await?;
        let mut blob = ADVANCE_PREFIX.to_vec();
        blob.extend_from_slice(
            &Blob {
                version: version.clone(),
                nonce: iv,
                sealed,
            }
            .to_bytes(),
        );
        Ok((blob, iv, version))
    }

    async fn advance_encrypt(
        &self,
        req: proto::EncryptRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let algorithm = gcm_name(&key, &req.algorithm)?;
        if req.plaintext.len() > MAX_PLAINTEXT {
            return Err(Failure::bad(
                "InvalidParameter",
                "Plaintext is longer than 6144 bytes.",
            ));
        }
        let plaintext = SecretBytes::new(req.plaintext);
        let (blob, iv, version) = self
            .seal_advance(&key, &req.iv, &req.aad, plaintext.expose())
            .await?;
        out.version = Some(version.clone());
        reply(&proto::EncryptResponse {
            key_id: key.key_id.to_string(),
            ciphertext_blob: blob,
            iv: iv.to_vec(),
            request_id,
            algorithm: algorithm.into(),
            padding_mode: req.padding_mode,
            key_version_id: version.to_string(),
        })
    }

    async fn advance_decrypt(
        &self,
        req: proto::DecryptRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let invalid = || Failure::from(crate::kms::Error::InvalidCiphertext);
        let body = req
            .ciphertext_blob
            .strip_prefix(&ADVANCE_PREFIX[..1])
            .and_then(|b| b.get(2..))
            .ok_or_else(invalid)?;
        let blob = Blob::from_bytes(body).map_err(|_| invalid())?;
        // The version's key must be this instance's; anything else is indistinguishable from
        // garbage.
        let key = self
            .plane
            .kms
            .key_of_version(&self.owner, &blob.version)?
            .filter(|k| k.instance.as_ref() == Some(&self.instance.instance_id))
            .ok_or_else(invalid)?;
        if !req.key_id.is_empty() && req.key_id != key.key_id.as_str() {
            return Err(invalid());
        }
        let key = self.admit_key(key, out).await?;
        let algorithm = gcm_name(&key, "")?;
        let aad = raw_aad(&blob.version, &req.aad);
        let (_, plaintext) = self
            .plane
            .kms
            .gcm_open(
                &key,
                &blob.version,
                Domain::Instance,
                blob.nonce,
                aad,
                blob.sealed,
            )
            .await?;
        out.version = Some(blob.version.clone());
        reply(&proto::DecryptResponse {
            key_id: key.key_id.to_string(),
            plaintext: plaintext.expose().to_vec(),
            request_id,
            algorithm: algorithm.into(),
            padding_mode: req.padding_mode,
            key_version_id: blob.version.to_string(),
        })
    }

    async fn advance_generate_data_key(
        &self,
        req: proto::AdvanceGenerateDataKeyRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let algorithm = gcm_name(&key, "")?;
        let mut data_key = SecretBytes::new(vec![0; data_key_length(req.number_of_bytes)?]);
        crate::crypto::fill_random(data_key.expose_mut());
        let (blob, iv, version) = self
            .seal_advance(&key, &[], &req.aad, data_key.expose())
            .await?;
        out.version = Some(version.clone());
        reply(&proto::GenerateDataKeyResponse {
            key_id: key.key_id.to_string(),
            iv: iv.to_vec(),
            plaintext: data_key.expose().to_vec(),
            ciphertext_blob: blob,
            request_id,
            algorithm: algorithm.into(),
            key_version_id: version.to_string(),
        })
    }

    /// The digest to sign or verify: the message hashed with SHA-256 (`MessageType=RAW`, the
    /// default) or the caller's digest (`DIGEST`, in `Digest` or, as the SDKs send it, in
    /// `Message`).
    fn digest(
        alg: SignAlgorithm,
        message_type: &str,
        message: &[u8],
        digest: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        match message_type {
            "" | "RAW" => {
                if alg == SignAlgorithm::Sm2Dsa {
                    return Err(Failure::bad(
                        "UnsupportedOperation",
                        "SM2DSA signs a caller-computed SM3(Z||M): use MessageType=DIGEST.",
                    ));
                }
                Ok(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)
                        .as_ref()
                        .to_vec(),
                )
            }
            // The SDKs send the digest in `Message` (their request models have no `Digest`).
            "DIGEST" if digest.is_empty() => Ok(message.to_vec()),
            "DIGEST" => Ok(digest.to_vec()),
            _ => Err(Failure::bad(
                "InvalidParameter",
                "MessageType must be RAW or DIGEST.",
            )),
        }
    }

    fn sign_algorithm(name: &str) -> Result<SignAlgorithm, Failure> {
        SignAlgorithm::from_name(name).ok_or_else(|| {
            Failure::bad(
                "InvalidParameter",
                "Algorithm must be RSA_PSS_SHA_256, RSA_PKCS1_SHA_256, ECDSA_SHA_256 or SM2DSA.",
            )
        })
    }

    /// The key, version, algorithm and digest of a Sign or Verify request.
    async fn signing(
        &self,
        key_id: &str,
        algorithm: &str,
        message_type: &str,
        message: &[u8],
        digest: &[u8],
        out: &mut Outcome,
    ) -> Result<SigningTarget, Failure> {
        let record = self.key(key_id, out).await?;
        let alg = Self::sign_algorithm(algorithm)?;
        let digest = Self::digest(alg, message_type, message, digest)?;
        let version = record.primary_version.clone();
        out.version = Some(version.clone());
        Ok(SigningTarget {
            key: KeyRef::Id(record.key_id.clone()),
            record,
            version,
            alg,
            digest,
        })
    }

    async fn sign(
        &self,
        req: proto::SignRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let t = self
            .signing(
                &req.key_id,
                &req.algorithm,
                &req.message_type,
                &req.message,
                &req.digest,
                out,
            )
            .await?;
        let (_, signature) = self
            .plane
            .kms
            .asymmetric_sign(&self.owner, &t.key, &t.version, t.alg, &t.digest)
            .await?;
        let key = t.record;
        reply(&proto::SignResponse {
            key_id: key.key_id.to_string(),
            signature,
            request_id,
            algorithm: req.algorithm,
            message_type: req.message_type,
        })
    }

    async fn verify(
        &self,
        req: proto::VerifyRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let t = self
            .signing(
                &req.key_id,
                &req.algorithm,
                &req.message_type,
                &req.message,
                &req.digest,
                out,
            )
            .await?;
        let (_, value) = self
            .plane
            .kms
            .asymmetric_verify(
                &self.owner,
                &t.key,
                &t.version,
                t.alg,
                &t.digest,
                &req.signature,
            )
            .await?;
        let key = t.record;
        reply(&proto::VerifyResponse {
            key_id: key.key_id.to_string(),
            value,
            request_id,
            algorithm: req.algorithm,
            message_type: req.message_type,
        })
    }

    async fn get_public_key(
        &self,
        req: proto::GetPublicKeyRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let version = key.primary_version.clone();
        let (_, der) = self
            .plane
            .kms
            .public_key(&self.owner, &KeyRef::Id(key.key_id.clone()), &version)
            .await?;
        out.version = Some(version);
        reply(&proto::GetPublicKeyResponse {
            key_id: key.key_id.to_string(),
            public_key: crate::crypto::asymmetric::public_key_pem(&der),
            request_id,
        })
    }

    async fn get_secret_value(
        &self,
        req: proto::GetSecretValueRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let name: crate::ids::SecretName = req
            .secret_name
            .parse()
            .map_err(|_| Failure::bad("InvalidParameter", "SecretName is not valid."))?;
        let secret = SecretRef::Name(name.clone());
        let record = self.plane.kms.secret(&self.owner, &secret)?;
        if record.instance.as_ref() != Some(&self.instance.instance_id) {
            return Err(crate::kms::Error::SecretNotFound.into());
        }
        let arn = self.arn(&format!("secret/{name}"));
        out.resource = Some(arn.clone());
        self.authorize(Some(arn)).await?;
        let version = match req.version_id.as_str() {
            "" => None,
            v => Some(
                v.parse::<crate::ids::SecretVersionId>()
                    .map_err(|_| Failure::bad("InvalidParameter", "VersionId is not valid."))?,
            ),
        };
        let stage = (!req.version_stage.is_empty()).then_some(req.version_stage.as_str());
        let v = self
            .plane
            .kms
            .get_secret_value(&self.owner, &secret, version.as_ref(), stage)
            .await?;
        let date = |t: Option<i64>| t.map(utc).unwrap_or_default();
        let s = &v.secret;
        reply(&proto::GetSecretValueResponse {
            secret_name: s.name.to_string(),
            secret_type: s.secret_type.as_str().into(),
            secret_data: v.data.expose().to_owned(),
            secret_data_type: v.data_type.as_str().into(),
            version_stages: v.stages.clone(),
            version_id: v.version_id.to_string(),
            create_time: utc(v.created),
            request_id,
            last_rotation_date: date(s.last_rotation),
            next_rotation_date: date(s.next_rotation.filter(|_| s.automatic_rotation)),
            // The SDK's default is to fetch it (spec §7.3).
            extended_config: s.extended_config.clone().unwrap_or_default(),
            automatic_rotation: s.rotation_status().into(),
            rotation_interval: s
                .rotation_interval
                .filter(|_| s.automatic_rotation)
                .map(|i| format!("{i}s"))
                .unwrap_or_default(),
        })
    }

    async fn hmac(
        &self,
        req: proto::HmacRequest,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let mac = self.plane.kms.generate_mac(
            &self.owner,
            &KeyRef::Id(key.key_id.clone()),
            None,
            &req.message,
        )?;
        out.version = Some(mac.version);
        reply(&proto::HmacResponse {
            key_id: key.key_id.to_string(),
            signature: mac.tag,
            request_id,
        })
    }

    /// The four data-key-pair operations: a fresh key pair whose private key comes back
    /// sealed under the master key (raw with its IV, or as an Advance blob), and in plaintext
    /// unless the operation is `…WithoutPlaintext`.
    async fn data_key_pair(
        &self,
        req: PairRequest,
        advance: bool,
        request_id: String,
        out: &mut Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key = self.key(&req.key_id, out).await?;
        let algorithm = gcm_name(&key, &req.algorithm)?.to_owned();
        enabled(&key)?;
        let (private, public) = new_key_pair(&req.spec, &req.format).await?;
        let (blob, iv, version) = if advance {
            self.seal_advance(&key, &[], &req.aad, private.expose())
                .await?
        } else {
            let iv = nonce(&[])?;
            let version = key.primary_version.clone();
            let sealed = self
                .plane
                .kms
                .gcm_seal(
                    &key,
                    &version,
                    Domain::Instance,
                    iv,
                    req.aad,
                    private.expose(),
                )
                .await?;
            (sealed, iv, version)
        };
        out.version = Some(version.clone());
        let (key_id, iv, spec) = (key.key_id.to_string(), iv.to_vec(), req.spec);
        // Advance replies carry the version; in the plain ones it stays empty, off the wire.
        let key_version_id = if advance {
            version.to_string()
        } else {
            String::new()
        };
        if self.api.ends_with("WithoutPlaintext") {
            reply(&proto::GenerateDataKeyPairWithoutPlaintextResponse {
                key_id,
                iv,
                key_pair_spec: spec,
                private_key_ciphertext_blob: blob,
                public_key: public,
                request_id,
                algorithm,
                key_version_id,
            })
        } else {
            reply(&proto::GenerateDataKeyPairResponse {
                key_id,
                iv,
                key_pair_spec: spec,
                private_key_plaintext: private.expose().to_vec(),
                private_key_ciphertext_blob: blob,
                public_key: public,
                request_id,
                algorithm,
                key_version_id,
            })
        }
    }

    async fn generate_random(
        &self,
        req: proto::GenerateRandomRequest,
        request_id: String,
    ) -> Result<Vec<u8>, Failure> {
        let n = usize::try_from(req.length)
            .ok()
            .filter(|n| (1..=1024).contains(n))
            .ok_or_else(|| Failure::bad("InvalidParameter", "Length must be 1-1024."))?;
        self.authorize(None).await?;
        let mut random = vec![0u8; n];
        crate::crypto::fill_random(&mut random);
        reply(&proto::GenerateRandomResponse { random, request_id })
    }
}
