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
//! Durability: before its reply goes out, a request's line is copied into the journal
//! (`audit.journal`), a file mapped shared into memory: the copy is in the kernel's page cache,
//! so a crash of the process at any instant loses no event of a reply already sent, and the
//! next start appends what the journal holds beyond the trail's end. A thread moves lines from
//! the journal to `audit.log` every [`APPEND_INTERVAL`] and seals every [`SEAL_INTERVAL`]; the
//! trail is fsynced at every seal, so a power loss can lose at most the lines of the last
//! interval, and a seal never covers lines that are not on disk. An fsync before each reply
//! would cost a 0.4 ms disk flush per request on this class of machine, and a `write(2)` per
//! request with its group-commit waits cost 13–18% of Encrypt throughput at 4 connections,
//! against about 10% for the journal (docs/benchmarks.md).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;

use crate::secret::SecretBytes;

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
    // Events come thousands a second and times have whole seconds: format each second once
    // per thread.
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with_borrow_mut(|(second, text)| {
        let now = t.unix_timestamp();
        if *second != now {
            *second = now;
            *text = crate::clock::format_utc(*t);
        }
        s.serialize_str(text)
    })
}

/// An event's fields as a line carries them between its `seq` and its `prev`. Serialised
/// outside the chain lock; the fields are spelled out (no `#[serde(flatten)]`, which goes
/// through a map, measurably slower on the request path).
#[derive(Serialize)]
struct Fields<'a> {
    #[serde(serialize_with = "utc")]
    time: &'a OffsetDateTime,
    request_id: &'a str,
    action: &'a str,
    account: Option<&'a str>,
    access_key_id: Option<&'a str>,
    source_ip: &'a str,
    resource: Option<&'a str>,
    key_version: Option<&'a str>,
    result: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    seal: Option<&'a str>,
}

/// Writes `event` as a JSON object into `out` (cleared first); the members are
/// `out[1..out.len() - 1]`.
fn fields_into(
    event: &AuditEvent,
    seal: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), AuditError> {
    out.clear();
    serde_json::to_writer(
        &mut *out,
        &Fields {
            time: &event.time,
            request_id: &event.request_id,
            action: &event.action,
            account: event.account.as_deref(),
            access_key_id: event.access_key_id.as_deref(),
            source_ip: &event.source_ip,
            resource: event.resource.as_deref(),
            key_version: event.key_version.as_deref(),
            result: event.result,
            status: event.status,
            seal,
        },
    )
    .map_err(|e| AuditError(e.to_string()))
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

/// The journal's size. At 40,000 lines a second (about 520 bytes each) it holds 0.8 s of
/// lines: sixteen appender rounds, more than an fsync of the trail keeps the appender away.
const JOURNAL_BYTES: usize = 16 << 20;
/// How often the appender moves lines from the journal to the trail file. Lines are durable
/// against a crash of the process once in the journal; this is only how soon readers of the
/// trail file see them. Waking more often costs throughput: at 2 ms, a 2-vCPU machine lost
/// 10% more Encrypt requests/s to the appender's wake-ups than at 50 ms
/// (docs/benchmarks.md).
const APPEND_INTERVAL: Duration = Duration::from_millis(50);

/// Where lines wait between their request and the trail file: a file of fixed size, mapped
/// shared into the server's memory and used as a ring. Copying a line in is a `memcpy` into
/// the kernel's page cache: it survives a crash of the process as a `write(2)` would, without
/// the system call or a wait for a writer on the request path. The appender writes lines to
/// the trail file straight from the ring, in batches, and frees their space only once they
/// are written; a start after a crash appends the lines the journal holds beyond the trail's
/// end.
///
/// The ring's bytes are only touched in two ways, and never the same bytes at once: callers
/// copy lines into the free space after `put`, under the chain lock, and the appender reads
/// the lines between `taken` and `put` (whose bounds it read under that lock), which no
/// caller writes until `taken` moves past them, again under the lock.
#[derive(Debug)]
struct Journal {
    map: memmap2::MmapRaw,
}

impl Journal {
    fn capacity(&self) -> u64 {
        self.map.len() as u64
    }

    /// Copies `line` into the ring at byte `at` (counted from the ring's first use; wraps).
    /// The caller holds the chain lock and has checked that the bytes are free.
    #[allow(
        unsafe_code,
        reason = "the ring is written through a raw pointer while the appender reads other parts of it"
    )]
    fn write_at(&self, at: u64, line: &[u8]) {
        let at = (at % self.capacity()) as usize;
        let first = line.len().min(self.map.len() - at);
        // SAFETY: `at + first <= len` and `line.len() - first <= at` (a line is never longer
        // than the ring), so both copies stay inside the mapping; the bytes are free (see the
        // type's doc), so nobody reads or writes them meanwhile; `line` is not in the ring.
        unsafe {
            std::ptr::copy_nonoverlapping(line.as_ptr(), self.map.as_mut_ptr().add(at), first);
            std::ptr::copy_nonoverlapping(
                line.as_ptr().add(first),
                self.map.as_mut_ptr(),
                line.len() - first,
            );
        }
    }

    /// The ring's bytes from `from` to `to` (counted as in [`Self::write_at`]; at most the
    /// ring's size apart), as up to two slices. The caller read both bounds under the chain
    /// lock and keeps `taken` at `from` until it is done with them.
    #[allow(
        unsafe_code,
        reason = "the appender reads lines in the ring while callers write other parts of it"
    )]
    fn lines(&self, from: u64, to: u64) -> [&[u8]; 2] {
        let at = (from % self.capacity()) as usize;
        let n = (to - from) as usize;
        let first = n.min(self.map.len() - at);
        // SAFETY: both ranges lie inside the mapping (`at + first <= len`, `n - first <=
        // len`), and they hold lines no caller writes until `taken` moves past `to` (see the
        // type's doc), which cannot happen while these borrows of `self` live in the one
        // appender that moves it.
        unsafe {
            [
                std::slice::from_raw_parts(self.map.as_ptr().add(at), first),
                std::slice::from_raw_parts(self.map.as_ptr(), n - first),
            ]
        }
    }
}

