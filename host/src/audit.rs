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

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;

use crate::secret::SecretBytes;

mod head;
pub use head::{Anchor, GAP_ACTION, Gap, Standing, accept_gap, sealed_head};

/// How often the trail is fsynced and sealed when it has new lines.
pub const SEAL_INTERVAL: Duration = Duration::from_millis(200);
/// The `prev` of the first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The environment variable without which a build with the `unaudited-benchmark-baseline`
/// feature refuses to open its trail (and so to start).
pub const UNAUDITED_CONSENT: &str = "ARCA_UNAUDITED_BENCHMARK_BASELINE";
/// What a seal line's `action` says.
pub const SEAL_ACTION: &str = "AuditSeal";

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
    /// The AccessKey or client key that signed the request, once known.
    pub access_key_id: Option<String>,
    /// The peer address.
    pub source_ip: String,
    /// The resource the request named, as an ARN where it names one.
    pub resource: Option<String>,
    /// The key version a cryptographic call used, if any.
    pub key_version: Option<String>,
    /// `OK` or the error `Code`.
    pub result: &'static str,
    /// The HTTP status.
    pub status: u16,
}

fn utc<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    with_utc(*t, |text| s.serialize_str(text))
}

/// Calls `f` with `t` formatted as the trail writes times. Events come thousands a second and
/// times have whole seconds: each second is formatted once per thread.
fn with_utc<R>(t: OffsetDateTime, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with_borrow_mut(|(second, text)| {
        let now = t.unix_timestamp();
        if *second != now {
            *second = now;
            *text = crate::clock::format_utc(t);
        }
        f(text)
    })
}

/// An event's fields as a line carries them between its `seq` and its `prev`. Serialisable
/// in tests, where serde's output is the reference for [`Fields::write_members`].
#[cfg_attr(test, derive(Serialize))]
struct Fields<'a> {
    #[cfg_attr(test, serde(serialize_with = "utc"))]
    time: OffsetDateTime,
    request_id: &'a str,
    action: &'a str,
    account: Option<&'a str>,
    access_key_id: Option<&'a str>,
    source_ip: &'a str,
    resource: Option<&'a str>,
    key_version: Option<&'a str>,
    result: &'a str,
    status: u16,
    /// A seal line's MAC; the member is left out of event lines.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    seal: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// A seal line's fields, with its MAC.
    fn seal(time: OffsetDateTime, mac: &'a str) -> Self {
        Self {
            time,
            request_id: "",
            action: SEAL_ACTION,
            account: None,
            access_key_id: None,
            source_ip: "",
            resource: None,
            key_version: None,
            result: "OK",
            status: 0,
            seal: Some(mac),
        }
    }

    /// Appends the fields to `out` as JSON object members (`"time":…,"status":200`), byte for
    /// byte as `serde_json` writes the same struct (a test checks). Written by hand: serde's
    /// derived writer cost 0.08 µs more per line, a tenth of the appender's work then.
    fn write_members(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"time\":");
        with_utc(self.time, |text| json_str(out, text));
        let strings: [(&[u8], Option<&str>); 8] = [
            (b",\"request_id\":", Some(self.request_id)),
            (b",\"action\":", Some(self.action)),
            (b",\"account\":", self.account),
            (b",\"access_key_id\":", self.access_key_id),
            (b",\"source_ip\":", Some(self.source_ip)),
            (b",\"resource\":", self.resource),
            (b",\"key_version\":", self.key_version),
            (b",\"result\":", Some(self.result)),
        ];
        for (name, value) in strings {
            out.extend_from_slice(name);
            match value {
                Some(s) => json_str(out, s),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        if let Some(mac) = self.seal {
            out.extend_from_slice(b",\"seal\":");
            json_str(out, mac);
        }
    }
}

/// Appends `s` as a JSON string. Strings that need no escape (nearly all: ids, names, ARNs)
/// are copied as they are; others go through `serde_json`'s escaper.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // No early exit: the compiler turns this into a vector loop.
    let plain = !s.bytes().fold(false, |odd, b| {
        odd | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

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

/// The audit trail could not be written; the request must not be answered as a success.
#[derive(Debug, thiserror::Error)]
#[error("audit trail: {0}")]
pub struct AuditError(String);

/// A SHA-256 in lower-case hex, as lines carry it.
type HexHash = [u8; 64];

/// The journal's ring size. At 40,000 events a second (about 260 bytes each) it holds 1.6 s
/// of events: thirty appender rounds, more than an fsync of the trail keeps the appender away.
const JOURNAL_BYTES: usize = 16 << 20;
/// The journal file's first page, before the ring: it holds where the appender last took
/// entries from (a little-endian `u64` byte count), where a start after a crash reads from.
const JOURNAL_HEADER: usize = 4096;
/// How often the appender moves events from the journal to the trail file. Events are durable
/// against a crash of the process once in the journal; this is only how soon readers of the
/// trail file see them. Waking more often costs throughput: at 2 ms, a 2-vCPU machine lost
/// 10% more Encrypt requests/s to the appender's wake-ups than at 50 ms
/// (docs/benchmarks.md).
const APPEND_INTERVAL: Duration = Duration::from_millis(50);

/// How an entry in the journal starts.
const ENTRY_MAGIC: [u8; 4] = *b"AJE1";
/// An entry's header: the magic, the entry's whole length (`u32`), its seq (`u64`) and a
/// CRC-32 of the rest of the entry followed by the seq (`u32`), all little-endian.
const ENTRY_HEADER: usize = 20;
/// The first byte after the header: an event, whose fields follow, or a seal.
const KIND_EVENT: u8 = 0;
const KIND_SEAL: u8 = 1;
/// The length an absent optional field is written with.
const ABSENT: u32 = u32::MAX;

/// Where events wait between their request and the trail file: a file of fixed size, mapped
/// shared into the server's memory, whose ring holds entries (an event's raw fields, framed,
/// numbered and checksummed). Copying an entry in is a `memcpy` into the kernel's page cache:
/// it survives a crash of the process as a `write(2)` would, without the system call, a wait
/// for a writer, or making the JSON line and its hash on the request path (measured there,
/// those cost 7% of Encrypt throughput; done in batches by the appender they cost a fraction
/// of it). The appender turns entries into chained lines, writes them to the trail file, and
/// frees the entries' space only once the lines are written; a start after a crash does the
/// same for the entries the journal holds beyond the trail's end.
///
/// The ring's bytes are only touched in two ways, and never the same bytes at once: callers
/// copy entries into the free space after `put`, under the ring lock, and the appender reads
/// the entries between `taken` and `put` (whose bounds it read under that lock), which no
/// caller writes until `taken` moves past them, again under the lock. The header is written
/// by the appender alone.
#[derive(Debug)]
struct Journal {
    map: memmap2::MmapRaw,
}

impl Journal {
    fn capacity(&self) -> u64 {
        (self.map.len() - JOURNAL_HEADER) as u64
    }

    /// Copies `entry` into the ring at byte `at` (counted from the ring's first use; wraps).
    /// The caller holds the ring lock and has checked that the bytes are free.
    #[allow(
        unsafe_code,
        reason = "the ring is written through a raw pointer while the appender reads other parts of it"
    )]
    fn write_at(&self, at: u64, entry: &[u8]) {
        let ring = self.map.len() - JOURNAL_HEADER;
        let at = (at % self.capacity()) as usize;
        let first = entry.len().min(ring - at);
        // SAFETY: `JOURNAL_HEADER + at + first <= len` and `entry.len() - first <= at` (an
        // entry is never longer than the ring), so both copies stay inside the ring; the bytes
        // are free (see the type's doc), so nobody reads or writes them meanwhile; `entry` is
        // not in the ring.
        unsafe {
            let base = self.map.as_mut_ptr().add(JOURNAL_HEADER);
            std::ptr::copy_nonoverlapping(entry.as_ptr(), base.add(at), first);
            std::ptr::copy_nonoverlapping(entry.as_ptr().add(first), base, entry.len() - first);
        }
    }

    /// The ring's bytes from `from` to `to` (counted as in [`Self::write_at`]; at most the
    /// ring's size apart), as up to two slices. The caller read both bounds under the ring
    /// lock and keeps `taken` at `from` until it is done with them.
    #[allow(
        unsafe_code,
        reason = "the appender reads entries in the ring while callers write other parts of it"
    )]
    fn entries(&self, from: u64, to: u64) -> [&[u8]; 2] {
        let ring = self.map.len() - JOURNAL_HEADER;
        let at = (from % self.capacity()) as usize;
        let n = (to - from) as usize;
        let first = n.min(ring - at);
        // SAFETY: both ranges lie inside the ring (`at + first <= ring`, `n - first <=
        // ring`), and they hold entries no caller writes until `taken` moves past `to` (see
        // the type's doc), which cannot happen while these borrows of `self` live in the one
        // appender that moves it.
        unsafe {
            let base = self.map.as_ptr().add(JOURNAL_HEADER);
            [
                std::slice::from_raw_parts(base.add(at), first),
                std::slice::from_raw_parts(base, n - first),
            ]
        }
    }

    /// Records in the header that entries before byte `taken` are in the trail file, for a
    /// start after a crash to read from there. Called by the appender alone (under its lock),
    /// after the write and before the space is freed, so the entries from there on are intact.
    #[allow(
        unsafe_code,
        reason = "the header is written through a raw pointer into the shared mapping"
    )]
    fn set_taken(&self, taken: u64) {
        let bytes = taken.to_le_bytes();
        // SAFETY: the header lies inside the mapping (its first `JOURNAL_HEADER` bytes); only
        // the appender, holding its lock, writes it, and nothing in the process reads it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr(), bytes.len());
        }
    }
}

