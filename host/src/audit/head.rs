//! The sealed head against the trail: checked at every start, published so that operators can
//! anchor it outside the machine, and the only way past a cut: a gap record.
//!
//! A seal is fsynced into the trail before `audit.head` names it, so a trail file that does not
//! hold the head's line was cut (or replaced) while the server was stopped. Resuming from the
//! cut would hide it for good: the next seals would cover the shortened chain and `verify`
//! would pass. So a start refuses such a trail, and only [`accept_gap`], run by an operator,
//! lets the server go on; it writes a sealed `AuditGap` line into the chain, which `verify`
//! reports forever after. Someone who can rewrite both files together (root on the host) can
//! roll them back to an earlier consistent pair; an anchor kept elsewhere (a head taken from
//! `/status` or `arca audit head`, checked with `arca audit verify --anchor`) catches that.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use time::OffsetDateTime;

use super::GENESIS;
use super::chain::{Chain, Head, last_line, mac_hex, mac_ok, recover};
use super::event::Fields;
use super::journal::Entry;
use super::writer::write_head;
use crate::secret::SecretBytes;

/// What a gap record's `action` says.
pub const GAP_ACTION: &str = "AuditGap";

/// How a trail file stands against its sealed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The trail holds the head's line (or was never sealed).
    Whole,
    /// The head file is gone although the trail holds seals.
    HeadMissing,
    /// The head file does not verify under this root key.
    HeadForged,
    /// The trail does not hold the head's line: it ends before it, or another line is there.
    Cut {
        /// The head's seq.
        sealed: u64,
        /// The trail's last seq.
        last: u64,
    },
}

impl Standing {
    /// What an operator is told, or `None` when the trail is whole.
    pub fn problem(&self) -> Option<String> {
        match self {
            Standing::Whole => None,
            Standing::HeadMissing => Some(
                "the sealed head (audit.head) is missing although the trail holds seals".into(),
            ),
            Standing::HeadForged => {
                Some("the sealed head (audit.head) does not verify under this root key".into())
            }
            Standing::Cut { sealed, last } => Some(format!(
                "the trail does not hold its sealed head: seq {sealed} was sealed, and the \
                 trail ends at seq {last} or holds another line there (lines were removed or \
                 replaced while the server was stopped)"
            )),
        }
    }
}

/// Reads `audit.head`; `None` when there is none.
pub(super) fn read(path: &Path) -> std::io::Result<Option<Head>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("audit.head is malformed: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The sealed head at `path`, if its MAC verifies under `key`.
pub fn sealed_head(path: &Path, key: &SecretBytes) -> std::io::Result<Option<Head>> {
    match read(path)? {
        Some(h) if !mac_ok(key.expose(), "head", h.seq, &h.hash, &h.mac) => Err(
            std::io::Error::other("the sealed head does not verify under this root key"),
        ),
        head => Ok(head),
    }
}

/// How `trail` (whose last complete line is `last`) stands against the head at `head_path`.
pub(super) fn standing(
    trail: &mut File,
    head_path: &Path,
    key: &SecretBytes,
    last: Option<&(u64, String)>,
) -> std::io::Result<Standing> {
    let Some(head) = read(head_path)? else {
        // The first head is written just after the first seal is fsynced: a crash between the
        // two leaves one seal and no head. Two seals without a head are a removed head.
        return Ok(if seals_up_to_two(trail)? >= 2 {
            Standing::HeadMissing
        } else {
            Standing::Whole
        });
    };
    if !mac_ok(key.expose(), "head", head.seq, &head.hash, &head.mac) {
        return Ok(Standing::HeadForged);
    }
    let last_seq = last.map_or(0, |(seq, _)| *seq);
    let found = match last {
        Some((seq, hash)) if *seq == head.seq => Some(hash.clone()),
        Some((seq, _)) if *seq > head.seq => hash_at(trail, head.seq)?,
        _ => None,
    };
    Ok(if found.as_deref() == Some(head.hash.as_str()) {
        Standing::Whole
    } else {
        Standing::Cut {
            sealed: head.seq,
            last: last_seq,
        }
    })
}

/// How many seal lines the trail holds, counting up to two: read from the start up to the
/// second (within the first two [`SEAL_INTERVAL`](super::SEAL_INTERVAL)s of events), or the
/// whole of a trail that has fewer (a crash that early leaves only a few lines).
fn seals_up_to_two(trail: &mut File) -> std::io::Result<usize> {
    trail.seek(SeekFrom::Start(0))?;
    let reader = BufReader::new(&mut *trail);
    let mut seals = 0;
    for line in reader.split(b'\n') {
        // Only a seal line has this member: a value holding the text has its quotes escaped.
        if line?.windows(9).any(|w| w == b",\"seal\":\"") {
            seals += 1;
            if seals == 2 {
                break;
            }
        }
    }
    Ok(seals)
}

/// The hash of the line with `seq`, read backwards from the end (the head is at most a few
/// seal intervals from it).
fn hash_at(trail: &mut File, seq: u64) -> std::io::Result<Option<String>> {
    const CHUNK: u64 = 1 << 20;
    let mut end = trail.seek(SeekFrom::End(0))?;
    // Bytes of a line cut by the chunk's start, carried to the next chunk back.
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0; usize::try_from(end - start).unwrap_or(0)];
        trail.seek(SeekFrom::Start(start))?;
        trail.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut lines = buf.split(|b| *b == b'\n').rev().filter(|l| !l.is_empty());
        let mut first = None;
        for line in lines.by_ref() {
            first = Some(line);
            let Some((s, hash)) = std::str::from_utf8(line).ok().and_then(last_line) else {
                continue;
            };
            if s == seq {
                return Ok(Some(hash));
            }
            if s < seq {
                return Ok(None);
            }
        }
        // The chunk's first line may be cut: read it again with the chunk before.
        carry = if start > 0 {
            first.map(<[u8]>::to_vec).unwrap_or_default()
        } else {
            Vec::new()
        };
        end = start;
    }
    Ok(None)
}

