//! Authentication: signatures, clock skew, replay, and the request-level refusals.

use arca_client::signing::{nonce, signed_request_at, timestamp};
use bytes::Bytes;
use http_body_util::Full;

use arca_tests::{LocalServer, Served};

use crate::{describe_regions_signed_at, process_server, send, server};

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let s = server();
    let creds = s.credentials().unwrap();
    let (date, n) = (timestamp(), nonce());
    let make = || {
        signed_request_at(
            &s.endpoint,
            &creds.access_key_id,
            creds.access_key_secret.as_bytes(),
            "DescribeRegions",
            &[],
            &date,
            &n,
        )
    };
    let (status, body) = send(make()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(make()).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureNonceUsed")),
        "{body}"
    );
    // A fresh nonce goes through again.
    let (status, _) = send(signed_request_at(
        &s.endpoint,
        &creds.access_key_id,
        creds.access_key_secret.as_bytes(),
        "DescribeRegions",
        &[],
        &date,
        &nonce(),
    ))
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let s = server();
    let creds = s.credentials().unwrap();
    for date in ["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"] {
        let req = signed_request_at(
            &s.endpoint,
            &creds.access_key_id,
            creds.access_key_secret.as_bytes(),
            "DescribeRegions",
            &[],
            date,
            &nonce(),
        );
        let (status, body) = send(req).await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (400, Some("InvalidTimeStamp.Expired")),
            "{body}"
        );
    }
    let req = signed_request_at(
        &s.endpoint,
        &creds.access_key_id,
        creds.access_key_secret.as_bytes(),
        "DescribeRegions",
        &[],
        "yesterday",
        &nonce(),
    );
    let (_, body) = send(req).await;
    assert_eq!(body["Code"], "IllegalTimestamp");
}

#[tokio::test]
async fn bad_credentials_and_unsigned_requests_are_refused() {
    let s = server();
    let creds = s.credentials().unwrap();
    let wrong = arca_client::signing::signed_request(
        &s.endpoint,
        &creds.access_key_id,
        b"not-the-secret",
        "DescribeRegions",
        &[],
    );
    let (status, body) = send(wrong).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureDoesNotMatch")),
        "{body}"
    );
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("server string to sign is:ACS3-HMAC-SHA256\n"),
        "{body}"
    );
    let unknown = arca_client::signing::signed_request(
        &s.endpoint,
        "LTAInobody",
        b"x",
        "DescribeRegions",
        &[],
    );
    let (status, body) = send(unknown).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (404, Some("InvalidAccessKeyId.NotFound"))
    );
    let unsigned = http::Request::post(format!(
        "http://{}/?Action=DescribeRegions&Version=2016-01-20",
        s.endpoint
    ))
    .body(Full::new(Bytes::new()))
    .unwrap();
    let (status, body) = send(unsigned).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("IncompleteSignature")),
        "{body}"
    );
    assert!(body["RequestId"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(body["HostId"].as_str().is_some());
}

#[tokio::test]
async fn request_shape_errors_have_their_codes() {
    let s = server();
    let c = s.client().unwrap();
    let e = c.call("NoSuchAction", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidApi.NotFound"));
    let put = http::Request::put(format!("http://{}/", s.endpoint))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, body) = send(put).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (403, Some("UnsupportedHTTPMethod"))
    );
    let no_version = http::Request::post(format!("http://{}/?Action=DescribeRegions", s.endpoint))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = send(no_version).await;
    assert_eq!(body["Code"], "MissingParameter");
    let big = http::Request::post(format!("http://{}/", s.endpoint))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(vec![b'a'; 300 * 1024])))
        .unwrap();
    let (status, body) = send(big).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (413, Some("RequestEntityTooLarge")),
        "{body}"
    );
}

