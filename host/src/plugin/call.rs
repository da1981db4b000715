//! Calling plugins: one bounded call at a time, and the typed faces of the three worlds.
//!
//! Every call: a concurrency permit (waiting at most until the call's deadline), a store with
//! memory/table limits and an epoch deadline that yields to tokio every tick, the whole call
//! (instantiation included) under the manifest's wall-time limit, and a failure classified
//! into a [`PluginError`] and counted.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;
use wasmtime::Store;

use super::bindings;
use super::engine::PluginEngine;
use super::state::PluginState;
use super::{Loaded, PluginError, PluginHost, Pre, Shared, World};
use crate::ids::AccountId;

pub use bindings::policy::exports::arca::plugin::policy::{
    AttachedPolicy, Decision, NetworkRule, Principal, PrincipalKind, Request as AccessRequest,
};
pub use bindings::rotator::arca::plugin::types::{SecretData, SecretVersion};
pub use bindings::rotator::exports::arca::plugin::rotation::RotationRequest;
pub use bindings::sse::exports::arca::plugin::integration::{
    KeyChoice, KeyRequest, Protection, ServiceInfo,
};

/// Largest string or list a plugin may return in any field (beyond it: `Invalid`).
const MAX_RESULT_BYTES: usize = 1 << 20;
/// An instance reused this many times is retired (bounds what a leaky guest can accumulate).
const MAX_REUSE: u32 = 10_000;

/// The four rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// Make the new value.
    CreatePending,
    /// Set it in the target system.
    SetPending,
    /// Test it there.
    TestPending,
    /// Clean up before the stages move.
    Finish,
}

/// How many distinct requests a policy's decision cache holds before it starts over.
const DECISION_CACHE_ENTRIES: usize = 4096;

/// Recent decisions of one loaded access policy, by the whole request.
///
/// A policy that is not granted `clock` sees nothing but its request (no clock, no files, no
/// network; `random` is not offered to the world), so the same request gets the same answer:
/// the host answers a repeat from here instead of calling the plugin again. Only answers are
/// kept, never failures. The cache lives with the loaded plugin, so a reload starts afresh; it
/// is bounded, and cleared when full (the working set of (principal, action, resource, source)
/// is small in practice, and a miss costs one plugin call).
#[derive(Default)]
pub(crate) struct DecisionCache(
    std::sync::Mutex<std::collections::HashMap<AccessRequest, Decision>>,
);

impl DecisionCache {
    fn get(&self, req: &AccessRequest) -> Option<Decision> {
        self.0.lock().ok()?.get(req).cloned()
    }

    fn put(&self, req: &AccessRequest, decision: &Decision) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= DECISION_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(req.clone(), decision.clone());
        }
    }
}

/// An idle access-policy instance kept for reuse.
pub(crate) struct PolicyInstance {
    store: Store<PluginState>,
    bindings: bindings::policy::AccessPolicy,
    uses: u32,
}

