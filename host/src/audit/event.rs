//! One audited call, and its fields as a trail line carries them.

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use super::SEAL_ACTION;

/// One audited call.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// UTC time of the reply.
    #[serde(serialize_with = "utc")]
    pub time: OffsetDateTime,
    /// The request id the client saw.
    pub request_id: String,
    /// The action name as requested.
    pub action: String,
    /// The account, once authenticated.
    pub account: Option<String>,
    /// The AccessKey or client key that signed the request, once known.
    pub access_key_id: Option<String>,
    /// The peer address.
    pub source_ip: String,
    /// The resource the request named, as an ARN where it names one.
    pub resource: Option<String>,
    /// The key version a cryptographic call used, if any.
    pub key_version: Option<String>,
    /// `OK` or the error `Code`.
    pub result: &'static str,
    /// The HTTP status.
    pub status: u16,
}

pub(super) fn utc<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    with_utc(*t, |text| s.serialize_str(text))
}

/// Calls `f` with `t` formatted as the trail writes times. Events come thousands a second and
/// times have whole seconds: each second is formatted once per thread.
pub(super) fn with_utc<R>(t: OffsetDateTime, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with_borrow_mut(|(second, text)| {
        let now = t.unix_timestamp();
        if *second != now {
            *second = now;
            *text = crate::clock::format_utc(t);
        }
        f(text)
    })
}

/// An event's fields as a line carries them between its `seq` and its `prev`. Serialisable
/// in tests, where serde's output is the reference for [`Fields::write_members`].
#[cfg_attr(test, derive(Serialize))]
pub(super) struct Fields<'a> {
    #[cfg_attr(test, serde(serialize_with = "utc"))]
    pub(super) time: OffsetDateTime,
    pub(super) request_id: &'a str,
    pub(super) action: &'a str,
    pub(super) account: Option<&'a str>,
    pub(super) access_key_id: Option<&'a str>,
    pub(super) source_ip: &'a str,
    pub(super) resource: Option<&'a str>,
    pub(super) key_version: Option<&'a str>,
    pub(super) result: &'a str,
    pub(super) status: u16,
    /// A seal line's MAC; the member is left out of event lines.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) seal: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// A seal line's fields, with its MAC.
    pub(super) fn seal(time: OffsetDateTime, mac: &'a str) -> Self {
        Self {
            time,
            request_id: "",
            action: SEAL_ACTION,
            account: None,
            access_key_id: None,
            source_ip: "",
            resource: None,
            key_version: None,
            result: "OK",
            status: 0,
            seal: Some(mac),
        }
    }

    /// Appends the fields to `out` as JSON object members (`"time":…,"status":200`), byte for
    /// byte as `serde_json` writes the same struct (a test checks). Written by hand: serde's
    /// derived writer cost 0.08 µs more per line, a tenth of the appender's work then.
    pub(super) fn write_members(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"time\":");
        with_utc(self.time, |text| json_str(out, text));
        let strings: [(&[u8], Option<&str>); 8] = [
            (b",\"request_id\":", Some(self.request_id)),
            (b",\"action\":", Some(self.action)),
            (b",\"account\":", self.account),
            (b",\"access_key_id\":", self.access_key_id),
            (b",\"source_ip\":", Some(self.source_ip)),
            (b",\"resource\":", self.resource),
            (b",\"key_version\":", self.key_version),
            (b",\"result\":", Some(self.result)),
        ];
        for (name, value) in strings {
            out.extend_from_slice(name);
            match value {
                Some(s) => json_str(out, s),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        if let Some(mac) = self.seal {
            out.extend_from_slice(b",\"seal\":");
            json_str(out, mac);
        }
    }
}

/// Appends `s` as a JSON string. Strings that need no escape (nearly all: ids, names, ARNs)
/// are copied as they are; others go through `serde_json`'s escaper.
pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    // No early exit: the compiler turns this into a vector loop.
    let plain = !s.bytes().fold(false, |odd, b| {
        odd | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The most bytes of one field an event keeps: with JSON's escapes (at most six bytes for one)
/// and the fixed members, no line is longer than about 30 KiB, whatever a request carried.
pub const MAX_FIELD: usize = 512;

/// `s` cut to at most [`MAX_FIELD`] bytes, at a character boundary.
pub(super) fn bounded(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
