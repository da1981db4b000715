//! The audit trail: one JSON line per API call, success or failure, appended off the request
//! path by a dedicated writer thread.
//!
//! Events carry who, what, on which resource and with what result, never key material,
//! plaintext, secrets or signatures; [`AuditEvent`] has no field that could hold them. Hash
//! chaining, signed heads and group-committed durability are the hardening issue's work; this is
//! the plain append the pipeline already feeds.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;

use serde::Serialize;

/// One audited call.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// UTC time of the reply.
    pub time: String,
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
    pub result: String,
    /// The HTTP status.
    pub status: u16,
}

/// A handle for appending events.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEvent>,
}

impl AuditLog {
    /// Opens (appending) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("arca-audit".into())
            .spawn(move || write_loop(file, &rx))?;
        Ok(Self { tx })
    }

    /// Queues an event. Never blocks the request.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.send(event).is_err() {
            tracing::error!("audit writer has stopped; event lost");
        }
    }
}

fn write_loop(file: File, rx: &mpsc::Receiver<AuditEvent>) {
    let mut out = BufWriter::new(file);
    while let Ok(first) = rx.recv() {
        let mut event = Some(first);
        // Drain what is queued, then flush once: one write per burst, not per event.
        while let Some(e) = event {
            if let Ok(line) = serde_json::to_string(&e) {
                let _ = writeln!(out, "{line}");
            }
            event = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
}