#[tokio::test]
async fn dry_run_validates_without_acting() {
    let s = server();
    let c = s.client().unwrap();
    let e = c
        .call("CreateKey", &[("DryRun", "true")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("DryRunOperationError"));
    let keys = c.call("ListKeys", &[]).await.unwrap();
    assert_eq!(keys["TotalCount"], 0, "a dry run created nothing");
    let e = c
        .call("CreateKey", &[("DryRun", "true"), ("KeySpec", "Nope")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidParameter"), "validation still runs");
}

/// `--max-clock-skew` narrows the window: a request two minutes old is refused under a
/// 60-second window and accepted under the default 15 minutes.
#[tokio::test]
async fn the_clock_skew_window_is_configurable() {
    let narrow = LocalServer::start_with(|c| c.api.max_clock_skew = 60).unwrap();
    let wide = server();
    let two_minutes_ago = arca_client::signing::format_utc(
        time::OffsetDateTime::now_utc() - time::Duration::minutes(2),
    );
    for (status, expect) in [
        (
            describe_regions_signed_at(&narrow, &two_minutes_ago).await,
            400,
        ),
        (
            describe_regions_signed_at(&wide, &two_minutes_ago).await,
            200,
        ),
    ] {
        let (status, body) = status;
        assert_eq!(status, expect, "{body}");
        if expect == 400 {
            assert_eq!(body["Code"], "InvalidTimeStamp.Expired");
        }
    }
}

/// Only signed input picks the action: a V1 signature covers parameters, not headers, so an
/// `x-acs-action` header that disagrees with the signed `Action` is refused (it used to win,
/// turning a signed DescribeKey into a DisableKey); and a V3 query `Action` that disagrees
/// with the signed header is refused too.
#[tokio::test]
async fn the_action_that_runs_is_the_action_that_was_signed() {
    let s = server();
    let c = s.client().unwrap();
    let creds = s.credentials().unwrap();
    let key = crate::new_key(&c, "Aliyun_AES_256").await;
    let v1 = |extra_header: Option<&str>| {
        let mut req = arca_client::signing::v1_signed_request(
            &s.endpoint,
            &creds.access_key_id,
            creds.access_key_secret.as_bytes(),
            "DescribeKey",
            &[("KeyId", &key)],
        );
        if let Some(action) = extra_header {
            req.headers_mut()
                .insert("x-acs-action", action.parse().unwrap());
        }
        req
    };
    let (status, body) = send(v1(None)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(v1(Some("DescribeKey"))).await;
    assert_eq!(status, 200, "an agreeing header is fine: {body}");
    let (status, body) = send(v1(Some("DisableKey"))).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("IncompleteSignature")),
        "{body}"
    );
    let described = c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");

    // V3 signs the header; a query `Action` beside it must agree with it.
    let (status, body) = send(arca_client::signing::signed_request(
        &s.endpoint,
        &creds.access_key_id,
        creds.access_key_secret.as_bytes(),
        "DescribeKey",
        &[("KeyId", &key), ("Action", "DisableKey")],
    ))
    .await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("IncompleteSignature")),
        "{body}"
    );
    let described = c.call("DescribeKey", &[("KeyId", &key)]).await.unwrap();
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
}

/// A body that is not a form would be covered by a V3 body hash and read by no one, its
/// parameters silently dropped: it is refused.
#[tokio::test]
async fn a_body_that_is_not_a_form_is_refused() {
    let s = server();
    let creds = s.credentials().unwrap();
    let mut req = arca_client::signing::signed_form_request(
        &s.endpoint,
        &creds.access_key_id,
        creds.access_key_secret.as_bytes(),
        "DescribeRegions",
        &[("EncryptionContext", "{}")],
    );
    req.headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    let (status, body) = send(req).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidParameter")),
        "{body}"
    );
}

/// The replay cache outlives the process: a request captured before a restart (or a crash)
/// is still refused as a replay after it.
#[tokio::test]
async fn a_replay_is_refused_across_a_restart() {
    let mut s = process_server();
    let creds = s.credentials().unwrap();
    let endpoint = s.endpoint.clone();
    let (date, n) = (timestamp(), nonce());
    let make = || {
        signed_request_at(
            &endpoint,
            &creds.access_key_id,
            creds.access_key_secret.as_bytes(),
            "DescribeRegions",
            &[],
            &date,
            &n,
        )
    };
    let (status, body) = send(make()).await;
    assert_eq!(status, 200, "{body}");
    s.kill9().unwrap();
    s.restart().unwrap();
    let (status, body) = send(make()).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureNonceUsed")),
        "{body}"
    );
}

/// With `--server-name`, a request signed for another host name (another deployment) is
/// refused; one signed for a listed name is served.
#[tokio::test]
async fn only_the_listed_host_names_are_answered() {
    let s =
        LocalServer::start_with(|c| c.api.server_names = vec!["kms.example.test".into()]).unwrap();
    let creds = s.credentials().unwrap();
    let for_host = |host: &str| {
        let mut req = arca_client::signing::signed_request(
            host,
            &creds.access_key_id,
            creds.access_key_secret.as_bytes(),
            "DescribeRegions",
            &[],
        );
        let path = req.uri().path_and_query().unwrap().as_str().to_owned();
        *req.uri_mut() = format!("http://{}{path}", s.endpoint).parse().unwrap();
        req
    };
    let (status, body) = send(for_host("kms.example.test")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(for_host("kms.other-region.test")).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidParameter")),
        "{body}"
    );
}
