//! The admin listener (`--admin-listen`): `/metrics` (Prometheus), `/healthz`, `/readyz` and
//! `/status` (JSON, what `arca status` prints).
//!
//! It has an address of its own so operators can expose it to their monitoring and nothing
//! else, and it is unauthenticated like every Prometheus target: it shows counts, health, and
//! plugin and token names, never a key id, a value or an account.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::api::App;
use crate::audit::AuditStatus;
use crate::keystore::hsm::HsmStatus;
use crate::kms::inventory::Inventory;

/// What the admin listener reads.
#[derive(Debug)]
pub struct Admin {
    /// What the API serves with (the store, plugins, audit trail, replay cache).
    app: Arc<App>,
    started: Instant,
    /// Set while the API listener accepts requests; cleared when shutdown begins, so a load
    /// balancer stops sending before connections drain.
    serving: AtomicBool,
}

/// One readiness condition.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed. A failed check with `degraded` set does not make the server unready.
    pub ok: bool,
    /// Only part of the service is affected (an HSM outage leaves software keys working).
    pub degraded: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    fn new(name: &'static str, result: Result<(), String>) -> Self {
        Self {
            name,
            ok: result.is_ok(),
            degraded: false,
            detail: result.err(),
        }
    }
}

/// A plugin's state and call counters.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginStatus {
    /// Its name.
    pub name: String,
    /// `loaded` or `failed`.
    pub status: String,
    /// Its world.
    pub world: String,
    /// Calls started.
    pub calls: u64,
    /// Calls that failed (errors, traps, timeouts, memory, invalid results, busy).
    pub failures: u64,
}

/// What `/status` answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    /// The server's version.
    pub version: &'static str,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// The readiness checks.
    pub checks: Vec<Check>,
    /// What the store holds (absent when the store cannot be read).
    pub inventory: Option<Inventory>,
    /// The audit trail.
    pub audit: AuditStatus,
    /// The HSM, when one is configured.
    pub hsm: Option<HsmStatus>,
    /// Every plugin.
    pub plugins: Vec<PluginStatus>,
}

impl Admin {
    /// An admin view over the API's components.
    pub fn new(app: Arc<App>) -> Self {
        Self {
            app,
            started: Instant::now(),
            serving: AtomicBool::new(false),
        }
    }

