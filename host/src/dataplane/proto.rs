//! The instance SDK's protobuf messages (`package protobuf`, proto3; spec §7.3), with the
//! field numbers of `alibabacloud-dkms-gcs` 1.0.2. Written with prost's derive so the build
//! needs no `protoc`. Each `Advance*` message is its plain form plus `KeyVersionId`, so one
//! struct serves both (an empty proto3 string is not encoded).
#![allow(missing_docs, reason = "field names and numbers are the wire schema")]

use prost::Message;

/// prost derives a `Debug` that prints every field; these messages carry plaintext, data keys,
/// private keys and secret values, so theirs print only the message's name.
macro_rules! redacted_debug {
    ($($name:ident),* $(,)?) => {
        $(impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        })*
    };
}

redacted_debug!(
    EncryptRequest,
    EncryptResponse,
    DecryptRequest,
    DecryptResponse,
    SignRequest,
    SignResponse,
    VerifyRequest,
    VerifyResponse,
    GenerateRandomRequest,
    GenerateRandomResponse,
    GenerateDataKeyRequest,
    GenerateDataKeyResponse,
    GetPublicKeyRequest,
    GetPublicKeyResponse,
    GetSecretValueRequest,
    GetSecretValueResponse,
    AdvanceGenerateDataKeyRequest,
    HmacRequest,
    HmacResponse,
    GenerateDataKeyPairRequest,
    GenerateDataKeyPairResponse,
    GenerateDataKeyPairWithoutPlaintextResponse,
    AdvanceGenerateDataKeyPairRequest,
    Error,
);

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct EncryptRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) plaintext: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(super) algorithm: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) aad: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(super) iv: Vec<u8>,
    #[prost(string, tag = "6")]
    pub(super) padding_mode: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct EncryptResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) ciphertext_blob: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(super) iv: Vec<u8>,
    #[prost(string, tag = "4")]
    pub(super) request_id: String,
    #[prost(string, tag = "5")]
    pub(super) algorithm: String,
    #[prost(string, tag = "6")]
    pub(super) padding_mode: String,
    /// Advance form only (tag 7); empty, and so not on the wire, otherwise.
    #[prost(string, tag = "7")]
    pub(super) key_version_id: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct DecryptRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub(super) ciphertext_blob: Vec<u8>,
    #[prost(string, tag = "2")]
    pub(super) key_id: String,
    #[prost(string, tag = "3")]
    pub(super) algorithm: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) aad: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(super) iv: Vec<u8>,
    #[prost(string, tag = "6")]
    pub(super) padding_mode: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct DecryptResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) plaintext: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(super) request_id: String,
    #[prost(string, tag = "4")]
    pub(super) algorithm: String,
    #[prost(string, tag = "5")]
    pub(super) padding_mode: String,
    /// Advance form only (tag 6).
    #[prost(string, tag = "6")]
    pub(super) key_version_id: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct SignRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) digest: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(super) algorithm: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) message: Vec<u8>,
    #[prost(string, tag = "5")]
    pub(super) message_type: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct SignResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) signature: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(super) request_id: String,
    #[prost(string, tag = "4")]
    pub(super) algorithm: String,
    #[prost(string, tag = "5")]
    pub(super) message_type: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct VerifyRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) digest: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(super) signature: Vec<u8>,
    #[prost(string, tag = "4")]
    pub(super) algorithm: String,
    #[prost(bytes = "vec", tag = "5")]
    pub(super) message: Vec<u8>,
    #[prost(string, tag = "6")]
    pub(super) message_type: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct VerifyResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bool, tag = "2")]
    pub(super) value: bool,
    #[prost(string, tag = "3")]
    pub(super) request_id: String,
    #[prost(string, tag = "4")]
    pub(super) algorithm: String,
    #[prost(string, tag = "5")]
    pub(super) message_type: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GenerateRandomRequest {
    #[prost(int32, tag = "1")]
    pub(super) length: i32,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GenerateRandomResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub(super) random: Vec<u8>,
    #[prost(string, tag = "2")]
    pub(super) request_id: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GenerateDataKeyRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(string, tag = "2")]
    pub(super) algorithm: String,
    #[prost(int32, tag = "3")]
    pub(super) number_of_bytes: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) aad: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GenerateDataKeyResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) iv: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub(super) plaintext: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) ciphertext_blob: Vec<u8>,
    #[prost(string, tag = "5")]
    pub(super) request_id: String,
    #[prost(string, tag = "6")]
    pub(super) algorithm: String,
    /// Advance form only (tag 7).
    #[prost(string, tag = "7")]
    pub(super) key_version_id: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GetPublicKeyRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GetPublicKeyResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(string, tag = "2")]
    pub(super) public_key: String,
    #[prost(string, tag = "3")]
    pub(super) request_id: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GetSecretValueRequest {
    #[prost(string, tag = "1")]
    pub(super) secret_name: String,
    #[prost(string, tag = "2")]
    pub(super) version_stage: String,
    #[prost(string, tag = "3")]
    pub(super) version_id: String,
    #[prost(bool, tag = "4")]
    pub(super) fetch_extended_config: bool,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GetSecretValueResponse {
    #[prost(string, tag = "1")]
    pub(super) secret_name: String,
    #[prost(string, tag = "2")]
    pub(super) secret_type: String,
    #[prost(string, tag = "3")]
    pub(super) secret_data: String,
    #[prost(string, tag = "4")]
    pub(super) secret_data_type: String,
    #[prost(string, repeated, tag = "5")]
    pub(super) version_stages: Vec<String>,
    #[prost(string, tag = "6")]
    pub(super) version_id: String,
    #[prost(string, tag = "7")]
    pub(super) create_time: String,
    #[prost(string, tag = "8")]
    pub(super) request_id: String,
    #[prost(string, tag = "9")]
    pub(super) last_rotation_date: String,
    #[prost(string, tag = "10")]
    pub(super) next_rotation_date: String,
    #[prost(string, tag = "11")]
    pub(super) extended_config: String,
    #[prost(string, tag = "12")]
    pub(super) automatic_rotation: String,
    #[prost(string, tag = "13")]
    pub(super) rotation_interval: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct AdvanceGenerateDataKeyRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(int32, tag = "2")]
    pub(super) number_of_bytes: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub(super) aad: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct HmacRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) message: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct HmacResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) signature: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(super) request_id: String,
}

