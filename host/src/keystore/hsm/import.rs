//! BYOK into the token: the wrapping key pair, probing which unwrappings the token accepts,
//! and unwrapping imported AES material as a non-extractable token object.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::keys::{aes_template, find, public_der};
use super::mechanism::{KEY_CHECK_AAD, PairSpec, Part, Unwrapping, is_unsupported};
use super::{Hsm, HsmError, TAG_BITS, unavailable};
use crate::crypto::aead::NONCE_LEN;
use crate::ids::KeyVersionId;

impl Hsm {
    /// The BYOK unwrapping mechanisms this token accepts. Probed once, with a throw-away
    /// session key pair: a token says "bad arguments" or "invalid mechanism" for what it cannot
    /// do (SoftHSM2 has no OAEP with SHA-256), and a decryption error for garbage it could unwrap.
    pub(super) fn unwrappings(&self) -> Result<Vec<Unwrapping>, HsmError> {
        if let Some(known) = self.unwrappings.get() {
            return Ok(known.clone());
        }
        let found = self.with_session(|s| {
            let (pubh, privh) = s
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[
                        Attribute::Token(false),
                        Attribute::ModulusBits(2048_u64.into()),
                        Attribute::PublicExponent(vec![1, 0, 1]),
                    ],
                    &[Attribute::Token(false), Attribute::Unwrap(true)],
                )
                .map_err(unavailable)?;
            let mut found = Vec::new();
            for way in Unwrapping::ALL {
                match s.unwrap_key(&way.mechanism(), privh, &[0x5a; 256], &aes_template(false)) {
                    Ok(h) => {
                        let _ = s.destroy_object(h);
                        found.push(way);
                    }
                    Err(e) if is_unsupported(&e) => {}
                    Err(_) => found.push(way),
                }
            }
            let _ = s.destroy_object(privh);
            let _ = s.destroy_object(pubh);
            Ok(found)
        })?;
        Ok(self.unwrappings.get_or_init(|| found).clone())
    }

    /// Makes the RSA-2048 wrapping key pair of one import in the token (`CKA_ID` = `id`), the
    /// private half usable only to unwrap; returns its public key as DER SubjectPublicKeyInfo.
    pub(super) fn generate_wrapping_pair(&self, id: &str) -> Result<Vec<u8>, HsmError> {
        let label = format!("arca:{id}").into_bytes();
        let id = id.as_bytes().to_vec();
        self.with_session(|s| {
            let (pubh, _) = s
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(false),
                        Attribute::ModulusBits(2048_u64.into()),
                        Attribute::PublicExponent(vec![1, 0, 1]),
                        Attribute::Wrap(true),
                        Attribute::Encrypt(true),
                        Attribute::Label(label.clone()),
                        Attribute::Id(id.clone()),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Unwrap(true),
                        Attribute::Decrypt(false),
                        Attribute::Sign(false),
                        Attribute::Label(label),
                        Attribute::Id(id),
                    ],
                )
                .map_err(unavailable)?;
            public_der(s, pubh, PairSpec::Rsa(2048))
        })
    }

    /// Destroys an import's wrapping key pair (used, or expired).
    pub(super) fn destroy_wrapping_pair(&self, id: &str) -> Result<(), HsmError> {
        self.destroy_id(id.as_bytes())
    }

    /// Unwraps imported AES material inside the token into `version`'s key object (replacing a
    /// leftover of an earlier attempt) and returns its key check value. Material that does not
    /// unwrap, or is not `bytes` long, is [`HsmError::Rejected`] and leaves no object behind.
    pub(super) fn unwrap_aes(
        &self,
        wrapping_id: &str,
        how: Unwrapping,
        wrapped: &[u8],
        version: &KeyVersionId,
        bytes: usize,
    ) -> Result<Vec<u8>, HsmError> {
        self.destroy(version)?;
        self.with_session(|s| {
            let unwrapping_key = find(s, wrapping_id.as_bytes(), Part::Private)?;
            let mut template = aes_template(true);
            template.extend([
                Attribute::Label(format!("arca:{version}").into_bytes()),
                Attribute::Id(version.as_str().as_bytes().to_vec()),
            ]);
            let h = match s.unwrap_key(&how.mechanism(), unwrapping_key, wrapped, &template) {
                Ok(h) => h,
                Err(e) if is_unsupported(&e) => {
                    return Err(HsmError::Unsupported(
                        "this HSM token cannot unwrap with this WrappingAlgorithm",
                    ));
                }
                Err(
                    e @ CkError::Pkcs11(
                        RvError::GeneralError
                        | RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange
                        | RvError::WrappedKeyInvalid
                    | RvError::WrappedKeyLenRange,
                    _,
                )) => {
                    tracing::info!(version = %version, answer = %e, "the token refused to unwrap imported material");
                    return Err(HsmError::Rejected);
                }
                Err(e) => return Err(unavailable(e)),
            };
            let len = match value_len(s, h)? {
                Some(n) => Some(n),
                None => unwrapped_len(s, unwrapping_key, how, wrapped)?,
            };
            if len != Some(bytes) {
                tracing::info!(version = %version, length = ?len, "imported material has the wrong length");
                let _ = s.destroy_object(h);
                return Err(HsmError::Rejected);
            }
            let mut iv = [0u8; NONCE_LEN];
            let params =
                GcmParams::new(&mut iv, KEY_CHECK_AAD, TAG_BITS.into()).map_err(unavailable)?;
            let check = s
                .encrypt(&Mechanism::AesGcm(params), h, &[])
                .map_err(unavailable);
            match check {
                Ok(_) => self.remember((version.clone(), Part::Secret), h),
                Err(_) => {
                    let _ = s.destroy_object(h);
                }
            }
            check
        })
    }
}

/// CKA_VALUE_LEN of a secret key, when the token records it (SoftHSM2 leaves it 0 for
/// unwrapped keys).
pub(super) fn value_len(s: &Session, h: ObjectHandle) -> Result<Option<usize>, HsmError> {
    Ok(s.get_attributes(h, &[AttributeType::ValueLen])
        .map_err(unavailable)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::ValueLen(n) => usize::try_from(u64::from(n)).ok(),
            _ => None,
        })
        .filter(|n| *n > 0))
}

/// The length of imported material, for tokens that do not record it: a second, session-only
/// copy is unwrapped and wrapped out under a throw-away session AES key (RFC 3394 output is
/// the input plus 8 bytes). The material itself never leaves the token in the clear; both
/// session objects are destroyed before returning. `None`: not a whole number of 64-bit blocks.
pub(super) fn unwrapped_len(
    s: &Session,
    unwrapping_key: ObjectHandle,
    how: Unwrapping,
    wrapped: &[u8],
) -> Result<Option<usize>, HsmError> {
    let wrapper = session_wrapping_key(s)?;
    let copy = s.unwrap_key(
        &how.mechanism(),
        unwrapping_key,
        wrapped,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
        ],
    );
    let len = match copy {
        Ok(copy) => {
            let out = s.wrap_key(&Mechanism::AesKeyWrap, wrapper, copy);
            let _ = s.destroy_object(copy);
            out.ok().and_then(|w| w.len().checked_sub(8))
        }
        Err(e) => {
            let _ = s.destroy_object(wrapper);
            return Err(unavailable(e));
        }
    };
    let _ = s.destroy_object(wrapper);
    Ok(len)
}

/// A throw-away AES-256 session key that can only wrap (and never leaves the token).
pub(super) fn session_wrapping_key(s: &Session) -> Result<ObjectHandle, HsmError> {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32_u64.into()),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
        ],
    )
    .map_err(unavailable)
}
