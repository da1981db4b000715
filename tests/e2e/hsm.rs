//! `ProtectionLevel=HSM` keys in a real PKCS#11 token (SoftHSM2 in a temp dir): material made
//! in the token and never leaving it, every operation run there, and clear errors where no
//! token is configured or a spec is not available in it.

use arca_client::Client;
use arca_tests::{SoftHsm, TestServer, arca_bin};
use serde_json::Value;

fn server(hsm: &SoftHsm) -> TestServer {
    let args = hsm.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_with(&args, hsm.env()).unwrap()
}

async fn hsm_key(c: &Client, spec: &str) -> Value {
    c.call(
        "CreateKey",
        &[("KeySpec", spec), ("ProtectionLevel", "HSM")],
    )
    .await
    .unwrap()["KeyMetadata"]
        .clone()
}

fn code(e: &arca_client::Error) -> (u16, String) {
    match e {
        arca_client::Error::Api { status, code, .. } => (*status, code.clone()),
        other => panic!("not an API error: {other}"),
    }
}

/// `arca hsm --key-version V`: what the token itself says about the key object.
fn inspect(hsm: &SoftHsm, version: &str) -> Value {
    arca_tests::json_output(
        std::process::Command::new(arca_bin())
            .args(["hsm", "--key-version", version])
            .args(hsm.args())
            .envs(hsm.env()),
    )
    .unwrap()
}