/// The most bytes of one field an event keeps: with JSON's escapes (at most six bytes for one)
/// and the fixed members, no line is longer than about 30 KiB, whatever a request carried.
pub const MAX_FIELD: usize = 512;

/// `s` cut to at most [`MAX_FIELD`] bytes, at a character boundary.
fn bounded(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes `event` as a journal entry into `out`, its seq and CRC left for [`Ring::push`], and
/// returns the CRC state over what follows the header. Done outside the ring lock.
fn encode(event: &AuditEvent, out: &mut Vec<u8>) -> Result<crc32fast::Hasher, AuditError> {
    fn string(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), AuditError> {
        let Some(s) = s else {
            out.extend_from_slice(&ABSENT.to_le_bytes());
            return Ok(());
        };
        let s = bounded(s);
        let n = u32::try_from(s.len())
            .ok()
            .filter(|n| *n != ABSENT)
            .ok_or_else(|| AuditError("an event field is too long".into()))?;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        Ok(())
    }
    begin(out, KIND_EVENT, event.time, event.status);
    string(out, Some(&event.request_id))?;
    string(out, Some(&event.action))?;
    string(out, event.account.as_deref())?;
    string(out, event.access_key_id.as_deref())?;
    string(out, Some(&event.source_ip))?;
    string(out, event.resource.as_deref())?;
    string(out, event.key_version.as_deref())?;
    string(out, Some(event.result))?;
    finish(out)
}

/// A seal's entry: the appender makes its line (and MAC) once the lines before it are made.
fn encode_seal(out: &mut Vec<u8>) -> Result<crc32fast::Hasher, AuditError> {
    begin(out, KIND_SEAL, OffsetDateTime::now_utc(), 0);
    finish(out)
}

fn begin(out: &mut Vec<u8>, kind: u8, time: OffsetDateTime, status: u16) {
    out.clear();
    out.extend_from_slice(&ENTRY_MAGIC);
    out.resize(ENTRY_HEADER, 0);
    out.push(kind);
    out.extend_from_slice(&time.unix_timestamp().to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
}

fn finish(out: &mut [u8]) -> Result<crc32fast::Hasher, AuditError> {
    let len = u32::try_from(out.len()).map_err(|_| AuditError("an event is too long".into()))?;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[ENTRY_HEADER..]);
    Ok(crc)
}

/// An entry read back from the journal.
struct Entry<'a> {
    seq: u64,
    /// Its length in the ring.
    len: usize,
    time: OffsetDateTime,
    /// The event's fields; `None` for a seal.
    event: Option<Fields<'a>>,
}

/// Reads the entry at the start of `bytes`; `None` unless a whole, intact entry is there
/// (zeroes, a copy torn by a crash, or the middle of an earlier lap's entry are not).
fn decode(bytes: &[u8]) -> Option<Entry<'_>> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = self.0.split_at_checked(n)?;
            self.0 = rest;
            Some(head)
        }
        fn string(&mut self) -> Option<Option<&'a str>> {
            let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
            if n == ABSENT {
                return Some(None);
            }
            std::str::from_utf8(self.take(usize::try_from(n).ok()?)?)
                .ok()
                .map(Some)
        }
    }
    if bytes.get(..4)? != ENTRY_MAGIC {
        return None;
    }
    let len = usize::try_from(u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?)).ok()?;
    let entry = bytes.get(..len)?;
    let seq = entry.get(8..16)?;
    let crc = u32::from_le_bytes(entry.get(16..ENTRY_HEADER)?.try_into().ok()?);
    let mut check = crc32fast::Hasher::new();
    check.update(&entry[ENTRY_HEADER..]);
    check.update(seq);
    if check.finalize() != crc {
        return None;
    }
    let seq = u64::from_le_bytes(seq.try_into().ok()?);
    let mut r = Reader(&entry[ENTRY_HEADER..]);
    let kind = r.take(1)?[0];
    let time = OffsetDateTime::from_unix_timestamp(i64::from_le_bytes(r.take(8)?.try_into().ok()?))
        .ok()?;
    let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let event = match kind {
        KIND_SEAL => None,
        KIND_EVENT => Some(Fields {
            time,
            request_id: r.string()??,
            action: r.string()??,
            account: r.string()?,
            access_key_id: r.string()?,
            source_ip: r.string()??,
            resource: r.string()?,
            key_version: r.string()?,
            result: r.string()??,
            status,
            seal: None,
        }),
        _ => return None,
    };
    Some(Entry {
        seq,
        len,
        time,
        event,
    })
}

/// The request side of the journal. Entries are numbered and copied in under the lock; the
/// appender makes their lines outside it.
#[derive(Debug)]
struct Ring {
    /// The last entry's seq: the chain's length once the appender has caught up.
    seq: u64,
    /// Bytes ever put in the journal; the next entry goes there.
    put: u64,
    /// Bytes ever taken out of the journal (written to the trail); `taken..put` is in use.
    taken: u64,
    /// Events since the last seal.
    unsealed: u64,
    /// Set once a write failed: the trail refuses further events rather than leave a gap.
    broken: Option<String>,
}

impl Ring {
    /// Numbers `entry` (from [`encode`], whose CRC state is `crc`) as the next seq and copies
    /// it into `journal`; returns its seq, or `None` (and the ring unchanged) when the journal
    /// is full.
    fn push(
        &mut self,
        journal: &Journal,
        entry: &mut [u8],
        crc: &crc32fast::Hasher,
    ) -> Result<Option<u64>, AuditError> {
        if let Some(why) = &self.broken {
            return Err(AuditError(why.clone()));
        }
        if entry.len() <= ENTRY_HEADER {
            return Err(AuditError("a journal entry is malformed".into()));
        }
        let n = entry.len() as u64;
        if n > journal.capacity() {
            return Err(AuditError("an event is larger than the journal".into()));
        }
        if self.put - self.taken + n > journal.capacity() {
            return Ok(None);
        }
        let seq = self.seq + 1;
        let mut crc = crc.clone();
        crc.update(&seq.to_le_bytes());
        entry[8..16].copy_from_slice(&seq.to_le_bytes());
        entry[16..ENTRY_HEADER].copy_from_slice(&crc.finalize().to_le_bytes());
        journal.write_at(self.put, entry);
        self.put += n;
        self.seq = seq;
        if entry[ENTRY_HEADER] == KIND_SEAL {
            self.unsealed = 0;
        } else {
            self.unsealed += 1;
        }
        Ok(Some(seq))
    }
}

