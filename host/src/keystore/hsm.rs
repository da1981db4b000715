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
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
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
}

/// GCM tag length, bits.
const TAG_BITS: u64 = 128;
/// Sessions kept open for reuse.
const POOL: usize = 4;

/// An open token.
pub struct Hsm {
    ctx: Pkcs11,
    slot: Slot,
    pin: SecretString,
    label: String,
    sessions: Mutex<Vec<Session>>,
    handles: Mutex<HashMap<KeyVersionId, ObjectHandle>>,
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
            slot: find_slot(&ctx, &config.token_label)?,
            ctx,
            pin: config.pin,
            label: config.token_label,
            sessions: Mutex::new(Vec::new()),
            handles: Mutex::new(HashMap::new()),
        };
        let session = hsm.new_session()?;
        hsm.give_back(session);
        Ok(hsm)
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `f` on the blocking pool: PKCS#11 calls block.
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
        let slot = match self.ctx.open_rw_session(self.slot) {
            Ok(s) => return self.logged_in(s),
            Err(_) => find_slot(&self.ctx, &self.label)?,
        };
        let session = self.ctx.open_rw_session(slot).map_err(unavailable)?;
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
    /// input is dropped, not pooled, and cached handles are forgotten (the token may have been
    /// reset).
    fn with_session<T>(
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
            Err(HsmError::Rejected) => {
                self.give_back(session);
                Err(HsmError::Rejected)
            }
            Err(e) => {
                if let Ok(mut h) = self.handles.lock() {
                    h.clear();
                }
                Err(e)
            }
        }
    }

    fn handle(&self, session: &Session, version: &KeyVersionId) -> Result<ObjectHandle, HsmError> {
        if let Some(h) = self
            .handles
            .lock()
            .ok()
            .and_then(|m| m.get(version).copied())
        {
            return Ok(h);
        }
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Id(version.as_str().as_bytes().to_vec()),
            ])
            .map_err(unavailable)?;
        let h = *found
            .first()
            .ok_or_else(|| HsmError::Missing(version.to_string()))?;
        if let Ok(mut m) = self.handles.lock() {
            m.insert(version.clone(), h);
        }
        Ok(h)
    }

    /// Generates an AES key of `bytes` bytes for `version` in the token: a token object,
    /// private, sensitive, never extractable, usable only to encrypt and decrypt.
    pub fn generate_aes(&self, version: &KeyVersionId, bytes: usize) -> Result<(), HsmError> {
        let id = version.as_str().as_bytes().to_vec();
        self.with_session(|s| {
            let h = s
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen((bytes as u64).into()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Label(format!("arca:{version}").into_bytes()),
                        Attribute::Id(id),
                    ],
                )
                .map_err(unavailable)?;
            if let Ok(mut m) = self.handles.lock() {
                m.insert(version.clone(), h);
            }
            Ok(())
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
            let key = self.handle(s, version)?;
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(unavailable)?;
            s.encrypt(&Mechanism::AesGcm(params), key, plaintext)
                .map_err(unavailable)
        })
    }

    /// Opens ciphertext ‖ tag in the token. A tag that does not verify is [`HsmError::Rejected`]
    /// (SoftHSM reports it as CKR_GENERAL_ERROR, so any failure of the decrypt call itself
    /// counts as a rejection; the session stays usable).
    pub fn gcm_open(
        &self,
        version: &KeyVersionId,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        self.with_session(|s| {
            let key = self.handle(s, version)?;
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(unavailable)?;
            match s.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                Ok(p) => Ok(SecretBytes::new(p)),
                Err(CkError::Pkcs11(
                    RvError::GeneralError
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange,
                    _,
                )) => Err(HsmError::Rejected),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    /// Destroys `version`'s object (after its key's deletion window). Absent is fine.
    pub fn destroy(&self, version: &KeyVersionId) -> Result<(), HsmError> {
        self.with_session(|s| {
            match self.handle(s, version) {
                Ok(h) => s.destroy_object(h).map_err(unavailable)?,
                Err(HsmError::Missing(_)) => {}
                Err(e) => return Err(e),
            }
            if let Ok(mut m) = self.handles.lock() {
                m.remove(version);
            }
            Ok(())
        })
    }

    /// What the token says about `version`'s object, and whether its value can be read or
    /// wrapped out (it must not).
    pub fn inspect(&self, version: &KeyVersionId) -> Result<KeyObjectReport, HsmError> {
        self.with_session(|s| {
            let h = self.handle(s, version)?;
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
            report.value_readable = s
                .get_attributes(h, &[AttributeType::Value])
                .is_ok_and(|v| v.iter().any(|a| matches!(a, Attribute::Value(_))));
            // Try to wrap it out under a throw-away session key.
            let wrapper = s
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(32_u64.into()),
                        Attribute::Token(false),
                        Attribute::Wrap(true),
                    ],
                )
                .map_err(unavailable)?;
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
    /// Whether CKA_VALUE came back (it must not).
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
