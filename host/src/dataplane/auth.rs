//! Client-key request signatures (spec §7.1): RSASSA-PKCS1-v1_5 SHA-256 over
//!
//! ```text
//! POST\n<content-sha256>\n<content-type>\n<date>\n<x-kms-* headers, sorted, name:value\n>/
//! ```
//!
//! sent as `Authorization: Bearer <base64>` (the documents say `TOKEN`; both are accepted),
//! with the client key id in `x-kms-acccesskeyid` (the SDKs' spelling).

use base64::Engine;
use http::HeaderMap;
use time::OffsetDateTime;

use super::Failure;
use crate::kms::access_points::ClientKeyContext;

/// Largest accepted difference between the request's `date` and the server clock.
pub(super) const MAX_SKEW: time::Duration = time::Duration::minutes(15);

/// The `date` header format (RFC 1123, always GMT).
const HTTP_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client key id a request names.
pub(super) fn client_key_id(headers: &HeaderMap) -> Result<&str, Failure> {
    header(headers, "x-kms-acccesskeyid")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Failure::bad(
                "MissingParameter",
                "Parameter x-kms-acccesskeyid does not exist in http header or body.",
            )
        })
}

/// The string the client signed.
fn string_to_sign(headers: &HeaderMap) -> String {
    let mut kms: Vec<(String, &str)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-kms-"))
        .filter_map(|(name, v)| Some((name.as_str().to_owned(), v.to_str().ok()?.trim())))
        .collect();
    kms.sort();
    let mut s = format!(
        "POST\n{}\n{}\n{}\n",
        header(headers, "content-sha256").unwrap_or_default(),
        header(headers, "content-type").unwrap_or_default(),
        header(headers, "date").unwrap_or_default(),
    );
    for (name, value) in kms {
        s.push_str(&name);
        s.push(':');
        s.push_str(value);
        s.push('\n');
    }
    s.push('/');
    s
}

/// Checks everything about a request's authentication except the access policy: the API
/// version and signature method, the body hash, the date, the key's validity and the signature.
pub(super) fn verify(
    headers: &HeaderMap,
    body: &[u8],
    key: &ClientKeyContext,
    now: OffsetDateTime,
) -> Result<(), Failure> {
    if !header(headers, "x-kms-apiversion").is_some_and(|v| v.starts_with("dkms-gcs-")) {
        return Err(Failure::bad(
            "InvalidApiVersion",
            "The ApiVersion is invalid.",
        ));
    }
    if header(headers, "x-kms-signaturemethod") != Some("RSA_PKCS1_SHA_256") {
        return Err(Failure::bad(
            "InvalidParam",
            "The Param x-kms-signaturemethod is invalid.",
        ));
    }
    let sent = header(headers, "date")
        .and_then(|d| time::PrimitiveDateTime::parse(d, HTTP_DATE).ok())
        .ok_or_else(|| Failure::bad("InvalidParam", "The Param Date is invalid."))?
        .assume_utc();
    if (sent - now).abs() > MAX_SKEW {
        return Err(Failure::bad(
            "RequestTimeTooSkewed",
            "Request time exceeds server time more than 15 minutes.",
        ));
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let claimed = header(headers, "content-sha256").unwrap_or_default();
    if !claimed.eq_ignore_ascii_case(&hex::encode(digest.as_ref())) {
        return Err(Failure::bad(
            "InvalidParam",
            "The Param content-sha256 is invalid.",
        ));
    }
    let signature = header(headers, "authorization")
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("TOKEN "))
        })
        .and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
        })
        .ok_or_else(|| Failure::bad("InvalidParam", "The Param Authorization is invalid."))?;
    let now_s = now.unix_timestamp();
    if now_s < key.key.not_before || now_s > key.key.not_after {
        return Err(Failure::unauthorized(
            "The client key is outside its validity period.",
        ));
    }
    let public = base64::engine::general_purpose::STANDARD
        .decode(&key.key.public_key)
        .map_err(|_| Failure::internal("client key record"))?;
    if !crate::pki::verify_rsa_sha256(&public, string_to_sign(headers).as_bytes(), &signature) {
        return Err(Failure::unauthorized(
            "The request signature does not match the client key.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_matches_the_captured_sdk_request() {
        // shared/spec/alibaba/alibaba-api.md §7.1, as the Python SDK built it.
        let mut h = HeaderMap::new();
        let mut put = |k: &'static str, v: &str| {
            h.insert(k, v.parse().unwrap_or_else(|_| panic!("{v}")));
        };
        put(
            "content-sha256",
            "D1485047277EACC2C271629499BD1B535FBFBA3DB592FB067B2A1D1EE4E671FB",
        );
        put("content-type", "application/x-protobuf");
        put("date", "Mon, 23 Nov 2026 14:06:17 GMT");
        put("x-kms-apiversion", "dkms-gcs-0.2");
        put("x-kms-apiname", "Encrypt");
        put("x-kms-signaturemethod", "RSA_PKCS1_SHA_256");
        put(
            "x-kms-acccesskeyid",
            "KAAP.2a6b5b8c-0000-4c1a-9e1c-123456789abc",
        );
        put("user-agent", "AlibabaCloud");
        assert_eq!(
            string_to_sign(&h),
            "POST\nD1485047277EACC2C271629499BD1B535FBFBA3DB592FB067B2A1D1EE4E671FB\n\
             application/x-protobuf\nMon, 23 Nov 2026 14:06:17 GMT\n\
             x-kms-acccesskeyid:KAAP.2a6b5b8c-0000-4c1a-9e1c-123456789abc\n\
             x-kms-apiname:Encrypt\nx-kms-apiversion:dkms-gcs-0.2\n\
             x-kms-signaturemethod:RSA_PKCS1_SHA_256\n/"
        );
        let parsed = time::PrimitiveDateTime::parse("Mon, 23 Nov 2026 14:06:17 GMT", HTTP_DATE);
        assert!(parsed.is_ok());
    }
}
