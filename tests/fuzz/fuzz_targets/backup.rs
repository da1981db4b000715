//! Backup files: the magic and seal (under a fixed root key), and the unsealed payload parser.
#![no_main]

use std::sync::LazyLock;

use arca_host::keystore::{RootKey, Sealer};
use arca_host::kms::backup::{open_backup, parse_entries};
use arca_host::secret::SecretString;
use libfuzzer_sys::fuzz_target;

static SEALER: LazyLock<Sealer> = LazyLock::new(|| {
    RootKey::parse(&SecretString::new("11".repeat(32)), "fuzz")
        .expect("a valid root key")
        .sealer()
});

fuzz_target!(|data: &[u8]| {
    let _ = open_backup(data, &SEALER);
    let _ = parse_entries(data);
});
