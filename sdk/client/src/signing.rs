//! Alibaba's request canonicalisation and V3 (`ACS3-HMAC-SHA256`) signing.
//!
//! The server verifies with the same canonical forms ([`pct`], [`sorted_query`]); both sides are
//! pinned by the golden vectors of the API spec and by the official SDKs in the e2e tests.

use aws_lc_rs::{digest, hmac};
use bytes::Bytes;
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but the RFC 3986 unreserved characters `A-Z a-z 0-9 - _ . ~` is encoded.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes with uppercase hex (`space` → `%20`, `*` → `%2A`, `/` → `%2F`).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_pct(&mut out, s);
    out
}

/// Appends `pct(s)` to `out`. Pushes the encoder's chunks directly: going through `Display`
/// costs several times more on kilobyte-sized parameters (measured on the signing path).
fn push_pct(out: &mut String, s: &str) {
    for chunk in utf8_percent_encode(s, RFC3986) {
        out.push_str(chunk);
    }
}

/// `pct(k)=pct(v)` for every pair, sorted by key then value (byte order), joined by `&`.
pub fn sorted_query<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    // Encoding preserves byte order between distinct strings only up to escapes, so sort the
    // encoded forms, as the SDKs do.
    let encoded: Vec<(String, String)> = pairs.map(|(k, v)| (pct(k), pct(v))).collect();
    join_sorted(encoded)
}

/// Whether a raw query component is already in canonical form: only unreserved characters
/// and `%XX` escapes (uppercase hex) of bytes that must be escaped. Such a component decodes
/// and re-encodes to itself, so it can be used as it is.
fn is_canonical(raw: &[u8]) -> bool {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    let upper_hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if unreserved(b) {
            i += 1;
            continue;
        }
        if b != b'%' {
            return false;
        }
        let hi = raw.get(i + 1).copied().and_then(upper_hex);
        let lo = raw.get(i + 2).copied().and_then(upper_hex);
        match (hi, lo) {
            (Some(h), Some(l)) if !unreserved(h * 16 + l) => i += 3,
            _ => return false,
        }
    }
    true
}

/// [`sorted_query`] of the pairs a raw (form-encoded) query string holds, the way a server
/// needs it for V3. Components already in canonical form are reused without decoding and
/// re-encoding them (the SDKs send most parameters that way, including kilobyte plaintexts).
pub fn canonical_query(raw: &str) -> String {
    let mut encoded: Vec<(String, String)> = Vec::new();
    for component in raw.split('&').filter(|c| !c.is_empty()) {
        let (k, v) = component.split_once('=').unwrap_or((component, ""));
        if is_canonical(k.as_bytes()) && is_canonical(v.as_bytes()) {
            encoded.push((k.to_owned(), v.to_owned()));
        } else {
            for (k, v) in form_urlencoded::parse(component.as_bytes()) {
                encoded.push((pct(&k), pct(&v)));
            }
        }
    }
    join_sorted(encoded)
}

/// Sorts encoded pairs and joins them as `k=v&k=v`.
fn join_sorted(mut encoded: Vec<(String, String)>) -> String {
    encoded.sort_unstable();
    let len = encoded.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(len);
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// The V3 algorithm name.
pub const V3: &str = "ACS3-HMAC-SHA256";

/// A fresh nonce: 32 lowercase hex characters, like the official SDKs.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    // Only fails if the OS RNG is unavailable; a zero nonce is then refused by the server
    // as a replay on second use rather than silently accepted.
    let _ = aws_lc_rs::rand::fill(&mut b);
    hex::encode(b)
}

/// The current UTC time as `YYYY-MM-DDThh:mm:ssZ`.
pub fn timestamp() -> String {
    format_utc(time::OffsetDateTime::now_utc())
}