/// Makes chained lines from entries: the appender's, the preparer's, a start's after a crash,
/// and [`verify`]'s for what the journal holds.
#[derive(Debug, Clone)]
struct Chain {
    /// The last line's seq.
    seq: u64,
    /// The last line's hash.
    head: HexHash,
    /// The last seal line made: its seq and hash.
    last_seal: Option<(u64, HexHash)>,
}

impl Chain {
    fn new(seq: u64, head: &str) -> Result<Self, AuditError> {
        Ok(Self {
            seq,
            head: head
                .as_bytes()
                .try_into()
                .map_err(|_| AuditError("the audit trail's last hash is malformed".into()))?,
            last_seal: None,
        })
    }

    fn head_str(&self) -> &str {
        std::str::from_utf8(&self.head).unwrap_or(GENESIS)
    }

    /// Appends to `out` the line (with its newline) that `entry` makes next in the chain; a
    /// seal's carries a MAC with `key` over its seq and the hash before it.
    fn line(
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
    fn lines(
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

/// The trail file and the chain's end: one appender at a time (the background thread, or a
/// seal asked for at shutdown).
#[derive(Debug)]
struct Appender {
    file: File,
    chain: Chain,
    /// An entry that wraps around the ring's end, put back together; reused.
    scratch: Vec<u8>,
    /// Lines waiting to be written, at most about [`WRITE_CHUNK`]; reused.
    lines: Vec<u8>,
}

/// How many bytes of lines the appender makes before it writes them. Small enough that the
/// lines are still in the CPU's cache when the kernel copies them. A first build copied a
/// whole round's entries out of the ring and made all their lines (about 1 MB at 40,000
/// events a second) before one write; it cut Encrypt no less than making lines on the request
/// path had (docs/benchmarks.md).
const WRITE_CHUNK: usize = 64 << 10;

/// Calls `f` with each entry of the ring's bytes `parts` (from [`Journal::entries`]), whole
/// entries back to back; one that wraps around the ring's end is put together in `scratch`.
fn for_each_entry(
    parts: [&[u8]; 2],
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(Entry<'_>) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let unreadable = || AuditError("a journal entry is unreadable".into());
    let [first, second] = parts;
    let mut at = 0;
    let mut resume = 0;
    while at < first.len() {
        let rest = &first[at..];
        if let Some(entry) = decode(rest) {
            at += entry.len;
            f(entry)?;
            continue;
        }
        // The entry goes on at the ring's start.
        scratch.clear();
        scratch.extend_from_slice(rest);
        scratch.extend_from_slice(
            second
                .get(..8usize.saturating_sub(rest.len()))
                .ok_or_else(unreadable)?,
        );
        let len = scratch
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(unreadable)?;
        resume = len.checked_sub(rest.len()).ok_or_else(unreadable)?;
        scratch.truncate(rest.len());
        scratch.extend_from_slice(second.get(..resume).ok_or_else(unreadable)?);
        f(decode(scratch).ok_or_else(unreadable)?)?;
        break;
    }
    let mut at = resume;
    while at < second.len() {
        let entry = decode(&second[at..]).ok_or_else(unreadable)?;
        at += entry.len;
        f(entry)?;
    }
    Ok(())
}

#[derive(Debug)]
struct Shared {
    ring: Mutex<Ring>,
    journal: Journal,
    appender: Mutex<Appender>,
    /// The appender thread, to wake it early when the journal is full.
    thread: std::sync::OnceLock<std::thread::Thread>,
    /// Callers waiting for room in a full journal (the appender is behind).
    room: tokio::sync::Notify,
    key: SecretBytes,
    head_path: PathBuf,
    /// The idle-priority thread that makes lines for the appender, where the platform lets
    /// a thread run at idle priority; without it the appender makes every line itself.
    preparer: Option<(Arc<Preparer>, std::thread::Thread)>,
    /// Lines written, by who made them.
    made: Made,
    /// The sealed head as last written, for `/status` and `/metrics`.
    sealed: Mutex<Option<Head>>,
}

/// Lines written since the start, by who made them: whether the preparer keeps up shows in
/// `/metrics`.
#[derive(Debug, Default)]
struct Made {
    by_appender: std::sync::atomic::AtomicU64,
    by_preparer: std::sync::atomic::AtomicU64,
}

/// How long a seal put in the journal may wait for the preparer to make its line before the
/// appender makes the pending lines itself, fsyncs and writes the head. With the appender's
/// rounds, a power loss can take at most about 350 ms of events: 200 ms between seals, this,
/// and a round.
const SEAL_WAIT: Duration = Duration::from_millis(100);

/// What the appender hands the preparer and what it hands back. The appender only ever
/// `try_lock`s it, so it never waits for the preparer, which may not run for a long time
/// while other work keeps every core busy.
#[derive(Debug, Default)]
struct Handoff {
    /// Entries to make lines of, copied out of the ring.
    job: Option<Job>,
    /// The preparer took a job and has not handed its lines back yet.
    busy: bool,
    /// Lines made, waiting for the appender.
    done: Option<Prepared>,
}

/// Entries copied out of the ring bytes `from..to`, and the chain's end they continue.
#[derive(Debug)]
struct Job {
    chain: Chain,
    from: u64,
    to: u64,
    entries: Vec<u8>,
}

/// A job's lines, with the chain's end before and after them.
#[derive(Debug)]
struct Prepared {
    before: (u64, HexHash),
    chain: Chain,
    from: u64,
    to: u64,
    lines: Vec<u8>,
}

/// The preparer's side: the handoff, and the seal key (to make seal lines).
#[derive(Debug)]
struct Preparer {
    handoff: Mutex<Handoff>,
    key: SecretBytes,
}

/// A handle for appending events.
#[derive(Debug, Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn mac_hex(key: &[u8], what: &str, seq: u64, hash: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    hex::encode(
        aws_lc_rs::hmac::sign(&k, format!("arca-audit/{what}/1\n{seq}\n{hash}").as_bytes())
            .as_ref(),
    )
}

fn mac_ok(key: &[u8], what: &str, seq: u64, hash: &str, mac: &str) -> bool {
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
fn split_line(line: &str) -> Option<(String, &str)> {
    let at = line.rfind(",\"hash\":\"")?;
    let hash = line[at + 9..].strip_suffix("\"}")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((format!("{}}}", &line[..at]), hash))
}

/// The `seq` and `hash` of the last complete line of an existing trail, cutting off a partial
/// last line (a power loss mid-write). `None` for an empty file.
fn recover(file: &mut File) -> std::io::Result<Option<(u64, String)>> {
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

fn poisoned<T>(_: T) -> AuditError {
    AuditError("lock poisoned".into())
}

impl Shared {
    /// Moves the journal's entries to the trail file as chained lines, and frees their space
    /// once the lines are written.
    fn append(&self, out: &mut Appender) -> Result<(), AuditError> {
        let (from, to) = {
            let ring = self.ring.lock().map_err(poisoned)?;
            if let Some(why) = &ring.broken {
                return Err(AuditError(why.clone()));
            }
            (ring.taken, ring.put)
        };
        if from == to {
            return Ok(());
        }
        let Appender {
            file,
            chain,
            scratch,
            lines,
        } = out;
        let seq = chain.seq;
        lines.clear();
        let mut write = |lines: &mut Vec<u8>| {
            let wrote = file.write_all(lines);
            lines.clear();
            wrote.map_err(|e| AuditError(format!("write failed: {e}")))
        };
        let written = for_each_entry(self.journal.entries(from, to), scratch, |entry| {
            chain.line(entry, &self.key, lines)?;
            if lines.len() >= WRITE_CHUNK {
                write(lines)?;
            }
            Ok(())
        })
        .and_then(|()| write(lines));
        if let Err(e) = written {
            return Err(self.stop(e));
        }
        self.made
            .by_appender
            .fetch_add(chain.seq - seq, std::sync::atomic::Ordering::Relaxed);
        self.free(to)
    }

    /// A write failed, and part of a batch may be in the file: refuses further events rather
    /// than chain onto an unknown state. The entries stay in the journal, and a restart cuts
    /// the partial line off and appends them from there.
    fn stop(&self, e: AuditError) -> AuditError {
        if let Ok(mut ring) = self.ring.lock() {
            ring.broken = Some(e.0.clone());
        }
        self.room.notify_waiters();
        e
    }

    /// The entries before ring byte `taken` are in the trail file: frees their space.
    fn free(&self, taken: u64) -> Result<(), AuditError> {
        self.journal.set_taken(taken);
        self.ring.lock().map_err(poisoned)?.taken = taken;
        self.room.notify_waiters();
        Ok(())
    }

    /// One round of the appender thread. With a preparer: writes the lines it handed back,
    /// if they still continue the chain, and hands it the entries that wait in the journal;
    /// but when `urgent`, makes their lines itself (a job the preparer is still on then goes
    /// stale, and its lines are dropped).
    fn round(&self, out: &mut Appender, urgent: bool) -> Result<(), AuditError> {
        let Some((preparer, thread)) = &self.preparer else {
            return self.append(out);
        };
        let Ok(mut handoff) = preparer.handoff.try_lock() else {
            return if urgent { self.append(out) } else { Ok(()) };
        };
        if let Some(done) = handoff.done.take() {
            self.write_prepared(out, done)?;
        }
        if urgent {
            drop(handoff);
            return self.append(out);
        }
        if handoff.busy || handoff.job.is_some() {
            return Ok(());
        }
        let (from, to) = {
            let ring = self.ring.lock().map_err(poisoned)?;
            (ring.taken, ring.put)
        };
        if from == to {
            return Ok(());
        }
        // The entries stay in the ring (and `taken` at `from`) until their lines are written.
        let [first, second] = self.journal.entries(from, to);
        let mut entries = Vec::with_capacity(first.len() + second.len());
        entries.extend_from_slice(first);
        entries.extend_from_slice(second);
        handoff.job = Some(Job {
            chain: out.chain.clone(),
            from,
            to,
            entries,
        });
        drop(handoff);
        thread.unpark();
        Ok(())
    }

    /// Writes `done`'s lines and frees their entries, unless the chain has moved on since
    /// its job was handed out (the appender made those lines itself meanwhile).
    fn write_prepared(&self, out: &mut Appender, done: Prepared) -> Result<(), AuditError> {
        let from = self.ring.lock().map_err(poisoned)?.taken;
        if done.before != (out.chain.seq, out.chain.head) || done.from != from {
            return Ok(());
        }
        if let Err(e) = out.file.write_all(&done.lines) {
            return Err(self.stop(AuditError(format!("write failed: {e}"))));
        }
        self.made.by_preparer.fetch_add(
            done.chain.seq - done.before.0,
            std::sync::atomic::Ordering::Relaxed,
        );
        let last_seal = done.chain.last_seal.or(out.chain.last_seal);
        out.chain = done.chain;
        out.chain.last_seal = last_seal;
        self.free(done.to)
    }

    /// Puts a seal in the journal when events came since the last one.
    fn push_seal(&self) -> Result<SealPush, AuditError> {
        let mut entry = Vec::new();
        let crc = encode_seal(&mut entry)?;
        let mut ring = self.ring.lock().map_err(poisoned)?;
        if ring.unsealed == 0 {
            return Ok(SealPush::NotNeeded);
        }
        Ok(match ring.push(&self.journal, &mut entry, &crc)? {
            Some(seq) => SealPush::Put(seq),
            None => SealPush::Full,
        })
    }

    /// Whether the journal is more than half full: the preparer is behind, and the appender
    /// makes the lines itself rather than let callers wait for room.
    fn filling(&self) -> Result<bool, AuditError> {
        let ring = self.ring.lock().map_err(poisoned)?;
        Ok(ring.put - ring.taken > self.journal.capacity() / 2)
    }
}

/// What [`Shared::push_seal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SealPush {
    /// No event came since the last seal put in the journal.
    NotNeeded,
    /// The seal went in with this seq.
    Put(u64),
    /// The journal has no room for it.
    Full,
}

/// The preparer thread: makes the lines of the jobs the appender hands it, at idle priority,
/// so that the work runs when a core would otherwise idle instead of preempting a runtime
/// worker together with the requests it holds (which left a 2-vCPU machine idle 1.2–2 µs
/// longer per request, a third of the trail's cost to Encrypt throughput; docs/benchmarks.md).
/// It holds no lock while it works, and the appender never waits for it. Ends when the trail
/// is dropped.
fn prepare_lines(preparer: &std::sync::Weak<Preparer>) {
    while let Some(p) = preparer.upgrade() {
        let job = match p.handoff.lock() {
            Ok(mut handoff) => {
                let job = handoff.job.take();
                handoff.busy = job.is_some();
                job
            }
            Err(_) => return,
        };
        let Some(job) = job else {
            drop(p);
            std::thread::park_timeout(APPEND_INTERVAL);
            continue;
        };
        let mut chain = job.chain;
        chain.last_seal = None;
        let before = (chain.seq, chain.head);
        let mut lines = Vec::with_capacity(job.entries.len() * 2);
        // A failure leaves the job undone: the appender makes the lines itself when the seal
        // or the journal cannot wait longer, and reports what failed.
        let made = chain.lines(&job.entries, &p.key, &mut lines);
        let Ok(mut handoff) = p.handoff.lock() else {
            return;
        };
        handoff.busy = false;
        if made.is_ok() {
            handoff.done = Some(Prepared {
                before,
                chain,
                from: job.from,
                to: job.to,
                lines,
            });
        }
    }
}

/// Starts the preparer thread at idle priority; `None` where the platform does not let it
/// run there (then the appender makes every line itself: it must not hand work to a thread
/// that competes with the requests).
fn start_preparer(key: &SecretBytes) -> Option<(Arc<Preparer>, std::thread::Thread)> {
    let preparer = Arc::new(Preparer {
        handoff: Mutex::new(Handoff::default()),
        key: SecretBytes::new(key.expose().to_vec()),
    });
    let weak = Arc::downgrade(&preparer);
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("arca-audit-idle".into())
        .spawn(move || {
            let idle = run_at_idle_priority();
            let ok = idle.is_ok();
            let _ = tx.send(idle);
            if ok {
                prepare_lines(&weak);
            }
        });
    let thread = match spawned {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "audit trail: no preparer thread; the appender makes every line");
            return None;
        }
    };
    match rx.recv() {
        Ok(Ok(())) => Some((preparer, thread.thread().clone())),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "audit trail: the preparer cannot run at idle priority; the appender makes every line");
            None
        }
        Err(_) => None,
    }
}

