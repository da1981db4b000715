//! `arca audit verify`: the chain, the seals, the sealed head and the journal's tail, checked;
//! the first bad line named.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::GENESIS;
use super::chain::{Head, mac_ok, sha256_hex, split_line};
use super::head::{Anchor, GAP_ACTION};
use super::query::journal_beyond;
use crate::secret::SecretBytes;

/// What [`verify`] found in a trail that checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines read (events and seals), the journal's included.
    pub lines: u64,
    /// Seal lines among them.
    pub seals: u64,
    /// Lines after the last seal (not yet sealed; a crash or a stop within
    /// [`SEAL_INTERVAL`] leaves some).
    pub unsealed: u64,
    /// Lines that continue the trail from its journal: not yet in the trail file because the
    /// server is running or crashed within [`APPEND_INTERVAL`] of writing them. The next start
    /// appends them.
    pub in_journal: u64,
    /// The seqs of gap records ([`accept_gap`]): places where lines are known to be missing.
    pub gaps: Vec<u64>,
}

/// The first problem [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// The line's content does not match its hash.
    #[error("line {line} (seq {seq}): the content was altered (its hash does not match)")]
    Altered {
        /// 1-based line number.
        line: u64,
        /// The seq the line claims, if readable.
        seq: u64,
    },
    /// The line is not where the chain says it should be.
    #[error(
        "line {line}: expected seq {expected}, found seq {found}: lines were deleted, inserted or reordered"
    )]
    OutOfOrder {
        /// 1-based line number.
        line: u64,
        /// The seq that should be here.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// The line does not follow the previous line's hash.
    #[error("line {line} (seq {seq}): it does not follow the line before it (a line was replaced)")]
    Unlinked {
        /// 1-based line number.
        line: u64,
        /// Its seq.
        seq: u64,
    },
    /// A seal's MAC does not verify: the lines before it were rewritten with recomputed
    /// hashes, or the key is not this trail's.
    #[error(
        "line {line} (seq {seq}): the seal does not verify: the lines it covers were rewritten, or the root key is not this trail's"
    )]
    BadSeal {
        /// 1-based line number.
        line: u64,
        /// Its seq.
        seq: u64,
    },
    /// A line is not a chained audit line at all.
    #[error("line {line}: not an audit line")]
    Malformed {
        /// 1-based line number.
        line: u64,
    },
    /// The file ends before the sealed head.
    #[error("the trail ends at seq {last}, but seq {sealed} was sealed: it was truncated")]
    Truncated {
        /// The last seq in the file.
        last: u64,
        /// The sealed head's seq.
        sealed: u64,
    },
    /// The trail does not hold the anchored line (a head recorded outside the machine): it
    /// was rolled back, or rewritten from there on.
    #[error(
        "the trail does not hold the anchored line seq {seq} with the anchored hash: it was rolled back or rewritten"
    )]
    AnchorMissing {
        /// The anchor's seq.
        seq: u64,
    },
    /// The head file's MAC does not verify, or its line differs.
    #[error("the sealed head (audit.head) does not match the trail or does not verify")]
    BadHead,
    /// The files could not be read.
    #[error("cannot read the trail: {0}")]
    Unreadable(String),
}

/// Checks the trail at `log` against its chain, its seals and the sealed head in `head`
/// (absent: the trail was never sealed), with the seal key; then the lines its journal holds
/// beyond its end, as lines of the same chain. The sealed head must be in the trail file
/// itself: a seal is appended and fsynced before the head names it, so a file that ends before
/// the head was cut short, whatever the journal holds.
pub fn verify(log: &Path, head: &Path, key: &SecretBytes) -> Result<Verified, Tamper> {
    verify_anchored(log, head, key, None)
}

