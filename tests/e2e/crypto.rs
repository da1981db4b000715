//! The symmetric data plane through the Rust client: formats, bindings and refusals.

use base64::Engine;

use arca_tests::Served;

use crate::{new_key, process_server, server};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[tokio::test]
async fn every_symmetric_spec_round_trips_and_the_blob_names_its_version() {
    let s = server();
    let c = s.client().unwrap();
    for spec in [
        "Aliyun_AES_256",
        "Aliyun_AES_192",
        "Aliyun_AES_128",
        "Aliyun_SM4",
    ] {
        let key = new_key(&c, spec).await;
        let d = c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
        assert_eq!(d["KeyMetadata"]["KeySpec"], spec);
        let e = c
            .call(
                "Encrypt",
                &[
                    ("KeyId", &key),
                    ("Plaintext", "héllo wörld"),
                    ("EncryptionContext", r#"{"k":"v"}"#),
                ],
            )
            .await
            .unwrap();
        let version = e["KeyVersionId"].as_str().unwrap();
        assert_eq!(version, d["KeyMetadata"]["PrimaryKeyVersion"]);
        let raw = B64.decode(e["CiphertextBlob"].as_str().unwrap()).unwrap();
        // 36-byte version id ‖ 12-byte IV ‖ ciphertext ‖ 16-byte tag (spec §6.1).
        assert_eq!(&raw[..36], version.as_bytes());
        assert_eq!(raw.len(), 36 + 12 + "héllo wörld".len() + 16);
        let p = c
            .call(
                "Decrypt",
                &[
                    ("CiphertextBlob", e["CiphertextBlob"].as_str().unwrap()),
                    ("EncryptionContext", r#"{"k":"v"}"#),
                ],
            )
            .await
            .unwrap();
        assert_eq!(p["Plaintext"], "héllo wörld");
        assert_eq!(p["KeyId"], key.as_str());
    }
}

#[tokio::test]
async fn the_context_binds_and_its_key_order_does_not_matter() {
    let s = server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let seal = |ctx: &'static str| {
        let (c, key) = (c.clone(), key.clone());
        async move {
            let r = c
                .call(
                    "Encrypt",
                    &[
                        ("KeyId", &key),
                        ("Plaintext", "p"),
                        ("EncryptionContext", ctx),
                    ],
                )
                .await
                .unwrap();
            r["CiphertextBlob"].as_str().unwrap().to_owned()
        }
    };
    let open = |blob: String, ctx: &'static str| {
        let c = c.clone();
        async move {
            let mut params = vec![("CiphertextBlob", blob.as_str())];
            if !ctx.is_empty() {
                params.push(("EncryptionContext", ctx));
            }
            c.call("Decrypt", &params)
                .await
                .map(|r| r["Plaintext"].clone())
                .map_err(|e| e.code().map(str::to_owned))
        }
    };
    let blob = seal(r#"{"a":"1","b":"2"}"#).await;
    assert_eq!(
        open(blob.clone(), r#"{"b":"2","a":"1"}"#).await.unwrap(),
        "p"
    );
    assert_eq!(
        open(blob.clone(), r#"{"a":"1"}"#)
            .await
            .unwrap_err()
            .as_deref(),
        Some("InvalidCiphertext")
    );
    assert_eq!(
        open(blob.clone(), "").await.unwrap_err().as_deref(),
        Some("InvalidCiphertext")
    );
    // Length prefixes: {"ab":"c"} must not open a blob sealed under {"a":"bc"}.
    let blob = seal(r#"{"a":"bc"}"#).await;
    assert_eq!(
        open(blob.clone(), r#"{"ab":"c"}"#)
            .await
            .unwrap_err()
            .as_deref(),
        Some("InvalidCiphertext")
    );
    assert_eq!(open(blob, r#"{"a":"bc"}"#).await.unwrap(), "p");
    // A context that is not a JSON object is a parameter error.
    let e = c
        .call(
            "Encrypt",
            &[
                ("KeyId", &key),
                ("Plaintext", "p"),
                ("EncryptionContext", "[1]"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameter"));
}

#[tokio::test]
async fn tampered_and_malformed_blobs_are_refused() {
    let s = server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let e = c
        .call("Encrypt", &[("KeyId", &key), ("Plaintext", "secret")])
        .await
        .unwrap();
    let mut raw = B64.decode(e["CiphertextBlob"].as_str().unwrap()).unwrap();
    for i in [40, 50, raw.len() - 1] {
        raw[i] ^= 0x01;
        let err = c
            .call("Decrypt", &[("CiphertextBlob", &B64.encode(&raw))])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("InvalidCiphertext"), "flipped byte {i}");
        raw[i] ^= 0x01;
    }
    for bad in ["not base64!", "AAAA", &B64.encode([0u8; 80])] {
        let err = c
            .call("Decrypt", &[("CiphertextBlob", bad)])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("InvalidParameter"), "{bad}");
    }
    // A well-formed blob naming a version that does not exist.
    let mut forged = b"00000000-0000-4000-8000-000000000000".to_vec();
    forged.extend_from_slice(&[0u8; 40]);
    let err = c
        .call("Decrypt", &[("CiphertextBlob", &B64.encode(forged))])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidCiphertext"));
}

#[tokio::test]
async fn a_disabled_key_refuses_crypto_until_enabled() {
    let s = server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let e = c
        .call("Encrypt", &[("KeyId", &key), ("Plaintext", "x")])
        .await
        .unwrap();
    let blob = e["CiphertextBlob"].as_str().unwrap();
    c.call("DisableKey", &[("KeyId", &key)]).await.unwrap();
    let d = c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Disabled");
    for err in [
        c.call("Encrypt", &[("KeyId", &key), ("Plaintext", "x")])
            .await
            .unwrap_err(),
        c.call("Decrypt", &[("CiphertextBlob", blob)])
            .await
            .unwrap_err(),
        c.call("GenerateDataKey", &[("KeyId", &key)])
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, arca_client::Error::Api { status: 409, code, .. } if code == "Rejected.Disabled"),
            "{err}"
        );
    }
    c.call("EnableKey", &[("KeyId", &key)]).await.unwrap();
    let p = c
        .call("Decrypt", &[("CiphertextBlob", blob)])
        .await
        .unwrap();
    assert_eq!(p["Plaintext"], "x");
}

#[tokio::test]
async fn data_keys_re_encryption_and_limits() {
    let s = server();
    let c = s.client().unwrap();
    let a = new_key(&c, "Aliyun_AES_256").await;
    let b = new_key(&c, "Aliyun_SM4").await;
    let dk = c
        .call("GenerateDataKey", &[("KeyId", &a), ("KeySpec", "AES_128")])
        .await
        .unwrap();
    let plain = dk["Plaintext"].as_str().unwrap();
    assert_eq!(B64.decode(plain).unwrap().len(), 16);
    let opened = c
        .call(
            "Decrypt",
            &[("CiphertextBlob", dk["CiphertextBlob"].as_str().unwrap())],
        )
        .await
        .unwrap();
    assert_eq!(
        opened["Plaintext"], plain,
        "Decrypt returns the base64 text of the data key"
    );
    let dk = c
        .call(
            "GenerateDataKey",
            &[
                ("KeyId", &a),
                ("NumberOfBytes", "1024"),
                ("KeySpec", "AES_128"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        B64.decode(dk["Plaintext"].as_str().unwrap()).unwrap().len(),
        1024,
        "NumberOfBytes wins"
    );
    for n in ["0", "1025", "x"] {
        let e = c
            .call("GenerateDataKey", &[("KeyId", &a), ("NumberOfBytes", n)])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("InvalidParameter"));
    }
    let np = c
        .call("GenerateDataKeyWithoutPlaintext", &[("KeyId", &a)])
        .await
        .unwrap();
    assert!(np.get("Plaintext").is_none());
    let re = c
        .call(
            "ReEncrypt",
            &[
                ("CiphertextBlob", np["CiphertextBlob"].as_str().unwrap()),
                ("DestinationKeyId", &b),
                ("DestinationEncryptionContext", r#"{"to":"b"}"#),
            ],
        )
        .await
        .unwrap();
    assert_eq!(re["KeyId"], b.as_str());
    let opened = c
        .call(
            "Decrypt",
            &[
                ("CiphertextBlob", re["CiphertextBlob"].as_str().unwrap()),
                ("EncryptionContext", r#"{"to":"b"}"#),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        B64.decode(opened["Plaintext"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let big = "x".repeat(6 * 1024 + 1);
    let e = c
        .call("Encrypt", &[("KeyId", &a), ("Plaintext", &big)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameter"));
    let ok = "x".repeat(6 * 1024);
    c.call("Encrypt", &[("KeyId", &a), ("Plaintext", &ok)])
        .await
        .unwrap();
}

#[tokio::test]
async fn plaintext_never_reaches_the_audit_trail_or_the_logs() {
    let s = process_server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let marker = "TOP-SECRET-PLAINTEXT-7f3a";
    let e = c
        .call("Encrypt", &[("KeyId", &key), ("Plaintext", marker)])
        .await
        .unwrap();
    c.call(
        "Decrypt",
        &[("CiphertextBlob", e["CiphertextBlob"].as_str().unwrap())],
    )
    .await
    .unwrap();
    let dk = c.call("GenerateDataKey", &[("KeyId", &key)]).await.unwrap();
    let dk_plain = dk["Plaintext"].as_str().unwrap().to_owned();
    let secret = s.credentials().unwrap().access_key_secret;
    // The audit writer flushes each burst; poll until both calls are there.
    let audit_path = s.data_dir.join("audit.log");
    let mut audit = String::new();
    for _ in 0..100 {
        audit = std::fs::read_to_string(&audit_path).unwrap_or_default();
        if audit.lines().count() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        audit.contains("\"action\":\"Encrypt\"") && audit.contains("\"action\":\"Decrypt\""),
        "{audit}"
    );
    assert!(audit.contains(&key), "the audit names the key");
    let log = std::fs::read_to_string(s.log_path()).unwrap_or_default();
    for leaked in [marker, dk_plain.as_str(), secret.as_str()] {
        assert!(!audit.contains(leaked), "audit leaked a secret");
        assert!(!log.contains(leaked), "server log leaked a secret");
    }
}

/// The Node SDK flattens a context map into `EncryptionContext.app=billing`. That form binds
/// exactly as the JSON form does (it used to be ignored: sealed with no context at all), and
/// both forms at once are refused.
#[tokio::test]
async fn a_flattened_context_binds_like_the_json_one() {
    let s = server();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let plaintext = B64.encode("payroll");
    let sealed = c
        .call(
            "Encrypt",
            &[
                ("KeyId", &key),
                ("Plaintext", &plaintext),
                ("EncryptionContext.app", "billing"),
                ("EncryptionContext.tier", "gold"),
            ],
        )
        .await
        .unwrap();
    let blob = sealed["CiphertextBlob"].as_str().unwrap();
    let e = c
        .call("Decrypt", &[("CiphertextBlob", blob)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidCiphertext"), "no context: refused");
    let opened = c
        .call(
            "Decrypt",
            &[
                ("CiphertextBlob", blob),
                ("EncryptionContext", r#"{"tier":"gold","app":"billing"}"#),
            ],
        )
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], plaintext);
    let opened = c
        .call(
            "Decrypt",
            &[
                ("CiphertextBlob", blob),
                ("EncryptionContext.tier", "gold"),
                ("EncryptionContext.app", "billing"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], plaintext);
    let e = c
        .call(
            "Encrypt",
            &[
                ("KeyId", &key),
                ("Plaintext", &plaintext),
                ("EncryptionContext", r#"{"app":"billing"}"#),
                ("EncryptionContext.app", "other"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameter"));
}
