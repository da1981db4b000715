//! The Arca plugin SDK: write a secret rotator, a server-side-encryption integration or an
//! access policy as a WebAssembly component.
//!
//! Enable the feature of the one world your plugin implements (`rotator`, `sse-integration`
//! or `access-policy`), implement its trait, and export it:
//!
//! ```ignore
//! use arca_plugin_sdk::policy::{AccessPolicy, Decision, Request};
//!
//! struct AllowReads;
//! impl AccessPolicy for AllowReads {
//!     fn decide(req: Request) -> Decision {
//!         if req.action.starts_with("Describe") { Decision::Allow("read".into()) }
//!         else { Decision::Deny("only reads".into()) }
//!     }
//! }
//! arca_plugin_sdk::export_access_policy!(AllowReads);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` under
//! `target/wasm32-wasip2/release/` is the component. The contract is the WIT package in
//! `wit/` (`arca:plugin@0.1.0`): its doc comments say what the host guarantees.

pub mod sql_quote;

#[cfg(any(
    all(feature = "rotator", feature = "sse-integration"),
    all(feature = "rotator", feature = "access-policy"),
    all(feature = "sse-integration", feature = "access-policy"),
))]
compile_error!(
    "enable exactly one of the features `rotator`, `sse-integration`, `access-policy`: a component implements one world"
);

/// The generated bindings. Plugins use the re-exports in [`rotator`], [`sse`] and [`policy`]
/// and the host interfaces at the crate root instead.
#[doc(hidden)]
pub mod bindings {
    #[cfg(feature = "rotator")]
    pub mod rotator {
        wit_bindgen::generate!({
            world: "rotator",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "__export_rotator_world",
            default_bindings_module: "arca_plugin_sdk::bindings::rotator",
        });
    }
    #[cfg(feature = "sse-integration")]
    pub mod sse {
        wit_bindgen::generate!({
            world: "sse-integration",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "__export_sse_integration_world",
            default_bindings_module: "arca_plugin_sdk::bindings::sse",
        });
    }
    #[cfg(feature = "access-policy")]
    pub mod policy {
        wit_bindgen::generate!({
            world: "access-policy",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "__export_access_policy_world",
            default_bindings_module: "arca_plugin_sdk::bindings::policy",
        });
    }
}

#[cfg(all(
    feature = "access-policy",
    not(any(feature = "rotator", feature = "sse-integration"))
))]
use bindings::policy::arca::plugin as world;
#[cfg(feature = "rotator")]
use bindings::rotator::arca::plugin as world;
#[cfg(all(feature = "sse-integration", not(feature = "rotator")))]
use bindings::sse::arca::plugin as world;

/// Shared types: [`types::Error`], [`types::ErrorKind`], [`types::Timestamp`].
#[cfg(any(
    feature = "rotator",
    feature = "sse-integration",
    feature = "access-policy"
))]
pub mod types {
    pub use super::world::types::*;

    impl Error {
        /// An error of `kind` with `message` (never put a secret value in it).
        pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
            Self {
                kind,
                message: message.into(),
            }
        }
        /// A `failed` error.
        pub fn failed(message: impl Into<String>) -> Self {
            Self::new(ErrorKind::Failed, message)
        }
        /// An `invalid-argument` error.
        pub fn invalid(message: impl Into<String>) -> Self {
            Self::new(ErrorKind::InvalidArgument, message)
        }
    }
}

/// Writing to Arca's log: `log::info("...")` and friends.
#[cfg(any(
    feature = "rotator",
    feature = "sse-integration",
    feature = "access-policy"
))]
pub mod log {
    pub use super::world::log::{Level, log};

    /// Logs at `info`.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Logs at `warn`.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Logs at `error`.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
    /// Logs at `debug`.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
}

/// The host's clock (needs the `clock` capability).
#[cfg(any(
    feature = "rotator",
    feature = "sse-integration",
    feature = "access-policy"
))]
pub use world::clock;

/// The host's CSPRNG (needs the `random` capability).
#[cfg(any(feature = "rotator", feature = "sse-integration"))]
pub use world::random;

/// Cryptographic calls on granted keys (needs the `kms` capability).
#[cfg(any(feature = "rotator", feature = "sse-integration"))]
pub use world::kms;

/// Secrets, SQL, HTTP and Arca AccessKeys (need the `secrets`, `sql`, `http` and
/// `access-keys` capabilities).
#[cfg(feature = "rotator")]
pub use world::{access_keys, http, secrets, sql};

