//! Host-side bindings generated from `wit/`, one module per world. The host interfaces are
//! generated once (in `rotator`, whose world imports them all) and shared with the others.

#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    reason = "generated code"
)]

pub(crate) mod rotator {
    wasmtime::component::bindgen!({
        world: "rotator",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

pub(crate) mod sse {
    wasmtime::component::bindgen!({
        world: "sse-integration",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "arca:plugin/types": super::rotator::arca::plugin::types,
            "arca:plugin/log": super::rotator::arca::plugin::log,
            "arca:plugin/random": super::rotator::arca::plugin::random,
            "arca:plugin/clock": super::rotator::arca::plugin::clock,
            "arca:plugin/kms": super::rotator::arca::plugin::kms,
        },
    });
}

pub(crate) mod policy {
    wasmtime::component::bindgen!({
        world: "access-policy",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq, Eq, Hash],
        with: {
            "arca:plugin/types": super::rotator::arca::plugin::types,
            "arca:plugin/log": super::rotator::arca::plugin::log,
            "arca:plugin/clock": super::rotator::arca::plugin::clock,
        },
    });
}

pub(crate) use rotator::arca::plugin as host;
