//! The merged parameter bag of one request: URL query ∪ form body, `+` decoded as space.
//! Typed getters turn absent or malformed values into `MissingParameter` / `InvalidParameter`.

use std::borrow::Cow;
use std::str::FromStr;

use crate::error::ApiError;
use crate::secret::SecretString;

/// Request parameters in arrival order (query first, then body). The raw pairs are kept because
/// V1 signatures cover every parameter, duplicates included.
#[derive(Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Params {
    // Values may be plaintext or secrets: show names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Params {
    /// Parses a query string and, when it is a form, the body.
    pub fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Self {
        let mut pairs: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if let Some(body) = form_body {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        Self { pairs }
    }

    /// Every pair, query and body (what V1 signs).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The last value of `name` (a body value overrides a query value of the same name).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A present, non-empty value.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A required, non-empty value.
    pub fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.optional(name).ok_or(ApiError::MissingParameter(name))
    }

    /// A required value parsed into a typed id or enum.
    pub fn required_as<T: FromStr>(&self, name: &'static str) -> Result<T, ApiError> {
        let raw = self.required(name)?;
        raw.parse()
            .map_err(|_| ApiError::invalid(name, "malformed value"))
    }

    /// An optional value parsed into a typed id or enum.
    pub fn optional_as<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, ApiError> {
        self.optional(name)
            .map(|raw| {
                raw.parse()
                    .map_err(|_| ApiError::invalid(name, "malformed value"))
            })
            .transpose()
    }

    /// A required secret (plaintext): copied once into a zeroizing buffer.
    pub fn required_secret(&self, name: &'static str) -> Result<SecretString, ApiError> {
        self.required(name).map(|v| SecretString::new(v.to_owned()))
    }

    /// A repeat list `Name.1`, `Name.2`, … in index order (how the SDKs flatten `String[]`).
    pub fn list(&self, name: &str) -> Vec<&str> {
        let mut items: Vec<(u32, &str)> = self
            .pairs
            .iter()
            .filter_map(|(k, v)| {
                let index = k.strip_prefix(name)?.strip_prefix('.')?.parse().ok()?;
                Some((index, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// A repeat list of objects `Name.N.Field`, in index order, each as (field, value) pairs.
    pub fn object_list(&self, name: &str) -> Vec<Vec<(&str, &str)>> {
        let mut items: std::collections::BTreeMap<u32, Vec<(&str, &str)>> = Default::default();
        for (k, v) in &self.pairs {
            let Some(rest) = k.strip_prefix(name).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let Some((index, field)) = rest.split_once('.') else {
                continue;
            };
            if let Ok(index) = index.parse() {
                items.entry(index).or_default().push((field, v.as_str()));
            }
        }
        items.into_values().collect()
    }

    /// A structured parameter (a map, a list, a list of objects) as JSON text, in either form
    /// the SDKs send: one JSON string `Name={"a":"b"}` (Python, Go, Java), or flattened into
    /// `Name.a=b` (a map, as the Node SDK sends an `EncryptionContext`), `Name.1=x` (a list)
    /// and `Name.1.Field=y` (a list of objects). Both forms at once are refused, since either
    /// choice would silently drop what the other said.
    ///
    /// Every structured parameter is read through here, so that none can be sent in a form the
    /// server overlooks: an overlooked `EncryptionContext` would seal with no context at all.
    pub fn structured(&self, name: &'static str) -> Result<Option<Cow<'_, str>>, ApiError> {
        let flat: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(name)?.strip_prefix('.')?;
                Some((rest, v.as_str()))
            })
            .collect();
        match (self.get(name), flat.is_empty()) {
            (whole, true) => Ok(whole.filter(|v| !v.is_empty()).map(Cow::Borrowed)),
            (Some(_), false) => Err(ApiError::invalid(
                name,
                "sent both as one value and flattened (Name.key=value); send one form",
            )),
            (None, false) => Ok(Some(Cow::Owned(unflatten(&flat).to_string()))),
        }
    }

    /// A boolean; the Python SDK sends `True`/`False`, Go and Java `true`/`false`.
    pub fn bool(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        match self.optional(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(name, "must be true or false")),
        }
    }

    /// An optional integer within `range`.
    pub fn int(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ApiError> {
        let Some(raw) = self.optional(name) else {
            return Ok(None);
        };
        match raw.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                name,
                format!(
                    "must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }
}

/// The JSON a flattened parameter stands for: a list when every member is numbered (`1`,
/// `2.Field`, in index order), otherwise a map whose keys are the rest of the names as they are
/// (a map key may itself contain dots).
fn unflatten(flat: &[(&str, &str)]) -> serde_json::Value {
    use serde_json::Value;
    fn numbered(rest: &str) -> Option<(u32, Option<&str>)> {
        let (index, field) = rest
            .split_once('.')
            .map_or((rest, None), |(i, f)| (i, Some(f)));
        index.parse::<u32>().ok().map(|i| (i, field))
    }
    if flat.iter().all(|(rest, _)| numbered(rest).is_some()) {
        let mut items: std::collections::BTreeMap<u32, Value> = Default::default();
        for (rest, v) in flat {
            let Some((i, field)) = numbered(rest) else {
                continue;
            };
            match field {
                None => {
                    items.insert(i, Value::String((*v).to_owned()));
                }
                Some(f) => {
                    let item = items
                        .entry(i)
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Value::Object(o) = item {
                        o.insert(f.to_owned(), Value::String((*v).to_owned()));
                    }
                }
            }
        }
        Value::Array(items.into_values().collect())
    } else {
        Value::Object(
            flat.iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect(),
        )
    }
}

/// `PageNumber` (≥ 1, default 1) and `PageSize` (1–100, default 10).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// 1-based page number.
    pub number: u64,
    /// Entries per page.
    pub size: u64,
}

impl Page {
    /// Reads the paging parameters.
    pub fn parse(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            number: p.int("PageNumber", 1..=u64::from(u32::MAX))?.unwrap_or(1),
            size: p.int("PageSize", 1..=100)?.unwrap_or(10),
        })
    }

    /// The slice of `items` on this page.
    pub fn slice<T>(&self, items: Vec<T>) -> Vec<T> {
        let skip =
            usize::try_from((self.number - 1).saturating_mul(self.size)).unwrap_or(usize::MAX);
        let take = usize::try_from(self.size).unwrap_or(100);
        items.into_iter().skip(skip).take(take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_query_and_body_and_decodes_plus() {
        let p = Params::parse(Some("A=1&B=x+y&C=%2B"), Some(b"B=body&D=d"));
        assert_eq!(p.get("A"), Some("1"));
        assert_eq!(p.get("B"), Some("body"));
        assert_eq!(p.get("C"), Some("+"));
        assert_eq!(p.pairs().len(), 5);
        let p = Params::parse(Some("B=x+y"), None);
        assert_eq!(p.get("B"), Some("x y"));
    }

    #[test]
    fn typed_getters_report_the_parameter() {
        let p = Params::parse(Some("Flag=True&N=7&Bad=x&Empty="), None);
        assert_eq!(p.bool("Flag").unwrap(), Some(true));
        assert_eq!(p.int("N", 1..=10).unwrap(), Some(7));
        assert!(matches!(
            p.int("N", 1..=5),
            Err(ApiError::InvalidParameter { .. })
        ));
        assert!(matches!(
            p.required("Empty"),
            Err(ApiError::MissingParameter("Empty"))
        ));
        assert!(matches!(
            p.bool("Bad"),
            Err(ApiError::InvalidParameter { .. })
        ));
        assert!(format!("{p:?}").contains("Flag") && !format!("{p:?}").contains("True"));
    }

    #[test]
    fn repeat_lists_flatten_like_the_sdks() {
        let p = Params::parse(
            Some(
                "ResourceId.2=b&ResourceId.1=a&ResourceId.10=c&Tag.1.Key=k&Tag.1.Value=v&Tag.2.Key=x",
            ),
            None,
        );
        assert_eq!(p.list("ResourceId"), vec!["a", "b", "c"]);
        assert_eq!(
            p.object_list("Tag"),
            vec![vec![("Key", "k"), ("Value", "v")], vec![("Key", "x")]]
        );
        assert!(p.list("Tag").is_empty());
    }

    #[test]
    fn structured_parameters_come_whole_or_flattened_never_both() {
        let p = Params::parse(Some("EncryptionContext=%7B%22a%22%3A%22b%22%7D"), None);
        assert_eq!(
            p.structured("EncryptionContext").unwrap().unwrap(),
            r#"{"a":"b"}"#
        );
        let p = Params::parse(
            Some("EncryptionContext.app=billing&EncryptionContext.x.y=z&EncryptionContextX=no"),
            None,
        );
        let v: serde_json::Value =
            serde_json::from_str(&p.structured("EncryptionContext").unwrap().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"app": "billing", "x.y": "z"}));
        let p = Params::parse(
            Some("Tags.2.TagKey=k2&Tags.1.TagKey=k1&Tags.1.TagValue=v1"),
            None,
        );
        let v: serde_json::Value =
            serde_json::from_str(&p.structured("Tags").unwrap().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"TagKey": "k1", "TagValue": "v1"}, {"TagKey": "k2"}])
        );
        let p = Params::parse(Some("VersionStages.1=ACSCurrent&VersionStages.2=x"), None);
        assert_eq!(
            p.structured("VersionStages").unwrap().unwrap(),
            r#"["ACSCurrent","x"]"#
        );
        let p = Params::parse(Some("EncryptionContext=%7B%7D&EncryptionContext.a=b"), None);
        assert!(matches!(
            p.structured("EncryptionContext"),
            Err(ApiError::InvalidParameter { .. })
        ));
        assert!(Params::default().structured("Tags").unwrap().is_none());
    }

    #[test]
    fn pages_slice() {
        let page = Page { number: 2, size: 3 };
        assert_eq!(page.slice((1..=10).collect()), vec![4, 5, 6]);
        let page = Page { number: 9, size: 3 };
        assert!(page.slice((1..=10).collect::<Vec<_>>()).is_empty());
    }
}
