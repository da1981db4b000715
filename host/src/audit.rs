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
//! Durability: a request's line is written (`write(2)`, in the request's own task, no thread
//! hand-off) before its reply goes out, so a crash of the process at any instant loses no event
//! of a reply already sent. The file is fsynced at every seal, so a power loss can lose at most
//! the lines of the last [`SEAL_INTERVAL`], and a seal never covers lines that are not on disk.
//! An fsync before each reply would cost a 0.4 ms disk flush per request on this class of
//! machine: most of the throughput at low concurrency (docs/benchmarks.md).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// The chain's state. Lines are made under the lock (the chain is sequential) and written
/// outside it by one writer at a time (see [`AuditLog::record`]).
#[derive(Debug)]
struct Chain {
    seq: u64,
    /// The last line's hash.
    head: HexHash,
    /// Lines made but not yet written, in chain order.
    pending: Vec<u8>,
    /// An empty buffer to swap with `pending`, so neither is reallocated per batch.
    spare: Vec<u8>,
    /// Whether some caller is writing lines out right now.
    writing: bool,
    unsealed: u64,
    /// Set once a write failed: the trail refuses further lines rather than leave a gap.
    broken: Option<String>,
}

#[derive(Debug)]
struct Shared {
    file: File,
    chain: Mutex<Chain>,
    /// The highest seq written to the file.
    written: AtomicU64,
    /// Callers parked until `written` reaches their line; the writer wakes them only if any.
    waiting: AtomicUsize,
    wrote: tokio::sync::Notify,
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
    let parsed = split_line(last).and_then(|(body, hash)| {
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some((v.get("seq")?.as_u64()?, hash.to_owned()))
    });
    match parsed {
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
    /// carries between its `seq` and its `prev`) and queues it; returns its seq. The line is
    /// built in place in `pending` and hashed from there: no copy, no allocation.
    fn push(&mut self, object: &[u8]) -> Result<u64, AuditError> {
        if let Some(why) = &self.broken {
            return Err(AuditError(why.clone()));
        }
        let members = object
            .get(1..object.len().saturating_sub(1))
            .ok_or_else(|| AuditError("an event is not a JSON object".into()))?;
        let seq = self.seq + 1;
        let start = self.pending.len();
        let line = &mut self.pending;
        line.extend_from_slice(b"{\"seq\":");
        line.extend_from_slice(seq.to_string().as_bytes());
        line.push(b',');
        line.extend_from_slice(members);
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(&self.head);
        line.push(b'"');
        // The hash covers the line as a closed object without its hash member.
        let mut sha = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        sha.update(&line[start..]);
        sha.update(b"}");
        let mut hash: HexHash = [0; 64];
        hex::encode_to_slice(sha.finish().as_ref(), &mut hash)
            .map_err(|e| AuditError(e.to_string()))?;
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(&hash);
        line.extend_from_slice(b"\"}\n");
        self.seq = seq;
        self.head = hash;
        self.unsealed += 1;
        Ok(seq)
    }

    /// Makes the caller the writer, handing it every pending line and the seq they reach,
    /// unless someone is writing already (then that writer or its successor writes them).
    fn claim(&mut self) -> Option<(Vec<u8>, u64)> {
        if self.writing || self.pending.is_empty() {
            return None;
        }
        self.writing = true;
        let batch = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        Some((batch, self.seq))
    }

    fn head_str(&self) -> &str {
        std::str::from_utf8(&self.head).unwrap_or(GENESIS)
    }
}

/// How many batches a writer writes for others before handing the role on (to a waiter it
/// wakes), so one caller's reply is not held back for long under sustained load.
const WRITER_ROUNDS: usize = 8;

impl Shared {
    /// Writes `batch` (the pending lines up to `upto`, claimed by the caller), then, for a
    /// few rounds, whatever arrived meanwhile: group commit to the kernel, one `write(2)`
    /// per batch. Wakes the waiters whose lines are out.
    fn write_out(&self, mut batch: Vec<u8>, mut upto: u64) -> Result<(), AuditError> {
        for round in 1..=WRITER_ROUNDS {
            // One writer at a time, so batches reach the file in chain order.
            let wrote = (&self.file).write_all(&batch);
            let mut chain = self.chain.lock().map_err(poisoned)?;
            if let Err(e) = wrote {
                // A partial batch may be on disk: refuse everything after it rather than chain
                // onto an unknown state. A restart recovers from the last complete line.
                let why = format!("write failed: {e}");
                chain.broken = Some(why.clone());
                chain.writing = false;
                drop(chain);
                self.wake();
                return Err(AuditError(why));
            }
            self.written.store(upto, Ordering::SeqCst);
            batch.clear();
            if chain.pending.is_empty() || round == WRITER_ROUNDS {
                chain.writing = false;
                chain.spare = batch;
                drop(chain);
                self.wake();
                return Ok(());
            }
            batch = std::mem::replace(&mut chain.pending, batch);
            upto = chain.seq;
            drop(chain);
            self.wake();
        }
        Ok(())
    }

