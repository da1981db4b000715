//! V3: `Authorization: ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=<a;b>,Signature=<hex>`
//! (spec §3.1). The canonical request covers the method, path, URL query, the headers the
//! client chose to sign, and the SHA-256 of the body.

use super::{Claim, SignedRequest};
use crate::crypto::{hmac_sha256, sha256_hex};
use crate::error::ApiError;
use arca_client::signing::canonical_query;

pub(super) const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The headers every V3 signature must cover.
const REQUIRED_SIGNED_HEADERS: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// The parsed `Authorization` header.
#[derive(Debug)]
pub(super) struct Header {
    access_key_id: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
}

impl Header {
    pub(super) fn parse(value: &str) -> Result<Self, ApiError> {
        let rest = value
            .strip_prefix(ALGORITHM)
            .map(str::trim_start)
            .ok_or(ApiError::IncompleteSignature("unknown algorithm"))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            match part.trim().split_once('=') {
                Some(("Credential", v)) => credential = Some(v),
                Some(("SignedHeaders", v)) => signed = Some(v),
                Some(("Signature", v)) => signature = Some(v),
                _ => {}
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(ApiError::IncompleteSignature(
                "Authorization needs Credential, SignedHeaders and Signature",
            ));
        };
        let signature = hex::decode(signature)
            .map_err(|_| ApiError::IncompleteSignature("Signature is not hex"))?;
        let signed_headers: Vec<String> = signed
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        // Everything that decides what happens must be covered by the signature: the action
        // and version (an unsigned header could turn a signed read into a write), the date and
        // nonce (or they could be swapped for a replay), the body's hash (or the body could be
        // swapped) and the host (which binds the request to this server).
        for required in REQUIRED_SIGNED_HEADERS {
            if !signed_headers.iter().any(|h| h == required) {
                return Err(ApiError::IncompleteSignature(
                    "SignedHeaders must include host, x-acs-action, x-acs-version, x-acs-date, \
                     x-acs-signature-nonce and x-acs-content-sha256",
                ));
            }
        }
        Ok(Self {
            access_key_id: credential.to_owned(),
            signed_headers,
            signature,
        })
    }
}

fn header<'a>(req: &'a SignedRequest<'_>, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn claim<'a>(h: &'a Header, req: &'a SignedRequest<'_>) -> Result<Claim<'a>, ApiError> {
    Ok(Claim {
        access_key_id: &h.access_key_id,
        timestamp: header(req, "x-acs-date"),
        nonce: header(req, "x-acs-signature-nonce"),
    })
}

/// The string to sign for `req` as the client described it in `h`.
pub(super) fn string_to_sign(h: &Header, req: &SignedRequest<'_>) -> Result<String, ApiError> {
    let hashed_payload = sha256_hex(req.body);
    match header(req, "x-acs-content-sha256") {
        Some(claimed) if claimed.eq_ignore_ascii_case(&hashed_payload) => {}
        Some(_) => {
            return Err(ApiError::IncompleteSignature(
                "x-acs-content-sha256 does not match the body",
            ));
        }
        None => {
            return Err(ApiError::IncompleteSignature(
                "x-acs-content-sha256 is required",
            ));
        }
    }
    let query = canonical_query(req.query);
    let mut canonical_headers = String::new();
    for name in &h.signed_headers {
        let mut values: Vec<&str> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        values.sort_unstable();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        query,
        canonical_headers,
        h.signed_headers.join(";"),
        hashed_payload
    );
    Ok(format!(
        "{ALGORITHM}\n{}",
        sha256_hex(canonical_request.as_bytes())
    ))
}

pub(super) fn verify(h: &Header, req: &SignedRequest<'_>, secret: &[u8]) -> Result<(), ApiError> {
    let sts = string_to_sign(h, req)?;
    let expected = hmac_sha256(secret, sts.as_bytes());
    // V3's string-to-sign is the algorithm and a hash: safe to echo.
    super::compare(&expected, &h.signature, Some(sts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::Params;
    use http::HeaderMap;

    /// The golden V3 vector of shared/spec/alibaba/alibaba-api.md §3.1.
    #[test]
    fn golden_vector() {
        let query = "KeyId=alias%2Fmy-key&Plaintext=aGVsbG8gd29ybGQ%3D&EncryptionContext=%7B%22a%22%3A%22b+c%22%7D";
        let params = Params::parse(Some(query), None);
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("host", "kms.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "Encrypt"),
            ("x-acs-version", "2016-01-20"),
            ("x-acs-date", "2024-01-01T00:00:00Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            (
                "x-acs-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ] {
            headers.insert(k, v.parse().unwrap());
        }
        let auth = "ACS3-HMAC-SHA256 Credential=testAKID,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=5d0e4199e5183083c4926c0702e6425df71a656e7b4bf8ea19c18d75092903e4";
        let h = Header::parse(auth).unwrap();
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query,
            headers: &headers,
            params: &params,
            body: b"",
        };
        assert_eq!(
            string_to_sign(&h, &req).unwrap(),
            "ACS3-HMAC-SHA256\n2f6583727cf6baa98ccc505172b16baf6998cfa517a926d0ea0078d60cff9e73"
        );
        verify(&h, &req, b"testSecret").unwrap();
        assert!(matches!(
            verify(&h, &req, b"wrongSecret"),
            Err(ApiError::SignatureDoesNotMatch(_))
        ));
        // A changed parameter breaks it.
        let tampered_query = "KeyId=alias%2Fother&Plaintext=aGVsbG8gd29ybGQ%3D&EncryptionContext=%7B%22a%22%3A%22b+c%22%7D";
        let tampered = Params::parse(Some(tampered_query), None);
        let req2 = SignedRequest {
            params: &tampered,
            query: tampered_query,
            ..req
        };
        assert!(verify(&h, &req2, b"testSecret").is_err());
        // A body that does not match its declared hash is refused.
        let req3 = SignedRequest { body: b"x", ..req };
        assert!(matches!(
            verify(&h, &req3, b"testSecret"),
            Err(ApiError::IncompleteSignature(_))
        ));
    }

    #[test]
    fn every_deciding_header_must_be_signed() {
        let all = REQUIRED_SIGNED_HEADERS.join(";");
        let ok = format!("ACS3-HMAC-SHA256 Credential=a,SignedHeaders={all},Signature=00");
        assert!(Header::parse(&ok).is_ok());
        for left_out in REQUIRED_SIGNED_HEADERS {
            let some: Vec<&str> = REQUIRED_SIGNED_HEADERS
                .iter()
                .copied()
                .filter(|h| *h != left_out)
                .collect();
            let auth = format!(
                "ACS3-HMAC-SHA256 Credential=a,SignedHeaders={},Signature=00",
                some.join(";")
            );
            assert!(
                matches!(Header::parse(&auth), Err(ApiError::IncompleteSignature(_))),
                "{left_out} left out of SignedHeaders must be refused"
            );
        }
        let auth = "ACS3-HMAC-SHA256 Credential=a,Signature=00";
        assert!(Header::parse(auth).is_err());
    }
}
