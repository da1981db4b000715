//! `GetRandomPassword`: passwords from the CSPRNG under the caller's character rules.

use super::Error;
use crate::kms::Field;
use crate::secret::SecretString;

/// The punctuation Alibaba's passwords draw from.
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The options of `GetRandomPassword`.
#[derive(Debug, Clone)]
pub struct PasswordRules {
    /// 8–128, default 32.
    pub length: usize,
    /// Characters never used.
    pub exclude_characters: String,
    /// Leave out `a-z`.
    pub exclude_lowercase: bool,
    /// Leave out `A-Z`.
    pub exclude_uppercase: bool,
    /// Leave out `0-9`.
    pub exclude_numbers: bool,
    /// Leave out [`PUNCTUATION`].
    pub exclude_punctuation: bool,
    /// At least one character of every included class.
    pub require_each_included_type: bool,
}

impl Default for PasswordRules {
    fn default() -> Self {
        Self {
            length: 32,
            exclude_characters: String::new(),
            exclude_lowercase: false,
            exclude_uppercase: false,
            exclude_numbers: false,
            exclude_punctuation: false,
            require_each_included_type: true,
        }
    }
}

/// A password following `rules`.
pub fn random_password(rules: &PasswordRules) -> Result<SecretString, Error> {
    if !(8..=128).contains(&rules.length) {
        return Err(Error::invalid(
            Field::PasswordLength,
            "must be between 8 and 128",
        ));
    }
    let classes: Vec<Vec<u8>> = [
        (rules.exclude_lowercase, "abcdefghijklmnopqrstuvwxyz"),
        (rules.exclude_uppercase, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        (rules.exclude_numbers, "0123456789"),
        (rules.exclude_punctuation, PUNCTUATION),
    ]
    .into_iter()
    .filter(|(excluded, _)| !excluded)
    .map(|(_, set)| {
        set.bytes()
            .filter(|b| !rules.exclude_characters.as_bytes().contains(b))
            .collect::<Vec<u8>>()
    })
    .filter(|set| !set.is_empty())
    .collect();
    let alphabet: Vec<u8> = classes.concat();
    if alphabet.is_empty() {
        return Err(Error::invalid(
            Field::ExcludeCharacters,
            "every character class is excluded",
        ));
    }
    if rules.require_each_included_type && classes.len() > rules.length {
        return Err(Error::invalid(
            Field::PasswordLength,
            "too short to include every character type",
        ));
    }
    // Draw whole passwords until one has every class: unbiased, and with 32 characters over
    // four classes a retry is rare.
    loop {
        let candidate = crate::crypto::random_from(&alphabet, rules.length);
        let complete = !rules.require_each_included_type
            || classes
                .iter()
                .all(|set| candidate.bytes().any(|b| set.contains(&b)));
        if complete {
            return Ok(SecretString::new(candidate));
        }
        drop(SecretString::new(candidate));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_the_rules() {
        let p = random_password(&PasswordRules::default()).unwrap();
        let p = p.expose();
        assert_eq!(p.len(), 32);
        assert!(p.bytes().any(|b| b.is_ascii_lowercase()));
        assert!(p.bytes().any(|b| b.is_ascii_uppercase()));
        assert!(p.bytes().any(|b| b.is_ascii_digit()));
        assert!(p.bytes().any(|b| PUNCTUATION.as_bytes().contains(&b)));
        let rules = PasswordRules {
            length: 64,
            exclude_punctuation: true,
            exclude_uppercase: true,
            exclude_characters: "abc123".into(),
            ..PasswordRules::default()
        };
        for _ in 0..50 {
            let p = random_password(&rules).unwrap();
            assert!(
                p.expose()
                    .bytes()
                    .all(|b| (b.is_ascii_lowercase() || b.is_ascii_digit())
                        && !b"abc123".contains(&b))
            );
        }
        let none = PasswordRules {
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            ..PasswordRules::default()
        };
        assert!(random_password(&none).is_err());
        assert!(
            random_password(&PasswordRules {
                length: 7,
                ..PasswordRules::default()
            })
            .is_err()
        );
    }
}
