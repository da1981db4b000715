//! The host interfaces plugins import. Each checks the plugin's grant before it acts: the
//! linker decides which interfaces a plugin has at all, these decide which keys, secrets,
//! connections and hosts.
//!
//! The double `Result`: the outer one traps the guest (it broke a documented rule), the inner
//! one is an error the guest sees and may handle.

use wasmtime::component::HasSelf;
use wasmtime::component::Linker;

use super::bindings::host::{access_keys, clock, http, kms, log, random, secrets, sql, types};
use super::manifest::{Capability, Manifest, pattern_match};
use super::state::PluginState;
use crate::crypto::asymmetric::SignAlgorithm;
use crate::ids::{KeyId, KeyRef, KeyVersionId, key_arn};
use crate::kms::envelope::EncryptionContext;
use crate::kms::{Caller, Error as KmsError};
use crate::secret::SecretBytes;

/// Longest log line kept.
const MAX_LOG_LINE: usize = 4096;
/// Most random bytes per call.
const MAX_RANDOM: u32 = 65536;
/// Longest error message a guest sees.
const MAX_ERROR_MESSAGE: usize = 1024;

/// Links the granted Arca interfaces and the harmless part of WASI into `linker`.
///
/// WASI: a std Rust guest imports `wasi:io`, `wasi:cli` (environment, exit, stdio) and often
/// `wasi:random` even when it never uses them; they are linked over an empty context (no
/// environment, no files, no sockets). `wasi:clocks` comes only with the `clock` capability;
/// `wasi:filesystem` and `wasi:sockets` are never linked.
pub(crate) fn link(linker: &mut Linker<PluginState>, manifest: &Manifest) -> wasmtime::Result<()> {
    link_wasi(linker, manifest.grants(Capability::Clock))?;
    types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    for capability in &manifest.capabilities {
        match capability {
            Capability::Log => log::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Random => random::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Clock => clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Kms => kms::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Secrets => secrets::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Sql => sql::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Http => http::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::AccessKeys => access_keys::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
        }
    }
    Ok(())
}

struct HasIo;
impl wasmtime::component::HasData for HasIo {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

fn link_wasi(l: &mut Linker<PluginState>, clocks: bool) -> wasmtime::Result<()> {
    use wasmtime_wasi::WasiView;
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks as wclocks, random as wrandom};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi_io::bindings::wasi::io;

    io::error::add_to_linker::<_, HasIo>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<_, HasIo>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<_, HasIo>(l, |t| t.ctx().table)?;
    cli::exit::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::environment::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::stdin::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::stdout::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::stderr::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, |t| t.cli())?;
    wrandom::random::add_to_linker::<_, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    wrandom::insecure::add_to_linker::<_, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    wrandom::insecure_seed::add_to_linker::<_, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    if clocks {
        wclocks::wall_clock::add_to_linker::<_, WasiClocks>(l, |t| t.clocks())?;
        wclocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, |t| t.clocks())?;
    }
    Ok(())
}

/// The WASI interfaces [`link_wasi`] provides, by import-name prefix (any version).
pub(crate) fn wasi_provided(name: &str, clocks: bool) -> bool {
    const ALWAYS: &[&str] = &[
        "wasi:io/error@",
        "wasi:io/poll@",
        "wasi:io/streams@",
        "wasi:cli/exit@",
        "wasi:cli/environment@",
        "wasi:cli/stdin@",
        "wasi:cli/stdout@",
        "wasi:cli/stderr@",
        "wasi:cli/terminal-input@",
        "wasi:cli/terminal-output@",
        "wasi:cli/terminal-stdin@",
        "wasi:cli/terminal-stdout@",
        "wasi:cli/terminal-stderr@",
        "wasi:random/random@",
        "wasi:random/insecure@",
        "wasi:random/insecure-seed@",
    ];
    const CLOCKS: &[&str] = &["wasi:clocks/wall-clock@", "wasi:clocks/monotonic-clock@"];
    ALWAYS.iter().any(|p| name.starts_with(p))
        || (clocks && CLOCKS.iter().any(|p| name.starts_with(p)))
}

