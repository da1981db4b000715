//! Serving, as one library call: [`Server::start`] opens everything a [`Config`] names (the
//! HSM, the data directory, the plugins, the listeners) and serves until [`Server::stop`];
//! [`serve`] does both around a shutdown signal. The `arca` binary (`src/bin/arca/`) is only the
//! command line around it, and tests start servers in-process with it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::keystore::Token;
use crate::keystore::hsm::{Hsm, HsmConfig};
use crate::plugin::{PluginHost, Services, SqlConnections, World};
use crate::secret::SecretString;
use crate::startup::{DataDir, RootKeySource, ServeConfig};
use crate::{admin, api, dataplane, rotation};

/// How often scheduled rotations and deletions are looked for while serving.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The HSM cannot be opened, or its PIN cannot be read.
    #[error("HSM: {0}")]
    Hsm(String),
    /// The data directory cannot be opened (root key, store, audit trail).
    #[error("cannot open the data directory: {0}")]
    DataDir(#[from] crate::startup::StartupError),
    /// The plugins directory is unusable, or the access policy did not load.
    #[error("plugins: {0}")]
    Plugins(String),
    /// A listener cannot be bound.
    #[error("cannot listen on {addr} ({what}): {error}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Where the RPC gateway listens (the bound port when the config asked for port 0).
    pub api_addr: SocketAddr,
    /// Where `/metrics` and `/status` are served, if they are.
    pub admin_addr: Option<SocketAddr>,
    /// The admin credentials written at first start.
    pub credentials: PathBuf,
    /// Whether the gateway speaks HTTPS.
    pub tls: bool,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens everything `config` names and starts serving; returns once the listeners are
    /// bound.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        config.check()?;
        // Read before anything else, so that a wrong file fails the start at once.
        let tls = tls_acceptor(&config.api)?;
        let hsm: Option<Arc<dyn Token>> = open_hsm(&config.hsm)
            .await?
            .map(|h| Arc::new(h) as Arc<dyn Token>);
        let root_key = match &hsm {
            Some(hsm) if config.root_key.hsm => RootKeySource::Hsm(Arc::clone(hsm)),
            _ => root_key_source(config.root_key.file.clone()),
        };
        let dir = crate::startup::open(ServeConfig {
            data_dir: config.data_dir.clone(),
            region: config.region.clone(),
            root_key,
        })
        .await?;
        if let Some(hsm) = hsm {
            tracing::info!(
                token = hsm.label(),
                "HSM token ready for ProtectionLevel=HSM keys"
            );
            dir.kms.attach_hsm(hsm);
        }
        let plugins = load_plugins(&dir, config).await?;
        let api = bind("the API", config.api.listen).await?;
        let api_addr = local_addr("the API", &api, config.api.listen)?;
        if tls.is_none() && !api_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %api_addr,
                "serving the API over plain HTTP on a non-loopback address: signatures protect \
                 requests, but plaintexts, data keys and secret values cross the network in the \
                 clear; set api.tls-cert and api.tls-key (--tls-cert, --tls-key), or use a TLS proxy"
            );
        }
        let admin = match config.admin.listen {
            Some(addr) => Some(bind("admin.listen", addr).await?),
            None => None,
        };
        let admin_addr = match &admin {
            Some(l) => Some(local_addr("admin.listen", l, config.api.listen)?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(
            endpoint = %format!("{scheme}://{api_addr}"),
            region = config.region,
            admin = %admin_addr.map(|a| format!("http://{a}")).unwrap_or_else(|| "(off)".into()),
            credentials = %dir.credentials_path.display(),
            "Arca is serving; admin credentials are in the credentials file"
        );
        let credentials = dir.credentials_path.clone();
        let listeners = Listeners {
            api,
            tls: tls.clone(),
            admin,
            max_clock_skew: std::time::Duration::from_secs(config.api.max_clock_skew),
            server_names: config.api.server_names.clone(),
            limits: config.limits,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(dir, plugins, listeners, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            api_addr,
            admin_addr,
            credentials,
            tls: tls.is_some(),
            stop,
            task,
        })
    }

    /// Stops accepting, lets in-flight requests finish (up to `limits.shutdown-grace`), and
    /// seals the audit trail's tail.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the server task ended abnormally");
        }
    }
}

