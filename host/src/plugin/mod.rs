//! The plugin host: WebAssembly components that extend Arca (secret rotators, SSE
//! integrations, access policies), run under wasmtime with nothing but what they were granted.
//!
//! - **Loading** ([`PluginHost::load`]): every `<dir>/<name>/plugin.toml` names a component,
//!   its world, its capabilities and its limits. The component is compiled once and cached by
//!   content hash and engine fingerprint; its imports are checked against the grant (a
//!   capability it imports but was not granted fails the load, naming it); only the granted
//!   interfaces are linked; an `InstancePre` is kept for fast instantiation.
//! - **Calling** (`call.rs`): each call gets a store with memory and table limits, a wall-time
//!   deadline enforced by epochs (the guest yields every tick, so a spinning guest never holds
//!   a worker thread) and a per-plugin concurrency cap. Rotators and SSE integrations get a
//!   fresh instance per call (they see secrets, which must not outlive the call); access
//!   policies reuse instances (they are on every request's path and see no secrets).
//! - **Failures**: a trap, a timeout, a memory bomb or malformed output fails that one call
//!   with a [`PluginError`] and is counted; the host keeps serving.

mod bindings;
mod call;
mod engine;
mod http;
mod imports;
pub mod manifest;
pub mod scaffold;
mod sql;
mod state;

pub use call::{
    AccessRequest, AttachedPolicy, Decision, KeyChoice, KeyRequest, NetworkRule, Principal,
    PrincipalKind, Protection, RotationRequest, RotationStep, SecretData, SecretVersion,
    ServiceInfo,
};
pub use engine::CacheOutcome;
pub use manifest::{Capability, Manifest, World};
pub use sql::{SqlConnection, SqlConnections};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use wasmtime::component::{Component, Linker};

use crate::kms::Kms;
use engine::PluginEngine;
use state::PluginState;

/// Largest component file accepted.
const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// Why a plugin call (or load) failed. Messages are for operators and callers; they never
/// contain what the plugin was given.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    /// No plugin of that name is loaded.
    #[error("plugin `{0}` is not loaded")]
    NotLoaded(String),
    /// The plugin implements another world.
    #[error("plugin `{name}` is a {actual} plugin, not a {expected}")]
    WrongWorld {
        /// The plugin.
        name: String,
        /// What the caller needed.
        expected: World,
        /// What it is.
        actual: World,
    },
    /// All of the plugin's concurrency slots stayed busy until the call's deadline.
    #[error("plugin `{0}` is busy (all its concurrent calls are in use)")]
    Busy(String),
    /// The call ran past its wall-time limit.
    #[error("plugin `{name}` exceeded its time limit of {limit_ms} ms")]
    Timeout {
        /// The plugin.
        name: String,
        /// The limit.
        limit_ms: u64,
    },
    /// The guest tried to grow its memory past its limit.
    #[error("plugin `{name}` exceeded its memory limit of {limit_mib} MiB")]
    OutOfMemory {
        /// The plugin.
        name: String,
        /// The limit.
        limit_mib: usize,
    },
    /// The guest trapped (a panic, an unreachable, a stack overflow, a host rule broken).
    #[error("plugin `{name}` trapped: {detail}")]
    Trap {
        /// The plugin.
        name: String,
        /// What wasmtime and the guest's stderr said.
        detail: String,
    },
    /// The guest returned something the host does not accept (oversized, malformed).
    #[error("plugin `{name}` returned an invalid result: {detail}")]
    Invalid {
        /// The plugin.
        name: String,
        /// What was wrong.
        detail: String,
    },
    /// The guest reported an error of its own (`result::err`).
    #[error("plugin `{name}` failed ({kind}): {message}")]
    Failed {
        /// The plugin.
        name: String,
        /// The error kind the guest chose (`denied`, `not-found`, ...).
        kind: String,
        /// The guest's message (truncated).
        message: String,
    },
}

