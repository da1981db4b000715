//! The ciphertext blob parser: anything it accepts re-encodes to the same bytes.
#![no_main]

use arca_host::kms::envelope::Blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(blob) = Blob::from_bytes(data) {
        assert_eq!(blob.to_bytes(), data);
        let again = Blob::parse(&blob.to_base64()).expect("its own base64 parses");
        assert_eq!(again.to_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Blob::parse(text);
    }
});
