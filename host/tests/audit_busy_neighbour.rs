//! The audit trail keeps up while other work keeps every core busy. Its own test binary: the
//! busy threads would otherwise slow the unit tests that run beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arca_host::audit::{AuditEvent, AuditLog, SEAL_ACTION, verify};
use arca_host::secret::SecretBytes;

/// An unauthenticated call's event: the fields do not matter here, the count does.
fn event(i: u32) -> AuditEvent {
    AuditEvent {
        time: time::OffsetDateTime::now_utc(),
        request_id: i.to_string(),
        action: "DescribeRegions".into(),
        source_ip: "::1".into(),
        result: "InvalidAccessKeyId.NotFound",
        status: 404,
        account: None,
        access_key_id: None,
        resource: None,
        key_version: None,
    }
}

/// The preparer (idle priority) gets no CPU while normal-priority threads keep every core
/// busy: the appender makes the lines itself and seals them without waiting for it.
#[tokio::test]
async fn a_busy_neighbour_does_not_stall_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let key = SecretBytes::random(32);
    let log = AuditLog::open(&path, SecretBytes::new(key.expose().to_vec())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..=cores)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let n = 3000;
    for i in 0..n {
        log.record(event(i)).await.unwrap();
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Sealed all the same: the last line is a seal after every event.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().next_back().unwrap_or_default();
        let seq = serde_json::from_str::<serde_json::Value>(last)
            .ok()
            .and_then(|v| v["seq"].as_u64());
        if last.contains(SEAL_ACTION) && seq == Some(log.status().events) {
            break;
        }
        assert!(Instant::now() < deadline, "never sealed: {last}");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.join().unwrap();
    }
    let status = log.status();
    assert!(status.lines_by_appender > 0, "{status:?}");
    assert_eq!(
        status.lines_by_appender + status.lines_by_preparer,
        status.events
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let events = text.lines().filter(|l| !l.contains(SEAL_ACTION)).count();
    assert_eq!(events, n as usize);
    verify(&path, &path.with_file_name("audit.head"), &key).unwrap();
}