/// What [`accept_gap`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The gap line's seq.
    pub seq: u64,
    /// What it says was missing.
    pub what: String,
    /// The new sealed head.
    pub head: Head,
}

/// Lets a trail that does not match its sealed head go on: appends to the trail at `log` a
/// gap line saying what is missing, and a seal over it, and makes that the head. Run with the
/// server stopped. Refuses a trail that is whole (there is nothing to accept).
pub fn accept_gap(log: &Path, key: &SecretBytes) -> std::io::Result<Gap> {
    let mut trail = OpenOptions::new().read(true).append(true).open(log)?;
    let last = recover(&mut trail)?;
    let head_path = log.with_file_name("audit.head");
    let standing = standing(&mut trail, &head_path, key, last.as_ref())?;
    let Some(problem) = standing.problem() else {
        return Err(std::io::Error::other(
            "the trail holds its sealed head: there is no gap to accept",
        ));
    };
    let (seq, hash) = last.unwrap_or((0, GENESIS.to_owned()));
    let mut chain = Chain::new(seq, &hash).map_err(std::io::Error::other)?;
    let now = OffsetDateTime::now_utc();
    let what = format!("{problem}; the chain goes on from seq {seq}");
    let mut fields = Fields::seal(now, "");
    fields.action = GAP_ACTION;
    fields.resource = Some(&what);
    fields.result = "Gap";
    fields.seal = None;
    let mut lines = Vec::new();
    for event in [Some(fields), None] {
        let entry = Entry {
            seq: chain.seq + 1,
            len: 0,
            time: now,
            event,
        };
        chain
            .line(entry, key, &mut lines)
            .map_err(std::io::Error::other)?;
    }
    trail.write_all(&lines)?;
    trail.sync_data()?;
    let (sealed, sealed_hash) = chain
        .last_seal
        .ok_or_else(|| std::io::Error::other("no seal was made"))?;
    let sealed_hash = String::from_utf8_lossy(&sealed_hash).into_owned();
    let head = Head {
        seq: sealed,
        mac: mac_hex(key.expose(), "head", sealed, &sealed_hash),
        hash: sealed_hash,
    };
    write_head(&head_path, &head)?;
    Ok(Gap {
        seq: seq + 1,
        what,
        head,
    })
}

/// A head kept outside the machine, to check a trail against: `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The anchored line's seq.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: an anchor is SEQ:HASH"))?;
        let seq = seq.parse().map_err(|_| format!("{seq:?} is not a seq"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hash:?} is not a SHA-256 in hex"));
        }
        Ok(Self {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}
