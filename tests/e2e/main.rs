//! End-to-end tests against the real `arca` binary. One test binary (one link); each module is
//! an area. The official Python SDKs are exercised separately by `tests/python/`.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step is a failed test"
)]

mod audit;
mod auth;
mod backup;
mod config;
mod crypto;
mod durability;
mod hsm;
mod negative;
mod observability;
mod plugins;
mod rotation;
mod sse;
mod startup;
mod tenancy;

use std::time::Duration;

use arca_tests::{LocalServer, TestServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Sends a raw request and returns (status, JSON body).
pub async fn send(req: http::Request<Full<Bytes>>) -> (u16, serde_json::Value) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("timed out")
        .expect("request failed");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// `DescribeRegions` signed by `s`'s admin at `date` (RFC 3339) with a fresh nonce: how the
/// clock-skew tests ask whether a time is inside the window.
pub async fn describe_regions_signed_at(
    s: &impl arca_tests::Served,
    date: &str,
) -> (u16, serde_json::Value) {
    let creds = s.credentials().expect("credentials");
    send(arca_client::signing::signed_request_at(
        s.endpoint(),
        &creds.access_key_id,
        creds.access_key_secret.as_bytes(),
        "DescribeRegions",
        &[],
        date,
        &arca_client::signing::nonce(),
    ))
    .await
}

/// An API error's (status, code, message); any other error fails the test.
pub fn api_error(e: &arca_client::Error) -> (u16, &str, &str) {
    match e {
        arca_client::Error::Api {
            status,
            code,
            message,
            ..
        } => (*status, code.as_str(), message.as_str()),
        other => panic!("not an API error: {other}"),
    }
}

/// Creates a key and returns its id.
pub async fn new_key(c: &arca_client::Client, spec: &str) -> String {
    let r = c
        .call("CreateKey", &[("KeySpec", spec)])
        .await
        .expect("CreateKey");
    r["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("KeyId")
        .to_owned()
}

/// A real `arca serve` process, for tests that kill or restart it.
pub fn process_server() -> TestServer {
    TestServer::start().expect("start arca")
}

/// A server in this process on port 0, or a test failure that says why.
pub fn server() -> LocalServer {
    LocalServer::start().expect("start arca")
}