/// Serves `config` until `shutdown` completes.
pub async fn serve(config: &Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let server = Server::start(config).await?;
    shutdown.await;
    server.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// The TLS acceptor for `api.tls-cert`/`api.tls-key`, when they are set.
pub fn tls_acceptor(api: &config::Api) -> Result<Option<api::tls::Acceptor>, StartError> {
    match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => api::tls::acceptor_from_pem(cert, key)
            .map(Some)
            .map_err(StartError::Tls),
        _ => Ok(None),
    }
}

/// The HSM PIN, from `pin-file` or the variable `pin-env` names; never from a setting's value
/// (settings and flags show in files and `ps`).
pub fn hsm_pin(hsm: &config::Hsm) -> Result<SecretString, StartError> {
    match &hsm.pin_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|pin| SecretString::new(pin.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|e| {
                StartError::Hsm(format!("cannot read the PIN file {}: {e}", path.display()))
            }),
        None => std::env::var(&hsm.pin_env)
            .map(SecretString::new)
            .map_err(|_| {
                StartError::Hsm(format!(
                    "the HSM needs a PIN: set {} or hsm.pin-file (--hsm-pin-file)",
                    hsm.pin_env
                ))
            }),
    }
}

/// Opens the token, when one is configured, on a blocking thread (module loading and login
/// block).
pub async fn open_hsm(hsm: &config::Hsm) -> Result<Option<Hsm>, StartError> {
    let (Some(module), Some(token_label)) = (hsm.module.clone(), hsm.token.clone()) else {
        return Ok(None);
    };
    let pin = hsm_pin(hsm)?;
    let config = HsmConfig {
        module,
        token_label,
        pin,
    };
    tokio::task::spawn_blocking(move || Hsm::open(config))
        .await
        .map_err(|e| StartError::Hsm(e.to_string()))?
        .map(Some)
        .map_err(|e| StartError::Hsm(format!("cannot open the HSM: {e}")))
}

/// `root-key.file`, else `ARCA_ROOT_KEY`, else `DATA_DIR/root.key`.
pub fn root_key_source(file: Option<PathBuf>) -> RootKeySource {
    match (file, std::env::var("ARCA_ROOT_KEY")) {
        (Some(path), _) => RootKeySource::File(path),
        (None, Ok(text)) => RootKeySource::Env(SecretString::new(text)),
        (None, Err(_)) => RootKeySource::DataDir,
    }
}

/// The plugins directory: the setting, else `./plugins` when it exists.
pub fn plugins_dir(config: &Config) -> Option<PathBuf> {
    config.plugins_dir.clone().or_else(|| {
        let default = PathBuf::from("plugins");
        default.is_dir().then_some(default)
    })
}

/// The plugin side of serving.
#[derive(Debug)]
pub struct PluginSetup {
    /// The plugin host, its plugins already loaded.
    pub host: Arc<PluginHost>,
    /// The access policy plugin asked before every non-admin action, if any.
    pub access_policy: Option<String>,
    /// The access policy plugin that decides KMS-instance data-plane requests (client keys).
    pub aap_policy: String,
    /// Where new KMS instances' data planes listen.
    pub instance_host: std::net::IpAddr,
}

/// Loads the plugins directory. A plugin that fails to load is logged and listed, and the
/// server starts without it, unless it is the access policy: access control must never
/// silently switch off.
async fn load_plugins(dir: &DataDir, config: &Config) -> Result<PluginSetup, StartError> {
    let plugins_dir = plugins_dir(config);
    let sql = match &plugins_dir {
        Some(d) => {
            SqlConnections::load(&d.join("connections.toml")).map_err(StartError::Plugins)?
        }
        None => SqlConnections::none(),
    };
    let services = Services::new(Arc::clone(&dir.kms), sql);
    let cache_dir = config.data_dir.join("plugin-cache");
    let host = Arc::new(
        PluginHost::new(plugins_dir.clone(), cache_dir, services).map_err(StartError::Plugins)?,
    );
    let report = host.load().await;
    tracing::info!(
        dir = %plugins_dir.as_deref().map(|d| d.display().to_string()).unwrap_or_else(|| "(none)".into()),
        loaded = report.loaded.len(),
        failed = report.failed.len(),
        "plugins"
    );
    if let Some(name) = &config.access_policy
        && !host.has(name, World::AccessPolicy)
    {
        return Err(StartError::Plugins(format!(
            "access-policy {name}: no access-policy plugin of that name loaded ({})",
            report.failed.join("; ")
        )));
    }
    let aap_policy = config.instances.aap_policy.clone();
    if !host.has(&aap_policy, World::AccessPolicy) {
        // Instance data planes fail closed (503) until the policy is loaded.
        tracing::warn!(
            policy = %aap_policy,
            "no access-policy plugin of that name: KMS instance data planes will refuse client keys"
        );
    }
    Ok(PluginSetup {
        host,
        access_policy: config.access_policy.clone(),
        aap_policy,
        instance_host: config.instances.host,
    })
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Listen { what, addr, error })
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    asked: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|error| StartError::Listen {
        what,
        addr: asked,
        error,
    })
}

