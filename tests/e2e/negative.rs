//! The negative suite: every action answers missing, wrong-typed, malformed and oversized
//! parameters with a documented 4xx code, a message and a request id, never a 5xx; specific
//! mistakes get their specific code; oversized bodies and slow-loris clients are cut off; and
//! a flood of bad signatures is refused without touching anything a valid request needs.

use std::time::{Duration, Instant};

use arca_client::signing::{
    nonce, signed_form_request, signed_request, signed_request_at, timestamp,
};
use arca_host::api::actions::NAMES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use arca_tests::Served;

use crate::{new_key, send, server};

/// Every `Code` the gateway documents (the error table, `host/src/error.rs`).
const DOCUMENTED: &[&str] = &[
    "InvalidParameter",
    "MissingParameter",
    "IncompleteSignature",
    "SignatureDoesNotMatch",
    "IllegalTimestamp",
    "InvalidTimeStamp.Expired",
    "SignatureNonceUsed",
    "InvalidAccessKeyId.NotFound",
    "UnsupportedHTTPMethod",
    "InvalidVersion",
    "InvalidApi.NotFound",
    "RequestEntityTooLarge",
    "RequestTimeout",
    "DryRunOperationError",
    "Forbidden.NoPermission",
    "Forbidden.KeyNotFound",
    "Forbidden.KeyVersionNotFound",
    "Forbidden.DeletionProtection",
    "InvalidImportToken",
    "ExpiredImportToken",
    "InvalidKeyMaterial",
    "Forbidden.AliasNotFound",
    "Forbidden.ResourceNotFound",
    "AliasAlreadyExists",
    "Unsupported.Alias",
    "Unsupported.ProtectionLevel",
    "Unsupported.Origin",
    "Rejected.Disabled",
    "Rejected.PendingDeletion",
    "Rejected.PendingImport",
    "Rejected.StateModifiedFailed",
    "Rejected.UnsupportedOperation",
    "Rejected.ResourceExist",
    "Rejected.ResourceInDeleteWindow",
    "InvalidCiphertext",
    "Rejected.LimitExceeded",
    "Rejected.ResourceInUse",
];

/// Wrong-typed and malformed values for the parameters the actions read.
const WRONG: &[(&str, &str)] = &[
    ("KeyId", "not a key \u{7f}"),
    ("AliasName", "no-alias-prefix"),
    ("KeyVersionId", "v"),
    ("CiphertextBlob", "%%%not-base64%%%"),
    ("Plaintext", "\u{1}\u{2}"),
    ("EncryptionContext", "{\"unterminated\":"),
    ("NumberOfBytes", "lots"),
    ("KeySpec", "Aliyun_AES_999"),
    ("KeyUsage", "EAT/SLEEP"),
    ("Origin", "Mars"),
    ("ProtectionLevel", "PAPER"),
    ("PageNumber", "-3"),
    ("PageSize", "1e9"),
    ("PendingWindowInDays", "seven"),
    ("RotationInterval", "soon"),
    ("EnableAutomaticRotation", "maybe"),
    ("Tags", "[{\"TagKey\":"),
    ("TagKeys", "{"),
    ("ResourceId", ""),
    ("SecretName", ""),
    ("VersionId", ""),
    ("VersionStage", "ACSNowhere"),
    ("RecoveryWindowInDays", "-1"),
    ("ForceDeleteWithoutRecovery", "perhaps"),
    ("Algorithm", "ROT13"),
    ("Digest", "!!not-base64!!"),
    ("Value", "!!"),
    ("Message", "!!"),
    ("Filters", "[{"),
    ("Length", "a hundred"),
    ("ImportToken", "token"),
    ("EncryptedKeyMaterial", "!!"),
    ("WrappingAlgorithm", "XOR"),
    ("WrappingKeySpec", "RSA_1"),
    ("PublicKeyBlob", "!!"),
    ("DKMSInstanceId", "kst-nope"),
    ("Name", ""),
    ("Policies", "[{"),
    ("SourcePrivateIps", "999.1.1.1/99"),
    ("Permissions", "{"),
    ("Resources", "{"),
    ("NetworkRules", "{"),
    ("DeletionProtection", "sometimes"),
    ("DryRun", "sometimes"),
];

/// The same parameters, each 24 KiB long (together under the 256 KiB body limit).
fn oversized() -> Vec<(&'static str, String)> {
    WRONG
        .iter()
        .take(10)
        .map(|(k, _)| (*k, "A".repeat(24 * 1024)))
        .collect()
}

