//! First start, restart, and the refusals at start-up.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arca_tests::{Served, TestServer, arca_bin, free_port};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs `arca serve` expecting it to exit (a refusal); fails the test if it keeps running.
fn start_expecting_failure(data_dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(arca_bin());
    cmd.args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("arca started when it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn first_start_writes_private_files_and_restart_reuses_them() {
    let mut s = TestServer::start().unwrap();
    let creds_path = s.data_dir.join("credentials.json");
    assert_eq!(mode(&creds_path), 0o600);
    assert_eq!(mode(&s.data_dir.join("root.key")), 0o600);
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    for field in [
        "access_key_id",
        "access_key_secret",
        "account_id",
        "region_id",
    ] {
        assert!(
            raw[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} in {raw}"
        );
    }
    assert!(
        raw["account_id"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit())
    );
    assert_eq!(raw["region_id"], "cn-hangzhou");
    let log = std::fs::read_to_string(s.log_path()).unwrap_or_default();
    assert!(
        !log.contains(raw["access_key_secret"].as_str().unwrap()),
        "the secret is never logged"
    );

    let c = s.client().unwrap();
    let key = crate::new_key(&c, "Aliyun_AES_256").await;
    s.restart().unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    assert_eq!(
        raw, again,
        "a second start reuses the account and AccessKey"
    );
    s.client()
        .unwrap()
        .call("DescribeKey", &[("KeyId", &key)])
        .await
        .unwrap();

    // A deleted credentials file is written again from the store.
    std::fs::remove_file(&creds_path).unwrap();
    s.restart().unwrap();
    let rewritten: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    assert_eq!(raw, rewritten);
}

#[test]
fn a_wrong_or_missing_root_key_is_refused_clearly() {
    let mut s = TestServer::start().unwrap();
    s.kill9().unwrap();
    let err = start_expecting_failure(&s.data_dir, &[("ARCA_ROOT_KEY", &"00".repeat(32))]);
    assert!(err.contains("root key does not match"), "{err}");
    let err = start_expecting_failure(&s.data_dir, &[("ARCA_ROOT_KEY", "too-short")]);
    assert!(err.contains("not 32 bytes"), "{err}");
    assert!(!err.contains("too-short"), "the key text is not echoed");
    std::fs::remove_file(s.data_dir.join("root.key")).unwrap();
    let err = start_expecting_failure(&s.data_dir, &[]);
    assert!(err.contains("no root key"), "{err}");
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let s = TestServer::start().unwrap();
    let err = start_expecting_failure(&s.data_dir, &[]);
    assert!(err.contains("in use by another process"), "{err}");
}

#[tokio::test]
async fn a_root_key_from_the_environment_is_never_written_to_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = ("ARCA_ROOT_KEY".to_owned(), "ab".repeat(32));
    let mut s = TestServer::on(data.clone(), vec![key]).unwrap();
    assert!(!data.join("root.key").exists());
    let c = s.client().unwrap();
    let k = crate::new_key(&c, "Aliyun_AES_128").await;
    let e = c
        .call("Encrypt", &[("KeyId", &k), ("Plaintext", "env")])
        .await
        .unwrap();
    s.restart().unwrap();
    let p = s
        .client()
        .unwrap()
        .call(
            "Decrypt",
            &[("CiphertextBlob", e["CiphertextBlob"].as_str().unwrap())],
        )
        .await
        .unwrap();
    assert_eq!(p["Plaintext"], "env");
}
