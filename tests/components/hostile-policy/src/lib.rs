//! An access policy that misbehaves on request: a resource named `.../alias/hostile-<mode>`
//! (or, with no resource, the action name) says how. Everything else is allowed, so a test can
//! show the host still serves after each misbehaviour.
//!
//! - `Loop`: spins forever.
//! - `Bomb`: allocates until memory runs out.
//! - `Trap`: panics.
//! - `Recurse`: recurses without end.
//! - `Huge`: returns a 2 MiB reason.
//! - `Garbage`: returns a reason that is not UTF-8.
//! - `Deny`: denies, with a reason.
//! - `Log`: writes a log line, then allows.
//!
//! Besides, it denies `Decrypt`, `ReEncrypt`, `ExportDataKey` and `GenerateDataKey` on any
//! resolved key (`…:key/<id>`), so a test can show that those requests reach the policy with
//! the key they use: the key inside a ciphertext, the key behind an alias.

use arca_plugin_sdk::policy::{AccessPolicy, Decision, Request};

struct Hostile;

#[inline(never)]
#[allow(unconditional_recursion, reason = "recursing without end is the point")]
fn recurse(n: u64, sink: &mut [u64; 64]) -> u64 {
    sink[(n % 64) as usize] = n;
    let mut local = [n; 64];
    local[0] = recurse(n + 1, sink);
    local.iter().sum()
}

impl AccessPolicy for Hostile {
    fn decide(req: Request) -> Decision {
        const GUARDED: [&str; 4] = ["Decrypt", "ReEncrypt", "ExportDataKey", "GenerateDataKey"];
        if let Some(arn) = req.resource_arn.as_deref()
            && arn.contains(":key/")
            && GUARDED.contains(&req.action.as_str())
        {
            return Decision::Deny(format!("{} may not use {arn}", req.action));
        }
        let mode = req
            .resource_arn
            .as_deref()
            .and_then(|r| r.rsplit_once("alias/hostile-"))
            .map(|(_, m)| m.to_string())
            .unwrap_or_else(|| req.action.clone());
        match mode.as_str() {
            "loop" | "bomb" | "trap" | "recurse" | "huge" | "garbage" | "deny" | "log" => {
                Self::decide(Request {
                    action: capitalise(&mode),
                    resource_arn: None,
                    ..req
                })
            }
            "Loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "Bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "Trap" => panic!("the hostile policy panicked on purpose"),
            "Recurse" => {
                let mut sink = [0u64; 64];
                Decision::Allow(recurse(0, &mut sink).to_string())
            }
            "Huge" => Decision::Allow("x".repeat(2 << 20)),
            "Garbage" => {
                // A string whose bytes are not UTF-8: the host must refuse to lift it.
                let bytes = vec![0xff, 0xfe, 0xfd];
                #[allow(unsafe_code)]
                let s = unsafe { String::from_utf8_unchecked(bytes) };
                Decision::Allow(s)
            }
            "Deny" => Decision::Deny(format!("{} may not {}", req.principal.id, req.action)),
            "Log" => {
                arca_plugin_sdk::log::info("hostile-policy was asked to log");
                Decision::Allow("logged".into())
            }
            _ => Decision::Allow("ok".into()),
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

arca_plugin_sdk::export_access_policy!(Hostile);