/// The chain's state. Lines are made and copied into the journal under the lock (the chain
/// is sequential); the appender writes them to the file outside it.
#[derive(Debug)]
struct Chain {
    seq: u64,
    /// The last line's hash.
    head: HexHash,
    /// Where the next line is made, reused.
    line: Vec<u8>,
    /// Bytes ever put in the journal; the next line goes there.
    put: u64,
    /// Bytes ever taken out of the journal (written to the trail); `taken..put` is in use.
    taken: u64,
    unsealed: u64,
    /// Set once a write failed: the trail refuses further lines rather than leave a gap.
    broken: Option<String>,
}

/// The trail file: one appender at a time (the background thread, or a seal asked for at
/// shutdown).
#[derive(Debug)]
struct Appender {
    file: File,
}

#[derive(Debug)]
struct Shared {
    chain: Mutex<Chain>,
    journal: Journal,
    appender: Mutex<Appender>,
    /// The appender thread, to wake it early when the journal is full.
    thread: std::sync::OnceLock<std::thread::Thread>,
    /// Callers waiting for room in a full journal (the appender is behind).
    room: tokio::sync::Notify,
    key: SecretBytes,
    head_path: PathBuf,
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

impl Chain {
    /// Makes the next line around `object` (an event's JSON object, whose members the line
    /// carries between its `seq` and its `prev`) and copies it into `journal`; returns its
    /// seq, or `None` (and the chain unchanged) when the journal is full.
    fn push(&mut self, journal: &Journal, object: &[u8]) -> Result<Option<u64>, AuditError> {
        if let Some(why) = &self.broken {
            return Err(AuditError(why.clone()));
        }
        let members = object
            .get(1..object.len().saturating_sub(1))
            .ok_or_else(|| AuditError("an event is not a JSON object".into()))?;
        let seq = self.seq + 1;
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"seq\":");
        line.extend_from_slice(seq.to_string().as_bytes());
        line.push(b',');
        line.extend_from_slice(members);
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(&self.head);
        line.push(b'"');
        // The hash covers the line as a closed object without its hash member.
        let mut sha = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        sha.update(line);
        sha.update(b"}");
        let mut hash: HexHash = [0; 64];
        hex::encode_to_slice(sha.finish().as_ref(), &mut hash)
            .map_err(|e| AuditError(e.to_string()))?;
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(&hash);
        line.extend_from_slice(b"\"}\n");
        let n = line.len() as u64;
        if n > journal.capacity() {
            return Err(AuditError("an event is larger than the journal".into()));
        }
        if self.put - self.taken + n > journal.capacity() {
            return Ok(None);
        }
        journal.write_at(self.put, line);
        self.put += n;
        self.seq = seq;
        self.head = hash;
        self.unsealed += 1;
        Ok(Some(seq))
    }

