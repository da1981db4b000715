//! The wasmtime engine: one per process, configured once for every plugin, and the precompile
//! cache that spares a restart from compiling every component again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::manifest::MAX_MEMORY_MIB;

/// How often the epoch advances. Plugin calls yield to the runtime at every tick, so a guest
/// that spins cannot hold a worker thread longer than this.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Component instances the pool holds at once (across all plugins).
const POOL_INSTANCES: u32 = 256;
pub(crate) const MAX_CORE_INSTANCES: usize = 32;
pub(crate) const MAX_TABLES: usize = 16;
pub(crate) const MAX_MEMORIES: usize = 4;
pub(crate) const MAX_TABLE_ELEMENTS: usize = 20_000;
/// Wasm stack per call: deep recursion traps with a stack overflow at this depth.
const MAX_WASM_STACK: usize = 512 * 1024;

/// The engine and its epoch ticker.
#[derive(Clone)]
pub(crate) struct PluginEngine {
    pub(crate) engine: Engine,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginEngine")
    }
}

impl PluginEngine {
    /// Builds the engine: epoch interruption (wall time), the pooling allocator with resident
    /// slots (fast, scalable instantiation; wasm-feasibility.md §3d), and a bounded stack.
    pub(crate) fn new() -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memories_per_component(MAX_MEMORIES as u32)
            .max_tables_per_component(MAX_TABLES as u32)
            .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker, flag) = (engine.weak(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("arca-plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self { engine, stop })
    }

    /// A fingerprint of everything that makes a precompiled artifact usable: the wasmtime
    /// version and the engine's compilation settings (wasmtime's own compatibility hash).
    pub(crate) fn fingerprint(&self) -> String {
        let mut h = Fingerprint::default();
        env!("CARGO_PKG_VERSION").hash(&mut h);
        wasmtime_version().hash(&mut h);
        self.engine.precompile_compatibility_hash().hash(&mut h);
        hex::encode(h.finish_bytes())
    }

    /// Compiles `wasm`, or loads the artifact cached for these exact bytes and this engine.
    /// Returns the component and whether the cache served it.
    pub(crate) fn compile_cached(
        &self,
        wasm: &[u8],
        cache_dir: &Path,
    ) -> wasmtime::Result<(Component, CacheOutcome, String)> {
        let key = cache_key(wasm, &self.fingerprint());
        let path = cache_dir.join(format!("{key}.cwasm"));
        if path.exists() {
            match self.load_artifact(&path) {
                Ok(component) => return Ok((component, CacheOutcome::Hit, key)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding an unusable precompiled plugin");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = self.engine.precompile_component(wasm)?;
        write_atomically(cache_dir, &path, &artifact)?;
        Ok((self.load_artifact(&path)?, CacheOutcome::Miss, key))
    }

    /// Reads the artifact into memory rather than mapping it: a mapped file that someone
    /// truncates under a running server would kill it with SIGBUS.
    #[allow(
        unsafe_code,
        reason = "wasmtime can only load precompiled code unsafely"
    )]
    fn load_artifact(&self, path: &Path) -> wasmtime::Result<Component> {
        let bytes = std::fs::read(path)?;
        // SAFETY: the artifact was produced by `precompile_component` of an engine with the
        // same fingerprint (it is in the file name) and written by this process into the
        // data directory, which is private to the server (0700) and already holds the root
        // key: whoever can replace it can do worse. wasmtime still checks the header and
        // refuses artifacts of other versions or settings.
        unsafe { Component::deserialize(&self.engine, &bytes) }
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        if Arc::strong_count(&self.stop) == 1 {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether a component came from the precompile cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a cached artifact.
    Hit,
    /// Compiled and cached.
    Miss,
}

/// The cache key: SHA-256 over the component bytes and the engine fingerprint.
pub(crate) fn cache_key(wasm: &[u8], fingerprint: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(fingerprint.as_bytes());
    ctx.update(&[0]);
    ctx.update(wasm);
    hex::encode(ctx.finish().as_ref())
}

/// The wasmtime crate version this host links (part of the cache fingerprint).
pub(crate) fn wasmtime_version() -> &'static str {
    "48.0.8"
}

fn write_atomically(dir: &Path, path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A `Hasher` that keeps everything it is fed and digests it with SHA-256, so the fingerprint
/// is stable across processes (std's `DefaultHasher` is not guaranteed to be).
#[derive(Default)]
struct Fingerprint(Vec<u8>);

impl Fingerprint {
    fn finish_bytes(&self) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.0)
            .as_ref()
            .to_vec()
    }
}

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        let d = self.finish_bytes();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_changes_with_the_component_and_the_engine() {
        let a = cache_key(b"component", "engine-1");
        assert_eq!(a, cache_key(b"component", "engine-1"));
        assert_ne!(a, cache_key(b"component2", "engine-1"));
        assert_ne!(a, cache_key(b"component", "engine-2"));
    }

    #[test]
    fn the_fingerprint_is_stable_and_follows_compilation_settings() {
        let e = PluginEngine::new().unwrap();
        assert_eq!(e.fingerprint(), e.fingerprint());
        assert_eq!(e.fingerprint(), PluginEngine::new().unwrap().fingerprint());
        // An engine compiled differently (fuel metering on) must not share artifacts.
        let mut config = Config::new();
        config.epoch_interruption(true).consume_fuel(true);
        let other = Engine::new(&config).unwrap();
        let mut h = Fingerprint::default();
        env!("CARGO_PKG_VERSION").hash(&mut h);
        wasmtime_version().hash(&mut h);
        other.precompile_compatibility_hash().hash(&mut h);
        assert_ne!(e.fingerprint(), hex::encode(h.finish_bytes()));
    }
}