    /// Wakes the parked callers, if there are any (a `Notify` takes a lock even when none).
    fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wrote.notify_waiters();
        }
    }

    /// Returns once line `seq` is written: it was already, or the caller becomes the writer,
    /// or it parks until a writer wakes it.
    async fn written(&self, seq: u64) -> Result<(), AuditError> {
        loop {
            let woken = self.wrote.notified();
            tokio::pin!(woken);
            // Counted and registered before looking, so a writer that stores `written` after
            // the look sees the count and wakes this caller.
            let _waiting = Waiting::count(&self.waiting);
            woken.as_mut().enable();
            let claimed = {
                let mut chain = self.chain.lock().map_err(poisoned)?;
                if self.written.load(Ordering::SeqCst) >= seq {
                    return Ok(());
                }
                if let Some(why) = &chain.broken {
                    return Err(AuditError(why.clone()));
                }
                chain.claim()
            };
            // A writer handed the role on with lines pending, this caller's among them.
            if let Some((batch, upto)) = claimed {
                return self.write_out(batch, upto);
            }
            woken.await;
        }
    }
}

/// One parked caller, uncounted when it stops waiting (also when its request is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AuditLog {
    /// Opens (appending) the trail at `path`, continuing its chain, with `key` (derived from
    /// the root key) for the seals, and starts the sealing thread. An older, unchained trail
    /// is moved aside to `<path>.unchained`.
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
        let (seq, head) = recover(&mut file)?.unwrap_or((0, GENESIS.to_owned()));
        let head: HexHash = head
            .as_bytes()
            .try_into()
            .map_err(|_| std::io::Error::other("the audit trail's last hash is malformed"))?;
        let shared = Arc::new(Shared {
            file,
            chain: Mutex::new(Chain {
                seq,
                head,
                pending: Vec::with_capacity(64 * 1024),
                spare: Vec::with_capacity(64 * 1024),
                writing: false,
                unsealed: 0,
                broken: None,
            }),
            written: AtomicU64::new(seq),
            waiting: AtomicUsize::new(0),
            wrote: tokio::sync::Notify::new(),
            key,
            head_path: path.with_file_name("audit.head"),
        });
        let sealer = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("arca-audit-seal".into())
            .spawn(move || {
                while let Some(shared) = sealer.upgrade() {
                    if let Err(e) = seal(&shared) {
                        tracing::error!(error = %e, "audit seal failed");
                    }
                    drop(shared);
                    std::thread::sleep(SEAL_INTERVAL);
                }
            })?;
        Ok(Self { shared })
    }

    /// Appends `event` to the chain and returns once its line is written (to the kernel), so
    /// the caller replies only to audited requests.
    ///
    /// Group commit without a thread hand-off: the caller that finds no write in progress
    /// writes everything pending (its own line and any that arrive meanwhile); the others
    /// park until that writer has written theirs, or take the role over when it hands it on.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        thread_local! {
            static OBJECT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if cfg!(feature = "unaudited-benchmark-baseline") {
            return Ok(());
        }
        let shared = &*self.shared;
        let (mine, claimed) = OBJECT.with_borrow_mut(|object| {
            fields_into(&event, None, object)?;
            let mut chain = shared.chain.lock().map_err(poisoned)?;
            let mine = chain.push(object)?;
            Ok::<_, AuditError>((mine, chain.claim()))
        })?;
        match claimed {
            // Usually: this caller writes its own line (alone, or with others').
            Some((batch, upto)) => shared.write_out(batch, upto),
            None => shared.written(mine).await,
        }
    }

    /// Seals now (tests and shutdown): fsync, seal line, head file.
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

