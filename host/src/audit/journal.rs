//! The journal: events between their request and the trail file, in a ring mapped shared
//! into memory, and what a start after a crash reads back from it. The mapping's `unsafe`
//! stays in this file (the trail's one other, the idle-priority call, is in `writer.rs`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use super::AuditError;
use super::chain::Chain;
use super::event::{AuditEvent, Fields, bounded};
use crate::secret::SecretBytes;

/// The journal's ring size. At 40,000 events a second (about 260 bytes each) it holds 1.6 s
/// of events: thirty appender rounds, more than an fsync of the trail keeps the appender away.
pub(super) const JOURNAL_BYTES: usize = 16 << 20;
/// The journal file's first page, before the ring: it holds where the appender last took
/// entries from (a little-endian `u64` byte count), where a start after a crash reads from.
pub(super) const JOURNAL_HEADER: usize = 4096;
/// How often the appender moves events from the journal to the trail file. Events are durable
/// against a crash of the process once in the journal; this is only how soon readers of the
/// trail file see them. Waking more often costs throughput: at 2 ms, a 2-vCPU machine lost
/// 10% more Encrypt requests/s to the appender's wake-ups than at 50 ms
/// (docs/benchmarks.md).
pub(super) const APPEND_INTERVAL: Duration = Duration::from_millis(50);

/// How an entry in the journal starts.
pub(super) const ENTRY_MAGIC: [u8; 4] = *b"AJE1";
/// An entry's header: the magic, the entry's whole length (`u32`), its seq (`u64`) and a
/// CRC-32 of the rest of the entry followed by the seq (`u32`), all little-endian.
pub(super) const ENTRY_HEADER: usize = 20;
/// The first byte after the header: an event, whose fields follow, or a seal.
pub(super) const KIND_EVENT: u8 = 0;
pub(super) const KIND_SEAL: u8 = 1;
/// The length an absent optional field is written with.
pub(super) const ABSENT: u32 = u32::MAX;

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
pub(super) struct Journal {
    pub(super) map: memmap2::MmapRaw,
}

impl Journal {
    pub(super) fn capacity(&self) -> u64 {
        (self.map.len() - JOURNAL_HEADER) as u64
    }

    /// Copies `entry` into the ring at byte `at` (counted from the ring's first use; wraps).
    /// The caller holds the ring lock and has checked that the bytes are free.
    #[allow(
        unsafe_code,
        reason = "the ring is written through a raw pointer while the appender reads other parts of it"
    )]
    pub(super) fn write_at(&self, at: u64, entry: &[u8]) {
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
    pub(super) fn entries(&self, from: u64, to: u64) -> [&[u8]; 2] {
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
    pub(super) fn set_taken(&self, taken: u64) {
        let bytes = taken.to_le_bytes();
        // SAFETY: the header lies inside the mapping (its first `JOURNAL_HEADER` bytes); only
        // the appender, holding its lock, writes it, and nothing in the process reads it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr(), bytes.len());
        }
    }
}

/// Writes `event` as a journal entry into `out`, its seq and CRC left for [`Ring::push`], and
/// returns the CRC state over what follows the header. Done outside the ring lock.
pub(super) fn encode(
    event: &AuditEvent,
    out: &mut Vec<u8>,
) -> Result<crc32fast::Hasher, AuditError> {
    pub(super) fn string(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), AuditError> {
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
pub(super) fn encode_seal(out: &mut Vec<u8>) -> Result<crc32fast::Hasher, AuditError> {
    begin(out, KIND_SEAL, OffsetDateTime::now_utc(), 0);
    finish(out)
}

pub(super) fn begin(out: &mut Vec<u8>, kind: u8, time: OffsetDateTime, status: u16) {
    out.clear();
    out.extend_from_slice(&ENTRY_MAGIC);
    out.resize(ENTRY_HEADER, 0);
    out.push(kind);
    out.extend_from_slice(&time.unix_timestamp().to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
}

pub(super) fn finish(out: &mut [u8]) -> Result<crc32fast::Hasher, AuditError> {
    let len = u32::try_from(out.len()).map_err(|_| AuditError("an event is too long".into()))?;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[ENTRY_HEADER..]);
    Ok(crc)
}

/// An entry read back from the journal.
pub(super) struct Entry<'a> {
    pub(super) seq: u64,
    /// Its length in the ring.
    pub(super) len: usize,
    pub(super) time: OffsetDateTime,
    /// The event's fields; `None` for a seal.
    pub(super) event: Option<Fields<'a>>,
}

/// Reads the entry at the start of `bytes`; `None` unless a whole, intact entry is there
/// (zeroes, a copy torn by a crash, or the middle of an earlier lap's entry are not).
pub(super) fn decode(bytes: &[u8]) -> Option<Entry<'_>> {
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
pub(super) struct Ring {
    /// The last entry's seq: the chain's length once the appender has caught up.
    pub(super) seq: u64,
    /// Bytes ever put in the journal; the next entry goes there.
    pub(super) put: u64,
    /// Bytes ever taken out of the journal (written to the trail); `taken..put` is in use.
    pub(super) taken: u64,
    /// Events since the last seal.
    pub(super) unsealed: u64,
    /// Set once a write failed: the trail refuses further events rather than leave a gap.
    pub(super) broken: Option<String>,
}

impl Ring {
    /// Numbers `entry` (from [`encode`], whose CRC state is `crc`) as the next seq and copies
    /// it into `journal`; returns its seq, or `None` (and the ring unchanged) when the journal
    /// is full.
    pub(super) fn push(
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

/// Calls `f` with each entry of the ring's bytes `parts` (from [`Journal::entries`]), whole
/// entries back to back; one that wraps around the ring's end is put together in `scratch`.
pub(super) fn for_each_entry(
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

/// The entries a journal file (its bytes as a crash left them) holds beyond seq `after`,
/// back to back in seq order. They are read from where the appender last took entries from,
/// each whole, intact and next in seq; the first that is not (a copy torn by the crash,
/// zeroes, an earlier lap's entry) ends them.
pub(super) fn journal_tail(file: &[u8], after: u64) -> Vec<u8> {
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
pub(super) fn open_journal(
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
