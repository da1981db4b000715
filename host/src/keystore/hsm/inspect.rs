//! `arca hsm --key-version`: what the token says about a key's object, and proof that its
//! value can neither be read nor wrapped out.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};

use super::import::session_wrapping_key;
use super::keys::find;
use super::mechanism::Part;
use super::{Hsm, HsmError, unavailable};
use crate::ids::KeyVersionId;

impl Hsm {
    /// What the token says about `version`'s object, and whether its value can be read or
    /// wrapped out (it must not).
    pub(super) fn inspect(&self, version: &KeyVersionId) -> Result<KeyObjectReport, HsmError> {
        self.with_session(|s| {
            let id = version.as_str().as_bytes();
            let h = match find(s, id, Part::Secret) {
                Err(HsmError::Missing(_)) => find(s, id, Part::Private)?,
                other => other?,
            };
            let attrs = s
                .get_attributes(
                    h,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::Token,
                        AttributeType::Local,
                    ],
                )
                .map_err(unavailable)?;
            let mut report = KeyObjectReport::default();
            for a in attrs {
                match a {
                    Attribute::Sensitive(v) => report.sensitive = v,
                    Attribute::Extractable(v) => report.extractable = v,
                    Attribute::NeverExtractable(v) => report.never_extractable = v,
                    Attribute::Token(v) => report.token_object = v,
                    Attribute::Local(v) => report.generated_in_token = v,
                    _ => {}
                }
            }
            // Ask for the raw value: a sensitive key's is withheld.
            report.value_readable = [AttributeType::Value, AttributeType::PrivateExponent]
                .into_iter()
                .any(|t| {
                    s.get_attributes(h, &[t]).is_ok_and(|v| {
                        v.iter().any(|a| {
                            matches!(a, Attribute::Value(_) | Attribute::PrivateExponent(_))
                        })
                    })
                });
            // Try to wrap it out under a throw-away session key.
            let wrapper = session_wrapping_key(s)?;
            let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, wrapper, h);
            report.wrap_refused = match &wrapped {
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            let _ = s.destroy_object(wrapper);
            Ok(report)
        })
    }
}

/// What `arca hsm --key-version` prints.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyObjectReport {
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE.
    pub extractable: bool,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: bool,
    /// CKA_TOKEN: a persistent token object.
    pub token_object: bool,
    /// CKA_LOCAL: generated inside the token.
    pub generated_in_token: bool,
    /// Whether CKA_VALUE or CKA_PRIVATE_EXPONENT came back (they must not).
    pub value_readable: bool,
    /// The token's refusal to wrap the key out (`None` would mean it wrapped it).
    pub wrap_refused: Option<String>,
}