    fn head_str(&self) -> &str {
        std::str::from_utf8(&self.head).unwrap_or(GENESIS)
    }
}

impl Shared {
    /// Moves the journal's lines to the trail file, written straight from the ring, and frees
    /// their space once they are written. Returns how many bytes it wrote.
    fn append(&self, out: &mut Appender) -> Result<usize, AuditError> {
        let (from, to) = {
            let chain = self.chain.lock().map_err(poisoned)?;
            if let Some(why) = &chain.broken {
                return Err(AuditError(why.clone()));
            }
            (chain.taken, chain.put)
        };
        if from == to {
            return Ok(0);
        }
        let [first, second] = self.journal.lines(from, to);
        let wrote = out
            .file
            .write_all(first)
            .and_then(|()| out.file.write_all(second));
        let mut chain = self.chain.lock().map_err(poisoned)?;
        if let Err(e) = wrote {
            // Part of the batch may be in the file: refuse further lines rather than chain
            // onto an unknown state. The lines stay in the journal, and a restart cuts the
            // partial line off and appends them from there.
            let why = format!("write failed: {e}");
            chain.broken = Some(why.clone());
            drop(chain);
            self.room.notify_waiters();
            return Err(AuditError(why));
        }
        chain.taken = to;
        drop(chain);
        self.room.notify_waiters();
        Ok((to - from) as usize)
    }
}

impl Drop for Shared {
    /// The last handle is gone: write out what the journal holds (the next start would
    /// otherwise do it).
    fn drop(&mut self) {
        if let Ok(mut out) = self.appender.lock()
            && let Err(e) = self.append(&mut out)
        {
            tracing::error!(error = %e, "audit trail: lines left in the journal");
        }
    }
}

