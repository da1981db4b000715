//! What the trail keeps of requests that never authenticated.
//!
//! Anyone who can reach the port can send requests that fail before a signature is checked.
//! Each is still answered and counted in `/metrics`, but what it writes to the audit trail is
//! bounded twice: its action is recorded as a short printable token (never the raw bytes it
//! named), and each source address may put only [`BURST`] such events in the trail, refilled
//! at [`PER_SECOND`]. Beyond that the source's failures are answered without a line of their
//! own, so a flood of junk costs the disk less than the same flood of valid requests would,
//! while valid requests from the same address are never held back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Unauthenticated failures a source may record at once.
pub const BURST: f64 = 200.0;
/// How many more it may record each second.
pub const PER_SECOND: f64 = 50.0;
/// Sources remembered at most; beyond it, the full (quiet) ones are forgotten first.
const MAX_SOURCES: usize = 65_536;
/// The longest action token recorded for an action the server does not know.
pub const MAX_ACTION_TOKEN: usize = 64;

/// Per-source budgets for recording unauthenticated failures.
#[derive(Debug, Default)]
pub struct JunkBudget {
    sources: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl JunkBudget {
    /// Whether an unauthenticated failure from `source` may be written to the trail (taking
    /// one from its budget if so).
    pub fn admit(&self, source: IpAddr) -> bool {
        let now = Instant::now();
        let Ok(mut sources) = self.sources.lock() else {
            return true;
        };
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, b| refill(*b, now) < BURST);
            if sources.len() >= MAX_SOURCES {
                // Too many distinct sources failing at once: record none of the newcomers.
                return false;
            }
        }
        let bucket = sources.entry(source).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let tokens = refill(*bucket, now);
        if tokens < 1.0 {
            *bucket = Bucket { tokens, at: now };
            return false;
        }
        *bucket = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        true
    }
}

fn refill(b: Bucket, now: Instant) -> f64 {
    (b.tokens + now.duration_since(b.at).as_secs_f64() * PER_SECOND).min(BURST)
}

/// The action as the trail records it: a known action's name as it is; anything else as at
/// most [`MAX_ACTION_TOKEN`] printable ASCII characters, every other byte escaped as `\xNN`
/// within that bound, and a `…` when cut.
pub fn action_token(action: &str, known: &[&str]) -> String {
    if known.contains(&action) {
        return action.to_owned();
    }
    let mut out = String::new();
    for b in action.bytes() {
        let piece = if b.is_ascii_graphic() && b != b'\\' && b != b'"' {
            char::from(b).to_string()
        } else {
            format!("\\x{b:02x}")
        };
        if out.len() + piece.len() > MAX_ACTION_TOKEN {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_actions_become_short_printable_tokens() {
        assert_eq!(action_token("Encrypt", &["Encrypt"]), "Encrypt");
        assert_eq!(action_token("Nope", &["Encrypt"]), "Nope");
        assert_eq!(action_token("a\"b\\c\n", &[]), "a\\x22b\\x5cc\\x0a");
        let junk = "\u{1}".repeat(200_000);
        let token = action_token(&junk, &[]);
        assert!(token.len() <= MAX_ACTION_TOKEN + '…'.len_utf8());
        assert!(token.starts_with("\\x01\\x01"));
        assert!(token.ends_with('…'));
    }

    #[test]
    fn a_source_records_its_burst_then_is_held_back_alone() {
        let budget = JunkBudget::default();
        let flood: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        let admitted = (0..1000).filter(|_| budget.admit(flood)).count();
        // The burst, plus what refilled while the loop ran (a few at most).
        assert!(
            (BURST as usize..BURST as usize + 10).contains(&admitted),
            "{admitted}"
        );
        assert!(budget.admit(other), "another source keeps its own budget");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(budget.admit(flood), "the budget refills over time");
    }
}
