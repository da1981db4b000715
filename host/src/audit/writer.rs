//! The writer: [`AuditLog`], the handle requests record through, and the threads behind it (the
//! appender, which moves events from the journal to the trail and seals, and the idle-priority
//! preparer, which makes lines ahead of it).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::chain::{Chain, Head, HexHash, mac_hex, recover, split_line};
use super::event::AuditEvent;
use super::journal::{
    APPEND_INTERVAL, Journal, Ring, encode, encode_seal, for_each_entry, open_journal,
};
use super::{AuditError, GENESIS, SEAL_INTERVAL, UNAUDITED_CONSENT, poisoned};
use crate::secret::SecretBytes;

/// The trail file and the chain's end: one appender at a time (the background thread, or a
/// seal asked for at shutdown).
#[derive(Debug)]
pub(super) struct Appender {
    pub(super) file: File,
    pub(super) chain: Chain,
    /// An entry that wraps around the ring's end, put back together; reused.
    pub(super) scratch: Vec<u8>,
    /// Lines waiting to be written, at most about [`WRITE_CHUNK`]; reused.
    pub(super) lines: Vec<u8>,
}

/// How many bytes of lines the appender makes before it writes them. Small enough that the
/// lines are still in the CPU's cache when the kernel copies them. A first build copied a
/// whole round's entries out of the ring and made all their lines (about 1 MB at 40,000
/// events a second) before one write; it cut Encrypt no less than making lines on the request
/// path had (docs/benchmarks.md).
pub(super) const WRITE_CHUNK: usize = 64 << 10;

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) ring: Mutex<Ring>,
    pub(super) journal: Journal,
    pub(super) appender: Mutex<Appender>,
    /// The appender thread, to wake it early when the journal is full.
    pub(super) thread: std::sync::OnceLock<std::thread::Thread>,
    /// Callers waiting for room in a full journal (the appender is behind).
    pub(super) room: tokio::sync::Notify,
    pub(super) key: SecretBytes,
    pub(super) head_path: PathBuf,
    /// The idle-priority thread that makes lines for the appender, where the platform lets
    /// a thread run at idle priority; without it the appender makes every line itself.
    pub(super) preparer: Option<(Arc<Preparer>, std::thread::Thread)>,
    /// Lines written, by who made them.
    pub(super) made: Made,
    /// The sealed head as last written, for `/status` and `/metrics`.
    pub(super) sealed: Mutex<Option<Head>>,
}

/// Lines written since the start, by who made them: whether the preparer keeps up shows in
/// `/metrics`.
#[derive(Debug, Default)]
pub(super) struct Made {
    pub(super) by_appender: std::sync::atomic::AtomicU64,
    pub(super) by_preparer: std::sync::atomic::AtomicU64,
}

/// How long a seal put in the journal may wait for the preparer to make its line before the
/// appender makes the pending lines itself, fsyncs and writes the head. With the appender's
/// rounds, a power loss can take at most about 350 ms of events: 200 ms between seals, this,
/// and a round.
pub(super) const SEAL_WAIT: Duration = Duration::from_millis(100);

/// What the appender hands the preparer and what it hands back. The appender only ever
/// `try_lock`s it, so it never waits for the preparer, which may not run for a long time
/// while other work keeps every core busy.
#[derive(Debug, Default)]
pub(super) struct Handoff {
    /// Entries to make lines of, copied out of the ring.
    pub(super) job: Option<Job>,
    /// The preparer took a job and has not handed its lines back yet.
    pub(super) busy: bool,
    /// Lines made, waiting for the appender.
    pub(super) done: Option<Prepared>,
}

/// Entries copied out of the ring bytes `from..to`, and the chain's end they continue.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) chain: Chain,
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) entries: Vec<u8>,
}

/// A job's lines, with the chain's end before and after them.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) before: (u64, HexHash),
    pub(super) chain: Chain,
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) lines: Vec<u8>,
}

/// The preparer's side: the handoff, and the seal key (to make seal lines).
#[derive(Debug)]
pub(super) struct Preparer {
    pub(super) handoff: Mutex<Handoff>,
    pub(super) key: SecretBytes,
}

/// A handle for appending events.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pub(super) shared: Arc<Shared>,
}

impl Shared {
    /// Moves the journal's entries to the trail file as chained lines, and frees their space
    /// once the lines are written.
    pub(super) fn append(&self, out: &mut Appender) -> Result<(), AuditError> {
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
    pub(super) fn stop(&self, e: AuditError) -> AuditError {
        if let Ok(mut ring) = self.ring.lock() {
            ring.broken = Some(e.0.clone());
        }
        self.room.notify_waiters();
        e
    }

    /// The entries before ring byte `taken` are in the trail file: frees their space.
    pub(super) fn free(&self, taken: u64) -> Result<(), AuditError> {
        self.journal.set_taken(taken);
        self.ring.lock().map_err(poisoned)?.taken = taken;
        self.room.notify_waiters();
        Ok(())
    }

    /// One round of the appender thread. With a preparer: writes the lines it handed back,
    /// if they still continue the chain, and hands it the entries that wait in the journal;
    /// but when `urgent`, makes their lines itself (a job the preparer is still on then goes
    /// stale, and its lines are dropped).
    pub(super) fn round(&self, out: &mut Appender, urgent: bool) -> Result<(), AuditError> {
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
    pub(super) fn write_prepared(
        &self,
        out: &mut Appender,
        done: Prepared,
    ) -> Result<(), AuditError> {
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
    pub(super) fn push_seal(&self) -> Result<SealPush, AuditError> {
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
    pub(super) fn filling(&self) -> Result<bool, AuditError> {
        let ring = self.ring.lock().map_err(poisoned)?;
        Ok(ring.put - ring.taken > self.journal.capacity() / 2)
    }
}

/// What [`Shared::push_seal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SealPush {
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
pub(super) fn prepare_lines(preparer: &std::sync::Weak<Preparer>) {
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
pub(super) fn start_preparer(key: &SecretBytes) -> Option<(Arc<Preparer>, std::thread::Thread)> {
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
pub(super) fn run_at_idle_priority() -> std::io::Result<()> {
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
pub(super) fn run_at_idle_priority() -> std::io::Result<()> {
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
        if let Some(problem) =
            super::head::standing(&mut file, &head_path, &key, last.as_ref())?.problem()
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
                super::head::read(&path.with_file_name("audit.head"))
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
pub(super) fn append_and_seal(shared: &std::sync::Weak<Shared>) {
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

pub(super) fn is_chained(path: &Path) -> std::io::Result<bool> {
    let mut first = String::new();
    BufReader::new(File::open(path)?).read_line(&mut first)?;
    Ok(first.trim().is_empty() || split_line(first.trim_end()).is_some())
}

/// Puts a seal in the journal when events came since the last one, appends all the journal
/// holds, and when that wrote a seal line, fsyncs (so a seal never covers lines that are not
/// on disk) and records it as the head.
pub(super) fn seal(shared: &Shared) -> Result<(), AuditError> {
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
pub(super) fn finish_seal(
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
pub(super) fn write_head(path: &Path, head: &Head) -> std::io::Result<()> {
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
