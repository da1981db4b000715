//! Quoting for SQL statements that cannot take parameters, such as PostgreSQL's
//! `ALTER ROLE name WITH PASSWORD '...'`.

/// Quotes `value` as a PostgreSQL string literal (`'it''s'`), for servers with
/// `standard_conforming_strings = on` (the default since PostgreSQL 9.1). Returns `None` when
/// the value contains a NUL byte, which no PostgreSQL string can hold.
pub fn quote_literal(value: &str) -> Option<String> {
    if value.contains('\0') {
        return None;
    }
    Some(format!("'{}'", value.replace('\'', "''")))
}

/// Quotes `name` as a PostgreSQL identifier (`"my ""role"""`). Returns `None` for an empty
/// name or one containing a NUL byte.
pub fn quote_identifier(name: &str) -> Option<String> {
    if name.is_empty() || name.contains('\0') {
        return None;
    }
    Some(format!("\"{}\"", name.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_literals_and_identifiers() {
        assert_eq!(quote_literal("it's").as_deref(), Some("'it''s'"));
        assert_eq!(quote_literal("a\0b"), None);
        assert_eq!(
            quote_identifier("my \"role\"").as_deref(),
            Some("\"my \"\"role\"\"\"")
        );
        assert_eq!(quote_identifier(""), None);
    }
}