fn new_store(
    engine: &wasmtime::Engine,
    shared: &Arc<Shared>,
    account: Option<AccountId>,
) -> Store<PluginState> {
    shared.stats.instantiations.fetch_add(1, Ordering::Relaxed);
    let mut store = Store::new(engine, PluginState::new(Arc::clone(shared), account));
    store.limiter(|s| &mut s.limits);
    // At every epoch tick: past the call's deadline, interrupt the guest; otherwise yield to
    // the runtime, so a spinning guest never holds a worker thread for more than a tick. No
    // timer is armed per call: a call that finishes within a tick costs nothing here.
    store.epoch_deadline_callback(|ctx| {
        if std::time::Instant::now() >= ctx.data().deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
    arm(&mut store);
    store
}

/// Starts a call: a fresh deadline, and the next tick.
fn arm(store: &mut Store<PluginState>) {
    let limit = store.data().plugin.manifest.limits.time;
    store.data_mut().deadline = std::time::Instant::now() + limit;
    store.set_epoch_deadline(1);
}

/// Turns a wasmtime failure into a [`PluginError`], with the guest's stderr (its panic
/// message) when it left one.
fn classify(shared: &Shared, e: wasmtime::Error, stderr: String) -> PluginError {
    let name = shared.manifest.name.clone();
    let text = format!("{e:#}");
    if text.contains("growing memory") || text.contains("memory minimum size") {
        return PluginError::OutOfMemory {
            name,
            limit_mib: shared.manifest.limits.memory_bytes >> 20,
        };
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let detail = match trap {
            wasmtime::Trap::StackOverflow => "stack overflow (recursion too deep)".to_string(),
            wasmtime::Trap::Interrupt => {
                return PluginError::Timeout {
                    name,
                    limit_ms: shared.manifest.limits.time.as_millis() as u64,
                };
            }
            other => other.to_string(),
        };
        let detail = if stderr.is_empty() {
            detail
        } else {
            format!("{detail}; stderr: {}", clip(&stderr, 512))
        };
        return PluginError::Trap { name, detail };
    }
    if let Some(rule) = e.downcast_ref::<HostRule>() {
        return PluginError::Trap {
            name,
            detail: rule.0.clone(),
        };
    }
    // Lifting failures: strings that are not UTF-8, pointers out of bounds, bad discriminants.
    let detail = if stderr.is_empty() {
        clip(&text, 512)
    } else {
        format!("{}; stderr: {}", clip(&text, 512), clip(&stderr, 512))
    };
    PluginError::Invalid { name, detail }
}

/// A host rule the guest broke (a trap raised by a host import).
#[derive(Debug)]
pub(crate) struct HostRule(pub(crate) String);

impl std::fmt::Display for HostRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostRule {}

fn clip(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_string()
}

fn failed(shared: &Shared, e: bindings::host::types::Error) -> PluginError {
    PluginError::Failed {
        name: shared.manifest.name.clone(),
        kind: kind_name(e.kind).into(),
        message: clip(&e.message, 1024),
    }
}

/// The WIT name of an error kind.
fn kind_name(kind: bindings::host::types::ErrorKind) -> &'static str {
    use bindings::host::types::ErrorKind as K;
    match kind {
        K::Denied => "denied",
        K::NotFound => "not-found",
        K::InvalidArgument => "invalid-argument",
        K::Unavailable => "unavailable",
        K::Failed => "failed",
    }
}

fn check_len(shared: &Shared, what: &str, len: usize) -> Result<(), PluginError> {
    if len > MAX_RESULT_BYTES {
        return Err(PluginError::Invalid {
            name: shared.manifest.name.clone(),
            detail: format!("{what} is {len} bytes, more than the {MAX_RESULT_BYTES} allowed"),
        });
    }
    Ok(())
}

/// Runs `call` on a fresh store under the plugin's limits.
///
/// The epoch deadline interrupts a guest that runs too long. A world whose imports can wait
/// (`host_waits`: the rotator's `sql` and `http`) also gets a tokio timer over the whole
/// call, since a guest waiting on the host does not tick.
async fn fresh<T, F>(
    engine: &PluginEngine,
    loaded: &Loaded,
    account: Option<AccountId>,
    host_waits: bool,
    call: impl FnOnce(Store<PluginState>) -> F,
) -> Result<T, PluginError>
where
    F: Future<Output = (Store<PluginState>, wasmtime::Result<T>)>,
{
    let shared = &loaded.shared;
    let deadline = Instant::now() + shared.manifest.limits.time;
    let _permit = acquire(loaded, deadline).await?;
    let store = new_store(&engine.engine, shared, account);
    // The store moves into the call and comes back with its result, so the guest's stderr can
    // be read after a trap; on timeout the whole future (store included) is dropped.
    let finished = if host_waits {
        tokio::time::timeout_at(deadline, call(store)).await
    } else {
        Ok(call(store).await)
    };
    match finished {
        Ok((_, Ok(v))) => Ok(v),
        Ok((store, Err(e))) => Err(classify(shared, e, store.data().stderr())),
        Err(_) => Err(PluginError::Timeout {
            name: shared.manifest.name.clone(),
            limit_ms: shared.manifest.limits.time.as_millis() as u64,
        }),
    }
}

async fn acquire(
    loaded: &Loaded,
    deadline: Instant,
) -> Result<tokio::sync::OwnedSemaphorePermit, PluginError> {
    loaded.shared.stats.calls.fetch_add(1, Ordering::Relaxed);
    // A free slot is the common case: take it without arming a timer.
    if let Ok(permit) = Arc::clone(&loaded.permits).try_acquire_owned() {
        return Ok(permit);
    }
    match tokio::time::timeout_at(deadline, Arc::clone(&loaded.permits).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(PluginError::Busy(loaded.shared.manifest.name.clone())),
    }
}

fn counted<T>(shared: &Shared, r: Result<T, PluginError>) -> Result<T, PluginError> {
    shared
        .stats
        .count(&r.as_ref().map(|_| ()).map_err(Clone::clone));
    r
}

impl PluginHost {
    fn world(&self, name: &str, world: World) -> Result<Arc<Loaded>, PluginError> {
        let loaded = self.get(name)?;
        let actual = loaded.shared.manifest.world;
        if actual != world {
            return Err(PluginError::WrongWorld {
                name: name.into(),
                expected: world,
                actual,
            });
        }
        Ok(loaded)
    }

    /// Asks access policy `name` to decide `req`.
    ///
    /// Instances are reused: a policy is called on every request, sees no secrets, and a
    /// fresh instance costs several times a reused one (docs/plugins.md). An instance that
    /// failed is dropped, never reused.
    pub async fn decide(&self, name: &str, req: &AccessRequest) -> Result<Decision, PluginError> {
        let loaded = self.world(name, World::AccessPolicy)?;
        let Pre::Policy(pre) = &loaded.pre else {
            return Err(PluginError::NotLoaded(name.into()));
        };
        let shared = &loaded.shared;
        if let Some(decision) = loaded.decisions.as_ref().and_then(|c| c.get(req)) {
            shared.stats.cached.fetch_add(1, Ordering::Relaxed);
            return Ok(decision);
        }
        let deadline = Instant::now() + shared.manifest.limits.time;
        // The policy world imports nothing that waits (log, clock), so the epoch deadline
        // bounds the whole call and no tokio timer is armed.
        let result = async {
            let _permit = acquire(&loaded, deadline).await?;
            let idle = loaded.idle.lock().ok().and_then(|mut v| v.pop());
            let mut instance = match idle {
                Some(mut i) => {
                    arm(&mut i.store);
                    i
                }
                None => {
                    let mut store = new_store(&self.engine.engine, shared, None);
                    match pre.instantiate_async(&mut store).await {
                        Ok(bindings) => PolicyInstance {
                            store,
                            bindings,
                            uses: 0,
                        },
                        Err(e) => {
                            let stderr = store.data().stderr();
                            return Err(classify(shared, e, stderr));
                        }
                    }
                }
            };
            let called = instance
                .bindings
                .arca_plugin_policy()
                .call_decide(&mut instance.store, req)
                .await;
            match called {
                Ok(decision) => {
                    let reason = match &decision {
                        Decision::Allow(r) | Decision::Deny(r) => r.len(),
                    };
                    check_len(shared, "the decision's reason", reason)?;
                    instance.uses += 1;
                    if instance.uses < MAX_REUSE
                        && let Ok(mut idle) = loaded.idle.lock()
                        && idle.len() < shared.manifest.limits.concurrency
                    {
                        idle.push(instance);
                    }
                    if let Some(cache) = &loaded.decisions {
                        cache.put(req, &decision);
                    }
                    Ok(decision)
                }
                Err(e) => Err(classify(shared, e, instance.store.data().stderr())),
            }
        }
        .await;
        counted(shared, result)
    }

    /// Decides `req` on a fresh instance every time (for comparison with [`Self::decide`]
    /// in the bench harness).
    pub async fn decide_fresh(
        &self,
        name: &str,
        req: &AccessRequest,
    ) -> Result<Decision, PluginError> {
        let loaded = self.world(name, World::AccessPolicy)?;
        let Pre::Policy(pre) = &loaded.pre else {
            return Err(PluginError::NotLoaded(name.into()));
        };
        let r = fresh(&self.engine, &loaded, None, false, |mut store| async move {
            let r = match pre.instantiate_async(&mut store).await {
                Ok(b) => b.arca_plugin_policy().call_decide(&mut store, req).await,
                Err(e) => Err(e),
            };
            (store, r)
        })
        .await;
        counted(&loaded.shared, r)
    }

    /// Runs one rotation step of rotator `name` for a secret of `account`. `CreatePending`
    /// returns the new value; the other steps return `None`.
    pub async fn rotate(
        &self,
        name: &str,
        account: &AccountId,
        step: RotationStep,
        req: &RotationRequest,
    ) -> Result<Option<SecretData>, PluginError> {
        let loaded = self.world(name, World::Rotator)?;
        let Pre::Rotator(pre) = &loaded.pre else {
            return Err(PluginError::NotLoaded(name.into()));
        };
        let shared = Arc::clone(&loaded.shared);
        let r = fresh(
            &self.engine,
            &loaded,
            Some(account.clone()),
            true,
            |mut store| async move {
                let r = async {
                    let b = pre.instantiate_async(&mut store).await?;
                    let g = b.arca_plugin_rotation();
                    Ok(match step {
                        RotationStep::CreatePending => {
                            g.call_create_pending(&mut store, req).await?.map(Some)
                        }
                        RotationStep::SetPending => {
                            g.call_set_pending(&mut store, req).await?.map(|()| None)
                        }
                        RotationStep::TestPending => {
                            g.call_test_pending(&mut store, req).await?.map(|()| None)
                        }
                        RotationStep::Finish => {
                            g.call_finish(&mut store, req).await?.map(|()| None)
                        }
                    })
                }
                .await;
                (store, r)
            },
        )
        .await
        .and_then(|inner| inner.map_err(|e| failed(&shared, e)))
        .and_then(|value| {
            if let Some(v) = &value {
                let len = match v {
                    SecretData::Text(t) => t.len(),
                    SecretData::Binary(b) => b.len(),
                };
                check_len(&shared, "the new secret value", len)?;
            }
            Ok(value)
        });
        counted(&shared, r)
    }

    /// Asks SSE integration `name` which key protects the data of `req`.
    pub async fn choose_key(
        &self,
        name: &str,
        req: &KeyRequest,
    ) -> Result<Protection, PluginError> {
        let loaded = self.world(name, World::SseIntegration)?;
        let Pre::Sse(pre, _) = &loaded.pre else {
            return Err(PluginError::NotLoaded(name.into()));
        };
        let shared = Arc::clone(&loaded.shared);
        let account: Option<AccountId> = req.account.parse().ok();
        let r = fresh(
            &self.engine,
            &loaded,
            account,
            false,
            |mut store| async move {
                let r = async {
                    let b = pre.instantiate_async(&mut store).await?;
                    b.arca_plugin_integration()
                        .call_choose_key(&mut store, req)
                        .await
                }
                .await;
                (store, r)
            },
        )
        .await
        .and_then(|inner| inner.map_err(|e| failed(&shared, e)))
        .and_then(|p| {
            let ctx: usize = p.context.iter().map(|(k, v)| k.len() + v.len()).sum();
            check_len(&shared, "the encryption context", ctx)?;
            Ok(p)
        });
        counted(&shared, r)
    }

    /// What SSE integration `name` declared when it loaded.
    /// The loaded integration for `service_code`: its plugin name and what it declared.
    pub fn sse_integration(&self, service_code: &str) -> Option<(String, ServiceInfo)> {
        self.snapshot()
            .iter()
            .find_map(|(name, loaded)| match &loaded.pre {
                Pre::Sse(_, info) if info.service_code == service_code => {
                    Some((name.clone(), info.clone()))
                }
                _ => None,
            })
    }

    pub fn service_info(&self, name: &str) -> Result<ServiceInfo, PluginError> {
        let loaded = self.world(name, World::SseIntegration)?;
        match &loaded.pre {
            Pre::Sse(_, info) => Ok(info.clone()),
            _ => Err(PluginError::NotLoaded(name.into())),
        }
    }
}

fn timeout(shared: &Shared) -> PluginError {
    PluginError::Timeout {
        name: shared.manifest.name.clone(),
        limit_ms: shared.manifest.limits.time.as_millis() as u64,
    }
}

/// Calls `describe` once at load time (on a blocking thread, with a private runtime).
pub(crate) fn describe_blocking(
    engine: &PluginEngine,
    shared: &Arc<Shared>,
    pre: &bindings::sse::SseIntegrationPre<PluginState>,
) -> Result<ServiceInfo, PluginError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| PluginError::Trap {
            name: shared.manifest.name.clone(),
            detail: e.to_string(),
        })?;
    rt.block_on(async {
        let mut store = new_store(&engine.engine, shared, None);
        let r = tokio::time::timeout(shared.manifest.limits.time, async {
            let b = pre.instantiate_async(&mut store).await?;
            b.arca_plugin_integration().call_describe(&mut store).await
        })
        .await;
        let info = match r {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Err(classify(shared, e, store.data().stderr())),
            Err(_) => return Err(timeout(shared)),
        };
        let code = &info.service_code;
        if code.is_empty()
            || code.len() > 32
            || !code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(PluginError::Invalid {
                name: shared.manifest.name.clone(),
                detail: format!(
                    "service code `{}` must be 1-32 lower-case letters, digits or `-`",
                    clip(code, 64)
                ),
            });
        }
        check_len(shared, "the key policy", info.key_policy.len())?;
        Ok(info)
    })
}
