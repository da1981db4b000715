//! The mechanisms Arca asks of a token: key pair kinds, signature paddings, OAEP hashes, BYOK
//! unwrappings, and how a token says it cannot do one.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectClass;

use super::HsmError;

/// The kinds of key pair a token holds for Arca.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairSpec {
    /// RSA with this many bits, public exponent 65537.
    Rsa(u64),
    /// NIST P-256.
    P256,
    /// secp256k1.
    Secp256k1,
}

/// Which of a key version's objects: all share `CKA_ID` = the version id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Part {
    Secret,
    Private,
    Public,
}

impl Part {
    pub(super) fn class(self) -> ObjectClass {
        match self {
            Part::Secret => ObjectClass::SECRET_KEY,
            Part::Private => ObjectClass::PRIVATE_KEY,
            Part::Public => ObjectClass::PUBLIC_KEY,
        }
    }
}

/// DER OIDs for CKA_EC_PARAMS.
pub(super) const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(super) const SECP256K1_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// The DER DigestInfo prefix of a SHA-256 digest (RFC 8017 §9.2), for CKM_RSA_PKCS signatures.
pub(super) const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// RSA signature paddings over a SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaPadding {
    /// RSASSA-PSS, MGF1-SHA-256, salt 32.
    Pss,
    /// RSASSA-PKCS1-v1_5.
    Pkcs1,
}

/// A signature mechanism over a SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMechanism {
    /// RSA with this padding.
    Rsa(RsaPadding),
    /// ECDSA; signatures are raw r ‖ s.
    Ecdsa,
}

impl SignMechanism {
    pub(super) fn mechanism(self) -> Mechanism<'static> {
        match self {
            SignMechanism::Rsa(RsaPadding::Pss) => Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32_u64.into(),
            }),
            SignMechanism::Rsa(RsaPadding::Pkcs1) => Mechanism::RsaPkcs,
            SignMechanism::Ecdsa => Mechanism::Ecdsa,
        }
    }

    /// What the token signs: PKCS#1 v1.5 without hashing takes the DigestInfo, not the digest.
    pub(super) fn input(self, digest: &[u8]) -> Vec<u8> {
        match self {
            SignMechanism::Rsa(RsaPadding::Pkcs1) => [SHA256_DIGEST_INFO, digest].concat(),
            _ => digest.to_vec(),
        }
    }
}

/// RSA-OAEP hashes (the hash and MGF1 hash are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl OaepHash {
    pub(super) fn mechanism(self) -> Mechanism<'static> {
        let (hash, mgf) = match self {
            OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        };
        Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
    }

    pub(super) fn unsupported(self) -> HsmError {
        HsmError::Unsupported(match self {
            OaepHash::Sha256 => {
                "this HSM token does not do RSAES_OAEP_SHA_256; use RSAES_OAEP_SHA_1 with HSM keys"
            }
            OaepHash::Sha1 => "this HSM token does not do RSAES_OAEP_SHA_1",
        })
    }
}

/// The ways a token may unwrap BYOK material with an RSA-2048 wrapping key
/// (GetParametersForImport's `WrappingAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwrapping {
    /// `RSAES_OAEP_SHA_1`.
    RsaOaepSha1,
    /// `RSAES_OAEP_SHA_256`.
    RsaOaepSha256,
    /// `RSAES_PKCS1_V1_5`.
    RsaPkcs1,
}

impl Unwrapping {
    /// Every way, in the order they are offered.
    pub const ALL: [Unwrapping; 3] = [
        Unwrapping::RsaOaepSha1,
        Unwrapping::RsaOaepSha256,
        Unwrapping::RsaPkcs1,
    ];

    pub(super) fn mechanism(self) -> Mechanism<'static> {
        match self {
            Unwrapping::RsaOaepSha1 => OaepHash::Sha1.mechanism(),
            Unwrapping::RsaOaepSha256 => OaepHash::Sha256.mechanism(),
            Unwrapping::RsaPkcs1 => Mechanism::RsaPkcs,
        }
    }
}

/// The AAD of the key check value: a GCM tag over nothing, under a zero nonce that random
/// 96-bit nonces never meet in practice. It identifies material without revealing it.
pub(super) const KEY_CHECK_AAD: &[u8] = b"arca/key-check-value/v1";

/// Whether a decryption failed on its input (a tag or padding that does not verify) rather
/// than on the token: only C_Decrypt itself, after a successful C_DecryptInit, says that.
/// SoftHSM2 reports a bad GCM tag as CKR_GENERAL_ERROR.
pub(super) fn refused_input(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::GeneralError | RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
            Function::Decrypt
        )
    )
}

/// Whether a token error means "this mechanism or parameter is not available here".
pub(super) fn is_unsupported(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::ArgumentsBad | RvError::MechanismInvalid | RvError::MechanismParamInvalid,
            _
        )
    )
}