#[tokio::test]
async fn hsm_keys_are_made_and_used_inside_the_token() {
    let hsm = SoftHsm::start("arca-e2e").unwrap();
    let mut s = server(&hsm);
    let c = s.client().unwrap();
    let meta = hsm_key(&c, "Aliyun_AES_256").await;
    assert_eq!(meta["ProtectionLevel"], "HSM");
    let key = meta["KeyId"].as_str().unwrap().to_owned();
    let described = c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    assert_eq!(described["KeyMetadata"]["ProtectionLevel"], "HSM");

    // Encrypt / Decrypt through the token, bound to the context as in software.
    let ctx = r#"{"tenant":"t1"}"#;
    let sealed = c
        .call(
            "Encrypt",
            &[
                ("KeyId", &key),
                ("Plaintext", "in the token"),
                ("EncryptionContext", ctx),
            ],
        )
        .await
        .unwrap();
    let blob = sealed["CiphertextBlob"].as_str().unwrap().to_owned();
    let opened = c
        .call(
            "Decrypt",
            &[("CiphertextBlob", &blob), ("EncryptionContext", ctx)],
        )
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "in the token");
    let e = c
        .call(
            "Decrypt",
            &[
                ("CiphertextBlob", &blob),
                ("EncryptionContext", r#"{"tenant":"t2"}"#),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), (400, "InvalidCiphertext".into()));

    // Data keys, and the other AES sizes.
    let dk = c.call("GenerateDataKey", &[("KeyId", &key)]).await.unwrap();
    let back = c
        .call(
            "Decrypt",
            &[("CiphertextBlob", dk["CiphertextBlob"].as_str().unwrap())],
        )
        .await
        .unwrap();
    assert_eq!(back["Plaintext"], dk["Plaintext"]);
    for spec in ["Aliyun_AES_128", "Aliyun_AES_192"] {
        let k = hsm_key(&c, spec).await;
        let k = k["KeyId"].as_str().unwrap();
        let b = c
            .call("Encrypt", &[("KeyId", k), ("Plaintext", spec)])
            .await
            .unwrap();
        let p = c
            .call(
                "Decrypt",
                &[("CiphertextBlob", b["CiphertextBlob"].as_str().unwrap())],
            )
            .await
            .unwrap();
        assert_eq!(p["Plaintext"], spec);
    }

    // The token holds the material: sensitive, never extractable, generated inside, and it
    // refuses to reveal or wrap it.
    let version = meta["PrimaryKeyVersion"].as_str().unwrap().to_owned();
    let report = inspect(&hsm, &version);
    assert_eq!(report["Sensitive"], true, "{report}");
    assert_eq!(report["Extractable"], false, "{report}");
    assert_eq!(report["NeverExtractable"], true, "{report}");
    assert_eq!(report["TokenObject"], true, "{report}");
    assert_eq!(report["GeneratedInToken"], true, "{report}");
    assert_eq!(report["ValueReadable"], false, "{report}");
    assert!(report["WrapRefused"].is_string(), "{report}");
    // The store holds no material for it: the version record only names the token object.
    s.kill9().unwrap();
    let store = std::fs::read(s.data_dir.join("arca.redb")).unwrap();
    let record = format!("\"version_id\":\"{version}\"");
    let at = store
        .windows(record.len())
        .position(|w| w == record.as_bytes())
        .expect("the version record is in the store");
    let tail = String::from_utf8_lossy(&store[at..(at + 400).min(store.len())]);
    assert!(tail.contains("\"sealed_material\":\"\""), "{tail}");
    assert!(tail.contains("\"hsm\":true"), "{tail}");

    // A restart on the same token: old ciphertexts open; rotation makes a new token object.
    s.restart().unwrap();
    let c = s.client().unwrap();
    let opened = c
        .call(
            "Decrypt",
            &[("CiphertextBlob", &blob), ("EncryptionContext", ctx)],
        )
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "in the token");
    let v2 = c
        .call("CreateKeyVersion", &[("KeyId", &key)])
        .await
        .unwrap()["KeyVersion"]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(inspect(&hsm, &v2)["GeneratedInToken"], true);
    let newer = c
        .call("Encrypt", &[("KeyId", &key), ("Plaintext", "v2")])
        .await
        .unwrap();
    assert_eq!(newer["KeyVersionId"], v2.as_str());
    c.call(
        "Decrypt",
        &[("CiphertextBlob", &blob), ("EncryptionContext", ctx)],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn hsm_refusals_are_clear() {
    // No token configured: the protection level is not offered.
    let plain = TestServer::start().unwrap();
    let e = plain
        .client()
        .unwrap()
        .call("CreateKey", &[("ProtectionLevel", "HSM")])
        .await
        .unwrap_err();
    assert_eq!(code(&e), (400, "Unsupported.ProtectionLevel".into()));

    let hsm = SoftHsm::start("arca-refusals").unwrap();
    let mut s = server(&hsm);
    let c = s.client().unwrap();
    // Specs the token cannot hold are refused, never silently made in software.
    for spec in ["Aliyun_SM4", "EC_SM2"] {
        let e = c
            .call(
                "CreateKey",
                &[("KeySpec", spec), ("ProtectionLevel", "HSM")],
            )
            .await
            .unwrap_err();
        assert_eq!(
            code(&e),
            (400, "Rejected.UnsupportedOperation".into()),
            "{spec}"
        );
    }
    // An HSM key's ciphertext needs the token: without it the answer is 503, not garbage.
    let key = hsm_key(&c, "Aliyun_AES_256").await;
    let blob = c
        .call(
            "Encrypt",
            &[
                ("KeyId", key["KeyId"].as_str().unwrap()),
                ("Plaintext", "x"),
            ],
        )
        .await
        .unwrap()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    s.kill9().unwrap();
    let without = TestServer::on(s.data_dir.clone(), Vec::new()).unwrap();
    let e = without
        .client()
        .unwrap()
        .call("Decrypt", &[("CiphertextBlob", &blob)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), (503, "ServiceUnavailableTemporary".into()));
    // A wrong PIN stops start-up with a clear message.
    let mut env = hsm.env();
    env.retain(|(k, _)| k != "ARCA_HSM_PIN");
    env.push(("ARCA_HSM_PIN".into(), "wrong".into()));
    let out = std::process::Command::new(arca_bin())
        .args(["serve", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path().join("d"))
        .args(["--listen", "127.0.0.1:0"])
        .args(hsm.args())
        .envs(env)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the HSM"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the PIN is never printed: {stderr}"
    );
}