/// Puts the calling thread in the `SCHED_IDLE` class: it runs only when a core has nothing
/// else to run.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "sched_setscheduler(2) has no wrapper in std; it only reads the parameter struct"
)]
fn run_at_idle_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is an initialised sched_param that outlives the call; pid 0 is the
    // calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn run_at_idle_priority() -> std::io::Result<()> {
    Err(std::io::Error::other(
        "no idle scheduling class on this platform",
    ))
}

impl Drop for Shared {
    /// The last handle is gone: write out what the journal holds (the next start would
    /// otherwise do it).
    fn drop(&mut self) {
        if let Ok(mut out) = self.appender.lock()
            && let Err(e) = self.append(&mut out)
        {
            tracing::error!(error = %e, "audit trail: events left in the journal");
        }
    }
}

/// The entries a journal file (its bytes as a crash left them) holds beyond seq `after`,
/// back to back in seq order. They are read from where the appender last took entries from,
/// each whole, intact and next in seq; the first that is not (a copy torn by the crash,
/// zeroes, an earlier lap's entry) ends them.
fn journal_tail(file: &[u8], after: u64) -> Vec<u8> {
    let Some((header, ring)) = file.split_at_checked(JOURNAL_HEADER) else {
        return Vec::new();
    };
    let Some(taken) = header.get(..8).and_then(|b| b.try_into().ok()) else {
        return Vec::new();
    };
    if ring.is_empty() {
        return Vec::new();
    }
    // Read from the appender's position on, wrapping around the ring's end.
    let at = (u64::from_le_bytes(taken) % ring.len() as u64) as usize;
    let mut tail = Vec::with_capacity(ring.len());
    tail.extend_from_slice(&ring[at..]);
    tail.extend_from_slice(&ring[..at]);
    let (mut pos, mut first, mut next) = (0, None, after + 1);
    while let Some(entry) = decode(&tail[pos..]) {
        if entry.seq > after {
            if entry.seq != next {
                tracing::warn!(
                    seq = entry.seq,
                    "the audit journal holds an entry that does not continue the trail; left out"
                );
                break;
            }
            first.get_or_insert(pos);
            next += 1;
        }
        pos += entry.len;
    }
    tail.truncate(pos);
    tail.drain(..first.unwrap_or(pos));
    tail
}

