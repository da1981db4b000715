//! `arca backup` / `arca restore`: consistent while serving, refused when damaged, complete when
//! restored.

use std::path::Path;
use std::process::Command;

use arca_tests::{Served, TestServer, arca_bin};

use crate::{new_key, process_server};

fn arca(args: &[&str]) -> (bool, String) {
    let out = Command::new(arca_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn backup_while_serving_and_restore_everything() {
    let mut s = process_server();
    let c = s.client().unwrap();
    let sym = new_key(&c, "Aliyun_SM4").await;
    c.call(
        "CreateAlias",
        &[("AliasName", "alias/kept"), ("KeyId", &sym)],
    )
    .await
    .unwrap();
    c.call(
        "TagResource",
        &[
            ("KeyId", &sym),
            ("Tags", r#"[{"TagKey":"env","TagValue":"prod"}]"#),
        ],
    )
    .await
    .unwrap();
    let old = c
        .call(
            "Encrypt",
            &[("KeyId", &sym), ("Plaintext", "before rotation")],
        )
        .await
        .unwrap();
    c.call("CreateKeyVersion", &[("KeyId", &sym)])
        .await
        .unwrap();
    let new = c
        .call(
            "Encrypt",
            &[("KeyId", "alias/kept"), ("Plaintext", "after rotation")],
        )
        .await
        .unwrap();
    let ec = c
        .call("CreateKey", &[("KeySpec", "EC_P256")])
        .await
        .unwrap();
    let ec_id = ec["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let ec_version = ec["KeyMetadata"]["PrimaryKeyVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let pem = c
        .call(
            "GetPublicKey",
            &[("KeyId", &ec_id), ("KeyVersionId", &ec_version)],
        )
        .await
        .unwrap()["PublicKey"]
        .clone();

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("arca.backup");
    let (ok, err) = arca(&[
        "backup",
        "--data-dir",
        path(&s.data_dir),
        "--out",
        path(&file),
        "--endpoint",
        &s.endpoint,
    ]);
    assert!(ok, "{err}");
    let root_key = s.data_dir.join("root.key");

    // Damaged files restore nothing.
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    for (name, damaged) in [
        ("flipped", flipped),
        ("truncated", bytes[..bytes.len() - 10].to_vec()),
    ] {
        let bad = tmp.path().join(name);
        std::fs::write(&bad, damaged).unwrap();
        let target = tmp.path().join(format!("restore-{name}"));
        let (ok, err) = arca(&[
            "restore",
            "--data-dir",
            path(&target),
            "--in",
            path(&bad),
            "--root-key-file",
            path(&root_key),
        ]);
        assert!(!ok);
        assert!(err.contains("corrupted or truncated"), "{err}");
        assert!(
            !target.join("arca.redb").exists(),
            "nothing restored from a {name} file"
        );
    }

    let target = tmp.path().join("restored");
    let (ok, err) = arca(&[
        "restore",
        "--data-dir",
        path(&target),
        "--in",
        path(&file),
        "--root-key-file",
        path(&root_key),
    ]);
    assert!(ok, "{err}");
    let (ok, err) = arca(&[
        "restore",
        "--data-dir",
        path(&target),
        "--in",
        path(&file),
        "--root-key-file",
        path(&root_key),
    ]);
    assert!(!ok && err.contains("empty data directory"), "{err}");

    let original_creds = s.credentials().unwrap();
    s.kill9().unwrap();
    let r = TestServer::on(target.clone(), Vec::new()).unwrap();
    let restored_creds = r.credentials().unwrap();
    assert_eq!(restored_creds.access_key_id, original_creds.access_key_id);
    let c = r.client().unwrap();
    for (blob, plain) in [(&old, "before rotation"), (&new, "after rotation")] {
        let p = c
            .call(
                "Decrypt",
                &[("CiphertextBlob", blob["CiphertextBlob"].as_str().unwrap())],
            )
            .await
            .unwrap();
        assert_eq!(p["Plaintext"], plain);
    }
    assert_eq!(
        c.call("DescribeKey", &[("KeyId", "alias/kept")])
            .await
            .unwrap()["KeyMetadata"]["KeyId"],
        sym.as_str()
    );
    assert_eq!(
        c.call("ListKeyVersions", &[("KeyId", &sym)]).await.unwrap()["TotalCount"],
        2
    );
    let tags = c
        .call("ListResourceTags", &[("KeyId", &sym)])
        .await
        .unwrap();
    assert_eq!(tags["Tags"]["Tag"][0]["TagValue"], "prod");
    let again = c
        .call(
            "GetPublicKey",
            &[("KeyId", &ec_id), ("KeyVersionId", &ec_version)],
        )
        .await
        .unwrap();
    assert_eq!(again["PublicKey"], pem);
}

#[tokio::test]
async fn backup_of_a_stopped_server_reads_the_store_directly() {
    let mut s = process_server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let sealed = c
        .call("Encrypt", &[("KeyId", &key), ("Plaintext", "offline")])
        .await
        .unwrap();
    s.kill9().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("offline.backup");
    // No server listens on this endpoint: the store itself is read.
    let (ok, err) = arca(&[
        "backup",
        "--data-dir",
        path(&s.data_dir),
        "--out",
        path(&file),
        "--endpoint",
        "127.0.0.1:1",
    ]);
    assert!(ok, "{err}");
    let target = tmp.path().join("restored");
    let root = s.data_dir.join("root.key");
    let (ok, err) = arca(&[
        "restore",
        "--data-dir",
        path(&target),
        "--in",
        path(&file),
        "--root-key-file",
        path(&root),
    ]);
    assert!(ok, "{err}");
    let r = TestServer::on(target, Vec::new()).unwrap();
    let p = r
        .client()
        .unwrap()
        .call(
            "Decrypt",
            &[("CiphertextBlob", sealed["CiphertextBlob"].as_str().unwrap())],
        )
        .await
        .unwrap();
    assert_eq!(p["Plaintext"], "offline");
    // Another root key cannot read the backup.
    let other = tmp.path().join("other.key");
    std::fs::write(&other, "11".repeat(32)).unwrap();
    let (ok, err) = arca(&[
        "restore",
        "--data-dir",
        path(&tmp.path().join("x")),
        "--in",
        path(&file),
        "--root-key-file",
        path(&other),
    ]);
    assert!(!ok && err.contains("another root key"), "{err}");
}