/// When the trail has unsealed lines: appends a seal line, waits until it is written, fsyncs
/// (so a seal never covers lines that are not on disk) and records the head.
fn seal(shared: &Shared) -> Result<(), AuditError> {
    let (seq, hash, claimed) = {
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
        let seq = chain.push(&object)?;
        chain.unsealed = 0;
        (seq, chain.head_str().to_owned(), chain.claim())
    };
    if let Some((batch, upto)) = claimed {
        shared.write_out(batch, upto)?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shared.written.load(Ordering::SeqCst) < seq {
        let claimed = {
            let mut chain = shared.chain.lock().map_err(poisoned)?;
            if let Some(why) = &chain.broken {
                return Err(AuditError(why.clone()));
            }
            chain.claim()
        };
        if let Some((batch, upto)) = claimed {
            shared.write_out(batch, upto)?;
        } else if std::time::Instant::now() > deadline {
            return Err(AuditError("the seal line was not written in time".into()));
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    shared
        .file
        .sync_data()
        .map_err(|e| AuditError(format!("fsync: {e}")))?;
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
    /// Lines read (events and seals).
    pub lines: u64,
    /// Seal lines among them.
    pub seals: u64,
    /// Lines after the last seal (written, not yet sealed; a crash or a stop within
    /// [`SEAL_INTERVAL`] leaves some).
    pub unsealed: u64,
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
/// (absent: the trail was never sealed), with the seal key.
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
    let mut prev = GENESIS.to_owned();
    let (mut lines, mut seals, mut since_seal) = (0u64, 0u64, 0u64);
    let mut head_seen = false;
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
        let line = lines + 1;
        let text = std::str::from_utf8(&raw[..n - 1]).map_err(|_| Tamper::Malformed { line })?;
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
        if value.get("prev").and_then(serde_json::Value::as_str) != Some(prev.as_str()) {
            return Err(Tamper::Unlinked { line, seq });
        }
        if let Some(mac) = value.get("seal").and_then(serde_json::Value::as_str) {
            if !mac_ok(key.expose(), "seal", seq, &prev, mac) {
                return Err(Tamper::BadSeal { line, seq });
            }
            seals += 1;
            since_seal = 0;
        } else {
            since_seal += 1;
        }
        if let Some(h) = &sealed
            && h.seq == seq
        {
            if h.hash != hash {
                return Err(Tamper::BadHead);
            }
            head_seen = true;
        }
        prev = hash.to_owned();
        lines = line;
    }
    if let Some(h) = &sealed
        && !head_seen
    {
        return Err(Tamper::Truncated {
            last: lines,
            sealed: h.seq,
        });
    }
    Ok(Verified {
        lines,
        seals,
        unsealed: since_seal,
    })
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

/// The events of the trail at `log` that `query` selects, as their JSON lines.
pub fn query(log: &Path, query: &Query) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for text in BufReader::new(File::open(log)?).lines() {
        let text = text?;
        let value: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if value.as_ref().is_some_and(|v| query.matches(v)) {
            out.push(text);
        }
    }
    Ok(out)
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
        let n = 100_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            log.record(event.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let per = t.elapsed() / n;
        let t = std::time::Instant::now();
        for i in 0..n {
            let mut chain = Chain {
                seq: u64::from(i),
                head: [b'0'; 64],
                pending: Vec::new(),
                spare: Vec::new(),
                writing: false,
                unsealed: 0,
                broken: None,
            };
            let mut f = Vec::new();
            fields_into(&event, None, &mut f).unwrap_or_default();
            std::hint::black_box(chain.push(&f).unwrap_or_default());
        }
        let ser = t.elapsed() / n;
        panic!("record: {per:?} per event; serialise+hash alone: {ser:?}");
    }
}