/// `GenerateDataKeyPair` and `GenerateDataKeyPairWithoutPlaintext`.
#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GenerateDataKeyPairRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(string, tag = "2")]
    pub(super) algorithm: String,
    #[prost(string, tag = "3")]
    pub(super) key_pair_spec: String,
    #[prost(string, tag = "4")]
    pub(super) key_format: String,
    #[prost(bytes = "vec", tag = "5")]
    pub(super) aad: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GenerateDataKeyPairResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) iv: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(super) key_pair_spec: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) private_key_plaintext: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(super) private_key_ciphertext_blob: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub(super) public_key: Vec<u8>,
    #[prost(string, tag = "7")]
    pub(super) request_id: String,
    #[prost(string, tag = "8")]
    pub(super) algorithm: String,
    /// Advance form only (tag 9).
    #[prost(string, tag = "9")]
    pub(super) key_version_id: String,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct GenerateDataKeyPairWithoutPlaintextResponse {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) iv: Vec<u8>,
    #[prost(string, tag = "3")]
    pub(super) key_pair_spec: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) private_key_ciphertext_blob: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(super) public_key: Vec<u8>,
    #[prost(string, tag = "6")]
    pub(super) request_id: String,
    #[prost(string, tag = "7")]
    pub(super) algorithm: String,
    /// Advance form only (tag 8).
    #[prost(string, tag = "8")]
    pub(super) key_version_id: String,
}

/// `AdvanceGenerateDataKeyPair` and `AdvanceGenerateDataKeyPairWithoutPlaintext`.
#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct AdvanceGenerateDataKeyPairRequest {
    #[prost(string, tag = "1")]
    pub(super) key_id: String,
    #[prost(string, tag = "2")]
    pub(super) key_pair_spec: String,
    #[prost(string, tag = "3")]
    pub(super) key_format: String,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) aad: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
pub(super) struct Error {
    #[prost(int32, tag = "1")]
    pub(super) status_code: i32,
    #[prost(string, tag = "2")]
    pub(super) error_code: String,
    #[prost(string, tag = "3")]
    pub(super) error_message: String,
    #[prost(string, tag = "4")]
    pub(super) request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_field() {
        let req = EncryptRequest {
            plaintext: b"top secret".to_vec(),
            ..Default::default()
        };
        assert_eq!(format!("{req:?}"), "EncryptRequest([REDACTED])");
        let secret = GetSecretValueResponse {
            secret_data: "hunter2".into(),
            ..Default::default()
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