/// Opens the journal beside the trail at `path`: first appends to `trail` (fsynced) the lines
/// of the entries a crash left in it, continuing `chain`, then starts it afresh, zero-filled
/// so that no write into it ever needs a block the disk cannot give (which a mapped write
/// would meet as SIGBUS), and maps it.
fn open_journal(
    path: &Path,
    trail: &mut File,
    chain: &mut Chain,
    key: &SecretBytes,
) -> std::io::Result<memmap2::MmapRaw> {
    let journal_path = path.with_extension("journal");
    match std::fs::read(&journal_path) {
        Ok(file) => {
            let entries = journal_tail(&file, chain.seq);
            if !entries.is_empty() {
                let mut lines = Vec::new();
                chain
                    .lines(&entries, key, &mut lines)
                    .map_err(std::io::Error::other)?;
                trail.write_all(&lines)?;
                trail.sync_data()?;
                tracing::info!(
                    lines = lines.iter().filter(|b| **b == b'\n').count(),
                    "appended to the audit trail the events a crash left in its journal"
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(&journal_path)?;
    file.write_all(&vec![0; JOURNAL_HEADER + JOURNAL_BYTES])?;
    file.sync_all()?;
    // Populated: the pages are in memory from the start, not faulted in on the request path.
    // Another process truncating the file would kill the server with SIGBUS, like any mapped
    // file; the journal lives in the data directory, private to the server (0700) beside the
    // root key, so whoever can do that can do worse.
    memmap2::MmapOptions::new()
        .len(JOURNAL_HEADER + JOURNAL_BYTES)
        .populate()
        .map_raw(&file)
}

/// The `seq` and hash of a complete line.
fn last_line(line: &str) -> Option<(u64, String)> {
    let (body, hash) = split_line(line)?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((v.get("seq")?.as_u64()?, hash.to_owned()))
}

impl AuditLog {
    /// Opens (appending) the trail at `path`, continuing its chain and appending what a crash
    /// left in its journal, with `key` (derived from the root key) for the seals, and starts
    /// the appender thread. An older, unchained trail is moved aside to `<path>.unchained`.
    pub fn open(path: &Path, key: SecretBytes) -> std::io::Result<Self> {
        // A build with the benchmark feature (say, from `cargo build --all-features`) must
        // not serve by accident: it starts only when told that it is the bench's baseline.
        if cfg!(feature = "unaudited-benchmark-baseline") {
            if std::env::var_os(UNAUDITED_CONSENT).is_none() {
                return Err(std::io::Error::other(format!(
                    "this build records no audit events (feature unaudited-benchmark-baseline); \
                     it starts only as a benchmark baseline, with {UNAUDITED_CONSENT}=1"
                )));
            }
            tracing::error!(
                "this is a benchmark baseline build: it records NO audit events; never serve with it"
            );
        }
        if path.exists() && !is_chained(path)? {
            let aside = path.with_extension("log.unchained");
            std::fs::rename(path, &aside)?;
            tracing::warn!(file = %aside.display(), "moved an unchained audit log aside");
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let last = recover(&mut file)?;
        let head_path = path.with_file_name("audit.head");
        if let Some(problem) = head::standing(&mut file, &head_path, &key, last.as_ref())?.problem()
        {
            return Err(std::io::Error::other(format!(
                "{problem}. Find out why before going on; to go on, run `arca audit \
                 accept-gap --data-dir <dir>` with the server stopped: it writes a sealed gap \
                 record into the trail, which `arca audit verify` reports for good"
            )));
        }
        let (seq, head) = last.unwrap_or((0, GENESIS.to_owned()));
        let mut chain = Chain::new(seq, &head).map_err(std::io::Error::other)?;
        let journal = Journal {
            map: open_journal(path, &mut file, &mut chain, &key)?,
        };
        let shared = Arc::new(Shared {
            ring: Mutex::new(Ring {
                seq: chain.seq,
                put: 0,
                taken: 0,
                unsealed: 0,
                broken: None,
            }),
            journal,
            appender: Mutex::new(Appender {
                file,
                chain,
                scratch: Vec::new(),
                lines: Vec::with_capacity(WRITE_CHUNK + 4096),
            }),
            thread: std::sync::OnceLock::new(),
            room: tokio::sync::Notify::new(),
            preparer: start_preparer(&key),
            made: Made::default(),
            key,
            head_path,
            sealed: Mutex::new(
                head::read(&path.with_file_name("audit.head"))
                    .ok()
                    .flatten(),
            ),
        });
        let appender = Arc::downgrade(&shared);
        let thread = std::thread::Builder::new()
            .name("arca-audit".into())
            .spawn(move || append_and_seal(&appender))?;
        let _ = shared.thread.set(thread.thread().clone());
        Ok(Self { shared })
    }

    /// Puts `event` in the journal (the kernel's page cache) and returns, so the caller
    /// replies only to audited requests and a crash of the process after the reply loses no
    /// event. Waits only when the journal is full because the appender is behind.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        thread_local! {
            static ENTRY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if cfg!(feature = "unaudited-benchmark-baseline") {
            return Ok(());
        }
        let shared = &*self.shared;
        let push = || {
            ENTRY.with_borrow_mut(|entry| {
                let crc = encode(&event, entry)?;
                shared
                    .ring
                    .lock()
                    .map_err(poisoned)?
                    .push(&shared.journal, entry, &crc)
            })
        };
        if push()?.is_some() {
            return Ok(());
        }
        // The journal is full: the appender is behind (a slow disk). Wake it rather than wait
        // for its next round, and wait for room.
        if let Some(thread) = shared.thread.get() {
            thread.unpark();
        }
        loop {
            // Registered before trying again, so room made after the try wakes this caller.
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if push()?.is_some() {
                return Ok(());
            }
            room.await;
        }
    }

    /// Seals now (tests and shutdown): appends the journal's events, a seal line, fsyncs and
    /// writes the head file.
    pub fn seal_now(&self) -> Result<(), AuditError> {
        seal(&self.shared)
    }

    /// The chain's length and whether it still takes events (a failed write stops it, and
    /// every call then answers 503), for readiness and `arca status`.
    pub fn status(&self) -> AuditStatus {
        let made = &self.shared.made;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        let (lines_by_appender, lines_by_preparer) =
            (load(&made.by_appender), load(&made.by_preparer));
        let sealed = self
            .shared
            .sealed
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| (h.seq, h.hash.clone())));
        match self.shared.ring.lock() {
            Ok(ring) => AuditStatus {
                events: ring.seq,
                unsealed: ring.unsealed,
                error: ring.broken.clone(),
                lines_by_appender,
                lines_by_preparer,
                sealed,
            },
            Err(_) => AuditStatus {
                events: 0,
                unsealed: 0,
                error: Some("lock poisoned".into()),
                lines_by_appender,
                lines_by_preparer,
                sealed,
            },
        }
    }
}

/// The appender thread: moves events from the journal to the trail file every
/// [`APPEND_INTERVAL`] (sooner when a caller finds the journal full) and seals every
/// [`SEAL_INTERVAL`]. Ends when the trail is dropped.
fn append_and_seal(shared: &std::sync::Weak<Shared>) {
    let mut sealed = std::time::Instant::now();
    // The seal waiting for its line: its seq and when it went into the journal.
    let mut pending_seal: Option<(u64, std::time::Instant)> = None;
    let mut failing = false;
    while let Some(shared) = shared.upgrade() {
        let result = (|| {
            if pending_seal.is_none() && sealed.elapsed() >= SEAL_INTERVAL {
                sealed = std::time::Instant::now();
                pending_seal = match shared.push_seal()? {
                    SealPush::Put(seq) => Some((seq, sealed)),
                    SealPush::NotNeeded | SealPush::Full => None,
                };
            }
            let urgent =
                pending_seal.is_some_and(|(_, t)| t.elapsed() >= SEAL_WAIT) || shared.filling()?;
            let mut out = shared.appender.lock().map_err(poisoned)?;
            shared.round(&mut out, urgent)?;
            // Its line is written (by this round, or by a seal asked for meanwhile).
            if pending_seal.is_some_and(|(seq, _)| out.chain.seq >= seq) {
                pending_seal = None;
            }
            finish_seal(&shared, out)?;
            Ok::<(), AuditError>(())
        })();
        match result {
            Err(e) if !failing => {
                tracing::error!(error = %e, "audit trail: append or seal failed");
                failing = true;
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
        drop(shared);
        std::thread::park_timeout(APPEND_INTERVAL);
    }
}

/// A snapshot of the trail.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditStatus {
    /// Lines in the chain (events and seals), those still in the journal included.
    pub events: u64,
    /// Events not yet covered by a seal.
    pub unsealed: u64,
    /// Why the trail stopped taking events, if it did.
    pub error: Option<String>,
    /// Lines this process wrote that the appender thread made itself: all of them without a
    /// preparer, else those a seal or a filling journal could not leave to it.
    pub lines_by_appender: u64,
    /// Lines this process wrote that the idle-priority preparer made.
    pub lines_by_preparer: u64,
    /// The sealed head (seq and hash), to anchor outside the machine.
    pub sealed: Option<(u64, String)>,
}

fn is_chained(path: &Path) -> std::io::Result<bool> {
    let mut first = String::new();
    BufReader::new(File::open(path)?).read_line(&mut first)?;
    Ok(first.trim().is_empty() || split_line(first.trim_end()).is_some())
}

/// Puts a seal in the journal when events came since the last one, appends all the journal
/// holds, and when that wrote a seal line, fsyncs (so a seal never covers lines that are not
/// on disk) and records it as the head.
fn seal(shared: &Shared) -> Result<(), AuditError> {
    let mut out = shared.appender.lock().map_err(poisoned)?;
    // With no event since the last seal put in the journal, that seal's line may still wait
    // there: the append below writes it.
    while shared.push_seal()? == SealPush::Full {
        shared.append(&mut out)?;
    }
    shared.append(&mut out)?;
    finish_seal(shared, out).map(drop)
}

/// When lines written since the last call include a seal line: fsyncs the trail (so a seal
/// never covers lines that are not on disk), releases `out`, and records the seal as the
/// head. Whether it did.
fn finish_seal(
    shared: &Shared,
    mut out: std::sync::MutexGuard<'_, Appender>,
) -> Result<bool, AuditError> {
    let Some((seq, hash)) = out.chain.last_seal.take() else {
        return Ok(false);
    };
    out.file
        .sync_data()
        .map_err(|e| AuditError(format!("fsync: {e}")))?;
    drop(out);
    let hash = String::from_utf8_lossy(&hash).into_owned();
    let head = Head {
        seq,
        mac: mac_hex(shared.key.expose(), "head", seq, &hash),
        hash,
    };
    write_head(&shared.head_path, &head).map_err(|e| AuditError(format!("head file: {e}")))?;
    if let Ok(mut sealed) = shared.sealed.lock() {
        *sealed = Some(head);
    }
    Ok(true)
}

/// Replaces the head file atomically and durably.
fn write_head(path: &Path, head: &Head) -> std::io::Result<()> {
    let tmp = path.with_extension("head.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(head).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

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
struct Walk<'a> {
    key: &'a SecretBytes,
    sealed: Option<&'a Head>,
    /// The last line's hash.
    prev: String,
    lines: u64,
    seals: u64,
    since_seal: u64,
    head_seen: bool,
    anchor: Option<&'a Anchor>,
    anchor_seen: bool,
    gaps: Vec<u64>,
}

impl Walk<'_> {
    /// Checks the next line (without its newline).
    fn line(&mut self, text: &str) -> Result<(), Tamper> {
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

/// What `arca audit query` selects; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Events before this time.
    pub until: Option<OffsetDateTime>,
    /// The action, exactly.
    pub action: Option<String>,
    /// A substring of the resource (an ARN, a key id, `secret/<name>`).
    pub resource: Option<String>,
    /// The account, exactly.
    pub account: Option<String>,
}

impl Query {
    fn matches(&self, v: &serde_json::Value) -> bool {
        let field = |name: &str| v.get(name).and_then(serde_json::Value::as_str);
        let time = field("time").and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        self.since.is_none_or(|s| time.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| time.is_some_and(|t| t < u))
            && self
                .action
                .as_deref()
                .is_none_or(|a| field("action") == Some(a))
            && self
                .resource
                .as_deref()
                .is_none_or(|r| field("resource").is_some_and(|f| f.contains(r)))
            && self
                .account
                .as_deref()
                .is_none_or(|a| field("account") == Some(a))
            && field("action") != Some(SEAL_ACTION)
    }
}

/// The events of the trail at `log` that `query` selects, as their JSON lines, those its
/// journal holds beyond its end included.
pub fn query(log: &Path, query: &Query) -> std::io::Result<Vec<String>> {
    let selects = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| query.matches(&v))
    };
    let mut out = Vec::new();
    let mut last = None;
    for text in BufReader::new(File::open(log)?).lines() {
        let text = text?;
        if selects(&text) {
            out.push(text.clone());
        }
        last = Some(text);
    }
    let seq = last
        .as_deref()
        .and_then(last_line)
        .map_or(0, |(seq, _)| seq);
    for text in journal_beyond(log, seq, None)? {
        if selects(&text) {
            out.push(text);
        }
    }
    Ok(out)
}

/// The lines of the events the journal beside the trail at `log` holds beyond the trail's end
/// (seq `seq`); none when there is no journal. With the trail's last hash and the seal key,
/// they are the lines the next start would append. Without them (`arca audit query` needs no
/// root key) an event's line has no `prev` or `hash` yet, and seals are left out.
fn journal_beyond(
    log: &Path,
    seq: u64,
    chain: Option<(&str, &SecretBytes)>,
) -> std::io::Result<Vec<String>> {
    let file = match std::fs::read(log.with_extension("journal")) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let entries = journal_tail(&file, seq);
    let mut lines = Vec::new();
    if let Some((head, key)) = chain {
        Chain::new(seq, head)
            .and_then(|mut chain| chain.lines(&entries, key, &mut lines))
            .map_err(std::io::Error::other)?;
    } else {
        for_each_entry([&entries, &[]], &mut Vec::new(), |entry| {
            if let Some(fields) = entry.event {
                lines.extend_from_slice(b"{\"seq\":");
                lines.extend_from_slice(itoa::Buffer::new().format(entry.seq).as_bytes());
                lines.push(b',');
                fields.write_members(&mut lines);
                lines.extend_from_slice(b"}\n");
            }
            Ok(())
        })
        .map_err(std::io::Error::other)?;
    }
    Ok(String::from_utf8_lossy(&lines)
        .lines()
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod bench {
    use super::*;

    #[tokio::test]
    #[ignore = "a measurement, run by hand"]
    async fn record_cost() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.log"), SecretBytes::random(32)).unwrap();
        let event = AuditEvent {
            time: OffsetDateTime::now_utc(),
            request_id: "6F2C0D4A-8B1E-4C53-9A77-00000000002A".into(),
            action: "Encrypt".into(),
            account: Some("1234567890123456".into()),
            access_key_id: Some("LTAIeyph5q9gjbejegy72vnt".into()),
            source_ip: "127.0.0.1".into(),
            resource: Some(
                "acs:kms:cn-hangzhou:1234567890123456:key/key-hanvo1zwv0309rd7vik5".into(),
            ),
            key_version: Some("15fe29cc-a7db-4bd1-a745-c2d9afc2d15e".into()),
            result: "OK",
            status: 200,
        };
        // Fewer events than the journal holds: this measures the request path, not the wait
        // for an appender that is behind.
        let n = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            log.record(event.clone()).await.unwrap();
        }
        let per = t.elapsed() / n;
        // The appender's share: making the lines of n entries.
        let mut entries = Vec::new();
        let mut entry = Vec::new();
        for seq in 1..=u64::from(n) {
            let crc = encode(&event, &mut entry).unwrap();
            let mut crc = crc.clone();
            crc.update(&seq.to_le_bytes());
            entry[8..16].copy_from_slice(&seq.to_le_bytes());
            entry[16..ENTRY_HEADER].copy_from_slice(&crc.finalize().to_le_bytes());
            entries.extend_from_slice(&entry);
        }
        let mut chain = Chain::new(0, GENESIS).unwrap();
        let mut lines = Vec::new();
        let key = SecretBytes::random(32);
        // As the appender does: lines in chunks of about WRITE_CHUNK, the buffer reused.
        let t = std::time::Instant::now();
        for_each_entry([&entries, &[]], &mut Vec::new(), |entry| {
            chain.line(entry, &key, &mut lines)?;
            if lines.len() >= WRITE_CHUNK {
                std::hint::black_box(&lines);
                lines.clear();
            }
            Ok(())
        })
        .unwrap();
        let made = t.elapsed() / n;
        panic!("record: {per:?} per event; making its line in the appender: {made:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u32) -> AuditEvent {
        AuditEvent {
            time: OffsetDateTime::now_utc(),
            request_id: format!("request-{i}"),
            action: "Encrypt".into(),
            account: Some("1234567890123456".into()),
            access_key_id: Some("LTAIeyph5q9gjbejegy72vnt".into()),
            source_ip: "127.0.0.1".into(),
            resource: Some("acs:kms:cn-hangzhou:1234567890123456:key/key-1".into()),
            key_version: i.is_multiple_of(2).then(|| format!("version-{i}")),
            result: "OK",
            status: 200,
        }
    }

    /// The hand-written members are what serde's derived writer made for the same fields, so
    /// lines keep their format; strings that need escapes included.
    #[test]
    fn members_are_written_as_serde_json_writes_them() {
        let odd = [
            "",
            "plain",
            "quote\"d",
            "back\\slash",
            "tab\tnew\nline",
            "\u{1}\u{1f}\u{7f}",
            "ünï/cødé",
        ];
        for (i, s) in odd.iter().enumerate() {
            let other = odd[(i + 3) % odd.len()];
            let fields = Fields {
                time: OffsetDateTime::from_unix_timestamp(1_790_000_000 + i as i64).unwrap(),
                request_id: s,
                action: other,
                account: (i % 2 == 0).then_some(*s),
                access_key_id: (i % 3 == 0).then_some(other),
                source_ip: s,
                resource: Some(other),
                key_version: (i % 2 == 1).then_some(*s),
                result: other,
                status: [0, 200, 400, 65535][i % 4],
                seal: (i % 3 == 1).then_some(*s),
            };
            let mut written = b"{".to_vec();
            fields.write_members(&mut written);
            written.push(b'}');
            let expected = serde_json::to_vec(&fields).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    fn journal(ring: usize) -> Journal {
        Journal {
            map: memmap2::MmapMut::map_anon(JOURNAL_HEADER + ring)
                .unwrap()
                .into(),
        }
    }

    fn ring(seq: u64, at: u64) -> Ring {
        Ring {
            seq,
            put: at,
            taken: at,
            unsealed: 0,
            broken: None,
        }
    }

    fn push(ring: &mut Ring, journal: &Journal, event: &AuditEvent) -> Option<u64> {
        let mut entry = Vec::new();
        let crc = encode(event, &mut entry).unwrap();
        ring.push(journal, &mut entry, &crc).unwrap()
    }

    /// Entries read back as the appender reads them make whole, chained lines carrying every
    /// field, across many laps of a ring whose size is no multiple of an entry's; a full
    /// ring refuses an entry and is left as it was.
    #[test]
    fn the_ring_wraps_and_refuses_what_does_not_fit() {
        let journal = journal(4096);
        let mut ring = ring(0, 0);
        let mut chain = Chain::new(0, GENESIS).unwrap();
        let key = SecretBytes::random(32);
        let mut written = Vec::new();
        let mut sent = Vec::new();
        let mut scratch = Vec::new();
        for round in 0..20 {
            let before = ring.seq;
            loop {
                let e = event(round * 100 + (ring.seq - before) as u32);
                if push(&mut ring, &journal, &e).is_none() {
                    break;
                }
                sent.push(e);
            }
            // Full: a handful of entries went in, and the refused one left the ring as it was.
            assert!(ring.seq - before >= 10, "{} entries fit", ring.seq - before);
            assert!(ring.put - ring.taken <= 4096);
            for_each_entry(journal.entries(ring.taken, ring.put), &mut scratch, |e| {
                chain.line(e, &key, &mut written)
            })
            .unwrap();
            ring.taken = ring.put;
        }
        let text = String::from_utf8(written).unwrap();
        let mut prev = GENESIS.to_owned();
        for (i, line) in text.lines().enumerate() {
            let (body, hash) = split_line(line).unwrap();
            assert_eq!(sha256_hex(body.as_bytes()), hash);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["seq"], i as u64 + 1);
            assert_eq!(v["prev"], prev.as_str());
            let e = &sent[i];
            assert_eq!(v["request_id"], e.request_id.as_str());
            assert_eq!(v["account"], e.account.as_deref().unwrap());
            assert_eq!(v["resource"], e.resource.as_deref().unwrap());
            assert_eq!(v["key_version"].as_str(), e.key_version.as_deref());
            assert_eq!(v["status"], 200);
            prev = hash.to_owned();
        }
        assert_eq!(text.lines().count() as u64, ring.seq);
    }

    /// A crash leaves the trail file behind the journal. The next start appends the lines of
    /// the entries the journal holds beyond the trail's end, in order, including one wrapped
    /// around the ring's end and a seal, and stops at an entry torn mid-copy; the trail then
    /// verifies and goes on, and `query` sees the journal's events before that start.
    #[tokio::test]
    async fn a_start_appends_what_a_crash_left_in_the_journal() {
        let (_dir, path, key, log) = open_trail();
        for i in 0..5 {
            log.record(event(i)).await.unwrap();
        }
        log.seal_now().unwrap();
        drop(log);
        let trail = std::fs::read_to_string(&path).unwrap();
        assert_eq!(trail.lines().count(), 6, "5 events and a seal");

        // What a crash could leave: the appender took entries up to seq 4 (the header says
        // so) but had written lines up to 6 when it was killed; the journal holds 5 to 15
        // from near the ring's end around to its start (two seals among them), then a copy
        // of 16 torn short.
        let journal_path = path.with_extension("journal");
        std::fs::write(&journal_path, vec![0; JOURNAL_HEADER + JOURNAL_BYTES]).unwrap();
        let journal = Journal {
            map: memmap2::MmapOptions::new()
                .map_raw(
                    &OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&journal_path)
                        .unwrap(),
                )
                .unwrap(),
        };
        let start = JOURNAL_BYTES as u64 - 700;
        let mut ring = ring(4, start);
        journal.set_taken(start);
        let seal = |ring: &mut Ring, journal: &Journal| {
            let mut entry = Vec::new();
            let crc = encode_seal(&mut entry).unwrap();
            ring.push(journal, &mut entry, &crc).unwrap();
        };
        push(&mut ring, &journal, &event(4)).unwrap();
        seal(&mut ring, &journal);
        for i in 5..13 {
            if i == 9 {
                seal(&mut ring, &journal);
            }
            push(&mut ring, &journal, &event(i)).unwrap();
        }
        assert_eq!(ring.seq, 15);
        let torn_at = ring.put;
        push(&mut ring, &journal, &event(13)).unwrap();
        drop(journal);
        let mut bytes = std::fs::read(&journal_path).unwrap();
        let torn = JOURNAL_HEADER + (torn_at % JOURNAL_BYTES as u64) as usize + 30;
        bytes[torn..torn + 40].fill(0);
        std::fs::write(&journal_path, &bytes).unwrap();

        // Before the start: query reads the events from the journal.
        let found = query(&path, &Query::default()).unwrap();
        let ids: Vec<String> = found
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string()
            })
            .collect();
        let want: Vec<String> = (0..13).map(|i| format!("\"request-{i}\"")).collect();
        assert_eq!(ids, want);

        let log = AuditLog::open(&path, SecretBytes::new(key.expose().to_vec())).unwrap();
        assert_eq!(log.status().events, 15);
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.starts_with(&trail));
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines.len(), 15);
        assert!(lines[6].contains("\"request-5\""));
        assert!(lines[10].contains(SEAL_ACTION));
        assert!(lines[14].contains("\"request-12\""));
        log.record(event(99)).await.unwrap();
        drop(log);
        let head = path.with_file_name("audit.head");
        let checked = verify(&path, &head, &key).unwrap();
        assert_eq!((checked.lines, checked.seals), (16, 2));
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.lines().last().unwrap().contains("request-99"));
        // The journal was started afresh: a second start appends nothing twice.
        drop(AuditLog::open(&path, SecretBytes::new(key.expose().to_vec())).unwrap());
        assert_eq!(verify(&path, &head, &key).unwrap().lines, 16);
    }

    /// While the server runs (or after a crash, before the next start), `verify` chains the
    /// journal's events onto the trail and counts them.
    #[tokio::test]
    #[allow(
        clippy::await_holding_lock,
        reason = "the appender is held on purpose; record waits only for a full journal"
    )]
    async fn verify_counts_what_is_still_in_the_journal() {
        let (_dir, path, key, log) = open_trail();
        log.record(event(0)).await.unwrap();
        log.seal_now().unwrap();
        // Hold the appender so the next events stay in the journal.
        let held = log.shared.appender.lock().unwrap();
        for i in 1..4 {
            log.record(event(i)).await.unwrap();
        }
        let head = path.with_file_name("audit.head");
        let checked = verify(&path, &head, &key).unwrap();
        assert_eq!((checked.lines, checked.in_journal), (5, 3));
        drop(held);
    }

    /// The `policy` field of the task named `name` in this process (`/proc/self/task`).
    fn thread_policy(name: &str) -> Option<u32> {
        std::fs::read_dir("/proc/self/task").ok()?.find_map(|task| {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the parenthesised name; `policy` is field 41 of the line.
            stat.rsplit_once(") ")?.1.split(' ').nth(38)?.parse().ok()
        })
    }

    /// A trail in a fresh directory: the directory (kept while the test runs), the trail's
    /// path, its seal key, and the open trail.
    fn open_trail() -> (tempfile::TempDir, PathBuf, SecretBytes, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let key = SecretBytes::random(32);
        let log = AuditLog::open(&path, SecretBytes::new(key.expose().to_vec())).unwrap();
        (dir, path, key, log)
    }

    /// However long the fields a request brought (control bytes, which JSON escapes six-fold),
    /// a line stays within its bound and still verifies.
    #[tokio::test]
    async fn every_line_is_bounded() {
        let (_dir, path, key, log) = open_trail();
        let huge = "\u{1}".repeat(200_000);
        let mut e = event(1);
        e.action = huge.clone();
        e.request_id = huge.clone();
        e.resource = Some("é".repeat(100_000));
        log.record(e).await.unwrap();
        log.seal_now().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let longest = text.lines().map(str::len).max().unwrap();
        assert!(longest < 8 * 6 * MAX_FIELD, "a {longest}-byte line");
        verify(&path, &path.with_file_name("audit.head"), &key).unwrap();
    }

    fn seqs(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| last_line(l).unwrap().0)
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_preparer_makes_the_lines_at_idle_priority() {
        let (_dir, path, key, log) = open_trail();
        assert_eq!(
            thread_policy("arca-audit-idle"),
            Some(libc::SCHED_IDLE as u32)
        );
        let mut n = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Events in waves until the appender has written lines the preparer made.
        while log.status().lines_by_preparer == 0 {
            assert!(std::time::Instant::now() < deadline, "no prepared lines");
            for _ in 0..500 {
                log.record(event(n)).await.unwrap();
                n += 1;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        log.seal_now().unwrap();
        let seqs = seqs(&path);
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().filter(|l| !l.contains(SEAL_ACTION)).count(),
            n as usize
        );
        let checked = verify(&path, &path.with_file_name("audit.head"), &key).unwrap();
        assert_eq!(checked.in_journal, 0);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    #[allow(
        clippy::await_holding_lock,
        reason = "the appender is held on purpose; record waits only for a full journal"
    )]
    async fn prepared_lines_the_chain_has_passed_are_dropped() {
        let (_dir, path, key, log) = open_trail();
        let shared = &*log.shared;
        let (preparer, _) = shared.preparer.as_ref().unwrap();
        // Holding the appender's lock keeps its thread out; this test plays its rounds.
        let mut out = shared.appender.lock().unwrap();
        for i in 0..10 {
            log.record(event(i)).await.unwrap();
        }
        shared.round(&mut out, false).unwrap();
        // Until the preparer hands back the lines of the job the last round gave it.
        let prepared = || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while preparer.handoff.lock().unwrap().done.is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the preparer made no lines"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        prepared();
        // Meanwhile the appender made those lines itself (a seal could not wait).
        shared.append(&mut out).unwrap();
        for i in 10..15 {
            log.record(event(i)).await.unwrap();
        }
        // The prepared lines no longer continue the chain: dropped, not written twice.
        shared.round(&mut out, false).unwrap();
        assert_eq!(log.status().lines_by_preparer, 0);
        assert_eq!(seqs(&path), (1..=10).collect::<Vec<_>>());
        // The round handed the five new entries out instead; their lines come back and
        // continue the chain.
        prepared();
        shared.round(&mut out, false).unwrap();
        assert_eq!(log.status().lines_by_preparer, 5);
        assert_eq!(seqs(&path), (1..=15).collect::<Vec<_>>());
        drop(out);
        log.seal_now().unwrap();
        verify(&path, &path.with_file_name("audit.head"), &key).unwrap();
    }
}