/// The lines of a journal (its bytes as the ring left them) that continue a chain ending at
/// `seq` with hash `head`, in order. A line torn by a crash, or partly overwritten by a later
/// lap of the ring, fails its hash and is not among them.
fn journal_lines(ring: &[u8], seq: u64, head: &str) -> Vec<Vec<u8>> {
    // A line may wrap around the end of the ring: read it twice over.
    let mut twice = Vec::with_capacity(ring.len() * 2);
    twice.extend_from_slice(ring);
    twice.extend_from_slice(ring);
    let mut found = std::collections::BTreeMap::new();
    for raw in twice.split(|b| *b == b'\n') {
        // Before the first lap, a line may follow zeroes.
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let Ok(text) = std::str::from_utf8(&raw[start..]) else {
            continue;
        };
        let Some((body, hash)) = split_line(text) else {
            continue;
        };
        if sha256_hex(body.as_bytes()) != hash {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        let (Some(n), Some(prev)) = (
            value.get("seq").and_then(serde_json::Value::as_u64),
            value.get("prev").and_then(serde_json::Value::as_str),
        ) else {
            continue;
        };
        if n > seq {
            found.insert(
                n,
                (prev.to_owned(), hash.to_owned(), text.as_bytes().to_vec()),
            );
        }
    }
    let (mut next, mut prev_hash) = (seq + 1, head.to_owned());
    let mut lines = Vec::new();
    for (n, (prev, hash, mut text)) in found {
        if n != next || prev != prev_hash {
            tracing::warn!(
                seq = n,
                "the audit journal holds a line that does not continue the trail; left out"
            );
            break;
        }
        text.push(b'\n');
        lines.push(text);
        next += 1;
        prev_hash = hash;
    }
    lines
}

/// Opens the journal beside the trail at `path`: first appends to `trail` (fsynced) the lines
/// a crash left in it, then starts it afresh, zero-filled so that no write into it ever needs
/// a block the disk cannot give (which a mapped write would meet as SIGBUS), and maps it.
fn open_journal(
    path: &Path,
    trail: &mut File,
    seq: &mut u64,
    head: &mut String,
) -> std::io::Result<memmap2::MmapRaw> {
    let journal_path = path.with_extension("journal");
    match std::fs::read(&journal_path) {
        Ok(ring) => {
            let lines = journal_lines(&ring, *seq, head);
            if !lines.is_empty() {
                for line in &lines {
                    trail.write_all(line)?;
                }
                trail.sync_data()?;
                tracing::info!(
                    lines = lines.len(),
                    "appended to the audit trail the lines a crash left in its journal"
                );
                if let Some((s, h)) = lines
                    .last()
                    .and_then(|l| std::str::from_utf8(l).ok())
                    .and_then(|l| last_line(l.trim_end()))
                {
                    (*seq, *head) = (s, h);
                }
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
    file.write_all(&vec![0; JOURNAL_BYTES])?;
    file.sync_all()?;
    // Populated: the pages are in memory from the start, not faulted in on the request path.
    // Another process truncating the file would kill the server with SIGBUS, like any mapped
    // file; the journal lives in the data directory, private to the server (0700) beside the
    // root key, so whoever can do that can do worse.
    memmap2::MmapOptions::new()
        .len(JOURNAL_BYTES)
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
        let (mut seq, mut head) = recover(&mut file)?.unwrap_or((0, GENESIS.to_owned()));
        let journal = Journal {
            map: open_journal(path, &mut file, &mut seq, &mut head)?,
        };
        let head: HexHash = head
            .as_bytes()
            .try_into()
            .map_err(|_| std::io::Error::other("the audit trail's last hash is malformed"))?;
        let shared = Arc::new(Shared {
            chain: Mutex::new(Chain {
                seq,
                head,
                line: Vec::with_capacity(1024),
                put: 0,
                taken: 0,
                unsealed: 0,
                broken: None,
            }),
            journal,
            appender: Mutex::new(Appender { file }),
            thread: std::sync::OnceLock::new(),
            room: tokio::sync::Notify::new(),
            key,
            head_path: path.with_file_name("audit.head"),
        });
        let appender = Arc::downgrade(&shared);
        let thread = std::thread::Builder::new()
            .name("arca-audit".into())
            .spawn(move || append_and_seal(&appender))?;
        let _ = shared.thread.set(thread.thread().clone());
        Ok(Self { shared })
    }

    /// Appends `event` to the chain and returns once its line is in the journal (in the
    /// kernel's page cache), so the caller replies only to audited requests and a crash of the
    /// process after the reply loses no event. Waits only when the journal is full because
    /// the appender is behind.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        thread_local! {
            static OBJECT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if cfg!(feature = "unaudited-benchmark-baseline") {
            return Ok(());
        }
        let shared = &*self.shared;
        let push = || {
            OBJECT.with_borrow_mut(|object| {
                fields_into(&event, None, object)?;
                shared
                    .chain
                    .lock()
                    .map_err(poisoned)?
                    .push(&shared.journal, object)
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

    /// Seals now (tests and shutdown): appends the journal's lines, a seal line, fsyncs and
    /// writes the head file.
    pub fn seal_now(&self) -> Result<(), AuditError> {
        seal(&self.shared)
    }

    /// The chain's length and whether it still takes lines (a failed write stops it, and
    /// every call then answers 503), for readiness and `arca status`.
    pub fn status(&self) -> AuditStatus {
        match self.shared.chain.lock() {
            Ok(chain) => AuditStatus {
                events: chain.seq,
                unsealed: chain.unsealed,
                error: chain.broken.clone(),
            },
            Err(_) => AuditStatus {
                events: 0,
                unsealed: 0,
                error: Some("lock poisoned".into()),
            },
        }
    }
}

/// The appender thread: moves lines from the journal to the trail file every
/// [`APPEND_INTERVAL`] (sooner when a caller finds the journal full) and seals every
/// [`SEAL_INTERVAL`]. Ends when the trail is dropped.
fn append_and_seal(shared: &std::sync::Weak<Shared>) {
    let mut sealed = std::time::Instant::now();
    let mut failing = false;
    while let Some(shared) = shared.upgrade() {
        let result = if sealed.elapsed() >= SEAL_INTERVAL {
            sealed = std::time::Instant::now();
            seal(&shared)
        } else {
            shared
                .appender
                .lock()
                .map_err(poisoned)
                .and_then(|mut out| shared.append(&mut out))
                .map(drop)
        };
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
    /// Lines in the chain (events and seals).
    pub events: u64,
    /// Lines not yet covered by a seal.
    pub unsealed: u64,
    /// Why the trail stopped taking lines, if it did.
    pub error: Option<String>,
}

fn is_chained(path: &Path) -> std::io::Result<bool> {
    let mut first = String::new();
    BufReader::new(File::open(path)?).read_line(&mut first)?;
    Ok(first.trim().is_empty() || split_line(first.trim_end()).is_some())
}

/// When the trail has unsealed lines: puts a seal line in the chain, appends the journal up to
/// it, fsyncs (so a seal never covers lines that are not on disk) and records the head.
fn seal(shared: &Shared) -> Result<(), AuditError> {
    let mut out = shared.appender.lock().map_err(poisoned)?;
    let (seq, hash) = loop {
        // The MAC names the seal's seq and the hash before it: made and pushed under one lock.
        let mut chain = shared.chain.lock().map_err(poisoned)?;
        if chain.unsealed == 0 {
            return Ok(());
        }
        let mac = mac_hex(shared.key.expose(), "seal", chain.seq + 1, chain.head_str());
        let event = AuditEvent {
            time: OffsetDateTime::now_utc(),
            request_id: String::new(),
            action: SEAL_ACTION.into(),
            account: None,
            access_key_id: None,
            source_ip: String::new(),
            resource: None,
            key_version: None,
            result: "OK",
            status: 0,
        };
        let mut object = Vec::new();
        fields_into(&event, Some(&mac), &mut object)?;
        if let Some(seq) = chain.push(&shared.journal, &object)? {
            chain.unsealed = 0;
            break (seq, chain.head_str().to_owned());
        }
        drop(chain);
        // The journal is full: make room.
        shared.append(&mut out)?;
    };
    shared.append(&mut out)?;
    out.file
        .sync_data()
        .map_err(|e| AuditError(format!("fsync: {e}")))?;
    drop(out);
    let head = Head {
        seq,
        mac: mac_hex(shared.key.expose(), "head", seq, &hash),
        hash,
    };
    write_head(&shared.head_path, &head).map_err(|e| AuditError(format!("head file: {e}")))
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
    let journal = journal_beyond(log, walk.lines, &walk.prev)
        .map_err(|e| Tamper::Unreadable(e.to_string()))?;
    for raw in &journal {
        let line = walk.lines + 1;
        let text = std::str::from_utf8(raw.strip_suffix(b"\n").unwrap_or(raw))
            .map_err(|_| Tamper::Malformed { line })?;
        walk.line(text)?;
    }
    Ok(Verified {
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
    let (seq, head) = last
        .as_deref()
        .and_then(last_line)
        .unwrap_or((0, GENESIS.to_owned()));
    for raw in journal_beyond(log, seq, &head)? {
        let text = String::from_utf8_lossy(raw.strip_suffix(b"\n").unwrap_or(&raw)).into_owned();
        if selects(&text) {
            out.push(text);
        }
    }
    Ok(out)
}

/// The lines the journal beside the trail at `log` holds beyond the trail's end (`seq`, with
/// hash `head`); none when there is no journal.
fn journal_beyond(log: &Path, seq: u64, head: &str) -> std::io::Result<Vec<Vec<u8>>> {
    match std::fs::read(log.with_extension("journal")) {
        Ok(ring) => Ok(journal_lines(&ring, seq, head)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    #[tokio::test]
    #[ignore = "a measurement, run by hand"]
    async fn record_cost() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = AuditLog::open(&dir.path().join("audit.log"), SecretBytes::random(32))
            .unwrap_or_else(|e| panic!("{e}"));
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
        // Fewer lines than the journal holds: this measures the request path, not the wait for
        // an appender that is behind.
        let n = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            log.record(event.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let per = t.elapsed() / n;
        let journal = Journal {
            map: memmap2::MmapMut::map_anon(4096)
                .unwrap_or_else(|e| panic!("{e}"))
                .into(),
        };
        let t = std::time::Instant::now();
        for i in 0..n {
            let mut chain = Chain {
                seq: u64::from(i),
                head: [b'0'; 64],
                line: Vec::new(),
                put: 0,
                taken: 0,
                unsealed: 0,
                broken: None,
            };
            let mut f = Vec::new();
            fields_into(&event, None, &mut f).unwrap_or_default();
            std::hint::black_box(chain.push(&journal, &f).unwrap_or_default());
        }
        let ser = t.elapsed() / n;
        panic!("record: {per:?} per event; serialise+hash alone: {ser:?}");
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
            key_version: None,
            result: "OK",
            status: 200,
        }
    }

    /// Lines read back as the appender writes them must be whole and chained, across many
    /// laps of a ring whose size is no multiple of a line's.
    #[test]
    fn the_ring_wraps_and_refuses_what_does_not_fit() {
        let journal = Journal {
            map: memmap2::MmapMut::map_anon(4096).unwrap().into(),
        };
        let mut chain = Chain {
            seq: 0,
            head: GENESIS.as_bytes().try_into().unwrap(),
            line: Vec::new(),
            put: 0,
            taken: 0,
            unsealed: 0,
            broken: None,
        };
        let mut object = Vec::new();
        let mut written = Vec::new();
        for round in 0..20 {
            fields_into(&event(round), None, &mut object).unwrap();
            let before = chain.seq;
            while chain.push(&journal, &object).unwrap().is_some() {}
            // Full: a handful of lines went in, and the refused one left the chain as it was.
            assert!(chain.seq - before >= 7, "{} lines fit", chain.seq - before);
            assert!(chain.put - chain.taken <= 4096);
            let [first, second] = journal.lines(chain.taken, chain.put);
            written.extend_from_slice(first);
            written.extend_from_slice(second);
            chain.taken = chain.put;
        }
        let text = String::from_utf8(written).unwrap();
        let mut prev = GENESIS.to_owned();
        for (i, line) in text.lines().enumerate() {
            let (body, hash) = split_line(line).unwrap();
            assert_eq!(sha256_hex(body.as_bytes()), hash);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["seq"], i as u64 + 1);
            assert_eq!(v["prev"], prev.as_str());
            prev = hash.to_owned();
        }
        assert_eq!(text.lines().count() as u64, chain.seq);
    }

    /// A crash leaves the trail file behind the journal. The next start appends the lines the
    /// journal holds beyond the trail's end, in order, including one wrapped around the ring's
    /// end, and ignores stale lines and a line torn mid-copy; the trail then verifies and goes
    /// on.
    #[tokio::test]
    async fn a_start_appends_what_a_crash_left_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let key = SecretBytes::random(32);
        let log = AuditLog::open(&path, SecretBytes::new(key.expose().to_vec())).unwrap();
        for i in 0..10 {
            log.record(event(i)).await.unwrap();
        }
        log.seal_now().unwrap();
        for i in 10..13 {
            log.record(event(i)).await.unwrap();
        }
        drop(log);
        let full = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = full.lines().collect();
        assert_eq!(lines.len(), 14, "10 events, a seal, 3 events");

        // What a crash after line 14's reply could leave: the trail written up to line 5, the
        // journal holding lines 4 to 14 (from the ring's end around to its start), a stale
        // line from an earlier lap, and a torn copy of a line 15.
        let mut trail: String = lines[..5].iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, &trail).unwrap();
        let mut ring = vec![0u8; JOURNAL_BYTES];
        ring[100_000..100_000 + lines[2].len() + 1]
            .copy_from_slice(format!("{}\n", lines[2]).as_bytes());
        let mut tail: Vec<u8> = lines[3..]
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect();
        tail.extend_from_slice(&lines[13].replace("\"seq\":14", "\"seq\":15").as_bytes()[..200]);
        let at = JOURNAL_BYTES - 700;
        for (i, b) in tail.iter().enumerate() {
            ring[(at + i) % JOURNAL_BYTES] = *b;
        }
        std::fs::write(path.with_extension("journal"), &ring).unwrap();

        let log = AuditLog::open(&path, SecretBytes::new(key.expose().to_vec())).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
        assert_eq!(log.status().events, 14);
        log.record(event(13)).await.unwrap();
        drop(log);
        let head = path.with_file_name("audit.head");
        let checked = verify(&path, &head, &key).unwrap();
        assert_eq!(checked.lines, 15);
        trail = std::fs::read_to_string(&path).unwrap();
        assert!(trail.lines().last().unwrap().contains("request-13"));
        // The journal was started afresh: a second start appends nothing twice.
        drop(AuditLog::open(&path, SecretBytes::new(key.expose().to_vec())).unwrap());
        assert_eq!(verify(&path, &head, &key).unwrap().lines, 15);
    }
}
