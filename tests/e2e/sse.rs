//! Server-side encryption through integration plugins: a small object store in the test plays
//! the integrated service. It envelope-encrypts each object with a data key from
//! `ArcaSseGenerateDataKey` and opens it with `ArcaSseDecrypt`; the shipped `sse-oss` plugin
//! decides the key (the service key `acs/oss`, made on first use, or the customer's CMK) and
//! binds the data key to the bucket and object. The shipped `sse-ecs` plugin does the same for
//! disks. Both are loaded from files at start, as any third-party integration is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arca_client::{Client, Credentials};
use arca_tests::{Served, TestServer, repo_root};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One stored object: its body sealed under a data key, and that data key sealed by Arca.
struct Stored {
    data_key_blob: String,
    nonce: [u8; 12],
    sealed: Vec<u8>,
}

/// The stand-in object storage service.
struct Objects {
    arca: Client,
    objects: Mutex<HashMap<String, Stored>>,
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn failed(e: &arca_client::Error) -> Response<Full<Bytes>> {
    match e {
        arca_client::Error::Api { status, code, .. } => reply(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            code.clone(),
        ),
        other => reply(StatusCode::BAD_GATEWAY, other.to_string()),
    }
}

impl Objects {
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let resource = req.uri().path().trim_start_matches('/').to_owned();
        let key = req
            .headers()
            .get("x-kms-key-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match *req.method() {
            hyper::Method::PUT => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let mut params = vec![
                    ("Service", "oss"),
                    ("Resource", resource.as_str()),
                    ("Operation", "put-object"),
                ];
                if let Some(k) = &key {
                    params.push(("KeyId", k));
                }
                let dk = match self.arca.call("ArcaSseGenerateDataKey", &params).await {
                    Ok(dk) => dk,
                    Err(e) => return failed(&e),
                };
                let data_key = B64.decode(dk["Plaintext"].as_str().unwrap()).unwrap();
                let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &data_key).unwrap());
                let mut nonce = [0u8; 12];
                aws_lc_rs::rand::fill(&mut nonce).unwrap();
                let mut sealed = body.to_vec();
                aead.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(resource.as_bytes()),
                    &mut sealed,
                )
                .unwrap();
                self.objects.lock().unwrap().insert(
                    resource,
                    Stored {
                        data_key_blob: dk["CiphertextBlob"].as_str().unwrap().to_owned(),
                        nonce,
                        sealed,
                    },
                );
                reply(StatusCode::OK, serde_json::to_vec(&dk["KeyId"]).unwrap())
            }
            hyper::Method::GET => {
                let (blob, nonce, mut sealed) = {
                    let objects = self.objects.lock().unwrap();
                    let Some(o) = objects.get(&resource) else {
                        return reply(StatusCode::NOT_FOUND, "NoSuchKey");
                    };
                    (o.data_key_blob.clone(), o.nonce, o.sealed.clone())
                };
                let opened = match self
                    .arca
                    .call(
                        "ArcaSseDecrypt",
                        &[
                            ("Service", "oss"),
                            ("Resource", &resource),
                            ("Operation", "get-object"),
                            ("CiphertextBlob", &blob),
                        ],
                    )
                    .await
                {
                    Ok(o) => o,
                    Err(e) => return failed(&e),
                };
                let data_key = B64.decode(opened["Plaintext"].as_str().unwrap()).unwrap();
                let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &data_key).unwrap());
                let body = aead
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(resource.as_bytes()),
                        &mut sealed,
                    )
                    .unwrap()
                    .to_vec();
                reply(StatusCode::OK, body)
            }
            _ => reply(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}

/// Serves `objects` on a loopback port.
async fn serve(objects: Arc<Objects>) -> SocketAddr {
    arca_tests::serve_http(move |req| {
        let objects = Arc::clone(&objects);
        async move { objects.handle(req).await }
    })
    .await
    .unwrap()
}

