//! The audit trail: one JSON line per API call, success or failure, appended off the request
//! path by a dedicated writer thread.
//!
//! Events carry who, what, on which resource and with what result, never key material,
//! plaintext, secrets or signatures; [`AuditEvent`] has no field that could hold them.
//!
//! Requests push events into a shared buffer without waking anyone; the writer wakes every
//! [`FLUSH_INTERVAL`] (or when the buffer grows past [`WAKE_AT`]), takes the whole buffer and
//! writes it in one go. Per-event channel wake-ups cost about a tenth of Encrypt throughput on
//! two cores (measured with `perf`; see docs/benchmarks.md). Hash chaining, signed heads and
//! group commit that is durable before the reply are the hardening issue's work.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

/// How often the writer drains the buffer when traffic is light.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Buffer length at which a request wakes the writer early.
pub const WAKE_AT: usize = 4096;

/// One audited call.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// UTC time of the reply.
    #[serde(serialize_with = "utc")]
    pub time: OffsetDateTime,
    /// The request id the client saw.
    pub request_id: String,
    /// The action name as requested.
    pub action: String,
    /// The account, once authenticated.
    pub account: Option<String>,
    /// The AccessKey id that signed the request, once authenticated.
    pub access_key_id: Option<String>,
    /// The peer address.
    pub source_ip: String,
    /// The resource named by the request (key id, alias or ARN), if any.
    pub resource: Option<String>,
    /// The key version a cryptographic call used, if any.
    pub key_version: Option<String>,
    /// `OK` or the error `Code`.
    pub result: &'static str,
    /// The HTTP status.
    pub status: u16,
}

fn utc<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::clock::format_utc(*t))
}

#[derive(Debug, Default)]
struct Shared {
    buffer: Mutex<Vec<AuditEvent>>,
    wake: Condvar,
}

/// A handle for appending events.
#[derive(Debug, Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

impl AuditLog {
    /// Opens (appending) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let shared = Arc::new(Shared::default());
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("arca-audit".into())
            .spawn(move || write_loop(file, &writer))?;
        Ok(Self { shared })
    }

    /// Queues an event. Never blocks on I/O.
    pub fn record(&self, event: AuditEvent) {
        let Ok(mut buffer) = self.shared.buffer.lock() else {
            tracing::error!("audit buffer poisoned; event lost");
            return;
        };
        buffer.push(event);
        if buffer.len() == WAKE_AT {
            self.shared.wake.notify_one();
        }
    }
}

fn write_loop(file: File, shared: &Shared) {
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let mut batch = Vec::new();
    loop {
        {
            let Ok(guard) = shared.buffer.lock() else {
                return;
            };
            let Ok((mut guard, _)) = shared.wake.wait_timeout(guard, FLUSH_INTERVAL) else {
                return;
            };
            std::mem::swap(&mut *guard, &mut batch);
        }
        if batch.is_empty() {
            continue;
        }
        for event in batch.drain(..) {
            if serde_json::to_writer(&mut out, &event).is_ok() {
                let _ = out.write_all(b"\n");
            }
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
}