    /// Marks the API listener as accepting (or no longer accepting) requests.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    /// The readiness checks, all of them run.
    pub fn checks(&self) -> Vec<Check> {
        let serving = if self.serving.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("the API listener is not accepting requests".into())
        };
        let mut checks = vec![
            Check::new("serving", serving),
            Check::new(
                "store",
                self.app.kms.probe_store().map_err(|e| e.to_string()),
            ),
            Check::new(
                "audit",
                self.app
                    .audit
                    .status()
                    .error
                    .map_or(Ok(()), |e| Err(format!("the audit trail stopped: {e}"))),
            ),
        ];
        if let Some(policy) = &self.app.access_policy {
            let loaded = if self
                .app
                .plugins
                .has(policy, crate::plugin::World::AccessPolicy)
            {
                Ok(())
            } else {
                Err(format!("access policy plugin {policy} is not loaded"))
            };
            checks.push(Check::new("access-policy", loaded));
        }
        if let Some(hsm) = self.app.kms.hsm() {
            let up = if hsm.status().up {
                Ok(())
            } else {
                Err(format!(
                    "HSM token {} is unreachable; HSM keys answer 503",
                    hsm.label()
                ))
            };
            checks.push(Check {
                degraded: true,
                ..Check::new("hsm", up)
            });
        }
        checks
    }

    /// Everything `/status` shows.
    pub fn status(&self) -> Status {
        let checks = self.checks();
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            ready: ready(&checks),
            checks,
            inventory: self.app.kms.inventory().ok(),
            audit: self.app.audit.status(),
            hsm: self.app.kms.hsm().map(|h| h.status()),
            plugins: self
                .app
                .plugins
                .list()
                .into_iter()
                .map(|p| {
                    let s = p.stats;
                    PluginStatus {
                        name: p.name,
                        status: p.status,
                        world: p.world,
                        calls: s.calls,
                        failures: s.errors
                            + s.traps
                            + s.timeouts
                            + s.out_of_memory
                            + s.invalid
                            + s.busy,
                    }
                })
                .collect(),
        }
    }

    /// The Prometheus text: the process's counters, then the state read now.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let encoded = prometheus_client::encoding::text::encode_registry(
            &mut out,
            crate::metrics::metrics().registry(),
        )
        .and_then(|()| {
            prometheus_client::encoding::text::encode_registry(&mut out, &self.state_registry())
        })
        .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
        if let Err(e) = encoded {
            tracing::error!(error = %e, "cannot render metrics");
        }
        out
    }

    /// Gauges and counters whose source of truth lives elsewhere, read at scrape time.
    fn state_registry(&self) -> Registry {
        type Labels = Vec<(&'static str, String)>;
        let mut r = Registry::with_prefix("arca");
        let checks = self.checks();
        let gauge = |r: &mut Registry, name: &str, help: &str, v: i64| {
            let g = Gauge::<i64>::default();
            g.set(v);
            r.register(name, help, g);
        };
        gauge(
            &mut r,
            "ready",
            "1 when /readyz answers 200",
            i64::from(ready(&checks)),
        );
        gauge(
            &mut r,
            "uptime_seconds",
            "Seconds since the server started",
            i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX),
        );
        if let Ok(inv) = self.app.kms.inventory() {
            let keys = Family::<Labels, Gauge>::default();
            for (state, n) in &inv.keys {
                keys.get_or_create(&vec![("state", (*state).to_owned())])
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
            r.register("keys", "Customer master keys, by state", keys);
            for (name, help, n) in [
                ("key_versions", "Key versions", inv.key_versions),
                ("secrets", "Secrets", inv.secrets),
                ("kms_instances", "KMS instances", inv.instances),
                ("accounts", "Accounts", inv.accounts),
            ] {
                gauge(&mut r, name, help, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let audit = self.app.audit.status();
        gauge(
            &mut r,
            "audit_up",
            "1 while the audit trail takes lines (else every call answers 503)",
            i64::from(audit.error.is_none()),
        );
        gauge(
            &mut r,
            "audit_unsealed_events",
            "Audit lines not yet covered by a seal",
            i64::try_from(audit.unsealed).unwrap_or(i64::MAX),
        );
        if let Some((seq, hash)) = &audit.sealed {
            gauge(
                &mut r,
                "audit_sealed_seq",
                "The sealed head's seq (the head's hash is on audit_sealed_head)",
                i64::try_from(*seq).unwrap_or(i64::MAX),
            );
            // The hash as a label: one series per scrape while events flow, so a recording
            // rule should copy it out rather than keep the series (docs/security.md).
            let head = Family::<Labels, Gauge>::default();
            head.get_or_create(&vec![("seq", seq.to_string()), ("hash", hash.clone())])
                .set(1);
            r.register(
                "audit_sealed_head",
                "The sealed head, to anchor outside the machine (`arca audit verify --anchor SEQ:HASH`)",
                head,
            );
        }
        let lines = Family::<Labels, Counter>::default();
        for (by, n) in [
            ("appender", audit.lines_by_appender),
            ("preparer", audit.lines_by_preparer),
        ] {
            lines.get_or_create(&vec![("by", by.into())]).inc_by(n);
        }
        r.register(
            "audit_lines",
            "Audit lines written since the start, by the thread that made them (the preparer runs at idle priority)",
            lines,
        );
        gauge(
            &mut r,
            "replay_cache_nonces",
            "Request nonces remembered for the clock-skew window (replay protection)",
            i64::try_from(self.app.nonces.len()).unwrap_or(i64::MAX),
        );
        let calls = Family::<Labels, Counter>::default();
        let loaded = Family::<Labels, Gauge>::default();
        for p in self.app.plugins.list() {
            let s = p.stats;
            for (outcome, n) in [
                ("ok", s.ok),
                ("error", s.errors),
                ("trap", s.traps),
                ("timeout", s.timeouts),
                ("out_of_memory", s.out_of_memory),
                ("invalid", s.invalid),
                ("busy", s.busy),
                ("cached", s.cached),
            ] {
                calls
                    .get_or_create(&vec![
                        ("plugin", p.name.clone()),
                        ("outcome", outcome.into()),
                    ])
                    .inc_by(n);
            }
            loaded
                .get_or_create(&vec![("plugin", p.name.clone())])
                .set(i64::from(p.status == "loaded"));
        }
        r.register("plugin_calls", "Plugin calls, by plugin and outcome", calls);
        r.register("plugin_loaded", "1 when the plugin is loaded", loaded);
        if let Some(hsm) = self.app.kms.hsm() {
            let s = hsm.status();
            gauge(
                &mut r,
                "hsm_up",
                "1 while the HSM token answers",
                i64::from(s.up),
            );
            let sessions = Family::<Labels, Gauge>::default();
            for (state, n) in [("idle", s.idle_sessions), ("busy", s.busy_sessions)] {
                sessions
                    .get_or_create(&vec![("state", state.into())])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            r.register("hsm_sessions", "Logged-in HSM sessions, by state", sessions);
        }
        r
    }
}

fn ready(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.ok || c.degraded)
}

/// Answers one admin request.
pub async fn handle<B>(admin: &Admin, req: Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let checks = admin.checks();
            let mut body = String::new();
            for c in &checks {
                let state = match (c.ok, c.degraded) {
                    (true, _) => "ok",
                    (false, true) => "degraded",
                    (false, false) => "failed",
                };
                body.push_str(&format!("{}: {state}", c.name));
                if let Some(d) = &c.detail {
                    body.push_str(&format!(" ({d})"));
                }
                body.push('\n');
            }
            let status = if ready(&checks) {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, body)
        }
        "/metrics" => {
            let mut resp = text(StatusCode::OK, admin.metrics_text());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        "/status" => {
            let body = serde_json::to_string_pretty(&admin.status()).unwrap_or_default();
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /status\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
