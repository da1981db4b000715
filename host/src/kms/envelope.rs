//! The symmetric ciphertext blob and the canonical EncryptionContext.
//!
//! Blob (spec §6.1, the layout Alibaba's own clients parse):
//! `KeyVersionId (36 ASCII bytes) ‖ IV (12) ‖ GCM ciphertext ‖ tag (16)`, base64 on the wire.
//! The blob is self-describing: Decrypt needs no KeyId. The GCM AAD is the version id followed by
//! the canonical context, so neither the header nor the context can be swapped.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::crypto::aead::{NONCE_LEN, TAG_LEN};
use crate::ids::KeyVersionId;

/// The EncryptionContext of a request: a JSON object whose key order does not matter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncryptionContext(BTreeMap<String, Value>);

/// The context parameter is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("EncryptionContext must be a JSON object")]
pub struct ContextError;

impl EncryptionContext {
    /// Parses the wire form (`{"k":"v",…}`). An empty string means no context.
    pub fn parse(json: &str) -> Result<Self, ContextError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(map)) => Ok(Self(map.into_iter().collect())),
            _ => Err(ContextError),
        }
    }

    /// A context of string pairs (what plugins pass); a repeated key keeps its last value.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    }

    /// The pairs whose values are strings (what plugins see).
    pub fn string_pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect()
    }

    /// Adds (or replaces) string pairs.
    pub fn extend(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        self.0
            .extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
    }

    /// The canonical byte form used as AAD.
    ///
    /// Pairs in key order, every key and value length-prefixed (u32, big endian), and each value
    /// tagged as a JSON string (`s`, its text) or any other JSON value (`j`, compact JSON). The
    /// length prefixes are what keep `{"ab":"c"}` and `{"a":"bc"}` apart, which plain
    /// concatenation of sorted pairs does not.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.0.len() * 32);
        out.extend_from_slice(b"arca-ec/1");
        push_len(&mut out, self.0.len());
        for (k, v) in &self.0 {
            push_len(&mut out, k.len());
            out.extend_from_slice(k.as_bytes());
            let (tag, text) = match v {
                Value::String(s) => (b's', s.clone()),
                other => (b'j', other.to_string()),
            };
            out.push(tag);
            push_len(&mut out, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        out
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Request bodies are bounded far below 4 GiB, so the length always fits.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

/// The GCM AAD for a blob under `version` with `context`.
pub fn aad(version: &KeyVersionId, context: &EncryptionContext) -> Vec<u8> {
    let mut aad = version.as_str().as_bytes().to_vec();
    aad.extend_from_slice(&context.canonical());
    aad
}

/// What an Advance blob's AAD holds after the version id.
pub(crate) const RAW_AAD_TAG: &[u8] = b"arca-raw/1";

/// The GCM AAD for an instance data-plane Advance blob under `version` with the caller's raw
/// `Aad` bytes. Domain-separated from [`aad`], so a blob of one kind never opens as the other.
pub fn raw_aad(version: &KeyVersionId, aad: &[u8]) -> Vec<u8> {
    let mut out = version.as_str().as_bytes().to_vec();
    out.extend_from_slice(RAW_AAD_TAG);
    out.extend_from_slice(aad);
    out
}

/// A parsed ciphertext blob.
#[derive(Debug)]
pub struct Blob {
    /// The key version that sealed it.
    pub version: KeyVersionId,
    /// The GCM IV.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub sealed: Vec<u8>,
}

/// The blob is not base64, too short, or its header is not a key version id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CiphertextBlob is malformed")]
pub struct BlobError;

impl Blob {
    /// Parses the base64 wire form.
    pub fn parse(b64: &str) -> Result<Self, BlobError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| BlobError)?;
        Self::from_bytes(&raw)
    }

    /// Parses the raw layout.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, BlobError> {
        let (header, rest) = raw.split_at_checked(KeyVersionId::LEN).ok_or(BlobError)?;
        // Only the canonical (lowercase) header: a version id parses case-insensitively, and a
        // blob that re-cased its header would otherwise be a second, distinct blob for the same
        // ciphertext (found by the `ciphertext` fuzz target).
        let version = std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.parse::<KeyVersionId>().ok())
            .filter(|v| v.as_str().as_bytes() == header)
            .ok_or(BlobError)?;
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>().ok_or(BlobError)?;
        if sealed.len() < TAG_LEN {
            return Err(BlobError);
        }
        Ok(Self {
            version,
            nonce: *nonce,
            sealed: sealed.to_vec(),
        })
    }

    /// The base64 wire form.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
    }

    /// The raw layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(KeyVersionId::LEN + NONCE_LEN + self.sealed.len());
        raw.extend_from_slice(self.version.as_str().as_bytes());
        raw.extend_from_slice(&self.nonce);
        raw.extend_from_slice(&self.sealed);
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_header_must_be_canonical() {
        let v = KeyVersionId::generate();
        let mut raw = v.as_str().as_bytes().to_vec();
        raw.extend_from_slice(&[0u8; NONCE_LEN + TAG_LEN]);
        assert!(Blob::from_bytes(&raw).is_ok());
        let upper: Vec<u8> = raw[..KeyVersionId::LEN].to_ascii_uppercase();
        raw[..KeyVersionId::LEN].copy_from_slice(&upper);
        if upper != v.as_str().as_bytes() {
            assert!(
                Blob::from_bytes(&raw).is_err(),
                "a re-cased header is refused"
            );
        }
    }

    #[test]
    fn formatting_does_not_matter_even_for_huge_numbers() {
        // Found by the `encryption_context` fuzz target: without correctly rounded float
        // parsing, a number past 2^64 re-printed and parsed again could land on another f64.
        let text = r#"{"b": 444444444444444444444444444444444444444444444444444443, "a": 1.5}"#;
        let a = EncryptionContext::parse(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        let again = EncryptionContext::parse(&serde_json::to_string_pretty(&value).unwrap());
        assert_eq!(again.unwrap().canonical(), a.canonical());
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = EncryptionContext::parse(r#"{"a":"1","b":"2"}"#).unwrap();
        let b = EncryptionContext::parse(r#"{"b":"2","a":"1"}"#).unwrap();
        assert_eq!(a.canonical(), b.canonical());
    }

    #[test]
    fn boundaries_between_keys_and_values_are_kept() {
        // The collision that concatenating sorted pairs allows.
        let a = EncryptionContext::parse(r#"{"ab":"c"}"#).unwrap();
        let b = EncryptionContext::parse(r#"{"a":"bc"}"#).unwrap();
        assert_ne!(a.canonical(), b.canonical());
        // Moving a pair boundary must not collide either.
        let c = EncryptionContext::parse(r#"{"a":"b","c":"d"}"#).unwrap();
        let d = EncryptionContext::parse(r#"{"a":"bc","":"d"}"#).unwrap();
        assert_ne!(c.canonical(), d.canonical());
        // A number and the string of its digits differ.
        let e = EncryptionContext::parse(r#"{"x":1}"#).unwrap();
        let f = EncryptionContext::parse(r#"{"x":"1"}"#).unwrap();
        assert_ne!(e.canonical(), f.canonical());
    }

    #[test]
    fn empty_and_absent_contexts_agree_and_non_objects_fail() {
        assert_eq!(
            EncryptionContext::parse("").unwrap(),
            EncryptionContext::parse("{}").unwrap()
        );
        assert!(EncryptionContext::parse("[1]").is_err());
        assert!(EncryptionContext::parse("{not json").is_err());
    }

    #[test]
    fn blob_layout_round_trips() {
        let version = KeyVersionId::generate();
        let blob = Blob {
            version: version.clone(),
            nonce: [9; 12],
            sealed: vec![1; 20],
        };
        let wire = blob.to_base64();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&wire)
            .unwrap();
        assert_eq!(&raw[..36], version.as_str().as_bytes());
        assert_eq!(&raw[36..48], &[9; 12]);
        assert_eq!(raw.len(), 36 + 12 + 20);
        let back = Blob::parse(&wire).unwrap();
        assert_eq!(back.version, version);
        assert_eq!(back.sealed, vec![1; 20]);
    }

    #[test]
    fn malformed_blobs_are_refused() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert!(Blob::parse("not base64!").is_err());
        assert!(Blob::parse(&b64(&[0; 10])).is_err());
        let mut raw = KeyVersionId::generate().as_str().as_bytes().to_vec();
        raw.extend_from_slice(&[0; 12 + 15]);
        assert!(Blob::parse(&b64(&raw)).is_err(), "shorter than a tag");
        let mut raw = b"x".repeat(36);
        raw.extend_from_slice(&[0; 12 + 16]);
        assert!(
            Blob::parse(&b64(&raw)).is_err(),
            "header is not a version id"
        );
    }
}
