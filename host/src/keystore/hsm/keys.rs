//! Key material in the token: generating it, using it (sign, verify, RSA, AES-GCM), the
//! root key's wrapping, and destroying it.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::mechanism::{
    OaepHash, P256_OID, PairSpec, Part, SECP256K1_OID, SignMechanism, is_unsupported, refused_input,
};
use super::{Hsm, HsmError, ROOT_WRAP_AAD, ROOT_WRAP_ID, TAG_BITS, unavailable};
use crate::crypto::aead::NONCE_LEN;
use crate::ids::KeyVersionId;
use crate::secret::SecretBytes;

impl Hsm {
    /// Generates an AES key of `bytes` bytes for `version` in the token: a token object,
    /// private, sensitive, never extractable, usable only to encrypt and decrypt.
    pub(super) fn generate_aes(
        &self,
        version: &KeyVersionId,
        bytes: usize,
    ) -> Result<(), HsmError> {
        let mut template = aes_template(true);
        template.extend([
            Attribute::ValueLen((bytes as u64).into()),
            Attribute::Label(format!("arca:{version}").into_bytes()),
            Attribute::Id(version.as_str().as_bytes().to_vec()),
        ]);
        self.with_session(|s| {
            let h = s
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(unavailable)?;
            self.remember((version.clone(), Part::Secret), h);
            Ok(())
        })
    }

