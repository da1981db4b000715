//! The Generic rotator: a new random value by a template, in the secret's ExtendedConfig.
//!
//! ```json
//! {"PasswordLength": 32, "ExcludeCharacters": "\"'\\", "RequireEachIncludedType": true,
//!  "ExcludeUppercase": false, "ExcludeLowercase": false, "ExcludeNumbers": false,
//!  "ExcludePunctuation": false, "Fields": ["password"]}
//! ```
//!
//! Every key is optional (GetRandomPassword's rules and defaults). Without `Fields` the whole
//! value becomes one password; with `Fields`, the current value must be a JSON object and only
//! those fields get new passwords (user names, hosts and the like carry over).
//! There is no outside system, so `set-pending`, `test-pending` and `finish` only check that
//! the pending value is well-formed.

use arca_plugin_sdk::random;
use arca_plugin_sdk::rotator::{Error, RotationRequest, Rotator, SecretData};
use serde_json::{Map, Value};

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const DIGITS: &str = "0123456789";
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

struct Generic;

#[derive(Debug)]
struct Template {
    length: usize,
    classes: Vec<Vec<char>>,
    require_each: bool,
    fields: Vec<String>,
}

impl Template {
    fn parse(config: &str) -> Result<Self, Error> {
        let config: Map<String, Value> = if config.trim().is_empty() {
            Map::new()
        } else {
            serde_json::from_str(config)
                .map_err(|e| Error::invalid(format!("ExtendedConfig is not a JSON object: {e}")))?
        };
        let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
        let length = match config.get("PasswordLength") {
            None => 32,
            Some(v) => v
                .as_u64()
                .filter(|n| (8..=128).contains(n))
                .ok_or_else(|| Error::invalid("PasswordLength must be 8-128"))?
                as usize,
        };
        let exclude: Vec<char> = config
            .get("ExcludeCharacters")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .collect();
        let mut classes = Vec::new();
        for (set, skip) in [
            (UPPER, flag("ExcludeUppercase")),
            (LOWER, flag("ExcludeLowercase")),
            (DIGITS, flag("ExcludeNumbers")),
            (PUNCTUATION, flag("ExcludePunctuation")),
        ] {
            let chars: Vec<char> = set.chars().filter(|c| !exclude.contains(c)).collect();
            if !skip && !chars.is_empty() {
                classes.push(chars);
            }
        }
        if classes.is_empty() {
            return Err(Error::invalid("the template excludes every character"));
        }
        let require_each = config
            .get("RequireEachIncludedType")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if require_each && classes.len() > length {
            return Err(Error::invalid(
                "PasswordLength is shorter than the number of required types",
            ));
        }
        let fields = match config.get("Fields") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            Some(_) => return Err(Error::invalid("Fields must be a list of field names")),
        };
        Ok(Self {
            length,
            classes,
            require_each,
            fields,
        })
    }

    /// A password: uniform choices by rejection sampling, then one of each class if required.
    fn password(&self) -> String {
        let all: Vec<char> = self.classes.iter().flatten().copied().collect();
        loop {
            let chosen: Vec<char> = (0..self.length).map(|_| all[uniform(all.len())]).collect();
            if !self.require_each
                || self
                    .classes
                    .iter()
                    .all(|class| chosen.iter().any(|c| class.contains(c)))
            {
                return chosen.into_iter().collect();
            }
        }
    }
}

/// A uniform index below `n` (n ≤ 256) from the host's CSPRNG.
fn uniform(n: usize) -> usize {
    let limit = 256 - (256 % n);
    loop {
        for b in random::get_random_bytes(32) {
            if (b as usize) < limit {
                return b as usize % n;
            }
        }
    }
}

impl Rotator for Generic {
    fn create_pending(req: RotationRequest) -> Result<SecretData, Error> {
        let template = Template::parse(&req.extended_config)?;
        if template.fields.is_empty() {
            return Ok(SecretData::Text(template.password()));
        }
        let current = match req.current.as_ref().map(|v| &v.value) {
            Some(SecretData::Text(t)) => t.as_str(),
            _ => "{}",
        };
        let mut object: Map<String, Value> = serde_json::from_str(current)
            .map_err(|_| Error::invalid("Fields needs the current value to be a JSON object"))?;
        for field in &template.fields {
            object.insert(field.clone(), Value::String(template.password()));
        }
        Ok(SecretData::Text(Value::Object(object).to_string()))
    }

    fn set_pending(req: RotationRequest) -> Result<(), Error> {
        check_pending(&req)
    }

    fn test_pending(req: RotationRequest) -> Result<(), Error> {
        check_pending(&req)
    }
}

fn check_pending(req: &RotationRequest) -> Result<(), Error> {
    match req.pending.as_ref().map(|v| &v.value) {
        Some(SecretData::Text(t)) if !t.is_empty() => Ok(()),
        _ => Err(Error::invalid("the pending version is missing or empty")),
    }
}

arca_plugin_sdk::export_rotator!(Generic);