pub(crate) fn error(kind: types::ErrorKind, message: impl Into<String>) -> types::Error {
    let mut message: String = message.into();
    truncate(&mut message, MAX_ERROR_MESSAGE);
    types::Error { kind, message }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// A domain error as a guest sees it. Messages are the domain's own (they never carry secrets).
fn from_kms(e: KmsError) -> types::Error {
    use types::ErrorKind as K;
    let kind = match &e {
        KmsError::KeyNotFound | KmsError::VersionNotFound | KmsError::AliasNotFound => K::NotFound,
        KmsError::InvalidParameter { .. }
        | KmsError::InvalidCiphertext
        | KmsError::Unsupported(_) => K::InvalidArgument,
        KmsError::KeyState(_) => K::Unavailable,
        KmsError::NoPermission => K::Denied,
        _ => K::Failed,
    };
    error(kind, e.to_string())
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, mut message: String) -> wasmtime::Result<()> {
        truncate(&mut message, MAX_LOG_LINE);
        let plugin = self.plugin.manifest.name.as_str();
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl random::Host for PluginState {
    async fn get_random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM {
            return Err(wasmtime::Error::new(super::call::HostRule(format!(
                "random: asked for {len} bytes, more than the {MAX_RANDOM} allowed"
            ))));
        }
        let mut buf = vec![0u8; len as usize];
        crate::crypto::fill_random(&mut buf);
        Ok(buf)
    }
}

impl clock::Host for PluginState {
    async fn now(&mut self) -> wasmtime::Result<types::Timestamp> {
        let now = self.plugin.services.kms.clock().now();
        Ok(types::Timestamp {
            seconds: now.unix_timestamp(),
            nanoseconds: now.nanosecond(),
        })
    }
}

impl PluginState {
    /// The caller a `kms` call acts as: the call's account, never an admin.
    fn kms_caller(&self, action: &str) -> Result<Caller, types::Error> {
        match &self.account {
            Some(account) => Ok(Caller {
                account: account.clone(),
                admin: false,
                action: action.to_string(),
                service: None,
            }),
            None => Err(error(
                types::ErrorKind::Denied,
                "this call acts for no account, so no key is available",
            )),
        }
    }

    /// Whether the key is in the grant: by the name the guest used, its id, its ARN, or an
    /// exact alias grant that resolves to it.
    fn key_granted(&self, caller: &Caller, named: &str, key_id: &KeyId) -> bool {
        let patterns = &self.plugin.manifest.grants.keys;
        let kms = &self.plugin.services.kms;
        pattern_match(patterns, named)
            || pattern_match(patterns, key_id.as_str())
            || pattern_match(patterns, &key_arn(kms.region(), &caller.account, key_id))
            || patterns
                .iter()
                .filter(|p| p.starts_with("alias/") && !p.ends_with('*'))
                .any(|p| {
                    p.parse::<KeyRef>()
                        .ok()
                        .and_then(|r| kms.resolve(caller, &r).ok())
                        .is_some_and(|k| &k.key_id == key_id)
                })
    }

    /// Resolves a key the guest names and checks the grant; a key outside the grant is
    /// reported as `denied` whether or not it exists.
    fn granted_key(&self, caller: &Caller, named: &str) -> Result<KeyRef, types::Error> {
        let key: KeyRef = named.parse().map_err(|_| {
            error(
                types::ErrorKind::InvalidArgument,
                format!("`{named}` is not a key id, ARN or alias"),
            )
        })?;
        let denied = || {
            error(
                types::ErrorKind::Denied,
                format!("key `{named}` is not granted to this plugin"),
            )
        };
        let record = self
            .plugin
            .services
            .kms
            .resolve(caller, &key)
            .map_err(|e| match e {
                KmsError::KeyNotFound | KmsError::AliasNotFound => denied(),
                other => from_kms(other),
            })?;
        if !self.key_granted(caller, named, &record.key_id) {
            return Err(denied());
        }
        Ok(KeyRef::Id(record.key_id))
    }
}

fn context(pairs: Vec<(String, String)>) -> EncryptionContext {
    EncryptionContext::from_pairs(pairs)
}

/// `?` for host functions: a guest-visible error returns `Ok(Err(e))` to the guest.
macro_rules! guest_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

impl kms::Host for PluginState {
    async fn encrypt(
        &mut self,
        key_id: String,
        plaintext: String,
        ctx: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        let plaintext = SecretBytes::new(plaintext.into_bytes());
        let caller = guest_try!(self.kms_caller("Encrypt"));
        let key = guest_try!(self.granted_key(&caller, &key_id));
        let kms = std::sync::Arc::clone(&self.plugin.services.kms);
        Ok(kms
            .encrypt(&caller, &key, &plaintext, &context(ctx))
            .await
            .map(|s| s.blob)
            .map_err(from_kms))
    }

    async fn decrypt(
        &mut self,
        blob: String,
        ctx: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        let caller = guest_try!(self.kms_caller("Decrypt"));
        let kms = std::sync::Arc::clone(&self.plugin.services.kms);
        // The grant is checked on the key inside the blob before anything is opened: checked
        // after, the answer (denied, or a decryption error) would tell a plugin whether a blob
        // of an ungranted key is valid under its context.
        let sealed_by = guest_try!(kms.key_of_blob(&caller, &blob).map_err(from_kms));
        let granted = sealed_by
            .as_ref()
            .is_some_and(|k| self.key_granted(&caller, k.key_id.as_str(), &k.key_id));
        if !granted {
            return Ok(Err(error(
                types::ErrorKind::Denied,
                "the key of this ciphertext is not granted to this plugin".to_owned(),
            )));
        }
        let opened = guest_try!(
            kms.decrypt(&caller, &blob, &context(ctx))
                .await
                .map_err(from_kms)
        );
        Ok(Ok(opened.plaintext.expose().to_string()))
    }

    async fn generate_data_key(
        &mut self,
        key_id: String,
        number_of_bytes: u32,
        ctx: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<kms::DataKey, types::Error>> {
        let caller = guest_try!(self.kms_caller("GenerateDataKey"));
        let key = guest_try!(self.granted_key(&caller, &key_id));
        let len = guest_try!(
            crate::kms::crypto_ops::DataKeyLen::bytes(number_of_bytes as usize).map_err(from_kms)
        );
        let kms = std::sync::Arc::clone(&self.plugin.services.kms);
        let dk = guest_try!(
            kms.generate_data_key(&caller, &key, len, &context(ctx))
                .await
                .map_err(from_kms)
        );
        Ok(Ok(kms::DataKey {
            key_id: dk.sealed.key_id.as_str().to_string(),
            key_version_id: dk.sealed.version.as_str().to_string(),
            plaintext: dk.plaintext_b64.expose().to_string(),
            ciphertext_blob: dk.sealed.blob,
        }))
    }

    async fn sign(
        &mut self,
        key_id: String,
        key_version_id: String,
        algorithm: String,
        digest: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, types::Error>> {
        let caller = guest_try!(self.kms_caller("AsymmetricSign"));
        let key = guest_try!(self.granted_key(&caller, &key_id));
        let version = guest_try!(parse_version(&key_version_id));
        let alg = guest_try!(sign_algorithm(&algorithm));
        let kms = &self.plugin.services.kms;
        Ok(kms
            .asymmetric_sign(&caller, &key, &version, alg, &digest)
            .await
            .map(|(_, s)| s)
            .map_err(from_kms))
    }

    async fn verify(
        &mut self,
        key_id: String,
        key_version_id: String,
        algorithm: String,
        digest: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        let caller = guest_try!(self.kms_caller("AsymmetricVerify"));
        let key = guest_try!(self.granted_key(&caller, &key_id));
        let version = guest_try!(parse_version(&key_version_id));
        let alg = guest_try!(sign_algorithm(&algorithm));
        let kms = &self.plugin.services.kms;
        Ok(kms
            .asymmetric_verify(&caller, &key, &version, alg, &digest, &signature)
            .await
            .map(|(_, ok)| ok)
            .map_err(from_kms))
    }
}

fn sign_algorithm(name: &str) -> Result<SignAlgorithm, types::Error> {
    SignAlgorithm::from_name(name).ok_or_else(|| {
        error(
            types::ErrorKind::InvalidArgument,
            format!("unknown algorithm `{name}`"),
        )
    })
}

fn parse_version(v: &str) -> Result<KeyVersionId, types::Error> {
    v.parse().map_err(|_| {
        error(
            types::ErrorKind::InvalidArgument,
            format!("`{v}` is not a key version id"),
        )
    })
}

impl secrets::Host for PluginState {
    async fn get_secret_value(
        &mut self,
        name: String,
        stage: Option<String>,
    ) -> wasmtime::Result<Result<types::SecretVersion, types::Error>> {
        if !pattern_match(&self.plugin.manifest.grants.secrets, &name) {
            return Ok(Err(error(
                types::ErrorKind::Denied,
                format!("secret `{name}` is not granted to this plugin"),
            )));
        }
        let caller = guest_try!(self.kms_caller("GetSecretValue"));
        let Ok(secret) = name.parse::<crate::ids::SecretName>() else {
            return Ok(Err(error(
                types::ErrorKind::InvalidArgument,
                format!("`{name}` is not a secret name"),
            )));
        };
        let kms = std::sync::Arc::clone(&self.plugin.services.kms);
        let read = kms
            .get_secret_value(
                &caller,
                &crate::ids::SecretRef::Name(secret),
                None,
                Some(stage.as_deref().unwrap_or("ACSCurrent")),
            )
            .await;
        Ok(match read {
            Ok(v) => {
                let value = match v.data_type {
                    crate::kms::secrets::DataType::Text => {
                        types::SecretData::Text(v.data.expose().to_owned())
                    }
                    crate::kms::secrets::DataType::Binary => {
                        use base64::Engine;
                        match base64::engine::general_purpose::STANDARD.decode(v.data.expose()) {
                            Ok(b) => types::SecretData::Binary(b),
                            Err(_) => {
                                return Ok(Err(error(
                                    types::ErrorKind::Failed,
                                    "stored binary value is malformed",
                                )));
                            }
                        }
                    }
                };
                Ok(types::SecretVersion {
                    version_id: v.version_id.to_string(),
                    stages: v.stages,
                    value,
                })
            }
            Err(crate::kms::Error::SecretNotFound | crate::kms::Error::SecretVersionNotFound) => {
                Err(error(
                    types::ErrorKind::NotFound,
                    format!("secret `{name}` has no such version"),
                ))
            }
            Err(e) => Err(error(types::ErrorKind::Unavailable, e.to_string())),
        })
    }
}

impl access_keys::Host for PluginState {
    async fn create(
        &mut self,
        account: String,
    ) -> wasmtime::Result<Result<access_keys::AccessKey, types::Error>> {
        let caller = guest_try!(self.kms_caller("ArcaCreateAccessKey"));
        let Ok(account) = account.parse::<crate::ids::AccountId>() else {
            return Ok(Err(error(
                types::ErrorKind::InvalidArgument,
                "not an account id",
            )));
        };
        Ok(
            match self
                .plugin
                .services
                .kms
                .rotate_in_access_key(&caller, &account)
                .await
            {
                Ok(k) => Ok(access_keys::AccessKey {
                    id: k.access_key_id.to_string(),
                    secret: k.secret.expose().to_owned(),
                }),
                Err(e) => Err(access_key_error(e)),
            },
        )
    }

    async fn retire(
        &mut self,
        account: String,
        id: String,
        after_seconds: u64,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let caller = guest_try!(self.kms_caller("ArcaRetireAccessKey"));
        let (account, id) = guest_try!(account_and_key(&account, &id));
        let kms = &self.plugin.services.kms;
        let at = kms
            .clock()
            .now()
            .unix_timestamp()
            .saturating_add_unsigned(after_seconds.min(366 * 86_400));
        Ok(kms
            .retire_access_key(&caller, &account, &id, at)
            .await
            .map_err(access_key_error))
    }

    async fn check(
        &mut self,
        account: String,
        id: String,
        secret: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let (account, id) = guest_try!(account_and_key(&account, &id));
        Ok(
            match self
                .plugin
                .services
                .kms
                .access_key_works(&account, &id, &secret)
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(error(
                    types::ErrorKind::Denied,
                    format!("AccessKey {id} does not work"),
                )),
                Err(e) => Err(access_key_error(e)),
            },
        )
    }
}

fn account_and_key(
    account: &str,
    id: &str,
) -> Result<(crate::ids::AccountId, crate::ids::AccessKeyId), types::Error> {
    match (account.parse(), id.parse()) {
        (Ok(account), Ok(id)) => Ok((account, id)),
        _ => Err(error(
            types::ErrorKind::InvalidArgument,
            "not an account id and AccessKey id",
        )),
    }
}

fn access_key_error(e: crate::kms::Error) -> types::Error {
    match e {
        crate::kms::Error::NoPermission => error(
            types::ErrorKind::Denied,
            "this rotation may manage only its own account's AccessKeys",
        ),
        crate::kms::Error::AccountNotFound => {
            error(types::ErrorKind::NotFound, "no such account or AccessKey")
        }
        other => error(types::ErrorKind::Unavailable, other.to_string()),
    }
}

impl sql::Host for PluginState {
    async fn execute(
        &mut self,
        connection: String,
        statement: String,
        params: Vec<sql::Value>,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        Ok(self
            .plugin
            .services
            .sql
            .execute(
                &self.plugin.manifest,
                self.account.as_ref(),
                &connection,
                &statement,
                params,
            )
            .await)
    }

    async fn query(
        &mut self,
        connection: String,
        statement: String,
        params: Vec<sql::Value>,
    ) -> wasmtime::Result<Result<sql::Rows, types::Error>> {
        Ok(self
            .plugin
            .services
            .sql
            .query(
                &self.plugin.manifest,
                self.account.as_ref(),
                &connection,
                &statement,
                params,
            )
            .await)
    }

    async fn check_login(
        &mut self,
        connection: String,
        user: String,
        password: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let password = crate::secret::SecretString::new(password);
        Ok(self
            .plugin
            .services
            .sql
            .check_login(
                &self.plugin.manifest,
                self.account.as_ref(),
                &connection,
                &user,
                &password,
            )
            .await)
    }

    async fn set_login_password(
        &mut self,
        connection: String,
        role: String,
        password: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let password = crate::secret::SecretString::new(password);
        Ok(self
            .plugin
            .services
            .sql
            .set_login_password(
                &self.plugin.manifest,
                self.account.as_ref(),
                &connection,
                &role,
                &password,
            )
            .await)
    }

    async fn create_login_role(
        &mut self,
        connection: String,
        role: String,
        password: String,
        member_of: Option<String>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let password = crate::secret::SecretString::new(password);
        Ok(self
            .plugin
            .services
            .sql
            .create_login_role(
                &self.plugin.manifest,
                self.account.as_ref(),
                &connection,
                &role,
                &password,
                member_of.as_deref(),
            )
            .await)
    }
}

impl http::Host for PluginState {
    async fn send(
        &mut self,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, types::Error>> {
        Ok(self
            .plugin
            .services
            .http
            .send(&self.plugin.manifest, req)
            .await)
    }
}
