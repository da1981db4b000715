//! HSM keys through PKCS#11: key material generated in a token as sensitive, non-extractable
//! token objects, and every operation on it run inside the token.
//!
//! One library initialisation per process, the slot found by token label, a pool of
//! logged-in sessions (a `Session` is `Send` but not `Sync`), and object handles cached by key
//! version (`find_objects` is linear in the number of token objects). Each object's `CKA_ID`
//! is its key version id, so a version record in the store names its material without holding
//! any of it. Every call here blocks; callers run them on the blocking pool ([`Hsm::run`]).
//! A failed call drops its session instead of returning it to the pool, so a token that went
//! away and came back is reached through fresh sessions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::crypto::aead::NONCE_LEN;
use crate::ids::KeyVersionId;
use crate::secret::{SecretBytes, SecretString};

/// How to reach the token.
#[derive(Debug)]
pub struct HsmConfig {
    /// The PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label; the slot is looked up by it (slot ids change between inits).
    pub token_label: String,
    /// The user PIN.
    pub pin: SecretString,
}

/// A token failure.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The module, token or session is not usable right now (503 to clients).
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// The token refused the operation on this input: a GCM tag that does not verify.
    #[error("the token rejected the input")]
    Rejected,
    /// The key version has no object in the token.
    #[error("key version {0} has no object in the token")]
    Missing(String),
    /// The token cannot do this mechanism or these parameters; the text says what it can do.
    #[error("the HSM cannot do this: {0}")]
    Unsupported(&'static str),
}

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
enum Part {
    Secret,
    Private,
    Public,
}

impl Part {
    fn class(self) -> ObjectClass {
        match self {
            Part::Secret => ObjectClass::SECRET_KEY,
            Part::Private => ObjectClass::PRIVATE_KEY,
            Part::Public => ObjectClass::PUBLIC_KEY,
        }
    }
}

/// DER OIDs for CKA_EC_PARAMS.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SECP256K1_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// The DER DigestInfo prefix of a SHA-256 digest (RFC 8017 §9.2), for CKM_RSA_PKCS signatures.
const SHA256_DIGEST_INFO: &[u8] = &[
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
    fn mechanism(self) -> Mechanism<'static> {
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
    fn input(self, digest: &[u8]) -> Vec<u8> {
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
    fn mechanism(self) -> Mechanism<'static> {
        let (hash, mgf) = match self {
            OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        };
        Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
    }

    fn unsupported(self) -> HsmError {
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

    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Unwrapping::RsaOaepSha1 => OaepHash::Sha1.mechanism(),
            Unwrapping::RsaOaepSha256 => OaepHash::Sha256.mechanism(),
            Unwrapping::RsaPkcs1 => Mechanism::RsaPkcs,
        }
    }
}

/// The AAD of the key check value: a GCM tag over nothing, under a zero nonce that random
/// 96-bit nonces never meet in practice. It identifies material without revealing it.
const KEY_CHECK_AAD: &[u8] = b"arca/key-check-value/v1";

/// Whether a decryption failed on its input (a tag or padding that does not verify) rather
/// than on the token: only C_Decrypt itself, after a successful C_DecryptInit, says that.
/// SoftHSM2 reports a bad GCM tag as CKR_GENERAL_ERROR.
fn refused_input(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::GeneralError | RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
            Function::Decrypt
        )
    )
}

/// Whether a token error means "this mechanism or parameter is not available here".
fn is_unsupported(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::ArgumentsBad | RvError::MechanismInvalid | RvError::MechanismParamInvalid,
            _
        )
    )
}

/// `CKA_ID` of the token key that wraps the root key (`--root-key-hsm`).
const ROOT_WRAP_ID: &[u8] = b"arca-root-wrap";
/// AAD of the wrapped root key.
const ROOT_WRAP_AAD: &[u8] = b"arca/root-key/v1";

/// How often a failed HSM is re-initialised, at most.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

fn poisoned() -> HsmError {
    HsmError::Unavailable("HSM state lock poisoned".into())
}

/// GCM tag length, bits.
const TAG_BITS: u64 = 128;
/// Sessions kept open for reuse.
const POOL: usize = 4;