/// A time as the API writes it: `2024-05-20T06:34:21Z` (UTC, whole seconds).
pub fn format_utc(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Builds a V3-signed `POST /` for `action`, all parameters in the query string.
pub fn signed_request(
    host: &str,
    access_key_id: &str,
    secret: &[u8],
    action: &str,
    params: &[(&str, &str)],
) -> http::Request<Full<Bytes>> {
    signed_request_at(
        host,
        access_key_id,
        secret,
        action,
        params,
        &timestamp(),
        &nonce(),
    )
}

/// [`signed_request`] with a given date and nonce (for tests of clock skew and replay).
pub fn signed_request_at(
    host: &str,
    access_key_id: &str,
    secret: &[u8],
    action: &str,
    params: &[(&str, &str)],
    date: &str,
    nonce: &str,
) -> http::Request<Full<Bytes>> {
    let query = sorted_query(params.iter().copied());
    sign(
        host,
        access_key_id,
        secret,
        action,
        &query,
        String::new(),
        date,
        nonce,
    )
}

/// A V3-signed `POST /` with the parameters in a form body, covered by the body hash: how the
/// SDKs send parameters too large for a URL (a URI holds at most 64 KiB).
pub fn signed_form_request(
    host: &str,
    access_key_id: &str,
    secret: &[u8],
    action: &str,
    params: &[(&str, &str)],
) -> http::Request<Full<Bytes>> {
    let body = sorted_query(params.iter().copied());
    sign(
        host,
        access_key_id,
        secret,
        action,
        "",
        body,
        &timestamp(),
        &nonce(),
    )
}

/// A V1-signed (`HMAC-SHA1`) `POST /?…` for `action`: how the legacy SDK (`aliyun-python-sdk-
/// core`) signs, every parameter in the query and covered by the signature. Headers are not
/// signed in V1; the legacy SDK sends no `x-acs-action` header of its own accord.
pub fn v1_signed_request(
    host: &str,
    access_key_id: &str,
    secret: &[u8],
    action: &str,
    params: &[(&str, &str)],
) -> http::Request<Full<Bytes>> {
    use base64::Engine;
    let (date, nonce) = (timestamp(), nonce());
    let mut all: Vec<(&str, &str)> = vec![
        ("AccessKeyId", access_key_id),
        ("Action", action),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", &nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", &date),
        ("Version", crate::API_VERSION),
    ];
    all.extend_from_slice(params);
    let canonical = sorted_query(all.iter().copied());
    let string_to_sign = format!("POST&{}&{}", pct("/"), pct(&canonical));
    let mut key = secret.to_vec();
    key.push(b'&');
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac::sign(&key, string_to_sign.as_bytes()));
    let uri = format!("http://{host}/?{canonical}&Signature={}", pct(&signature));
    http::Request::post(uri)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| http::Request::new(Full::new(Bytes::new())))
}

#[allow(clippy::too_many_arguments, reason = "every part of a signed request")]
fn sign(
    host: &str,
    access_key_id: &str,
    secret: &[u8],
    action: &str,
    query: &str,
    body: String,
    date: &str,
    nonce: &str,
) -> http::Request<Full<Bytes>> {
    let payload = sha256_hex(body.as_bytes());
    let headers = [
        ("host", host),
        ("x-acs-action", action),
        ("x-acs-content-sha256", payload.as_str()),
        ("x-acs-date", date),
        ("x-acs-signature-nonce", nonce),
        ("x-acs-version", crate::API_VERSION),
    ];
    let mut canonical_headers = String::new();
    for (k, v) in &headers {
        canonical_headers.push_str(k);
        canonical_headers.push(':');
        canonical_headers.push_str(v.trim());
        canonical_headers.push('\n');
    }
    let signed_headers = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request =
        format!("POST\n/\n{query}\n{canonical_headers}\n{signed_headers}\n{payload}");
    let string_to_sign = format!("{V3}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let signature = hex::encode(hmac::sign(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{V3} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    );
    let uri = if query.is_empty() {
        format!("http://{host}/")
    } else {
        format!("http://{host}/?{query}")
    };
    let mut builder = http::Request::post(uri).header("authorization", authorization);
    // `host` is set explicitly too: a bare hyper connection does not add it, and it is signed.
    for (k, v) in &headers {
        builder = builder.header(*k, *v);
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    // Every header is ASCII this function controls; only a query past the URI's 64 KiB can
    // fail, and then the empty request falls back, which the server rejects.
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_sdks() {
        assert_eq!(pct("a b*c/d~e-f_g.h"), "a%20b%2Ac%2Fd~e-f_g.h");
        assert_eq!(pct("é"), "%C3%A9");
        assert_eq!(
            sorted_query([("b", "2"), ("a", "1"), ("E", "")].into_iter()),
            "E=&a=1&b=2"
        );
    }

    #[test]
    fn canonical_query_matches_decode_then_encode() {
        for raw in [
            "b=2&a=1",
            "KeyId=alias%2Fmy-key&Plaintext=aGVsbG8gd29ybGQ%3D&EncryptionContext=%7B%22a%22%3A%22b+c%22%7D",
            "x=%2f%41&y=a*b&z=~&empty=&flag",
            "u=%C3%A9&&v=%E2%82%AC+1",
            "bad=%ZZ&k%3D=v%26",
        ] {
            let decoded: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect();
            let expected = sorted_query(decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            assert_eq!(canonical_query(raw), expected, "{raw}");
        }
    }

    #[test]
    fn requests_carry_every_signed_header() {
        let r = signed_request(
            "127.0.0.1:1",
            "ak",
            b"sk",
            "Encrypt",
            &[("KeyId", "alias/x y")],
        );
        assert_eq!(r.uri().query(), Some("KeyId=alias%2Fx%20y"));
        let auth = r.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("ACS3-HMAC-SHA256 Credential=ak,SignedHeaders=host;x-acs-action;")
        );
        assert_eq!(r.headers()["x-acs-action"], "Encrypt");
    }
}