/// Secret rotators: implement [`rotator::Rotator`], then `export_rotator!(YourType)`.
#[cfg(feature = "rotator")]
pub mod rotator {
    use super::bindings::rotator::exports::arca::plugin::rotation::Guest;
    pub use super::bindings::rotator::exports::arca::plugin::rotation::RotationRequest;
    pub use super::types::{Error, ErrorKind};
    pub use super::types::{SecretData, SecretVersion};

    /// The four rotation steps (see `wit/rotator.wit`). Each must be idempotent: the host
    /// retries a step that failed or was interrupted.
    pub trait Rotator {
        /// Step 1: make the new value.
        fn create_pending(req: RotationRequest) -> Result<SecretData, Error>;
        /// Step 2: make the target system accept the pending value.
        fn set_pending(req: RotationRequest) -> Result<(), Error>;
        /// Step 3: prove the pending value works.
        fn test_pending(req: RotationRequest) -> Result<(), Error>;
        /// Step 4: clean up before the stages move. Nothing by default.
        fn finish(_req: RotationRequest) -> Result<(), Error> {
            Ok(())
        }
    }

    impl<T: Rotator> Guest for T {
        fn create_pending(req: RotationRequest) -> Result<SecretData, Error> {
            T::create_pending(req)
        }
        fn set_pending(req: RotationRequest) -> Result<(), Error> {
            T::set_pending(req)
        }
        fn test_pending(req: RotationRequest) -> Result<(), Error> {
            T::test_pending(req)
        }
        fn finish(req: RotationRequest) -> Result<(), Error> {
            T::finish(req)
        }
    }

    /// Exports a type implementing [`Rotator`] as the component's `rotation` interface.
    #[macro_export]
    macro_rules! export_rotator {
        ($t:ident) => {
            $crate::bindings::rotator::__export_rotator_world!($t with_types_in $crate::bindings::rotator);
        };
    }
}

/// Server-side-encryption integrations: implement [`sse::SseIntegration`], then
/// `export_sse_integration!(YourType)`.
#[cfg(feature = "sse-integration")]
pub mod sse {
    use super::bindings::sse::exports::arca::plugin::integration::Guest;
    pub use super::bindings::sse::exports::arca::plugin::integration::{
        KeyChoice, KeyRequest, Protection, ServiceInfo,
    };
    pub use super::types::{EncryptionContext, Error, ErrorKind};

    /// A service that encrypts its customers' data with keys in Arca (see `wit/sse.wit`).
    pub trait SseIntegration {
        /// The service code, description, service-key policy and whether customers may bring
        /// their own CMK.
        fn describe() -> ServiceInfo;
        /// Which key protects the data of one request, and the context to bind it to.
        fn choose_key(req: KeyRequest) -> Result<Protection, Error>;
    }

    impl<T: SseIntegration> Guest for T {
        fn describe() -> ServiceInfo {
            T::describe()
        }
        fn choose_key(req: KeyRequest) -> Result<Protection, Error> {
            T::choose_key(req)
        }
    }

    /// Exports a type implementing [`SseIntegration`].
    #[macro_export]
    macro_rules! export_sse_integration {
        ($t:ident) => {
            $crate::bindings::sse::__export_sse_integration_world!($t with_types_in $crate::bindings::sse);
        };
    }
}

/// Access policies: implement [`policy::AccessPolicy`], then `export_access_policy!(YourType)`.
#[cfg(feature = "access-policy")]
pub mod policy {
    use super::bindings::policy::exports::arca::plugin::policy::Guest;
    pub use super::bindings::policy::exports::arca::plugin::policy::{
        AttachedPolicy, Decision, NetworkRule, Principal, PrincipalKind, Request,
    };

    /// Decides whether a request may proceed (see `wit/policy.wit`). Called on the hot path,
    /// possibly many times on one instance: keep it pure.
    pub trait AccessPolicy {
        fn decide(req: Request) -> Decision;
    }

    impl<T: AccessPolicy> Guest for T {
        fn decide(req: Request) -> Decision {
            T::decide(req)
        }
    }

    /// Exports a type implementing [`AccessPolicy`].
    #[macro_export]
    macro_rules! export_access_policy {
        ($t:ident) => {
            $crate::bindings::policy::__export_access_policy_world!($t with_types_in $crate::bindings::policy);
        };
    }
}