/// `METHOD http://addr/path` with an optional CMK header: (status, body).
async fn object(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> (u16, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/{path}"));
    if let Some(k) = key {
        req = req.header("x-kms-key-id", k);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn code(e: &arca_client::Error) -> String {
    e.code().unwrap_or_default().to_owned()
}

fn server_with_shipped_plugins() -> TestServer {
    let plugins = repo_root().join("plugins");
    assert!(
        plugins.join("sse-oss/sse_oss.wasm").exists()
            && plugins.join("sse-ecs/sse_ecs.wasm").exists(),
        "build the shipped plugins first: plugins/build.sh"
    );
    let dir = plugins.display().to_string();
    TestServer::start_with(&["--plugins-dir", &dir], Vec::new()).unwrap()
}

#[tokio::test]
async fn objects_are_protected_by_the_service_key_or_a_chosen_cmk() {
    let s = server_with_shipped_plugins();
    let user = s.client().unwrap();
    let store = serve(Arc::new(Objects {
        arca: s.client().unwrap(),
        objects: Mutex::new(HashMap::new()),
    }))
    .await;

    // SSE with the service key: made on first use, alias acs/oss, Creator oss.
    assert_eq!(
        object(store, "PUT", "photos/cat.jpg", "meow", None).await.0,
        200
    );
    assert_eq!(
        object(store, "GET", "photos/cat.jpg", "", None).await,
        (200, "meow".to_owned())
    );
    let service_key = user
        .call("DescribeKey", &[("KeyId", "alias/acs/oss")])
        .await
        .unwrap()["KeyMetadata"]
        .clone();
    assert_eq!(service_key["Creator"], "oss");
    assert_eq!(service_key["KeySpec"], "Aliyun_AES_256");
    let service_key_id = service_key["KeyId"].as_str().unwrap().to_owned();
    let by_service = user
        .call(
            "ListKeys",
            &[("Filters", r#"[{"Key":"CreatorType","Values":["Service"]}]"#)],
        )
        .await
        .unwrap();
    let listed: Vec<&str> = by_service["Keys"]["Key"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["KeyId"].as_str())
        .collect();
    assert_eq!(listed, vec![service_key_id.as_str()]);
    // A second object reuses the same service key.
    object(store, "PUT", "photos/owl.jpg", "hoot", None).await;
    let policy = user
        .call(
            "GetKeyPolicy",
            &[("KeyId", &service_key_id), ("PolicyName", "default")],
        )
        .await
        .unwrap();
    assert!(policy.to_string().contains("oss.aliyuncs.com"), "{policy}");

    // The account may look at its service key, not manage or use it.
    for (action, params) in [
        ("DisableKey", vec![("KeyId", service_key_id.as_str())]),
        (
            "ScheduleKeyDeletion",
            vec![
                ("KeyId", service_key_id.as_str()),
                ("PendingWindowInDays", "7"),
            ],
        ),
        (
            "Encrypt",
            vec![("KeyId", "alias/acs/oss"), ("Plaintext", "direct use")],
        ),
        ("CreateKeyVersion", vec![("KeyId", service_key_id.as_str())]),
    ] {
        let e = user.call(action, &params).await.unwrap_err();
        assert_eq!(code(&e), "Forbidden.NoPermission", "{action}: {e}");
    }
    let e = user
        .call("DeleteAlias", &[("AliasName", "alias/acs/oss")])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Unsupported.Alias");
    let blob = {
        let dk = user
            .call(
                "ArcaSseGenerateDataKey",
                &[("Service", "oss"), ("Resource", "photos/x.jpg")],
            )
            .await
            .unwrap();
        assert_eq!(dk["ServiceKey"], true);
        dk["CiphertextBlob"].as_str().unwrap().to_owned()
    };
    let e = user
        .call("Decrypt", &[("CiphertextBlob", &blob)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "Forbidden.NoPermission", "direct Decrypt: {e}");
    // A data key bound to one object does not open for another.
    let e = user
        .call(
            "ArcaSseDecrypt",
            &[
                ("Service", "oss"),
                ("Resource", "photos/y.jpg"),
                ("CiphertextBlob", &blob),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidCiphertext");

    // BYOK for SSE: the customer's CMK protects the object, and disabling it blocks reads.
    let cmk = crate::new_key(&user, "Aliyun_AES_256").await;
    assert_eq!(
        object(store, "PUT", "private/report.pdf", "numbers", Some(&cmk)).await,
        (200, format!("\"{cmk}\""))
    );
    assert_eq!(
        object(store, "GET", "private/report.pdf", "", None).await,
        (200, "numbers".to_owned())
    );
    user.call("DisableKey", &[("KeyId", &cmk)]).await.unwrap();
    let (status, body) = object(store, "GET", "private/report.pdf", "", None).await;
    assert_eq!((status, body.as_str()), (409, "Rejected.Disabled"));
    assert_eq!(
        object(store, "GET", "photos/cat.jpg", "", None).await.0,
        200,
        "objects under the service key are unaffected"
    );
    user.call("EnableKey", &[("KeyId", &cmk)]).await.unwrap();
    assert_eq!(
        object(store, "GET", "private/report.pdf", "", None).await,
        (200, "numbers".to_owned())
    );

    // Another account gets its own service key on its own first use.
    let made = s.cli(&["account", "create"]).unwrap();
    let other = s.client_for(Credentials {
        access_key_id: made["AccessKeyId"].as_str().unwrap().to_owned(),
        access_key_secret: made["AccessKeySecret"].as_str().unwrap().to_owned(),
        account_id: made["AccountId"].as_str().unwrap().to_owned(),
        region_id: "cn-hangzhou".into(),
    });
    let theirs = other
        .call(
            "ArcaSseGenerateDataKey",
            &[("Service", "oss"), ("Resource", "b/o")],
        )
        .await
        .unwrap();
    assert_ne!(theirs["KeyId"], service_key_id.as_str());
    assert_eq!(theirs["ServiceKey"], true);
}

#[tokio::test]
async fn a_second_integration_and_bad_requests() {
    let s = server_with_shipped_plugins();
    let c = s.client().unwrap();
    // Block storage: disks, bound to the disk id.
    let dk = c
        .call(
            "ArcaSseGenerateDataKey",
            &[
                ("Service", "ecs"),
                ("Resource", "d-abc123"),
                ("Operation", "create-disk"),
            ],
        )
        .await
        .unwrap();
    let described = c
        .call("DescribeKey", &[("KeyId", "alias/acs/ecs")])
        .await
        .unwrap();
    assert_eq!(described["KeyMetadata"]["Creator"], "ecs");
    let opened = c
        .call(
            "ArcaSseDecrypt",
            &[
                ("Service", "ecs"),
                ("Resource", "d-abc123"),
                ("Operation", "attach-disk"),
                ("CiphertextBlob", dk["CiphertextBlob"].as_str().unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], dk["Plaintext"]);
    // The integration refuses what it does not understand; no plugin, no service.
    for (service, resource, operation) in [
        ("ecs", "disk-1", "create-disk"),
        ("ecs", "d-abc123", "delete-disk"),
        ("oss", "no-object", "put-object"),
        ("rds", "db-1", "put"),
    ] {
        let e = c
            .call(
                "ArcaSseGenerateDataKey",
                &[
                    ("Service", service),
                    ("Resource", resource),
                    ("Operation", operation),
                ],
            )
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameter", "{service} {resource}: {e}");
    }
}