/// An open token.
pub struct Hsm {
    ctx: Pkcs11,
    /// The token's slot; it can change when the token comes back.
    slot: Mutex<Slot>,
    /// Held shared by every call and exclusively by [`Hsm::reconnect`], which must not
    /// finalise the library under a call in flight.
    gate: RwLock<()>,
    /// A call failed in a way that may mean the module or token went away.
    broken: AtomicBool,
    /// When the last reconnection was tried (at most one a second).
    last_reconnect: Mutex<Option<Instant>>,
    pin: SecretString,
    label: String,
    sessions: Mutex<Vec<Session>>,
    /// Calls holding a session right now.
    busy: std::sync::atomic::AtomicUsize,
    handles: Mutex<HashMap<(KeyVersionId, Part), ObjectHandle>>,
    /// The BYOK unwrapping mechanisms the token accepts, probed on first need.
    unwrappings: std::sync::OnceLock<Vec<Unwrapping>>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.label)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: CkError) -> HsmError {
    HsmError::Unavailable(e.to_string())
}

impl Hsm {
    /// Loads the module, finds the token by label and logs in once (checking the PIN).
    pub fn open(config: HsmConfig) -> Result<Self, HsmError> {
        let ctx = Pkcs11::new(&config.module).map_err(|e| {
            HsmError::Unavailable(format!(
                "cannot load PKCS#11 module {}: {e}",
                config.module.display()
            ))
        })?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(unavailable)?;
        let hsm = Self {
            slot: Mutex::new(find_slot(&ctx, &config.token_label)?),
            gate: RwLock::new(()),
            broken: AtomicBool::new(false),
            last_reconnect: Mutex::new(None),
            ctx,
            pin: config.pin,
            label: config.token_label,
            sessions: Mutex::new(Vec::new()),
            busy: std::sync::atomic::AtomicUsize::new(0),
            handles: Mutex::new(HashMap::new()),
            unwrappings: std::sync::OnceLock::new(),
        };
        let session = hsm.new_session()?;
        hsm.give_back(session);
        Ok(hsm)
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f` on the blocking pool: PKCS#11 calls block, and a token that hangs must not
    /// stall the request workers. (Running fast calls in place with `block_in_place` was
    /// measured: no faster at one connection, and much worse p99 under load.)
    pub async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Hsm) -> Result<T, HsmError> + Send + 'static,
    ) -> Result<T, HsmError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| HsmError::Unavailable(format!("HSM task: {e}")))?
    }

    fn new_session(&self) -> Result<Session, HsmError> {
        // The token may have been re-inserted under another slot id: look it up again.
        let known = *self.slot.lock().map_err(|_| poisoned())?;
        let slot = match self.ctx.open_rw_session(known) {
            Ok(s) => return self.logged_in(s),
            Err(_) => find_slot(&self.ctx, &self.label)?,
        };
        let session = self.ctx.open_rw_session(slot).map_err(unavailable)?;
        if let Ok(mut known) = self.slot.lock() {
            *known = slot;
        }
        self.logged_in(session)
    }

    fn logged_in(&self, session: Session) -> Result<Session, HsmError> {
        let pin = AuthPin::from(self.pin.expose().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(HsmError::Unavailable(format!("login: {e}"))),
        }
    }

    fn give_back(&self, session: Session) {
        if let Ok(mut pool) = self.sessions.lock()
            && pool.len() < POOL
        {
            pool.push(session);
        }
    }

    /// Runs `f` with a pooled session. A session whose call failed for any reason but the
    /// input is dropped, not pooled, cached handles are forgotten, and the next call first
    /// reconnects: a module that failed or a token that went away and came back is reached
    /// again without a restart.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        if self.broken.load(Ordering::Acquire) {
            self.reconnect()?;
        }
        let _shared = self.gate.read().map_err(|_| poisoned())?;
        let result = self.pooled_call(f);
        if let Err(HsmError::Unavailable(_)) = &result {
            self.broken.store(true, Ordering::Release);
        }
        result
    }

    /// Finalises and re-initialises the module, finds the token again by label and logs in.
    /// Tried at most once a second, so that calls during an outage fail fast.
    fn reconnect(&self) -> Result<(), HsmError> {
        {
            let mut last = self.last_reconnect.lock().map_err(|_| poisoned())?;
            if last.is_some_and(|t| t.elapsed() < RECONNECT_EVERY) {
                return Err(HsmError::Unavailable("the HSM failed; reconnecting".into()));
            }
            *last = Some(Instant::now());
        }
        let _exclusive = self.gate.write().map_err(|_| poisoned())?;
        if !self.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Ok(mut pool) = self.sessions.lock() {
            pool.clear();
        }
        if let Ok(mut h) = self.handles.lock() {
            h.clear();
        }
        let _ = self.ctx.clone().finalize();
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let slot = find_slot(&self.ctx, &self.label)?;
        if let Ok(mut known) = self.slot.lock() {
            *known = slot;
        }
        let session = self.new_session()?;
        self.give_back(session);
        self.broken.store(false, Ordering::Release);
        tracing::info!(token = %self.label, "reconnected to the HSM");
        Ok(())
    }

    /// The token's health and session use, for `/metrics` and `arca status`.
    pub fn status(&self) -> HsmStatus {
        HsmStatus {
            token: self.label.clone(),
            up: !self.broken.load(Ordering::Acquire),
            idle_sessions: self.sessions.lock().map_or(0, |p| p.len()),
            busy_sessions: self.busy.load(Ordering::Relaxed),
        }
    }

    fn pooled_call<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let result = self.pooled_call_counted(f);
        self.busy.fetch_sub(1, Ordering::Relaxed);
        result
    }

    fn pooled_call_counted<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let pooled = self.sessions.lock().ok().and_then(|mut p| p.pop());
        let session = match pooled {
            Some(s) => s,
            None => self.new_session()?,
        };
        match f(&session) {
            Ok(v) => {
                self.give_back(session);
                Ok(v)
            }
            Err(e @ (HsmError::Rejected | HsmError::Unsupported(_))) => {
                self.give_back(session);
                Err(e)
            }
            Err(e) => {
                if let Ok(mut h) = self.handles.lock() {
                    h.clear();
                }
                Err(e)
            }
        }
    }

    fn handle(
        &self,
        session: &Session,
        version: &KeyVersionId,
        part: Part,
    ) -> Result<ObjectHandle, HsmError> {
        let slot = (version.clone(), part);
        if let Some(h) = self.handles.lock().ok().and_then(|m| m.get(&slot).copied()) {
            return Ok(h);
        }
        // A version the store says is in the token and the token does not have: the token
        // was reset or swapped, or the module lost its state. That is an outage (reconnect),
        // not a missing key.
        let h = find(session, version.as_str().as_bytes(), part).map_err(|e| match e {
            HsmError::Missing(what) => {
                HsmError::Unavailable(format!("key version {what} has no object in the token"))
            }
            other => other,
        })?;
        self.remember(slot, h);
        Ok(h)
    }

    fn remember(&self, slot: (KeyVersionId, Part), handle: ObjectHandle) {
        if let Ok(mut m) = self.handles.lock() {
            m.insert(slot, handle);
        }
    }

    /// Generates an AES key of `bytes` bytes for `version` in the token: a token object,
    /// private, sensitive, never extractable, usable only to encrypt and decrypt.
    pub fn generate_aes(&self, version: &KeyVersionId, bytes: usize) -> Result<(), HsmError> {
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
    pub fn generate_pair(
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
    pub fn public_key_der(
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
    pub fn sign(
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
    pub fn verify(
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
    pub fn rsa_encrypt(
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
    pub fn rsa_decrypt(
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
    pub fn gcm_seal(
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
    pub fn gcm_open(
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
    pub fn seal_root_key(&self, root: &[u8]) -> Result<Vec<u8>, HsmError> {
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
    pub fn open_root_key(&self, blob: &[u8]) -> Result<SecretBytes, HsmError> {
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
    pub fn destroy(&self, version: &KeyVersionId) -> Result<(), HsmError> {
        if let Ok(mut m) = self.handles.lock() {
            m.retain(|(v, _), _| v != version);
        }
        self.destroy_id(version.as_str().as_bytes())
    }

    fn destroy_id(&self, id: &[u8]) -> Result<(), HsmError> {
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

    /// The BYOK unwrapping mechanisms this token accepts. Probed once, with a throw-away
    /// session key pair: a token says "bad arguments" or "invalid mechanism" for what it cannot
    /// do (SoftHSM2 has no OAEP with SHA-256), and a decryption error for garbage it could unwrap.
    pub fn unwrappings(&self) -> Result<Vec<Unwrapping>, HsmError> {
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
    pub fn generate_wrapping_pair(&self, id: &str) -> Result<Vec<u8>, HsmError> {
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
    pub fn destroy_wrapping_pair(&self, id: &str) -> Result<(), HsmError> {
        self.destroy_id(id.as_bytes())
    }

    /// Unwraps imported AES material inside the token into `version`'s key object (replacing a
    /// leftover of an earlier attempt) and returns its key check value. Material that does not
    /// unwrap, or is not `bytes` long, is [`HsmError::Rejected`] and leaves no object behind.
    pub fn unwrap_aes(
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

    /// What the token says about `version`'s object, and whether its value can be read or
    /// wrapped out (it must not).
    pub fn inspect(&self, version: &KeyVersionId) -> Result<KeyObjectReport, HsmError> {
        self.with_session(|s| {
            let id = version.as_str().as_bytes();
            let h = match find(s, id, Part::Secret) {
                Err(HsmError::Missing(_)) => find(s, id, Part::Private)?,
                other => other?,
            };
            let attrs = s
                .get_attributes(
                    h,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::Token,
                        AttributeType::Local,
                    ],
                )
                .map_err(unavailable)?;
            let mut report = KeyObjectReport::default();
            for a in attrs {
                match a {
                    Attribute::Sensitive(v) => report.sensitive = v,
                    Attribute::Extractable(v) => report.extractable = v,
                    Attribute::NeverExtractable(v) => report.never_extractable = v,
                    Attribute::Token(v) => report.token_object = v,
                    Attribute::Local(v) => report.generated_in_token = v,
                    _ => {}
                }
            }
            // Ask for the raw value: a sensitive key's is withheld.
            report.value_readable = [AttributeType::Value, AttributeType::PrivateExponent]
                .into_iter()
                .any(|t| {
                    s.get_attributes(h, &[t]).is_ok_and(|v| {
                        v.iter().any(|a| {
                            matches!(a, Attribute::Value(_) | Attribute::PrivateExponent(_))
                        })
                    })
                });
            // Try to wrap it out under a throw-away session key.
            let wrapper = session_wrapping_key(s)?;
            let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, wrapper, h);
            report.wrap_refused = match &wrapped {
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            let _ = s.destroy_object(wrapper);
            Ok(report)
        })
    }
}

/// A snapshot of the token connection.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HsmStatus {
    /// The token's label.
    pub token: String,
    /// False after a call failed in a way that may mean the token went away, until a
    /// reconnection succeeds.
    pub up: bool,
    /// Logged-in sessions waiting in the pool.
    pub idle_sessions: usize,
    /// Sessions in use by a call.
    pub busy_sessions: usize,
}

/// What `arca hsm --key-version` prints.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyObjectReport {
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE.
    pub extractable: bool,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: bool,
    /// CKA_TOKEN: a persistent token object.
    pub token_object: bool,
    /// CKA_LOCAL: generated inside the token.
    pub generated_in_token: bool,
    /// Whether CKA_VALUE or CKA_PRIVATE_EXPONENT came back (they must not).
    pub value_readable: bool,
    /// The token's refusal to wrap the key out (`None` would mean it wrapped it).
    pub wrap_refused: Option<String>,
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = ctx.get_slots_with_token().map_err(unavailable)?;
    slots
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == label)
        })
        .ok_or_else(|| HsmError::Unavailable(format!("no token labelled {label:?}")))
}

/// The SEC1 point inside CKA_EC_POINT, which PKCS#11 defines as a DER OCTET STRING (some tokens
/// return the bare point).
fn ec_point(attr: &[u8]) -> &[u8] {
    match attr {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        bare => bare,
    }
}

/// The public key of the pair whose public object is `h`, as DER SubjectPublicKeyInfo.
fn public_der(s: &Session, h: ObjectHandle, spec: PairSpec) -> Result<Vec<u8>, HsmError> {
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
fn find(s: &Session, id: &[u8], part: Part) -> Result<ObjectHandle, HsmError> {
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
fn aes_template(token: bool) -> Vec<Attribute> {
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

/// CKA_VALUE_LEN of a secret key, when the token records it (SoftHSM2 leaves it 0 for
/// unwrapped keys).
fn value_len(s: &Session, h: ObjectHandle) -> Result<Option<usize>, HsmError> {
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
fn unwrapped_len(
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
fn session_wrapping_key(s: &Session) -> Result<ObjectHandle, HsmError> {
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
