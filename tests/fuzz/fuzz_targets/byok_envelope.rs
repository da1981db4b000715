//! BYOK envelopes (`EncryptedKeyMaterial`) under every wrapping algorithm: the first byte
//! picks the algorithm, the rest is the envelope.
#![no_main]

use std::sync::LazyLock;

use arca_host::crypto::asymmetric::{KeyKind, generate};
use arca_host::kms::import::open_envelope;
use arca_host::secret::SecretBytes;
use libfuzzer_sys::fuzz_target;

static RSA: LazyLock<SecretBytes> =
    LazyLock::new(|| generate(KeyKind::Rsa(2048)).expect("RSA key"));
static SM2: LazyLock<SecretBytes> = LazyLock::new(|| generate(KeyKind::Sm2).expect("SM2 key"));

const ALGORITHMS: [&str; 7] = [
    "RSAES_PKCS1_V1_5",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSAES_OAEP_SHA_256_AES_256_ECB_PKCS7_PAD",
    "SM2PKE",
    "SM2PKE_SM4_ECB",
    "NOT_AN_ALGORITHM",
];

fuzz_target!(|data: &[u8]| {
    let Some((pick, envelope)) = data.split_first() else {
        return;
    };
    let algorithm = ALGORITHMS[usize::from(*pick) % ALGORITHMS.len()];
    let key = if algorithm.starts_with("SM2") { &SM2 } else { &RSA };
    let _ = open_envelope(algorithm, key, envelope);
});
