//! `ProtectionLevel=HSM` keys in a real PKCS#11 token (SoftHSM2 in a temp dir): material made
//! in the token and never leaving it, every operation run there, and clear errors where no
//! token is configured or a spec is not available in it.

use arca_client::Client;
use arca_tests::{Served, SoftHsm, TestServer, arca_bin};
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
            (400, "Unsupported.ProtectionLevel".into()),
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

/// `action` on one version of an asymmetric key, with `Algorithm` and further parameters.
async fn on_version(
    c: &Client,
    action: &str,
    key: &str,
    version: &str,
    alg: &str,
    more: &[(&str, &str)],
) -> Result<Value, arca_client::Error> {
    let mut params = vec![
        ("KeyId", key),
        ("KeyVersionId", version),
        ("Algorithm", alg),
    ];
    params.extend_from_slice(more);
    c.call(action, &params).await
}

/// The first version of a key.
fn primary(meta: &Value) -> (String, String) {
    (
        meta["KeyId"].as_str().unwrap().to_owned(),
        meta["PrimaryKeyVersion"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn hsm_key_pairs_sign_verify_and_decrypt_in_the_token() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let hsm = SoftHsm::start("arca-pairs").unwrap();
    let mut s = server(&hsm);
    let c = s.client().unwrap();
    let digest = b64.encode([7u8; 32]);
    let other_digest = b64.encode([8u8; 32]);

    for (spec, algs) in [
        ("RSA_2048", &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"][..]),
        ("EC_P256", &["ECDSA_SHA_256"][..]),
        ("EC_P256K", &["ECDSA_SHA_256"][..]),
    ] {
        let meta = c
            .call(
                "CreateKey",
                &[
                    ("KeySpec", spec),
                    ("KeyUsage", "SIGN/VERIFY"),
                    ("ProtectionLevel", "HSM"),
                ],
            )
            .await
            .unwrap()["KeyMetadata"]
            .clone();
        assert_eq!(meta["ProtectionLevel"], "HSM");
        let (key, version) = primary(&meta);
        let public = c
            .call(
                "GetPublicKey",
                &[("KeyId", &key), ("KeyVersionId", &version)],
            )
            .await
            .unwrap();
        assert!(
            public["PublicKey"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----"),
            "{public}"
        );
        for alg in algs {
            let sig = on_version(
                &c,
                "AsymmetricSign",
                &key,
                &version,
                alg,
                &[("Digest", &digest)],
            )
            .await
            .unwrap()["Value"]
                .as_str()
                .unwrap()
                .to_owned();
            for (d, want) in [(&digest, true), (&other_digest, false)] {
                let v = on_version(
                    &c,
                    "AsymmetricVerify",
                    &key,
                    &version,
                    alg,
                    &[("Digest", d), ("Value", &sig)],
                )
                .await
                .unwrap();
                assert_eq!(v["Value"], want, "{spec} {alg}");
            }
        }
        let report = inspect(&hsm, &version);
        assert_eq!(report["Sensitive"], true, "{spec} {report}");
        assert_eq!(report["Extractable"], false, "{spec} {report}");
        assert_eq!(report["GeneratedInToken"], true, "{spec} {report}");
        assert_eq!(report["ValueReadable"], false, "{spec} {report}");
        assert!(report["WrapRefused"].is_string(), "{spec} {report}");
    }

    // RSA decryption in the token: OAEP-SHA-1 works; SoftHSM2 has no OAEP-SHA-256, and says so.
    let meta = c
        .call(
            "CreateKey",
            &[
                ("KeySpec", "RSA_3072"),
                ("KeyUsage", "ENCRYPT/DECRYPT"),
                ("ProtectionLevel", "HSM"),
            ],
        )
        .await
        .unwrap()["KeyMetadata"]
        .clone();
    let (key, version) = primary(&meta);
    let secret = b64.encode(b"for the token only");
    let sha1 = "RSAES_OAEP_SHA_1";
    let ct = on_version(
        &c,
        "AsymmetricEncrypt",
        &key,
        &version,
        sha1,
        &[("Plaintext", &secret)],
    )
    .await
    .unwrap()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    let decrypt = |c: Client, blob: String, alg: &'static str| {
        let (key, version) = (key.clone(), version.clone());
        async move {
            on_version(
                &c,
                "AsymmetricDecrypt",
                &key,
                &version,
                alg,
                &[("CiphertextBlob", &blob)],
            )
            .await
        }
    };
    let pt = decrypt(c.clone(), ct.clone(), sha1).await.unwrap();
    assert_eq!(pt["Plaintext"], secret.as_str());
    let mut garbled = b64.decode(&ct).unwrap();
    garbled[10] ^= 1;
    let e = decrypt(c.clone(), b64.encode(garbled), sha1)
        .await
        .unwrap_err();
    assert_eq!(code(&e), (400, "InvalidCiphertext".into()));
    for (action, arg) in [
        ("AsymmetricEncrypt", ("Plaintext", secret.as_str())),
        ("AsymmetricDecrypt", ("CiphertextBlob", ct.as_str())),
    ] {
        let e = on_version(&c, action, &key, &version, "RSAES_OAEP_SHA_256", &[arg])
            .await
            .unwrap_err();
        assert_eq!(
            code(&e),
            (400, "Rejected.UnsupportedOperation".into()),
            "{action}"
        );
        assert!(e.to_string().contains("RSAES_OAEP_SHA_1"), "{e}");
    }

    // A restart finds the pair again; a new version is a new pair in the token.
    s.restart().unwrap();
    let c = s.client().unwrap();
    let pt = decrypt(c.clone(), ct.clone(), sha1).await.unwrap();
    assert_eq!(pt["Plaintext"], secret.as_str());
    let v2 = c
        .call("CreateKeyVersion", &[("KeyId", &key)])
        .await
        .unwrap()["KeyVersion"]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(v2, version);
    assert_eq!(inspect(&hsm, &v2)["GeneratedInToken"], true);
}

#[tokio::test]
async fn a_lost_token_answers_503_and_comes_back_by_itself() {
    let hsm = SoftHsm::start("arca-outage").unwrap();
    let admin = format!("127.0.0.1:{}", arca_tests::free_port());
    let mut args = hsm.args();
    args.extend(["--admin-listen".into(), admin.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = TestServer::start_with(&args, hsm.env()).unwrap();
    let c = s.client().unwrap();
    let admin_get = |path: &'static str| {
        let url = format!("http://{admin}{path}");
        async move {
            let (code, body) = arca_client::get(&url).await.unwrap();
            (code, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let metrics = admin_get("/metrics").await.1;
    assert!(metrics.contains("\narca_hsm_up 1\n"), "{metrics}");
    assert!(metrics.contains("arca_hsm_sessions{state=\"idle\"}"));
    let (hsm_key, _) = primary(&hsm_key(&c, "Aliyun_AES_256").await);
    let soft_key = c.call("CreateKey", &[]).await.unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let encrypt = |key: String| {
        let c = c.clone();
        async move {
            c.call("Encrypt", &[("KeyId", &key), ("Plaintext", "p")])
                .await
                .map(|v| v["CiphertextBlob"].as_str().unwrap_or_default().to_owned())
        }
    };
    let hsm_blob = encrypt(hsm_key.clone()).await.unwrap();

    hsm.unplug().unwrap();
    let e = encrypt(hsm_key.clone()).await.unwrap_err();
    assert_eq!(code(&e), (503, "ServiceUnavailableTemporary".into()));
    let e = c
        .call("Decrypt", &[("CiphertextBlob", &hsm_blob)])
        .await
        .unwrap_err();
    assert_eq!(
        code(&e),
        (503, "ServiceUnavailableTemporary".into()),
        "an unreachable token is not a bad ciphertext"
    );
    // Readiness reports the outage as degraded: software keys still serve, so the server
    // stays in rotation, and the metrics say the token is down.
    let (code, ready) = admin_get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert!(ready.contains("hsm: degraded"), "{ready}");
    assert!(admin_get("/metrics").await.1.contains("\narca_hsm_up 0\n"));
    // Software keys keep working throughout.
    let soft_blob = encrypt(soft_key.clone()).await.unwrap();
    c.call("Decrypt", &[("CiphertextBlob", &soft_blob)])
        .await
        .unwrap();

    // The token returns: the host reconnects without a restart.
    hsm.plug().unwrap();
    let mut back = None;
    for _ in 0..50 {
        if let Ok(b) = encrypt(hsm_key.clone()).await {
            back = Some(b);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back.is_some(), "HSM keys work again once the token is back");
    let opened = c
        .call("Decrypt", &[("CiphertextBlob", &hsm_blob)])
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "p");
    assert!(admin_get("/readyz").await.1.contains("hsm: ok"));
}

/// `arca serve` on `data_dir` that is expected to refuse to start; returns its stderr.
fn refused_start(
    data_dir: &std::path::Path,
    args: &[String],
    env: Vec<(String, String)>,
) -> String {
    let out = std::process::Command::new(arca_bin())
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the server started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_root_key_can_live_wrapped_in_the_hsm() {
    let hsm = SoftHsm::start("arca-root").unwrap();
    let mut args = hsm.args();
    args.push("--root-key-hsm".into());
    let tmp = tempfile::tempdir().unwrap();

    // A new data directory: the root key is born wrapped; no plaintext copy exists.
    let data = tmp.path().join("fresh");
    let mut s = TestServer::with(data.clone(), hsm.env(), args.clone()).unwrap();
    let c = s.client().unwrap();
    let key = c.call("CreateKey", &[]).await.unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = c
        .call(
            "Encrypt",
            &[("KeyId", &key), ("Plaintext", "under the root")],
        )
        .await
        .unwrap()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!data.join("root.key").exists());
    let wrapped = std::fs::read(data.join("root.key.hsm")).unwrap();
    assert_eq!(wrapped.len(), 12 + 32 + 16, "nonce, sealed key, tag");
    s.kill9().unwrap();
    // The data directory alone does not start: nothing in it opens the store.
    let stderr = refused_start(&data, &[], Vec::new());
    assert!(stderr.contains("no root key"), "{stderr}");
    // Another token cannot unwrap it.
    let other = SoftHsm::start("arca-root").unwrap();
    let mut other_args = other.args();
    other_args.push("--root-key-hsm".into());
    let stderr = refused_start(&data, &other_args, other.env());
    assert!(stderr.contains("does not open"), "{stderr}");
    // With the token it starts and opens what it sealed before.
    s.restart().unwrap();
    let c = s.client().unwrap();
    let opened = c
        .call("Decrypt", &[("CiphertextBlob", &blob)])
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "under the root");
    s.kill9().unwrap();

    // Backup and restore unwrap the root key through the token too.
    let backup = tmp.path().join("arca.backup");
    let tool = |args: &[&str]| {
        let out = std::process::Command::new(arca_bin())
            .args(args)
            .args(hsm.args())
            .arg("--root-key-hsm")
            .envs(hsm.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (data_s, backup_s) = (data.display().to_string(), backup.display().to_string());
    tool(&["backup", "--data-dir", &data_s, "--out", &backup_s]);
    let restored = tmp.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(data.join("root.key.hsm"), restored.join("root.key.hsm")).unwrap();
    let restored_s = restored.display().to_string();
    tool(&["restore", "--data-dir", &restored_s, "--in", &backup_s]);
    let r = TestServer::with(restored.clone(), hsm.env(), args.clone()).unwrap();
    let opened = r
        .client()
        .unwrap()
        .call("Decrypt", &[("CiphertextBlob", &blob)])
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "under the root");
    assert!(!restored.join("root.key").exists());
    drop(r);

    // An existing data directory moves its plaintext root key into the HSM.
    let data = tmp.path().join("existing");
    let mut plain = TestServer::on(data.clone(), Vec::new()).unwrap();
    let c = plain.client().unwrap();
    let key = c.call("CreateKey", &[]).await.unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = c
        .call("Encrypt", &[("KeyId", &key), ("Plaintext", "before")])
        .await
        .unwrap()["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    plain.kill9().unwrap();
    assert!(data.join("root.key").exists());
    let s = TestServer::with(data.clone(), hsm.env(), args).unwrap();
    assert!(
        !data.join("root.key").exists(),
        "the plaintext copy is gone"
    );
    assert!(data.join("root.key.hsm").exists());
    let opened = s
        .client()
        .unwrap()
        .call("Decrypt", &[("CiphertextBlob", &blob)])
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "before");
}

/// Deleting an HSM key destroys its token objects once the window ends. The sweep runs on a
/// manual clock, so this runs in a child test process that has the token's environment
/// (SoftHSM2 reads `SOFTHSM2_CONF` when the library initialises).
#[test]
fn deletion_destroys_the_token_objects_after_the_window() {
    let hsm = SoftHsm::start("arca-delete").unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hsm::deletion_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(hsm.env())
        .env("ARCA_TEST_HSM_LABEL", &hsm.label)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "run by deletion_destroys_the_token_objects_after_the_window, with the token's env"]
async fn deletion_child() {
    use arca_host::keystore::hsm::{Hsm, HsmConfig, HsmError};
    use arca_host::kms::keys::NewKey;
    use arca_host::kms::model::{KeySpec, KeyUsage, Origin, ProtectionLevel};
    use std::sync::Arc;
    let label = std::env::var("ARCA_TEST_HSM_LABEL").expect("run through the parent test");
    let hsm: Arc<dyn arca_host::keystore::Token> = Arc::new(
        Hsm::open(HsmConfig {
            module: SoftHsm::MODULE.into(),
            token_label: label,
            pin: arca_host::secret::SecretString::new(std::env::var("ARCA_HSM_PIN").unwrap()),
        })
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (kms, clock, caller) = arca_tests::in_process_kms(dir.path(), "CreateKey")
        .await
        .unwrap();
    kms.attach_hsm(Arc::clone(&hsm));
    let mut versions = Vec::new();
    let mut keys = Vec::new();
    for (spec, usage) in [
        (KeySpec::Aes256, KeyUsage::EncryptDecrypt),
        (KeySpec::EcP256, KeyUsage::SignVerify),
    ] {
        let key = kms
            .create_key(
                &caller,
                NewKey {
                    spec,
                    usage: Some(usage),
                    origin: Origin::Kms,
                    protection: ProtectionLevel::Hsm,
                    description: String::new(),
                    rotation: None,
                    tags: Vec::new(),
                    policy: None,
                    instance: None,
                },
            )
            .await
            .unwrap();
        let r: arca_host::ids::KeyRef = key.key_id.as_str().parse().unwrap();
        let v2 = kms.create_key_version(&caller, &r).await.unwrap();
        versions.push(key.primary_version.clone());
        versions.push(v2.version_id);
        kms.schedule_deletion(&caller, &r, 7).await.unwrap();
        keys.push(r);
    }
    for v in &versions {
        hsm.inspect(v).expect("the objects are in the token");
    }
    // Within the window nothing goes; after it, every version's objects are destroyed.
    clock.advance(6 * 86_400);
    kms.sweep().await.unwrap();
    for v in &versions {
        hsm.inspect(v).expect("still in the window");
    }
    clock.advance(2 * 86_400);
    kms.sweep().await.unwrap();
    for v in &versions {
        assert!(
            matches!(hsm.inspect(v), Err(HsmError::Missing(_))),
            "{v} left the token"
        );
    }
}