/// How the API is offered.
#[derive(Debug)]
pub struct Listeners {
    /// The API (the Alibaba RPC gateway).
    pub api: TcpListener,
    /// Serve the API over TLS only, with this acceptor.
    pub tls: Option<api::tls::Acceptor>,
    /// `/metrics`, `/healthz`, `/readyz` and `/status`, if wanted.
    pub admin: Option<TcpListener>,
    /// How far a request's signed time may be from the server's clock; nonces are
    /// remembered this long (memory: eight bytes and some per request in the window).
    pub max_clock_skew: std::time::Duration,
    /// The host names (`Host`, with or without the port) the API answers to; empty: any.
    pub server_names: Vec<String>,
    /// Bounds on requests and connections.
    pub limits: config::Limits,
}

/// Serves the API for an opened data dir until `shutdown` completes, running the key
/// maintenance sweep every [`SWEEP_INTERVAL`] meanwhile.
pub async fn run(
    dir: DataDir,
    plugins: PluginSetup,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let Listeners {
        api: listener,
        tls,
        admin: admin_listener,
        max_clock_skew,
        server_names,
        limits,
    } = listeners;
    let kms = Arc::clone(&dir.kms);
    let rotations = Arc::new(
        rotation::Rotations::new(Arc::clone(&dir.kms), Arc::clone(&plugins.host))
            .with_audit(dir.audit.clone()),
    );
    let engine = Arc::clone(&rotations);
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.tick().await; // start-up already swept
        loop {
            tick.tick().await;
            if let Err(e) = kms.sweep().await {
                tracing::error!(error = %e, "key maintenance sweep failed");
            }
            // Scheduled secret rotations, and interrupted ones whose back-off has passed.
            if let Err(e) = engine.sweep().await {
                tracing::error!(error = %e, "secret rotation sweep failed");
            }
        }
    });
    // One source of request ids for both edges: every id a client sees is unique per process.
    let request_ids = Arc::new(api::RequestIds::default());
    let dataplane = Arc::new(dataplane::DataPlane::new(
        Arc::clone(&dir.kms),
        Arc::clone(&plugins.host),
        dir.audit.clone(),
        plugins.aap_policy,
        plugins.instance_host,
        limits,
        Arc::clone(&request_ids),
    ));
    if let Err(e) = dataplane.start_all().await {
        tracing::error!(error = %e, "cannot start the KMS instances' data planes");
    }
    let started = dir.kms.clock().now();
    let app = Arc::new(api::App {
        kms: dir.kms,
        nonces: api::auth::NonceCache::with_journal(
            i64::try_from(max_clock_skew.as_secs()).unwrap_or(i64::MAX),
            dir.replay_journal,
            started,
        ),
        audit: dir.audit,
        request_ids,
        plugins: plugins.host,
        rotations,
        access_policy: plugins.access_policy,
        dataplane: Arc::clone(&dataplane),
        junk: api::junk::JunkBudget::default(),
        server_names,
        limits,
    });
    let admin = Arc::new(admin::Admin::new(Arc::clone(&app)));
    // The admin listener outlives the API's drain, so probes see the server go unready.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = admin_listener.map(|l| {
        let admin = Arc::clone(&admin);
        let service = move |req, _peer| {
            let admin = Arc::clone(&admin);
            async move { admin::handle(&admin, req).await }
        };
        tokio::spawn(api::server::serve_http(l, None, limits, service, async {
            let _ = admin_stopped.await;
        }))
    });
    admin.set_serving(true);
    let api_shutdown = {
        let admin = Arc::clone(&admin);
        async move {
            shutdown.await;
            admin.set_serving(false);
        }
    };
    api::server::run(listener, tls, app.clone(), api_shutdown).await;
    let _ = admin_stop.send(());
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    dataplane.stop_all();
    // Seal what the last requests wrote, so a clean stop leaves no unsealed tail.
    if let Err(e) = app.audit.seal_now() {
        tracing::error!(error = %e, "final audit seal failed");
    }
    sweeper.abort();
}
