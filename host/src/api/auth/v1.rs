//! V1: the RPC `HMAC-SHA1` signature (spec §3.2), sent as the `Signature` parameter and
//! covering every other query and form parameter.

use base64::Engine;

use super::{Claim, SignedRequest};
use crate::crypto::hmac_sha1;
use crate::error::ApiError;
use arca_client::signing::{pct, sorted_query};

pub(super) fn claim<'a>(req: &'a SignedRequest<'_>) -> Result<Claim<'a>, ApiError> {
    match req.params.get("SignatureMethod") {
        Some("HMAC-SHA1") => {}
        _ => {
            return Err(ApiError::IncompleteSignature(
                "SignatureMethod must be HMAC-SHA1",
            ));
        }
    }
    Ok(Claim {
        access_key_id: req
            .params
            .get("AccessKeyId")
            .ok_or(ApiError::MissingParameter("AccessKeyId"))?,
        timestamp: req.params.get("Timestamp"),
        nonce: req.params.get("SignatureNonce"),
    })
}

pub(super) fn string_to_sign(req: &SignedRequest<'_>) -> String {
    let canonical = sorted_query(
        req.params
            .pairs()
            .iter()
            .filter(|(k, _)| k != "Signature")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    format!("{}&{}&{}", req.method, pct("/"), pct(&canonical))
}

pub(super) fn verify(req: &SignedRequest<'_>, secret: &[u8]) -> Result<(), ApiError> {
    let given = req
        .params
        .get("Signature")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or(ApiError::IncompleteSignature("Signature is not base64"))?;
    let sts = string_to_sign(req);
    let mut key = secret.to_vec();
    key.push(b'&');
    let expected = hmac_sha1(&key, sts.as_bytes());
    drop(crate::secret::SecretBytes::new(key));
    // V1's string-to-sign holds every parameter value (plaintexts, secret values): never echo it.
    super::compare(&expected, &given, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::params::Params;
    use http::HeaderMap;

    /// The golden V1 vector of shared/spec/alibaba/alibaba-api.md §3.2.
    #[test]
    fn golden_vector() {
        let query = "AccessKeyId=testAKID&Action=Encrypt&EncryptionContext=%7B%22a%22%3A%22b+c%22%7D\
            &Format=JSON&KeyId=alias%2Fmy-key&Plaintext=aGVsbG8gd29ybGQ%3D&SignatureMethod=HMAC-SHA1\
            &SignatureNonce=3156853299f313e23d1673dc12e1703d&SignatureVersion=1.0\
            &Timestamp=2024-01-01T00%3A00%3A00Z&Version=2016-01-20&Signature=u%2Fz3At8X%2B15aHyQXRIVopkOITN0%3D";
        let params = Params::parse(Some(query), None);
        let headers = HeaderMap::new();
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query,
            headers: &headers,
            params: &params,
            body: b"",
        };
        assert_eq!(
            string_to_sign(&req),
            "POST&%2F&AccessKeyId%3DtestAKID%26Action%3DEncrypt%26EncryptionContext%3D%257B%2522a%2522%253A%2522b%2520c%2522%257D%26Format%3DJSON%26KeyId%3Dalias%252Fmy-key%26Plaintext%3DaGVsbG8gd29ybGQ%253D%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3156853299f313e23d1673dc12e1703d%26SignatureVersion%3D1.0%26Timestamp%3D2024-01-01T00%253A00%253A00Z%26Version%3D2016-01-20"
        );
        verify(&req, b"testSecret").unwrap();
        assert!(matches!(
            verify(&req, b"nope"),
            Err(ApiError::SignatureDoesNotMatch(_))
        ));
        let c = claim(&req).unwrap();
        assert_eq!(c.access_key_id, "testAKID");
        assert_eq!(c.timestamp, Some("2024-01-01T00:00:00Z"));
    }
}
