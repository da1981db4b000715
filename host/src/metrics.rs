//! Counters and latency histograms for the admin listener's `/metrics`.
//!
//! Like the log, these are process-wide: the request paths, the rotation engine and key
//! maintenance count into [`metrics()`] without a handle threaded through them, and
//! [`crate::admin`] renders them. Every label value is a `&'static str` from a closed set (the
//! action table, the operation list, the error codes), so a client cannot add series by sending
//! made-up action names. State that already lives elsewhere (keys by state, plugin call
//! counters, HSM sessions) is read at scrape time instead of being mirrored here.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which listener served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// The shared gateway (the Alibaba RPC API).
    Api,
    /// A KMS instance's data plane.
    Instance,
}

impl Plane {
    fn as_str(self) -> &'static str {
        match self {
            Plane::Api => "api",
            Plane::Instance => "instance",
        }
    }
}

/// What a rotation was of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotated {
    /// A new CMK version.
    Key,
    /// A secret rotation run through a rotator plugin.
    Secret,
}

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels<3>, Counter>,
    latency: Family<Labels<2>, Histogram, fn() -> Histogram>,
    rotations: Family<Labels<2>, Counter>,
    unrecorded_junk: Counter,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3.3 s, doubling: Encrypt sits in the first buckets, an HSM RSA-4096
    // signature or a rotation step near the top.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("arca");
        let requests = Family::<Labels<3>, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by listener, action and result code",
            requests.clone(),
        );
        let latency = Family::<Labels<2>, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's body to its reply (the audit record included)",
            latency.clone(),
        );
        let rotations = Family::<Labels<2>, Counter>::default();
        registry.register(
            "rotations",
            "Key and secret rotations, by kind and outcome",
            rotations.clone(),
        );
        let unrecorded_junk = Counter::default();
        registry.register(
            "audit_unrecorded_junk",
            "Unauthenticated failures answered without an audit line of their own, their \
             source being over its budget (api::junk)",
            unrecorded_junk.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            rotations,
            unrecorded_junk,
        }
    }
}

impl Metrics {
    /// Counts one answered request and its latency. `action` and `code` must come from closed
    /// sets (see the module doc).
    pub fn request(&self, plane: Plane, action: &'static str, code: &'static str, took: Duration) {
        let plane = plane.as_str();
        self.requests
            .get_or_create(&[("plane", plane), ("action", action), ("code", code)])
            .inc();
        self.latency
            .get_or_create(&[("plane", plane), ("action", action)])
            .observe(took.as_secs_f64());
    }

    /// Counts one finished rotation attempt.
    pub fn rotation(&self, kind: Rotated, ok: bool) {
        let kind = match kind {
            Rotated::Key => "key",
            Rotated::Secret => "secret",
        };
        let outcome = if ok { "completed" } else { "failed" };
        self.rotations
            .get_or_create(&[("kind", kind), ("outcome", outcome)])
            .inc();
    }

    /// Counts one unauthenticated failure left out of the audit trail (see `api::junk`).
    pub fn unrecorded_junk(&self) {
        self.unrecorded_junk.inc();
    }

    /// The registry, for rendering.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);
    &METRICS
}

/// The label for a name from a request: the matching entry of `known`, or `"unknown"`.
pub fn known_name(name: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_latency_and_rotations() {
        let m = Metrics::default();
        m.request(Plane::Api, "Encrypt", "OK", Duration::from_micros(150));
        m.request(Plane::Api, "Encrypt", "OK", Duration::from_micros(150));
        m.request(
            Plane::Instance,
            "Decrypt",
            "Forbidden.NoPermission",
            Duration::ZERO,
        );
        m.rotation(Rotated::Secret, false);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, m.registry()).unwrap_or_default();
        assert!(text.contains(r#"arca_requests_total{plane="api",action="Encrypt",code="OK"} 2"#));
        assert!(text.contains(
            r#"arca_requests_total{plane="instance",action="Decrypt",code="Forbidden.NoPermission"} 1"#
        ));
        assert!(text.contains(
            r#"arca_request_duration_seconds_bucket{le="0.0002",plane="api",action="Encrypt"} 2"#
        ));
        assert!(text.contains(r#"arca_rotations_total{kind="secret",outcome="failed"} 1"#));
    }

    #[test]
    fn unknown_names_share_one_label() {
        assert_eq!(known_name("Encrypt", &["Decrypt", "Encrypt"]), "Encrypt");
        assert_eq!(known_name("x' OR 1=1", &["Encrypt"]), "unknown");
    }
}