/// [`verify`], and the trail must also hold the line `anchor` names: a head recorded outside
/// the machine earlier, which catches a rollback of the trail and its head file together.
pub fn verify_anchored(
    log: &Path,
    head: &Path,
    key: &SecretBytes,
    anchor: Option<&Anchor>,
) -> Result<Verified, Tamper> {
    let sealed: Option<Head> = match std::fs::read(head) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|_| Tamper::BadHead)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Tamper::Unreadable(e.to_string())),
    };
    if let Some(h) = &sealed
        && !mac_ok(key.expose(), "head", h.seq, &h.hash, &h.mac)
    {
        return Err(Tamper::BadHead);
    }
    let mut reader =
        BufReader::new(File::open(log).map_err(|e| Tamper::Unreadable(e.to_string()))?);
    let mut walk = Walk {
        key,
        sealed: sealed.as_ref(),
        prev: GENESIS.to_owned(),
        lines: 0,
        seals: 0,
        since_seal: 0,
        head_seen: false,
        anchor,
        anchor_seen: false,
        gaps: Vec::new(),
    };
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| Tamper::Unreadable(e.to_string()))?;
        // The end, or a line the running server is still writing.
        if n == 0 || raw.last() != Some(&b'\n') {
            break;
        }
        let line = walk.lines + 1;
        let text = std::str::from_utf8(&raw[..n - 1]).map_err(|_| Tamper::Malformed { line })?;
        walk.line(text)?;
    }
    if let Some(h) = &sealed
        && !walk.head_seen
    {
        return Err(Tamper::Truncated {
            last: walk.lines,
            sealed: h.seq,
        });
    }
    let in_file = walk.lines;
    let journal = journal_beyond(log, walk.lines, Some((&walk.prev, key)))
        .map_err(|e| Tamper::Unreadable(e.to_string()))?;
    for text in &journal {
        walk.line(text)?;
    }
    if let Some(a) = anchor
        && !walk.anchor_seen
    {
        return Err(Tamper::AnchorMissing { seq: a.seq });
    }
    Ok(Verified {
        gaps: walk.gaps,
        lines: walk.lines,
        seals: walk.seals,
        unsealed: walk.since_seal,
        in_journal: walk.lines - in_file,
    })
}

/// [`verify`]'s state along the chain.
pub(super) struct Walk<'a> {
    pub(super) key: &'a SecretBytes,
    pub(super) sealed: Option<&'a Head>,
    /// The last line's hash.
    pub(super) prev: String,
    pub(super) lines: u64,
    pub(super) seals: u64,
    pub(super) since_seal: u64,
    pub(super) head_seen: bool,
    pub(super) anchor: Option<&'a Anchor>,
    pub(super) anchor_seen: bool,
    pub(super) gaps: Vec<u64>,
}

impl Walk<'_> {
    /// Checks the next line (without its newline).
    pub(super) fn line(&mut self, text: &str) -> Result<(), Tamper> {
        let line = self.lines + 1;
        let (body, hash) = split_line(text).ok_or(Tamper::Malformed { line })?;
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| Tamper::Malformed { line })?;
        let seq = value
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or(Tamper::Malformed { line })?;
        if sha256_hex(body.as_bytes()) != hash {
            return Err(Tamper::Altered { line, seq });
        }
        if seq != line {
            return Err(Tamper::OutOfOrder {
                line,
                expected: line,
                found: seq,
            });
        }
        if value.get("prev").and_then(serde_json::Value::as_str) != Some(self.prev.as_str()) {
            return Err(Tamper::Unlinked { line, seq });
        }
        if let Some(mac) = value.get("seal").and_then(serde_json::Value::as_str) {
            if !mac_ok(self.key.expose(), "seal", seq, &self.prev, mac) {
                return Err(Tamper::BadSeal { line, seq });
            }
            self.seals += 1;
            self.since_seal = 0;
        } else {
            self.since_seal += 1;
        }
        if let Some(a) = self.anchor
            && a.seq == seq
        {
            if a.hash != hash {
                return Err(Tamper::AnchorMissing { seq });
            }
            self.anchor_seen = true;
        }
        // A request's event always has a request id and an error code from a closed set, so
        // no request can pass for a gap record.
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
        if field("action") == Some(GAP_ACTION)
            && field("result") == Some("Gap")
            && field("request_id") == Some("")
        {
            self.gaps.push(seq);
        }
        if let Some(h) = self.sealed
            && h.seq == seq
        {
            if h.hash != hash {
                return Err(Tamper::BadHead);
            }
            self.head_seen = true;
        }
        hash.clone_into(&mut self.prev);
        self.lines = line;
        Ok(())
    }
}
