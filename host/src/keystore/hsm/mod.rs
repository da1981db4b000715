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
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::crypto::aead::NONCE_LEN;
use crate::ids::KeyVersionId;
use crate::secret::{SecretBytes, SecretString};

mod import;
mod inspect;
mod keys;
mod mechanism;

pub use inspect::KeyObjectReport;
use keys::find;
use mechanism::Part;
pub use mechanism::{OaepHash, PairSpec, RsaPadding, SignMechanism, Unwrapping};

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

/// The domain's view of the token: each method is the inherent one of the file for its job
/// (`keys`, `import`, `inspect`).
impl crate::keystore::Token for Hsm {
    fn label(&self) -> &str {
        &self.label
    }

    /// The token's health and session use, for `/metrics` and `arca status`.
    fn status(&self) -> HsmStatus {
        HsmStatus {
            token: self.label.clone(),
            up: !self.broken.load(Ordering::Acquire),
            idle_sessions: self.sessions.lock().map_or(0, |p| p.len()),
            busy_sessions: self.busy.load(Ordering::Relaxed),
        }
    }

    fn generate_aes(&self, version: &KeyVersionId, bytes: usize) -> Result<(), HsmError> {
        Hsm::generate_aes(self, version, bytes)
    }

    fn generate_pair(
        &self,
        version: &KeyVersionId,
        spec: PairSpec,
        signing: bool,
    ) -> Result<(), HsmError> {
        Hsm::generate_pair(self, version, spec, signing)
    }

    fn public_key_der(&self, version: &KeyVersionId, spec: PairSpec) -> Result<Vec<u8>, HsmError> {
        Hsm::public_key_der(self, version, spec)
    }

    fn sign(
        &self,
        version: &KeyVersionId,
        mechanism: SignMechanism,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        Hsm::sign(self, version, mechanism, digest)
    }

    fn verify(
        &self,
        version: &KeyVersionId,
        mechanism: SignMechanism,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, HsmError> {
        Hsm::verify(self, version, mechanism, digest, signature)
    }

    fn rsa_encrypt(
        &self,
        version: &KeyVersionId,
        hash: OaepHash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        Hsm::rsa_encrypt(self, version, hash, plaintext)
    }

    fn rsa_decrypt(
        &self,
        version: &KeyVersionId,
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        Hsm::rsa_decrypt(self, version, hash, ciphertext)
    }

    fn gcm_seal(
        &self,
        version: &KeyVersionId,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        Hsm::gcm_seal(self, version, nonce, aad, plaintext)
    }

    fn gcm_open(
        &self,
        version: &KeyVersionId,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        Hsm::gcm_open(self, version, nonce, aad, sealed)
    }

    fn seal_root_key(&self, root: &[u8]) -> Result<Vec<u8>, HsmError> {
        Hsm::seal_root_key(self, root)
    }

    fn open_root_key(&self, blob: &[u8]) -> Result<SecretBytes, HsmError> {
        Hsm::open_root_key(self, blob)
    }

    fn destroy(&self, version: &KeyVersionId) -> Result<(), HsmError> {
        Hsm::destroy(self, version)
    }

    fn unwrappings(&self) -> Result<Vec<Unwrapping>, HsmError> {
        Hsm::unwrappings(self)
    }

    fn generate_wrapping_pair(&self, id: &str) -> Result<Vec<u8>, HsmError> {
        Hsm::generate_wrapping_pair(self, id)
    }

    fn destroy_wrapping_pair(&self, id: &str) -> Result<(), HsmError> {
        Hsm::destroy_wrapping_pair(self, id)
    }

    fn unwrap_aes(
        &self,
        wrapping_id: &str,
        how: Unwrapping,
        wrapped: &[u8],
        version: &KeyVersionId,
        bytes: usize,
    ) -> Result<Vec<u8>, HsmError> {
        Hsm::unwrap_aes(self, wrapping_id, how, wrapped, version, bytes)
    }

    fn inspect(&self, version: &KeyVersionId) -> Result<KeyObjectReport, HsmError> {
        Hsm::inspect(self, version)
    }
}
