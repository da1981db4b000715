//! What each plugin store carries: limits, an empty WASI context, and the plugin's grants.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Shared;
use crate::ids::AccountId;

/// How much of a plugin's stderr (where a Rust guest's panic message goes) is kept.
const STDERR_CAPACITY: usize = 4096;

/// The data of one plugin store.
pub(crate) struct PluginState {
    pub(crate) limits: StoreLimits,
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    /// The plugin: manifest, grants and the host services its imports use.
    pub(crate) plugin: Arc<Shared>,
    /// The account the current call acts for (what `kms` and `secrets` are scoped to).
    pub(crate) account: Option<AccountId>,
    /// When the current call must stop: checked at every epoch tick.
    pub(crate) deadline: std::time::Instant,
}

impl PluginState {
    pub(crate) fn new(plugin: Arc<Shared>, account: Option<AccountId>) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(plugin.manifest.limits.memory_bytes)
            .table_elements(super::engine::MAX_TABLE_ELEMENTS)
            .instances(super::engine::MAX_CORE_INSTANCES)
            .tables(super::engine::MAX_TABLES)
            .memories(super::engine::MAX_MEMORIES)
            .trap_on_grow_failure(true)
            .build();
        // No environment, no arguments, no preopened directories, no sockets, stdin closed,
        // stdout discarded; stderr kept (bounded) so a guest's panic message can be reported.
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        Self {
            limits,
            wasi,
            table: ResourceTable::new(),
            stderr,
            deadline: std::time::Instant::now() + plugin.manifest.limits.time,
            plugin,
            account,
        }
    }

    /// What the guest wrote to stderr (a panic message, usually), lossily as text.
    pub(crate) fn stderr(&self) -> String {
        let bytes = self.stderr.contents();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
