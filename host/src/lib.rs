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
//! [`Server::start`] (or [`serve`]) is the library entry: it takes a [`Config`] and opens and
//! serves everything it names; `src/bin/arca/` is the command line around it, and tests call it
//! in-process.

pub mod admin;
pub mod api;
pub mod audit;
pub mod clock;
pub mod config;
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
pub mod server;
pub mod sse;
pub mod startup;
pub mod store;

pub use config::Config;
pub use server::{Server, serve};
pub use startup::{DataDir, ServeConfig, open};
