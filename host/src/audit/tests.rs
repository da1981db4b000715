//! The trail's own tests: chain, seals, journal recovery, verify and query.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::*;
use super::{chain::*, event::*, journal::*, query::*, verify::*, writer::*};
use crate::secret::SecretBytes;

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
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string())
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
