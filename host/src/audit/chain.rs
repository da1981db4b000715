//! The hash chain and its seals: making lines from entries, their hashes and MACs, and finding
//! the end of an existing trail.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use super::event::Fields;
use super::journal::{Entry, for_each_entry};
use super::{AuditError, GENESIS};
use crate::secret::SecretBytes;

/// The sealed head, as `audit.head` stores it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    /// The seal line's position.
    pub seq: u64,
    /// The seal line's hash.
    pub hash: String,
    /// HMAC over both.
    pub mac: String,
}

/// A SHA-256 in lower-case hex, as lines carry it.
pub(super) type HexHash = [u8; 64];

/// Makes chained lines from entries: the appender's, the preparer's, a start's after a crash,
/// and [`verify`]'s for what the journal holds.
#[derive(Debug, Clone)]
pub(super) struct Chain {
    /// The last line's seq.
    pub(super) seq: u64,
    /// The last line's hash.
    pub(super) head: HexHash,
    /// The last seal line made: its seq and hash.
    pub(super) last_seal: Option<(u64, HexHash)>,
}

impl Chain {
    pub(super) fn new(seq: u64, head: &str) -> Result<Self, AuditError> {
        Ok(Self {
            seq,
            head: head
                .as_bytes()
                .try_into()
                .map_err(|_| AuditError("the audit trail's last hash is malformed".into()))?,
            last_seal: None,
        })
    }

    pub(super) fn head_str(&self) -> &str {
        std::str::from_utf8(&self.head).unwrap_or(GENESIS)
    }

    /// Appends to `out` the line (with its newline) that `entry` makes next in the chain; a
    /// seal's carries a MAC with `key` over its seq and the hash before it.
    pub(super) fn line(
        &mut self,
        entry: Entry<'_>,
        key: &SecretBytes,
        out: &mut Vec<u8>,
    ) -> Result<(), AuditError> {
        let seq = entry.seq;
        if seq != self.seq + 1 {
            return Err(AuditError(format!(
                "journal entry {seq} does not follow line {}",
                self.seq
            )));
        }
        let mac;
        let fields = match entry.event {
            Some(fields) => fields,
            None => {
                mac = mac_hex(key.expose(), "seal", seq, self.head_str());
                Fields::seal(entry.time, &mac)
            }
        };
        let start = out.len();
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        out.push(b',');
        fields.write_members(out);
        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(&self.head);
        // The hash covers the line as a closed object without its hash member. One-shot:
        // a digest `Context` mallocs and frees its state (aws-lc's EVP_MD_CTX) every line.
        out.extend_from_slice(b"\"}");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &out[start..]);
        out.pop();
        let mut hash: HexHash = [0; 64];
        hex::encode_to_slice(digest.as_ref(), &mut hash).map_err(|e| AuditError(e.to_string()))?;
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(&hash);
        out.extend_from_slice(b"\"}\n");
        self.seq = seq;
        self.head = hash;
        if fields.seal.is_some() {
            self.last_seal = Some((seq, hash));
        }
        Ok(())
    }

    /// Appends to `out` the lines of the entries in `entries` (whole entries, back to back).
    pub(super) fn lines(
        &mut self,
        entries: &[u8],
        key: &SecretBytes,
        out: &mut Vec<u8>,
    ) -> Result<(), AuditError> {
        for_each_entry([entries, &[]], &mut Vec::new(), |entry| {
            self.line(entry, key, out)
        })
    }
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

pub(super) fn mac_hex(key: &[u8], what: &str, seq: u64, hash: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    hex::encode(
        aws_lc_rs::hmac::sign(&k, format!("arca-audit/{what}/1\n{seq}\n{hash}").as_bytes())
            .as_ref(),
    )
}

pub(super) fn mac_ok(key: &[u8], what: &str, seq: u64, hash: &str, mac: &str) -> bool {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let Ok(tag) = hex::decode(mac) else {
        return false;
    };
    aws_lc_rs::hmac::verify(
        &k,
        format!("arca-audit/{what}/1\n{seq}\n{hash}").as_bytes(),
        &tag,
    )
    .is_ok()
}

/// Splits a written line into the hashed body (re-closed) and its hash.
pub(super) fn split_line(line: &str) -> Option<(String, &str)> {
    let at = line.rfind(",\"hash\":\"")?;
    let hash = line[at + 9..].strip_suffix("\"}")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((format!("{}}}", &line[..at]), hash))
}

/// The `seq` and `hash` of the last complete line of an existing trail, cutting off a partial
/// last line (a power loss mid-write). `None` for an empty file.
pub(super) fn recover(file: &mut File) -> std::io::Result<Option<(u64, String)>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let tail = len.min(64 * 1024);
    file.seek(SeekFrom::Start(len - tail))?;
    let mut buf = Vec::with_capacity(usize::try_from(tail).unwrap_or(0));
    file.read_to_end(&mut buf)?;
    let complete = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if complete < buf.len() {
        let keep = len - tail + u64::try_from(complete).unwrap_or(0);
        tracing::warn!(
            cut = len - keep,
            "audit trail ended in a partial line; cut it off"
        );
        file.set_len(keep)?;
        buf.truncate(complete);
    }
    let text = String::from_utf8_lossy(&buf);
    let Some(last) = text.lines().next_back() else {
        return Ok(None);
    };
    match last_line(last) {
        Some(p) => Ok(Some(p)),
        None => Err(std::io::Error::other(
            "the last line of the audit trail is not a chained event; move the file aside",
        )),
    }
}

/// The `seq` and hash of a complete line.
pub(super) fn last_line(line: &str) -> Option<(u64, String)> {
    let (body, hash) = split_line(line)?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((v.get("seq")?.as_u64()?, hash.to_owned()))
}
