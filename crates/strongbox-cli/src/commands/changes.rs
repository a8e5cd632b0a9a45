//! `strongbox changes --since SEQ`: print the change feed after a sequence number, and the
//! line format `watch` shares.

use anyhow::Context as _;
use serde::Serialize;
use strongbox::Change;

use crate::cli::GlobalOptions;
use crate::commands::Access;
use crate::output::{self, Output};

/// Options of `strongbox changes`.
#[derive(Debug, clap::Args)]
pub struct ChangesArgs {
    /// Print the changes after this sequence number (0: from the oldest held).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub since: u64,
    /// Print at most this many changes.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
    /// Print one JSON object per change: {"seq", "collection", "key", "kind" ("put",
    /// "delete" or "expired"), "version", "at" (RFC 3339), "at_ms", "blob_id" (a put's value
    /// id, hex)}.
    #[arg(long)]
    pub json: bool,
}

/// One change as `--json` prints it. The field names are a contract.
#[derive(Serialize)]
struct ChangeLine<'a> {
    seq: u64,
    collection: &'a str,
    key: &'a str,
    kind: &'static str,
    version: u64,
    at: String,
    at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    blob_id: Option<String>,
}

/// Prints one change: a JSON line, or `SEQ  TIME  KIND  COLLECTION/KEY  vVERSION`.
///
/// # Errors
/// When standard output is closed or full.
pub fn print_change(out: &mut Output, change: &Change, json: bool) -> anyhow::Result<()> {
    if json {
        return out.json(&ChangeLine {
            seq: change.seq,
            collection: &change.collection,
            key: &change.key,
            kind: change.kind.as_str(),
            version: change.version.get(),
            at: output::time(change.at_ms),
            at_ms: change.at_ms,
            blob_id: change.blob_id.map(|id| id.to_hex()),
        });
    }
    out.line(format_args!(
        "{}  {}  {:<7} {}/{}  v{}",
        change.seq,
        output::time(change.at_ms),
        change.kind.as_str(),
        change.collection,
        change.key,
        change.version
    ))
}

/// Prints up to `--limit` changes after `--since`, then exits.
///
/// # Errors
/// When the database cannot be read; `changes_trimmed` when changes after `--since` were
/// trimmed.
pub async fn run(global: &GlobalOptions, args: ChangesArgs) -> anyhow::Result<()> {
    let store = crate::commands::open_existing(global, Access::Read).await?;
    let result = async {
        let changes = store
            .changes(args.since, args.limit)
            .await
            .with_context(|| format!("read the changes after {}", args.since))?;
        let mut out = Output::stdout();
        for change in &changes {
            print_change(&mut out, change, args.json)?;
        }
        out.finish()
    }
    .await;
    crate::commands::close(store, result).await
}