/// Sends `action` with `params` (V3-signed, as the SDKs do) and checks the error contract:
/// never a 5xx; a non-200 carries a documented code, a message and a request id.
async fn call(
    endpoint: &str,
    creds: &arca_client::Credentials,
    action: &str,
    params: &[(&str, &str)],
) -> (u16, String) {
    let sign = if params.iter().map(|(_, v)| v.len()).sum::<usize>() > 32 * 1024 {
        signed_form_request
    } else {
        signed_request
    };
    let req = sign(
        endpoint,
        &creds.access_key_id,
        creds.access_key_secret.as_bytes(),
        action,
        params,
    );
    let (status, body) = send(req).await;
    assert!(status < 500, "{action} {params:?}: {status} {body}");
    let code = body["Code"].as_str().unwrap_or_default().to_owned();
    if status != 200 {
        assert!((400..500).contains(&status), "{action}: {status} {body}");
        assert!(
            DOCUMENTED.contains(&code.as_str()),
            "{action}: undocumented code {code:?}"
        );
        assert!(
            !body["Message"].as_str().unwrap_or_default().is_empty(),
            "{action}: no message"
        );
        assert!(!body["RequestId"].as_str().unwrap_or_default().is_empty());
    }
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_refuses_bad_parameters_with_a_documented_4xx() {
    let s = server();
    let creds = s.credentials().unwrap();
    let oversized = oversized();
    let oversized: Vec<(&str, &str)> = oversized.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut refused = [0usize; 3];
    for action in NAMES {
        let (missing, _) = call(&s.endpoint, &creds, action, &[]).await;
        let (wrong, _) = call(&s.endpoint, &creds, action, WRONG).await;
        let (big, _) = call(&s.endpoint, &creds, action, &oversized).await;
        for (i, status) in [missing, wrong, big].into_iter().enumerate() {
            refused[i] += usize::from(status != 200);
        }
    }
    // Most actions need something; the ones that answer an empty or garbage request with 200
    // are the listings and lookups that take nothing (DescribeRegions, ListKeys, ...).
    let n = NAMES.len();
    assert!(refused[0] * 10 >= n * 7, "missing: {refused:?} of {n}");
    assert!(refused[1] * 10 >= n * 8, "wrong-typed: {refused:?} of {n}");
    assert!(refused[2] * 10 >= n * 8, "oversized: {refused:?} of {n}");
    // The server is unharmed.
    assert_eq!(
        call(&s.endpoint, &creds, "DescribeRegions", &[]).await.0,
        200
    );
}

/// An action, its parameters, and the status and code it must answer.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn specific_mistakes_get_their_specific_code() {
    let s = server();
    let c = s.client().unwrap();
    let creds = s.credentials().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let big_plain = "p".repeat(7 * 1024);
    let cases: &[Case<'_>] = &[
        ("Encrypt", vec![("Plaintext", "x")], 400, "MissingParameter"),
        ("Encrypt", vec![("KeyId", &key)], 400, "MissingParameter"),
        (
            "Encrypt",
            vec![
                ("KeyId", &key),
                ("Plaintext", "x"),
                ("EncryptionContext", "[1]"),
            ],
            400,
            "InvalidParameter",
        ),
        (
            "Encrypt",
            vec![("KeyId", &key), ("Plaintext", &big_plain)],
            400,
            "InvalidParameter",
        ),
        (
            "Encrypt",
            vec![("KeyId", "key-doesnotexist0000000"), ("Plaintext", "x")],
            404,
            "Forbidden.KeyNotFound",
        ),
        (
            "Decrypt",
            vec![("CiphertextBlob", "bm90IGEgYmxvYg==")],
            400,
            "InvalidParameter",
        ),
        (
            "GenerateDataKey",
            vec![("KeyId", &key), ("NumberOfBytes", "0")],
            400,
            "InvalidParameter",
        ),
        (
            "GenerateDataKey",
            vec![("KeyId", &key), ("NumberOfBytes", "x")],
            400,
            "InvalidParameter",
        ),
        (
            "CreateKey",
            vec![("KeySpec", "AES_1")],
            400,
            "InvalidParameter",
        ),
        (
            "CreateKey",
            vec![("KeyUsage", "EAT")],
            400,
            "InvalidParameter",
        ),
        ("ListKeys", vec![("PageSize", "0")], 400, "InvalidParameter"),
        (
            "ListKeys",
            vec![("PageNumber", "abc")],
            400,
            "InvalidParameter",
        ),
        (
            "ScheduleKeyDeletion",
            vec![("KeyId", &key), ("PendingWindowInDays", "6")],
            400,
            "InvalidParameter",
        ),
        (
            "ScheduleKeyDeletion",
            vec![("KeyId", &key), ("PendingWindowInDays", "367")],
            400,
            "InvalidParameter",
        ),
        (
            "CreateAlias",
            vec![("KeyId", &key), ("AliasName", "no-prefix")],
            400,
            "InvalidParameter",
        ),
        // A key named by an alias that does not exist is a missing key; the alias itself,
        // named where an alias is expected, is a missing alias.
        (
            "DescribeKey",
            vec![("KeyId", "alias/never-made")],
            404,
            "Forbidden.KeyNotFound",
        ),
        (
            "DeleteAlias",
            vec![("AliasName", "alias/never-made")],
            404,
            "Forbidden.AliasNotFound",
        ),
        (
            "TagResource",
            vec![("KeyId", &key), ("Tags", "not json")],
            400,
            "InvalidParameter",
        ),
        ("GetSecretValue", vec![], 400, "MissingParameter"),
        (
            "CreateSecret",
            vec![("SecretName", "s"), ("SecretData", "v")],
            400,
            "MissingParameter",
        ),
        (
            "GetRandomPassword",
            vec![("PasswordLength", "3")],
            400,
            "InvalidParameter",
        ),
        (
            "AsymmetricSign",
            vec![
                ("KeyId", &key),
                ("KeyVersionId", "v"),
                ("Algorithm", "RSA_PSS_SHA_256"),
                ("Digest", "AAAA"),
            ],
            400,
            "InvalidParameter",
        ),
        ("NoSuchAction", vec![], 404, "InvalidApi.NotFound"),
    ];
    for (action, params, status, code) in cases {
        let got = call(&s.endpoint, &creds, action, params).await;
        assert_eq!(
            got,
            (*status, (*code).to_owned()),
            "{action} {:?}",
            params.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_whole() {
    let s = server();
    let creds = s.credentials().unwrap();
    let huge = "A".repeat(300 * 1024);
    // A signed form body over the limit: 413 with the documented code.
    let req = signed_form_request(
        &s.endpoint,
        &creds.access_key_id,
        creds.access_key_secret.as_bytes(),
        "Encrypt",
        &[("KeyId", "k"), ("Plaintext", &huge)],
    );
    let (status, body) = send(req).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    // Unsigned, announced with its length: refused the same way, not read to the end first.
    let body = format!("Plaintext={huge}");
    let mut stream = TcpStream::connect(&s.endpoint).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        s.endpoint,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(body.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("RequestEntityTooLarge"), "{reply}");
    // A request line or headers past hyper's buffer: refused before any parsing of ours.
    let mut stream = TcpStream::connect(&s.endpoint).await.unwrap();
    let line = format!(
        "GET /?KeyId={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "A".repeat(1024 * 1024)
    );
    let _ = stream.write_all(line.as_bytes()).await;
    let (reply, took) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431") || reply.starts_with("HTTP/1.1 414"),
        "{reply}"
    );
    assert!(took < Duration::from_secs(5));
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut got)).await;
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_while_others_are_served() {
    let s = server();
    let c = s.client().unwrap();
    // Headers trickled in: dropped after the 10 s header deadline.
    let mut headers = TcpStream::connect(&s.endpoint).await.unwrap();
    headers
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            if headers.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        headers
    });
    // A complete head, then a body that never finishes: 408 after the body deadline.
    let mut body = TcpStream::connect(&s.endpoint).await.unwrap();
    body.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 1000\r\n\r\nAction=",
    )
    .await
    .unwrap();
    // Meanwhile the server answers everyone else.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        c.call("DescribeRegions", &[]).await.unwrap();
    }
    let (reply, took) = until_closed(&mut body, Duration::from_secs(20)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("RequestTimeout"));
    assert!(took < Duration::from_secs(12), "{took:?}");
    let mut headers = trickle.await.unwrap();
    let (_, took) = until_closed(&mut headers, Duration::from_secs(20)).await;
    assert!(
        took < Duration::from_secs(5),
        "closed after the header deadline: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bad_signatures_are_refused_and_burn_nothing() {
    let s = server();
    let creds = s.credentials().unwrap();
    let c = s.client().unwrap();
    let key = new_key(&c, "Aliyun_AES_256").await;
    let date = timestamp();
    let nonces: Vec<String> = (0..10_000).map(|_| nonce()).collect();
    let flood = {
        let (endpoint, id, nonces, date) = (
            s.endpoint.clone(),
            creds.access_key_id.clone(),
            nonces.clone(),
            date.clone(),
        );
        tokio::spawn(async move {
            let mut refused = 0;
            for n in &nonces {
                let req = signed_request_at(
                    &endpoint,
                    &id,
                    b"not-the-secret",
                    "Encrypt",
                    &[("KeyId", "k"), ("Plaintext", "x")],
                    &date,
                    n,
                );
                let (status, body) = send(req).await;
                assert_eq!(
                    (status, body["Code"].as_str()),
                    (400, Some("SignatureDoesNotMatch"))
                );
                refused += 1;
            }
            refused
        })
    };
    // Valid requests keep succeeding during the flood.
    let mut valid = 0;
    while !flood.is_finished() {
        c.call("Encrypt", &[("KeyId", &key), ("Plaintext", "x")])
            .await
            .unwrap();
        valid += 1;
    }
    assert_eq!(flood.await.unwrap(), 10_000);
    assert!(valid > 0);
    // A refused request burned no nonce: the real client may still use every one of them.
    for n in nonces.iter().take(50) {
        let req = signed_request_at(
            &s.endpoint,
            &creds.access_key_id,
            creds.access_key_secret.as_bytes(),
            "Encrypt",
            &[("KeyId", &key), ("Plaintext", "x")],
            &date,
            n,
        );
        let (status, body) = send(req).await;
        assert_eq!(status, 200, "{body}");
    }
}
