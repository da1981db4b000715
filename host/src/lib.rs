//! Arca: an open-source Key Management Service.
//!
//! ```text
//! api (hyper, Alibaba RPC wire format, signatures)      ── the only layer that knows HTTP
//!  └─► kms (accounts, keys, versions, aliases, crypto)   ── the domain; typed ids in and out
//!       ├─► keystore (root key, sealing, SOFTWARE keys)
//!       │    └─► crypto (aws-lc-rs AES-GCM, RustCrypto SM4-GCM; pure)
//!       └─► store (trait Store; redb embedded)            ── the only layer that knows redb
//! plugin (wasmtime: rotators, SSE integrations, access policies; calls back into kms)
//! audit (append-only trail of every call)   clock (injected time)   secret (zeroizing types)
//! ```
//! [`serve`] is the library entry: `main.rs` parses the command line and calls it, and tests can
//! call it in-process.

pub mod admin;
pub mod api;
pub mod audit;
pub mod clock;
pub mod crypto;
pub mod dataplane;
pub mod error;
pub mod ids;
pub mod keystore;
pub mod kms;
pub mod metrics;
pub mod pki;
pub mod plugin;
pub mod rotation;
pub mod secret;
pub mod sse;
pub mod startup;
pub mod store;

pub use startup::{DataDir, ServeConfig, open};

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

/// How often scheduled rotations and deletions are looked for while serving.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The plugin side of serving.
#[derive(Debug)]
pub struct PluginSetup {
    /// The plugin host, its plugins already loaded.
    pub host: Arc<plugin::PluginHost>,
    /// The access policy plugin asked before every non-admin action, if any.
    pub access_policy: Option<String>,
    /// The access policy plugin that decides KMS-instance data-plane requests (client keys).
    pub aap_policy: String,
    /// Where new KMS instances' data planes listen.
    pub instance_host: std::net::IpAddr,
}

/// How the API is offered.
#[derive(Debug)]
pub struct Listeners {
    /// The API (the Alibaba RPC gateway).
    pub api: TcpListener,
    /// Serve the API over TLS only, with this acceptor (`--tls-cert`/`--tls-key`).
    pub tls: Option<api::tls::Acceptor>,
    /// `/metrics`, `/healthz`, `/readyz` and `/status`, if wanted.
    pub admin: Option<TcpListener>,
    /// How far a request's signed time may be from the server's clock; nonces are
    /// remembered this long (memory: eight bytes and some per request in the window).
    pub max_clock_skew: std::time::Duration,
    /// The host names (`Host`, with or without the port) the API answers to; empty: any.
    pub server_names: Vec<String>,
}

/// Serves the API for an opened data dir on `listener` until `shutdown` completes, running
/// the key maintenance sweep every [`SWEEP_INTERVAL`] meanwhile.
pub async fn serve(
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
    let dataplane = Arc::new(dataplane::DataPlane::new(
        Arc::clone(&dir.kms),
        Arc::clone(&plugins.host),
        dir.audit.clone(),
        plugins.aap_policy,
        plugins.instance_host,
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
        request_ids: api::RequestIds::default(),
        plugins: plugins.host,
        rotations,
        access_policy: plugins.access_policy,
        dataplane: Arc::clone(&dataplane),
        junk: api::junk::JunkBudget::default(),
        server_names,
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
        tokio::spawn(api::server::serve_http(l, None, service, async {
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
