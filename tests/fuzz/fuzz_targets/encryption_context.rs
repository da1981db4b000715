//! The EncryptionContext parser and canonicaliser. Input: two JSON texts separated by a NUL.
//! The canonical form (the AAD) must not depend on formatting or key order, and two contexts
//! with the same canonical form must be the same context (the length prefixes keep
//! `{"ab":"c"}` and `{"a":"bc"}` apart).
#![no_main]

use arca_host::kms::envelope::EncryptionContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, second) = text.split_once('\0').unwrap_or((text, ""));
    let Ok(a) = EncryptionContext::parse(first) else {
        return;
    };
    // Re-formatted (pretty-printed, keys re-ordered by serde_json's map): same canonical form.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(first) {
        let pretty = serde_json::to_string_pretty(&value).expect("a Value serialises");
        let again = EncryptionContext::parse(&pretty).expect("its own JSON parses");
        assert_eq!(again.canonical(), a.canonical());
    }
    if let Ok(b) = EncryptionContext::parse(second) {
        assert_eq!(a.canonical() == b.canonical(), a == b);
    }
});
