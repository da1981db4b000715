//! The request parser and signature canonicalisation: query and form parsing, the parameter
//! accessors the actions use, the `Authorization` header and both schemes' strings to sign.
//! Input: NUL-separated query, body, Authorization, x-acs-content-sha256, x-acs-date,
//! x-acs-signature-nonce.
#![no_main]

use arca_host::api::auth::{SignedRequest, string_to_sign};
use arca_host::api::params::Params;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(6, |b| *b == 0);
    let mut next = || parts.next().unwrap_or_default();
    let query = String::from_utf8_lossy(next()).into_owned();
    let body = next().to_vec();
    let params = Params::parse(Some(&query), Some(&body));
    let mut headers = HeaderMap::new();
    for name in [
        "authorization",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
    ] {
        if let Ok(v) = HeaderValue::from_bytes(next()) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    for method in ["POST", "GET"] {
        let req = SignedRequest {
            method,
            path: "/",
            query: &query,
            headers: &headers,
            params: &params,
            body: &body,
        };
        let _ = string_to_sign(&req);
    }
    // The accessors actions parse with.
    let _ = params.int("PageSize", 1..=100);
    let _ = params.bool("DryRun");
    let _ = params.list("Tags");
    let _ = params.object_list("Tag");
    let _ = params.required_as::<arca_host::ids::KeyId>("KeyId");
    let _ = arca_host::api::params::Page::parse(&params);
});
