//! `arca audit`: verify, head, accept-gap and query on a data directory.

use std::io::Write;

use anyhow::Context;

use crate::args::AuditCommand;
use crate::tools::{print_json, tool_root_key};

pub(crate) async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify {
            data_dir,
            anchor,
            root,
        } => {
            let root = tool_root_key(root).await?;
            let key = root.load_existing(&data_dir)?.audit_key();
            let found = arca_host::audit::verify_anchored(
                &data_dir.join("audit.log"),
                &data_dir.join("audit.head"),
                &key,
                anchor.as_ref(),
            );
            match found {
                Ok(v) => print_json(&serde_json::json!({
                    "Verified": true,
                    "Lines": v.lines,
                    "Seals": v.seals,
                    "UnsealedTail": v.unsealed,
                    "InJournal": v.in_journal,
                    "Anchored": anchor.is_some(),
                    "Gaps": v.gaps,
                })),
                Err(tamper) => anyhow::bail!("audit trail does not verify: {tamper}"),
            }
        }
        AuditCommand::Head { data_dir, root } => {
            let root = tool_root_key(root).await?;
            let key = root.load_existing(&data_dir)?.audit_key();
            let head = arca_host::audit::sealed_head(&data_dir.join("audit.head"), &key)?
                .context("the trail has not been sealed yet")?;
            print_json(&serde_json::json!({
                "Seq": head.seq,
                "Hash": head.hash,
                "Anchor": format!("{}:{}", head.seq, head.hash),
            }))
        }
        AuditCommand::AcceptGap { data_dir, root } => {
            let root = tool_root_key(root).await?;
            let key = root.load_existing(&data_dir)?.audit_key();
            let gap = arca_host::audit::accept_gap(&data_dir.join("audit.log"), &key)?;
            print_json(&serde_json::json!({
                "GapSeq": gap.seq,
                "Missing": gap.what,
                "Anchor": format!("{}:{}", gap.head.seq, gap.head.hash),
            }))
        }
        AuditCommand::Query {
            data_dir,
            since,
            until,
            action,
            resource,
            account,
        } => {
            let time = |t: Option<String>| -> anyhow::Result<Option<time::OffsetDateTime>> {
                t.map(|t| {
                    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("{t:?} is not an RFC 3339 time"))
                })
                .transpose()
            };
            let query = arca_host::audit::Query {
                since: time(since)?,
                until: time(until)?,
                action,
                resource,
                account,
            };
            let lines = arca_host::audit::query(&data_dir.join("audit.log"), &query)?;
            let mut out = std::io::stdout().lock();
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
    }
}
