//! `arca audit query`: the events that match a filter, the journal's included.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use time::OffsetDateTime;

use super::SEAL_ACTION;
use super::chain::{Chain, last_line};
use super::journal::{for_each_entry, journal_tail};
use crate::secret::SecretBytes;

/// What `arca audit query` selects; every given field must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Events before this time.
    pub until: Option<OffsetDateTime>,
    /// The action, exactly.
    pub action: Option<String>,
    /// A substring of the resource (an ARN, a key id, `secret/<name>`).
    pub resource: Option<String>,
    /// The account, exactly.
    pub account: Option<String>,
}

impl Query {
    pub(super) fn matches(&self, v: &serde_json::Value) -> bool {
        let field = |name: &str| v.get(name).and_then(serde_json::Value::as_str);
        let time = field("time").and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        self.since.is_none_or(|s| time.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| time.is_some_and(|t| t < u))
            && self
                .action
                .as_deref()
                .is_none_or(|a| field("action") == Some(a))
            && self
                .resource
                .as_deref()
                .is_none_or(|r| field("resource").is_some_and(|f| f.contains(r)))
            && self
                .account
                .as_deref()
                .is_none_or(|a| field("account") == Some(a))
            && field("action") != Some(SEAL_ACTION)
    }
}

/// The events of the trail at `log` that `query` selects, as their JSON lines, those its
/// journal holds beyond its end included.
pub fn query(log: &Path, query: &Query) -> std::io::Result<Vec<String>> {
    let selects = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| query.matches(&v))
    };
    let mut out = Vec::new();
    let mut last = None;
    for text in BufReader::new(File::open(log)?).lines() {
        let text = text?;
        if selects(&text) {
            out.push(text.clone());
        }
        last = Some(text);
    }
    let seq = last
        .as_deref()
        .and_then(last_line)
        .map_or(0, |(seq, _)| seq);
    for text in journal_beyond(log, seq, None)? {
        if selects(&text) {
            out.push(text);
        }
    }
    Ok(out)
}

/// The lines of the events the journal beside the trail at `log` holds beyond the trail's end
/// (seq `seq`); none when there is no journal. With the trail's last hash and the seal key,
/// they are the lines the next start would append. Without them (`arca audit query` needs no
/// root key) an event's line has no `prev` or `hash` yet, and seals are left out.
pub(super) fn journal_beyond(
    log: &Path,
    seq: u64,
    chain: Option<(&str, &SecretBytes)>,
) -> std::io::Result<Vec<String>> {
    let file = match std::fs::read(log.with_extension("journal")) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let entries = journal_tail(&file, seq);
    let mut lines = Vec::new();
    if let Some((head, key)) = chain {
        Chain::new(seq, head)
            .and_then(|mut chain| chain.lines(&entries, key, &mut lines))
            .map_err(std::io::Error::other)?;
    } else {
        for_each_entry([&entries, &[]], &mut Vec::new(), |entry| {
            if let Some(fields) = entry.event {
                lines.extend_from_slice(b"{\"seq\":");
                lines.extend_from_slice(itoa::Buffer::new().format(entry.seq).as_bytes());
                lines.push(b',');
                fields.write_members(&mut lines);
                lines.extend_from_slice(b"}\n");
            }
            Ok(())
        })
        .map_err(std::io::Error::other)?;
    }
    Ok(String::from_utf8_lossy(&lines)
        .lines()
        .map(str::to_owned)
        .collect())
}
