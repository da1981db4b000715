//! The audit trail: one hash-chained JSON line per API call (success, failure or denial),
//! written before the reply, and sealed with a MAC under a key derived from the root key.
//!
//! Events carry who, what, on which resource and with what result, never key material,
//! plaintext, secrets or signatures; [`AuditEvent`] has no field that could hold them.
//!
//! Each line is `{"seq":N, …event…, "prev":"<hash of line N-1>", "hash":"<SHA-256 of the line
//! without its hash>"}`, so editing, deleting or reordering a line breaks the chain at that
//! line. Because the hashes are unkeyed, someone who rewrites the file could recompute them:
//! every [`SEAL_INTERVAL`] a seal line joins the chain carrying an HMAC over its position and
//! the hash before it, and the sealed head (seq, hash, MAC) is written to `audit.head`. A
//! rewrite then fails at the first seal after it, and cutting the file short leaves it before
//! the sealed head. [`verify`] checks all of this and names the first bad line.
//!
//! Durability: before its reply goes out, a request's event is copied into the journal
//! (`audit.journal`), a file mapped shared into memory, as a raw entry (its fields framed,
//! numbered and checksummed): the copy is in the kernel's page cache, so a crash of the process
//! at any instant loses no event of a reply already sent, and the next start appends what the
//! journal holds beyond the trail's end. The appender thread appends chained lines to
//! `audit.log` every [`APPEND_INTERVAL`], and seals every [`SEAL_INTERVAL`]; the trail is
//! fsynced at every seal, so a power loss can lose at most the lines since the last seal (about
//! 350 ms at worst, see [`SEAL_WAIT`]), and a seal never covers lines that are not on disk. The
//! lines themselves are made, where the platform allows, by a preparer thread at idle priority
//! that uses CPU no request wants; the appender never waits for it, and makes what it has not
//! made when a seal or a filling journal cannot wait. An fsync before each reply would cost a
//! 0.4 ms disk flush per request on this class of machine; a `write(2)` per request with its
//! group-commit waits cost 13–18% of Encrypt throughput at 4 connections, and making each line
//! and its hash on the request path about 10% (docs/benchmarks.md).

use std::time::Duration;

mod chain;
mod event;
mod head;
mod journal;
mod query;
#[cfg(test)]
mod tests;
mod verify;
mod writer;
pub use chain::Head;
pub use event::{AuditEvent, MAX_FIELD};
pub use head::{Anchor, GAP_ACTION, Gap, Standing, accept_gap, sealed_head};
pub use query::{Query, query};
pub use verify::{Tamper, Verified, verify, verify_anchored};
pub use writer::{AuditLog, AuditStatus};

/// How often the trail is fsynced and sealed when it has new lines.
pub const SEAL_INTERVAL: Duration = Duration::from_millis(200);
/// The `prev` of the first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The environment variable without which a build with the `unaudited-benchmark-baseline`
/// feature refuses to open its trail (and so to start).
pub const UNAUDITED_CONSENT: &str = "ARCA_UNAUDITED_BENCHMARK_BASELINE";
/// What a seal line's `action` says.
pub const SEAL_ACTION: &str = "AuditSeal";
/// The audit trail could not be written; the request must not be answered as a success.
#[derive(Debug, thiserror::Error)]
#[error("audit trail: {0}")]
pub struct AuditError(String);

fn poisoned<T>(_: T) -> AuditError {
    AuditError("lock poisoned".into())
}
