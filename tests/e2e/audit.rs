//! The audit trail: every call (also denied and failed ones) lands in a hash-chained, sealed
//! trail without secret input, before its reply; `arca audit verify` catches each kind of
//! tampering and names where; `arca audit query` filters.

use std::path::Path;
use std::process::Command;

use arca_tests::{Served, TestServer, arca_bin};

use crate::{new_key, process_server};

/// `arca audit verify` on `dir`: (success, stdout + stderr).
fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new(arca_bin())
        .args(["audit", "verify", "--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn query(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(arca_bin())
        .args(["audit", "query", "--data-dir", dir.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A stopped server's data dir with a sealed trail of some successful and failed calls.
async fn trail() -> (TestServer, Vec<String>) {
    let mut s = process_server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    for _ in 0..4 {
        c.call(
            "Encrypt",
            &[("KeyId", &key), ("Plaintext", "plaintext-marker-42")],
        )
        .await
        .unwrap();
    }
    let denied = c.call("DescribeKey", &[("KeyId", "key-missing")]).await;
    assert!(denied.is_err());
    // Past one seal interval, so the trail holds a seal and the head file exists.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    s.kill9().unwrap();
    let lines = std::fs::read_to_string(s.data_dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (s, lines)
}

fn write(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join("audit.log"), text).unwrap();
}

#[tokio::test]
async fn every_call_is_chained_and_the_trail_verifies() {
    let (s, lines) = trail().await;
    let (ok, out) = verify(&s.data_dir);
    assert!(ok, "{out}");
    // The last call, made after the last seal, was in the journal before its reply even though
    // the server was killed before it could seal again (or append it to the trail file).
    assert!(out.contains("\"UnsealedTail\": 1"), "{out}");
    let all = lines.join("\n");
    assert!(
        !all.contains("plaintext-marker-42"),
        "plaintext in the trail"
    );
    assert!(all.contains("\"result\":\"Forbidden.KeyNotFound\""));

    let encrypts = query(&s.data_dir, &["--action", "Encrypt"]);
    assert_eq!(encrypts.len(), 4);
    let e = &encrypts[0];
    assert!(
        e["resource"]
            .as_str()
            .unwrap()
            .starts_with("acs:kms:cn-hangzhou:")
    );
    assert!(e["key_version"].as_str().is_some());
    assert!(e["access_key_id"].as_str().unwrap().starts_with("LTAI"));
    let account = e["account"].as_str().unwrap().to_owned();
    assert_eq!(query(&s.data_dir, &["--account", &account]).len(), 7);
    assert!(query(&s.data_dir, &["--account", "1"]).is_empty());
    assert_eq!(query(&s.data_dir, &["--resource", "key-missing"]).len(), 1);
    assert!(query(&s.data_dir, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(
        query(&s.data_dir, &["--until", "2999-01-01T00:00:00Z"]).len(),
        7
    );
}

/// A reply goes out only once its event is in the journal, so a SIGKILL right after many
/// replies loses none of their events: `arca audit verify` counts those the trail file does not
/// hold yet from the journal, and the next start appends them.
#[tokio::test]
async fn no_event_of_a_sent_reply_is_lost_to_a_kill() {
    let mut s = process_server();
    let key = new_key(&s.client().unwrap(), "Aliyun_AES_256").await;
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let c = s.client().unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (c, key) = (c.clone(), key.clone());
            calls.spawn(async move {
                c.call("Encrypt", &[("KeyId", &key), ("Plaintext", "x")])
                    .await
            });
        }
        while let Some(reply) = calls.join_next().await {
            acknowledged.push(
                reply.unwrap().unwrap()["RequestId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        // Killed within a millisecond of the last reply: well inside the appender's interval.
        s.kill9().unwrap();
        let (ok, out) = verify(&s.data_dir);
        assert!(ok, "round {round}: {out}");
        let in_file = std::fs::read_to_string(s.data_dir.join("audit.log")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        println!(
            "round {round}: {} lines verified, {} of them only in the journal",
            v["Lines"], v["InJournal"]
        );
        let queried: Vec<String> = query(&s.data_dir, &["--action", "Encrypt"])
            .iter()
            .map(|e| e["request_id"].as_str().unwrap().to_owned())
            .collect();
        for id in &acknowledged {
            assert!(
                queried.contains(id),
                "round {round}: {id} is not in the trail"
            );
        }
        s.restart().unwrap();
        // The start appended what the journal held: the file alone now has every event.
        let trail = std::fs::read_to_string(s.data_dir.join("audit.log")).unwrap();
        assert!(trail.len() > in_file.len() || v["InJournal"] == 0);
        for id in &acknowledged {
            assert!(
                trail.contains(id.as_str()),
                "round {round}: {id} not appended"
            );
        }
    }
    s.kill9().unwrap();
    let (ok, out) = verify(&s.data_dir);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn every_kind_of_tampering_is_caught_and_located() {
    let (s, lines) = trail().await;
    let dir = &s.data_dir;
    let original = lines.clone();

    // An edited field.
    let mut edited = original.clone();
    edited[2] = edited[2].replace("\"status\":200", "\"status\":201");
    write(dir, &edited);
    let (ok, out) = verify(dir);
    assert!(
        !ok && out.contains("line 3 (seq 3): the content was altered"),
        "{out}"
    );

    // A deleted line.
    let mut deleted = original.clone();
    deleted.remove(3);
    write(dir, &deleted);
    let (ok, out) = verify(dir);
    assert!(
        !ok && out.contains("line 4: expected seq 4, found seq 5"),
        "{out}"
    );

    // Two lines swapped.
    let mut swapped = original.clone();
    swapped.swap(1, 2);
    write(dir, &swapped);
    let (ok, out) = verify(dir);
    assert!(
        !ok && out.contains("line 2: expected seq 2, found seq 3"),
        "{out}"
    );

    // The tail cut off, back to before the sealed head.
    let head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("audit.head")).unwrap()).unwrap();
    let sealed = usize::try_from(head["seq"].as_u64().unwrap()).unwrap();
    write(dir, &original[..sealed - 1]);
    let (ok, out) = verify(dir);
    assert!(!ok && out.contains("truncated"), "{out}");

    // An event rewritten and every later hash recomputed, as someone without the root key
    // could: the seal after it no longer verifies.
    let mut forged: Vec<String> = Vec::new();
    let mut prev = "0".repeat(64);
    for (i, line) in original.iter().enumerate() {
        let mut body = line[..line.rfind(",\"hash\":\"").unwrap()].to_owned();
        if i == 1 {
            body = body.replace("\"source_ip\":\"127.0.0.1\"", "\"source_ip\":\"10.9.9.9\"");
        }
        body = format!(
            "{},\"prev\":\"{prev}\"",
            &body[..body.rfind(",\"prev\":\"").unwrap()]
        );
        let hashed = format!("{body}}}");
        prev = hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, hashed.as_bytes()).as_ref(),
        );
        forged.push(format!("{body},\"hash\":\"{prev}\"}}"));
    }
    write(dir, &forged);
    let (ok, out) = verify(dir);
    assert!(!ok && out.contains("the seal does not verify"), "{out}");

    // The untouched trail still verifies, and another root key does not.
    write(dir, &original);
    assert!(verify(dir).0);
    let other = dir.parent().unwrap().join("other.key");
    std::fs::write(&other, "00".repeat(32)).unwrap();
    let out = Command::new(arca_bin())
        .args(["audit", "verify", "--data-dir", dir.to_str().unwrap()])
        .args(["--root-key-file", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn the_chain_continues_across_restarts() {
    let mut s = process_server();
    let c = s.client().unwrap();
    new_key(&c, "Aliyun_AES_256").await;
    s.restart().unwrap();
    let c = s.client().unwrap();
    new_key(&c, "Aliyun_AES_256").await;
    // A power loss mid-write leaves a partial line; the next start cuts it off and goes on.
    s.kill9().unwrap();
    let log = s.data_dir.join("audit.log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"seq\":99,\"time\":\"2026");
    std::fs::write(&log, text).unwrap();
    s.restart().unwrap();
    let c = s.client().unwrap();
    new_key(&c, "Aliyun_AES_256").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    s.kill9().unwrap();
    let (ok, out) = verify(&s.data_dir);
    assert!(ok, "{out}");
    assert_eq!(query(&s.data_dir, &["--action", "CreateKey"]).len(), 3);
}

/// `arca audit <command> --data-dir <dir> [args]`, its JSON output.
fn audit_cli(dir: &Path, command: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    arca_tests::json_output(
        Command::new(arca_bin())
            .args(["audit", command, "--data-dir", dir.to_str().unwrap()])
            .args(args),
    )
}

/// Cutting the newest lines while the server is stopped used to go unnoticed: the next start
/// resumed from the cut and `verify` passed. Now the start refuses with a clear message; an
/// operator goes on only through `accept-gap`, whose sealed record `verify` reports for good.
/// An anchor taken earlier catches a rollback of the trail and its head file together.
#[tokio::test]
async fn a_trail_cut_while_stopped_is_refused_until_the_gap_is_recorded() {
    let mut s = process_server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    for _ in 0..3 {
        c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    s.kill9().unwrap();
    let dir = s.data_dir.clone();
    let early = audit_cli(&dir, "head", &[]).unwrap();
    let early_anchor = early["Anchor"].as_str().unwrap().to_owned();
    let saved = (
        std::fs::read(dir.join("audit.log")).unwrap(),
        std::fs::read(dir.join("audit.head")).unwrap(),
    );

    // More calls, sealed; the head moves on.
    s.restart().unwrap();
    let c = s.client().unwrap();
    for _ in 0..3 {
        c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    s.kill9().unwrap();
    let late_anchor = audit_cli(&dir, "head", &[]).unwrap()["Anchor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(early_anchor, late_anchor);
    assert!(audit_cli(&dir, "verify", &["--anchor", &early_anchor]).is_ok());
    assert!(audit_cli(&dir, "verify", &["--anchor", &late_anchor]).is_ok());

    // Both files rolled back together verify on their own, but not against the later anchor.
    let now = (
        std::fs::read(dir.join("audit.log")).unwrap(),
        std::fs::read(dir.join("audit.head")).unwrap(),
    );
    std::fs::write(dir.join("audit.log"), &saved.0).unwrap();
    std::fs::write(dir.join("audit.head"), &saved.1).unwrap();
    assert!(verify(&dir).0);
    let rolled_back = audit_cli(&dir, "verify", &["--anchor", &late_anchor]).unwrap_err();
    assert!(
        rolled_back.to_string().contains("anchored"),
        "{rolled_back}"
    );
    std::fs::write(dir.join("audit.log"), &now.0).unwrap();
    std::fs::write(dir.join("audit.head"), &now.1).unwrap();

    // The newest lines cut while stopped: the start refuses, and says how to go on.
    let lines: Vec<String> = String::from_utf8(now.0)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    write(&dir, &lines[..lines.len() - 2]);
    let refused = s.restart().unwrap_err().to_string();
    assert!(
        refused.contains("does not hold its sealed head") && refused.contains("accept-gap"),
        "{refused}"
    );
    assert!(audit_cli(&dir, "accept-gap", &[]).is_ok());
    s.restart().unwrap();
    let c = s.client().unwrap();
    c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    s.kill9().unwrap();
    let verified = audit_cli(&dir, "verify", &[]).unwrap();
    let gap = u64::try_from(lines.len() - 1).unwrap();
    assert_eq!(verified["Gaps"], serde_json::json!([gap]), "{verified}");
    assert!(audit_cli(&dir, "verify", &["--anchor", &late_anchor]).is_err());
    // A whole trail has no gap to accept.
    assert!(audit_cli(&dir, "accept-gap", &[]).is_err());
}

/// An unauthenticated request naming a 200 KB action of control bytes used to write a 1.2 MB
/// audit line. Its action is now a short escaped token, and every line is bounded.
#[tokio::test]
async fn unauthenticated_junk_writes_only_bounded_lines() {
    let mut s = process_server();
    let junk = "\u{1}".repeat(200_000);
    // Raw, as an attacker sends it (form-encoded it would pass the body limit).
    let body = format!("Action={junk}&Version=2016-01-20");
    let req = http::Request::post(format!("http://{}/", s.endpoint))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let (status, _) = crate::send(req).await;
    assert_eq!(status, 400);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    s.kill9().unwrap();
    let text = std::fs::read_to_string(s.data_dir.join("audit.log")).unwrap();
    let junk_line = text
        .lines()
        .find(|l| l.contains("\\\\x01\\\\x01"))
        .expect("the junk request is in the trail");
    assert!(junk_line.len() < 1024, "{} bytes", junk_line.len());
    assert!(verify(&s.data_dir).0);
}

/// Every action that uses a key version records that version in its event: the one its reply
/// names (VerifyMac, whose reply names none, records the version whose MAC matched).
#[tokio::test]
async fn each_event_names_the_key_version_its_call_used() {
    let s = crate::server();
    let c = s.client().unwrap();
    let aes = crate::new_key(&c, "Aliyun_AES_256").await;
    let ec = c
        .call(
            "CreateKey",
            &[("KeySpec", "EC_P256"), ("KeyUsage", "SIGN/VERIFY")],
        )
        .await
        .unwrap();
    let (ec, ec_version) = (
        ec["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned(),
        ec["KeyMetadata"]["PrimaryKeyVersion"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let hmac = c
        .call(
            "CreateKey",
            &[
                ("KeySpec", "HMAC_SHA256"),
                ("KeyUsage", "GENERATE/VERIFY_MAC"),
            ],
        )
        .await
        .unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut expected: Vec<(&str, String)> = Vec::new();
    let sealed = c
        .call("Encrypt", &[("KeyId", &aes), ("Plaintext", "x")])
        .await
        .unwrap();
    let first = sealed["KeyVersionId"].as_str().unwrap().to_owned();
    expected.push(("Encrypt", first.clone()));
    let rotated = c
        .call("CreateKeyVersion", &[("KeyId", &aes)])
        .await
        .unwrap();
    let second = rotated["KeyVersion"]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_owned();
    expected.push(("CreateKeyVersion", second.clone()));
    let blob = sealed["CiphertextBlob"].as_str().unwrap();
    c.call("Decrypt", &[("CiphertextBlob", blob)])
        .await
        .unwrap();
    expected.push(("Decrypt", first.clone()));
    c.call(
        "ReEncrypt",
        &[("CiphertextBlob", blob), ("DestinationKeyId", &aes)],
    )
    .await
    .unwrap();
    expected.push(("ReEncrypt", second.clone()));
    c.call("GenerateDataKey", &[("KeyId", &aes)]).await.unwrap();
    expected.push(("GenerateDataKey", second.clone()));
    let digest = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let signed = c
        .call(
            "AsymmetricSign",
            &[
                ("KeyId", &ec),
                ("KeyVersionId", &ec_version),
                ("Algorithm", "ECDSA_SHA_256"),
                ("Digest", digest),
            ],
        )
        .await
        .unwrap();
    assert_eq!(signed["KeyVersionId"], ec_version.as_str());
    expected.push(("AsymmetricSign", ec_version));
    let mac = c
        .call(
            "GenerateMac",
            &[
                ("KeyId", &hmac),
                ("Algorithm", "HMAC_SHA_256"),
                ("Message", "bWVzc2FnZQ=="),
            ],
        )
        .await
        .unwrap();
    let mac_version = mac["KeyVersionId"].as_str().unwrap().to_owned();
    expected.push(("GenerateMac", mac_version.clone()));
    c.call(
        "VerifyMac",
        &[
            ("KeyId", &hmac),
            ("Algorithm", "HMAC_SHA_256"),
            ("Message", "bWVzc2FnZQ=="),
            ("Mac", mac["Mac"].as_str().unwrap()),
        ],
    )
    .await
    .unwrap();
    expected.push(("VerifyMac", mac_version));
    c.call("DescribeKey", &[("KeyId", &aes)]).await.unwrap();
    // `arca audit query` reads the journal too, so the events are there before any seal.
    for (action, version) in expected {
        let events = query(&s.data_dir, &["--action", action]);
        assert_eq!(
            events.last().and_then(|e| e["key_version"].as_str()),
            Some(version.as_str()),
            "{action}: {events:?}"
        );
    }
    let described = query(&s.data_dir, &["--action", "DescribeKey"]);
    assert_eq!(described.len(), 1);
    assert!(described[0]["key_version"].is_null(), "{described:?}");
}