/// Call outcome counters of one plugin.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    calls: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    out_of_memory: AtomicU64,
    invalid: AtomicU64,
    busy: AtomicU64,
    instantiations: AtomicU64,
    cached: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CallStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that returned a result.
    pub ok: u64,
    /// Calls where the plugin reported an error of its own.
    pub errors: u64,
    /// Traps (panics, stack overflows, broken host rules).
    pub traps: u64,
    /// Calls past their time limit.
    pub timeouts: u64,
    /// Calls that hit the memory limit.
    pub out_of_memory: u64,
    /// Calls that returned malformed or oversized results.
    pub invalid: u64,
    /// Calls refused because the plugin was busy.
    pub busy: u64,
    /// Access-policy requests answered from the decision cache (not counted in `calls`).
    pub cached: u64,
    /// Instances created.
    pub instantiations: u64,
}

impl Stats {
    fn snapshot(&self) -> CallStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CallStats {
            calls: l(&self.calls),
            ok: l(&self.ok),
            errors: l(&self.errors),
            traps: l(&self.traps),
            timeouts: l(&self.timeouts),
            out_of_memory: l(&self.out_of_memory),
            invalid: l(&self.invalid),
            busy: l(&self.busy),
            cached: l(&self.cached),
            instantiations: l(&self.instantiations),
        }
    }

    fn count(&self, outcome: &Result<(), PluginError>) {
        let counter = match outcome {
            Ok(()) => &self.ok,
            Err(PluginError::Failed { .. }) => &self.errors,
            Err(PluginError::Timeout { .. }) => &self.timeouts,
            Err(PluginError::OutOfMemory { .. }) => &self.out_of_memory,
            Err(PluginError::Invalid { .. }) => &self.invalid,
            Err(PluginError::Busy(_)) => &self.busy,
            Err(_) => &self.traps,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the host offers plugins' imports.
#[derive(Debug)]
pub struct Services {
    /// Keys, for the `kms` and `clock` capabilities.
    pub kms: Arc<Kms>,
    /// Database connections, for the `sql` capability.
    pub sql: SqlConnections,
    /// Outbound HTTP, for the `http` capability.
    pub(crate) http: http::Egress,
}

impl Services {
    /// Services over `kms` with the operator's database connections.
    pub fn new(kms: Arc<Kms>, sql: SqlConnections) -> Self {
        Self {
            kms,
            sql,
            http: http::Egress::new(),
        }
    }
}

/// What a loaded plugin's calls share.
pub(crate) struct Shared {
    pub(crate) manifest: Manifest,
    pub(crate) services: Arc<Services>,
    pub(crate) stats: Stats,
}

/// A world's pre-linked component.
pub(crate) enum Pre {
    Rotator(bindings::rotator::RotatorPre<PluginState>),
    Sse(bindings::sse::SseIntegrationPre<PluginState>, ServiceInfo),
    Policy(bindings::policy::AccessPolicyPre<PluginState>),
}

/// A loaded plugin.
pub(crate) struct Loaded {
    pub(crate) shared: Arc<Shared>,
    pub(crate) pre: Pre,
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// Idle instances kept for reuse (access policies only).
    pub(crate) idle: Mutex<Vec<call::PolicyInstance>>,
    /// Recent decisions of a deterministic access policy (one granted no `clock`), by request.
    pub(crate) decisions: Option<call::DecisionCache>,
    info: ComponentInfo,
}

/// What `inspect` shows of a component.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComponentInfo {
    /// The component file.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the component bytes and engine fingerprint: the precompile cache key.
    pub cache_key: String,
    /// Whether the last load was served by the precompile cache.
    pub cache: String,
    /// What the component imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
}

/// One plugin as `list` and `inspect` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginSummary {
    /// The plugin's name.
    pub name: String,
    /// `loaded` or `failed`.
    pub status: String,
    /// The world.
    pub world: String,
    /// The version.
    pub version: String,
    /// Granted capabilities.
    pub capabilities: Vec<String>,
    /// Call counters.
    pub stats: CallStats,
    /// Why it failed to load (for `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Manifest file.
    pub manifest: String,
}

