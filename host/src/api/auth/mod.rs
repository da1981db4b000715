//! Request authentication: Alibaba's V3 (`ACS3-HMAC-SHA256`) and V1 (RPC `HMAC-SHA1`)
//! signatures, checked in constant time, plus the clock-skew and replay checks.
//!
//! Order matters: cheap shape checks, then the timestamp window, then the signature, and only
//! then the nonce, so that an unauthenticated sender cannot burn another client's nonces.

mod nonce;
mod v1;
mod v3;

use std::sync::Arc;

use http::HeaderMap;
use time::OffsetDateTime;

pub use nonce::{NonceCache, NonceJournal};

use crate::error::ApiError;
use crate::ids::AccessKeyId;
use crate::kms::Kms;
use crate::kms::accounts::Credential;

use super::params::Params;

/// How far a request's timestamp may be from the server's clock, either way, by default
/// (Alibaba's window; `arca serve --max-clock-skew` changes it).
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// The parts of a request a signature covers.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The URI path (always `/` for the SDKs).
    pub path: &'a str,
    /// The raw URI query (what V3 signs; form-body parameters are covered by the body hash).
    pub query: &'a str,
    /// Headers exactly as received.
    pub headers: &'a HeaderMap,
    /// Query and form parameters.
    pub params: &'a Params,
    /// The raw body.
    pub body: &'a [u8],
}

/// A request whose signature checked out.
#[derive(Debug)]
pub struct Authenticated {
    /// The AccessKey that signed it.
    pub access_key_id: AccessKeyId,
    /// Its owner and secret.
    pub credential: Arc<Credential>,
}

/// What a signature scheme extracted before the secret is known.
struct Claim<'a> {
    access_key_id: &'a str,
    timestamp: Option<&'a str>,
    nonce: Option<&'a str>,
}

/// Checks the request's signature, time and nonce.
pub fn authenticate(
    req: &SignedRequest<'_>,
    kms: &Kms,
    nonces: &NonceCache,
    now: OffsetDateTime,
) -> Result<Authenticated, ApiError> {
    let scheme = scheme(req)?;
    let claim = match &scheme {
        Scheme::V3(h) => v3::claim(h, req)?,
        Scheme::V1 => v1::claim(req)?,
    };
    let timestamp = claim
        .timestamp
        .and_then(crate::clock::parse_utc)
        .ok_or(ApiError::IllegalTimestamp)?;
    if (timestamp - now).whole_seconds().abs() > nonces.window() || nonces.fenced(timestamp) {
        return Err(ApiError::TimestampExpired);
    }
    let nonce = claim
        .nonce
        .filter(|n| !n.is_empty() && n.len() <= 128)
        .ok_or(ApiError::IncompleteSignature(
            "a signature nonce is required",
        ))?;
    let access_key_id: AccessKeyId = claim
        .access_key_id
        .parse()
        .map_err(|_| ApiError::InvalidAccessKeyId)?;
    let credential = kms
        .credential(&access_key_id)
        .map_err(ApiError::from)?
        .ok_or(ApiError::InvalidAccessKeyId)?;
    let secret = credential.secret.expose().as_bytes();
    match &scheme {
        Scheme::V3(h) => v3::verify(h, req, secret)?,
        Scheme::V1 => v1::verify(req, secret)?,
    }
    if !nonces.insert(access_key_id.as_str(), nonce, timestamp, now) {
        return Err(ApiError::NonceUsed);
    }
    Ok(Authenticated {
        access_key_id,
        credential,
    })
}

/// The action and version `req` names, read only from what its signature scheme covers.
///
/// V3 signs the `x-acs-action` and `x-acs-version` headers (they must be in `SignedHeaders`)
/// and its query; V1 signs every parameter and no header. So V3 takes the headers and V1 the
/// `Action`/`Version` parameters, and a copy in the other place that disagrees is refused: an
/// unsigned header must never pick the action a V1 signature was made for. The signature
/// itself is checked later, by [`authenticate`]; until then these are only claims, recorded
/// as such in the audit trail.
pub fn action_and_version<'r>(req: &SignedRequest<'r>) -> Result<(&'r str, &'r str), ApiError> {
    let v3 = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("ACS"));
    let pick = |header: &str, param: &'static str| -> Result<&'r str, ApiError> {
        let from_header = req.headers.get(header).and_then(|v| v.to_str().ok());
        let from_param = req.params.optional(param);
        let (signed, other) = if v3 {
            (from_header, from_param)
        } else {
            (from_param, from_header)
        };
        let value = signed.ok_or(ApiError::MissingParameter(param))?;
        match other {
            Some(o) if o != value => Err(ApiError::IncompleteSignature(
                "the x-acs-action/x-acs-version headers and the Action/Version parameters disagree",
            )),
            _ => Ok(value),
        }
    };
    Ok((
        pick("x-acs-action", "Action")?,
        pick("x-acs-version", "Version")?,
    ))
}

/// Which signature scheme `req` uses, with the V3 `Authorization` header parsed.
fn scheme(req: &SignedRequest<'_>) -> Result<Scheme, ApiError> {
    let authorization = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(match authorization {
        Some(a) if a.starts_with(v3::ALGORITHM) => Scheme::V3(v3::Header::parse(a)?),
        Some(a) if a.starts_with("ACS") => {
            return Err(ApiError::IncompleteSignature(
                "unsupported signature algorithm; use ACS3-HMAC-SHA256 or HMAC-SHA1",
            ));
        }
        _ if req.params.get("Signature").is_some() => Scheme::V1,
        _ => return Err(ApiError::IncompleteSignature("the request is not signed")),
    })
}

/// Everything authentication does with a request before it needs a secret: the scheme, the
/// `Authorization` header, the claim, and the canonical string the client must have signed.
/// All of it is client input (fuzzed in tests/fuzz).
pub fn string_to_sign(req: &SignedRequest<'_>) -> Result<String, ApiError> {
    match scheme(req)? {
        Scheme::V3(h) => {
            v3::claim(&h, req)?;
            v3::string_to_sign(&h, req)
        }
        Scheme::V1 => {
            v1::claim(req)?;
            Ok(v1::string_to_sign(req))
        }
    }
}

/// Compares a computed signature with the given one in constant time. `echo` is the
/// string-to-sign to show the client on a mismatch, if it is safe to show (see
/// [`ApiError::SignatureDoesNotMatch`]).
fn compare(expected: &[u8], given: &[u8], echo: Option<String>) -> Result<(), ApiError> {
    if crate::crypto::constant_time_eq(expected, given) {
        Ok(())
    } else {
        Err(ApiError::SignatureDoesNotMatch(echo))
    }
}

enum Scheme {
    V3(v3::Header),
    V1,
}