    /// Generates a key pair for `version` in the token: the private half a token object,
    /// private, sensitive and never extractable; the public half a token object too, so that
    /// verification and encryption also run in the token. `signing` picks the usage the token
    /// enforces: sign/verify, or (RSA only) decrypt/encrypt.
    pub(super) fn generate_pair(
        &self,
        version: &KeyVersionId,
        spec: PairSpec,
        signing: bool,
    ) -> Result<(), HsmError> {
        let id = version.as_str().as_bytes().to_vec();
        let label = format!("arca:{version}").into_bytes();
        let (mechanism, mut public) = match spec {
            PairSpec::Rsa(bits) => (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(bits.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    Attribute::Encrypt(!signing),
                ],
            ),
            PairSpec::P256 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(P256_OID.to_vec())],
            ),
            PairSpec::Secp256k1 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(SECP256K1_OID.to_vec())],
            ),
        };
        public.extend([
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(signing),
            Attribute::Wrap(false),
            Attribute::Label(label.clone()),
            Attribute::Id(id.clone()),
        ]);
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(signing),
            Attribute::Unwrap(false),
            Attribute::Label(label),
            Attribute::Id(id),
        ];
        if let PairSpec::Rsa(_) = spec {
            private.push(Attribute::Decrypt(!signing));
        }
        self.with_session(|s| {
            let (pubh, privh) = s
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(unavailable)?;
            self.remember((version.clone(), Part::Public), pubh);
            self.remember((version.clone(), Part::Private), privh);
            Ok(())
        })
    }

    /// The public key of `version`'s pair as DER SubjectPublicKeyInfo, read from the token.
    pub(super) fn public_key_der(
        &self,
        version: &KeyVersionId,
        spec: PairSpec,
    ) -> Result<Vec<u8>, HsmError> {
        self.with_session(|s| {
            let h = self.handle(s, version, Part::Public)?;
            public_der(s, h, spec)
        })
    }

    /// Signs a SHA-256 digest with `version`'s private key in the token. ECDSA signatures come
    /// back raw (r ‖ s).
    pub(super) fn sign(
        &self,
        version: &KeyVersionId,
        mechanism: SignMechanism,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.with_session(|s| {
            let key = self.handle(s, version, Part::Private)?;
            s.sign(&mechanism.mechanism(), key, &mechanism.input(digest))
                .map_err(|e| {
                    if is_unsupported(&e) {
                        HsmError::Unsupported("this HSM token does not do this signature mechanism")
                    } else {
                        unavailable(e)
                    }
                })
        })
    }

    /// Verifies a signature over a SHA-256 digest with `version`'s public key in the token.
    pub(super) fn verify(
        &self,
        version: &KeyVersionId,
        mechanism: SignMechanism,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, HsmError> {
        self.with_session(|s| {
            let key = self.handle(s, version, Part::Public)?;
            match s.verify(
                &mechanism.mechanism(),
                key,
                &mechanism.input(digest),
                signature,
            ) {
                Ok(()) => Ok(true),
                Err(CkError::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _)) => {
                    Ok(false)
                }
                Err(e) if is_unsupported(&e) => Err(HsmError::Unsupported(
                    "this HSM token does not do this signature mechanism",
                )),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    /// RSA-OAEP encryption with `version`'s public key in the token.
    pub(super) fn rsa_encrypt(
        &self,
        version: &KeyVersionId,
        hash: OaepHash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.with_session(|s| {
            let key = self.handle(s, version, Part::Public)?;
            s.encrypt(&hash.mechanism(), key, plaintext)
                .map_err(|e| match e {
                    e if is_unsupported(&e) => hash.unsupported(),
                    CkError::Pkcs11(RvError::DataLenRange, _) => HsmError::Rejected,
                    e => unavailable(e),
                })
        })
    }

    /// RSA-OAEP decryption with `version`'s private key in the token. A ciphertext that does
    /// not decrypt is [`HsmError::Rejected`].
    pub(super) fn rsa_decrypt(
        &self,
        version: &KeyVersionId,
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        self.with_session(|s| {
            let key = self.handle(s, version, Part::Private)?;
            match s.decrypt(&hash.mechanism(), key, ciphertext) {
                Ok(p) => Ok(SecretBytes::new(p)),
                Err(e) if is_unsupported(&e) => Err(hash.unsupported()),
                Err(e) if refused_input(&e) => Err(HsmError::Rejected),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    /// AES-GCM in the token: `plaintext` sealed under `version` with `nonce` and `aad`;
    /// returns ciphertext ‖ tag, the same layout as the software path.
    pub(super) fn gcm_seal(
        &self,
        version: &KeyVersionId,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.with_session(|s| {
            let key = self.handle(s, version, Part::Secret)?;
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(unavailable)?;
            s.encrypt(&Mechanism::AesGcm(params), key, plaintext)
                .map_err(unavailable)
        })
    }

    /// Opens ciphertext ‖ tag in the token. A tag that does not verify is [`HsmError::Rejected`]
    /// (see [`refused_input`]); the session stays usable.
    pub(super) fn gcm_open(
        &self,
        version: &KeyVersionId,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        self.with_session(|s| {
            let key = self.handle(s, version, Part::Secret)?;
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(unavailable)?;
            match s.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                Ok(p) => Ok(SecretBytes::new(p)),
                Err(e) if refused_input(&e) => Err(HsmError::Rejected),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    /// Seals the root key under the token's root-wrapping key (`CKA_ID` = `arca-root-wrap`,
    /// made on first use: AES-256, sensitive, never extractable): `nonce ‖ ciphertext ‖ tag`.
    pub(super) fn seal_root_key(&self, root: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_session(|s| {
            let key = match find(s, ROOT_WRAP_ID, Part::Secret) {
                Ok(h) => h,
                Err(HsmError::Missing(_)) => {
                    let mut template = aes_template(true);
                    template.extend([
                        Attribute::ValueLen(32_u64.into()),
                        Attribute::Label(b"arca:root-key-wrap".to_vec()),
                        Attribute::Id(ROOT_WRAP_ID.to_vec()),
                    ]);
                    s.generate_key(&Mechanism::AesKeyGen, &template)
                        .map_err(unavailable)?
                }
                Err(e) => return Err(e),
            };
            let mut nonce = [0u8; NONCE_LEN];
            s.generate_random_slice(&mut nonce).map_err(unavailable)?;
            let mut iv = nonce;
            let params =
                GcmParams::new(&mut iv, ROOT_WRAP_AAD, TAG_BITS.into()).map_err(unavailable)?;
            let sealed = s
                .encrypt(&Mechanism::AesGcm(params), key, root)
                .map_err(unavailable)?;
            Ok([&nonce[..], &sealed].concat())
        })
    }

    /// Opens what [`Hsm::seal_root_key`] made. A blob that does not open is
    /// [`HsmError::Rejected`] (another token, or a tampered file).
    pub(super) fn open_root_key(&self, blob: &[u8]) -> Result<SecretBytes, HsmError> {
        let (nonce, sealed) = blob
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(HsmError::Rejected)?;
        self.with_session(|s| {
            let key = find(s, ROOT_WRAP_ID, Part::Secret)?;
            let mut iv = *nonce;
            let params =
                GcmParams::new(&mut iv, ROOT_WRAP_AAD, TAG_BITS.into()).map_err(unavailable)?;
            match s.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                Ok(p) => Ok(SecretBytes::new(p)),
                Err(e) if refused_input(&e) => Err(HsmError::Rejected),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    /// Destroys `version`'s objects (after its key's deletion window). Absent is fine.
    pub(super) fn destroy(&self, version: &KeyVersionId) -> Result<(), HsmError> {
        if let Ok(mut m) = self.handles.lock() {
            m.retain(|(v, _), _| v != version);
        }
        self.destroy_id(version.as_str().as_bytes())
    }
}

impl Hsm {
    pub(super) fn destroy_id(&self, id: &[u8]) -> Result<(), HsmError> {
        self.with_session(|s| {
            let found = s
                .find_objects(&[Attribute::Id(id.to_vec())])
                .map_err(unavailable)?;
            for h in found {
                s.destroy_object(h).map_err(unavailable)?;
            }
            Ok(())
        })
    }
}

/// The SEC1 point inside CKA_EC_POINT, which PKCS#11 defines as a DER OCTET STRING (some tokens
/// return the bare point).
pub(super) fn ec_point(attr: &[u8]) -> &[u8] {
    match attr {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        bare => bare,
    }
}

/// The public key of the pair whose public object is `h`, as DER SubjectPublicKeyInfo.
pub(super) fn public_der(
    s: &Session,
    h: ObjectHandle,
    spec: PairSpec,
) -> Result<Vec<u8>, HsmError> {
    use aws_lc_rs::encoding::AsDer;
    let bad = |what: &str| HsmError::Unavailable(format!("the token's public key: {what}"));
    let attrs = s
        .get_attributes(
            h,
            &[
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::EcPoint,
            ],
        )
        .map_err(unavailable)?;
    let (mut n, mut e, mut point) = (None, None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    let der = match spec {
        PairSpec::Rsa(_) => {
            let (Some(n), Some(e)) = (n, e) else {
                return Err(bad("no modulus"));
            };
            aws_lc_rs::rsa::PublicKeyComponents { n, e }
                .as_der()
                .map_err(|_| bad("RSA"))?
                .as_ref()
                .to_vec()
        }
        PairSpec::P256 | PairSpec::Secp256k1 => {
            let point = point.ok_or_else(|| bad("no EC point"))?;
            let alg = if spec == PairSpec::P256 {
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1
            } else {
                &aws_lc_rs::signature::ECDSA_P256K1_SHA256_ASN1
            };
            aws_lc_rs::signature::ParsedPublicKey::new(alg, ec_point(&point))
                .map_err(|_| bad("EC point"))?
                .as_der()
                .map_err(|_| bad("EC"))?
                .as_ref()
                .to_vec()
        }
    };
    Ok(der)
}

/// The one object of `part` with `CKA_ID` = `id`.
pub(super) fn find(s: &Session, id: &[u8], part: Part) -> Result<ObjectHandle, HsmError> {
    let found = s
        .find_objects(&[Attribute::Class(part.class()), Attribute::Id(id.to_vec())])
        .map_err(unavailable)?;
    found
        .first()
        .copied()
        .ok_or_else(|| HsmError::Missing(String::from_utf8_lossy(id).into_owned()))
}

/// The template of an AES key object made in or unwrapped into the token: sensitive, never
/// extractable, for encryption and decryption only.
pub(super) fn aes_template(token: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(token),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
    ]
}