/// Everything `inspect` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: PluginSummary,
    /// The component.
    pub component: Option<ComponentInfo>,
    /// Grants inside the capabilities.
    pub grants: serde_json::Value,
    /// Limits per call.
    pub limits: serde_json::Value,
    /// For SSE integrations: what the plugin declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<serde_json::Value>,
}

/// The outcome of a (re)load.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadReport {
    /// Plugins loaded (name, cache hit or miss).
    pub loaded: Vec<String>,
    /// Manifests that failed, with why.
    pub failed: Vec<String>,
}

/// The plugin host.
pub struct PluginHost {
    engine: PluginEngine,
    dir: Option<PathBuf>,
    cache_dir: PathBuf,
    services: Arc<Services>,
    plugins: RwLock<Arc<BTreeMap<String, Arc<Loaded>>>>,
    failures: RwLock<BTreeMap<String, (String, PathBuf)>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host for the plugins under `dir` (none when `dir` is `None`), caching compiled
    /// components in `cache_dir`. Call [`PluginHost::load`] to load them.
    pub fn new(
        dir: Option<PathBuf>,
        cache_dir: PathBuf,
        services: Services,
    ) -> Result<Self, String> {
        let engine = PluginEngine::new().map_err(|e| format!("plugin engine: {e}"))?;
        Ok(Self {
            engine,
            dir,
            cache_dir,
            services: Arc::new(services),
            plugins: RwLock::new(Arc::default()),
            failures: RwLock::default(),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The plugins directory.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// (Re)loads every plugin in the directory. A plugin that fails to load keeps its
    /// previously loaded version, if any, and is reported.
    pub async fn load(self: &Arc<Self>) -> LoadReport {
        let _one_at_a_time = self.reload_lock.lock().await;
        let mut report = LoadReport::default();
        let Some(dir) = self.dir.clone() else {
            return report;
        };
        let manifests = match manifests_in(&dir) {
            Ok(m) => m,
            Err(e) => {
                report.failed.push(format!("{}: {e}", dir.display()));
                return report;
            }
        };
        let current = self.snapshot();
        let mut next = BTreeMap::new();
        let mut failures = BTreeMap::new();
        for path in manifests {
            let host = Arc::clone(self);
            let p = path.clone();
            let loaded = tokio::task::spawn_blocking(move || host.load_one(&p))
                .await
                .unwrap_or_else(|e| Err(("?".into(), format!("loader crashed: {e}"))));
            match loaded {
                Ok(plugin) => {
                    let name = plugin.shared.manifest.name.clone();
                    if next.contains_key(&name) {
                        report.failed.push(format!(
                            "{}: a plugin named `{name}` is already loaded",
                            path.display()
                        ));
                        continue;
                    }
                    tracing::info!(plugin = %name, world = %plugin.shared.manifest.world, cache = %plugin.info.cache, "plugin loaded");
                    report
                        .loaded
                        .push(format!("{name} ({})", plugin.info.cache));
                    next.insert(name, Arc::new(plugin));
                }
                Err((name, e)) => {
                    tracing::error!(manifest = %path.display(), error = %e, "plugin failed to load");
                    report.failed.push(format!("{}: {e}", path.display()));
                    if let Some(old) = current.get(&name).filter(|_| !next.contains_key(&name)) {
                        next.insert(name.clone(), Arc::clone(old));
                    }
                    failures.insert(name, (e, path.clone()));
                }
            }
        }
        if let Ok(mut plugins) = self.plugins.write() {
            *plugins = Arc::new(next);
        }
        if let Ok(mut f) = self.failures.write() {
            *f = failures;
        }
        report
    }

    fn snapshot(&self) -> Arc<BTreeMap<String, Arc<Loaded>>> {
        self.plugins
            .read()
            .map(|p| Arc::clone(&p))
            .unwrap_or_default()
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<Loaded>, PluginError> {
        self.snapshot()
            .get(name)
            .cloned()
            .ok_or_else(|| PluginError::NotLoaded(name.to_string()))
    }

    /// Whether a plugin of this name and world is loaded.
    pub fn has(&self, name: &str, world: World) -> bool {
        self.get(name)
            .is_ok_and(|p| p.shared.manifest.world == world)
    }

    /// Whether `name` is a loaded rotator meant for secrets of `secret_type` (its manifest's
    /// `secret-types`).
    pub fn rotates(&self, name: &str, secret_type: &str) -> bool {
        self.get(name).is_ok_and(|p| {
            p.shared.manifest.world == World::Rotator
                && p.shared
                    .manifest
                    .secret_types
                    .iter()
                    .any(|t| t == secret_type)
        })
    }

    /// Every plugin: the loaded ones and the ones that failed.
    pub fn list(&self) -> Vec<PluginSummary> {
        let mut out: Vec<PluginSummary> = self.snapshot().values().map(|p| p.summary()).collect();
        if let Ok(failures) = self.failures.read() {
            for (name, (error, path)) in failures.iter() {
                if let Some(s) = out.iter_mut().find(|s| &s.name == name) {
                    s.error = Some(format!(
                        "reload failed, previous version still serving: {error}"
                    ));
                    continue;
                }
                out.push(PluginSummary {
                    name: name.clone(),
                    status: "failed".into(),
                    world: String::new(),
                    version: String::new(),
                    capabilities: vec![],
                    stats: CallStats::default(),
                    error: Some(error.clone()),
                    manifest: path.display().to_string(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One plugin in detail.
    pub fn inspect(&self, name: &str) -> Option<PluginDetail> {
        if let Ok(p) = self.get(name) {
            let m = &p.shared.manifest;
            return Some(PluginDetail {
                summary: p.summary(),
                component: Some(p.info.clone()),
                grants: serde_json::json!({
                    "Keys": m.grants.keys, "Secrets": m.grants.secrets,
                    "SqlConnections": m.grants.sql_connections, "HttpHosts": m.grants.http_hosts,
                }),
                limits: serde_json::json!({
                    "MemoryMiB": m.limits.memory_bytes >> 20,
                    "TimeMs": m.limits.time.as_millis() as u64,
                    "Concurrency": m.limits.concurrency,
                }),
                service: match &p.pre {
                    Pre::Sse(_, info) => Some(serde_json::json!({
                        "ServiceCode": info.service_code, "Description": info.description,
                        "AllowCustomerKeys": info.allow_customer_keys,
                    })),
                    _ => None,
                },
            });
        }
        self.list()
            .into_iter()
            .find(|s| s.name == name)
            .map(|summary| PluginDetail {
                summary,
                component: None,
                grants: serde_json::Value::Null,
                limits: serde_json::Value::Null,
                service: None,
            })
    }

    /// Loads one manifest: compile (cached), check imports against the grant, link, pre-instantiate.
    /// Errors carry the plugin's name (or the manifest's directory name) for the report.
    fn load_one(&self, manifest_path: &Path) -> Result<Loaded, (String, String)> {
        let fallback = manifest_path
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let manifest = Manifest::load(manifest_path).map_err(|e| (fallback, e))?;
        let name = manifest.name.clone();
        let fail = |e: String| (name.clone(), e);
        let size = std::fs::metadata(&manifest.component)
            .map_err(|e| {
                fail(format!(
                    "component {}: {e} (build the shipped plugins with plugins/build.sh)",
                    manifest.component.display()
                ))
            })?
            .len();
        if size > MAX_COMPONENT_BYTES {
            return Err(fail(format!(
                "component is {size} bytes, more than the {MAX_COMPONENT_BYTES} allowed"
            )));
        }
        let wasm = std::fs::read(&manifest.component)
            .map_err(|e| fail(format!("component {}: {e}", manifest.component.display())))?;
        if let Some(pinned) = &manifest.component_sha256 {
            let actual = crate::crypto::sha256_hex(&wasm);
            if actual != *pinned {
                return Err(fail(format!(
                    "component {} has SHA-256 {actual}, but the manifest pins {pinned}",
                    manifest.component.display()
                )));
            }
        }
        let (component, outcome, cache_key) = self
            .engine
            .compile_cached(&wasm, &self.cache_dir)
            .map_err(|e| fail(format!("not a valid component: {e:#}")))?;
        let (imports, exports) = self.check_interface(&manifest, &component).map_err(fail)?;
        let mut linker = Linker::<PluginState>::new(&self.engine.engine);
        imports::link(&mut linker, &manifest).map_err(|e| fail(format!("linking: {e}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| fail(format!("linking: {e}")))?;
        let not_world = |e: wasmtime::Error| {
            fail(format!(
                "does not implement the {} world of arca:plugin@0.1.0: {e}",
                manifest.world
            ))
        };
        let shared = Arc::new(Shared {
            manifest: manifest.clone(),
            services: Arc::clone(&self.services),
            stats: Stats::default(),
        });
        let pre = match manifest.world {
            World::Rotator => {
                Pre::Rotator(bindings::rotator::RotatorPre::new(instance_pre).map_err(not_world)?)
            }
            World::AccessPolicy => Pre::Policy(
                bindings::policy::AccessPolicyPre::new(instance_pre).map_err(not_world)?,
            ),
            World::SseIntegration => {
                let pre = bindings::sse::SseIntegrationPre::new(instance_pre).map_err(not_world)?;
                let info = call::describe_blocking(&self.engine, &shared, &pre)
                    .map_err(|e| fail(e.to_string()))?;
                Pre::Sse(pre, info)
            }
        };
        Ok(Loaded {
            permits: Arc::new(tokio::sync::Semaphore::new(manifest.limits.concurrency)),
            idle: Mutex::new(Vec::new()),
            decisions: (manifest.world == World::AccessPolicy
                && !manifest.grants(Capability::Clock))
            .then(call::DecisionCache::default),
            info: ComponentInfo {
                path: manifest.component.display().to_string(),
                size,
                cache_key,
                cache: match outcome {
                    CacheOutcome::Hit => "hit".into(),
                    CacheOutcome::Miss => "miss".into(),
                },
                imports,
                exports,
            },
            shared,
            pre,
        })
    }

    /// Checks every import of the component against the world and the grant, so that a
    /// plugin asking for more than it was given fails here, by name, not at its first call.
    fn check_interface(
        &self,
        manifest: &Manifest,
        component: &Component,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let engine = &self.engine.engine;
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        for name in &imports {
            if let Some(rest) = name.strip_prefix("arca:plugin/") {
                let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
                if version != "0.1.0" {
                    return Err(format!(
                        "imports `{name}`: this host implements arca:plugin@0.1.0"
                    ));
                }
                if iface == "types" {
                    continue;
                }
                let capability: Capability = iface.parse().map_err(|_| {
                    format!("imports `{name}`, which arca:plugin@0.1.0 does not define")
                })?;
                if !manifest.world.allowed().contains(&capability) {
                    return Err(format!(
                        "imports `{name}`, which the {} world does not offer",
                        manifest.world
                    ));
                }
                if !manifest.grants(capability) {
                    return Err(format!(
                        "imports `{name}` but its manifest does not grant the `{capability}` capability"
                    ));
                }
            } else if name.starts_with("wasi:clocks/") && !manifest.grants(Capability::Clock) {
                return Err(format!(
                    "imports `{name}` but its manifest does not grant the `clock` capability"
                ));
            } else if !imports::wasi_provided(name, manifest.grants(Capability::Clock)) {
                return Err(format!(
                    "imports `{name}`, which Arca never provides to plugins"
                ));
            }
        }
        Ok((imports, exports))
    }
}

impl Loaded {
    fn summary(&self) -> PluginSummary {
        let m = &self.shared.manifest;
        PluginSummary {
            name: m.name.clone(),
            status: "loaded".into(),
            world: m.world.to_string(),
            version: m.version.clone(),
            capabilities: m.capabilities.iter().map(|c| c.to_string()).collect(),
            stats: self.shared.stats.snapshot(),
            error: None,
            manifest: m.path.display().to_string(),
        }
    }
}

/// `<dir>/*/plugin.toml`, sorted.
fn manifests_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path().join("plugin.toml");
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
