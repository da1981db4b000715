//! The EncryptionContext parser and canonicaliser: the canonical form depends only on the
//! pairs, so rebuilding a context from its own pairs gives the same bytes.
#![no_main]

use arca_host::kms::envelope::EncryptionContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ctx) = EncryptionContext::parse(text) {
        let canonical = ctx.canonical();
        let rebuilt = EncryptionContext::from_pairs(ctx.string_pairs());
        assert_eq!(rebuilt.canonical(), canonical);
    }
});
